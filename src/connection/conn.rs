//! [`Connection`]: one end of a message channel, over a pipe's shared
//! memory or a stream socket (see the [module docs](super)).

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::auth;
use super::rings::{self, Got, Rings};
use super::stream::{ReadState, eof_error};
use super::wait::sealed::Waitable;
use crate::codec::{self, Fd};
use crate::error::{Error, ErrorKind, Result};
use crate::frame::python::encode_header;
use crate::frame::{Fill, FrameError};
use crate::shm::region::Region;
use crate::sys;
use crate::time;

thread_local! {
    /// The encoding buffer of typed sends through a ring, kept per thread.
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One end of a connection: a socket carrying framed messages. `T` is the
/// type [`send`](Connection::send) and [`recv`](Connection::recv) carry;
/// the byte methods work whatever `T` is.
///
/// A `Connection` is `Send` and `Sync`: one thread may send while another
/// receives. It can be passed to a child as an argument under every start
/// method (it travels as a descriptor), and is inherited under fork.
pub struct Connection<T = Vec<u8>> {
    sock: OwnedFd,
    unix: bool,
    readable: bool,
    writable: bool,
    /// `Some` for the ends of [`pipe`] and [`pipe_oneway`]: messages go
    /// through shared memory (see `rings.rs`).
    rings: Option<Rings>,
    /// Ring sends so far (a hang-up check every so many).
    sends: AtomicU32,
    read: Mutex<ReadState>,
    write: Mutex<()>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.sock)
            .field("unix", &self.unix)
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("shared_memory", &self.rings.is_some())
            .finish()
    }
}

impl<T> Connection<T> {
    pub(crate) fn new(sock: OwnedFd, unix: bool, readable: bool, writable: bool) -> Self {
        let mut c = Self::with_rings(sock, readable, writable, None);
        c.unix = unix;
        c
    }

    /// A Unix-socket connection; with `rings`, a pipe end whose messages
    /// go through shared memory.
    pub(super) fn with_rings(
        sock: OwnedFd,
        readable: bool,
        writable: bool,
        rings: Option<Rings>,
    ) -> Self {
        Self {
            sock,
            unix: true,
            readable,
            writable,
            rings,
            sends: AtomicU32::new(0),
            read: Mutex::new(ReadState::new()),
            write: Mutex::new(()),
            _type: PhantomData,
        }
    }

    /// The ring this end receives from (ring transport, readable ends).
    fn rx(&self) -> Option<&crate::shm::ring::Ring> {
        self.rings.as_ref().and_then(|r| r.rx.as_ref())
    }

    /// Sends through the ring transport, if this end has it: `None` if not.
    fn ring_send(&self, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> Option<Result<()>> {
        let rings = self.rings.as_ref()?;
        let Some(tx) = rings.tx.as_ref().filter(|_| self.writable) else {
            return Some(Err(Error::new(
                ErrorKind::Io,
                "this end of a one-way pipe cannot send",
            )));
        };
        Some(rings::send(tx, self.sock.as_fd(), parts, fds, &self.sends))
    }

    /// Receives a whole message as an owned body (ring transport).
    fn ring_take_owned(
        &self,
        st: &mut ReadState,
        max: u64,
        deadline: Option<Instant>,
    ) -> Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        let rx = self.rx().expect("a readable ring end");
        Ok(
            match rings::take(rx, self.sock.as_fd(), st, max, true, deadline)? {
                None => None,
                Some(Got::Owned(body, fds)) => Some((body, fds)),
                Some(Got::Inline(n)) => Some((st.scratch[..n].to_vec(), Vec::new())),
            },
        )
    }

    /// The same connection, carrying another message type.
    pub fn cast<U>(self) -> Connection<U> {
        let read = self.read.into_inner().unwrap_or_else(|p| p.into_inner());
        Connection {
            sock: self.sock,
            unix: self.unix,
            readable: self.readable,
            writable: self.writable,
            rings: self.rings,
            sends: self.sends,
            read: Mutex::new(read),
            write: Mutex::new(()),
            _type: PhantomData,
        }
    }

    fn reader(&self) -> Result<MutexGuard<'_, ReadState>> {
        if !self.readable {
            return Err(Error::new(
                ErrorKind::Io,
                "this end of a one-way pipe cannot receive",
            ));
        }
        Ok(self.read.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn write_raw(&self, bufs: &[&[u8]], fds: &[BorrowedFd<'_>]) -> Result<()> {
        if !self.writable {
            return Err(Error::new(
                ErrorKind::Io,
                "this end of a one-way pipe cannot send",
            ));
        }
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        sys::socket::send_all(self.sock.as_fd(), bufs, fds).map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => eof_error(),
            _ => Error::io("could not send on the connection", e),
        })
    }

    /// Sends `buf` as one message (Python's `send_bytes`; slice it for
    /// `offset`/`size`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the other end is closed; [`ErrorKind::Io`] for
    /// other failures, or when this end cannot send.
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        if let Some(done) = self.ring_send(&[buf], &[]) {
            return done;
        }
        let (h, n) = encode_header(buf.len());
        if buf.len() <= 16 * 1024 {
            // One write for small messages, as Python does.
            let mut one = Vec::with_capacity(n + buf.len());
            one.extend_from_slice(&h[..n]);
            one.extend_from_slice(buf);
            return self.write_raw(&[&one], &[]);
        }
        self.write_raw(&[&h[..n], buf], &[])
    }

    /// Receives one message as bytes (Python's `recv_bytes`). Blocks until a
    /// message arrives. Memory is taken as the bytes arrive, never for what
    /// a header announces; descriptors that came with the message are
    /// closed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the other end closed and everything it sent
    /// was received (a message cut short by the close is not delivered);
    /// [`ErrorKind::MessageTooLarge`] for a message over the connection's
    /// limit ([`set_max_message_size`](Self::set_max_message_size)),
    /// refused from its header; [`ErrorKind::Protocol`] for a corrupt
    /// header; [`ErrorKind::Io`] for other failures. After
    /// `MessageTooLarge` or `Protocol` on a [`Listener`](super::Listener)
    /// or [`Client`](super::Client) connection (and for a pipe's messages
    /// over 64 MiB, which travel on its socket) the stream cannot be
    /// resynchronised: every later receive fails with the same error, as
    /// Python's `recv_bytes(maxlength)` leaves its connection unusable.
    /// A pipe's smaller messages (carried in shared memory) stay queued
    /// instead: raise the limit and receive again.
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_message(usize::MAX, None, false)
            .map(|m| m.expect("no deadline").0)
    }

    /// Receives one message and lends its bytes to `f`, returning what `f`
    /// returns: [`recv_bytes`](Self::recv_bytes) without a `Vec` per
    /// message. A pipe's messages up to 64 MiB are copied once, from its
    /// shared memory into a buffer this end keeps and reuses, and `f`
    /// reads them there; larger ones (and a `Listener`/`Client`
    /// connection's) are lent from the buffer they were received into.
    /// `f` runs with no lock held, so it may use the connection.
    ///
    /// ```
    /// # multiproc::init();
    /// let (a, b) = multiproc::connection::pipe::<()>()?;
    /// a.send_bytes(b"hello world")?;
    /// let words = b.recv_bytes_with(|bytes| bytes.split(|&c| c == b' ').count())?;
    /// assert_eq!(words, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Self::recv_bytes); `f` is not called then.
    pub fn recv_bytes_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let Some(rx) = self.rx() else {
            return self.recv_bytes().map(|body| f(&body));
        };
        let mut st = self.reader()?;
        let max = st.max as u64;
        let got = rings::take(rx, self.sock.as_fd(), &mut st, max, false, None)?;
        match got.expect("no deadline") {
            Got::Owned(body, _fds) => {
                drop(st);
                Ok(f(&body))
            }
            Got::Inline(n) => {
                // Out of the state while `f` runs, back (unless another
                // receive made a larger one meanwhile) after.
                let buf = std::mem::take(&mut st.scratch);
                drop(st);
                let out = f(&buf[..n]);
                let mut st = self.read.lock().unwrap_or_else(|p| p.into_inner());
                if st.scratch.capacity() < buf.capacity() {
                    st.scratch = buf;
                }
                Ok(out)
            }
        }
    }

    /// Like [`recv_bytes`](Self::recv_bytes), refusing messages longer than
    /// `max` bytes (or than the connection's limit, if lower) before
    /// reading them (Python's `recv_bytes(maxlength)`).
    ///
    /// # Errors
    ///
    /// As `recv_bytes`; [`ErrorKind::MessageTooLarge`] for a longer
    /// message, after which the connection cannot be used (as in Python).
    pub fn recv_bytes_max(&self, max: usize) -> Result<Vec<u8>> {
        self.recv_message(max, None, false)
            .map(|m| m.expect("no deadline").0)
    }

    /// [`recv_bytes_max`](Self::recv_bytes_max) until `deadline` (`None`:
    /// as long as it takes): `Ok(None)` once it passed.
    pub(super) fn recv_bytes_until(
        &self,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .recv_message(max, deadline, false)?
            .map(|(body, _)| body))
    }

    /// Sets the longest message this end accepts, for messages whose header
    /// has not been read yet: [`DEFAULT_MAX_MESSAGE_SIZE`](super::DEFAULT_MAX_MESSAGE_SIZE)
    /// (2 GiB − 1) unless set. A longer message is refused from its header
    /// with [`ErrorKind::MessageTooLarge`] (see [`recv_bytes`](Self::recv_bytes)
    /// for what happens to the connection then). `usize::MAX` accepts any
    /// message; memory is taken only as bytes arrive either way. Never fails.
    pub fn set_max_message_size(&self, max: usize) {
        self.read.lock().unwrap_or_else(|p| p.into_inner()).max = max;
    }

    /// The longest message this end accepts (see
    /// [`set_max_message_size`](Self::set_max_message_size)).
    pub fn max_message_size(&self) -> usize {
        self.read.lock().unwrap_or_else(|p| p.into_inner()).max
    }

    /// Receives one message into `buf` and returns its length (Python's
    /// `recv_bytes_into`).
    ///
    /// # Errors
    ///
    /// As `recv_bytes`, plus [`ErrorKind::MessageTooLarge`] if the message
    /// does not fit; the message then stays queued, so a later
    /// `recv_bytes` gets it: nothing is lost. (A message over the
    /// connection's limit is refused as `recv_bytes` refuses it.)
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let mut st = self.reader()?;
        if let Some(rx) = self.rx() {
            let max = st.max as u64;
            let got = rings::take(rx, self.sock.as_fd(), &mut st, max, false, None)?;
            let (len, owned) = match got.expect("no deadline") {
                Got::Inline(n) => (n, None),
                Got::Owned(body, fds) => (body.len(), Some((body, fds))),
            };
            if len > buf.len() {
                let keep = owned.unwrap_or_else(|| (st.scratch[..len].to_vec(), Vec::new()));
                st.pending = Some(keep);
                return Err(Error::new(
                    ErrorKind::MessageTooLarge,
                    format!(
                        "the message has {len} bytes and the buffer {}; it stays queued",
                        buf.len()
                    ),
                ));
            }
            match owned {
                Some((body, _)) => buf[..len].copy_from_slice(&body),
                None => buf[..len].copy_from_slice(&st.scratch[..len]),
            }
            return Ok(len);
        }
        loop {
            if let Some(len) = Self::sock_head(&mut st, usize::MAX)? {
                if len > buf.len() {
                    return Err(Error::new(
                        ErrorKind::MessageTooLarge,
                        format!(
                            "the message has {len} bytes and the buffer {}; it stays queued",
                            buf.len()
                        ),
                    ));
                }
                if st.frames.buffered() >= len {
                    buf[..len].copy_from_slice(st.frames.body());
                    Self::close_extra_fds(&mut st, 0);
                    st.frames.consume();
                    return Ok(len);
                }
            }
            if st.frames.at_eof() {
                return Err(eof_error());
            }
            self.sock_fill(&mut st, true)?;
        }
    }

    /// Whether a message (or end of file) can be received without waiting,
    /// waiting up to `timeout` for one (`None`: wait as long as it takes).
    ///
    /// Every `timeout` is accepted (`Duration::MAX` waits as long as it
    /// takes).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if polling fails.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.and_then(time::deadline_after);
        let mut st = self.reader()?;
        if let Some(rx) = self.rx() {
            if st.pending.is_some() || st.broken.is_some() || st.eof || !rx.is_empty() {
                return Ok(true);
            }
            return rings::wait(rx, self.sock.as_fd(), &mut st, deadline);
        }
        loop {
            match Self::sock_head(&mut st, usize::MAX) {
                Ok(Some(len)) if st.frames.buffered() >= len => return Ok(true),
                Err(_) => return Ok(true),
                _ if st.frames.at_eof() => return Ok(true),
                _ => {}
            }
            let ready = sys::socket::wait_readable(&[self.sock.as_fd()], deadline)
                .map_err(|e| Error::io("poll failed", e))?[0];
            if !ready {
                return Ok(false);
            }
            self.sock_fill(&mut st, false)?;
        }
    }

    /// The socket, for `poll`/`epoll` (Python's `fileno`). Data may already
    /// be buffered in the connection, and a pipe's messages travel through
    /// shared memory (the socket only becomes readable for them while a
    /// receiver sleeps): use [`wait`](super::wait) or [`poll`](Self::poll), which know.
    pub fn fileno(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Closes the connection; the other end sees end of file once every
    /// copy of this end (in every process) is closed. Dropping does the same.
    pub fn close(self) {}

    /// Socket transport: the length of the message at the front once its
    /// header is there, checked against `max` and the connection's limit
    /// (whichever is lower). A corrupt header or a message over the limit
    /// breaks the stream for good: this and every later call fail.
    fn sock_head(st: &mut ReadState, max: usize) -> Result<Option<usize>> {
        if let Some(e) = st.broken_error() {
            return Err(e);
        }
        let max = max.min(st.max);
        st.frames.set_max_body(max);
        match st.frames.head() {
            Ok(None) => Ok(None),
            // Read earlier under a higher limit (`recv_bytes_max`).
            Ok(Some((len, ()))) if len > max => Err(Self::refuse(
                st,
                FrameError::TooLarge {
                    len: len as u64,
                    max,
                },
            )),
            Ok(Some((len, ()))) => Ok(Some(len)),
            Err(e) => Err(Self::refuse(st, e)),
        }
    }

    fn refuse(st: &mut ReadState, e: FrameError) -> Error {
        match e {
            FrameError::TooLarge { .. } => st.break_with(
                ErrorKind::MessageTooLarge,
                format!("{e} (see Connection::set_max_message_size)"),
            ),
            FrameError::Malformed(_) => st.break_with(ErrorKind::Protocol, e.to_string()),
        }
    }

    /// Socket transport: one read into the buffer (blocking if `wait`).
    /// End of file is not an error here: the buffer remembers it.
    fn sock_fill(&self, st: &mut ReadState, wait: bool) -> Result<Fill> {
        let got = if self.unix {
            st.frames.fill(self.sock.as_fd(), wait)
        } else {
            st.frames.fill_bytes(self.sock.as_fd(), wait)
        };
        got.map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                st.break_with(ErrorKind::Protocol, e.to_string())
            } else {
                Error::io("could not receive on the connection", e)
            }
        })
    }

    /// Takes the descriptors of the complete message at the front: the
    /// `count` it announces, closing any others that came with it (a peer
    /// cannot make descriptors pile up).
    fn close_extra_fds(st: &mut ReadState, count: usize) -> Vec<OwnedFd> {
        let (fds, closed) = st.frames.take_frame_fds(count);
        if closed > 0 {
            log::debug!(target: "multiproc", "connection: closed {closed} descriptors no message announced");
        }
        fds
    }

    #[cfg(feature = "async")]
    /// The non-waiting receive of the async forms (`aio.rs`): one whole
    /// message as [`recv_message`](Self::recv_message) gives it, or
    /// `Ok(None)` if none is there yet. Never blocks: what arrived of a
    /// message stays in this end for the next receive.
    pub(super) fn recv_message_nowait(
        &self,
        max: usize,
        typed: bool,
    ) -> Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        let mut st = self.reader()?;
        if let Some(rx) = self.rx() {
            let max = max.min(st.max) as u64;
            return Ok(
                match rings::take_nowait(rx, self.sock.as_fd(), &mut st, max, true)? {
                    None => None,
                    Some(Got::Owned(body, fds)) => Some((body, fds)),
                    Some(Got::Inline(n)) => Some((st.scratch[..n].to_vec(), Vec::new())),
                },
            );
        }
        drop(st);
        // A passed deadline: reads only what the socket holds now.
        self.recv_message(max, Some(Instant::now()), typed)
    }

    #[cfg(feature = "async")]
    /// A descriptor of this end's socket that a pool thread can poll
    /// while the async forms await (readable when a receive may proceed).
    pub(super) fn wait_handle(&self) -> Result<OwnedFd> {
        sys::socket::dup(self.sock.as_fd())
            .map_err(|e| Error::io("could not duplicate the socket", e))
    }

    /// Receives one whole message: its body and the descriptors that came
    /// with it (as many as a typed message announces in its first byte).
    /// `Ok(None)` if `deadline` passes first.
    fn recv_message(
        &self,
        max: usize,
        deadline: Option<Instant>,
        typed: bool,
    ) -> Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        let mut st = self.reader()?;
        if self.rx().is_some() {
            let max = max.min(st.max) as u64;
            return self.ring_take_owned(&mut st, max, deadline);
        }
        loop {
            if let Some(len) = Self::sock_head(&mut st, max)?
                && st.frames.buffered() >= len
            {
                let count = match st.frames.body().first() {
                    Some(&n) if typed => n as usize,
                    _ => 0,
                };
                let fds = Self::close_extra_fds(&mut st, count);
                let body = st.frames.take_body();
                return Ok(Some((body, fds)));
            }
            if st.frames.at_eof() {
                return Err(eof_error());
            }
            let wait = match deadline {
                None => true,
                Some(_) => {
                    let ready = sys::socket::wait_readable(&[self.sock.as_fd()], deadline)
                        .map_err(|e| Error::io("poll failed", e))?[0];
                    if !ready {
                        return Ok(None);
                    }
                    false
                }
            };
            self.sock_fill(&mut st, wait)?;
        }
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Sends a value (Python's `send`). Over a Unix socket, descriptors
    /// inside it ([`Fd`](crate::Fd)) travel too.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if the value cannot be encoded (or holds
    /// descriptors and this is a TCP connection); [`ErrorKind::Eof`] if
    /// the other end is closed; [`ErrorKind::Io`] otherwise.
    pub fn send(&self, value: &T) -> Result<()> {
        if self.rings.is_some() {
            // Body: descriptor count, then the postcard bytes. Values
            // without descriptors are encoded into a buffer kept per thread.
            let plain = ENCODE_BUF.with(|cell| {
                let Ok(mut buf) = cell.try_borrow_mut() else {
                    return None; // re-entered from a value's Serialize
                };
                buf.clear();
                if codec::append_plain(value, &mut buf, codec::NoFds::Tcp).is_err() {
                    return None;
                }
                let done = self.ring_send(&[&[0u8], &buf], &[]).expect("a ring end");
                let used = buf.len();
                codec::trim_buffer(&mut buf, used);
                Some(done)
            });
            if let Some(done) = plain {
                return done;
            }
            let encoded = codec::encode(value)?;
            let count = [encoded.fds.len() as u8];
            let fds = encoded.borrowed_fds();
            return self
                .ring_send(&[&count, &encoded.bytes], &fds)
                .expect("a ring end");
        }
        let encoded = if self.unix {
            codec::encode(value)?
        } else {
            codec::Encoded {
                bytes: codec::encode_plain(value, codec::NoFds::Tcp)?,
                fds: Vec::new(),
            }
        };
        // Body: descriptor count, then the postcard bytes.
        let body_len = 1 + encoded.bytes.len();
        let (h, n) = encode_header(body_len);
        let count = [encoded.fds.len() as u8];
        let fds = encoded.borrowed_fds();
        if body_len <= 16 * 1024 {
            let mut one = Vec::with_capacity(n + body_len);
            one.extend_from_slice(&h[..n]);
            one.push(count[0]);
            one.extend_from_slice(&encoded.bytes);
            return self.write_raw(&[&one], &fds);
        }
        self.write_raw(&[&h[..n], &count, &encoded.bytes], &fds)
    }

    /// Receives a value (Python's `recv`); blocks until one arrives.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] when the other end is closed and everything was
    /// received; [`ErrorKind::Decode`] if the bytes are not a `T` (the
    /// message is consumed; the connection stays usable);
    /// [`ErrorKind::Protocol`] or [`ErrorKind::Io`] otherwise.
    pub fn recv(&self) -> Result<T> {
        if self.rx().is_some() {
            return self.ring_recv_typed(None).map(|v| v.expect("no deadline"));
        }
        let (body, fds) = self
            .recv_message(usize::MAX, None, true)?
            .expect("no deadline");
        Self::decode(&body, fds)
    }

    /// Receives a value if one arrives within `timeout` (Python's
    /// `poll(timeout)` then `recv()`). Every `timeout` is accepted
    /// (`Duration::MAX` waits as long as it takes).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if no whole message came in time (nothing is
    /// lost: what has arrived of one is kept for the next call);
    /// otherwise as [`recv`](Self::recv).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        self.recv_until(time::deadline_after(timeout))?
            .ok_or_else(|| Error::new(ErrorKind::Timeout, "timed out waiting for a message"))
    }

    /// Receives a value if one arrives by `deadline`.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T> {
        self.recv_until(Some(deadline))?
            .ok_or_else(|| Error::new(ErrorKind::Timeout, "timed out waiting for a message"))
    }

    /// Receives a value if one is already there, without waiting.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Empty`] if no message is there (Python's `poll()`
    /// being false); otherwise as [`recv`](Self::recv).
    pub fn try_recv(&self) -> Result<T> {
        self.recv_until(Some(Instant::now()))?
            .ok_or_else(|| Error::new(ErrorKind::Empty, "no message is there yet"))
    }

    /// A value, or `None` if none arrived by `deadline` (`None`: no limit).
    fn recv_until(&self, deadline: Option<Instant>) -> Result<Option<T>> {
        if self.rx().is_some() {
            return self.ring_recv_typed(deadline);
        }
        match self.recv_message(usize::MAX, deadline, true)? {
            Some((body, fds)) => Self::decode(&body, fds).map(Some),
            None => Ok(None),
        }
    }

    /// Receives and decodes one value from the ring transport, decoding
    /// small ones straight out of the scratch buffer.
    fn ring_recv_typed(&self, deadline: Option<Instant>) -> Result<Option<T>> {
        let mut st = self.reader()?;
        let rx = self.rx().expect("a readable ring end");
        let max = st.max as u64;
        match rings::take(rx, self.sock.as_fd(), &mut st, max, false, deadline)? {
            None => Ok(None),
            Some(Got::Inline(n)) => Self::decode(&st.scratch[..n], Vec::new()).map(Some),
            Some(Got::Owned(body, fds)) => Self::decode(&body, fds).map(Some),
        }
    }

    #[cfg(feature = "async")]
    /// [`recv`](Self::recv) without waiting, for the async forms:
    /// `Ok(None)` if no whole message is there yet.
    pub(super) fn recv_nowait(&self) -> Result<Option<T>> {
        match self.recv_message_nowait(usize::MAX, true)? {
            Some((body, fds)) => Self::decode(&body, fds).map(Some),
            None => Ok(None),
        }
    }

    fn decode(body: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
        let Some((&count, bytes)) = body.split_first() else {
            return Err(Error::new(
                ErrorKind::Decode,
                "an empty message is not a typed value",
            ));
        };
        if fds.len() < count as usize {
            return Err(codec::fewer_fds(count as usize, fds.len()));
        }
        codec::decode(bytes, fds)
    }
}

impl<T: Serialize + DeserializeOwned> Iterator for &Connection<T> {
    type Item = T;
    /// Receives values until the other end closes (or an error).
    fn next(&mut self) -> Option<T> {
        self.recv().ok()
    }
}

impl<T> AsFd for Connection<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    fd: Fd,
    unix: bool,
    readable: bool,
    writable: bool,
    /// Ring transport: whether it is one, and the segments of its rings
    /// (receiving, sending).
    ring: bool,
    rx: Option<Region>,
    tx: Option<Region>,
}

impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let st = self.read.lock().unwrap_or_else(|p| p.into_inner());
        if !st.pipe.is_empty() || st.pending.is_some() || st.due.is_some() || !st.frames.is_empty()
        {
            return Err(S::Error::custom(
                "this connection already read data that its new owner would miss: pass it before receiving on it",
            ));
        }
        let fd = sys::socket::dup(self.sock.as_fd()).map_err(S::Error::custom)?;
        Wire {
            fd: Fd::new(fd),
            unix: self.unix,
            readable: self.readable,
            writable: self.writable,
            ring: self.rings.is_some(),
            rx: self.rx().map(|r| r.region().clone()),
            tx: self
                .rings
                .as_ref()
                .and_then(|r| r.tx.as_ref())
                .map(|r| r.region().clone()),
        }
        .serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let w = Wire::deserialize(deserializer)?;
        if !w.ring {
            return Ok(Connection::new(
                w.fd.into_owned(),
                w.unix,
                w.readable,
                w.writable,
            ));
        }
        let ring = |r: Option<Region>| {
            r.map(crate::shm::ring::Ring::from_region)
                .transpose()
                .map_err(crate::codec::refuse::<D::Error>)
        };
        let rings = Rings {
            rx: ring(w.rx)?,
            tx: ring(w.tx)?,
        };
        if w.readable != rings.rx.is_some() || w.writable != rings.tx.is_some() {
            return Err(crate::codec::refuse::<D::Error>(
                "a pipe end's rings do not match its directions",
            ));
        }
        Ok(Connection::with_rings(
            w.fd.into_owned(),
            w.readable,
            w.writable,
            Some(rings),
        ))
    }
}

impl<T> auth::Channel for Connection<T> {
    fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        Connection::send_bytes(self, buf)
    }
    fn recv_bytes_max(&self, max: usize) -> Result<Vec<u8>> {
        Connection::recv_bytes_max(self, max)
    }
}

impl<T> Waitable for Connection<T> {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.sock.as_fd())
    }
    fn ready_now(&self) -> bool {
        let mut st = self.read.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = self.rx() {
            // Asks the writer to ring the doorbell before `wait` polls.
            return rings::ready_or_arm(rx, self.sock.as_fd(), &mut st).unwrap_or(true);
        }
        match Self::sock_head(&mut st, usize::MAX) {
            Ok(Some(len)) => st.frames.buffered() >= len || st.frames.at_eof(),
            Ok(None) => st.frames.at_eof(),
            Err(_) => true,
        }
    }
    fn confirm(&self) -> bool {
        match self.rx() {
            Some(_) => self.ready_now(),
            None => true,
        }
    }
}
