//! Non-blocking reads and writes on stream sockets, and `poll(2)` for
//! reading and writing at once: what the pool's event loop and its workers
//! are built on.
//!
//! `recv(2)`/`send(2)` with `MSG_DONTWAIT` make one call non-blocking
//! without changing the socket's mode, so the same socket can be used
//! blocking elsewhere; `MSG_NOSIGNAL` turns a vanished peer into `EPIPE`
//! instead of SIGPIPE (<https://man7.org/linux/man-pages/man2/send.2.html>).

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

/// What one read got.
pub(crate) enum Read {
    /// Some bytes arrived.
    Data,
    /// The peer closed its end (or reset it).
    Eof,
    /// Nothing now.
    WouldBlock,
}

/// One `recv(2)` into the spare capacity of `buf` (which must have some),
/// extending it by what arrived; blocking unless `nonblocking`. Nothing is
/// zeroed first.
pub(crate) fn recv_spare(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    nonblocking: bool,
) -> io::Result<Read> {
    let flags = if nonblocking {
        RecvFlags::DONTWAIT
    } else {
        RecvFlags::empty()
    };
    debug_assert!(buf.capacity() > buf.len());
    loop {
        match rustix::net::recv(sock, rustix::buffer::spare_capacity(buf), flags) {
            Ok((0, _)) => return Ok(Read::Eof),
            Ok(_) => return Ok(Read::Data),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(Read::WouldBlock),
            Err(Errno::CONNRESET) => return Ok(Read::Eof),
            Err(e) => return Err(e.into()),
        }
    }
}

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
        let mut buf = Vec::with_capacity(8);
        assert!(matches!(
            recv_spare(b.as_fd(), &mut buf, true).unwrap(),
            Read::WouldBlock
        ));
        send_all(a.as_fd(), b"hi").unwrap();
        let ready = poll(&[(b.as_fd(), true, false)], Some(Duration::from_secs(5)))
            .unwrap()
            .unwrap();
        assert!(ready[0].read);
        assert!(matches!(
            recv_spare(b.as_fd(), &mut buf, true).unwrap(),
            Read::Data
        ));
        assert_eq!(buf, b"hi");
        drop(a);
        buf.reserve(8);
        assert!(matches!(
            recv_spare(b.as_fd(), &mut buf, true).unwrap(),
            Read::Eof
        ));
        assert_eq!(
            send(b.as_fd(), b"x", true).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert!(resident_bytes().unwrap() > 0);
    }
}
