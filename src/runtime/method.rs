//! The start method: which of the three ways children come to exist, and
//! the process-wide default (Python's `set_start_method`).

use std::fmt;
use std::str::FromStr;

use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, ErrorKind, Result};

/// The default start method of this process: a [`StartMethod`] as `u8`,
/// or [`UNSET`]. Inherited by forked children (as memory) and by executed
/// ones (in their start-up message, see [`inherit`]).
static DEFAULT: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = u8::MAX;

/// Takes over the parent's default start method, in a new child.
pub(crate) fn inherit(method: Option<StartMethod>) {
    DEFAULT.store(method.map_or(UNSET, |m| m as u8), Ordering::Release);
}

/// The default set in this process, if one was.
pub(crate) fn chosen() -> Option<StartMethod> {
    StartMethod::from_u8(DEFAULT.load(Ordering::Acquire))
}

/// How child processes are started. See [`crate::context`].
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
                    ErrorKind::InvalidArgument,
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
    chosen().unwrap_or(StartMethod::Forkserver)
}

/// Sets the default start method for this process, once.
///
/// # Errors
///
/// [`ErrorKind::ContextAlreadySet`] if it was already set (as Python raises
/// `RuntimeError`); use [`force_start_method`] to change it anyway.
pub fn set_start_method(method: StartMethod) -> Result<()> {
    match DEFAULT.compare_exchange(UNSET, method as u8, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(()),
        Err(current) => Err(Error::new(
            ErrorKind::ContextAlreadySet,
            format!(
                "the start method was already set to {}",
                StartMethod::from_u8(current).map_or("?", StartMethod::name)
            ),
        )),
    }
}

/// Sets the default start method even if it was set before (Python's
/// `set_start_method(method, force=True)`).
pub fn force_start_method(method: StartMethod) {
    DEFAULT.store(method as u8, Ordering::Release);
}
