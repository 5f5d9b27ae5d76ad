//! Unix socket pairs that carry bytes and descriptors (`SCM_RIGHTS`), and
//! `poll(2)`.
//!
//! Descriptors ride as ancillary data on the first `sendmsg(2)` of a message;
//! on a stream socket the kernel never merges bytes across such a boundary,
//! so the receiver gets them with the bytes they were sent with
//! (<https://man7.org/linux/man-pages/man7/unix.7.html>).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// The most descriptors one `sendmsg` may carry (Linux's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// A connected pair of Unix stream sockets, close-on-exec.
pub(crate) fn stream_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A connected pair of Unix sequenced-packet sockets, close-on-exec: each
/// send is delivered whole or not at all.
pub(crate) fn packet_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Shuts down the sending direction of a socket: the peer reads end of
/// file once it has read what was sent.
pub(crate) fn shutdown_write(sock: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::net::shutdown(sock, rustix::net::Shutdown::Write)?)
}

/// Switches a descriptor between blocking and non-blocking mode.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, on)?)
}

/// Sends all of `bufs`, attaching `fds` to the first piece. Blocks until
/// everything is written (the socket must be in blocking mode). A peer that
/// is gone gives `BrokenPipe`; no SIGPIPE is raised.
pub(crate) fn send_all(
    sock: BorrowedFd<'_>,
    bufs: &[&[u8]],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS, "caller checks the descriptor count");
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(fds));
    }
    let mut index = 0; // which buffer
    let mut offset = 0; // how far into it
    let mut first = true;
    while index < bufs.len() || first {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(bufs.len() - index);
        if index < bufs.len() {
            slices.push(IoSlice::new(&bufs[index][offset..]));
            slices.extend(bufs[index + 1..].iter().map(|b| IoSlice::new(b)));
        }
        let result = if first {
            rustix::net::sendmsg(sock, &slices, &mut control, SendFlags::NOSIGNAL)
        } else {
            rustix::net::sendmsg(
                sock,
                &slices,
                &mut SendAncillaryBuffer::default(),
                SendFlags::NOSIGNAL,
            )
        };
        let mut sent = match result {
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        first = false;
        while index < bufs.len() && sent >= bufs[index].len() - offset {
            sent -= bufs[index].len() - offset;
            index += 1;
            offset = 0;
        }
        offset += sent;
        if index >= bufs.len() {
            break;
        }
    }
    Ok(())
}

/// What one [`recv`] got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// This many bytes (more than zero) were written into the buffer.
    Bytes(usize),
    /// The peer closed its end and everything it sent has been read.
    Eof,
    /// Nothing is there now (non-blocking sockets only).
    WouldBlock,
}

/// One `recvmsg(2)` into `buf`; descriptors that arrive are appended to `fds`
/// (close-on-exec).
pub(crate) fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<Received> {
    recv_with(sock, buf, fds, true)
}

/// [`recv`], not blocking when `wait` is false (`MSG_DONTWAIT`, whatever
/// the socket's mode): [`Received::WouldBlock`] when nothing is there.
pub(crate) fn recv_with(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    wait: bool,
) -> io::Result<Received> {
    let flags = if wait {
        RecvFlags::CMSG_CLOEXEC
    } else {
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT
    };
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(buf)];
        match rustix::net::recvmsg(sock, &mut iov, &mut control, flags) {
            Ok(msg) => {
                for message in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(received) = message {
                        fds.extend(received);
                    }
                }
                return Ok(if msg.bytes == 0 {
                    Received::Eof
                } else {
                    Received::Bytes(msg.bytes)
                });
            }
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(Received::WouldBlock),
            Err(e) => return Err(e.into()),
        }
    }
}

/// One `recv(2)` into `buf`, without descriptors. With `wait` false it
/// does not block (`MSG_DONTWAIT`) and gives [`Received::WouldBlock`] when
/// nothing is there, whatever the socket's mode: one system call where
/// `poll` and then a read would be two.
pub(crate) fn recv_bytes(sock: BorrowedFd<'_>, buf: &mut [u8], wait: bool) -> io::Result<Received> {
    let flags = if wait {
        RecvFlags::empty()
    } else {
        RecvFlags::DONTWAIT
    };
    loop {
        match rustix::net::recv(sock, &mut *buf, flags) {
            Ok((0, _)) => return Ok(Received::Eof),
            Ok((n, _)) => return Ok(Received::Bytes(n)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(Received::WouldBlock),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends all of `buf` with `send(2)` (no descriptors, no SIGPIPE): one
/// system call for a message that fits the socket buffer.
pub(crate) fn send_bytes(sock: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    let mut sent = 0;
    while sent < buf.len() {
        match rustix::net::send(sock, &buf[sent..], SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Sends `buf` if the socket has room now, without blocking
/// (`MSG_DONTWAIT`, no SIGPIPE): `Ok(false)` if it has none. A peer that is
/// gone gives `BrokenPipe`.
pub(crate) fn send_nowait(sock: BorrowedFd<'_>, buf: &[u8]) -> io::Result<bool> {
    loop {
        match rustix::net::send(sock, buf, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends one marker byte with `fds` attached (`SCM_RIGHTS`, at most
/// [`MAX_FDS`]) if the socket has room now, without blocking: `Ok(false)`
/// if it has none (then nothing went). On a stream socket the receiver's
/// `recvmsg` stops after the byte that carries descriptors, so a reader of
/// one byte at a time gets each such message whole. A peer that is gone
/// gives `BrokenPipe`; no SIGPIPE is raised.
pub(crate) fn send_fds_nowait(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<bool> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    loop {
        match rustix::net::sendmsg(
            sock,
            &[IoSlice::new(&[0])],
            &mut control,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        ) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the peer of a connected socket is gone (`POLLHUP` or `POLLERR`
/// now; one `poll(2)` that does not wait).
pub(crate) fn hung_up(sock: BorrowedFd<'_>) -> io::Result<bool> {
    let mut polls = [PollFd::new(&sock, PollFlags::empty())];
    let zero = Timespec::try_from(Duration::ZERO).unwrap_or_default();
    loop {
        match rustix::event::poll(&mut polls, Some(&zero)) {
            Ok(_) => {
                return Ok(polls[0]
                    .revents()
                    .intersects(PollFlags::HUP | PollFlags::ERR));
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The pid of the process at the other end of the Unix socket `sock` when
/// the connection was made (`SO_PEERCRED`: for a socket pair, the process
/// that created the pair).
pub(crate) fn peer_pid(sock: BorrowedFd<'_>) -> io::Result<i32> {
    let cred = rustix::net::sockopt::socket_peercred(sock)?;
    Ok(cred.pid.as_raw_nonzero().get())
}

/// Sends one whole packet with descriptors on a sequenced-packet socket.
pub(crate) fn send_packet(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors for one packet"));
    }
    loop {
        match rustix::net::sendmsg(
            sock,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one packet with its descriptors; `Ok(None)` when the peer is gone.
pub(crate) fn recv_packet(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut fds = Vec::new();
    match recv(sock, buf, &mut fds)? {
        Received::Bytes(n) => Ok(Some((n, fds))),
        Received::Eof => Ok(None),
        Received::WouldBlock => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// Waits until one of `fds` is readable (or hung up), or `deadline` passes.
/// Returns which ones are ready; all false on timeout.
pub(crate) fn wait_readable(
    fds: &[BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> io::Result<Vec<bool>> {
    loop {
        let mut polls: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        let timeout =
            match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    Some(Timespec::try_from(left).unwrap_or(
                        Timespec::try_from(Duration::from_secs(86_400)).unwrap_or_default(),
                    ))
                }
            };
        match rustix::event::poll(&mut polls, timeout.as_ref()) {
            Ok(_) => {
                return Ok(polls.iter().map(|p| !p.revents().is_empty()).collect());
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Duplicates a descriptor (close-on-exec).
pub(crate) fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), 0)?)
}

/// Reads into `buf`'s spare capacity, never past `limit` bytes in total,
/// without zeroing the memory first. Returns how many bytes came (0 at end
/// of file).
pub(crate) fn read_into(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    let want = limit.saturating_sub(buf.len());
    buf.reserve(want);
    loop {
        let spare = buf.spare_capacity_mut();
        let spare_len = spare.len().min(want);
        match rustix::io::read(fd, &mut spare[..spare_len]) {
            Ok((init, _)) => {
                let n = init.len();
                // SAFETY: read() initialised the first n bytes of the spare
                // capacity, which directly follow the vector's length.
                unsafe { buf.set_len(buf.len() + n) };
                return Ok(n);
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Asks for a send buffer of `bytes` on `sock` (`SO_SNDBUF`; the kernel
/// caps it at `net.core.wmem_max`). A larger buffer lets a writer hand over
/// a big message in fewer rounds of "fill, wait for the reader".
pub(crate) fn set_send_buffer(sock: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_send_buffer_size(
        sock, bytes,
    )?)
}
