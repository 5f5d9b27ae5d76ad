//! The manager's wire: frames on a socket, with Python's framing (a
//! 4-byte big-endian length, or -1 and an 8-byte length), read through the
//! crate's one receive buffer ([`RecvBuf`]: zeroed only when it grows,
//! growing with the bytes that arrive and never with what a header
//! announces, a body over the limit refused from its header), and received by trying non-blocking reads for a while before blocking
//! (one system call per attempt, not a `poll` and then a read). Between
//! attempts the thread yields rather than spins: on an idle machine that
//! costs a fraction of a microsecond, and on a busy one it lets the peer —
//! perhaps waiting for this very core — run (measured: 13–19 µs per round
//! trip instead of 90–190 µs with two cores shared by other work).
//!
//! A connection starts as a [`Connection`] for the authkey handshake and
//! then becomes a `Wire`. The server sends one empty frame when it is
//! ready, and the client waits for it before its first request, so that no
//! request can have been read into the `Connection`'s buffer during the
//! handshake and lost with it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::error::{Error, ErrorKind, Result};
use crate::frame::python::{Python, encode_header};
use crate::frame::{Fill, FrameError, RecvBuf};
use crate::sys::socket;

/// How long a server thread spins for its client's next request before
/// sleeping, and a client for its reply.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// The longest reply a client accepts from its manager: the longest
/// message any connection accepts by default.
pub(crate) const MAX_REPLY: usize = crate::connection::DEFAULT_MAX_MESSAGE_SIZE;

/// Frames up to this size are copied behind their header and sent with
/// one `send`.
const SMALL: usize = 16 * 1024;

/// One end of a manager connection.
pub(crate) struct Wire {
    sock: OwnedFd,
    /// The frame being sent (small frames only).
    out: Vec<u8>,
    buf: RecvBuf<Python>,
    /// Why the stream cannot be read any more, once it cannot.
    broken: Option<(ErrorKind, String)>,
}

fn eof() -> Error {
    Error::new(
        ErrorKind::Eof,
        "the other end of the connection is closed (or its process died)",
    )
}

impl Wire {
    /// The wire over `conn`'s socket, after its handshake.
    pub(crate) fn from_connection<T>(conn: Connection<T>) -> Result<Wire> {
        let sock = socket::dup(conn.fileno())
            .map_err(|e| Error::io("could not take over the connection", e))?;
        drop(conn);
        Ok(Wire {
            sock,
            out: Vec::new(),
            buf: RecvBuf::new(MAX_REPLY),
            broken: None,
        })
    }

    /// The socket, for polling.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Sends `body` as one frame: a small one with a single `send` of
    /// header and body copied together, a large one without the copy.
    pub(crate) fn send(&mut self, body: &[u8]) -> Result<()> {
        let (h, n) = encode_header(body.len());
        let sent = if body.len() <= SMALL {
            self.out.clear();
            self.out.extend_from_slice(&h[..n]);
            self.out.extend_from_slice(body);
            socket::send_bytes(self.sock.as_fd(), &self.out)
        } else {
            socket::send_all(self.sock.as_fd(), &[&h[..n], body], &[])
        };
        sent.map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => eof(),
            _ => Error::io("could not send on the manager connection", e),
        })
    }

    /// Receives one frame of at most `max` bytes, spinning on non-blocking
    /// reads for `spin` before blocking.
    ///
    /// A frame over `max` is [`ErrorKind::MessageTooLarge`], a corrupt
    /// header [`ErrorKind::Protocol`]; the wire cannot be read after
    /// either.
    pub(crate) fn recv(&mut self, max: usize, spin: Duration) -> Result<Vec<u8>> {
        if let Some((kind, why)) = &self.broken {
            return Err(Error::new(*kind, why.clone()));
        }
        let until = Instant::now().checked_add(spin);
        let mut waiting = spin.is_zero();
        self.buf.set_max_body(max);
        loop {
            let head = match self.buf.head() {
                // A header read earlier under a higher limit.
                Ok(Some((len, ()))) if len > max => Err(FrameError::TooLarge {
                    len: len as u64,
                    max,
                }),
                other => other,
            };
            match head {
                Ok(Some((len, ()))) if self.buf.buffered() >= len => {
                    return Ok(self.buf.take_body());
                }
                Ok(_) => {}
                Err(e) => {
                    let kind = match e {
                        FrameError::TooLarge { .. } => ErrorKind::MessageTooLarge,
                        FrameError::Malformed(_) => ErrorKind::Protocol,
                    };
                    return Err(self.break_with(kind, format!("{e}")));
                }
            }
            match self.buf.fill_bytes(self.sock.as_fd(), waiting) {
                Ok(Fill::Data) => {}
                Ok(Fill::Eof) => {
                    self.broken = Some((ErrorKind::Eof, eof().to_string()));
                    return Err(eof());
                }
                Ok(Fill::WouldBlock) => {
                    if until.is_none_or(|u| Instant::now() >= u) {
                        waiting = true;
                    }
                    std::thread::yield_now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(self.break_with(ErrorKind::Protocol, e.to_string()));
                }
                Err(e) => return Err(Error::io("could not receive on the manager connection", e)),
            }
        }
    }

    /// Marks the wire unreadable for good and returns the error.
    fn break_with(&mut self, kind: ErrorKind, why: String) -> Error {
        let why = format!("{why}; the connection cannot be used any more");
        self.broken = Some((kind, why.clone()));
        Error::new(kind, why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Wire, Wire) {
        let (a, b) = crate::connection::pipe::<()>().unwrap();
        (
            Wire::from_connection(a).unwrap(),
            Wire::from_connection(b).unwrap(),
        )
    }

    #[test]
    fn frames_of_every_size_arrive_whole_and_in_order() {
        let (mut a, mut b) = pair();
        const BUFFER: usize = crate::frame::buffer::CHUNK;
        let sizes = [
            0usize,
            1,
            11,
            12,
            13,
            BUFFER - 4,
            BUFFER,
            3 * BUFFER + 7,
            1 << 20,
        ];
        let writer = std::thread::spawn(move || {
            for (i, n) in sizes.iter().enumerate() {
                a.send(&vec![i as u8; *n]).unwrap();
            }
            a
        });
        for (i, n) in sizes.iter().enumerate() {
            let got = b.recv(usize::MAX, Duration::from_micros(5)).unwrap();
            assert_eq!(got.len(), *n);
            assert!(got.iter().all(|x| *x == i as u8));
        }
        drop(writer.join().unwrap());
        assert_eq!(
            b.recv(usize::MAX, Duration::ZERO).unwrap_err().kind(),
            ErrorKind::Eof
        );
        // The buffer shrank back after the large frames.
        assert!(b.buf.storage() <= crate::frame::buffer::RETAIN);
    }

    #[test]
    fn an_announced_size_is_checked_and_never_allocated_up_front() {
        let (mut a, mut b) = pair();
        // Over the limit: refused from the header, and the wire stays broken.
        a.send(&[0; 100]).unwrap();
        let e = b.recv(10, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge);
        assert_eq!(
            b.recv(1000, Duration::ZERO).unwrap_err().kind(),
            ErrorKind::MessageTooLarge
        );

        // Under no limit, a header announcing 1 TiB and then end of file:
        // an error, and the buffer grew only with the bytes that came.
        let (a, mut b) = pair();
        let (h, n) = encode_header(1 << 40);
        socket::send_all(a.fd(), &[&h[..n], &[7; 100]], &[]).unwrap();
        drop(a);
        let e = b.recv(usize::MAX, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Eof);
        assert!(b.buf.storage() <= 2 * crate::frame::buffer::CHUNK);

        // The lengths that aborted or panicked receivers: refused from the
        // header under a limit, cut short by end of file under none.
        for len in [1u64 << 62, 1 << 63, u64::MAX, 20 << 30] {
            for max in [MAX_REPLY, usize::MAX] {
                let (a, mut b) = pair();
                let mut bytes = (-1i32).to_be_bytes().to_vec();
                bytes.extend_from_slice(&len.to_be_bytes());
                bytes.extend_from_slice(&[7; 100]);
                socket::send_all(a.fd(), &[&bytes], &[]).unwrap();
                drop(a);
                let e = b.recv(max, Duration::ZERO).unwrap_err();
                let want = if max == MAX_REPLY {
                    ErrorKind::MessageTooLarge
                } else {
                    ErrorKind::Eof
                };
                assert_eq!(e.kind(), want, "{len} under {max}: {e}");
                assert_eq!(b.recv(max, Duration::ZERO).unwrap_err().kind(), want);
            }
        }
    }
}
