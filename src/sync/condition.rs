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

use super::lock::{LockLayout, check_len, owner_died_check};
use super::outcome::{AcquireError, AcquireResult, LockResult};
use crate::error::{Error, Result};
use crate::shm::lockword;
use crate::shm::region::Region;
use crate::sys::futex;
use crate::time::{deadline_after, expired};

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
/// let waited = held.wait_timeout(std::time::Duration::from_millis(1));
/// assert_eq!(waited.unwrap_err().kind(), multiproc::ErrorKind::Timeout);
/// held.notify_all(); // the lock is held again after a timeout
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

    /// Takes the lock if it is free now.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] if it is held;
    /// [`AcquireError::OwnerDied`], as [`acquire`](Self::acquire).
    #[doc(alias = "acquire(block=False)")]
    pub fn try_acquire(&self) -> AcquireResult<ConditionGuard<'_>> {
        match lockword::try_lock(self.word()) {
            Some(got) => Ok(self.guard(got)?),
            None => Err(AcquireError::WouldBlock),
        }
    }

    /// Takes the lock, waiting at most `timeout` (any `Duration`:
    /// `Duration::MAX` waits as long as it takes).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] if it is still held then;
    /// [`AcquireError::OwnerDied`], as [`acquire`](Self::acquire).
    #[doc(alias = "acquire(timeout)")]
    pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<ConditionGuard<'_>> {
        self.acquire_until(deadline_after(timeout))
    }

    /// Takes the lock, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire_deadline(&self, deadline: Instant) -> AcquireResult<ConditionGuard<'_>> {
        self.acquire_until(Some(deadline))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> AcquireResult<ConditionGuard<'_>> {
        match lockword::lock(self.word(), deadline) {
            Some(got) => Ok(self.guard(got)?),
            None => Err(AcquireError::Timeout),
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
    /// [`OwnerDied`](super::OwnerDied) if a process died holding the lock
    /// (while this waited, or before, unacknowledged); the lock is held
    /// again either way, by this guard.
    pub fn wait(&mut self) -> LockResult<()> {
        self.wait_until(None)
            .map(drop)
            .map_err(|died| died.map(drop))
    }

    /// Like [`wait`](Self::wait), for at most `timeout` (Python's
    /// `wait(timeout)`; any `Duration`: `Duration::MAX` waits as long as it
    /// takes). The lock is held again however it ends.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] if the time ran out without a notify;
    /// [`AcquireError::OwnerDied`], as [`wait`](Self::wait).
    #[doc(alias = "wait(timeout)")]
    pub fn wait_timeout(&mut self, timeout: Duration) -> AcquireResult<()> {
        self.wait_deadline_opt(deadline_after(timeout))
    }

    /// Like [`wait`](Self::wait), until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&mut self, deadline: Instant) -> AcquireResult<()> {
        self.wait_deadline_opt(Some(deadline))
    }

    fn wait_deadline_opt(&mut self, deadline: Option<Instant>) -> AcquireResult<()> {
        match self.wait_until(deadline) {
            Ok(true) => Ok(()),
            Ok(false) => Err(AcquireError::Timeout),
            Err(died) => Err(died.map(drop).into()),
        }
    }

    /// Waits until `predicate` (called with the lock held) is true (Python's
    /// `wait_for`).
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](super::OwnerDied), as [`wait`](Self::wait): the
    /// predicate is not called again, since the state may be half-changed.
    pub fn wait_for(&mut self, predicate: impl FnMut() -> bool) -> LockResult<()> {
        match self.wait_for_until(predicate, None) {
            Ok(()) => Ok(()),
            Err(AcquireError::OwnerDied(died)) => Err(died),
            Err(_) => unreachable!("no deadline, and a local wait cannot fail"),
        }
    }

    /// Like [`wait_for`](Self::wait_for), for at most `timeout` (Python's
    /// `wait_for(predicate, timeout)`).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] if the predicate is still false when the
    /// time runs out; [`AcquireError::OwnerDied`], as
    /// [`wait_for`](Self::wait_for).
    pub fn wait_for_timeout(
        &mut self,
        predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> AcquireResult<()> {
        self.wait_for_until(predicate, deadline_after(timeout))
    }

    /// Like [`wait_for`](Self::wait_for), until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`wait_for_timeout`](Self::wait_for_timeout).
    pub fn wait_for_deadline(
        &mut self,
        predicate: impl FnMut() -> bool,
        deadline: Instant,
    ) -> AcquireResult<()> {
        self.wait_for_until(predicate, Some(deadline))
    }

    fn wait_for_until(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> AcquireResult<()> {
        loop {
            if predicate() {
                return Ok(());
            }
            if expired(deadline) {
                return Err(AcquireError::Timeout);
            }
            self.wait_until(deadline).map_err(|died| died.map(drop))?;
        }
    }

    /// Whether notified (or woken spuriously) rather than timed out.
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
