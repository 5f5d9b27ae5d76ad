//! The shared-memory transport of [`pipe`](super::pipe) and
//! [`pipe_oneway`](super::pipe_oneway): one byte ring per direction
//! ([`crate::shm::ring`], the queues' ring), and the Unix socket pair as
//! doorbell, end-of-file detector and carrier of descriptors and of large
//! messages.
//!
//! - **Send** (small, no descriptors): one record `[body][INLINE]` into the
//!   ring (the producers' lock, a copy, one release store), then, only if
//!   the reader's *sleeps* flag is set, clear it and write one doorbell
//!   byte to the socket. No system call otherwise.
//!   With [`RING_FULL`] bytes unread in the ring, the writer first waits
//!   for the reader to take some (the ring's futex; a hang-up of the
//!   socket, checked every 20 ms, ends the wait with `Eof`).
//!   A ring that cannot grow for it (other writers' large messages fill
//!   it to [`PIPE_MAX_CAP`]) sends the message as the next case does.
//! - **Send** (with descriptors, or larger than [`INLINE_MAX`]): under the
//!   producers' lock, number the message (`SOCK_SEQ`), put the record
//!   `[seq][len][SOCKET]`, and, still holding the lock, write the frame
//!   `[FRAME][seq][len][nfds][body]` to the socket with the descriptors
//!   attached to its first bytes. So the socket carries frames in ring
//!   order.
//! - **Receive**: take the next record; a `SOCKET` record is followed by
//!   reading its frame from the socket (doorbell bytes between frames are
//!   skipped). An empty ring: spin, then yield (as the queue does), then
//!   drain the socket, set the *sleeps* flag, look at the ring once more,
//!   and sleep in `poll(2)` on the socket. A peer that closes or dies
//!   makes the socket hang up, so the reader wakes, takes what is left in
//!   the ring, and then gets [`ErrorKind::Eof`].
//! - **Writers notice a dead reader** when a doorbell or a frame fails, and
//!   every [`HUP_EVERY`] sends by one `poll(2)` of the socket.
//!
//! The flag protocol is Dekker's: the writer publishes (release store,
//! then the unlock's locked swap) and then loads the flag; the reader
//! stores the flag (a locked swap) and then loads the ring's tail. One of
//! the two sees the other.
//!
//! See `README.md` beside this file for the figures.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::stream::{ReadState, eof_error};
use crate::error::{Error, ErrorKind, Result};
use crate::frame::pipe::{self, DOORBELL, Meta};
use crate::frame::{Fill, FrameError};
use crate::shm::ring::{self, Fail, Ring, Wait};
use crate::sys;

/// The largest a pipe's ring may grow. A pipe's writer waits while 8 MiB
/// are unread and sends messages over 64 MiB through its socket, so its
/// ring holds about 72 MiB per writer at most (a writer that finds no
/// room past that takes the socket); 256 MiB reserves 64 times less
/// address space than a queue (16 GiB per ring adds up: a process has
/// 128 TiB).
const PIPE_MAX_CAP: u64 = 1 << 28;

/// `USER` word (u32): the reader of this ring may be asleep in `poll`:
/// ring the doorbell.
const READER_SLEEPS: usize = 0;
/// `USER` word (u64, its own line): socket frames numbered so far.
const SOCK_SEQ: usize = 128;

/// A record's last byte: the body is in the ring (before this byte).
const INLINE: u8 = 0;
/// A record's last byte: `[seq u64][len u64]` before it; the body is a
/// frame on the socket.
const SOCKET: u8 = 1;

/// Bodies up to this size go through the ring, larger ones through the
/// socket. Measured (`multiproc-bench pipe_size`, and 64 messages of 16
/// MiB): the ring moves 16 MiB messages at 8 GB/s, the socket at 4, and a
/// sealed memfd per message, handed over on the socket, at 2.6 (its pages
/// are allocated and freed for every message; the ring's are reused).
/// The ring grows to hold such a message (up to 64 + 8 MiB unread) and
/// gives that memory back once emptied after 2 s without growing
/// (`ring::shrink_at`).
pub(crate) const INLINE_MAX: usize = 64 << 20;
/// [`INLINE_MAX`], or what a crash test set ([`set_inline_max`]).
#[inline]
fn inline_max() -> usize {
    #[cfg(feature = "test-hooks")]
    {
        let set = INLINE_MAX_SET.load(Ordering::Relaxed);
        if set != 0 {
            return set;
        }
    }
    INLINE_MAX
}

#[cfg(feature = "test-hooks")]
static INLINE_MAX_SET: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Crash-test support: bodies over `bytes` take the socket in this
/// process (0: the default again), so that a test can kill a writer in
/// the middle of a socket frame without sending 64 MiB messages.
#[cfg(feature = "test-hooks")]
pub(crate) fn set_inline_max(bytes: usize) {
    INLINE_MAX_SET.store(bytes, Ordering::Relaxed);
}

/// With this many bytes waiting in the ring, a writer waits until the
/// reader has taken some (backpressure, as a socket's buffer gives; it
/// also keeps the ring small enough that its pages stay warm).
const RING_FULL: u64 = 8 << 20;
/// How often a writer waiting for room checks that the reader is alive.
const ROOM_CHECK: Duration = Duration::from_millis(20);
/// A writer polls the socket for a hang-up every this many ring sends.
const HUP_EVERY: u32 = 256;

/// How long an empty-handed reader spins, then yields, before it sleeps.
const SPIN: Duration = Duration::from_micros(20);
const YIELD: Duration = Duration::from_micros(100);
/// How often a reader waiting for the rest of a frame checks that its
/// writer is alive.
const ALIVE_EVERY: Duration = Duration::from_millis(20);

/// The rings of one end: the one it receives from and the one it sends
/// into (`None` for the missing direction of a one-way pipe).
#[derive(Clone, Debug)]
pub(crate) struct Rings {
    pub(crate) rx: Option<Ring>,
    pub(crate) tx: Option<Ring>,
}

impl Rings {
    /// The rings of a new pipe's two ends: `(a, b)`; one-way: `a` reads,
    /// `b` writes.
    pub(crate) fn pair(duplex: bool) -> Result<(Rings, Rings)> {
        let ab = Ring::with_max_cap(0, PIPE_MAX_CAP)?;
        if duplex {
            let ba = Ring::with_max_cap(0, PIPE_MAX_CAP)?;
            Ok((
                Rings {
                    rx: Some(ba.clone()),
                    tx: Some(ab.clone()),
                },
                Rings {
                    rx: Some(ab),
                    tx: Some(ba),
                },
            ))
        } else {
            Ok((
                Rings {
                    rx: Some(ab.clone()),
                    tx: None,
                },
                Rings {
                    rx: None,
                    tx: Some(ab),
                },
            ))
        }
    }
}

fn fail(f: Fail) -> Error {
    match f {
        Fail::Error(e) => e,
        other => Error::new(
            ErrorKind::Io,
            format!("the pipe's ring refused a message: {other:?}"),
        ),
    }
}

fn send_error(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => eof_error(),
        _ => Error::io("could not send on the connection", e),
    }
}

/// Sends one message whose body is `parts` laid end to end, with `fds`.
pub(crate) fn send(
    tx: &Ring,
    sock: BorrowedFd<'_>,
    parts: &[&[u8]],
    fds: &[BorrowedFd<'_>],
    sends: &AtomicU32,
) -> Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if fds.is_empty() && len <= inline_max() && parts.len() < 4 {
        while tx.bytes_used() >= RING_FULL {
            if sys::socket::hung_up(sock).map_err(|e| Error::io("poll failed", e))? {
                return Err(eof_error());
            }
            tx.wait_below(RING_FULL, Some(Instant::now() + ROOM_CHECK));
        }
        let mut all: [&[u8]; 4] = [&[]; 4];
        all[..parts.len()].copy_from_slice(parts);
        all[parts.len()] = &[INLINE];
        match tx.put_parts(&all[..=parts.len()]) {
            Ok(()) => {}
            // Other writers' large messages fill the ring to its limit:
            // this one takes the socket (nothing was published).
            Err(Fail::Error(e)) if e.kind() == ErrorKind::MessageTooLarge => {
                return send_on_socket(tx, sock, parts, fds, len);
            }
            Err(f) => return Err(fail(f)),
        }
        doorbell(tx, sock)?;
        if sends.fetch_add(1, Ordering::Relaxed) % HUP_EVERY == HUP_EVERY - 1
            && sys::socket::hung_up(sock).map_err(|e| Error::io("poll failed", e))?
        {
            return Err(eof_error());
        }
        return Ok(());
    }
    send_on_socket(tx, sock, parts, fds, len)
}

/// Sends a message as a socket record and its frame.
fn send_on_socket(
    tx: &Ring,
    sock: BorrowedFd<'_>,
    parts: &[&[u8]],
    fds: &[BorrowedFd<'_>],
    len: usize,
) -> Result<()> {
    let nfds = u8::try_from(fds.len())
        .map_err(|_| Error::new(ErrorKind::Encode, "too many descriptors in one message"))?;
    tx.put_built(
        |r| {
            let seq = r.user_u64(SOCK_SEQ).fetch_add(1, Ordering::AcqRel) + 1;
            let mut rec = Vec::with_capacity(17);
            rec.extend_from_slice(&seq.to_le_bytes());
            rec.extend_from_slice(&(len as u64).to_le_bytes());
            rec.push(SOCKET);
            Ok((seq, rec))
        },
        &[],
        |seq| {
            let h = pipe::encode_header(seq, len, nfds);
            let mut bufs: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
            bufs.push(&h);
            bufs.extend_from_slice(parts);
            sys::socket::send_all(sock, &bufs, fds).map_err(send_error)
        },
    )
    .map_err(fail)?;
    // The frame woke a sleeping reader; clear its flag all the same.
    doorbell(tx, sock)
}

/// After publishing: rings the doorbell if the reader may sleep.
fn doorbell(tx: &Ring, sock: BorrowedFd<'_>) -> Result<()> {
    ring::fence_after_rmw();
    let flag = tx.user_u32(READER_SLEEPS);
    if flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::SeqCst) != 0 {
        // No room means unread bytes are there already: the reader wakes.
        sys::socket::send_nowait(sock, &[DOORBELL]).map_err(send_error)?;
    }
    Ok(())
}

/// A message taken from the ring.
pub(crate) enum Got {
    /// The body is `st.scratch[..n]`, no descriptors.
    Inline(usize),
    /// The body and its descriptors.
    Owned(Vec<u8>, Vec<OwnedFd>),
}

fn too_large(len: u64, max: u64) -> Error {
    Error::new(
        ErrorKind::MessageTooLarge,
        format!(
            "a message of {len} bytes is over the limit of {max} bytes (see Connection::set_max_message_size)"
        ),
    )
}

/// How much a drain reads ahead at most.
const CHUNK: usize = crate::frame::buffer::CHUNK;

fn corrupt(st: &mut ReadState, what: &str) -> Error {
    st.break_with(ErrorKind::Protocol, what)
}

/// Takes the next message, waiting until `deadline` (`None`: as long as
/// it takes) if there is none; `Ok(None)` if the deadline passed first.
/// `fresh`: into a new vector (for the byte methods) rather than
/// `st.scratch`. A message longer than `max` stays queued
/// (`MessageTooLarge`), unless it travels on the socket: then the
/// connection is broken, as a socket connection's would be.
pub(crate) fn take(
    rx: &Ring,
    sock: BorrowedFd<'_>,
    st: &mut ReadState,
    max: u64,
    fresh: bool,
    deadline: Option<Instant>,
) -> Result<Option<Got>> {
    take_with(rx, sock, st, max, fresh, deadline, false)
}

#[cfg(feature = "async")]
/// [`take`] that never waits, for the async forms: `Ok(None)` when no
/// whole message is there yet. A socket record whose frame has not all
/// arrived is kept in `st.due` (what arrived of the frame stays in
/// `st.pipe`) for the next receive of any form to finish, so nothing
/// blocks on the caller's thread and nothing is lost; the socket becomes
/// readable when more of the frame comes.
pub(crate) fn take_nowait(
    rx: &Ring,
    sock: BorrowedFd<'_>,
    st: &mut ReadState,
    max: u64,
    fresh: bool,
) -> Result<Option<Got>> {
    take_with(rx, sock, st, max, fresh, Some(Instant::now()), true)
}

fn take_with(
    rx: &Ring,
    sock: BorrowedFd<'_>,
    st: &mut ReadState,
    max: u64,
    fresh: bool,
    deadline: Option<Instant>,
    nowait: bool,
) -> Result<Option<Got>> {
    if let Some(e) = st.broken_error() {
        return Err(e);
    }
    if let Some((body, fds)) = st.pending.take() {
        if body.len() as u64 > max {
            let len = body.len() as u64;
            st.pending = Some((body, fds));
            return Err(too_large(len, max));
        }
        return Ok(Some(Got::Owned(body, fds)));
    }
    if st.due.is_some() {
        return finish_due(rx, sock, st, max, nowait);
    }
    // The last message lent from `scratch` is done with by now.
    crate::codec::trim_buffer(&mut st.scratch, st.scratch_used);
    st.scratch_used = crate::codec::NO_MESSAGE;
    loop {
        let mut fresh_buf = Vec::new();
        let got = if fresh {
            rx.get(&mut fresh_buf, Wait::No)
        } else {
            rx.get(&mut st.scratch, Wait::No)
        };
        match got {
            Ok(n) => {
                let rec = if fresh {
                    &fresh_buf[..n]
                } else {
                    &st.scratch[..n]
                };
                match rec.last().copied() {
                    Some(INLINE) => {
                        let len = n - 1;
                        if len as u64 > max {
                            let body = rec[..len].to_vec();
                            st.pending = Some((body, Vec::new()));
                            return Err(too_large(len as u64, max));
                        }
                        if fresh {
                            fresh_buf.truncate(len);
                            return Ok(Some(Got::Owned(fresh_buf, Vec::new())));
                        }
                        st.scratch_used = len;
                        return Ok(Some(Got::Inline(len)));
                    }
                    Some(SOCKET) if n == 17 => {
                        let seq = u64::from_le_bytes(rec[..8].try_into().expect("8 bytes"));
                        let len = u64::from_le_bytes(rec[8..16].try_into().expect("8 bytes"));
                        if len > max {
                            let err = too_large(len, max);
                            return Err(st.break_with(ErrorKind::MessageTooLarge, err.to_string()));
                        }
                        st.due = Some((seq, len));
                        return finish_due(rx, sock, st, max, nowait);
                    }
                    _ => {
                        return Err(Error::new(
                            ErrorKind::Protocol,
                            format!("a record of {n} bytes in the pipe's ring is not a message"),
                        ));
                    }
                }
            }
            Err(Fail::WouldBlock) => {}
            Err(f) => return Err(fail(f)),
        }
        if st.eof {
            return Err(eof_error());
        }
        if let Some(e) = st.broken_error() {
            return Err(e);
        }
        if !wait(rx, sock, st, deadline)? {
            return Ok(None);
        }
    }
}

/// Reads the frame of the socket record taken (`st.due`); with `nowait`,
/// only if a receive can finish it without waiting ([`due_ready`]), else
/// `Ok(None)` with the record still due.
fn finish_due(
    rx: &Ring,
    sock: BorrowedFd<'_>,
    st: &mut ReadState,
    max: u64,
    nowait: bool,
) -> Result<Option<Got>> {
    let (seq, len) = st.due.expect("a socket record is due");
    if len > max {
        // Taken under a higher limit (`recv_bytes_max`): refused as a
        // socket connection refuses a header read earlier.
        let err = too_large(len, max);
        return Err(st.break_with(ErrorKind::MessageTooLarge, err.to_string()));
    }
    if nowait && !due_ready(rx, sock, st)? {
        return Ok(None);
    }
    st.due = None;
    let (body, fds) = read_frame(rx, sock, st, seq, len)?;
    Ok(Some(Got::Owned(body, fds)))
}

/// With a socket record taken (`st.due`): reads what the socket holds of
/// its frame now, without waiting, into `st.pipe`, which grows with what
/// arrives. `Ok(true)` once a receive can finish without waiting: the
/// frame is whole, or it never will be (end of file, or its writer gave
/// up the producers' lock, or died, before finishing it: the receive
/// reports it).
fn due_ready(rx: &Ring, sock: BorrowedFd<'_>, st: &mut ReadState) -> Result<bool> {
    // Asked before reading: a writer that let go of the lock since had
    // sent all of its frame.
    let busy = rx.producer_busy();
    loop {
        if let Some((flen, _, _)) = skip_doorbells(st)?
            && st.pipe.buffered() >= flen
        {
            return Ok(true);
        }
        if !recv_once(sock, st, false)? {
            return Ok(st.eof || !busy);
        }
    }
}

/// Whether a message (or end of file) is there now; if not, asks the
/// writer to ring the doorbell (sets the flag) before the caller polls
/// the socket. Drains the socket first, so that a stale doorbell does not
/// make a poll return at once.
pub(crate) fn ready_or_arm(rx: &Ring, sock: BorrowedFd<'_>, st: &mut ReadState) -> Result<bool> {
    if st.pending.is_some() || st.broken.is_some() || st.eof {
        return Ok(true);
    }
    if st.due.is_some() {
        // The ring's next records come after this frame.
        return due_ready(rx, sock, st);
    }
    if !rx.is_empty() {
        return Ok(true);
    }
    drain(sock, st)?;
    if st.eof || st.broken.is_some() {
        return Ok(true);
    }
    rx.user_u32(READER_SLEEPS).swap(1, Ordering::SeqCst);
    Ok(!rx.is_empty())
}

/// Waits until the ring may hold a message or the peer hung up
/// (`st.eof`); `false` if `deadline` passed first.
pub(crate) fn wait(
    rx: &Ring,
    sock: BorrowedFd<'_>,
    st: &mut ReadState,
    deadline: Option<Instant>,
) -> Result<bool> {
    let expired = || deadline.is_some_and(|d| Instant::now() >= d);
    if !expired() {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if !rx.is_empty() {
                return Ok(true);
            }
            spins += 1;
            if spins.is_multiple_of(64) {
                let waited = start.elapsed();
                if waited >= SPIN + YIELD || expired() {
                    break;
                }
                if waited >= SPIN {
                    std::thread::yield_now();
                }
            }
            std::hint::spin_loop();
        }
    }
    let flag = rx.user_u32(READER_SLEEPS);
    loop {
        if ready_or_arm(rx, sock, st)? {
            flag.store(0, Ordering::Relaxed);
            return Ok(true);
        }
        if expired() {
            return Ok(false);
        }
        // A peer that closes or dies makes the socket readable (hang-up):
        // this sleep never outlasts the peer.
        let ready = sys::socket::wait_readable(&[sock], deadline)
            .map_err(|e| Error::io("poll failed", e))?[0];
        if !ready {
            return Ok(!rx.is_empty());
        }
    }
}

/// Skips doorbell bytes at the front of the buffer (a frame boundary):
/// the header of the frame at the front once it is there, `None` if more
/// bytes are needed. A byte that is neither a doorbell nor a frame (someone
/// wrote to the raw socket) breaks the connection.
fn skip_doorbells(st: &mut ReadState) -> Result<Option<(usize, u64, u8)>> {
    // A frame over the connection's limit is refused from its header (its
    // ring record is refused too).
    st.pipe.set_max_body(st.max);
    loop {
        match st.pipe.head() {
            Ok(None) => return Ok(None),
            Ok(Some((_, Meta::Doorbell))) => st.pipe.consume(),
            Ok(Some((len, Meta::Frame { seq, nfds }))) => return Ok(Some((len, seq, nfds))),
            Err(e) => {
                let kind = match e {
                    FrameError::TooLarge { .. } => ErrorKind::MessageTooLarge,
                    FrameError::Malformed(_) => ErrorKind::Protocol,
                };
                return Err(st.break_with(kind, e.to_string()));
            }
        }
    }
}

/// One `recvmsg` into the buffer; `false` if nothing was there.
fn recv_once(sock: BorrowedFd<'_>, st: &mut ReadState, wait: bool) -> Result<bool> {
    if st.eof {
        return Ok(false);
    }
    match st.pipe.fill(sock, wait) {
        Ok(Fill::Data) => Ok(true),
        Ok(Fill::WouldBlock) => Ok(false),
        Ok(Fill::Eof) => {
            st.eof = true;
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(st.break_with(ErrorKind::Protocol, e.to_string()))
        }
        Err(e) => Err(Error::io("could not receive on the connection", e)),
    }
}

/// Reads what the socket holds now, without blocking: doorbells are
/// dropped, frame bytes kept; a hang-up sets `st.eof`. Bytes that are
/// neither (someone wrote to the raw socket) break the connection.
fn drain(sock: BorrowedFd<'_>, st: &mut ReadState) -> Result<()> {
    for _ in 0..4 {
        if skip_doorbells(st).is_err() || st.pipe.buffered() > CHUNK || !recv_once(sock, st, false)?
        {
            break;
        }
    }
    let _ = skip_doorbells(st);
    Ok(())
}

/// Waits until the socket is readable, checking every [`ALIVE_EVERY`]
/// that a writer is still at work: if none is (the producers' lock is
/// free, or its holder died) and nothing is there, the frame will never
/// come.
fn wait_socket(rx: &Ring, sock: BorrowedFd<'_>) -> Result<()> {
    loop {
        let ready = sys::socket::wait_readable(&[sock], Some(Instant::now() + ALIVE_EVERY))
            .map_err(|e| Error::io("poll failed", e))?[0];
        if ready {
            return Ok(());
        }
        if !rx.producer_busy() {
            // Everything a writer that let go of the lock sent is there.
            let ready = sys::socket::wait_readable(&[sock], Some(Instant::now()))
                .map_err(|e| Error::io("poll failed", e))?[0];
            if ready {
                return Ok(());
            }
            return Err(Error::new(
                ErrorKind::Protocol,
                "the sender of a message died before finishing it",
            ));
        }
    }
}

/// Reads the frame that goes with record `seq` from the socket. Its body
/// grows with what arrives (at most doubling per read), never with what
/// the header announced.
fn read_frame(
    rx: &Ring,
    sock: BorrowedFd<'_>,
    st: &mut ReadState,
    seq: u64,
    len: u64,
) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let (flen, fseq, nfds) = loop {
        if let Some(head) = skip_doorbells(st)? {
            break head;
        }
        if st.eof {
            return Err(eof_error());
        }
        if let Err(e) = wait_socket(rx, sock) {
            return Err(corrupt(st, &e.to_string()));
        }
        recv_once(sock, st, false)?;
    };
    if fseq != seq || flen as u64 != len {
        return Err(corrupt(
            st,
            &format!(
                "the socket holds frame {fseq} of {flen} bytes where the ring says {seq} of {len}"
            ),
        ));
    }
    let (fds, _) = st.pipe.take_frame_fds(nfds as usize);
    if st.pipe.buffered() >= flen {
        return Ok((st.pipe.take_body(), fds));
    }
    // The rest of the body is read straight into its own vector, which
    // grows with what arrives (at most doubling per read: never the
    // announced length up front) without zeroing memory first.
    let mut body = st.pipe.take_started_body();
    while body.len() < flen {
        if st.eof {
            // The writer closed or died in the middle: the torn message
            // is not delivered, and every later receive is `Eof` too.
            return Err(eof_error());
        }
        if let Err(e) = wait_socket(rx, sock) {
            return Err(corrupt(st, &e.to_string()));
        }
        let limit = flen.min(body.len().saturating_add(body.len().max(CHUNK)));
        match sys::socket::read_into(sock, &mut body, limit) {
            Ok(0) => st.eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => st.eof = true,
            Err(e) => {
                return Err(corrupt(st, &format!("a read failed in a message: {e}")));
            }
        }
    }
    Ok((body, fds))
}
