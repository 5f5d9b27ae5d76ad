//! The results of `apply_async` and `map_async`: the slot a result waits
//! in, the [`Sink`] that fills it (and queues the callbacks), the
//! submission of such a job, and [`AsyncResult`], which waits on it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::sys;

use super::core::{Callback, Chunk, PerCall, Sink};
use super::frame::decode_batch;
use super::shared::{Shared, describe};
use super::watch::Watch;
use crate::task::Task;

/// Starts a job whose results all go to one [`AsyncResult`]: `finish`
/// makes its value from the items' results, in order. `background`: the
/// call returns before the work is done, so the background thread must run
/// (started before anything is queued). `per_call`: the call's own retry
/// policy and time limit.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub(super) fn submit_async<F, M, Out, I>(
    f: &F,
    shared: &Arc<Shared>,
    call: &str,
    background: bool,
    per_call: PerCall,
    input: I,
    chunksize: usize,
    finish: fn(Vec<F::Output>) -> Out,
    callback: Option<Box<dyn FnOnce(&Out) + Send>>,
    error_callback: Option<Box<dyn FnOnce(&Error) + Send>>,
) -> Result<AsyncResult<Out>>
where
    F: Task<M>,
    F::Output: Send + 'static,
    Out: Send + 'static,
    I: IntoIterator<Item = F::Args>,
{
    let task = f.__pool_task()?;
    if background {
        shared.ensure_background()?;
    }
    let cancel_on_drop = call == "map_async" && callback.is_none() && error_callback.is_none();
    let slot = Arc::new(Slot::new());
    let sink = SlotSink::<F::Output, Out> {
        items: Vec::new(),
        error: None,
        slot: slot.clone(),
        finish,
        callback,
        error_callback,
    };
    let job;
    {
        let mut core = shared.lock();
        if let Some(e) = core.refuse() {
            return Err(e);
        }
        job = core.new_job(Box::new(sink), describe::<F>(call), per_call);
        let func = core.job_func(job, task.task, task.captured);
        let mut index = 0u64;
        let shm_above = core.config.shm_above;
        let mut chunk = Chunk::new(job, func, 0, shm_above);
        for args in input {
            if let Err(e) = chunk.push(&args) {
                core.cancel(job);
                return Err(e);
            }
            index += 1;
            if chunk.count as usize >= chunksize {
                core.submit(std::mem::replace(
                    &mut chunk,
                    Chunk::new(job, func, index, shm_above),
                ));
            }
        }
        core.submit(chunk);
        core.seal(job);
    }
    shared.poke();
    Ok(AsyncResult {
        shared: shared.clone(),
        slot,
        job,
        cancel_on_drop,
        wait_watch: std::sync::OnceLock::new(),
    })
}

/// A callback added with [`AsyncResult::add_done_callback`].
type DoneCallback<R> = Box<dyn FnOnce(&Result<R>) + Send>;

pub(super) struct Slot<R> {
    state: Mutex<State<R>>,
    /// The result is in (what a waiting thread's `drive` looks at).
    done: AtomicBool,
    /// 1 from `done` until the callbacks have run (or were dropped
    /// unrun): the value is handed out only after them, as Python's
    /// `get` returns only after its callback ran.
    callbacks: AtomicU32,
    /// `cancel` took effect.
    cancelled: AtomicBool,
}

/// Results fired so far in this process: each result's place in the
/// order of completion.
static COMPLETIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct State<R> {
    /// `None` before the result and after it was handed out.
    result: Option<Result<R>>,
    /// Callbacks added after submission, to run when it is done.
    later: Vec<DoneCallback<R>>,
    /// `as_completed` and `wait` calls that watch this result.
    watchers: Vec<(Arc<Watch>, usize)>,
    /// The callbacks have run: a callback added now runs at once.
    fired: bool,
    /// When it fired, in the order of all results of the process
    /// ([`COMPLETIONS`]): `as_completed` yields the results that are
    /// already done in the order they completed.
    fired_seq: u64,
    /// The task awaiting the result (`impl Future for AsyncResult`; the
    /// handle is polled by its one owner, so one waker, the latest).
    waker: Option<Waker>,
}

impl<R> Slot<R> {
    fn new() -> Self {
        Slot {
            state: Mutex::new(State {
                result: None,
                later: Vec::new(),
                watchers: Vec::new(),
                fired: false,
                fired_seq: 0,
                waker: None,
            }),
            done: AtomicBool::new(false),
            callbacks: AtomicU32::new(0),
            cancelled: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<R>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the callbacks have run, up to `deadline`; `false` if
    /// it passed first.
    fn settled(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.callbacks.load(Ordering::Acquire) == 0 {
                return true;
            }
            if let sys::futex::Woken::TimedOut =
                sys::futex::wait_until(&self.callbacks, 1, deadline)
            {
                return self.callbacks.load(Ordering::Acquire) == 0;
            }
        }
    }

    /// Runs what waits for the result (the callbacks added later, then
    /// the watchers) and marks it fired. Called with the state locked.
    fn fire(state: &mut State<R>) {
        loop {
            let later = std::mem::take(&mut state.later);
            if later.is_empty() {
                break;
            }
            let gone = Err(taken());
            let result = state.result.as_ref().unwrap_or(&gone);
            for cb in later {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(result))).is_err() {
                    log::error!(target: "multiproc", "a pool done-callback panicked; the pool goes on");
                }
            }
        }
        state.fired = true;
        state.fired_seq = COMPLETIONS.fetch_add(1, Ordering::Relaxed);
        for (watch, index) in state.watchers.drain(..) {
            watch.notify(index, state.fired_seq);
        }
        if let Some(waker) = state.waker.take() {
            #[cfg(feature = "test-hooks")]
            WAKED_AT_NS.store(crate::sys::io::monotonic_ns(), Ordering::Relaxed);
            waker.wake();
        }
    }
}

/// When the pool last woke a task awaiting a result (monotonic ns): for
/// the `pool_await_latency` benchmark's hand-over figure.
#[cfg(feature = "test-hooks")]
static WAKED_AT_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Benchmark support, not part of the API: when the pool last handed a
/// result to an awaiting task's waker (`CLOCK_MONOTONIC` ns). Exists only
/// with the `test-hooks` feature.
#[doc(hidden)]
#[cfg(feature = "test-hooks")]
pub fn __last_wake_ns() -> u64 {
    WAKED_AT_NS.load(Ordering::Relaxed)
}

impl<R> Slot<R> {
    /// Lets `watch` know (as `index`) when the result is done; if it is
    /// done already, returns when it completed instead (the caller
    /// announces those in that order).
    pub(super) fn watch(&self, watch: &Arc<Watch>, index: usize) -> Option<u64> {
        let mut state = self.lock();
        if state.fired {
            Some(state.fired_seq)
        } else {
            // Watches whose `as_completed`/`wait` call ended (timed out)
            // are held by nothing else: drop them, so that calls repeated on
            // a long task do not pile up.
            state.watchers.retain(|(w, _)| Arc::strong_count(w) > 1);
            state.watchers.push((watch.clone(), index));
            None
        }
    }

    /// Whether the result is done and an error (for `FIRST_EXCEPTION`).
    pub(super) fn failed(&self) -> bool {
        matches!(self.lock().result, Some(Err(_)))
    }
}

/// Marks a slot's callbacks as run when dropped (run, panicked or
/// dropped with the pool), and wakes who waits for that.
struct Settle<R>(Arc<Slot<R>>);

impl<R> Drop for Settle<R> {
    fn drop(&mut self) {
        {
            let mut state = self.0.lock();
            if !state.fired {
                Slot::fire(&mut state);
            }
        }
        self.0.callbacks.store(0, Ordering::Release);
        sys::futex::wake_all(&self.0.callbacks);
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

    fn cancellable(&self) -> bool {
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
        let callback = self.callback.take();
        let error_callback = self.error_callback.take();
        if value
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::Cancelled)
        {
            self.slot.cancelled.store(true, Ordering::Release);
        }
        let mut state = self.slot.lock();
        if state.fired {
            return true; // completed already (a cancel raced a failure)
        }
        state.result = Some(value);
        let any = callback.is_some() || error_callback.is_some() || !state.later.is_empty();
        if !any {
            Slot::fire(&mut state);
            drop(state);
            self.slot.done.store(true, Ordering::Release);
            return true;
        }
        drop(state);
        self.slot.callbacks.store(1, Ordering::Release);
        self.slot.done.store(true, Ordering::Release);
        let slot = self.slot.clone();
        let settle = Settle(slot.clone());
        due.push(Box::new(move || {
            {
                let mut state = slot.lock();
                match &state.result {
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
                }
                Slot::fire(&mut state);
            }
            drop(settle);
        }));
        true
    }
}

/// The result of [`Pool::apply_async`](crate::Pool::apply_async) or
/// [`Pool::map_async`](crate::Pool::map_async), to come
/// (Python's `AsyncResult`).
///
/// The work goes on in the pool's background thread whether or not anyone
/// waits; a thread that waits does it itself. It stays valid after the
/// pool is dropped: a task that had not finished then fails with
/// [`ErrorKind::PoolClosed`].
#[must_use = "the task runs anyway; get() returns its result"]
pub struct AsyncResult<R> {
    pub(super) shared: Arc<Shared>,
    pub(super) slot: Arc<Slot<R>>,
    job: u64,
    /// A `map_async` without callbacks: dropping the handle cancels it.
    cancel_on_drop: bool,
    /// Where the result announces itself to `connection::wait`
    /// (`futures.rs`): registered with the slot at the first such wait.
    pub(super) wait_watch: std::sync::OnceLock<Arc<Watch>>,
}

/// Awaiting the result (`result.await`, any executor: tokio, smol,
/// async-std, a hand-made `block_on`): the pool's background thread does
/// the work and wakes the task when the result and its callbacks are done.
/// The output is what [`get`](AsyncResult::get) returns. Dropping the
/// future before it is ready drops the handle (a `map_async` is then
/// cancelled, as on any drop).
impl<R> std::future::IntoFuture for AsyncResult<R> {
    type Output = Result<R>;
    type IntoFuture = Awaiting<R>;

    fn into_future(self) -> Awaiting<R> {
        Awaiting(self)
    }
}

/// The future of an [`AsyncResult`] being awaited.
#[must_use = "a future does nothing unless awaited (the task runs anyway)"]
#[derive(Debug)]
pub struct Awaiting<R>(AsyncResult<R>);

impl<R> Future for Awaiting<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let mut state = self.0.slot.lock();
        if state.fired {
            return Poll::Ready(state.result.take().unwrap_or_else(|| Err(taken())));
        }
        match &mut state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<R> Drop for AsyncResult<R> {
    fn drop(&mut self) {
        if self.cancel_on_drop && !self.slot.done.load(Ordering::Acquire) {
            self.cancel_with("its map_async handle was dropped");
        }
    }
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("job", &self.job)
            .field("ready", &self.slot.done.load(Ordering::Acquire))
            .finish()
    }
}

fn taken() -> Error {
    Error::new(ErrorKind::AlreadyTaken, "the result was already taken")
}

impl<R> AsyncResult<R> {
    /// The result is there and its callbacks have run (Python's `ready`).
    pub(super) fn is_done(&self) -> bool {
        self.slot.done.load(Ordering::Acquire) && self.slot.callbacks.load(Ordering::Acquire) == 0
    }

    /// Cancels the task (Python's `Future.cancel`, which can also stop a
    /// running task here): a queued task is dropped; a running one's
    /// worker is killed (SIGKILL) and replaced, and the work that worker
    /// had queued goes to the others. The result becomes
    /// [`ErrorKind::Cancelled`] and the error callback and done-callbacks
    /// run. For a `map_async`, every item not yet delivered is cancelled.
    /// Returns `false` if the task had finished first (its result stays).
    pub fn cancel(&self) -> bool {
        self.cancel_with("it was cancelled")
    }

    fn cancel_with(&self, why: &str) -> bool {
        if self.slot.done.load(Ordering::Acquire) {
            return false;
        }
        let (cancelled, due) = {
            let mut core = self.shared.lock();
            let what = core.what(self.job);
            let e = Error::new(
                ErrorKind::Cancelled,
                format!("{what} did not finish: {why}"),
            );
            let cancelled = core.cancel_job(self.job, e);
            (cancelled, self.shared.take_due(&mut core))
        };
        self.shared.run(due);
        // The background thread may have to watch for the cancelled task
        // reaching the front of a worker's queue.
        self.shared.poke();
        cancelled
    }

    /// Whether [`cancel`](AsyncResult::cancel) (or a dropped handle, or
    /// `shutdown(cancel_futures)`) stopped it (Python's `cancelled`).
    pub fn cancelled(&self) -> bool {
        self.slot.cancelled.load(Ordering::Acquire)
    }

    /// Whether it was sent to a worker and is not done (Python's
    /// `running`; a task waiting in a worker's queue counts as running).
    pub fn running(&self) -> bool {
        !self.slot.done.load(Ordering::Acquire) && self.shared.lock().job_sent(self.job)
    }

    /// Whether it finished, failed or was cancelled, with its callbacks
    /// run (Python's `done`; the same as [`ready`](AsyncResult::ready)).
    pub fn done(&self) -> bool {
        self.ready()
    }

    /// Runs `f` with the outcome when the task is done, or at once in this
    /// thread if it is (Python's `add_done_callback`). It runs after the
    /// callbacks given at submission, in the thread that completes the
    /// task (the pool's background thread or one that waits); one that
    /// panics is logged. If the result was already handed out, `f` sees an
    /// [`ErrorKind::AlreadyTaken`] error.
    pub fn add_done_callback(&self, f: impl FnOnce(&Result<R>) + Send + 'static) {
        let mut state = self.slot.lock();
        if state.fired {
            let gone = Err(taken());
            let result = state.result.as_ref().unwrap_or(&gone);
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(result))).is_err() {
                log::error!(target: "multiproc", "a pool done-callback panicked; the pool goes on");
            }
        } else {
            state.later.push(Box::new(f));
        }
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
        self.slot.lock().result.as_ref().map(|r| r.is_ok())
    }

    /// Waits until the result is there (Python's `wait`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Interrupted`] on SIGINT in a program that handles it;
    /// [`ErrorKind::Io`]. The task's own failure comes from `get`.
    pub fn wait(&self) -> Result<()> {
        self.wait_until(None)
    }

    /// Waits up to `timeout` (Python's `wait(timeout)`); any `Duration`,
    /// `Duration::MAX` included (waits as long as it takes).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the result is not there by then (the task
    /// goes on; ask again); otherwise as [`wait`](AsyncResult::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_until(crate::time::deadline_after(timeout))
    }

    /// Waits until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](AsyncResult::wait_timeout).
    pub fn wait_deadline(&self, deadline: Instant) -> Result<()> {
        self.wait_until(Some(deadline))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<()> {
        let slot = &self.slot;
        match self.shared.drive(deadline, |_| {
            slot.done.load(Ordering::Acquire).then_some(())
        })? {
            Some(()) if slot.settled(deadline) => Ok(()),
            _ => Err(Error::new(
                ErrorKind::Timeout,
                "timed out waiting for a pool task's result (the task goes on)",
            )),
        }
    }

    /// Takes the result out of the slot, once.
    fn take(&self) -> Result<R> {
        self.slot
            .lock()
            .result
            .take()
            .unwrap_or_else(|| Err(taken()))
    }

    /// Waits for the result and returns it (Python's `get`).
    ///
    /// # Errors
    ///
    /// The task's failure: [`ErrorKind::Panicked`] with its message,
    /// [`ErrorKind::WorkerLost`] if its worker died while running it,
    /// [`ErrorKind::TimeLimit`] for the pool's time limit,
    /// [`ErrorKind::PoolClosed`] if the pool was terminated first,
    /// [`ErrorKind::Decode`]; or [`ErrorKind::Interrupted`].
    pub fn get(self) -> Result<R> {
        self.wait()?;
        self.take()
    }

    /// Waits up to `timeout` for the result (Python's `get(timeout)`) and
    /// hands it out, once; any `Duration`, `Duration::MAX` included.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if it is not there by then (Python's
    /// `TimeoutError`; the task goes on, ask again);
    /// [`ErrorKind::AlreadyTaken`] if an earlier call took it; otherwise as
    /// [`get`](AsyncResult::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        self.wait_timeout(timeout)?;
        self.take()
    }

    /// Waits until `deadline` for the result and hands it out, once.
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](AsyncResult::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> Result<R> {
        self.wait_deadline(deadline)?;
        self.take()
    }

    /// The result if it is there, without waiting; handed out once.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::WouldBlock`] if it is not there yet;
    /// [`ErrorKind::AlreadyTaken`] if an earlier call took it; otherwise as
    /// [`get`](AsyncResult::get).
    pub fn try_get(&self) -> Result<R> {
        if !self.ready() {
            return Err(Error::new(
                ErrorKind::WouldBlock,
                "the pool task's result is not there yet",
            ));
        }
        self.take()
    }
}
