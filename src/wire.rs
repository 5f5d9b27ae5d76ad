//! Framed messages with descriptors over a Unix stream socket.
//!
//! A frame is a 16-byte header — body length (u64, little-endian), a kind
//! byte, the number of descriptors attached, six zero bytes — followed by
//! the body. The descriptors ride as `SCM_RIGHTS` on the header's bytes.
//!
//! The reader never trusts a header: it allocates as bytes arrive rather
//! than what a length promises, refuses bodies over a limit, and checks the
//! reserved bytes and descriptor count.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Instant;

use crate::sys::socket::{self, Received};

const HEADER: usize = 16;

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
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(&(body.len() as u64).to_le_bytes());
    header[8] = kind;
    header[9] = fds.len() as u8;
    socket::send_all(sock, &[&header, body], fds)
}

/// What [`Reader::fill`] found.
pub(crate) enum Fill {
    /// Some bytes arrived.
    Data,
    /// The peer closed its end.
    Eof,
    /// Nothing now (non-blocking socket).
    WouldBlock,
}

/// Reassembles frames from a stream socket.
///
/// The buffer is zeroed only when it grows and is reused from frame to
/// frame: a fresh child's first read touches one page, not the 64 KiB a
/// busy reader offers the socket.
pub(crate) struct Reader {
    /// Initialized storage; the unread bytes are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The last read filled all the room offered: offer more next time.
    filled_room: bool,
    fds: VecDeque<OwnedFd>,
    eof: bool,
    max_body: u64,
}

/// The room a new reader offers the socket.
const FIRST_ROOM: usize = 4096;
/// The most room offered for frames of unknown or small length.
const CHUNK: usize = 64 * 1024;
/// Frames at least this long are handed over in the reader's own buffer
/// rather than copied out of it.
const HAND_OVER: usize = 64 * 1024;

impl Reader {
    /// A reader that refuses bodies longer than `max_body` bytes.
    pub(crate) fn new(max_body: u64) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            end: 0,
            filled_room: false,
            fds: VecDeque::new(),
            eof: false,
            max_body,
        }
    }

    /// Whether the peer has closed its end.
    #[cfg(test)]
    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The least room to offer the socket next: the rest of the frame being
    /// read when its length is known (up to 16 MiB at a time), else a
    /// header's worth.
    fn want(&self) -> usize {
        let pending = self.pending();
        if pending.len() >= HEADER {
            let len = u64::from_le_bytes(pending[..8].try_into().expect("8 bytes")) as usize;
            (HEADER.saturating_add(len))
                .saturating_sub(pending.len())
                .clamp(1, 16 << 20)
        } else {
            HEADER
        }
    }

    /// Makes at least `want` bytes of room after the unread bytes: moves
    /// them to the front when that is enough, else grows the buffer.
    fn make_room(&mut self, want: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let room = self.buf.len() - self.end;
        if room >= want && !self.filled_room {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let room = self.buf.len() - self.end;
        let mut target = self.buf.len().max(FIRST_ROOM);
        if self.filled_room {
            target = target.max((self.buf.len() * 2).min(CHUNK));
        }
        target = target.max(self.end + want);
        if room < want || target > self.buf.len() {
            self.buf.resize(target, 0);
        }
        self.filled_room = false;
    }

    /// Adds bytes as if they had been read (for fuzzing the decoder).
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.make_room(bytes.len());
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Reads once from `sock`.
    pub(crate) fn fill(&mut self, sock: BorrowedFd<'_>) -> io::Result<Fill> {
        if self.eof {
            return Ok(Fill::Eof);
        }
        self.make_room(self.want());
        let mut fds = Vec::new();
        let room = &mut self.buf[self.end..];
        let offered = room.len();
        let got = socket::recv(sock, room, &mut fds);
        self.fds.extend(fds);
        match got? {
            Received::Bytes(n) => {
                self.end += n;
                self.filled_room = n == offered;
                Ok(Fill::Data)
            }
            Received::Eof => {
                self.eof = true;
                Ok(Fill::Eof)
            }
            Received::WouldBlock => Ok(Fill::WouldBlock),
        }
    }

    /// Takes the next complete frame out of what has been read, if there is
    /// one. A malformed header is an `InvalidData` error.
    pub(crate) fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let pending = self.pending();
        if pending.len() < HEADER {
            return Ok(None);
        }
        let len = u64::from_le_bytes(pending[..8].try_into().expect("8 bytes"));
        let kind = pending[8];
        let nfds = pending[9] as usize;
        if pending[10..HEADER].iter().any(|&b| b != 0) || nfds > socket::MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed frame header",
            ));
        }
        if len > self.max_body {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "frame of {len} bytes is over the limit of {} bytes",
                    self.max_body
                ),
            ));
        }
        let total = HEADER + len as usize;
        if pending.len() < total {
            return Ok(None);
        }
        if self.fds.len() < nfds {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame announces descriptors that did not arrive",
            ));
        }
        let body = if len as usize >= HAND_OVER
            && self.start == 0
            && self.end == total
            && self.buf.capacity() <= 2 * total
        {
            // A large frame that is all there is, in a buffer not much
            // larger: hand the buffer over.
            let mut body = std::mem::take(&mut self.buf);
            body.truncate(total);
            body.drain(..HEADER);
            self.end = 0;
            body
        } else {
            let body = pending[HEADER..total].to_vec();
            self.start += total;
            body
        };
        let fds = self.fds.drain(..nfds).collect();
        Ok(Some(Frame { kind, body, fds }))
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
                    return if self.pending().is_empty() {
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
