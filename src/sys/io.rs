//! Non-blocking writes on stream sockets, and `poll(2)` for reading and
//! writing at once: what the pool's event loop and its workers are built
//! on (their reads go through the one receive buffer, `crate::frame`, over
//! `sys::socket`).
//!
//! `send(2)` (like `recv(2)`) with `MSG_DONTWAIT` makes one call non-blocking
//! without changing the socket's mode, so the same socket can be used
//! blocking elsewhere; `MSG_NOSIGNAL` turns a vanished peer into `EPIPE`
//! instead of SIGPIPE (<https://man7.org/linux/man-pages/man2/send.2.html>).

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::SendFlags;

/// One `send(2)` of `buf`; blocking unless `nonblocking`. Returns how many
/// bytes went (0 when a non-blocking send would block). A peer that is gone
/// is `BrokenPipe`.
pub(crate) fn send(sock: BorrowedFd<'_>, buf: &[u8], nonblocking: bool) -> io::Result<usize> {
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    loop {
        match rustix::net::send(sock, buf, flags) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends all of `buf`, blocking.
pub(crate) fn send_all(sock: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = send(sock, buf, false)?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Readiness of one descriptor after [`poll`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ready {
    /// Readable, hung up or in error: a read will not block.
    pub(crate) read: bool,
}

/// `poll(2)` on `fds` (descriptor, want read, want write) for up to
/// `timeout` (`None`: no limit). `Ok(None)` when a signal interrupted the
/// wait (`EINTR`), so that the caller can look at what the signal did.
pub(crate) fn poll(
    fds: &[(BorrowedFd<'_>, bool, bool)],
    timeout: Option<Duration>,
) -> io::Result<Option<Vec<Ready>>> {
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|(fd, r, w)| {
            let mut flags = PollFlags::empty();
            if *r {
                flags |= PollFlags::IN;
            }
            if *w {
                flags |= PollFlags::OUT;
            }
            PollFd::new(fd, flags)
        })
        .collect();
    let timeout = timeout.map(|t| {
        Timespec::try_from(t)
            .unwrap_or(Timespec::try_from(Duration::from_secs(86_400)).unwrap_or_default())
    });
    match rustix::event::poll(&mut polls, timeout.as_ref()) {
        Ok(_) => Ok(Some(
            polls
                .iter()
                .map(|p| {
                    let ev = p.revents();
                    Ready {
                        read: ev.intersects(
                            PollFlags::IN | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL,
                        ),
                    }
                })
                .collect(),
        )),
        Err(Errno::INTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// This process's resident set size in bytes, from `/proc/self/statm`.
pub(crate) fn resident_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("unexpected /proc/self/statm"))?;
    Ok(pages * rustix::param::page_size() as u64)
}

/// Nanoseconds on `CLOCK_MONOTONIC`, which every process of the machine
/// shares (<https://man7.org/linux/man-pages/man2/clock_gettime.2.html>).
pub(crate) fn monotonic_ns() -> u64 {
    // SAFETY: an all-zero timespec is valid, and clock_gettime only writes
    // into the one we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn nonblocking_calls_report_would_block_and_eof() {
        let (a, b) = crate::sys::socket::stream_pair().unwrap();
        use crate::sys::socket::{Received, recv_bytes};
        let mut buf = [0u8; 8];
        assert_eq!(
            recv_bytes(b.as_fd(), &mut buf, false).unwrap(),
            Received::WouldBlock
        );
        send_all(a.as_fd(), b"hi").unwrap();
        let ready = poll(&[(b.as_fd(), true, false)], Some(Duration::from_secs(5)))
            .unwrap()
            .unwrap();
        assert!(ready[0].read);
        assert_eq!(
            recv_bytes(b.as_fd(), &mut buf, false).unwrap(),
            Received::Bytes(2)
        );
        assert_eq!(&buf[..2], b"hi");
        drop(a);
        assert_eq!(
            recv_bytes(b.as_fd(), &mut buf, false).unwrap(),
            Received::Eof
        );
        assert_eq!(
            send(b.as_fd(), b"x", true).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert!(resident_bytes().unwrap() > 0);
    }
}
