//! Process pools: Python's `multiprocessing.Pool`, which never hangs when a
//! worker dies.
//!
//! ```
//! # multiproc::init();
//! use multiproc::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! fn add(a: u64, b: u64) -> u64 {
//!     a + b
//! }
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
//! let r = pool.apply_async(add, (1, 2))?; // several arguments: a tuple
//! assert_eq!(r.get()?, 3);
//! let mut sum = 0;
//! for item in pool.imap_unordered(square, 0..100)? {
//!     sum += item?;
//! }
//! assert_eq!(sum, 328_350);
//! pool.close();
//! pool.join()?;
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # How it works
//!
//! Each worker is a [`Process`](crate::Process) running a loop, with its
//! own socket pair to the pool. Tasks travel in chunks: consecutive items
//! of one call, encoded with postcard. The task function is named to each
//! worker once (like `Process` names a function across `exec`), then by a
//! small id. Several chunks are in flight per worker, so a worker never
//! waits for the pool between chunks, and it answers in batches.
//!
//! The pool knows which items it sent to which worker, in order, and each
//! worker counts the items it starts in a page of memory shared with the
//! pool. When a worker dies, the item it was running fails with an error
//! that names the item and how the worker died ([`ErrorKind::WorkerLost`],
//! or [`ErrorKind::Timeout`] when the pool killed it for passing its time
//! limit); the items it had not started go to the other workers, and a new
//! worker takes its place.
//!
//! There is no background thread: the thread that waits on the pool (in
//! `map`, `get`, `join`, an `imap` iterator's `next`) does the pool's work
//! meanwhile — sending chunks, reading results, noticing dead workers — in
//! one `poll(2)` over the workers' sockets and pidfds. So callbacks run in
//! the thread that waits, and the fork start method can replace dead
//! workers (it refuses to fork a process that has other threads). Details
//! and measurements are in `src/pool/README.md`.
//!
//! # Python's names
//!
//! | Python | multiproc |
//! |---|---|
//! | `Pool(processes, initializer, initargs, maxtasksperchild)` | [`Pool::new(n)`](Pool::new), [`Pool::builder()`] |
//! | `apply(f, args)`, `apply_async(f, args, callback, error_callback)` | [`Pool::apply`], [`Pool::apply_async`], [`Pool::apply_async_with`] |
//! | `map`, `map_async`, `starmap`, `starmap_async` | [`Pool::map`], [`Pool::map_async`], [`Pool::starmap`], [`Pool::starmap_async`] (a multi-argument function takes tuples) |
//! | `imap`, `imap_unordered` | [`Pool::imap`], [`Pool::imap_unordered`]: iterators of `Result` |
//! | `chunksize=n` | [`Pool::chunksize(n)`](Pool::chunksize)`.map(..)` |
//! | `AsyncResult.get(timeout)`, `wait`, `ready`, `successful` | [`AsyncResult`] |
//! | `close`, `terminate`, `join`, `with Pool() as p:` | same; dropping the pool terminates it |

mod core;
pub(crate) mod frame;
mod progress;
pub(crate) mod worker;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::StartMethod;
use crate::error::{Error, ErrorKind, Result};
use crate::target::Target;

use self::core::{Callback, Chunk, Config, Core, PoolState, Sink};
use self::progress::Progress;

/// How long one thread drives the pool before letting another have a turn.
const SLICE: Duration = Duration::from_millis(20);

/// What every thread that uses the pool shares.
struct Shared {
    core: Mutex<Core>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Does the pool's work until `check` returns `Some`, or `deadline`
    /// passes (`Ok(None)`). Callbacks run with the lock released.
    fn drive<T>(
        &self,
        deadline: Option<Instant>,
        mut check: impl FnMut(&mut Core) -> Option<T>,
    ) -> Result<Option<T>> {
        loop {
            let (outcome, due) = {
                let mut core = self.lock();
                let outcome = if let Some(t) = check(&mut core) {
                    Some(Ok(Some(t)))
                } else {
                    let now = Instant::now();
                    match deadline {
                        Some(d) if now >= d => Some(Ok(None)),
                        _ => {
                            let wait = deadline.map_or(SLICE, |d| (d - now).min(SLICE));
                            match core.pump(wait) {
                                Ok(()) => None,
                                // What the failure delivered may be what we wait for.
                                Err(e) => Some(match check(&mut core) {
                                    Some(t) => Ok(Some(t)),
                                    None => Err(e),
                                }),
                            }
                        }
                    }
                };
                (outcome, std::mem::take(&mut core.due))
            };
            run(due);
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }

    /// One round of work without waiting.
    fn poke(&self) {
        let due = {
            let mut core = self.lock();
            let _ = core.pump(Duration::ZERO);
            std::mem::take(&mut core.due)
        };
        run(due);
    }
}

fn run(due: Vec<Callback>) {
    for callback in due {
        callback();
    }
}

fn check_target<F>() -> Result<()> {
    if std::mem::size_of::<F>() != 0 {
        return Err(Error::new(
            ErrorKind::CapturingClosure,
            "a pool task must be a function or a closure that captures nothing: the workers are other \
             processes that have the function's code but not the captured values. Pass the values as \
             arguments (a tuple for several)",
        ));
    }
    Ok(())
}

fn task_fn<F: Target<M> + Copy, M>() -> worker::TaskFn {
    worker::task_entry::<F, M>
}

fn describe<F>(call: &str) -> String {
    format!("{call}({})", std::any::type_name::<F>())
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Make one with [`Pool::new`] or [`Pool::builder`]; give it work with
/// [`map`](Pool::map), [`imap`](Pool::imap),
/// [`imap_unordered`](Pool::imap_unordered),
/// [`apply_async`](Pool::apply_async) and the rest; finish with
/// [`close`](Pool::close) and [`join`](Pool::join).
///
/// Task functions are function items or closures that capture nothing
/// (workers are other processes); arguments and results are serde types.
/// A function of several arguments takes a tuple.
///
/// **Dropping the pool terminates it**, as leaving Python's `with Pool()`
/// block does: the workers are killed, and tasks still waiting fail with
/// [`ErrorKind::PoolClosed`]. Call `close()` and `join()` first to let the
/// work finish.
///
/// The pool is `Send` and `Sync`. Its work is done by whichever thread
/// waits on it; threads that use it at the same time take turns.
pub struct Pool {
    shared: Arc<Shared>,
    processes: usize,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Options for a [`Pool`]: made by [`Pool::builder`], ended by
/// [`build`](PoolBuilder::build).
#[must_use = "a PoolBuilder does nothing until build() is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    method: Option<StartMethod>,
    init: Option<Result<(worker::TaskRef, Vec<u8>)>>,
    max_tasks: Option<u64>,
    timeout: Option<Duration>,
    max_memory: Option<u64>,
    progress: bool,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("method", &self.method)
            .field("max_tasks", &self.max_tasks)
            .field("timeout", &self.timeout)
            .field("max_memory", &self.max_memory)
            .finish()
    }
}

impl PoolBuilder {
    /// How many worker processes (default [`cpu_count()`](crate::cpu_count),
    /// which respects the affinity mask and cgroup quota).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// How the workers start (default: [`get_start_method`](crate::get_start_method)).
    /// With fork, the pool can replace a worker only while this process
    /// has no other threads.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Runs `f(args)` in every worker when it starts (Python's `initializer`
    /// and `initargs`). If it panics, the pool stops: every task fails with
    /// the initializer's panic message, instead of Python's endless restarts.
    pub fn initializer<F, M>(mut self, _f: F, args: F::Args) -> Self
    where
        F: Target<M> + Copy,
    {
        self.init = Some(check_target::<F>().and_then(|()| {
            let mut bytes = Vec::new();
            frame::append(&args, &mut bytes).map_err(|e| {
                Error::new(
                    ErrorKind::Encode,
                    "could not encode the initializer's arguments",
                )
                .with_source(e)
            })?;
            Ok((worker::TaskRef::new(task_fn::<F, M>()), bytes))
        }));
        self
    }

    /// Replaces each worker after it has run `n` tasks (Python's
    /// `maxtasksperchild`; as there, a chunk of a `map` counts as one task).
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.max_tasks = Some(n.max(1));
        self
    }

    /// A time limit for every task: a task still running after `limit` is
    /// stopped by killing its worker, fails with [`ErrorKind::Timeout`], and
    /// the worker is replaced. The limit is per item, also inside chunks.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Recycles a worker, between tasks, once its resident memory passes
    /// `bytes` (checked at most every 5 ms). The tasks it held are given to
    /// other workers; none fails.
    pub fn max_memory_per_worker(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// Draws a progress bar (count, rate, ETA) on stderr for `map` and
    /// `imap` calls that last more than half a second, when stderr is a
    /// terminal. Needs the `progress` feature (on by default); without it
    /// this does nothing.
    pub fn progress_bar(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::InvalidArgument`]: 0 processes.
    /// - [`ErrorKind::CapturingClosure`], [`ErrorKind::Encode`]: an
    ///   initializer that cannot travel.
    /// - Whatever [`ProcessBuilder::start`](crate::ProcessBuilder::start)
    ///   fails with (for example [`ErrorKind::NotInitialized`] without
    ///   `multiproc::init()`).
    pub fn build(self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a pool needs at least one process",
            ));
        }
        let init = self.init.transpose()?;
        let core = Core::new(Config {
            processes,
            method: self.method,
            init,
            max_tasks: self.max_tasks,
            timeout: self.timeout,
            max_memory: self.max_memory,
            progress: self.progress,
        })?;
        Ok(Pool {
            shared: Arc::new(Shared {
                core: Mutex::new(core),
            }),
            processes,
        })
    }
}

/// What [`Pool::stats`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Worker processes alive now.
    pub workers: usize,
    /// Tasks that returned a value.
    pub tasks_done: u64,
    /// Tasks that failed: panicked, timed out, or died with their worker.
    pub tasks_failed: u64,
    /// Tasks running in a worker now.
    pub tasks_running: u64,
    /// Tasks waiting to be sent to a worker.
    pub tasks_queued: u64,
    /// Workers started to replace one that exited (died, timed out, or
    /// retired after `maxtasksperchild` or its memory cap).
    pub worker_restarts: u64,
}

impl Pool {
    /// A pool of `processes` workers with default options.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder for the options: process count, initializer,
    /// `maxtasksperchild`, start method, time limit, memory cap, progress.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            method: None,
            init: None,
            max_tasks: None,
            timeout: None,
            max_memory: None,
            progress: false,
        }
    }

    /// How many worker processes the pool keeps.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// Counters: tasks done, failed, running, queued; worker restarts.
    pub fn stats(&self) -> PoolStats {
        let core = self.shared.lock();
        PoolStats {
            workers: core.workers_alive(),
            tasks_done: core.counters.done,
            tasks_failed: core.counters.failed,
            tasks_running: core.running(),
            tasks_queued: core.queued(),
            worker_restarts: core.counters.restarts,
        }
    }

    /// Runs `f(args)` in a worker and returns its result (Python's `apply`).
    ///
    /// # Errors
    ///
    /// As [`AsyncResult::get`]; [`ErrorKind::PoolClosed`] after `close` or
    /// `terminate`; [`ErrorKind::CapturingClosure`] for a closure that
    /// captures variables.
    pub fn apply<F, M>(&self, f: F, args: F::Args) -> Result<F::Output>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Starts `f(args)` in a worker and returns at once (Python's
    /// `apply_async`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::PoolClosed`] after `close` or `terminate`;
    /// [`ErrorKind::CapturingClosure`]; [`ErrorKind::Encode`] if `args`
    /// cannot be encoded. The task's own failure comes from
    /// [`AsyncResult::get`].
    pub fn apply_async<F, M>(&self, _f: F, args: F::Args) -> Result<AsyncResult<F::Output>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
    {
        self.submit_async::<F, M, F::Output, _>(
            "apply_async",
            std::iter::once(args),
            1,
            |mut v| v.pop().expect("one item"),
            None,
            None,
        )
    }

    /// [`apply_async`](Pool::apply_async) with callbacks: `callback` gets
    /// the result, `error_callback` the error. They run in the thread that
    /// waits on the pool when the result arrives (in `get`, `wait`, `join`,
    /// or any other call that waits), before that call returns.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async).
    pub fn apply_async_with<F, M, C, E>(
        &self,
        _f: F,
        args: F::Args,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        C: FnOnce(&F::Output) + Send + 'static,
        E: FnOnce(&Error) + Send + 'static,
    {
        self.submit_async::<F, M, F::Output, _>(
            "apply_async",
            std::iter::once(args),
            1,
            |mut v| v.pop().expect("one item"),
            Some(Box::new(callback)),
            Some(Box::new(error_callback)),
        )
    }

    /// Applies `f` to every item of `input` and returns the results in
    /// order (Python's `map`). A function of several arguments takes tuples
    /// (that is `starmap`).
    ///
    /// An input of known length is cut into chunks of
    /// ceil(len / (4 × processes)) items, Python's rule; otherwise chunks
    /// adapt to how long items take. The input is read as work goes out,
    /// never all at once.
    ///
    /// # Errors
    ///
    /// The first task that fails (in input order of discovery): its panic
    /// ([`ErrorKind::Panicked`]), its worker's death
    /// ([`ErrorKind::WorkerLost`]), its time limit ([`ErrorKind::Timeout`]),
    /// [`ErrorKind::Encode`]/[`ErrorKind::Decode`]. The rest of the call is
    /// then cancelled. Use [`imap`](Pool::imap) to get every task's own
    /// result. Also [`ErrorKind::PoolClosed`], [`ErrorKind::Interrupted`],
    /// [`ErrorKind::CapturingClosure`].
    pub fn map<F, M, I>(&self, f: F, input: I) -> Result<Vec<F::Output>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        self.chunking(None).map(f, input)
    }

    /// Python's `starmap`: [`map`](Pool::map) over tuples of arguments.
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<F, M, I>(&self, f: F, input: I) -> Result<Vec<F::Output>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        self.map(f, input)
    }

    /// Starts a [`map`](Pool::map) and returns at once (Python's
    /// `map_async`). The input is read and encoded now.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async); the tasks' failures come from
    /// [`AsyncResult::get`] (the first one, which also cancels the rest).
    pub fn map_async<F, M, I>(&self, f: F, input: I) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        self.chunking(None).map_async(f, input)
    }

    /// [`map_async`](Pool::map_async) with callbacks, as
    /// [`apply_async_with`](Pool::apply_async_with).
    ///
    /// # Errors
    ///
    /// As [`map_async`](Pool::map_async).
    pub fn map_async_with<F, M, I, C, E>(
        &self,
        _f: F,
        input: I,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
        C: FnOnce(&Vec<F::Output>) + Send + 'static,
        E: FnOnce(&Error) + Send + 'static,
    {
        let input: Vec<F::Args> = input.into_iter().collect();
        let cs = python_chunksize(input.len(), self.processes);
        self.submit_async::<F, M, Vec<F::Output>, _>(
            "map_async",
            input,
            cs,
            |v| v,
            Some(Box::new(callback)),
            Some(Box::new(error_callback)),
        )
    }

    /// Python's `starmap_async`: [`map_async`](Pool::map_async) over tuples.
    ///
    /// # Errors
    ///
    /// As [`map_async`](Pool::map_async).
    pub fn starmap_async<F, M, I>(&self, f: F, input: I) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        self.map_async(f, input)
    }

    /// An iterator over `f(item)` for every item of `input`, in order, each
    /// a `Result` of its own (Python's `imap`). The input is pulled lazily
    /// with a bounded number of tasks in flight, so an endless iterator
    /// streams through; dropping the iterator cancels what was not sent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::PoolClosed`], [`ErrorKind::CapturingClosure`] at once;
    /// each task's failure as its item.
    pub fn imap<F, M, I>(&self, f: F, input: I) -> Result<IMap<'_, I::IntoIter, F::Output>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        self.chunking(None).imap(f, input)
    }

    /// Like [`imap`](Pool::imap), in the order tasks finish (Python's
    /// `imap_unordered`).
    ///
    /// # Errors
    ///
    /// As [`imap`](Pool::imap).
    pub fn imap_unordered<F, M, I>(
        &self,
        f: F,
        input: I,
    ) -> Result<IMap<'_, I::IntoIter, F::Output>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        self.chunking(None).imap_unordered(f, input)
    }

    /// Python's `chunksize=n`: `pool.chunksize(1).map(f, xs)` sends items
    /// `n` at a time.
    pub fn chunksize(&self, n: usize) -> Chunked<'_> {
        self.chunking(Some(n.max(1)))
    }

    fn chunking(&self, chunksize: Option<usize>) -> Chunked<'_> {
        Chunked {
            pool: self,
            chunksize,
        }
    }

    #[allow(clippy::type_complexity)]
    fn submit_async<F, M, Out, I>(
        &self,
        call: &str,
        input: I,
        chunksize: usize,
        finish: fn(Vec<F::Output>) -> Out,
        callback: Option<Box<dyn FnOnce(&Out) + Send>>,
        error_callback: Option<Box<dyn FnOnce(&Error) + Send>>,
    ) -> Result<AsyncResult<Out>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        Out: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        check_target::<F>()?;
        let slot = Arc::new(Slot {
            value: Mutex::new(None),
            done: AtomicBool::new(false),
        });
        let sink = SlotSink::<F::Output, Out> {
            items: Vec::new(),
            error: None,
            slot: slot.clone(),
            finish,
            callback,
            error_callback,
        };
        {
            let mut core = self.shared.lock();
            if let Some(e) = core.refuse() {
                return Err(e);
            }
            let func = core.func_id(task_fn::<F, M>());
            let job = core.new_job(Box::new(sink), describe::<F>(call));
            let mut index = 0u64;
            let mut chunk = Chunk::new(job, func, 0);
            for args in input {
                if let Err(e) = chunk.push(&args) {
                    core.cancel(job);
                    return Err(e);
                }
                index += 1;
                if chunk.count as usize >= chunksize {
                    core.submit(std::mem::replace(&mut chunk, Chunk::new(job, func, index)));
                }
            }
            core.submit(chunk);
            core.seal(job);
        }
        self.shared.poke();
        Ok(AsyncResult {
            shared: self.shared.clone(),
            slot,
        })
    }

    /// No new work from now on (Python's `close`); work already given goes
    /// on. Follow with [`join`](Pool::join).
    pub fn close(&self) {
        let mut core = self.shared.lock();
        if core.state == PoolState::Running {
            core.state = PoolState::Closed;
        }
    }

    /// Stops the workers at once (SIGKILL) and waits for them; tasks not
    /// finished fail with [`ErrorKind::PoolClosed`] (Python's `terminate`).
    /// Dropping the pool does this.
    pub fn terminate(&self) {
        let due = {
            let mut core = self.shared.lock();
            if core.state != PoolState::Terminated || !core.all_exited() {
                log::debug!(target: "multiproc", "terminating a pool");
                core.shutdown(|| {
                    Error::new(
                        ErrorKind::PoolClosed,
                        "the pool was terminated before the task finished",
                    )
                });
            }
            std::mem::take(&mut core.due)
        };
        run(due);
    }

    /// Waits until all work is done and the workers have exited (Python's
    /// `join`); needs [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) first.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::StillRunning`] if the pool was neither closed nor
    /// terminated; [`ErrorKind::Interrupted`] on SIGINT in a program that
    /// handles it; [`ErrorKind::Io`].
    pub fn join(&self) -> Result<()> {
        match self.shared.lock().state {
            PoolState::Running => {
                return Err(Error::new(
                    ErrorKind::StillRunning,
                    "join() waits for the end of the pool: call close() or terminate() first",
                ));
            }
            PoolState::Terminated => return Ok(()),
            PoolState::Closed => {}
        }
        let stopped = |core: &mut Core| core.state == PoolState::Terminated;
        self.shared
            .drive(None, |core| (core.idle() || stopped(core)).then_some(()))?;
        self.shared.lock().send_stop();
        self.shared.drive(None, |core| {
            (core.all_exited() || stopped(core)).then_some(())
        })?;
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Python's `chunksize` rule for `map`: ceil(len / (4 × processes)).
fn python_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(4 * processes).max(1)
}

/// A pool with a fixed chunk size for the next call: see
/// [`Pool::chunksize`].
#[derive(Debug)]
pub struct Chunked<'p> {
    pool: &'p Pool,
    chunksize: Option<usize>,
}

impl<'p> Chunked<'p> {
    /// [`Pool::map`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As [`Pool::map`].
    pub fn map<F, M, I>(&self, _f: F, input: I) -> Result<Vec<F::Output>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        let input = input.into_iter();
        let (lo, hi) = input.size_hint();
        let chunking = match (self.chunksize, hi) {
            (Some(n), _) => Chunking::Fixed(n),
            (None, Some(hi)) if hi == lo => {
                Chunking::Fixed(python_chunksize(lo, self.pool.processes))
            }
            _ => Chunking::Adaptive,
        };
        let mut stream = Stream::new::<F, M>(self.pool, "map", input, true, chunking)?;
        let mut out = Vec::with_capacity(lo);
        stream.collect_into(&mut out)?;
        Ok(out)
    }

    /// [`Pool::map_async`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_async`].
    pub fn map_async<F, M, I>(&self, _f: F, input: I) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        let input: Vec<F::Args> = input.into_iter().collect();
        let cs = self
            .chunksize
            .unwrap_or_else(|| python_chunksize(input.len(), self.pool.processes));
        self.pool
            .submit_async::<F, M, Vec<F::Output>, _>("map_async", input, cs, |v| v, None, None)
    }

    /// [`Pool::imap`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap`].
    pub fn imap<F, M, I>(&self, _f: F, input: I) -> Result<IMap<'p, I::IntoIter, F::Output>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        let chunking = self.chunksize.map_or(Chunking::Adaptive, Chunking::Fixed);
        Ok(IMap {
            stream: Stream::new::<F, M>(self.pool, "imap", input.into_iter(), true, chunking)?,
        })
    }

    /// [`Pool::imap_unordered`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap`].
    pub fn imap_unordered<F, M, I>(
        &self,
        _f: F,
        input: I,
    ) -> Result<IMap<'p, I::IntoIter, F::Output>>
    where
        F: Target<M> + Copy,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        let chunking = self.chunksize.map_or(Chunking::Adaptive, Chunking::Fixed);
        Ok(IMap {
            stream: Stream::new::<F, M>(
                self.pool,
                "imap_unordered",
                input.into_iter(),
                false,
                chunking,
            )?,
        })
    }
}

#[derive(Clone, Copy, Debug)]
enum Chunking {
    Fixed(usize),
    Adaptive,
}

/// How long an adaptive chunk should take to run.
const CHUNK_NS: f64 = 500_000.0;

/// The lazy engine behind `map`, `imap` and `imap_unordered`.
struct Stream<'p, I: Iterator, R> {
    pool: &'p Pool,
    job: u64,
    /// Where the core delivers this stream's results; the core holds the
    /// other handle (a [`SharedSink`]). Locked only under the core's lock.
    sink: Arc<Mutex<StreamSink<R>>>,
    func: u32,
    input: I,
    input_done: bool,
    finished: bool,
    submitted: u64,
    yielded: u64,
    chunking: Chunking,
    local: VecDeque<Result<R>>,
    progress: Progress,
}

impl<'p, I, R> Stream<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    fn new<F, M>(
        pool: &'p Pool,
        call: &str,
        input: I,
        ordered: bool,
        chunking: Chunking,
    ) -> Result<Self>
    where
        F: Target<M, Output = R> + Copy,
    {
        check_target::<F>()?;
        let (lo, hi) = input.size_hint();
        let total = (hi == Some(lo)).then_some(lo as u64);
        let mut core = pool.shared.lock();
        if let Some(e) = core.refuse() {
            return Err(e);
        }
        let func = core.func_id(task_fn::<F, M>());
        let sink = Arc::new(Mutex::new(StreamSink::<R>::new(ordered)));
        let job = core.new_job(Box::new(SharedSink(sink.clone())), describe::<F>(call));
        let progress = Progress::new(core.config.progress, total);
        drop(core);
        Ok(Self {
            pool,
            job,
            sink,
            func,
            input,
            input_done: false,
            finished: false,
            submitted: 0,
            yielded: 0,
            chunking,
            local: VecDeque::new(),
            progress,
        })
    }

    /// Sends more input while fewer than the bound are in flight.
    fn feed(&mut self) -> Result<()> {
        if self.input_done {
            return Ok(());
        }
        let workers = self.pool.processes as u64;
        let item_ns = self.pool.shared.lock().item_ns.max(1.0);
        let cs = match self.chunking {
            Chunking::Fixed(n) => n as u64,
            Chunking::Adaptive => (CHUNK_NS / item_ns).clamp(1.0, 16384.0) as u64,
        };
        // In flight: enough to keep every worker busy for a few
        // milliseconds, and several chunks each; never unbounded.
        let quick = ((5e6 / item_ns) as u64 * workers).min(8192);
        let bound = (cs * workers * 8).max(quick).max(64);
        let mut chunks = Vec::new();
        let mut failed = Vec::new();
        let mut batched = 0u64;
        while self.submitted - self.yielded < bound {
            let mut chunk = Chunk::new(self.job, self.func, self.submitted);
            while (chunk.count as u64) < cs && self.submitted - self.yielded < bound {
                let Some(args) = self.input.next() else {
                    self.input_done = true;
                    break;
                };
                let index = self.submitted;
                self.submitted += 1;
                if let Err(e) = chunk.push(&args) {
                    chunks.push(std::mem::replace(
                        &mut chunk,
                        Chunk::new(self.job, self.func, index + 1),
                    ));
                    failed.push((index, e));
                }
            }
            batched += chunk.count as u64;
            chunks.push(chunk);
            if self.input_done {
                break;
            }
            // Big batches go out at once, so that the workers start while
            // the rest of the input is being encoded.
            if batched >= 4096 {
                self.submit(&mut chunks, &mut failed, true)?;
                batched = 0;
            }
        }
        if chunks.iter().all(|c| c.count == 0) && failed.is_empty() && !self.input_done {
            return Ok(());
        }
        self.submit(&mut chunks, &mut failed, false)
    }

    /// Hands chunks (and items that could not be encoded) to the pool;
    /// `send` also writes them to the workers now.
    fn submit(
        &mut self,
        chunks: &mut Vec<Chunk>,
        failed: &mut Vec<(u64, Error)>,
        send: bool,
    ) -> Result<()> {
        let mut core = self.pool.shared.lock();
        if let Some(e) = core
            .refuse()
            .filter(|_| core.state == PoolState::Terminated)
        {
            return Err(e);
        }
        for c in chunks.drain(..) {
            core.submit(c);
        }
        for (index, e) in failed.drain(..) {
            core.fail_item(self.job, index, e);
        }
        if self.input_done {
            core.seal(self.job);
        }
        if send {
            core.kick();
        }
        Ok(())
    }

    fn next_result(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.local.pop_front() {
                self.yielded += 1;
                if self.local.is_empty() || self.yielded.is_multiple_of(1024) {
                    self.progress.update(self.yielded);
                }
                return Some(r);
            }
            if self.finished || (self.input_done && self.yielded == self.submitted) {
                self.progress.finish();
                self.finished = true;
                return None;
            }
            if let Err(e) = self.feed() {
                self.finished = true;
                return Some(Err(e));
            }
            if self.input_done && self.yielded == self.submitted {
                continue;
            }
            let sink = &self.sink;
            let local = &mut self.local;
            let got = self
                .pool
                .shared
                .drive(None, |_| (lock_sink(sink).drain(local) > 0).then_some(()));
            if let Err(e) = got {
                self.finished = true;
                return Some(Err(e));
            }
        }
    }
}

impl<I, R> Stream<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    /// `map`'s loop: every result in order into `out`, straight from the
    /// sink; stops at the first error.
    fn collect_into(&mut self, out: &mut Vec<R>) -> Result<()> {
        loop {
            while let Some(r) = self.local.pop_front() {
                self.yielded += 1;
                out.push(r?);
            }
            if self.input_done && self.yielded == self.submitted {
                self.progress.finish();
                return Ok(());
            }
            self.feed()?;
            if self.input_done && self.yielded == self.submitted {
                continue;
            }
            let sink = &self.sink;
            let mut failure = None;
            let taken = self.pool.shared.drive(None, |_| {
                let n = lock_sink(sink).drain_ok(out, &mut failure);
                (n > 0 || failure.is_some()).then_some(n)
            })?;
            self.yielded += taken.unwrap_or(0) as u64;
            self.progress.update(self.yielded);
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }
}

impl<I: Iterator, R> Drop for Stream<'_, I, R> {
    fn drop(&mut self) {
        self.pool.shared.lock().cancel(self.job);
    }
}

/// Decodes `count` values of type `R` lying back to back in `bytes`, for
/// items `first..`, handing each to `put`. A value that cannot be decoded
/// fails, and so do the ones after it (their bytes cannot be found).
fn decode_batch<R: DeserializeOwned>(
    first: u64,
    count: u32,
    mut bytes: &[u8],
    mut put: impl FnMut(u64, Result<R>),
) {
    for i in 0..count as u64 {
        match postcard::take_from_bytes::<R>(bytes) {
            Ok((v, rest)) => {
                bytes = rest;
                put(first + i, Ok(v));
            }
            Err(e) => {
                for j in i..count as u64 {
                    put(
                        first + j,
                        Err(Error::new(
                            ErrorKind::Decode,
                            format!(
                                "the result of task {} could not be decoded as {}: {e}",
                                first + j,
                                std::any::type_name::<R>()
                            ),
                        )),
                    );
                }
                return;
            }
        }
    }
}

/// Where a stream's results wait for the caller.
///
/// Ordered: successes are kept in runs of consecutive items (a worker's
/// batch is one run, and extends the run it continues), keyed by their
/// first index, so that results move in bulk and several workers' runs can
/// wait for an earlier one; failures are kept by index. Results are handed
/// out from `base` on, in order.
struct StreamSink<R> {
    ordered: bool,
    base: u64,
    runs: BTreeMap<u64, Vec<R>>,
    errors: BTreeMap<u64, Error>,
    unordered: VecDeque<Result<R>>,
}

impl<R> StreamSink<R> {
    fn new(ordered: bool) -> Self {
        Self {
            ordered,
            base: 0,
            runs: BTreeMap::new(),
            errors: BTreeMap::new(),
            unordered: VecDeque::new(),
        }
    }

    /// The run that item `first` continues, or a new one.
    fn run_at(&mut self, first: u64) -> &mut Vec<R> {
        let start = match self.runs.range(..first).next_back() {
            Some((&start, run)) if start + run.len() as u64 == first => start,
            _ => first,
        };
        self.runs.entry(start).or_default()
    }

    fn put(&mut self, index: u64, value: Result<R>) {
        if !self.ordered {
            self.unordered.push_back(value);
            return;
        }
        if index < self.base {
            return;
        }
        match value {
            Ok(v) => self.run_at(index).push(v),
            Err(e) => {
                self.errors.insert(index, e);
            }
        }
    }

    /// Moves the results ready in order into `out`, stopping at the first
    /// error (put in `failure`). Ordered sinks only.
    fn drain_ok(&mut self, out: &mut Vec<R>, failure: &mut Option<Error>) -> usize {
        let mut n = 0;
        loop {
            if let Some(mut run) = self.runs.remove(&self.base) {
                self.base += run.len() as u64;
                n += run.len();
                out.append(&mut run);
            } else if let Some(e) = self.errors.remove(&self.base) {
                self.base += 1;
                *failure = Some(e);
                return n;
            } else {
                return n;
            }
        }
    }

    fn drain(&mut self, out: &mut VecDeque<Result<R>>) -> usize {
        if !self.ordered {
            let n = self.unordered.len();
            out.extend(self.unordered.drain(..));
            return n;
        }
        let mut n = 0;
        loop {
            if let Some(run) = self.runs.remove(&self.base) {
                self.base += run.len() as u64;
                n += run.len();
                out.extend(run.into_iter().map(Ok));
            } else if let Some(e) = self.errors.remove(&self.base) {
                self.base += 1;
                n += 1;
                out.push_back(Err(e));
            } else {
                return n;
            }
        }
    }
}

impl<R: DeserializeOwned> StreamSink<R> {
    fn ok_batch(&mut self, first: u64, count: u32, bytes: &[u8]) {
        if !self.ordered || first < self.base {
            decode_batch(first, count, bytes, |i, v| self.put(i, v));
            return;
        }
        // Decode straight into the run these items continue, with one
        // deserializer for the whole batch.
        let run = self.run_at(first);
        run.reserve(count as usize);
        let mut de = postcard::Deserializer::from_bytes(bytes);
        let mut failed_at = None;
        for i in 0..count {
            match R::deserialize(&mut de) {
                Ok(v) => run.push(v),
                Err(_) => {
                    failed_at = Some(i);
                    break;
                }
            }
        }
        if let Some(i) = failed_at {
            // Find where item i starts again, and report it and the rest.
            let mut rest = bytes;
            for _ in 0..i {
                match postcard::take_from_bytes::<R>(rest) {
                    Ok((_, tail)) => rest = tail,
                    Err(_) => break,
                }
            }
            decode_batch(first + i as u64, count - i, rest, |i, v| self.put(i, v));
        }
    }

    fn err(&mut self, index: u64, error: Error) {
        self.put(index, Err(error));
    }
}

fn lock_sink<R>(sink: &Mutex<StreamSink<R>>) -> MutexGuard<'_, StreamSink<R>> {
    sink.lock().unwrap_or_else(|p| p.into_inner())
}

/// The core's handle on a stream's [`StreamSink`]: the core delivers
/// through the [`Sink`] trait, the stream drains the same sink, so the
/// core never has to hand a sink back.
struct SharedSink<R>(Arc<Mutex<StreamSink<R>>>);

impl<R: DeserializeOwned + Send + 'static> Sink for SharedSink<R> {
    fn ok_batch(&mut self, first: u64, count: u32, bytes: &[u8]) {
        lock_sink(&self.0).ok_batch(first, count, bytes);
    }

    fn err(&mut self, index: u64, error: Error) -> bool {
        lock_sink(&self.0).err(index, error);
        false
    }
}

/// An iterator over the results of [`Pool::imap`] or
/// [`Pool::imap_unordered`]: one `Result` per input item.
///
/// Dropping it cancels the tasks not yet sent; tasks already in a worker
/// finish there and their results are discarded.
#[must_use = "an IMap sends work only while it is iterated"]
pub struct IMap<'p, I: Iterator, R> {
    stream: Stream<'p, I, R>,
}

impl<I: Iterator, R> fmt::Debug for IMap<'_, I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("sent", &self.stream.submitted)
            .field("yielded", &self.stream.yielded)
            .finish()
    }
}

impl<I, R> Iterator for IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.stream.next_result()
    }
}

struct Slot<R> {
    value: Mutex<Option<Result<R>>>,
    done: AtomicBool,
}

impl<R> Slot<R> {
    fn lock(&self) -> MutexGuard<'_, Option<Result<R>>> {
        self.value.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[allow(clippy::type_complexity)]
struct SlotSink<T, Out> {
    items: Vec<Option<T>>,
    error: Option<Error>,
    slot: Arc<Slot<Out>>,
    finish: fn(Vec<T>) -> Out,
    callback: Option<Box<dyn FnOnce(&Out) + Send>>,
    error_callback: Option<Box<dyn FnOnce(&Error) + Send>>,
}

impl<T, Out> Sink for SlotSink<T, Out>
where
    T: DeserializeOwned + Send + 'static,
    Out: Send + 'static,
{
    fn ok_batch(&mut self, first: u64, count: u32, bytes: &[u8]) {
        let (items, error) = (&mut self.items, &mut self.error);
        decode_batch::<T>(first, count, bytes, |index, v| match v {
            Ok(v) => {
                let i = index as usize;
                if items.len() <= i {
                    items.resize_with(i + 1, || None);
                }
                items[i] = Some(v);
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        });
    }

    fn err(&mut self, _index: u64, error: Error) -> bool {
        self.error.get_or_insert(error);
        true
    }

    fn complete(&mut self, due: &mut Vec<Callback>) -> bool {
        let value = match self.error.take() {
            Some(e) => Err(e),
            None => std::mem::take(&mut self.items)
                .into_iter()
                .collect::<Option<Vec<T>>>()
                .map(self.finish)
                .ok_or_else(|| Error::new(ErrorKind::Protocol, "a task's result went missing")),
        };
        *self.slot.lock() = Some(value);
        self.slot.done.store(true, Ordering::Release);
        let slot = self.slot.clone();
        let callback = self.callback.take();
        let error_callback = self.error_callback.take();
        if callback.is_some() || error_callback.is_some() {
            due.push(Box::new(move || match &*slot.lock() {
                Some(Ok(v)) => {
                    if let Some(cb) = callback {
                        cb(v)
                    }
                }
                Some(Err(e)) => {
                    if let Some(cb) = error_callback {
                        cb(e)
                    }
                }
                None => {}
            }));
        }
        true
    }
}

/// The result of [`Pool::apply_async`] or [`Pool::map_async`], to come
/// (Python's `AsyncResult`).
///
/// Waiting on it does the pool's work meanwhile. It stays valid after the
/// pool is dropped: a task that had not finished then fails with
/// [`ErrorKind::PoolClosed`].
#[must_use = "the task runs anyway; get() returns its result"]
pub struct AsyncResult<R> {
    shared: Arc<Shared>,
    slot: Arc<Slot<R>>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.slot.done.load(Ordering::Acquire))
            .finish()
    }
}

fn taken() -> Error {
    Error::new(ErrorKind::Eof, "the result was already taken")
}

impl<R> AsyncResult<R> {
    fn is_done(&self) -> bool {
        self.slot.done.load(Ordering::Acquire)
    }

    /// Whether the result is there (Python's `ready`). Never blocks; does
    /// any pool work that is ready to be done.
    pub fn ready(&self) -> bool {
        if !self.is_done() {
            self.shared.poke();
        }
        self.is_done()
    }

    /// Whether the task succeeded; `None` while it runs (Python's
    /// `successful`, which raises then).
    pub fn successful(&self) -> Option<bool> {
        if !self.ready() {
            return None;
        }
        self.slot.lock().as_ref().map(|r| r.is_ok())
    }

    /// Waits until the result is there (Python's `wait`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Interrupted`] on SIGINT in a program that handles it;
    /// [`ErrorKind::Io`]. The task's own failure comes from `get`.
    pub fn wait(&self) -> Result<()> {
        self.wait_until(None).map(|_| ())
    }

    /// Waits up to `timeout`; returns whether the result is there.
    ///
    /// # Errors
    ///
    /// As [`wait`](AsyncResult::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<bool> {
        let slot = &self.slot;
        Ok(self
            .shared
            .drive(deadline, |_| {
                slot.done.load(Ordering::Acquire).then_some(())
            })?
            .is_some())
    }

    /// Waits for the result and returns it (Python's `get`).
    ///
    /// # Errors
    ///
    /// The task's failure: [`ErrorKind::Panicked`] with its message,
    /// [`ErrorKind::WorkerLost`] if its worker died while running it,
    /// [`ErrorKind::Timeout`] for the pool's time limit,
    /// [`ErrorKind::PoolClosed`] if the pool was terminated first,
    /// [`ErrorKind::Decode`]; or [`ErrorKind::Interrupted`].
    pub fn get(self) -> Result<R> {
        self.wait()?;
        self.slot.lock().take().unwrap_or_else(|| Err(taken()))
    }

    /// Waits up to `timeout` for the result: `Ok(None)` if it is not there
    /// yet (Python's `get(timeout)`, which raises `TimeoutError`). Hands
    /// the value out once.
    ///
    /// # Errors
    ///
    /// As [`get`](AsyncResult::get); [`ErrorKind::Eof`] if the value was
    /// already taken.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<R>> {
        if !self.wait_timeout(timeout)? {
            return Ok(None);
        }
        self.slot
            .lock()
            .take()
            .unwrap_or_else(|| Err(taken()))
            .map(Some)
    }

    /// The result if it is there, without waiting.
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](AsyncResult::get_timeout).
    pub fn try_get(&self) -> Result<Option<R>> {
        if !self.ready() {
            return Ok(None);
        }
        self.slot
            .lock()
            .take()
            .unwrap_or_else(|| Err(taken()))
            .map(Some)
    }
}

// The pool and its results can move between threads and be shared.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<AsyncResult<u64>>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pythons_chunksize_rule() {
        assert_eq!(python_chunksize(0, 2), 1);
        assert_eq!(python_chunksize(1, 2), 1);
        assert_eq!(python_chunksize(8, 2), 1);
        assert_eq!(python_chunksize(9, 2), 2);
        assert_eq!(python_chunksize(1_000_000, 2), 125_000);
        assert_eq!(python_chunksize(10_000, 3), 834);
    }

    #[test]
    fn runs_from_several_workers_come_out_in_order() {
        let mut s = StreamSink::<u8>::new(true);
        let mut out = Vec::new();
        let mut failure = None;
        s.ok_batch(4, 2, &[4, 5]); // a later worker's batch
        s.ok_batch(0, 2, &[0, 1]);
        s.ok_batch(2, 1, &[2]); // continues the first run
        assert_eq!(s.drain_ok(&mut out, &mut failure), 3);
        assert_eq!(out, [0, 1, 2]);
        s.err(3, Error::new(ErrorKind::Panicked, "boom"));
        s.ok_batch(6, 1, &[6]);
        assert_eq!(s.drain_ok(&mut out, &mut failure), 0);
        assert_eq!(failure.take().unwrap().kind(), ErrorKind::Panicked);
        assert_eq!(s.drain_ok(&mut out, &mut failure), 3);
        assert_eq!(out, [0, 1, 2, 4, 5, 6]);
        // Bytes that are not a u8 fail that item and the rest of the batch.
        let mut q = VecDeque::new();
        s.ok_batch(7, 2, &[]);
        assert_eq!(s.drain(&mut q), 2);
        assert!(
            q.iter()
                .all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::Decode)
        );
    }

    #[test]
    fn an_ordered_sink_releases_results_in_order() {
        let mut s = StreamSink::<u8>::new(true);
        let mut out = VecDeque::new();
        s.ok_batch(1, 1, &[7]);
        assert_eq!(s.drain(&mut out), 0);
        s.err(0, Error::new(ErrorKind::Panicked, "boom"));
        assert_eq!(s.drain(&mut out), 2);
        assert!(out[0].is_err());
        assert_eq!(*out[1].as_ref().unwrap(), 7);
    }
}
