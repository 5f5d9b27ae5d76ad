//! A robust lock in one 32-bit word of shared memory: the lock under every
//! cross-process structure of the crate (Lock, RLock, Value, the queues).
//!
//! # The word
//!
//! ```text
//! bit 31      bits 0..=30
//! WAITERS     pid of the holding process (0: free)
//! ```
//!
//! - **Lock**: one compare-and-swap `0 → pid`. If that fails, spin a little
//!   (a holder on the other core usually lets go within a microsecond),
//!   then set `WAITERS` and sleep on the word's futex.
//! - **Unlock**: one swap to 0; a futex wake only if `WAITERS` was set. A
//!   woken locker takes the lock with `WAITERS` set again, since others may
//!   still sleep (Drepper, "Futexes Are Tricky", mutex 2).
//! - **A holder that died**: a sleeper wakes at least every
//!   [`POLL`] and checks whether the holder's process is gone (no such
//!   process, or a zombie). If it is, the sleeper swaps the dead pid for its
//!   own and learns `owner_died`, so it can repair what the dead holder was
//!   changing. So a dead holder delays the others by at most [`POLL`]
//!   (plus the check), never forever — Python's locks deadlock here.
//!
//! The holder is a *process*, not a thread: as in Python, a lock taken in
//! one process may be released by another (`unlock` checks nothing), and a
//! thread that dies holding the lock in a live process is not detected.
//! A recycled pid (the holder died and a new process got its pid) looks
//! alive until that process exits too; pids are recycled only after the
//! whole pid space (`/proc/sys/kernel/pid_max`) has been used, so this
//! needs both a dead holder and that wrap-around.
//!
//! All-zero is a free lock, as fresh shared memory is.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys::futex::{self, Woken};
use crate::sys::process::{cached_pid, is_dead};

/// Set while some process may be asleep waiting for the lock.
const WAITERS: u32 = 1 << 31;
const PID: u32 = !WAITERS;

/// How often a sleeping locker checks whether the holder died.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// How many times a locker spins before it sleeps.
const SPINS: u32 = 200;

/// A lock was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "owner_died says whether the protected data must be repaired"]
pub(crate) struct Acquired {
    /// The previous holder's process died while holding the lock: what it
    /// protected may be half-changed.
    pub(crate) owner_died: bool,
}

const FRESH: Acquired = Acquired { owner_died: false };

/// Takes the lock if it is free, or if its holder died. `None`: a live
/// process holds it.
pub(crate) fn try_lock(word: &AtomicU32) -> Option<Acquired> {
    let me = cached_pid();
    match word.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
        Ok(_) => Some(FRESH),
        Err(current) => take_from_dead(word, current, me),
    }
}

/// Takes the lock, waiting until `deadline` (`None`: forever). `None`: the
/// deadline passed first.
pub(crate) fn lock(word: &AtomicU32, deadline: Option<Instant>) -> Option<Acquired> {
    let me = cached_pid();
    if word
        .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        return Some(FRESH);
    }
    lock_slow(word, deadline, me)
}

#[cold]
fn lock_slow(word: &AtomicU32, deadline: Option<Instant>, me: u32) -> Option<Acquired> {
    for _ in 0..SPINS {
        std::hint::spin_loop();
        let current = word.load(Ordering::Relaxed);
        if current == 0
            && word
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Some(FRESH);
        }
        if current & WAITERS != 0 {
            break; // others sleep already: queue behind them
        }
    }
    loop {
        let current = word.load(Ordering::Relaxed);
        if current & PID == 0 {
            // Free (perhaps with the waiters bit still set): take it, and
            // keep the bit, since others may sleep.
            if word
                .compare_exchange(current, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(FRESH);
            }
            continue;
        }
        if current & WAITERS == 0
            && word
                .compare_exchange(
                    current,
                    current | WAITERS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            continue;
        }
        let poll_until = Instant::now() + POLL;
        let until = deadline.map_or(poll_until, |d| d.min(poll_until));
        if futex::wait_until(word, current | WAITERS, Some(until)) == Woken::TimedOut {
            if let Some(got) = take_from_dead(word, word.load(Ordering::Relaxed), me) {
                return Some(got);
            }
            if crate::time::expired(deadline) {
                return None;
            }
        }
    }
}

/// If `current` names a holder whose process is gone, takes the lock over.
fn take_from_dead(word: &AtomicU32, current: u32, me: u32) -> Option<Acquired> {
    let holder = current & PID;
    if holder == 0 {
        // Freed meanwhile: an ordinary acquisition, waiters bit kept.
        return word
            .compare_exchange(
                current,
                me | (current & WAITERS),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| FRESH);
    }
    if holder == me || !is_dead(holder) {
        return None;
    }
    // Keep the waiters bit: others may sleep. Only one taker wins.
    word.compare_exchange(
        current,
        me | (current & WAITERS),
        Ordering::Acquire,
        Ordering::Relaxed,
    )
    .ok()
    .map(|_| Acquired { owner_died: true })
}

/// Waits until the lock looks free or its holder may have died (or
/// `deadline`), without taking it: the async forms take it with
/// [`try_lock`]. Sets `WAITERS`, so that an unlock wakes it.
#[cfg(feature = "async")]
pub(crate) fn wait_free(word: &AtomicU32, deadline: Instant) {
    let current = word.load(Ordering::Relaxed);
    if current & PID == 0 {
        return;
    }
    if current & WAITERS == 0
        && word
            .compare_exchange(
                current,
                current | WAITERS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
    {
        return;
    }
    let until = deadline.min(Instant::now() + POLL);
    let _ = futex::wait_until(word, current | WAITERS, Some(until));
}

/// Releases the lock (whoever holds it) and wakes one sleeper if any.
pub(crate) fn unlock(word: &AtomicU32) {
    if word.swap(0, Ordering::Release) & WAITERS != 0 {
        futex::wake(word, 1);
    }
}

/// The pid of the process holding the lock, if it is held.
pub(crate) fn holder(word: &AtomicU32) -> Option<u32> {
    match word.load(Ordering::Relaxed) & PID {
        0 => None,
        pid => Some(pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn lock_unlock_and_try_lock() {
        let w = AtomicU32::new(0);
        assert_eq!(try_lock(&w), Some(FRESH));
        assert_eq!(holder(&w), Some(std::process::id()));
        assert_eq!(try_lock(&w), None, "held by this live process");
        assert_eq!(
            lock(&w, Some(Instant::now() + Duration::from_millis(5))),
            None
        );
        unlock(&w);
        assert_eq!(holder(&w), None);
        assert_eq!(lock(&w, None), Some(FRESH));
        unlock(&w);
    }

    #[test]
    fn threads_exclude_each_other() {
        let w = Arc::new(AtomicU32::new(0));
        let count = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (w, count) = (w.clone(), count.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let _ = lock(&w, None).unwrap();
                        // A non-atomic read-modify-write: lost updates if
                        // two threads were inside at once.
                        let n = count.load(Ordering::Relaxed);
                        count.store(n + 1, Ordering::Relaxed);
                        unlock(&w);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(count.load(Ordering::Relaxed), 80_000);
        assert_eq!(w.load(Ordering::Relaxed) & PID, 0);
    }

    fn dead_pid(reap: bool) -> (u32, std::process::Child) {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        if reap {
            child.wait().unwrap();
        } else {
            // Wait until it is a zombie without reaping it.
            let id = rustix::process::Pid::from_raw(pid as i32).unwrap();
            rustix::process::waitid(
                rustix::process::WaitId::Pid(id),
                rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
            )
            .unwrap();
        }
        (pid, child)
    }

    #[test]
    fn a_dead_holder_is_taken_over_with_owner_died() {
        for reap in [true, false] {
            let (pid, mut child) = dead_pid(reap);
            let w = AtomicU32::new(pid);
            assert_eq!(
                try_lock(&w),
                Some(Acquired { owner_died: true }),
                "reaped: {reap}"
            );
            assert_eq!(holder(&w), Some(std::process::id()));
            unlock(&w);
            // A sleeper finds out by polling, well within 100 ms.
            w.store(pid | WAITERS, Ordering::Relaxed);
            assert_eq!(lock(&w, None), Some(Acquired { owner_died: true }));
            unlock(&w);
            let _ = child.wait();
        }
    }
}
