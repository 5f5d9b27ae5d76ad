//! [`Semaphore`] and [`BoundedSemaphore`]: a counter of permits in shared
//! memory.
//!
//! Acquire decrements the count with a compare-and-swap when it is above
//! zero; otherwise it registers in `sleepers` and sleeps on the count's
//! futex while the count is 0. Release increments the count and wakes one
//! sleeper if `sleepers` says there may be one. Both sides use sequentially
//! consistent operations, so either the releaser sees the sleeper or the
//! sleeper's futex sees the new count: no lost wake-up.
//!
//! A process that dies holding a permit cannot be detected (a permit has no
//! owner; Python's semaphores have the same limit): the permit is lost.
//! Guard critical sections that may crash with a [`Lock`](super::Lock)
//! instead, or use timeouts.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::check_len;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::region::Region;
use crate::sys::futex;
use crate::time::deadline_after;

/// The shared-memory layout of a semaphore (12 bytes).
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `value` | permits available (the futex word) |
/// | 4 | `sleepers` | processes or threads that may be asleep on `value` |
/// | 8 | `bound` | the most `value` may reach (`u32::MAX`: unbounded) |
#[repr(C)]
pub(crate) struct SemaphoreLayout {
    pub(crate) value: AtomicU32,
    pub(crate) sleepers: AtomicU32,
    pub(crate) bound: AtomicU32,
}

const VALUE: usize = std::mem::offset_of!(SemaphoreLayout, value);
const SLEEPERS: usize = std::mem::offset_of!(SemaphoreLayout, sleepers);
const BOUND: usize = std::mem::offset_of!(SemaphoreLayout, bound);

/// The machinery shared by both kinds.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Region", into = "Region")]
struct Sem {
    region: Region,
}

impl TryFrom<Region> for Sem {
    type Error = Error;
    fn try_from(region: Region) -> Result<Self> {
        check_len(&region, size_of::<SemaphoreLayout>(), "Semaphore")?;
        Ok(Self { region })
    }
}

impl From<Sem> for Region {
    fn from(s: Sem) -> Region {
        s.region
    }
}

impl Sem {
    fn new(value: u32, bound: u32) -> Result<Self> {
        let region = Region::new("multiproc-semaphore", size_of::<SemaphoreLayout>())?;
        region.u32_at(VALUE).store(value, Ordering::Relaxed);
        region.u32_at(BOUND).store(bound, Ordering::Release);
        Ok(Self { region })
    }

    fn value(&self) -> &AtomicU32 {
        self.region.u32_at(VALUE)
    }

    fn try_take(&self) -> bool {
        let value = self.value();
        let mut v = value.load(Ordering::Relaxed);
        while v > 0 {
            match value.compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    fn acquire(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.try_take() {
                return true;
            }
            let sleepers = self.region.u32_at(SLEEPERS);
            sleepers.fetch_add(1, Ordering::SeqCst);
            let woken = if self.value().load(Ordering::SeqCst) == 0 {
                futex::wait_until(self.value(), 0, deadline)
            } else {
                futex::Woken::Maybe
            };
            sleepers.fetch_sub(1, Ordering::SeqCst);
            if woken == futex::Woken::TimedOut {
                return self.try_take();
            }
        }
    }

    fn release(&self, n: u32) -> Result<()> {
        let value = self.value();
        let bound = self.region.u32_at(BOUND).load(Ordering::Acquire);
        let mut v = value.load(Ordering::Relaxed);
        loop {
            let Some(new) = v.checked_add(n).filter(|&new| new <= bound) else {
                return Err(Error::new(
                    ErrorKind::NotAcquired,
                    if bound == u32::MAX {
                        format!(
                            "semaphore released too many times: its value {v} + {n} would overflow"
                        )
                    } else {
                        format!(
                            "BoundedSemaphore released too many times: its value {v} + {n} would pass its bound {bound}"
                        )
                    },
                ));
            };
            match value.compare_exchange_weak(v, new, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if self.region.u32_at(SLEEPERS).load(Ordering::SeqCst) > 0 {
            futex::wake(value, n);
        }
        Ok(())
    }
}

fn would_block() -> Error {
    Error::new(ErrorKind::WouldBlock, "no permit of the semaphore is free")
}

fn timed_out() -> Error {
    Error::new(
        ErrorKind::Timeout,
        "the time ran out before a permit of the semaphore was free",
    )
}

macro_rules! semaphore_common {
    ($t:ident) => {
        impl $t {
            /// Takes a permit, waiting as long as it takes; the guard gives
            /// it back when dropped (or keep it with
            /// [`SemaphoreGuard::leak`] and give it back with `release`,
            /// Python's acquire-here, release-there).
            pub fn acquire(&self) -> SemaphoreGuard<'_> {
                self.0.acquire(None);
                SemaphoreGuard { sem: &self.0 }
            }

            /// Takes a permit if one is free now.
            ///
            /// # Errors
            ///
            /// [`ErrorKind::WouldBlock`] if none is.
            #[doc(alias = "acquire(block=False)")]
            pub fn try_acquire(&self) -> Result<SemaphoreGuard<'_>> {
                if self.0.try_take() {
                    Ok(SemaphoreGuard { sem: &self.0 })
                } else {
                    Err(would_block())
                }
            }

            /// Takes a permit, waiting at most `timeout` (any `Duration`:
            /// `Duration::MAX` waits as long as it takes).
            ///
            /// # Errors
            ///
            /// [`ErrorKind::Timeout`] if none was free in time.
            #[doc(alias = "acquire(timeout)")]
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphoreGuard<'_>> {
                self.acquire_until(deadline_after(timeout))
            }

            /// Takes a permit, waiting until `deadline` at the latest.
            ///
            /// # Errors
            ///
            /// As [`acquire_timeout`](Self::acquire_timeout).
            pub fn acquire_deadline(&self, deadline: Instant) -> Result<SemaphoreGuard<'_>> {
                self.acquire_until(Some(deadline))
            }

            fn acquire_until(&self, deadline: Option<Instant>) -> Result<SemaphoreGuard<'_>> {
                if self.0.acquire(deadline) {
                    Ok(SemaphoreGuard { sem: &self.0 })
                } else {
                    Err(timed_out())
                }
            }

            /// The number of permits available now (Python's
            /// `get_value()`); it may change at once.
            pub fn get_value(&self) -> u32 {
                self.0.value().load(Ordering::Relaxed)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("value", &self.get_value())
                    .finish()
            }
        }
    };
}

/// A counting semaphore shared by processes: Python's
/// `multiprocessing.Semaphore`.
///
/// It holds a number of permits; [`acquire`](Self::acquire) takes one,
/// waiting while there are none, and returns a [`SemaphoreGuard`] that
/// gives it back when dropped. [`release`](Self::release) gives a permit
/// back from any process (after [`SemaphoreGuard::leak`], or to add one).
///
/// A process that dies holding a permit cannot be detected (a permit has
/// no owner — Python has the same limit), so its permit is lost.
///
/// ```
/// # multiproc::init();
/// let sem = multiproc::sync::Semaphore::new(2)?;
/// {
///     let _a = sem.acquire();
///     let _b = sem.acquire();
///     let err = sem.try_acquire().unwrap_err();
///     assert_eq!(err.kind(), multiproc::ErrorKind::WouldBlock);
/// }
/// assert_eq!(sem.get_value(), 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Semaphore(Sem);

semaphore_common!(Semaphore);

impl Semaphore {
    /// A semaphore with `value` permits.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the segment cannot be created.
    pub fn new(value: u32) -> Result<Self> {
        Ok(Self(Sem::new(value, u32::MAX)?))
    }

    /// Gives a permit back (from any process), waking one waiter.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotAcquired`] if the count would overflow.
    pub fn release(&self) -> Result<()> {
        self.0.release(1)
    }
}

/// A semaphore that may not be released above its initial value: Python's
/// `multiprocessing.BoundedSemaphore`. Over-releasing is an error instead
/// of silently adding a permit.
#[derive(Clone, Serialize, Deserialize)]
pub struct BoundedSemaphore(Sem);

semaphore_common!(BoundedSemaphore);

impl BoundedSemaphore {
    /// A semaphore with `value` permits, never more.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the segment cannot be created.
    pub fn new(value: u32) -> Result<Self> {
        Ok(Self(Sem::new(value, value)?))
    }

    /// Gives a permit back (from any process), waking one waiter.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotAcquired`] if that would take the value above the
    /// initial one (released more often than acquired).
    pub fn release(&self) -> Result<()> {
        self.0.release(1)
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`], given back on drop.
#[must_use = "the permit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Sem,
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken after the guard is gone; give it back later
    /// with the semaphore's `release`, in this process or another.
    pub fn leak(self) {
        std::mem::forget(self)
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Cannot pass the bound: this permit was taken.
        let _ = self.sem.release(1);
    }
}
