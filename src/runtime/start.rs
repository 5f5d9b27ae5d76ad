//! Starting a child: the checks, who the child will be, and the three
//! start strategies — fork this process, or have the program executed
//! again (spawn) or forked by the fork server, and tell the new copy what
//! to run. See `README.md` in this folder.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::logging;
use crate::sys;
use crate::sys::image::FnRef;
use crate::target::Target;
use crate::wire;

use super::child;
use super::config::{self, ChildConfig, Setup};
use super::forking::{flush_stdio, fork_guard};
use super::handle::{ChildShared, Started};
use super::method::{StartMethod, get_start_method};
use super::protocol::{self, Boot, ChildInfo, ChildIo, Entry, ErrorReport};
use super::state;
use super::zygote::Zygote;
use super::{forkserver, helpers, launch};

/// How to start a child: what a `ProcessBuilder` collected.
pub(crate) struct Options {
    pub(crate) name: Option<String>,
    pub(crate) daemon: Option<bool>,
    /// A daemon child may start children of its own.
    pub(crate) allow_children: bool,
    pub(crate) method: Option<StartMethod>,
    /// How an executed copy finds the target; `None` for a closure that
    /// can only be forked.
    pub(crate) entry: Option<Entry>,
    /// Whether the target can be made again in a new program (zero-sized,
    /// or a `Partial`): a capturing closure cannot.
    pub(crate) travels: bool,
    pub(crate) allow_threads: bool,
    /// Under the fork start method: have this forker fork the child
    /// instead of forking here (a pool's replacement workers).
    pub(crate) zygote: Option<Arc<Zygote>>,
    /// Environment, directory, streams, limits, affinity for the child.
    pub(crate) setup: Setup,
}

/// Starts `target(args)` in a child and registers it among this process's
/// children.
///
/// `encode` makes a new program's arguments (with the captured values of
/// a `Partial`; not called under fork).
pub(crate) fn start<F: Target<M>, M>(
    target: F,
    args: F::Args,
    encode: fn(&F, &F::Args) -> Result<codec::Encoded>,
    opts: Options,
) -> Result<Arc<ChildShared>> {
    let method = opts.method.unwrap_or_else(get_start_method);
    if method != StartMethod::Fork {
        if opts.entry.is_none() {
            return Err(Error::new(
                ErrorKind::CapturingClosure,
                format!(
                    "a closure given to Process::fork can only start with the fork start method, not {method}"
                ),
            ));
        }
        if !opts.travels {
            return Err(Error::new(
                ErrorKind::CapturingClosure,
                format!(
                    "the closure captures variables, and under the {method} start method the child is a new \
                     run of the program that has the closure's code but not its captured values: give them \
                     with multiproc::partial, pass them as arguments, or use Process::fork(closure) with the \
                     fork start method"
                ),
            ));
        }
        if !state::initialized() {
            return Err(Error::new(
                ErrorKind::NotInitialized,
                format!(
                    "multiproc::init() was not called: the {method} start method runs this program again, and \
                     init() is where the new copy takes over. Add `multiproc::init();` as the first line of \
                     main (in test files: `multiproc::test_support!();`)"
                ),
            ));
        }
    }
    // Checked, and its files opened, here: a bad path or limit fails the
    // start, not the child.
    let (config, setup_fds) = opts.setup.open()?;
    state::register_exit_hook();
    state::reap_finished();
    let forward = super::forward::for_child();
    let info = state::with_state(|s| {
        if s.me.daemon && !s.me.may_have_children {
            return Err(Error::new(
                ErrorKind::DaemonChild,
                format!(
                    "{} is a daemon process, and daemon processes may not have children unless they were \
                     started so (a pool's workers with PoolBuilder::nested(true), a process with \
                     ProcessBuilder::allow_children(true))",
                    s.me.name
                ),
            ));
        }
        s.started += 1;
        let mut identity = s.me.identity.clone();
        identity.push(s.started);
        let default_name = || {
            let parts: Vec<String> = identity.iter().map(u32::to_string).collect();
            format!("Process-{}", parts.join(":"))
        };
        Ok(ChildInfo {
            name: opts.name.clone().unwrap_or_else(default_name),
            identity: identity.clone(),
            daemon: opts.daemon.unwrap_or(s.me.daemon),
            may_have_children: opts.allow_children || !opts.daemon.unwrap_or(s.me.daemon),
            parent_pid: s.me.pid,
            parent_name: s.me.name.clone(),
            log_level: logging::level().map(logging::level_to_u8),
            forward_level: forward.as_ref().map(|(_, l)| logging::level_to_u8(*l)),
            authkey: s.me.authkey,
            start_method: method as u8,
        })
    })?;
    let log_sink = forward.map(|(fd, _)| fd);
    let setup = (config, setup_fds);
    let started = match (method, &opts.zygote, opts.entry) {
        (StartMethod::Fork, Some(z), Some(entry)) => start_exec(
            method,
            Some(z),
            entry,
            || encode(&target, &args),
            &info,
            log_sink,
            setup,
        )?,
        (StartMethod::Fork, _, _) => {
            start_fork(target, args, &info, log_sink, setup, opts.allow_threads)?
        }
        (StartMethod::Spawn | StartMethod::Forkserver, _, entry) => {
            let entry = entry.expect("checked above");
            start_exec(
                method,
                None,
                entry,
                || encode(&target, &args),
                &info,
                log_sink,
                setup,
            )?
        }
    };
    let shared = Arc::new(ChildShared::new(info.name, info.daemon, started)?);
    log::info!(target: "multiproc", "started {} (pid {}) with {method}", shared.name, shared.pid);
    state::register(shared.clone());
    Ok(shared)
}

fn start_fork<F: Target<M>, M>(
    target: F,
    args: F::Args,
    info: &ChildInfo,
    log_sink: Option<OwnedFd>,
    (config, setup_fds): (ChildConfig, Vec<OwnedFd>),
    allow_threads: bool,
) -> Result<Started> {
    let paused = fork_guard(allow_threads)?;
    let (ours, theirs) =
        sys::socket::stream_pair().map_err(|e| Error::io("could not create a socket pair", e))?;
    flush_stdio();
    let parent = sys::process::getpid();
    match sys::process::fork().map_err(|e| Error::io("fork failed", e))? {
        sys::process::Forked::Child => {
            std::mem::forget(paused);
            helpers::forget_in_child();
            drop(ours);
            // No HELLO: the parent knows the pid, and this copy of the
            // program is under multiproc's control from the first instruction.
            let io = ChildIo::new(theirs);
            if !sys::process::die_with_parent(parent) {
                sys::process::exit_now(1);
            }
            child::child_main(io, info, log_sink, move |io| {
                config::apply(&config, setup_fds)?;
                child::run_target(target, args, io)
            })
        }
        sys::process::Forked::Parent(pid) => {
            drop(paused);
            drop((theirs, log_sink, setup_fds));
            drop((target, args));
            Ok(Started {
                pid,
                sock: ours,
                reader: wire::Reader::new(protocol::MAX_FRAME),
                hello: true,
            })
        }
    }
}

fn start_exec(
    method: StartMethod,
    zygote: Option<&Zygote>,
    entry: Entry,
    encode: impl FnOnce() -> Result<codec::Encoded>,
    info: &ChildInfo,
    log_sink: Option<OwnedFd>,
    (config, setup_fds): (ChildConfig, Vec<OwnedFd>),
) -> Result<Started> {
    let image = protocol::image_id()?;
    let (ours, theirs) =
        sys::socket::stream_pair().map_err(|e| Error::io("could not create a socket pair", e))?;
    // The child is asked for first: the arguments are encoded while the
    // fork server forks it (or the kernel executes it).
    let spawned_pid = match method {
        StartMethod::Spawn => {
            let ppid = sys::process::getpid();
            let pid = launch::on_lasting_thread(move || {
                launch::exec_self(format!("spawn:{ppid}"), theirs, false)
            })
            .and_then(|r| r)
            .map_err(|e| Error::io("could not execute this program again", e))?;
            Some(pid)
        }
        _ => {
            match zygote {
                Some(z) => z.request(theirs)?,
                None => forkserver::request(theirs)?,
            }
            None
        }
    };
    // The user's Serialize may panic: the child asked for must not outlive
    // the panic as a zombie.
    let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        encode().and_then(|args| {
            let boot = Boot {
                image,
                entry: FnRef::new(entry),
                info: info.clone(),
                config,
            };
            let boot = postcard::to_allocvec(&boot).map_err(|e| {
                Error::new(ErrorKind::Encode, "could not encode the start-up message")
                    .with_source(e)
            })?;
            Ok((boot, args))
        })
    }));
    let (boot, args) = match encoded {
        Ok(Ok(both)) => both,
        Ok(Err(e)) => {
            abandon(ours, spawned_pid);
            return Err(e);
        }
        Err(panic) => {
            abandon(ours, spawned_pid);
            std::panic::resume_unwind(panic);
        }
    };
    // A child that died early makes these fail with a broken pipe; join()
    // then reports how it died, which says more than the pipe does.
    // The streams' descriptors first, the log socket last (see protocol).
    let sink_fds: Vec<_> = setup_fds
        .iter()
        .chain(log_sink.iter())
        .map(|fd| fd.as_fd())
        .collect();
    let _ = wire::send(ours.as_fd(), protocol::BOOT, &boot, &sink_fds).and_then(|()| {
        wire::send(
            ours.as_fd(),
            protocol::ARGS,
            &args.bytes,
            &args.borrowed_fds(),
        )
    });
    drop((args, sink_fds));
    drop((log_sink, setup_fds));
    let mut reader = wire::Reader::new(protocol::MAX_FRAME);
    if let Some(pid) = spawned_pid {
        return Ok(Started {
            pid,
            sock: ours,
            reader,
            hello: false,
        });
    }
    // From the fork server, the child's pid comes in its HELLO.
    let frame = reader
        .recv(ours.as_fd(), None)
        .map_err(|e| Error::io("lost the new child during start-up", e))?;
    match frame {
        Some(f) if f.kind == protocol::HELLO && f.body.len() == 4 => {
            let pid = u32::from_le_bytes(f.body[..4].try_into().expect("4 bytes")) as i32;
            Ok(Started {
                pid,
                sock: ours,
                reader,
                hello: true,
            })
        }
        Some(f) if f.kind == protocol::ERROR => {
            let report: ErrorReport = postcard::from_bytes(&f.body).unwrap_or(ErrorReport {
                kind: 6,
                message: "the fork server failed".into(),
            });
            Err(Error::new(report.kind(), report.message))
        }
        _ => Err(Error::new(
            ErrorKind::Bootstrap,
            "the fork server's child died before it started",
        )),
    }
}

/// Gets rid of a child that was asked for but will not be told what to run
/// (its arguments could not be encoded): it is killed and reaped, so that no
/// zombie is left.
fn abandon(sock: OwnedFd, spawned_pid: Option<i32>) {
    let _ = sys::socket::shutdown_write(sock.as_fd());
    let pid = spawned_pid.or_else(|| {
        // The child's HELLO says its pid; then it waits for a BOOT that
        // will not come.
        let mut reader = wire::Reader::new(protocol::MAX_FRAME);
        loop {
            match reader.recv(sock.as_fd(), None) {
                Ok(Some(f)) if f.kind == protocol::HELLO && f.body.len() == 4 => {
                    break Some(u32::from_le_bytes(f.body[..4].try_into().expect("4 bytes")) as i32);
                }
                Ok(Some(_)) => {}
                _ => break None,
            }
        }
    });
    if let Some(pidfd) = pid.and_then(|pid| sys::process::pidfd(pid).ok()) {
        sys::process::kill_and_reap(pidfd.as_fd());
    }
}
