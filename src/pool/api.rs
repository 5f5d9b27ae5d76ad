//! [`Pool`]'s methods (Python's names), [`PoolStats`], and [`Chunked`] for
//! `pool.chunksize(n)`: the typed calls, which hand work to the engines in
//! `stream.rs` (`map`, `imap`, `imap_unordered`) and `async_result.rs`
//! (`apply_async`, `map_async`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::task::Task;

use super::async_result::{AsyncResult, submit_async};
use super::core::{Core, PerCall, PoolState};
use super::frame::MAX_CHUNK_ITEMS;
use super::shared::Shared;
use super::stream::{Chunking, IMap, Stream};

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
    pub(super) shared: Arc<Shared>,
    pub(super) processes: usize,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("stats", &self.stats())
            .finish()
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
    /// As [`PoolBuilder::build`](crate::PoolBuilder::build).
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
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

    /// Where each worker's time went (mpire's `get_insights`): start-up,
    /// initializer, tasks finished, and with
    /// [`PoolBuilder::insights`](crate::PoolBuilder::insights) the time
    /// spent waiting, working and encoding; printing the value gives a
    /// table. A worker publishes its counters with each batch of results
    /// it writes (so a call's results come with the time they took) and
    /// after each wait. Never fails.
    pub fn insights(&self) -> super::Insights {
        self.shared.lock().insights()
    }

    /// Puts a large read-only value into sealed shared memory once and
    /// returns a cheap handle to it (Ray's `ray.put`): tasks take the
    /// [`Frozen`](crate::shared::Frozen) in their arguments instead of the
    /// value, each worker maps it and decodes it once, and it dereferences
    /// to `&T` on both sides. The same as `Frozen::new(value)`; it works
    /// with any pool, pipe or process. A cluster pool stores its bytes in
    /// the broker once and each agent fetches them once (its workers map
    /// the agent's copy).
    ///
    /// # Errors
    ///
    /// As [`Frozen::new`](crate::shared::Frozen::new).
    pub fn put<T: serde::Serialize>(&self, value: T) -> Result<crate::shared::Frozen<T>> {
        crate::shared::Frozen::new(value)
    }

    /// Runs `f(args)` in a worker and returns its result (Python's `apply`).
    ///
    /// # Errors
    ///
    /// As [`AsyncResult::get`]; [`ErrorKind::PoolClosed`] after `close` or
    /// `terminate`; [`ErrorKind::Encode`] for values given with
    /// [`partial`](crate::partial) that cannot be encoded.
    pub fn apply<F, M>(&self, f: F, args: F::Args) -> Result<F::Output>
    where
        F: Task<M>,
        F::Output: Send + 'static,
    {
        // The caller waits at once: no background thread needed for this.
        submit_async::<F, M, F::Output, _>(
            &f,
            &self.shared,
            "apply",
            false,
            PerCall::default(),
            std::iter::once(args),
            1,
            |mut v| v.pop().expect("one item"),
            None,
            None,
        )?
        .get()
    }

    /// Starts `f(args)` in a worker and returns at once (Python's
    /// `apply_async`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::PoolClosed`] after `close` or `terminate`;
    /// [`ErrorKind::Encode`] if `args` (or values given with
    /// [`partial`](crate::partial)) cannot be encoded. The task's own failure comes from
    /// [`AsyncResult::get`].
    pub fn apply_async<F, M>(&self, f: F, args: F::Args) -> Result<AsyncResult<F::Output>>
    where
        F: Task<M>,
        F::Output: Send + 'static,
    {
        submit_async::<F, M, F::Output, _>(
            &f,
            &self.shared,
            "apply_async",
            true,
            PerCall::default(),
            std::iter::once(args),
            1,
            |mut v| v.pop().expect("one item"),
            None,
            None,
        )
    }

    /// [`apply_async`](Pool::apply_async) with callbacks: `callback` gets
    /// the result, `error_callback` the error. They run within about a
    /// millisecond of the result's arrival: in the pool's background thread,
    /// or in a thread that waits on the pool then (`get`, `wait`, `join`),
    /// before its call returns. A callback that panics is logged and the
    /// pool goes on.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async).
    pub fn apply_async_with<F, M, C, E>(
        &self,
        f: F,
        args: F::Args,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: Task<M>,
        F::Output: Send + 'static,
        C: FnOnce(&F::Output) + Send + 'static,
        E: FnOnce(&Error) + Send + 'static,
    {
        submit_async::<F, M, F::Output, _>(
            &f,
            &self.shared,
            "apply_async",
            true,
            PerCall::default(),
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
    /// ([`ErrorKind::WorkerLost`]), its time limit ([`ErrorKind::TimeLimit`]),
    /// [`ErrorKind::Encode`]/[`ErrorKind::Decode`]. The rest of the call is
    /// then cancelled. Use [`imap`](Pool::imap) to get every task's own
    /// result. Also [`ErrorKind::PoolClosed`], [`ErrorKind::Interrupted`],
    /// [`ErrorKind::Encode`].
    pub fn map<F, M, I>(&self, f: F, input: I) -> Result<Vec<F::Output>>
    where
        F: Task<M>,
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
        F: Task<M>,
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
        F: Task<M>,
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
        f: F,
        input: I,
        callback: C,
        error_callback: E,
    ) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: Task<M>,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
        C: FnOnce(&Vec<F::Output>) + Send + 'static,
        E: FnOnce(&Error) + Send + 'static,
    {
        let input: Vec<F::Args> = input.into_iter().collect();
        let cs = python_chunksize(input.len(), self.processes);
        submit_async::<F, M, Vec<F::Output>, _>(
            &f,
            &self.shared,
            "map_async",
            true,
            PerCall::default(),
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
        F: Task<M>,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        self.map_async(f, input)
    }

    /// An iterator over `f(item)` for every item of `input`, in order, each
    /// a `Result` of its own (Python's `imap`). The input is pulled lazily
    /// with a bounded number of tasks in flight, so an endless iterator
    /// streams through; dropping the iterator cancels what it has not delivered.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::PoolClosed`], [`ErrorKind::Encode`] at once;
    /// each task's failure as its item.
    pub fn imap<F, M, I>(&self, f: F, input: I) -> Result<IMap<'_, I::IntoIter, F::Output>>
    where
        F: Task<M>,
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
        F: Task<M>,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        self.chunking(None).imap_unordered(f, input)
    }

    /// Python's `chunksize=n`: `pool.chunksize(1).map(f, xs)` sends items
    /// `n` at a time.
    pub fn chunksize(&self, n: usize) -> Chunked<'_> {
        self.chunking(Some(n.clamp(1, MAX_CHUNK_ITEMS)))
    }

    /// This call's retry policy, overriding the pool's
    /// ([`PoolBuilder::retries`](crate::pool::PoolBuilder::retries)):
    /// `pool.retries(2).apply_async(f, x)` runs `f(x)` up to 3 times if
    /// workers die under it or it passes the time limit.
    pub fn retries(&self, n: u32) -> Chunked<'_> {
        Chunked {
            pool: self,
            chunksize: None,
            per_call: PerCall {
                retries: Some(n),
                ..PerCall::default()
            },
            window: None,
        }
    }

    /// This call's time limit per task, overriding the pool's
    /// ([`PoolBuilder::task_timeout`](crate::pool::PoolBuilder::task_timeout)):
    /// a task of `pool.task_timeout(d).map(f, xs)` still running after `d`
    /// is stopped by killing its worker and fails with
    /// [`ErrorKind::TimeLimit`]. Any `Duration`; `Duration::MAX` means no
    /// limit in practice.
    pub fn task_timeout(&self, limit: Duration) -> Chunked<'_> {
        Chunked {
            pool: self,
            chunksize: None,
            per_call: PerCall {
                timeout: Some(limit),
                ..PerCall::default()
            },
            window: None,
        }
    }

    /// The read-ahead of the next `imap` / `imap_unordered`: up to `n`
    /// items are read from the input and sent ahead of the consumer, and
    /// their results kept until `next` takes them. With a window, the
    /// input is read from the moment `imap` is called, and the pool's
    /// background thread runs those tasks and collects their results
    /// while nobody iterates; `pool.window(usize::MAX).imap(f, xs)` is
    /// Python's `imap`, which reads its whole input at once and runs to
    /// the end in the background (keep it for finite inputs: it encodes
    /// the whole input when called).
    ///
    /// Without a window (the default) the pool chooses a bound that keeps
    /// every worker busy for a few milliseconds, an endless iterator
    /// streams through in flat memory, and the tasks run only while the
    /// `imap` is iterated. Costs the memory of `n` encoded inputs and
    /// results. `map` ignores it (it waits anyway); `map_async` always
    /// reads its whole input.
    pub fn window(&self, n: usize) -> Chunked<'_> {
        self.chunking(None).window(n)
    }

    fn chunking(&self, chunksize: Option<usize>) -> Chunked<'_> {
        Chunked {
            pool: self,
            chunksize,
            per_call: PerCall::default(),
            window: None,
        }
    }

    /// No new work from now on (Python's `close`); work already given goes
    /// on. Follow with [`join`](Pool::join).
    pub fn close(&self) {
        let mut core = self.shared.lock();
        if core.state == PoolState::Running {
            core.state = PoolState::Closed;
        }
    }

    /// Python's `Executor.shutdown(wait, cancel_futures)`: no new work
    /// ([`close`](Pool::close)); with `cancel_futures`, every
    /// `apply_async`/`map_async` none of whose items reached a worker is
    /// cancelled ([`ErrorKind::Cancelled`], callbacks run); with `wait`,
    /// waits as [`join`](Pool::join) does. Without `wait` the work goes on
    /// in the background until the pool is dropped (which terminates it).
    ///
    /// # Errors
    ///
    /// As [`join`](Pool::join) when `wait`.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) -> Result<()> {
        self.close();
        if cancel_futures {
            let due = {
                let mut core = self.shared.lock();
                core.cancel_unstarted(|| {
                    Error::new(
                        ErrorKind::Cancelled,
                        "the pool was shut down (cancel_futures) before the task started",
                    )
                });
                self.shared.take_due(&mut core)
            };
            self.shared.run(due);
        }
        if wait { self.join() } else { Ok(()) }
    }

    /// Python 3.14's `terminate_workers`: sends SIGTERM to every worker,
    /// then [`terminate`](Pool::terminate)s the pool (a worker that
    /// ignores SIGTERM is killed). Tasks not finished fail with
    /// [`ErrorKind::PoolClosed`].
    pub fn terminate_workers(&self) {
        self.shared.lock().signal_workers(crate::Signal::TERM);
        self.terminate();
    }

    /// Python 3.14's `kill_workers`: SIGKILL to every worker, and the pool
    /// ends as after [`terminate`](Pool::terminate).
    pub fn kill_workers(&self) {
        self.terminate();
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
            self.shared.take_due(&mut core)
        };
        self.shared.run(due);
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
        // Callbacks the background thread took may still be running.
        self.shared.settle();
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
        self.shared.stop_background();
    }
}

/// Python's `chunksize` rule for `map`: ceil(len / (4 × processes)).
fn python_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(4 * processes).clamp(1, MAX_CHUNK_ITEMS)
}

/// A pool with a fixed chunk size for the next call: see
/// [`Pool::chunksize`].
#[derive(Debug)]
pub struct Chunked<'p> {
    pool: &'p Pool,
    chunksize: Option<usize>,
    per_call: PerCall,
    window: Option<usize>,
}

impl<'p> Chunked<'p> {
    /// This call's chunk size (as [`Pool::chunksize`]).
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n.clamp(1, MAX_CHUNK_ITEMS));
        self
    }

    /// This call's retry policy (as [`Pool::retries`]).
    pub fn retries(mut self, n: u32) -> Self {
        self.per_call.retries = Some(n);
        self
    }

    /// Whether this call's retries (see [`retries`](Chunked::retries))
    /// also cover a task's own panic, overriding the pool's
    /// ([`PoolBuilder::retry_panics`](crate::pool::PoolBuilder::retry_panics)):
    /// `pool.retries(2).retry_panics(true).map(flaky, xs)` runs a task that
    /// panics up to 3 times, for code that fails now and then (a network
    /// call, a flaky native library). The final error is the last panic's
    /// [`ErrorKind::Panicked`], naming the attempts made.
    pub fn retry_panics(mut self, yes: bool) -> Self {
        self.per_call.retry_panics = Some(yes);
        self
    }

    /// This call's time limit per task (as [`Pool::task_timeout`]).
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.per_call.timeout = Some(limit);
        self
    }

    /// This `imap`'s read-ahead (as [`Pool::window`]); at least 1.
    pub fn window(mut self, n: usize) -> Self {
        self.window = Some(n.max(1));
        self
    }

    /// [`Pool::apply_async`] with this call's retry policy.
    ///
    /// # Errors
    ///
    /// As [`Pool::apply_async`].
    pub fn apply_async<F, M>(&self, f: F, args: F::Args) -> Result<AsyncResult<F::Output>>
    where
        F: Task<M>,
        F::Output: Send + 'static,
    {
        submit_async::<F, M, F::Output, _>(
            &f,
            &self.pool.shared,
            "apply_async",
            true,
            self.per_call,
            std::iter::once(args),
            1,
            |mut v| v.pop().expect("one item"),
            None,
            None,
        )
    }

    /// [`Pool::map`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As [`Pool::map`].
    pub fn map<F, M, I>(&self, f: F, input: I) -> Result<Vec<F::Output>>
    where
        F: Task<M>,
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
        let mut stream = Stream::new::<F, M>(
            &f,
            &self.pool.shared,
            "map",
            input,
            true,
            chunking,
            self.per_call,
        )?;
        let mut out = Vec::with_capacity(lo);
        stream.collect_into(&mut out)?;
        Ok(out)
    }

    /// [`Pool::map_async`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_async`].
    pub fn map_async<F, M, I>(&self, f: F, input: I) -> Result<AsyncResult<Vec<F::Output>>>
    where
        F: Task<M>,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        let input: Vec<F::Args> = input.into_iter().collect();
        let cs = self
            .chunksize
            .unwrap_or_else(|| python_chunksize(input.len(), self.pool.processes));
        submit_async::<F, M, Vec<F::Output>, _>(
            &f,
            &self.pool.shared,
            "map_async",
            true,
            self.per_call,
            input,
            cs,
            |v| v,
            None,
            None,
        )
    }

    /// [`Pool::imap`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap`].
    pub fn imap<F, M, I>(&self, f: F, input: I) -> Result<IMap<'p, I::IntoIter, F::Output>>
    where
        F: Task<M>,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        self.stream::<F, M, I>(&f, "imap", input, true)
    }

    /// [`Pool::imap_unordered`] with this chunk size.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap`].
    pub fn imap_unordered<F, M, I>(
        &self,
        f: F,
        input: I,
    ) -> Result<IMap<'p, I::IntoIter, F::Output>>
    where
        F: Task<M>,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        self.stream::<F, M, I>(&f, "imap_unordered", input, false)
    }

    /// The lazy stream behind both `imap` forms, with this chunk size.
    fn stream<F, M, I>(
        &self,
        f: &F,
        name: &'static str,
        input: I,
        ordered: bool,
    ) -> Result<IMap<'p, I::IntoIter, F::Output>>
    where
        F: Task<M>,
        F::Output: Send + 'static,
        I: IntoIterator<Item = F::Args>,
    {
        let chunking = self.chunksize.map_or(Chunking::Adaptive, Chunking::Fixed);
        // No background thread for an imap without a window: with one,
        // pool_imap_unordered lost 15% (it competes for the results the
        // consumer drains), and only the window already sent could
        // progress without `next`.
        if self.window.is_some() {
            // Before anything is queued, so a failure loses nothing.
            self.pool.shared.ensure_background()?;
        }
        let mut stream = Stream::new::<F, M>(
            f,
            &self.pool.shared,
            name,
            input.into_iter(),
            ordered,
            chunking,
            self.per_call,
        )?
        .with_window(self.window);
        if self.window.is_some() {
            stream.start()?;
        }
        Ok(IMap { stream })
    }
}

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
}
