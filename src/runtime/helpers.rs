//! The library's own helper threads (a pool's background thread), and how
//! a `fork` waits until none of them can hold a lock.
//!
//! A forked child gets a copy of the calling thread only; a lock another
//! thread held at that instant (the allocator's, any `Mutex`) stays locked
//! in the child for good. That is why the fork start method refuses a
//! process with threads. A helper thread of multiproc would make every
//! later fork refuse, so helpers follow a protocol instead:
//!
//! - a helper does its blocking waits (epoll, futex) inside
//!   [`safe_wait`], and holds no lock during them; it counts itself *safe*
//!   while it waits;
//! - a forking thread first calls [`pause`]: it raises `PAUSE` and waits
//!   until every helper other than itself is safe; a helper that wakes
//!   while `PAUSE` is up stays safe and sleeps on it until the fork is done;
//! - the thread check of `fork` then leaves the paused helpers out.
//!
//! The handshake is the store-then-load pattern on both sides (`SeqCst`):
//! the forker stores `PAUSE` then loads `SAFE`; a waking helper decrements
//! `SAFE` then loads `PAUSE`. At least one of them sees the other's write,
//! so either the forker waits for that helper or the helper stays parked.
//!
//! A helper that is busy (running a round of its pool, or a user's
//! callback) delays a fork until it is done; [`pause`] gives up after a
//! bound and says so, rather than wait on a callback that might itself wait
//! for the forking thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::sys;

/// Helpers alive in this process.
static TOTAL: AtomicU32 = AtomicU32::new(0);
/// Helpers inside [`safe_wait`].
static SAFE: AtomicU32 = AtomicU32::new(0);
/// Forks under way.
static PAUSE: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static IS_HELPER: Cell<bool> = const { Cell::new(false) };
}

/// Whether this process ever had a helper (see [`had_helpers`]).
static EVER: AtomicBool = AtomicBool::new(false);

/// A helper counted from before its thread exists: the spawning thread
/// reserves it, so that a fork between the spawn and the thread's first
/// instruction waits for it (it is not yet safe) instead of seeing a
/// thread it does not know of. Moved into the thread, it becomes the
/// thread's [`Helper`] there; dropped unused (the spawn failed), it is
/// uncounted.
pub(crate) struct Reserved(());

/// Counts a helper thread about to be spawned.
pub(crate) fn reserve() -> Reserved {
    EVER.store(true, SeqCst);
    TOTAL.fetch_add(1, SeqCst);
    Reserved(())
}

impl Reserved {
    /// Makes the calling thread that helper (call first thing in it).
    pub(crate) fn register(self) -> Helper {
        std::mem::forget(self);
        IS_HELPER.with(|h| h.set(true));
        Helper(())
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        TOTAL.fetch_sub(1, SeqCst);
        sys::futex::wake_all(&SAFE);
    }
}

/// Whether this process ever started a helper: a helper that just ended
/// may still be counted by the kernel for a moment after `join` returned
/// (the thread count drops when the kernel releases the thread, after it
/// woke the joiner), so a fork that sees one thread too many looks again.
pub(crate) fn had_helpers() -> bool {
    EVER.load(SeqCst)
}

/// This thread is a helper for as long as the guard lives.
pub(crate) struct Helper(());

impl Drop for Helper {
    fn drop(&mut self) {
        IS_HELPER.with(|h| h.set(false));
        TOTAL.fetch_sub(1, SeqCst);
        // A forker may be waiting for this helper.
        sys::futex::wake_all(&SAFE);
    }
}

/// Runs `block`, a wait during which the calling helper holds no lock, as a
/// point where a fork may happen; on waking, waits while a fork is under
/// way. On a thread that is not a helper, only runs `block`.
pub(crate) fn safe_wait<T>(block: impl FnOnce() -> T) -> T {
    if !IS_HELPER.with(Cell::get) {
        return block();
    }
    SAFE.fetch_add(1, SeqCst);
    sys::futex::wake_all(&SAFE);
    let out = block();
    loop {
        SAFE.fetch_sub(1, SeqCst);
        let p = PAUSE.load(SeqCst);
        if p == 0 {
            return out;
        }
        SAFE.fetch_add(1, SeqCst);
        sys::futex::wake_all(&SAFE);
        sys::futex::wait(&PAUSE, p, None);
    }
}

/// Helpers held still for a fork; dropping it lets them go on.
pub(crate) struct Paused {
    /// How many of this process's threads are paused helpers.
    pub(crate) helpers: usize,
}

impl Drop for Paused {
    fn drop(&mut self) {
        PAUSE.fetch_sub(1, SeqCst);
        sys::futex::wake_all(&PAUSE);
    }
}

/// Holds every helper (but the calling thread, if it is one) at a safe
/// point, waiting up to `bound` for busy ones.
///
/// # Errors
///
/// `Err(n)`: `n` helpers were still busy after `bound` (the pause is
/// lifted again).
pub(crate) fn pause(bound: Duration) -> Result<Paused, u32> {
    PAUSE.fetch_add(1, SeqCst);
    let mut paused = Paused { helpers: 0 };
    let me = u32::from(IS_HELPER.with(Cell::get));
    let until = Instant::now().checked_add(bound);
    loop {
        let safe = SAFE.load(SeqCst);
        let total = TOTAL.load(SeqCst);
        if safe + me >= total {
            paused.helpers = total.saturating_sub(me) as usize;
            return Ok(paused);
        }
        let now = Instant::now();
        if until.is_some_and(|u| now >= u) {
            drop(paused);
            return Err(total - safe - me);
        }
        let left = until.map_or(Duration::MAX, |u| u - now);
        sys::futex::wait(&SAFE, safe, Some(left.min(Duration::from_millis(1))));
    }
}

/// In a forked child: it has no helpers (only the forking thread was
/// copied), and no fork is under way in it.
pub(crate) fn forget_in_child() {
    TOTAL.store(0, SeqCst);
    SAFE.store(0, SeqCst);
    PAUSE.store(0, SeqCst);
    IS_HELPER.with(|h| h.set(false));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Barrier};

    /// One test, because the counters are the process's.
    #[test]
    fn a_pause_waits_for_a_busy_helper_and_holds_it_until_dropped() {
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicU32::new(0));
        let started = Arc::new(Barrier::new(2));
        let helper = {
            let (stop, busy, started) = (stop.clone(), busy.clone(), started.clone());
            let reserved = reserve();
            std::thread::spawn(move || {
                let _h = reserved.register();
                started.wait();
                while !stop.load(SeqCst) {
                    // "Work": only outside safe waits does the counter move.
                    busy.fetch_add(1, SeqCst);
                    safe_wait(|| {
                        sys::futex::wait(&busy, u32::MAX, Some(Duration::from_micros(50)))
                    });
                }
            })
        };
        started.wait();
        let paused = pause(Duration::MAX).expect("the helper reaches a safe wait");
        assert_eq!(paused.helpers, 1);
        let before = busy.load(SeqCst);
        // While paused, the helper may wake but does not run its loop body.
        for _ in 0..50 {
            sys::futex::wait(&SAFE, u32::MAX, Some(Duration::from_micros(100)));
            assert_eq!(busy.load(SeqCst), before);
        }
        drop(paused);
        stop.store(true, SeqCst);
        helper.join().unwrap();
        assert_eq!(TOTAL.load(SeqCst), 0);
    }
}
