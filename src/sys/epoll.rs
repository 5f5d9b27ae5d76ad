//! A readiness set a thread can sleep on without holding the lock of what
//! it watches ([epoll(7)](https://man7.org/linux/man-pages/man7/epoll.7.html)),
//! and a doorbell ([eventfd(2)](https://man7.org/linux/man-pages/man2/eventfd.2.html))
//! that wakes such a sleeper.
//!
//! `poll(2)` takes the descriptors at each call, so a thread that sleeps in
//! it must keep them borrowed, i.e. hold whatever owns them. An epoll set
//! holds its own references: the owner adds and removes descriptors under
//! its lock, and another thread sleeps on the set with no lock held.
//! Level-triggered: a descriptor stays ready until what made it ready is
//! consumed, so the sleeper only ever misses nothing.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::{EventfdFlags, Timespec, eventfd};
use rustix::io::Errno;

/// An epoll set; each descriptor in it carries a caller's token.
pub(crate) struct Epoll {
    fd: OwnedFd,
}

fn flags(read: bool, write: bool) -> EventFlags {
    let mut f = EventFlags::empty();
    if read {
        f |= EventFlags::IN;
    }
    if write {
        f |= EventFlags::OUT;
    }
    f
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            fd: epoll::create(CreateFlags::CLOEXEC)?,
        })
    }

    /// Watches `fd` for reading and/or writing, reported with `token`.
    pub(crate) fn add(
        &self,
        fd: BorrowedFd<'_>,
        token: u64,
        read: bool,
        write: bool,
    ) -> io::Result<()> {
        epoll::add(&self.fd, fd, EventData::new_u64(token), flags(read, write))?;
        Ok(())
    }

    /// Changes what `fd` is watched for.
    pub(crate) fn modify(
        &self,
        fd: BorrowedFd<'_>,
        token: u64,
        read: bool,
        write: bool,
    ) -> io::Result<()> {
        epoll::modify(&self.fd, fd, EventData::new_u64(token), flags(read, write))?;
        Ok(())
    }

    /// Stops watching `fd`. Closing a descriptor also removes it, unless a
    /// duplicate of it stays open: remove before closing.
    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) {
        let _ = epoll::delete(&self.fd, fd);
    }

    /// Sleeps until a watched descriptor is ready or `timeout` passes
    /// (`None`: no limit; a timeout too long to represent waits a day and
    /// returns, which callers treat as a spurious wake). Appends the tokens
    /// of ready descriptors to `ready`; none on timeout or a signal.
    pub(crate) fn wait(&self, timeout: Option<Duration>, ready: &mut Vec<u64>) -> io::Result<()> {
        let day = Duration::from_secs(86_400);
        let ts = timeout.map(|t| Timespec::try_from(t.min(day)).unwrap_or_default());
        let mut events: Vec<epoll::Event> = Vec::with_capacity(16);
        match epoll::wait(
            &self.fd,
            rustix::buffer::spare_capacity(&mut events),
            ts.as_ref(),
        ) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        ready.extend(events.iter().map(|e| e.data.u64()));
        Ok(())
    }
}

/// An eventfd: [`ring`](Doorbell::ring) makes it readable until
/// [`clear`](Doorbell::clear).
pub(crate) struct Doorbell {
    fd: OwnedFd,
}

impl Doorbell {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Self {
            fd: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        })
    }

    pub(crate) fn ring(&self) {
        // Fails only when the counter would overflow: it is readable then.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    pub(crate) fn clear(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rung_doorbell_wakes_the_set_until_cleared() {
        let set = Epoll::new().unwrap();
        let bell = Doorbell::new().unwrap();
        set.add(bell.as_fd(), 7, true, false).unwrap();
        let mut ready = Vec::new();
        set.wait(Some(Duration::ZERO), &mut ready).unwrap();
        assert!(ready.is_empty());
        bell.ring();
        set.wait(Some(Duration::MAX), &mut ready).unwrap();
        assert_eq!(ready, [7]);
        bell.clear();
        ready.clear();
        set.wait(Some(Duration::ZERO), &mut ready).unwrap();
        assert!(ready.is_empty());
        set.remove(bell.as_fd());
    }
}
