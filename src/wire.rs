//! Framed messages with descriptors over a Unix stream socket: the control
//! wire between a parent and its children and the fork server.
//!
//! The frame format is `crate::frame::control` (a 16-byte header, then the
//! body; descriptors ride as `SCM_RIGHTS` on the header's bytes); the
//! bytes are read through the crate's one receive buffer
//! ([`crate::frame::RecvBuf`]), which grows as bytes arrive rather than
//! with what a length promises and refuses bodies over a limit.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Instant;

use crate::codec;
use crate::frame::RecvBuf;
use crate::frame::control::{self, Control};
use crate::sys::socket;

pub(crate) use crate::frame::Fill;

#[cfg(test)]
const HEADER: usize = control::HEADER;

/// One message.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) body: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// Sends one frame; blocks until it is written.
pub(crate) fn send(
    sock: BorrowedFd<'_>,
    kind: u8,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    if fds.len() > socket::MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors in one frame",
        ));
    }
    let header = control::encode_header(kind, body.len(), fds.len() as u8);
    socket::send_all(sock, &[&header, body], fds)
}

/// Reassembles frames from a stream socket.
pub(crate) struct Reader {
    buf: RecvBuf<Control>,
}

impl Reader {
    /// A reader that refuses bodies longer than `max_body` bytes.
    pub(crate) fn new(max_body: u64) -> Self {
        Self {
            buf: RecvBuf::new(usize::try_from(max_body).unwrap_or(usize::MAX)),
        }
    }

    /// Whether the peer has closed its end.
    #[cfg(test)]
    pub(crate) fn at_eof(&self) -> bool {
        self.buf.at_eof()
    }

    /// Adds bytes as if they had been read (for fuzzing the decoder).
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.buf.feed(bytes);
    }

    /// Reads once from `sock` (blocking unless the socket does not block).
    pub(crate) fn fill(&mut self, sock: BorrowedFd<'_>) -> io::Result<Fill> {
        self.buf.fill(sock, true)
    }

    /// Takes the next complete frame out of what has been read, if there is
    /// one. A malformed header, a body over the limit or descriptors that
    /// did not come are an `InvalidData` error.
    pub(crate) fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let Some((_, meta)) = self.buf.ready()? else {
            return Ok(None);
        };
        let nfds = meta.nfds as usize;
        let Some(fds) = self.buf.take_fds(nfds) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                codec::fewer_fds_message(nfds, self.buf.fds_len()),
            ));
        };
        let body = self.buf.take_body();
        Ok(Some(Frame {
            kind: meta.kind,
            body,
            fds,
        }))
    }

    /// Reads until a whole frame is there (blocking socket), or the deadline
    /// passes (`Ok(None)`), or the peer closes (`Ok(None)` with
    /// [`Reader::at_eof`]). A partial frame at end of file is an
    /// `UnexpectedEof` error.
    pub(crate) fn recv(
        &mut self,
        sock: BorrowedFd<'_>,
        deadline: Option<Instant>,
    ) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(Some(frame));
            }
            if deadline.is_some() {
                let ready = socket::wait_readable(&[sock], deadline)?;
                if !ready[0] {
                    return Ok(None);
                }
            }
            match self.fill(sock)? {
                Fill::Data | Fill::WouldBlock => {}
                Fill::Eof => {
                    return if !self.buf.mid_frame() {
                        Ok(None)
                    } else {
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed in the middle of a frame",
                        ))
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn frames_arrive_whole_and_in_order_with_their_descriptors() {
        let (a, b) = socket::stream_pair().unwrap();
        let (x, _y) = socket::stream_pair().unwrap();

        let writer = std::thread::spawn(move || {
            send(a.as_fd(), 1, b"first", &[]).unwrap();
            send(a.as_fd(), 2, &vec![7u8; 2_000_000][..], &[x.as_fd()]).unwrap();
        });
        let mut r = Reader::new(4 << 20);
        let f1 = r.recv(b.as_fd(), None).unwrap().unwrap();
        assert_eq!(
            (f1.kind, f1.body.as_slice(), f1.fds.len()),
            (1, &b"first"[..], 0)
        );
        let f2 = r.recv(b.as_fd(), None).unwrap().unwrap();
        assert_eq!((f2.kind, f2.body.len(), f2.fds.len()), (2, 2_000_000, 1));
        writer.join().unwrap();
        assert!(r.recv(b.as_fd(), None).unwrap().is_none());
        assert!(r.at_eof());
    }

    #[test]
    fn frames_of_mixed_sizes_arrive_intact_through_one_reused_buffer() {
        let (a, b) = socket::stream_pair().unwrap();
        let sizes: Vec<usize> = (0..600)
            .map(|i| match i % 7 {
                0 => 0,
                1 => 70_000 + i,
                2 => 4096,
                3 => 200_000 + 13 * i,
                _ => i % 97,
            })
            .collect();
        let expected = sizes.clone();
        let writer = std::thread::spawn(move || {
            for (i, n) in sizes.into_iter().enumerate() {
                let body: Vec<u8> = (0..n).map(|j| (i + j) as u8).collect();
                send(a.as_fd(), (i % 200) as u8, &body, &[]).unwrap();
            }
        });
        let mut r = Reader::new(1 << 20);
        for (i, n) in expected.into_iter().enumerate() {
            let f = r.recv(b.as_fd(), None).unwrap().unwrap();
            assert_eq!((f.kind, f.body.len()), ((i % 200) as u8, n), "frame {i}");
            assert!(f.body.iter().enumerate().all(|(j, &x)| x == (i + j) as u8));
        }
        writer.join().unwrap();
        assert!(r.recv(b.as_fd(), None).unwrap().is_none());
    }

    #[test]
    fn oversized_and_malformed_headers_are_refused() {
        let (a, b) = socket::stream_pair().unwrap();
        send(a.as_fd(), 1, &[0u8; 100], &[]).unwrap();
        let mut r = Reader::new(10);
        assert_eq!(
            r.recv(b.as_fd(), None).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );

        let mut header = [0u8; HEADER];
        header[12] = 1;
        socket::send_all(a.as_fd(), &[&header], &[]).unwrap();
        let mut r = Reader::new(1 << 20);
        // The rest of the first frame is still queued; a fresh reader sees it
        // as garbage too, which is the point: nothing panics.
        assert!(r.recv(b.as_fd(), None).is_err());
    }

    #[test]
    fn a_truncated_frame_is_unexpected_eof() {
        let (a, b) = socket::stream_pair().unwrap();
        let mut header = [0u8; HEADER];
        header[0] = 50;
        socket::send_all(a.as_fd(), &[&header, b"only some"], &[]).unwrap();
        drop(a);
        let mut r = Reader::new(1 << 20);
        assert_eq!(
            r.recv(b.as_fd(), None).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator: the property is "error or frame,
        // never a panic or a huge allocation".
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let (a, b) = socket::stream_pair().unwrap();
            let n = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            socket::send_all(a.as_fd(), &[&bytes], &[]).unwrap();
            drop(a);
            let mut r = Reader::new(1 << 16);
            while let Ok(Some(_)) = r.recv(b.as_fd(), None) {}
        }
    }
}
