//! Start methods and contexts: how a child process comes to exist.
//!
//! | method | how | cost here | closures that capture |
//! |---|---|---|---|
//! | [`Forkserver`](StartMethod::Forkserver) (default) | a single-threaded copy of the program, executed once, forks each child | a fork | no |
//! | [`Spawn`](StartMethod::Spawn) | the program is executed again for each child | an exec | no |
//! | [`Fork`](StartMethod::Fork) | this process forks | a fork of this process | yes |
//!
//! The default is `Forkserver`, as in Python 3.14: children start fast, and
//! never inherit a lock that another thread of the parent held.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind, Result};
use crate::process::{Process, ProcessBuilder};
use crate::runtime;
use crate::target::Target;

/// How child processes are started. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StartMethod {
    /// Fork this process: the child is a copy of the parent, closures and
    /// all. Refused while the process has other threads.
    Fork = 0,
    /// Execute this program again for each child.
    Spawn = 1,
    /// Ask the fork server, a single-threaded copy of this program started
    /// on first use, to fork the child. The default.
    Forkserver = 2,
}

impl StartMethod {
    /// The name Python uses: `"fork"`, `"spawn"` or `"forkserver"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::Forkserver => "forkserver",
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        [
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::Forkserver,
        ]
        .into_iter()
        .find(|m| *m as u8 == v)
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        get_all_start_methods()
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Io,
                    format!("unknown start method {s:?}: use fork, spawn or forkserver"),
                )
            })
    }
}

/// The start methods this platform has, the default first (Python's
/// `get_all_start_methods()`).
pub fn get_all_start_methods() -> [StartMethod; 3] {
    [
        StartMethod::Forkserver,
        StartMethod::Spawn,
        StartMethod::Fork,
    ]
}

/// The start method new processes use when none is chosen: the one set
/// with [`set_start_method`], else [`StartMethod::Forkserver`].
pub fn get_start_method() -> StartMethod {
    runtime::with_state(|s| s.start_method).unwrap_or(StartMethod::Forkserver)
}

/// Sets the default start method for this process, once.
///
/// # Errors
///
/// [`ErrorKind::ContextAlreadySet`] if it was already set (as Python raises
/// `RuntimeError`); use [`force_start_method`] to change it anyway.
pub fn set_start_method(method: StartMethod) -> Result<()> {
    runtime::with_state(|s| match s.start_method {
        Some(current) => Err(Error::new(
            ErrorKind::ContextAlreadySet,
            format!("the start method was already set to {current}"),
        )),
        None => {
            s.start_method = Some(method);
            Ok(())
        }
    })
}

/// Sets the default start method even if it was set before (Python's
/// `set_start_method(method, force=True)`).
pub fn force_start_method(method: StartMethod) {
    runtime::with_state(|s| s.start_method = Some(method));
}

/// A start method to create processes with, without changing the default
/// (Python's `get_context(method)`).
///
/// ```
/// # multiproc::init();
/// let ctx = multiproc::get_context(multiproc::StartMethod::Spawn);
/// let p = ctx.process(|x: u32| x + 1, 41).start()?;
/// assert_eq!(p.join()?, 42);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

/// A start method bundled with the ways to create processes under it. Made
/// by [`get_context`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Context {
    /// The context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// [`Process::new`] with this context's start method.
    pub fn process<F: Target<M> + Copy, M>(
        &self,
        target: F,
        args: F::Args,
    ) -> ProcessBuilder<F, M> {
        Process::new(target, args).start_method(self.method)
    }
}
