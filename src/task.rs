//! [`Task`]: what a pool worker or a new program can run, and [`partial`],
//! which gives a function values to take along (Python's
//! `functools.partial`).
//!
//! A function item or a closure that captures nothing is zero-sized: a new
//! process has its code, finds it by address (`sys::image`) and makes the
//! value out of nothing. A closure's captured values are not there, so a
//! capturing closure cannot travel; [`partial`] makes one that can: the
//! values are serde data, the function is still zero-sized, and the two
//! travel apart — to a new process with its arguments, to pool workers
//! once per call (with the function, not with every chunk).

use serde::Serialize;
use serde::de::DeserializeOwned;

use std::os::fd::OwnedFd;

use crate::codec::{self, Encoded, NoFds};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::worker::{self, TaskFn};
use crate::runtime::child;
use crate::runtime::protocol::{ChildIo, Entry};
use crate::target::Target;

/// A [`Target`] that a new process can run: a function item, a closure
/// that captures nothing, or a [`Partial`] (a function with values given
/// to it).
///
/// [`Pool`](crate::Pool) methods and [`Process::new`](crate::Process::new)
/// take a `Task`. It is implemented by the crate only (its methods are
/// hidden); the `Marker` parameter is inferred, as [`Target`]'s.
///
/// A closure that captures variables is rejected when the program is built
/// by the pool (a compile-time assertion names [`partial`]), and at
/// [`start`](crate::ProcessBuilder::start) by a process under spawn or
/// forkserver (it works under fork, whose child is a copy of this process).
pub trait Task<Marker>: Target<Marker> + Sized {
    /// The child's entry point for this task (decodes what
    /// [`__encode`](Task::__encode) made).
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn __entry() -> Entry;

    /// A new process's arguments: `args`, with the captured values if any.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn __encode(&self, args: &Self::Args) -> Result<Encoded>;

    /// Whether a new program can make the target again (a capturing
    /// closure cannot).
    #[doc(hidden)]
    fn __travels() -> bool;

    /// The pool's task function and, for a [`Partial`], its values.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn __pool_task(&self) -> Result<PoolTask>;
}

/// What a pool sends its workers for one call.
pub(crate) struct PoolTask {
    pub(crate) task: TaskFn,
    /// The postcard bytes of a [`Partial`]'s values.
    pub(crate) captured: Option<Vec<u8>>,
}

/// Fails the build if a pool task captures variables.
#[inline(always)]
pub(crate) fn assert_no_captures<F>() {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a pool task must be a function or a closure that captures nothing: the workers are other \
             processes that have its code but not its captured values. Give values with \
             multiproc::partial(|k, x| ..., k), or pass them in the arguments"
        )
    }
}

impl<F: Target<M> + Copy, M> Task<M> for F {
    #[allow(private_interfaces)]
    fn __entry() -> Entry {
        child::trampoline::<F, M>
    }

    #[allow(private_interfaces)]
    fn __encode(&self, args: &Self::Args) -> Result<Encoded> {
        codec::encode(args)
    }

    fn __travels() -> bool {
        std::mem::size_of::<F>() == 0
    }

    #[allow(private_interfaces)]
    fn __pool_task(&self) -> Result<PoolTask> {
        assert_no_captures::<F>();
        Ok(PoolTask {
            task: worker::task_entry::<F, M>,
            captured: None,
        })
    }
}

/// A function with values given to it, made by [`partial`]: it runs as
/// `f(&values, args)` in a pool worker or a new process, under every start
/// method.
#[derive(Clone, Debug)]
pub struct Partial<F, C> {
    f: F,
    values: C,
}

/// Gives function `f` the values it needs, so that it can run in a pool
/// worker or a new process: `f(&values, args)` runs there. This is Python's
/// `functools.partial`, and what a closure's captures would be if they
/// could travel.
///
/// `values` is any serde value (a tuple for several); `f` is a function or
/// a closure that captures nothing and takes `&values` first, then the
/// task's argument (a tuple for several, as for any [`Target`]):
///
/// ```
/// # multiproc::init();
/// use multiproc::{Pool, partial};
/// let pool = Pool::new(2)?;
/// let (offset, scale) = (10u64, 3u64);
/// let out = pool.map(partial(|&(offset, scale), x: u64| offset + scale * x, (offset, scale)), 0..4)?;
/// assert_eq!(out, [10, 13, 16, 19]);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A pool sends the values to each worker once per call, which decodes
/// them once and lends them to every item; a process gets them with its
/// arguments. A big value used by many calls is better built once per
/// worker (a [worker state](crate::PoolBuilder::worker_state)).
///
/// A closure that captures variables does not build; neither does
/// `partial` with one:
///
/// ```compile_fail,E0080
/// # multiproc::init();
/// let pool = multiproc::Pool::new(1)?;
/// let k = 3u64;
/// pool.map(move |x: u64| x + k, 0..3)?; // error: a pool task must be a function or ...
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
///
/// None here. Where the values go: [`ErrorKind::Encode`](crate::ErrorKind::Encode)
/// from the pool call if they cannot be encoded, or if they hold
/// descriptors (a `Queue`, `Lock`, pipe end: give those to the pool's
/// initializer or in the arguments); a process's values may hold
/// descriptors, as its arguments may.
pub fn partial<F, C, A, R>(f: F, values: C) -> Partial<F, C>
where
    F: Fn(&C, A) -> R + Copy + 'static,
    C: Serialize + DeserializeOwned + 'static,
{
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "the function given to multiproc::partial must capture nothing: give it every value it needs \
             in partial's second argument"
        )
    }
    Partial { f, values }
}

impl<F, C> Partial<F, C> {
    /// The values given to the function.
    pub fn values(&self) -> &C {
        &self.values
    }
}

impl<F, C, A, R> Target<(fn(A) -> R,)> for Partial<F, C>
where
    F: Fn(&C, A) -> R + Copy + 'static,
    C: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    type Args = A;
    type Output = R;
    fn call(self, args: A) -> R {
        (self.f)(&self.values, args)
    }
}

impl<F, C, A, R> Task<(fn(A) -> R,)> for Partial<F, C>
where
    F: Fn(&C, A) -> R + Copy + 'static,
    C: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    #[allow(private_interfaces)]
    fn __entry() -> Entry {
        partial_trampoline::<F, C, A, R>
    }

    #[allow(private_interfaces)]
    fn __encode(&self, args: &A) -> Result<Encoded> {
        codec::encode(&(&self.values, args))
    }

    fn __travels() -> bool {
        true
    }

    #[allow(private_interfaces)]
    fn __pool_task(&self) -> Result<PoolTask> {
        let mut values = Vec::new();
        codec::append_plain(&self.values, &mut values, NoFds::PoolCaptured)?;
        Ok(PoolTask {
            task: worker::partial_entry::<F, C, A, R>,
            captured: Some(values),
        })
    }
}

/// The child's [`Entry`] for a [`Partial`]: the function is made (it is
/// zero-sized), its values and arguments decoded, and it runs. A
/// registered entry point: an [`Entry`], in `sys::image::Entries`.
// Placement only; the section holds functions of this signature alone
// (`sys::image::Section`'s contract).
#[allow(unsafe_code)]
#[unsafe(link_section = "multiproc_entry")]
fn partial_trampoline<F, C, A, R>(
    io: &ChildIo,
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
) -> std::result::Result<(), Error>
where
    F: Fn(&C, A) -> R + Copy + 'static,
    C: Serialize + DeserializeOwned + 'static,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    let f = crate::sys::image::conjure::<F>().ok_or_else(|| {
        Error::new(
            ErrorKind::CapturingClosure,
            "the function given to partial captures state and cannot be rebuilt in a new process",
        )
    })?;
    let (values, args) = codec::decode::<(C, A)>(&bytes, fds)?;
    child::run_target(Partial { f, values }, args, io)
}
