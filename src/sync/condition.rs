//! [`Condition`]: a condition variable shared by processes.
//!
//! A [`Lock`](super::Lock)'s layout plus a futex sequence word and a count
//! of waiters. `wait` (holding the lock) reads the sequence, counts itself
//! as a waiter, releases the lock and sleeps while the sequence is
//! unchanged; `notify` (holding the lock) bumps the sequence and wakes
//! sleepers — but only if someone waits, so a notify nobody hears costs no
//! system call. Because the sequence is read under the lock and bumped
//! under the lock, a notify can never fall between a waiter's check and its
//! sleep. As with every condition variable, `wait` may return without a
//! notify: check the condition in a loop, or use
//! [`wait_for`](ConditionGuard::wait_for).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::{LockLayout, LockResult, TryLockResult, check_len, owner_died_check};
use crate::error::{Error, Result};
use crate::shm::lockword;
use crate::shm::region::Region;
use crate::sys::futex;

/// The shared-memory layout of a [`Condition`] (16 bytes; all-zero is an
/// unlocked condition with no waiters).
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `lock` | a [`LockLayout`]: lock word, owner-died flag |
/// | 8 | `seq` | bumped by every notify (the futex word waiters sleep on) |
/// | 12 | `waiters` | waiters between their `wait` and their wake-up |
#[repr(C)]
pub(crate) struct ConditionLayout {
    pub(crate) lock: LockLayout,
    pub(crate) seq: AtomicU32,
    pub(crate) waiters: AtomicU32,
}

const SEQ: usize = std::mem::offset_of!(ConditionLayout, seq);
const WAITERS: usize = std::mem::offset_of!(ConditionLayout, waiters);

/// A condition variable shared by processes, with its own lock: Python's
/// `multiprocessing.Condition`.
///
/// [`acquire`](Self::acquire) takes the lock and returns a
/// [`ConditionGuard`], on which you [`wait`](ConditionGuard::wait) and
/// [`notify`](ConditionGuard::notify) — so, as Python checks at run time,
/// you can only do either while holding the lock.
///
/// The lock is a plain (non-reentrant) robust lock, as
/// [`Lock`](super::Lock): if its holder dies, the next acquirer (or a
/// waiter re-taking it) learns it through [`OwnerDied`](super::OwnerDied).
/// (Python's default is an `RLock`.)
///
/// ```
/// # multiproc::init();
/// let cond = multiproc::sync::Condition::new()?;
/// let mut held = cond.acquire()?;
/// let notified = held.wait_timeout(std::time::Duration::from_millis(1))?;
/// assert!(!notified);
/// held.notify_all();
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Region", into = "Region")]
pub struct Condition {
    region: Region,
}

impl TryFrom<Region> for Condition {
    type Error = Error;
    fn try_from(region: Region) -> Result<Self> {
        check_len(&region, size_of::<ConditionLayout>(), "Condition")?;
        Ok(Self { region })
    }
}

impl From<Condition> for Region {
    fn from(c: Condition) -> Region {
        c.region
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("holder", &lockword::holder(self.word()))
            .finish()
    }
}

impl Condition {
    /// A new condition variable with its own lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the segment cannot be
    /// created or mapped.
    pub fn new() -> Result<Self> {
        Ok(Self {
            region: Region::new("multiproc-condition", size_of::<ConditionLayout>())?,
        })
    }

    fn word(&self) -> &AtomicU32 {
        self.region.u32_at(0)
    }

    fn guard(&self, got: lockword::Acquired) -> LockResult<ConditionGuard<'_>> {
        let g = ConditionGuard {
            cond: self,
            _not_sync: PhantomData,
        };
        owner_died_check(&self.region, 0, got, g)
    }

    /// Takes the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](super::OwnerDied) (holding the guard) if a process
    /// died holding the lock and nobody has acknowledged it since.
    pub fn acquire(&self) -> LockResult<ConditionGuard<'_>> {
        let got = lockword::lock(self.word(), None).expect("no deadline");
        self.guard(got)
    }

    /// Takes the lock if it is free now; `Ok(None)` if not.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](super::OwnerDied), as [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> TryLockResult<ConditionGuard<'_>> {
        match lockword::try_lock(self.word()) {
            Some(got) => self.guard(got).map(Some),
            None => Ok(None),
        }
    }

    /// Takes the lock, waiting at most `timeout`; `Ok(None)` if it is still
    /// held then.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](super::OwnerDied), as [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> TryLockResult<ConditionGuard<'_>> {
        match lockword::lock(self.word(), Some(Instant::now() + timeout)) {
            Some(got) => self.guard(got).map(Some),
            None => Ok(None),
        }
    }
}

/// The lock of a [`Condition`], held; released on drop. Wait and notify
/// through it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}

impl ConditionGuard<'_> {
    /// Releases the lock, sleeps until notified (or spuriously), and takes
    /// the lock again.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](super::OwnerDied) if, while this waited, a process
    /// died holding the lock; the lock is held again either way.
    pub fn wait(&mut self) -> LockResult<()> {
        self.wait_until(None).map(|_| ()).map_err(|e| e.map(|_| ()))
    }

    /// Like [`wait`](Self::wait), for at most `timeout`: `Ok(false)` if the
    /// time ran out without a notify (Python's `wait(timeout)`).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](super::OwnerDied), as [`wait`](Self::wait).
    pub fn wait_timeout(&mut self, timeout: Duration) -> LockResult<bool> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Waits until `predicate` (called with the lock held) is true, or
    /// until `timeout` (`None`: no limit) passes; the predicate's last
    /// value (Python's `wait_for`).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](super::OwnerDied), as [`wait`](Self::wait).
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> LockResult<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            if let Err(e) = self.wait_until(deadline) {
                return Err(e.map(|_| predicate()));
            }
        }
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> LockResult<bool> {
        let region = &self.cond.region;
        let seq = region.u32_at(SEQ);
        let waiters = region.u32_at(WAITERS);
        let s = seq.load(Ordering::Relaxed);
        waiters.fetch_add(1, Ordering::Relaxed);
        lockword::unlock(self.cond.word());
        let woken = futex::wait_until(seq, s, deadline);
        let got = lockword::lock(self.cond.word(), None).expect("no deadline");
        waiters.fetch_sub(1, Ordering::Relaxed);
        let notified = woken != futex::Woken::TimedOut || seq.load(Ordering::Relaxed) != s;
        owner_died_check(region, 0, got, notified)
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`).
    pub fn notify(&self, n: u32) {
        let region = &self.cond.region;
        if region.u32_at(WAITERS).load(Ordering::Relaxed) > 0 {
            region.u32_at(SEQ).fetch_add(1, Ordering::Relaxed);
            futex::wake(region.u32_at(SEQ), n);
        }
    }

    /// Wakes every waiter (Python's `notify_all()`).
    pub fn notify_all(&self) {
        self.notify(u32::MAX >> 1);
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        lockword::unlock(self.cond.word());
    }
}
