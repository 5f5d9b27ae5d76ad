//! [`Lock`]: a mutual-exclusion lock shared by processes, robust against a
//! holder that dies.
//!
//! The lock is one word of shared memory managed by `crate::shm::lockword`
//! (compare-and-swap of the holder's pid to lock, a swap to unlock, a futex
//! to sleep), plus a sticky *owner-died* flag beside it. When a process
//! dies holding the lock, the next locker takes it over within ~50 ms and
//! sets the flag; every acquisition that finds the flag set returns
//! [`OwnerDied`] instead of a plain guard, until someone takes
//! responsibility for the data with [`OwnerDied::into_guard`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::outcome::{AcquireError, AcquireResult, LockResult, OwnerDied};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::lockword;
use crate::shm::region::Region;
use crate::time::deadline_after;

/// The shared-memory layout of a [`Lock`] (8 bytes; all-zero is an
/// unlocked lock whose data is consistent).
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `word` | the lock word: 0 free, else holder pid (bit 31: waiters) |
/// | 4 | `owner_died` | 1 while a holder's death has not been acknowledged |
#[repr(C)]
pub(crate) struct LockLayout {
    pub(crate) word: AtomicU32,
    pub(crate) owner_died: AtomicU32,
}

/// Checks that a region received from another process is big enough for
/// a structure of `need` bytes at offset 0.
pub(crate) fn check_len(region: &Region, need: usize, what: &str) -> Result<()> {
    if region.len() < need {
        return Err(Error::new(
            ErrorKind::Decode,
            format!(
                "a {what} needs {need} bytes of shared memory; the segment received has {}",
                region.len()
            ),
        ));
    }
    Ok(())
}

/// A lock shared by processes: Python's `multiprocessing.Lock`.
///
/// Create it, then pass it to children in their arguments (it travels as a
/// descriptor under every start method) or let them inherit it under fork.
/// Clones are handles to the same lock.
///
/// [`acquire`](Self::acquire) returns an RAII [`LockGuard`] that releases
/// on drop. As in Python, a lock acquired in one process may be released
/// by another: [`LockGuard::leak`] keeps it held, and [`Lock::release`]
/// releases it from anywhere.
///
/// If a process dies holding the lock, the next process to acquire it gets
/// it within about 50 ms, as an [`OwnerDied`] (Python deadlocks here).
///
/// ```
/// use multiproc::{Process, sync::Lock};
///
/// fn work(lock: Lock) {
///     let _held = lock.acquire().unwrap();
///     // ... exclusive section
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// # multiproc::init();
/// let lock = Lock::new()?;
/// let child = Process::new(work, lock.clone()).start()?;
/// {
///     let _held = lock.acquire()?;
/// }
/// child.join()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "LockWire", into = "LockWire")]
pub struct Lock {
    region: Region,
    /// The lock of a `Value` or `Array`: [`Lock::release`] is refused, since
    /// releasing someone else's acquisition would let two processes hold
    /// `&mut` to the same data.
    guards_data: bool,
}

/// How a [`Lock`] travels.
#[derive(Serialize, Deserialize)]
struct LockWire(Region, bool);

impl TryFrom<LockWire> for Lock {
    type Error = Error;
    fn try_from(LockWire(region, guards_data): LockWire) -> Result<Self> {
        check_len(&region, size_of::<LockLayout>(), "Lock")?;
        Ok(Self {
            region,
            guards_data,
        })
    }
}

impl From<Lock> for LockWire {
    fn from(l: Lock) -> LockWire {
        LockWire(l.region, l.guards_data)
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("holder", &lockword::holder(self.word()))
            .finish()
    }
}

impl Lock {
    /// A new, unlocked lock in a fresh anonymous shared-memory segment.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the segment cannot be created or mapped.
    pub fn new() -> Result<Self> {
        Ok(Self {
            region: Region::new("multiproc-lock", size_of::<LockLayout>())?,
            guards_data: false,
        })
    }

    /// The lock at the start of `region` (whose first bytes are a
    /// [`LockLayout`]), guarding the typed data that follows it.
    pub(crate) fn for_data(region: Region) -> Self {
        assert!(region.len() >= size_of::<LockLayout>());
        Self {
            region,
            guards_data: true,
        }
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// Whether this is the lock of a `Value` or `Array`.
    pub(crate) fn guards_data(&self) -> bool {
        self.guards_data
    }

    #[inline]
    pub(crate) fn word(&self) -> &AtomicU32 {
        self.region.u32_at(std::mem::offset_of!(LockLayout, word))
    }

    #[inline]
    fn guard(&self, got: lockword::Acquired) -> LockResult<LockGuard<'_>> {
        let guard = LockGuard {
            lock: self,
            _not_sync: PhantomData,
        };
        owner_died_check(&self.region, 0, got, guard)
    }

    /// Acquires the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) if a process died holding the lock
    /// and nobody has acknowledged it since.
    pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
        let got = lockword::lock(self.word(), None).expect("no deadline");
        self.guard(got)
    }

    /// Acquires the lock if it is free now.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] if another process or thread holds it;
    /// [`AcquireError::OwnerDied`], as [`acquire`](Self::acquire).
    #[doc(alias = "acquire(block=False)")]
    pub fn try_acquire(&self) -> AcquireResult<LockGuard<'_>> {
        match lockword::try_lock(self.word()) {
            Some(got) => Ok(self.guard(got)?),
            None => Err(AcquireError::WouldBlock),
        }
    }

    /// Acquires the lock, waiting at most `timeout` (any `Duration`:
    /// `Duration::MAX` waits as long as it takes).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] if a live process still holds it then;
    /// [`AcquireError::OwnerDied`], as [`acquire`](Self::acquire).
    #[doc(alias = "acquire(timeout)")]
    pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<LockGuard<'_>> {
        self.acquire_until(deadline_after(timeout))
    }

    /// Acquires the lock, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Self::acquire_timeout).
    pub fn acquire_deadline(&self, deadline: Instant) -> AcquireResult<LockGuard<'_>> {
        self.acquire_until(Some(deadline))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> AcquireResult<LockGuard<'_>> {
        match lockword::lock(self.word(), deadline) {
            Some(got) => Ok(self.guard(got)?),
            None => Err(AcquireError::Timeout),
        }
    }

    /// Acquires the lock, awaiting it as long as it takes: the `async` form
    /// of [`acquire`](Self::acquire), for any runtime (feature `async`).
    ///
    /// The lock is taken on the awaiting task, when the future is polled
    /// (so the guard belongs to this process, as any guard); only the wait
    /// for the lock to be released runs on a pool thread of the
    /// [`blocking`](https://docs.rs/blocking) crate, 50 ms at a time. A
    /// dead holder is detected as by [`acquire`](Self::acquire), within a
    /// few tens of milliseconds.
    ///
    /// **Cancel-safe**: a future dropped before it returned holds nothing,
    /// and its pool thread is free again within 50 ms. (A sync waiter whose
    /// wake-up that thread absorbed retries within 20 ms.)
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard), as [`acquire`](Self::acquire).
    #[cfg(feature = "async")]
    pub async fn acquire_async(&self) -> LockResult<LockGuard<'_>> {
        loop {
            if let Some(got) = lockword::try_lock(self.word()) {
                return self.guard(got);
            }
            let region = self.region.clone();
            crate::aio::wait_slice(move |deadline| {
                let word = region.u32_at(std::mem::offset_of!(LockLayout, word));
                lockword::wait_free(word, deadline);
            })
            .await;
        }
    }

    /// Releases the lock, whoever acquired it (Python's `release()`): the
    /// counterpart of [`LockGuard::leak`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotAcquired`] if the lock is not held;
    /// [`ErrorKind::InvalidArgument`] if it is the lock of a
    /// [`Value`](crate::shared::Value) or [`Array`](crate::shared::Array),
    /// whose guards give `&mut` access: those are released by dropping
    /// the guard.
    pub fn release(&self) -> Result<()> {
        if self.guards_data {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the lock of a Value or Array is released by dropping its guard, not by release()",
            ));
        }
        if lockword::holder(self.word()).is_none() {
            return Err(Error::new(
                ErrorKind::NotAcquired,
                "release of a Lock that is not held",
            ));
        }
        lockword::unlock(self.word());
        Ok(())
    }

    /// Whether some process holds the lock right now (it may change at
    /// once).
    pub fn is_locked(&self) -> bool {
        lockword::holder(self.word()).is_some()
    }

    /// The pid of the process holding the lock, if any.
    pub fn holder(&self) -> Option<u32> {
        lockword::holder(self.word())
    }
}

/// Records an owner-died acquisition in the flag at `offset + 4` of
/// `region` and turns a pending one into [`OwnerDied`].
#[inline]
pub(crate) fn owner_died_check<G>(
    region: &Region,
    offset: usize,
    got: lockword::Acquired,
    guard: G,
) -> LockResult<G> {
    let flag_offset = offset + std::mem::offset_of!(LockLayout, owner_died);
    let flag = region.u32_at(flag_offset);
    if got.owner_died {
        flag.store(1, Ordering::Release);
    }
    if flag.load(Ordering::Acquire) != 0 {
        return Err(OwnerDied::new(guard, region.clone(), flag_offset));
    }
    Ok(guard)
}

/// Holds a [`Lock`]; releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    // A guard may be sent to another thread (any thread may release a
    // Lock), but sharing `&LockGuard` is pointless; keep it simple.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl<'a> LockGuard<'a> {
    /// The lock this guard holds.
    pub(crate) fn lock(&self) -> &'a Lock {
        self.lock
    }

    /// Keeps the lock held after the guard is gone; release it later with
    /// [`Lock::release`], in this process or another (Python's
    /// acquire-here, release-there). (The lock of a `Value` or `Array`
    /// then stays held for good: its `release` is refused.)
    pub fn leak(self) {
        std::mem::forget(self)
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        lockword::unlock(self.lock.word());
    }
}
