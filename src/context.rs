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

use crate::process::{Process, ProcessBuilder};
use crate::task::Task;

pub use crate::runtime::forkserver::{Preload, preload, set_forkserver_preload};
pub use crate::runtime::method::{
    StartMethod, force_start_method, get_all_start_methods, get_start_method, set_start_method,
};

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
    pub fn process<F: Task<M>, M>(&self, target: F, args: F::Args) -> ProcessBuilder<F, M> {
        Process::new(target, args).start_method(self.method)
    }
}
