//! The one receive buffer: bytes read from a stream socket and not yet
//! handed out, cut into frames by a wire [`Format`].
//!
//! **What it never does.** It never allocates for what a header announces:
//! a header only says how many more bytes the frame needs, and the buffer
//! grows towards that by at most what it already holds plus [`CHUNK`] per
//! read (so it at most doubles with the data that actually came). It never
//! holds more than the largest frame it accepts plus [`CHUNK`], and a
//! header announcing a body over the limit (`max_body`) is an error before
//! anything is read for it. Lengths are checked before they are added.
//!
//! **Layout.** `buf[start..end]` holds what was read and not yet consumed.
//! Once a header is read, its bytes are consumed and its decoded form kept
//! (`head`), so `buf[start..]` is the body. A body of [`HAND_OVER`] bytes
//! or more is moved to the front of the buffer when its header is read
//! (a copy of what has arrived of it, at most a read's worth), so that when
//! it is complete, the buffer itself is handed out as the body, without a
//! copy.
//!
//! **Memory.** The storage is zeroed only when it grows and is reused from
//! frame to frame; a new buffer's first read offers [`FIRST_ROOM`] bytes
//! (a fresh child touches one page), and [`CHUNK`] once a read has filled
//! all it was offered; a reader that gets long runs of frames may let it
//! double from there, each time a read fills all it was offered, up to a
//! room of its choosing ([`RecvBuf::with_sizes`]: the pool's 256 KiB,
//! about a socket's whole buffer, so that one read takes what is queued).
//! An empty buffer larger than [`RETAIN`] (or the size its owner chose) is
//! freed.
//!
//! **Two ways to take frames.** [`ready`](RecvBuf::ready) /
//! [`body`](RecvBuf::body) / [`take_body`](RecvBuf::take_body) hand out
//! one frame at a time, as an owned body where that saves a copy; readers
//! that handle frames where they lie (the pool) call
//! [`next_frame`](RecvBuf::next_frame), which returns where the body is,
//! valid until the next read, and [`release`](RecvBuf::release) when done
//! with them.
//!
//! **Descriptors** (`SCM_RIGHTS`) that come with the bytes are queued in
//! arrival order; each format says how many a frame claims. Each is
//! queued with the stream position its read ended at, so that
//! [`take_frame_fds`](RecvBuf::take_frame_fds) can tell which arrived
//! with the frame at the front (the kernel ends a read at the segment
//! that carries descriptors, the first of the message they came with)
//! and close those its header did not announce. A frame never holds more
//! than [`MAX_CLAIM`] of them while it arrives: a peer that attaches
//! descriptors to every piece of a long message cannot fill the process's
//! descriptor table.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::sys::socket::{self, Received};

/// The room a new buffer offers the socket.
pub(crate) const FIRST_ROOM: usize = 4096;
/// How much a buffer grows per read beyond what it holds, and the room it
/// offers once reads fill what they are offered.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Bodies at least this long are handed out in the buffer's own storage.
pub(crate) const HAND_OVER: usize = 64 * 1024;
/// An empty buffer larger than this is freed.
pub(crate) const RETAIN: usize = 4 * CHUNK;
/// The most descriptors one frame can claim (every format counts them in
/// a byte); more that arrive with one frame are closed as they come.
pub(crate) const MAX_CLAIM: usize = u8::MAX as usize;

/// A frame's header, as its format reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head<M> {
    /// Bytes of header before the body.
    pub(crate) header_len: usize,
    /// The body's length, as announced (not yet checked against a limit).
    pub(crate) len: u64,
    /// What else the header says (a kind, a descriptor count).
    pub(crate) meta: M,
}

/// A wire format: how a header is read.
pub(crate) trait Format {
    /// What a header says besides the body's length.
    type Meta: Copy + fmt::Debug;
    /// The longest header of the format.
    const MAX_HEADER: usize;
    /// Reads the header at the start of `bytes`: `Ok(None)` if more bytes
    /// are needed to tell. A returned `header_len` is at most
    /// `bytes.len()` and [`MAX_HEADER`](Self::MAX_HEADER).
    fn decode(bytes: &[u8]) -> Result<Option<Head<Self::Meta>>, FrameError>;
}

/// Why the bytes at the front of a buffer are not a frame. The bytes stay
/// where they are, so every later look gives the same error: a stream
/// cannot be resynchronised after a bad header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Not a header of the format.
    Malformed(String),
    /// A body longer than the receiver accepts.
    TooLarge {
        /// What the header announced.
        len: u64,
        /// The receiver's limit.
        max: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Malformed(why) => write!(f, "corrupt message header: {why}"),
            FrameError::TooLarge { len, max } => write!(
                f,
                "a message of {len} bytes is over the limit of {max} bytes"
            ),
        }
    }
}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }
}

/// A frame taken where it lies ([`RecvBuf::next_frame`]): what its header
/// says besides the length, and where its body is in the buffer.
pub(crate) type Lying<M> = (M, std::ops::Range<usize>);

/// What one read from the socket got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Some bytes arrived.
    Data,
    /// The peer closed its end (or reset it); nothing more will come.
    Eof,
    /// Nothing now (a read that does not wait).
    WouldBlock,
}

/// A receive buffer for frames of format `F`.
pub(crate) struct RecvBuf<F: Format> {
    /// Initialized storage; the unread bytes are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The frame at the front, once its header is read: body length and
    /// what else the header said. Its header bytes are consumed.
    head: Option<(usize, F::Meta)>,
    /// The longest body accepted.
    max_body: usize,
    /// The least room offered to a read: [`FIRST_ROOM`], then [`CHUNK`]
    /// once a read filled all it was offered, then doubling on each such
    /// read up to `max_room`.
    min_room: usize,
    max_room: usize,
    /// An empty buffer larger than this is freed.
    retain: usize,
    /// Large bodies are moved to the front when their header is read, for
    /// [`take_body`](Self::take_body) to hand the storage out (false for
    /// readers that take frames where they lie: the move would be a copy
    /// for nothing).
    hand_over: bool,
    /// Descriptors received and not taken, each with the stream position
    /// (`received`) after the read that brought it.
    fds: VecDeque<(u64, OwnedFd)>,
    /// Bytes read from the socket so far (saturating).
    received: u64,
    eof: bool,
}

impl<F: Format> fmt::Debug for RecvBuf<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBuf")
            .field("buffered", &(self.end - self.start))
            .field("head", &self.head)
            .field("fds", &self.fds.len())
            .field("eof", &self.eof)
            .finish()
    }
}

impl<F: Format> RecvBuf<F> {
    /// An empty buffer (nothing allocated) that refuses bodies longer than
    /// `max_body` bytes.
    pub(crate) fn new(max_body: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            end: 0,
            head: None,
            max_body,
            min_room: FIRST_ROOM,
            max_room: CHUNK,
            retain: RETAIN,
            hand_over: true,
            fds: VecDeque::new(),
            received: 0,
            eof: false,
        }
    }

    /// An empty buffer that refuses bodies longer than `max_body` bytes,
    /// offers reads up to `max_room` bytes once they fill what they are
    /// offered, and keeps its storage, once empty, up to `retain` bytes:
    /// for a reader that gets long runs of frames (fewer reads) and large
    /// frames often (without growing, zeroing and freeing the same storage
    /// for each), and takes them where they lie
    /// ([`next_frame`](Self::next_frame); large bodies are not moved to
    /// the front to be handed out).
    pub(crate) fn with_sizes(max_body: usize, max_room: usize, retain: usize) -> Self {
        Self {
            max_room: max_room.max(CHUNK),
            retain,
            hand_over: false,
            ..Self::new(max_body)
        }
    }

    /// Changes the longest body accepted, for headers not read yet.
    pub(crate) fn set_max_body(&mut self, max: usize) {
        self.max_body = max;
    }

    /// Whether the peer has closed its end (what was read before is still
    /// here).
    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    /// Nothing is buffered: no bytes, no header read, no descriptors.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end && self.head.is_none() && self.fds.is_empty()
    }

    /// Part of a frame is buffered (bytes, or a header read).
    pub(crate) fn mid_frame(&self) -> bool {
        self.start != self.end || self.head.is_some()
    }

    /// Bytes buffered and not consumed (after a header read: of its body
    /// and beyond).
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The storage's size, for tests of the growth rule.
    #[cfg(test)]
    pub(crate) fn storage(&self) -> usize {
        self.buf.len()
    }

    /// The header of the frame at the front, reading it if its bytes are
    /// there: (body length, what else it says). A malformed header or a
    /// body over the limit is an error, every time it is asked.
    pub(crate) fn head(&mut self) -> Result<Option<(usize, F::Meta)>, FrameError> {
        if let Some(h) = self.head {
            return Ok(Some(h));
        }
        let pending = &self.buf[self.start..self.end];
        let Some(h) = F::decode(pending)? else {
            return Ok(None);
        };
        if h.header_len > pending.len() || h.header_len > F::MAX_HEADER {
            return Err(FrameError::Malformed(format!(
                "a header of {} bytes",
                h.header_len
            )));
        }
        let len = usize::try_from(h.len)
            .ok()
            .filter(|&len| len <= self.max_body)
            .ok_or(FrameError::TooLarge {
                len: h.len,
                max: self.max_body,
            })?;
        self.start += h.header_len;
        self.head = Some((len, h.meta));
        if self.hand_over && len >= HAND_OVER && self.start > 0 {
            // So that the body can be handed out in this storage.
            self.compact();
        }
        Ok(self.head)
    }

    /// The frame at the front, if all of it has arrived: (body length,
    /// what else its header says). Its body is [`body`](Self::body) until
    /// [`consume`](Self::consume) or [`take_body`](Self::take_body).
    pub(crate) fn ready(&mut self) -> Result<Option<(usize, F::Meta)>, FrameError> {
        Ok(self
            .head()?
            .filter(|&(len, _)| self.end - self.start >= len))
    }

    /// How many more bytes the frame at the front needs (at least 1): the
    /// rest of its header, or of its body.
    fn need(&self) -> usize {
        let have = self.end - self.start;
        match self.head {
            Some((len, _)) => len.saturating_sub(have),
            None => F::MAX_HEADER.saturating_sub(have),
        }
        .max(1)
    }

    /// The body of the complete frame at the front (empty if there is none).
    pub(crate) fn body(&self) -> &[u8] {
        let len = self
            .head
            .map_or(0, |(len, _)| len)
            .min(self.end - self.start);
        &self.buf[self.start..self.start + len]
    }

    /// The next complete frame, taken out where it lies: what its header
    /// says and where its body is, for [`slice`](Self::slice). The range
    /// stays valid until the next read into the buffer or
    /// [`release`](Self::release); call that once done with the frames.
    #[inline]
    pub(crate) fn next_frame(&mut self) -> Result<Option<Lying<F::Meta>>, FrameError> {
        let Some((len, meta)) = self.ready()? else {
            return Ok(None);
        };
        let body = self.start..self.start + len;
        self.start = body.end;
        self.head = None;
        Ok(Some((meta, body)))
    }

    /// The bytes of a body [`next_frame`](Self::next_frame) returned.
    #[inline]
    pub(crate) fn slice(&self, body: std::ops::Range<usize>) -> &[u8] {
        &self.buf[body]
    }

    /// Done with the frames taken by [`next_frame`](Self::next_frame): an
    /// empty buffer starts again at the front, and one larger than the
    /// size kept is freed.
    pub(crate) fn release(&mut self) {
        self.settle();
    }

    /// Drops the frame at the front (its header and what arrived of its
    /// body).
    pub(crate) fn consume(&mut self) {
        if let Some((len, _)) = self.head.take() {
            self.start += len.min(self.end - self.start);
        }
        self.settle();
    }

    /// Takes the complete frame at the front out and returns its body: a
    /// large body that starts the storage is handed out in it (no copy),
    /// others are copied.
    pub(crate) fn take_body(&mut self) -> Vec<u8> {
        let Some((len, _)) = self.head else {
            return Vec::new();
        };
        let len = len.min(self.end - self.start);
        if len >= HAND_OVER && self.start == 0 && self.buf.len() <= 2 * len + CHUNK {
            let rest = self.buf[len..self.end].to_vec();
            let mut body = std::mem::replace(&mut self.buf, rest);
            body.truncate(len);
            self.end = self.buf.len();
            self.head = None;
            self.settle();
            return body;
        }
        let body = self.buf[self.start..self.start + len].to_vec();
        self.consume();
        body
    }

    /// Takes the frame at the front out before all of its body arrived
    /// and returns the part of the body that did; the caller reads the
    /// rest from the socket itself, before any other read into this
    /// buffer. (Take its descriptors first.)
    pub(crate) fn take_started_body(&mut self) -> Vec<u8> {
        let Some((len, _)) = self.head.take() else {
            return Vec::new();
        };
        let n = len.min(self.end - self.start);
        let body = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        self.settle();
        body
    }

    /// Takes `n` descriptors from the front of the queue; `None` (and
    /// nothing taken) if fewer arrived.
    pub(crate) fn take_fds(&mut self, n: usize) -> Option<Vec<OwnedFd>> {
        (self.fds.len() >= n).then(|| self.fds.drain(..n).map(|(_, fd)| fd).collect())
    }

    /// The descriptors that came with the complete frame at the front (or
    /// with frames before it that claimed none): the first `n` of them are
    /// returned (fewer if fewer came), the others are closed, and their
    /// number is returned too. Descriptors that came with later frames
    /// stay queued. Call before [`take_body`](Self::take_body).
    pub(crate) fn take_frame_fds(&mut self, n: usize) -> (Vec<OwnedFd>, usize) {
        let len = self.head.map_or(0, |(len, _)| len);
        let beyond = (self.end - self.start).saturating_sub(len);
        let frame_end = self.received.saturating_sub(beyond as u64);
        let mine = self
            .fds
            .iter()
            .take_while(|(pos, _)| *pos <= frame_end)
            .count();
        let mut taken: Vec<OwnedFd> = self.fds.drain(..mine).map(|(_, fd)| fd).collect();
        let closed = taken.len().saturating_sub(n);
        taken.truncate(n);
        (taken, closed)
    }

    /// Closes the descriptors of the frame at the front (its header read)
    /// beyond the first [`MAX_CLAIM`]: no frame can claim them.
    fn trim_fds(&mut self) {
        let Some((len, _)) = self.head else {
            return;
        };
        let beyond = (self.end - self.start).saturating_sub(len);
        let frame_end = self.received.saturating_sub(beyond as u64);
        let mine = self
            .fds
            .iter()
            .take_while(|(pos, _)| *pos <= frame_end)
            .count();
        if mine > MAX_CLAIM {
            self.fds.drain(MAX_CLAIM..mine);
        }
    }

    /// Descriptors received and not taken.
    pub(crate) fn fds_len(&self) -> usize {
        self.fds.len()
    }

    /// After consuming: an empty buffer starts again at the front, and a
    /// large one is freed.
    fn settle(&mut self) {
        if self.start == self.end && self.head.is_none() {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > self.retain {
                self.buf = Vec::new();
            }
        }
    }

    /// Moves the unread bytes to the front.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Makes room after the unread bytes for the next read and returns how
    /// much there is. Grows only when the room left is less than what the
    /// front frame needs, by at most what is held plus [`CHUNK`], to a
    /// storage of at least `min_room` bytes, and never past the largest
    /// frame accepted plus [`CHUNK`]. Zero only when that cap is reached
    /// (the peer sent more than a frame without a frame being taken).
    fn make_room(&mut self) -> usize {
        if self.start == self.end && self.head.is_none() {
            self.start = 0;
            self.end = 0;
        }
        let pending = self.end - self.start;
        let cap = F::MAX_HEADER
            .saturating_add(self.max_body)
            .saturating_add(CHUNK);
        let need = self
            .need()
            .min(pending.max(CHUNK))
            .min(cap.saturating_sub(pending));
        // A read is offered what the front frame needs and at least a
        // quarter of the least room: what is pending moves to the front
        // (and the storage grows) before reads get small, so that frames
        // that straddle reads do not make the reads many.
        let room = self.buf.len() - self.end;
        if room >= need && room >= self.min_room / 4 {
            return room;
        }
        self.compact();
        // `end + need <= cap`: no overflow.
        let len = (self.end + need).max(self.min_room.min(cap));
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        self.buf.len() - self.end
    }

    /// Adds `bytes` as if they had been read (for fuzzing the decoders and
    /// for tests); bytes beyond what the buffer may hold are dropped.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = self.make_room();
            if room == 0 {
                return;
            }
            let n = room.min(bytes.len());
            self.buf[self.end..self.end + n].copy_from_slice(&bytes[..n]);
            self.end += n;
            self.received = self.received.saturating_add(n as u64);
            bytes = &bytes[n..];
        }
    }

    /// One `recvmsg(2)` into the buffer, queueing the descriptors that come
    /// with the bytes; blocking unless `wait` is false.
    pub(crate) fn fill(&mut self, sock: BorrowedFd<'_>, wait: bool) -> io::Result<Fill> {
        self.read(sock, wait, true)
    }

    /// One `recv(2)` into the buffer, for sockets that carry no
    /// descriptors; blocking unless `wait` is false.
    pub(crate) fn fill_bytes(&mut self, sock: BorrowedFd<'_>, wait: bool) -> io::Result<Fill> {
        self.read(sock, wait, false)
    }

    fn read(&mut self, sock: BorrowedFd<'_>, wait: bool, with_fds: bool) -> io::Result<Fill> {
        if self.eof {
            return Ok(Fill::Eof);
        }
        let offered = self.make_room();
        if offered == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the peer sent more than the largest message without a message ending",
            ));
        }
        let room = &mut self.buf[self.end..];
        let got = if with_fds {
            let mut fds = Vec::new();
            let got = socket::recv_with(sock, room, &mut fds, wait);
            if let Ok(Received::Bytes(n)) = got {
                let pos = self.received.saturating_add(n as u64);
                self.fds.extend(fds.into_iter().map(|fd| (pos, fd)));
            }
            got
        } else {
            socket::recv_bytes(sock, room, wait)
        };
        match got {
            Ok(Received::Bytes(n)) => {
                self.end += n;
                self.received = self.received.saturating_add(n as u64);
                if n == offered {
                    self.min_room = if self.min_room < CHUNK {
                        CHUNK
                    } else {
                        self.min_room.saturating_mul(2).min(self.max_room)
                    };
                }
                if self.fds.len() > MAX_CLAIM {
                    self.trim_fds();
                }
                Ok(Fill::Data)
            }
            Ok(Received::Eof) => {
                self.eof = true;
                Ok(Fill::Eof)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                self.eof = true;
                Ok(Fill::Eof)
            }
            Ok(Received::WouldBlock) => Ok(Fill::WouldBlock),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A test format: a 2-byte little-endian length, then the body; a
    /// length of 0xffff is malformed.
    struct Two;
    impl Format for Two {
        type Meta = ();
        const MAX_HEADER: usize = 2;
        fn decode(b: &[u8]) -> Result<Option<Head<()>>, FrameError> {
            let Some(h) = b.get(..2) else { return Ok(None) };
            let len = u16::from_le_bytes([h[0], h[1]]);
            if len == 0xffff {
                return Err(FrameError::Malformed("0xffff".into()));
            }
            Ok(Some(Head {
                header_len: 2,
                len: len.into(),
                meta: (),
            }))
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u16).to_le_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn frames_are_cut_from_bytes_fed_in_any_pieces() {
        let mut stream = Vec::new();
        for i in 0..200u16 {
            stream.extend(frame(&vec![i as u8; (i as usize * 37) % 3000]));
        }
        for piece in [1, 2, 3, 7, 1000, 50_000] {
            let mut b = RecvBuf::<Two>::new(60_000);
            let mut got = 0u16;
            for part in stream.chunks(piece) {
                b.feed(part);
                while let Some((len, ())) = b.ready().unwrap() {
                    assert_eq!(len, (got as usize * 37) % 3000);
                    assert!(b.body().iter().all(|&x| x == got as u8));
                    let body = if got.is_multiple_of(2) {
                        b.take_body()
                    } else {
                        let v = b.body().to_vec();
                        b.consume();
                        v
                    };
                    assert_eq!(body.len(), len);
                    got += 1;
                }
            }
            assert_eq!(got, 200);
            assert!(b.is_empty());
        }
    }

    #[test]
    fn errors_are_sticky_and_limits_checked_before_reading() {
        let mut b = RecvBuf::<Two>::new(10);
        b.feed(&[11, 0]);
        let e = b.ready().unwrap_err();
        assert_eq!(e, FrameError::TooLarge { len: 11, max: 10 });
        assert_eq!(b.ready().unwrap_err(), e);
        let mut b = RecvBuf::<Two>::new(10);
        b.feed(&[0xff, 0xff, 1, 2]);
        assert!(matches!(b.ready(), Err(FrameError::Malformed(_))));
        assert!(matches!(b.head(), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn storage_grows_with_what_arrives_not_with_what_is_announced() {
        // Bodies up to 40 000 bytes; a header announcing 40 000 and ten
        // bytes of body make the storage no larger than a first read.
        let mut b2 = RecvBuf::<Two>::new(40_000);
        b2.feed(&[0x40, 0x9c]); // 40 000
        b2.feed(&[7; 10]);
        assert!(b2.storage() <= FIRST_ROOM, "{}", b2.storage());
        // Each read grows the storage by at most what it holds plus CHUNK.
        let mut held = b2.buffered();
        for _ in 0..5 {
            let before = b2.storage();
            b2.feed(&vec![7; 8000]);
            held += 8000;
            assert!(b2.storage() <= before.max(held + CHUNK));
        }
    }

    #[test]
    fn a_large_body_is_handed_out_in_the_storage() {
        let body: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        let mut stream = frame(b"small");
        stream.extend(frame(&body));
        stream.extend(frame(b"after"));
        let mut b = RecvBuf::<Two>::new(60_000);
        b.feed(&stream);
        b.ready().unwrap().unwrap();
        assert_eq!(b.take_body(), b"small");
        assert_eq!(b.ready().unwrap().unwrap().0, 50_000);
        assert_eq!(b.take_body(), body);
        assert_eq!(b.ready().unwrap().unwrap().0, 5);
        assert_eq!(b.take_body(), b"after");
        assert!(b.is_empty());
    }

    #[test]
    fn frames_taken_where_they_lie_and_reads_that_grow_with_runs_of_frames() {
        // 120 KB of 100-byte frames written to a socket at once: a buffer
        // made for runs of frames lets its reads grow past CHUNK (doubling
        // after each read that filled what it was offered). The writer is
        // a thread, so that a small socket buffer cannot block the test.
        let (a, s) = socket::stream_pair().unwrap();
        let mut stream = Vec::new();
        for i in 0..1200u32 {
            stream.extend(frame(&[i as u8; 98]));
        }
        let writer = std::thread::spawn(move || {
            socket::send_all(a.as_fd(), &[&stream], &[]).unwrap();
        });
        let mut b = RecvBuf::<Two>::with_sizes(1000, 4 * CHUNK, 4 * CHUNK);
        let (mut got, mut largest) = (0u32, 0);
        while b.fill_bytes(s.as_fd(), true).unwrap() == Fill::Data {
            largest = largest.max(b.storage());
            while let Some(((), body)) = b.next_frame().unwrap() {
                assert_eq!(b.slice(body), &[got as u8; 98][..]);
                got += 1;
            }
            b.release();
        }
        writer.join().unwrap();
        assert_eq!(got, 1200);
        assert!(largest > CHUNK, "reads never grew: {largest}");
        assert!(b.is_empty());
        // The storage is kept up to what the owner asked, then freed.
        let mut b = RecvBuf::<Two>::with_sizes(40_000, CHUNK, 10_000);
        b.feed(&frame(&[1; 30_000]));
        let (_, body) = b.next_frame().unwrap().unwrap();
        assert_eq!(b.slice(body).len(), 30_000);
        b.release();
        assert_eq!(b.storage(), 0, "over the size kept: freed");
    }

    #[test]
    fn reads_from_a_socket_with_descriptors() {
        let (a, s) = socket::stream_pair().unwrap();
        let (x, _y) = socket::stream_pair().unwrap();
        socket::send_all(a.as_fd(), &[&frame(b"hello")], &[x.as_fd()]).unwrap();
        drop(a);
        let mut b = RecvBuf::<Two>::new(100);
        assert_eq!(b.fill(s.as_fd(), true).unwrap(), Fill::Data);
        assert_eq!(b.ready().unwrap(), Some((5, ())));
        assert_eq!(b.take_body(), b"hello");
        assert!(b.take_fds(2).is_none());
        assert_eq!(b.take_fds(1).unwrap().len(), 1);
        assert_eq!(b.fill(s.as_fd(), true).unwrap(), Fill::Eof);
        assert!(b.at_eof());
    }
}
