//! [`wait`]: Python's `multiprocessing.connection.wait`, over connections,
//! process sentinels and descriptors.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::sys;

/// Something [`wait`] can wait on: a [`Connection`](super::Connection)
/// (ready when a message or end of file can be received), a
/// [`Process`](crate::Process) (ready when it has ended: its sentinel), or
/// any descriptor (`BorrowedFd`, ready when readable).
///
/// Sealed: the crate implements it for its own types, whose readiness may
/// need more than a `poll` (a pipe's socket may hold only a stale
/// doorbell while its ring is empty).
pub trait Waitable: sealed::Waitable {}

impl<W: sealed::Waitable + ?Sized> Waitable for W {}

pub(crate) mod sealed {
    use std::os::fd::BorrowedFd;

    /// What [`wait`](super::wait) asks of each object; not nameable
    /// outside the crate.
    pub trait Waitable {
        /// The descriptor to poll for reading.
        fn wait_fd(&self) -> BorrowedFd<'_>;
        /// Whether it is ready without polling (data already buffered).
        fn ready_now(&self) -> bool {
            false
        }
        /// After a poll said its descriptor is readable: whether it really
        /// is ready.
        fn confirm(&self) -> bool {
            true
        }
    }
}

impl sealed::Waitable for BorrowedFd<'_> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

impl<R: DeserializeOwned> sealed::Waitable for crate::Process<R> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.sentinel()
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: no limit), and returns the indices of those ready — empty on
/// timeout (Python's `multiprocessing.connection.wait`).
///
/// # Errors
///
/// [`ErrorKind::Io`](crate::ErrorKind::Io) if polling fails.
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.and_then(crate::time::deadline_after);
    let fds: Vec<BorrowedFd<'_>> = objects.iter().map(|o| o.wait_fd()).collect();
    loop {
        // Every object is asked (a pipe end arms its doorbell here).
        let ready: Vec<usize> = (0..objects.len())
            .filter(|&i| objects[i].ready_now())
            .collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
        let flags =
            sys::socket::wait_readable(&fds, deadline).map_err(|e| Error::io("poll failed", e))?;
        let ready: Vec<usize> = flags
            .iter()
            .enumerate()
            .filter(|&(i, r)| *r && objects[i].confirm())
            .map(|(i, _)| i)
            .collect();
        if !ready.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(ready);
        }
    }
}
