//! A child's configuration: environment, working directory, standard
//! streams, resource limits and CPU affinity (what `ProcessBuilder::env`,
//! `current_dir`, `stdout`, `rlimit`, `cpu_affinity` collect).
//!
//! The parent checks it and opens the files ([`Setup::open`]), so
//! that a bad path fails `start()`; the child applies it first thing,
//! before its target runs ([`apply`]): a forked child from memory, an
//! executed or fork-server child from its BOOT message, whose descriptors
//! carry the standard streams. A child that cannot apply it reports an
//! [`ErrorKind::ChildSetup`] error naming what failed, which `join()`
//! returns, and exits with code 1 without running the target.

use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// Where a child's standard output or error goes.
#[derive(Debug)]
pub enum Stdio {
    /// Where this process's goes (the default). Under the forkserver
    /// start method: where the fork server's went, which is where this
    /// process's went when the server started.
    Inherit,
    /// To `/dev/null`.
    Null,
    /// To a file, created if missing and truncated, opened by the parent
    /// when the process starts.
    File(PathBuf),
    /// To a descriptor the caller opened (a file, a pipe's write end).
    Fd(OwnedFd),
    /// Into memory, for the parent to read with
    /// [`Process::captured_stdout`](crate::Process::captured_stdout) /
    /// [`captured_stderr`](crate::Process::captured_stderr) (Python's
    /// `subprocess` `capture_output`). The bytes stay in an in-memory file
    /// (`memfd`) until the handle is dropped; whatever the child writes
    /// there counts against memory, so capture output that is bounded.
    Capture,
}

impl Stdio {
    /// Sends to `/dev/null`.
    pub fn null() -> Self {
        Stdio::Null
    }

    /// Sends to the file at `path` (created, truncated).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Stdio::File(path.into())
    }

    /// Captures into memory (see [`Stdio::Capture`]).
    pub fn capture() -> Self {
        Stdio::Capture
    }
}

/// A resource whose limit a child can be given
/// ([`ProcessBuilder::rlimit`](crate::ProcessBuilder::rlimit)); the
/// names follow `setrlimit(2)`'s `RLIMIT_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Resource {
    /// `RLIMIT_CPU`: CPU time, in seconds.
    Cpu,
    /// `RLIMIT_FSIZE`: the largest file the process may write, in bytes.
    FileSize,
    /// `RLIMIT_DATA`: the data segment (heap), in bytes.
    Data,
    /// `RLIMIT_STACK`: the main thread's stack, in bytes.
    Stack,
    /// `RLIMIT_CORE`: the largest core dump, in bytes.
    Core,
    /// `RLIMIT_NOFILE`: one more than the highest descriptor number.
    NoFile,
    /// `RLIMIT_AS`: the address space, in bytes.
    AddressSpace,
    /// `RLIMIT_NPROC`: processes (threads) of the user.
    NProc,
    /// `RLIMIT_MEMLOCK`: locked memory, in bytes.
    MemLock,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Resource::Cpu => "RLIMIT_CPU",
            Resource::FileSize => "RLIMIT_FSIZE",
            Resource::Data => "RLIMIT_DATA",
            Resource::Stack => "RLIMIT_STACK",
            Resource::Core => "RLIMIT_CORE",
            Resource::NoFile => "RLIMIT_NOFILE",
            Resource::AddressSpace => "RLIMIT_AS",
            Resource::NProc => "RLIMIT_NPROC",
            Resource::MemLock => "RLIMIT_MEMLOCK",
        };
        f.write_str(name)
    }
}

/// One change to the environment, in the order given.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum EnvOp {
    Set(OsString, OsString),
    Remove(OsString),
    Clear,
}

/// What a child is to apply; empty by default (nothing to do).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ChildConfig {
    pub(crate) env: Vec<EnvOp>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) rlimits: Vec<(Resource, u64, u64)>,
    pub(crate) cpus: Option<Vec<usize>>,
    /// Which of stdout and stderr get a descriptor: the opened
    /// descriptors travel beside the config, in this order.
    pub(crate) redirect: [bool; 2],
}

/// What every worker of a pool applies when it starts (as a
/// [`ProcessBuilder`](crate::ProcessBuilder)'s `env`, `rlimit`,
/// `cpu_affinity`).
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkerSetup {
    pub(crate) env: Vec<EnvOp>,
    pub(crate) rlimits: Vec<(Resource, u64, u64)>,
    pub(crate) cwd: Option<PathBuf>,
    /// One set for every worker, or one per worker slot.
    pub(crate) cpu_ids: Vec<Vec<usize>>,
    /// stdout and stderr of every worker, opened when the pool is built.
    pub(crate) streams: [Option<WorkerStream>; 2],
}

/// Where a stream of every worker of a pool goes: opened once, when the
/// pool is built, and shared (each worker, replacements too, gets a
/// duplicate, so they write at one offset and a replacement does not
/// truncate what the others wrote).
#[derive(Clone, Debug)]
pub(crate) enum WorkerStream {
    Null,
    Fd(std::sync::Arc<OwnedFd>),
}

impl WorkerStream {
    /// Opens `to` for the workers' `name` (stdout, stderr); `None` for
    /// inherit. A capture cannot be shared: `InvalidArgument`.
    pub(crate) fn open(to: Stdio, name: &str) -> Result<Option<Self>> {
        Ok(Some(match to {
            Stdio::Inherit => return Ok(None),
            Stdio::Null => WorkerStream::Null,
            Stdio::File(path) => WorkerStream::Fd(std::sync::Arc::new(
                std::fs::File::create(&path)
                    .map_err(|e| {
                        Error::io(
                            format!(
                                "could not create {} for the workers' {name}",
                                path.display()
                            ),
                            e,
                        )
                    })?
                    .into(),
            )),
            Stdio::Fd(fd) => WorkerStream::Fd(std::sync::Arc::new(fd)),
            Stdio::Capture => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "a pool's workers cannot capture their {name}: capture is per process; give them a \
                         file (they share it) or a pipe's write end"
                    ),
                ));
            }
        }))
    }

    /// What one worker gets.
    pub(crate) fn for_worker(&self) -> Result<Stdio> {
        match self {
            WorkerStream::Null => Ok(Stdio::Null),
            WorkerStream::Fd(fd) => fd
                .try_clone()
                .map(Stdio::Fd)
                .map_err(|e| Error::io("could not duplicate the workers' output descriptor", e)),
        }
    }
}

impl WorkerSetup {
    /// The config of the worker in `slot` (a replacement takes its
    /// predecessor's slot, so its CPUs too).
    pub(crate) fn config(&self, slot: usize) -> ChildConfig {
        ChildConfig {
            env: self.env.clone(),
            rlimits: self.rlimits.clone(),
            cwd: self.cwd.clone(),
            cpus: match self.cpu_ids.len() {
                0 => None,
                n => Some(self.cpu_ids[slot % n].clone()),
            },
            ..ChildConfig::default()
        }
    }
}

/// What the builder collected: the config plus the streams not yet opened.
#[derive(Debug, Default)]
pub(crate) struct Setup {
    pub(crate) config: ChildConfig,
    pub(crate) stdout: Option<Stdio>,
    pub(crate) stderr: Option<Stdio>,
}

fn setup_error(what: String) -> Error {
    Error::new(ErrorKind::ChildSetup, what)
}

impl Setup {
    /// Turns each [`Stdio::Capture`] into an in-memory file: the child's
    /// stream gets a copy of it, and the copies returned (stdout, stderr)
    /// are the parent's, to read what the child wrote. Call before
    /// [`open`](Setup::open).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the file or its copy cannot be made.
    pub(crate) fn make_captures(&mut self) -> Result<[Option<OwnedFd>; 2]> {
        let mut captured = [None, None];
        for (i, stream) in [&mut self.stdout, &mut self.stderr].into_iter().enumerate() {
            if matches!(stream, Some(Stdio::Capture)) {
                let name = ["multiproc-stdout", "multiproc-stderr"][i];
                let fd = sys::shm::memfd(name, 0).map_err(|e| {
                    Error::io("could not make an in-memory file for captured output", e)
                })?;
                let theirs = sys::socket::dup(fd.as_fd())
                    .map_err(|e| Error::io("could not duplicate a descriptor", e))?;
                *stream = Some(Stdio::Fd(theirs));
                captured[i] = Some(fd);
            }
        }
        Ok(captured)
    }

    /// Checks the config and opens the streams, in the parent: returns the
    /// config to send and the descriptors to go with it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for an environment name that is
    /// empty or holds `=` or NUL (or a value with NUL), a soft limit above
    /// the hard one, an empty CPU set or a CPU number past the kernel's set size;
    /// [`ErrorKind::Io`] when a file or `/dev/null` cannot be opened (the
    /// message names the path).
    pub(crate) fn open(self) -> Result<(ChildConfig, Vec<OwnedFd>)> {
        let mut config = self.config;
        for &(r, soft, hard) in &config.rlimits {
            if soft > hard {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{r}: the soft limit {soft} is above the hard limit {hard}"),
                ));
            }
        }
        for op in &config.env {
            let (key, value) = match op {
                EnvOp::Set(k, v) => (k, Some(v)),
                EnvOp::Remove(k) => (k, None),
                EnvOp::Clear => continue,
            };
            let bytes = key.as_encoded_bytes();
            let bad_value = value.is_some_and(|v| v.as_encoded_bytes().contains(&0));
            if bytes.is_empty() || bytes.contains(&b'=') || bytes.contains(&0) || bad_value {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "{key:?} cannot be set in an environment: a name must be non-empty and hold \
                         no '=' or NUL, a value no NUL"
                    ),
                ));
            }
        }
        if let Some(cpus) = &config.cpus {
            if cpus.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "an empty CPU affinity set: a process must be allowed at least one CPU",
                ));
            }
            if let Some(&c) = cpus.iter().find(|&&c| c >= sys::setup::MAX_CPUS) {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "CPU {c} is past the largest CPU number the kernel's affinity set holds ({})",
                        sys::setup::MAX_CPUS - 1
                    ),
                ));
            }
        }
        if let Some(dir) = &config.cwd {
            // Relative to this process's directory, not the fork server's.
            if let Ok(abs) = std::path::absolute(dir) {
                config.cwd = Some(abs);
            }
        }
        let mut fds = Vec::new();
        for (i, (stream, name)) in [(self.stdout, "stdout"), (self.stderr, "stderr")]
            .into_iter()
            .enumerate()
        {
            let fd = match stream {
                None | Some(Stdio::Inherit) => continue,
                Some(Stdio::Null) => sys::setup::open_null()
                    .map_err(|e| Error::io(format!("could not open /dev/null for {name}"), e))?,
                Some(Stdio::File(path)) => std::fs::File::create(&path)
                    .map_err(|e| {
                        Error::io(format!("could not create {} for {name}", path.display()), e)
                    })?
                    .into(),
                Some(Stdio::Fd(fd)) => fd,
                // Turned into a descriptor by `make_captures` first; a
                // config that skipped it captures nothing.
                Some(Stdio::Capture) => continue,
            };
            config.redirect[i] = true;
            fds.push(fd);
        }
        Ok((config, fds))
    }
}

/// How many descriptors travel with `config`.
pub(crate) fn fd_count(config: &ChildConfig) -> usize {
    config.redirect.iter().filter(|r| **r).count()
}

/// Applies `config` in the child, before its target runs; `fds` are the
/// streams' descriptors ([`Setup::open`]). Call only while the child has
/// one thread.
///
/// # Errors
///
/// [`ErrorKind::ChildSetup`], naming the step that failed and the OS's
/// reason.
pub(crate) fn apply(config: &ChildConfig, fds: Vec<OwnedFd>) -> Result<()> {
    let mut fds = fds.into_iter();
    for (i, name) in ["stdout", "stderr"].into_iter().enumerate() {
        if config.redirect[i] {
            let fd = fds
                .next()
                .ok_or_else(|| setup_error(format!("the descriptor for {name} is missing")))?;
            sys::setup::dup_onto(fd.as_fd(), i as u8 + 1)
                .map_err(|e| setup_error(format!("could not redirect {name}: {e}")))?;
        }
    }
    for op in &config.env {
        match op {
            EnvOp::Set(k, v) => sys::setup::set_env(k, v),
            EnvOp::Remove(k) => sys::setup::remove_env(k),
            EnvOp::Clear => sys::setup::clear_env(),
        }
    }
    if let Some(dir) = &config.cwd {
        sys::setup::chdir(dir).map_err(|e| {
            setup_error(format!(
                "could not change the working directory to {}: {e}",
                dir.display()
            ))
        })?;
    }
    for &(r, soft, hard) in &config.rlimits {
        sys::setup::set_rlimit(r as u8, soft, hard).map_err(|e| {
            let show = |v: u64| {
                if v == u64::MAX {
                    "unlimited".to_string()
                } else {
                    v.to_string()
                }
            };
            setup_error(format!(
                "could not set {r} to soft {} / hard {}: {e}",
                show(soft),
                show(hard)
            ))
        })?;
    }
    if let Some(cpus) = &config.cpus {
        sys::setup::set_affinity(cpus)
            .map_err(|e| setup_error(format!("could not set the CPU affinity to {cpus:?}: {e}")))?;
    }
    Ok(())
}
