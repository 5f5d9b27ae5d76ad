//! [`Event`]: a flag in shared memory that processes wait for.
//!
//! One futex word: 0 clear, 1 set. `set` stores 1 and, if the flag was
//! clear, wakes every sleeper; `wait` sleeps on the word while it is 0.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::check_len;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::region::Region;
use crate::sys::futex;
use crate::time::deadline_after;

/// The shared-memory layout of an [`Event`] (4 bytes; all-zero is clear).
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `flag` | 0 clear, 1 set (the futex word) |
#[repr(C)]
pub(crate) struct EventLayout {
    pub(crate) flag: AtomicU32,
}

/// A flag that processes can set, clear and wait for: Python's
/// `multiprocessing.Event`.
///
/// ```
/// use std::time::Duration;
/// # multiproc::init();
/// let ev = multiproc::sync::Event::new()?;
/// let err = ev.wait_timeout(Duration::from_millis(1)).unwrap_err();
/// assert_eq!(err.kind(), multiproc::ErrorKind::Timeout);
/// ev.set();
/// assert!(ev.is_set());
/// ev.wait();
/// ev.wait_timeout(Duration::MAX)?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "Region", into = "Region")]
pub struct Event {
    region: Region,
}

impl TryFrom<Region> for Event {
    type Error = Error;
    fn try_from(region: Region) -> Result<Self> {
        check_len(&region, size_of::<EventLayout>(), "Event")?;
        Ok(Self { region })
    }
}

impl From<Event> for Region {
    fn from(e: Event) -> Region {
        e.region
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("is_set", &self.is_set())
            .finish()
    }
}

impl Event {
    /// A new, clear event.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the segment cannot be
    /// created or mapped.
    pub fn new() -> Result<Self> {
        Ok(Self {
            region: Region::new("multiproc-event", size_of::<EventLayout>())?,
        })
    }

    fn flag(&self) -> &AtomicU32 {
        self.region.u32_at(0)
    }

    /// Sets the flag and wakes every process waiting for it.
    pub fn set(&self) {
        if self.flag().swap(1, Ordering::Release) == 0 {
            futex::wake_all(self.flag());
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.flag().store(0, Ordering::Release);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.flag().load(Ordering::Acquire) != 0
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Awaits the flag: the `async` form of [`wait`](Self::wait), for any
    /// runtime (feature `async`). The wait runs on a pool thread of the
    /// [`blocking`](https://docs.rs/blocking) crate, 50 ms at a time.
    ///
    /// **Cancel-safe**: it only waits; a dropped future's pool thread is
    /// free again within 50 ms. It cannot fail.
    #[cfg(feature = "async")]
    pub async fn wait_async(&self) {
        while !self.is_set() {
            let event = self.clone();
            crate::aio::wait_slice(move |deadline| {
                let _ = event.wait_deadline(deadline);
            })
            .await;
        }
    }

    /// Waits at most `timeout` for the flag (Python's `wait(timeout)`; any
    /// `Duration`: `Duration::MAX` waits as long as it takes).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if it is still clear then.
    #[doc(alias = "wait(timeout)")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_or_time_out(deadline_after(timeout))
    }

    /// Waits until `deadline` at the latest for the flag.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if it is still clear then.
    pub fn wait_deadline(&self, deadline: Instant) -> Result<()> {
        self.wait_or_time_out(Some(deadline))
    }

    fn wait_or_time_out(&self, deadline: Option<Instant>) -> Result<()> {
        if self.wait_until(deadline) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Timeout,
                "the time ran out before the event was set",
            ))
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.is_set() {
                return true;
            }
            if futex::wait_until(self.flag(), 0, deadline) == futex::Woken::TimedOut {
                return self.is_set();
            }
        }
    }
}
