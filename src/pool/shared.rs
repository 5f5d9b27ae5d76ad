//! What the typed front end shares: the lock on the engine, the loop that
//! drives it ([`Shared::drive`]) and the background thread that drives it
//! while nobody waits ([`Shared::ensure_background`]; "Background
//! progress" in `README.md`), the checks on a task function. The front-end files (`api.rs`,
//! `builder.rs`, `stream.rs`, `async_result.rs`) import this; it imports
//! only the engine.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::runtime::helpers;
use crate::sys;
use crate::sys::epoll::{Doorbell, Epoll};
use crate::target::Target;

use super::core::{Callback, Core, DOORBELL};
use super::worker;

/// How long one thread drives the pool before letting another have a turn.
const SLICE: Duration = Duration::from_millis(20);

/// How often the background thread looks whether the threads that drove
/// the pool have left (it is not woken when they do: that would cost a
/// system call at the end of every wait).
const RECHECK: Duration = Duration::from_millis(1);

/// How long after a submission the background thread leaves the pool to
/// the submitting thread (which pumps after each one): a tight submission
/// loop keeps it aside, a result awaited after a single submission is
/// picked up this soon.
const STAND_ASIDE: Duration = Duration::from_micros(50);

/// What every thread that uses the pool shares.
pub(super) struct Shared {
    pub(super) core: Mutex<Core>,
    /// Threads inside [`drive`](Shared::drive): while there are any, they
    /// do the pool's work and the background thread sleeps.
    waiting: AtomicU32,
    /// The background thread's wait set (the core adds the workers'
    /// sockets and pidfds) and its doorbell.
    epoll: Arc<Epoll>,
    bell: Doorbell,
    stop: AtomicBool,
    /// Bumped by every submission and wait: while it moves, a caller is
    /// doing the pool's work and the background thread keeps out of its
    /// way (two threads taking turns on the lock cost the fast path).
    activity: AtomicU32,
    /// When the last submission or wait began (`monotonic_ns`).
    last_activity_ns: AtomicU64,
    /// The background thread is (about to be) in `epoll_wait`: only then
    /// does a submission ring the doorbell.
    parked: AtomicBool,
    /// Whether the thread was started (it starts with the first call that
    /// returns before its work is done).
    started: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Lists of callbacks taken out of the core and not yet run, by any
    /// thread: `join` waits for none (Python's `join` waits for its
    /// result-handler thread, so every callback has run when it returns).
    in_flight: AtomicU32,
}

thread_local! {
    /// Set while this thread runs pool callbacks: a callback that calls
    /// `join` must not wait for itself.
    static IN_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Shared {
    /// Wraps `core`; its background thread starts with the first call that
    /// leaves work behind ([`ensure_background`](Shared::ensure_background)).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the doorbell cannot be made.
    pub(super) fn new(core: Core) -> Result<Arc<Self>> {
        let epoll = core.epoll();
        let bell = Doorbell::new().map_err(|e| Error::io("could not create an eventfd", e))?;
        epoll
            .add(bell.as_fd(), DOORBELL, true, false)
            .map_err(|e| Error::io("could not watch an eventfd", e))?;
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            waiting: AtomicU32::new(0),
            epoll,
            bell,
            stop: AtomicBool::new(false),
            activity: AtomicU32::new(0),
            last_activity_ns: AtomicU64::new(0),
            parked: AtomicBool::new(false),
            started: AtomicBool::new(false),
            thread: Mutex::new(None),
            in_flight: AtomicU32::new(0),
        });
        Ok(shared)
    }

    /// Starts the background thread unless it runs. A call that returns
    /// before its work is done (`apply_async`, `map_async`) calls
    /// this before it queues anything, so a failure loses nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the thread cannot be started (for example at
    /// `RLIMIT_NPROC`).
    pub(super) fn ensure_background(self: &Arc<Self>) -> Result<()> {
        if self.started.load(SeqCst) {
            return Ok(());
        }
        let mut slot = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if self.started.load(SeqCst) || self.stop.load(SeqCst) {
            return Ok(());
        }
        let bg = self.clone();
        let reserved = helpers::reserve();
        let handle = std::thread::Builder::new()
            .name("multiproc-pool".into())
            .spawn(move || bg.background(reserved))
            .map_err(|e| Error::io("could not start the pool's background thread", e))?;
        *slot = Some(handle);
        self.started.store(true, SeqCst);
        Ok(())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Does the pool's work until `check` returns `Some`, or `deadline`
    /// passes (`Ok(None)`). Callbacks run with the lock released.
    pub(super) fn drive<T>(
        &self,
        deadline: Option<Instant>,
        mut check: impl FnMut(&mut Core) -> Option<T>,
    ) -> Result<Option<T>> {
        self.waiting.fetch_add(1, SeqCst);
        self.last_activity_ns.store(
            sys::io::monotonic_ns(),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.activity.fetch_add(1, SeqCst);
        struct Leave<'a>(&'a AtomicU32);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, SeqCst);
            }
        }
        let _leave = Leave(&self.waiting);
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
                (outcome, self.take_due(&mut core))
            };
            self.run(due);
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }

    /// One round of work without waiting (after a submission). Rings the
    /// background thread when what was queued needs it to watch for room
    /// in a socket or for a time limit.
    pub(super) fn poke(&self) {
        self.last_activity_ns.store(
            sys::io::monotonic_ns(),
            std::sync::atomic::Ordering::Relaxed,
        );
        self.activity.fetch_add(1, SeqCst);
        let (due, ring) = {
            let mut core = self.lock();
            let _ = core.pump(Duration::ZERO);
            (self.take_due(&mut core), core.needs_background_recheck())
        };
        if ring && self.parked.load(SeqCst) {
            self.bell.ring();
        }
        self.run(due);
    }

    /// The background thread: while no thread drives the pool, it waits on
    /// the workers' sockets and pidfds and does the work that is ready —
    /// results delivered, callbacks run, chunks sent, dead workers
    /// replaced (see "Background progress" in `README.md`). It never
    /// sleeps holding the core's lock, and only ever try-locks it, so a
    /// thread that arrives to drive the pool never waits for it, and a
    /// `fork` can hold it still (`runtime::helpers`).
    fn background(self: Arc<Self>, reserved: helpers::Reserved) {
        let _helper = reserved.register();
        let mut timeout: Option<Duration>;
        let mut ready: Vec<u64> = Vec::new();
        let mut seen = self.activity.load(SeqCst);
        loop {
            if self.stop.load(SeqCst) {
                return;
            }
            let w = self.waiting.load(SeqCst);
            if w > 0 {
                helpers::safe_wait(|| sys::futex::wait(&self.waiting, w, Some(RECHECK)));
                continue;
            }
            let now = self.activity.load(SeqCst);
            if now != seen {
                // A caller submitted or waited since we last looked. While
                // it keeps doing so (the last time less than STAND_ASIDE
                // ago: a submission loop, an `imap` consumer between its
                // waits) it does the work itself; we take over STAND_ASIDE
                // after it stops.
                seen = now;
                let last = self
                    .last_activity_ns
                    .load(std::sync::atomic::Ordering::Relaxed);
                let since = sys::io::monotonic_ns().saturating_sub(last);
                if since < STAND_ASIDE.as_nanos() as u64 {
                    let left = STAND_ASIDE - Duration::from_nanos(since);
                    helpers::safe_wait(|| sys::futex::wait(&self.waiting, 0, Some(left)));
                    continue;
                }
            }
            let core = match self.core.try_lock() {
                Ok(core) => core,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    // A submission holds it, briefly.
                    helpers::safe_wait(|| {
                        sys::futex::wait(&self.waiting, 0, Some(Duration::from_micros(200)))
                    });
                    continue;
                }
            };
            let mut core = core;
            if ready.contains(&DOORBELL) {
                self.bell.clear();
            }
            let round = core.background_round(&ready);
            ready.clear();
            let due = self.take_due(&mut core);
            let finished = core.refuse().is_some() && core.all_exited();
            drop(core);
            self.run(due);
            match round {
                Ok(next) => timeout = next,
                Err(e) => {
                    if finished {
                        return;
                    }
                    log::warn!(target: "multiproc", "the pool's background thread: {e}");
                    timeout = Some(Duration::from_millis(10));
                }
            }
            if finished {
                return;
            }
            // Park, then look again: a submission that ran after our round
            // either sees `parked` and rings, or we see its activity.
            self.parked.store(true, SeqCst);
            if self.stop.load(SeqCst)
                || self.waiting.load(SeqCst) > 0
                || self.activity.load(SeqCst) != seen
            {
                self.parked.store(false, SeqCst);
                continue;
            }
            let epoll = &self.epoll;
            let waited = helpers::safe_wait(|| epoll.wait(timeout, &mut ready));
            self.parked.store(false, SeqCst);
            if let Err(e) = waited {
                log::warn!(target: "multiproc", "the pool's background thread could not wait: {e}");
                helpers::safe_wait(|| {
                    sys::futex::wait(&self.waiting, 0, Some(Duration::from_millis(10)))
                });
            }
        }
    }

    /// Takes the callbacks that are due, to run with the lock released
    /// ([`run`](Shared::run)); counted in flight until they have run.
    pub(super) fn take_due(&self, core: &mut Core) -> Vec<Callback> {
        let due = std::mem::take(&mut core.due);
        if !due.is_empty() {
            self.in_flight.fetch_add(1, SeqCst);
        }
        due
    }

    /// Runs callbacks from [`take_due`](Shared::take_due). One that panics
    /// is logged and the others still run: a callback's panic is not the
    /// waiting call's failure, and the background thread must survive it.
    pub(super) fn run(&self, due: Vec<Callback>) {
        if due.is_empty() {
            return;
        }
        let outer = IN_CALLBACK.with(|c| c.replace(true));
        for callback in due {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback)).is_err() {
                log::error!(target: "multiproc", "a pool callback panicked; the pool goes on");
            }
        }
        IN_CALLBACK.with(|c| c.set(outer));
        if self.in_flight.fetch_sub(1, SeqCst) == 1 {
            sys::futex::wake_all(&self.in_flight);
        }
    }

    /// Waits until no thread runs callbacks it took (for `join`); at once
    /// when called from a callback.
    pub(super) fn settle(&self) {
        if IN_CALLBACK.with(|c| c.get()) {
            return;
        }
        loop {
            let n = self.in_flight.load(SeqCst);
            if n == 0 {
                return;
            }
            sys::futex::wait(&self.in_flight, n, None);
        }
    }

    /// Ends the background thread (the pool is terminated first) and waits
    /// for it, unless called from it (a callback that dropped the pool).
    pub(super) fn stop_background(&self) {
        self.stop.store(true, SeqCst);
        self.bell.ring();
        sys::futex::wake_all(&self.waiting);
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }
}

pub(super) fn task_fn<F: Target<M> + Copy, M>() -> worker::TaskFn {
    worker::task_entry::<F, M>
}

pub(super) fn describe<F>(call: &str) -> String {
    format!("{call}({})", std::any::type_name::<F>())
}
