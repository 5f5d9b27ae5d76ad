//! The child's side: receiving what to run, running it, reporting back,
//! over the socket described in [`super::protocol`].

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use crate::codec;
use crate::error::{Error, ErrorKind, PanicReport};
use crate::sys;
use crate::sys::image::ImageId;
use crate::target::Target;
use crate::wire;

use super::protocol::{ARGS, BOOT, Boot, ChildInfo, ChildIo, MAX_FRAME, PANIC, RESULT};
use super::state;
use super::{config, forkserver, forward};

/// Sends an error report to whoever waits on `sock` (the fork server uses
/// this when it cannot fork).
pub(crate) fn report_error(sock: OwnedFd, e: &Error) {
    ChildIo::new(sock).send_error(e);
}

/// Runs `f(args)` and sends what it returns.
pub(crate) fn run_target<F: Target<M>, M>(f: F, args: F::Args, io: &ChildIo) -> Result<(), Error> {
    let out = f.call(args);
    let encoded = codec::encode(&out)?;
    match io.send(RESULT, &encoded.bytes, &encoded.borrowed_fds()) {
        // The parent dropped its handle: nobody wants the value.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("could not send the result to the parent", e)),
        Ok(()) => Ok(()),
    }
}

/// The [`Entry`] for target type `F`: makes an `F` (it is zero-sized),
/// decodes its arguments and runs it. A registered entry point: an
/// [`Entry`], in the section of entries (`sys::image::Entries`).
// Placement only; the section holds functions of this signature alone
// (`sys::image::Section`'s contract).
#[allow(unsafe_code)]
#[unsafe(link_section = "multiproc_entry")]
pub(crate) fn trampoline<F: Target<M> + Copy, M>(
    io: &ChildIo,
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
) -> Result<(), Error> {
    let f = sys::image::conjure::<F>().ok_or_else(|| {
        Error::new(
            ErrorKind::CapturingClosure,
            "the target captures state and cannot be rebuilt in a new process",
        )
    })?;
    let args = codec::decode::<F::Args>(&bytes, fds)?;
    run_target(f, args, io)
}

/// The life of a spawned or fork-server child, from its socket to its exit.
pub(crate) fn serve(sock: OwnedFd, parent: i32) -> ! {
    if !sys::process::die_with_parent(parent) {
        sys::process::exit_now(1);
    }
    let io = ChildIo::new(sock);
    io.hello();
    let mut reader = wire::Reader::new(MAX_FRAME);
    let mut next = |kind: u8| match reader.recv(io.fd(), None) {
        Ok(Some(frame)) if frame.kind == kind => Some(frame),
        _ => None,
    };
    // No BOOT means the parent gave up on us: leave quietly.
    let Some(mut boot) = next(BOOT) else {
        sys::process::exit_now(1)
    };
    let Some(args) = next(ARGS) else {
        sys::process::exit_now(1)
    };
    let boot_fds = std::mem::take(&mut boot.fds);
    let boot: Boot = match postcard::from_bytes(&boot.body) {
        Ok(b) => b,
        Err(e) => {
            io.send_error(
                &Error::new(
                    ErrorKind::Bootstrap,
                    "the child could not read its start-up message",
                )
                .with_source(e),
            );
            sys::process::exit_now(1);
        }
    };
    let same_image = ImageId::current().is_ok_and(|id| id == boot.image);
    let Some(entry) = boot.entry.resolve(same_image) else {
        io.send_error(&Error::new(
            ErrorKind::Bootstrap,
            "the child runs a different executable than its parent (was the program rebuilt or replaced?), \
             so it cannot find the function to run",
        ));
        sys::process::exit_now(1);
    };
    // The streams' descriptors, then the socket to the log collector;
    // anything past them is closed.
    let mut fds = boot_fds.into_iter();
    let setup_fds: Vec<OwnedFd> = fds.by_ref().take(config::fd_count(&boot.config)).collect();
    let log_sink = boot.info.forward_level.and_then(|_| fds.next());
    drop(fds);
    let config = boot.config;
    child_main(io, &boot.info, log_sink, move |io| {
        config::apply(&config, setup_fds)?;
        entry(io, args.body, args.fds)
    })
}

/// The socket the panic hook reports on when panics abort: this child's
/// (set again in each child; a grandchild forked from a child must not
/// report on its parent's socket).
static ABORT_REPORT: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Does, once, what every child would otherwise do first: registering the
/// exit hook, the panic hook, the codec's thread-local state, reading the
/// image identity, setting up stdout. The fork server calls this before its
/// first fork, so that its children inherit all of it instead of each
/// paying for it in page faults.
pub(crate) fn prepare_image() {
    state::register_exit_hook();
    install_panic_hook_once();
    let _ = ImageId::current();
    if let Ok(e) = codec::encode(&()) {
        let _ = codec::decode::<()>(&e.bytes, e.fds);
    }
    let _ = std::io::stdout().flush();
}

fn install_panic_hook(io: &ChildIo) {
    if cfg!(panic = "abort") {
        let fd = sys::socket::dup(io.fd()).ok();
        *ABORT_REPORT.lock().unwrap_or_else(|p| p.into_inner()) = fd;
    }
    install_panic_hook_once();
}

/// Installs the hook that records a panic's location (and, when panics
/// abort, reports it on [`ABORT_REPORT`]), once per program image: a child
/// forked from a process that has it keeps it.
fn install_panic_hook_once() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(install_panic_hook_now);
}

fn install_panic_hook_now() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let report = PanicReport::record(info);
        {
            let fd = ABORT_REPORT.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(fd) = fd.as_ref() {
                // The process is about to abort: this is the only chance.
                if let Ok(bytes) = postcard::to_allocvec(&report) {
                    let _ = wire::send(fd.as_fd(), PANIC, &bytes, &[]);
                }
            }
        }
        previous(info);
    }));
}

/// Runs `body` as the child described by `info`, reports how it went, joins
/// the child's own children, and exits: 0 on success, 1 on a panic or error.
pub(crate) fn child_main(
    io: ChildIo,
    info: &ChildInfo,
    log_sink: Option<OwnedFd>,
    body: impl FnOnce(&ChildIo) -> Result<(), Error>,
) -> ! {
    forward::forget_inherited();
    state::become_child(info, log_sink);
    forkserver::forget_inherited();
    install_panic_hook(&io);
    log::info!(target: "multiproc", "child process calling the target");
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| body(&io)));
    let code = match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            io.send_error(&e);
            1
        }
        Err(payload) => {
            io.send_value(PANIC, &PanicReport::take(&*payload));
            1
        }
    };
    log::info!(target: "multiproc", "process exiting with exitcode {code}");
    state::finish_children();
    // Rust's stderr is unbuffered; stdout may hold a partial line. The
    // socket is closed by the exit itself.
    let _ = std::io::stdout().flush();
    std::mem::forget(io);
    sys::process::exit_now(code)
}
