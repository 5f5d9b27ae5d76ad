//! [`wait`]: Python's `multiprocessing.connection.wait`, over connections,
//! process sentinels and descriptors.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::sys;

/// Something [`wait`] can wait on: a [`Connection`](super::Connection)
/// (ready when a message or end of file can be received), a
/// [`Process`](crate::Process) (ready when it has ended: its sentinel), a
/// [`Queue`](crate::Queue), [`SimpleQueue`](crate::SimpleQueue) or
/// [`JoinableQueue`](crate::JoinableQueue) (ready when a `get` would not
/// wait: a message is there, or the queue was closed or shut down), a pool
/// result ([`AsyncResult`](crate::pool::AsyncResult), ready when it is
/// [`done`](crate::pool::AsyncResult::done)), or any descriptor
/// (`BorrowedFd`, ready when readable).
///
/// Sealed: the crate implements it for its own types, whose readiness may
/// need more than a `poll` (a pipe's socket may hold only a stale
/// doorbell while its ring is empty; queues and results have no
/// descriptor at all).
pub trait Waitable: sealed::Waitable {}

impl<W: sealed::Waitable + ?Sized> Waitable for W {}

pub(crate) mod sealed {
    use std::os::fd::BorrowedFd;
    use std::sync::atomic::AtomicU32;

    /// What [`wait`](super::wait) asks of each object; not nameable
    /// outside the crate.
    pub trait Waitable {
        /// The descriptor to poll for reading; `None` for an object that
        /// is woken through a futex instead ([`arm`](Waitable::arm)).
        fn wait_fd(&self) -> Option<BorrowedFd<'_>>;
        /// Whether it is ready without polling (data already buffered).
        fn ready_now(&self) -> bool {
            false
        }
        /// After a poll said its descriptor is readable, or its futex was
        /// woken: whether it really is ready.
        fn confirm(&self) -> bool {
            true
        }
        /// For an object without a descriptor: makes sure whoever makes it
        /// ready wakes the returned futex word, and returns it with the
        /// value to sleep on; `None` if it is ready already.
        fn arm(&self) -> Option<(&AtomicU32, u32)> {
            None
        }
    }
}

impl sealed::Waitable for BorrowedFd<'_> {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

impl<R: DeserializeOwned> sealed::Waitable for crate::Process<R> {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.sentinel())
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: no limit; any `Duration`), and returns the indices of those
/// ready — empty on timeout (Python's `multiprocessing.connection.wait`,
/// which also takes queues' readers and, here, pool results).
///
/// Descriptors are polled; queues and pool results have none and are
/// slept on with `futex_waitv(2)`. When both kinds are given, one helper
/// thread sleeps on the futexes for the duration of the call and wakes the
/// poll through an eventfd; it has ended when `wait` returns.
///
/// # Errors
///
/// [`ErrorKind::Io`](crate::ErrorKind::Io) if polling fails, or if the
/// helper thread or its eventfd cannot be created (at the thread or
/// descriptor limit); nothing is consumed from any object either way.
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.and_then(crate::time::deadline_after);
    let polled: Vec<(usize, BorrowedFd<'_>)> = (0..objects.len())
        .filter_map(|i| objects[i].wait_fd().map(|fd| (i, fd)))
        .collect();
    let slept: Vec<usize> = (0..objects.len())
        .filter(|&i| objects[i].wait_fd().is_none())
        .collect();
    loop {
        // Every object is asked (a pipe end arms its doorbell here).
        let ready: Vec<usize> = (0..objects.len())
            .filter(|&i| objects[i].ready_now())
            .collect();
        if !ready.is_empty() {
            return Ok(ready);
        }
        let mut words = Vec::with_capacity(slept.len() + 1);
        for &i in &slept {
            match objects[i].arm() {
                Some(w) => words.push(w),
                None => return Ok(vec![i]),
            }
        }
        let fds: Vec<BorrowedFd<'_>> = polled.iter().map(|&(_, fd)| fd).collect();
        let flags = if words.is_empty() {
            sys::socket::wait_readable(&fds, deadline).map_err(|e| Error::io("poll failed", e))?
        } else if fds.is_empty() {
            sys::futex::wait_any(&words, deadline);
            Vec::new()
        } else {
            poll_and_sleep(&fds, &words, deadline)?
        };
        let mut ready: Vec<usize> = flags
            .iter()
            .zip(&polled)
            .filter(|&(r, &(i, _))| *r && objects[i].confirm())
            .map(|(_, &(i, _))| i)
            .collect();
        ready.extend(slept.iter().copied().filter(|&i| objects[i].confirm()));
        ready.sort_unstable();
        if !ready.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(ready);
        }
    }
}

/// Polls `fds` while a helper thread sleeps on `words`; whichever wakes
/// first ends both. Returns the poll's flags.
fn poll_and_sleep(
    fds: &[BorrowedFd<'_>],
    words: &[(&AtomicU32, u32)],
    deadline: Option<Instant>,
) -> Result<Vec<bool>> {
    let bell = sys::epoll::Doorbell::new().map_err(|e| Error::io("wait: no eventfd", e))?;
    let stop = AtomicU32::new(0);
    let mut all: Vec<BorrowedFd<'_>> = fds.to_vec();
    all.push(bell.as_fd());
    std::thread::scope(|scope| {
        // The scope joins the thread before `stop`, the bell and the
        // words' owners go.
        let stop_ref: &AtomicU32 = &stop;
        let mut sleep_on: Vec<(&AtomicU32, u32)> = Vec::with_capacity(words.len() + 1);
        sleep_on.push((stop_ref, 0));
        sleep_on.extend_from_slice(words);
        let bell_ref = &bell;
        std::thread::Builder::new()
            .name("multiproc-wait".into())
            .spawn_scoped(scope, move || {
                sys::futex::wait_any(&sleep_on, None);
                bell_ref.ring();
            })
            .map_err(|e| Error::io("wait: no helper thread", e))?;
        let polled = sys::socket::wait_readable(&all, deadline);
        stop.store(1, Ordering::Release);
        sys::futex::wake_all(&stop);
        let mut flags = polled.map_err(|e| Error::io("poll failed", e))?;
        flags.pop();
        Ok(flags)
    })
}
