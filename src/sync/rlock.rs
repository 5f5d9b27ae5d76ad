//! [`RLock`]: a reentrant lock shared by processes.
//!
//! A [`Lock`](super::Lock)'s word and owner-died flag, plus the id of the
//! owning *thread* and a recursion count. Thread ids are unique across the
//! processes of a pid namespace, so "is it mine?" is one load compared with
//! the caller's (cached) id: only the owner ever writes its own id there.
//! The count is only touched by the owner.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::{LockLayout, check_len, owner_died_check};
use super::outcome::{AcquireError, AcquireResult, LockResult};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::lockword;
use crate::shm::region::Region;
use crate::time::deadline_after;

/// The shared-memory layout of an [`RLock`] (16 bytes; all-zero is free).
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `lock` | a [`LockLayout`]: lock word, owner-died flag |
/// | 8 | `owner` | thread id of the owner (0: none) |
/// | 12 | `count` | recursion depth of the owner |
#[repr(C)]
pub(crate) struct RLockLayout {
    pub(crate) lock: LockLayout,
    pub(crate) owner: AtomicU32,
    pub(crate) count: AtomicU32,
}

const OWNER: usize = std::mem::offset_of!(RLockLayout, owner);
const COUNT: usize = std::mem::offset_of!(RLockLayout, count);

fn me() -> u32 {
    crate::sys::thread::current_tid(crate::sys::process::cached_pid())
}

/// A reentrant lock shared by processes: Python's `multiprocessing.RLock`.
///
/// The thread that holds it may acquire it again; it is free once every
/// acquisition is released. Unlike [`Lock`](super::Lock), only the owning
/// thread may release it.
///
/// A process that dies holding it is detected as for `Lock`: the next
/// acquirer gets it within about 50 ms as an [`OwnerDied`](super::OwnerDied),
/// with a recursion count of 1. (A *thread* that exits holding it in a
/// live process is not detected, as with any mutex.)
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Region", into = "Region")]
pub struct RLock {
    region: Region,
}

impl TryFrom<Region> for RLock {
    type Error = Error;
    fn try_from(region: Region) -> Result<Self> {
        check_len(&region, size_of::<RLockLayout>(), "RLock")?;
        Ok(Self { region })
    }
}

impl From<RLock> for Region {
    fn from(l: RLock) -> Region {
        l.region
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("holder", &lockword::holder(self.word()))
            .field("count", &self.region.u32_at(COUNT).load(Ordering::Relaxed))
            .finish()
    }
}

impl RLock {
    /// A new, unlocked reentrant lock in a fresh shared-memory segment.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the segment cannot be created or mapped.
    pub fn new() -> Result<Self> {
        Ok(Self {
            region: Region::new("multiproc-rlock", size_of::<RLockLayout>())?,
        })
    }

    fn word(&self) -> &AtomicU32 {
        self.region.u32_at(0)
    }

    #[cfg(test)]
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// `Some(guard)` if this thread already owns the lock (count raised).
    /// The owner-died indication is sticky: a re-entry reports it too.
    fn reenter(&self, tid: u32) -> Option<LockResult<RLockGuard<'_>>> {
        if self.region.u32_at(OWNER).load(Ordering::Relaxed) == tid {
            let count = self.region.u32_at(COUNT);
            let n = count.load(Ordering::Relaxed);
            assert!(n < u32::MAX, "RLock acquired 2^32 times");
            count.store(n + 1, Ordering::Relaxed);
            let again = lockword::Acquired { owner_died: false };
            return Some(owner_died_check(&self.region, 0, again, self.make_guard()));
        }
        None
    }

    fn make_guard(&self) -> RLockGuard<'_> {
        RLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    fn took(&self, got: lockword::Acquired, tid: u32) -> LockResult<RLockGuard<'_>> {
        self.region.u32_at(OWNER).store(tid, Ordering::Relaxed);
        self.region.u32_at(COUNT).store(1, Ordering::Relaxed);
        owner_died_check(&self.region, 0, got, self.make_guard())
    }

    /// Acquires the lock (again, if this thread holds it), waiting as long
    /// as it takes.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`](super::OwnerDied) (holding the guard) if a process
    /// died holding the lock and nobody has acknowledged it since (a
    /// re-entry by the holder that was told reports it again).
    pub fn acquire(&self) -> LockResult<RLockGuard<'_>> {
        let tid = me();
        if let Some(g) = self.reenter(tid) {
            return g;
        }
        let got = lockword::lock(self.word(), None).expect("no deadline");
        self.took(got, tid)
    }

    /// Acquires the lock if this thread holds it or it is free now.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] if another thread holds it;
    /// [`AcquireError::OwnerDied`], as [`acquire`](Self::acquire).
    #[doc(alias = "acquire(block=False)")]
    pub fn try_acquire(&self) -> AcquireResult<RLockGuard<'_>> {
        let tid = me();
        if let Some(g) = self.reenter(tid) {
            return Ok(g?);
        }
        match lockword::try_lock(self.word()) {
            Some(got) => Ok(self.took(got, tid)?),
            None => Err(AcquireError::WouldBlock),
        }
    }

    /// Acquires the lock, waiting at most `timeout` (any `Duration`:
    /// `Duration::MAX` waits as long as it takes).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] if another live thread still holds it
    /// then; [`AcquireError::OwnerDied`], as [`acquire`](Self::acquire).
    #[doc(alias = "acquire(timeout)")]
    pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<RLockGuard<'_>> {
        self.acquire_until(deadline_after(timeout))
    }

    /// Acquires the lock, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire_deadline(&self, deadline: Instant) -> AcquireResult<RLockGuard<'_>> {
        self.acquire_until(Some(deadline))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> AcquireResult<RLockGuard<'_>> {
        let tid = me();
        if let Some(g) = self.reenter(tid) {
            return Ok(g?);
        }
        match lockword::lock(self.word(), deadline) {
            Some(got) => Ok(self.took(got, tid)?),
            None => Err(AcquireError::Timeout),
        }
    }

    /// Releases one acquisition made by this thread whose guard was
    /// [leaked](RLockGuard::leak) (Python's `release()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotAcquired`] if this thread does not hold the lock.
    pub fn release(&self) -> Result<()> {
        if self.region.u32_at(OWNER).load(Ordering::Relaxed) != me()
            || lockword::holder(self.word()).is_none()
        {
            return Err(Error::new(
                ErrorKind::NotAcquired,
                "release of an RLock this thread does not hold",
            ));
        }
        self.release_one();
        Ok(())
    }

    fn release_one(&self) {
        let count = self.region.u32_at(COUNT);
        let n = count.load(Ordering::Relaxed);
        if n > 1 {
            count.store(n - 1, Ordering::Relaxed);
        } else {
            count.store(0, Ordering::Relaxed);
            self.region.u32_at(OWNER).store(0, Ordering::Relaxed);
            lockword::unlock(self.word());
        }
    }

    /// Whether this thread holds the lock.
    pub fn is_mine(&self) -> bool {
        self.region.u32_at(OWNER).load(Ordering::Relaxed) == me()
            && lockword::holder(self.word()).is_some()
    }

    /// How many times the owner has acquired it (0: free). Only exact for
    /// the owning thread.
    pub fn count(&self) -> u32 {
        self.region.u32_at(COUNT).load(Ordering::Relaxed)
    }
}

/// Holds one acquisition of an [`RLock`]; releases it when dropped. It
/// stays on the thread that acquired it.
#[must_use = "the acquisition is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl RLockGuard<'_> {
    /// Keeps this acquisition after the guard is gone; release it later
    /// from this thread with [`RLock::release`].
    pub fn leak(self) {
        std::mem::forget(self)
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        self.lock.release_one();
    }
}
