//! Authenticating many connections at once, in the accepting thread, with
//! no thread and no unbounded buffer per unauthenticated peer.
//!
//! [`Gate::accept`] waits (`poll`) on the listening socket and on every
//! connection still in its handshake, and drives each handshake a step
//! whenever its socket is readable, so a peer that connects and says
//! nothing holds up no one: the next client is accepted and served while it
//! waits. Each handshake has a deadline ([`DEADLINE`] unless set
//! otherwise); at most [`MAX_PENDING`] are in progress, and a new one past
//! that closes the oldest. When `accept` fails because the process is out
//! of descriptors (`EMFILE`, `ENFILE`), the gate backs off (10 ms,
//! doubling to 1 s) instead of spinning on a socket that stays readable.
//!
//! The handshake itself is `auth.rs`'s (CPython's, both ways, listener
//! first). Messages are read exactly: a 4-byte header, then at most
//! [`auth::MAX_MESSAGE`] bytes, never a byte beyond the message, so what the
//! client sends after the handshake is left for the connection. Reads use
//! `recv(2)` without a control buffer: descriptors sent before
//! authentication are closed by the kernel, never received.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::auth;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::socket::{self, Received};

/// How long a peer has to complete the handshake by default.
pub(crate) const DEADLINE: Duration = Duration::from_secs(5);
/// Most handshakes in progress at once.
pub(crate) const MAX_PENDING: usize = 1024;

const HEADER: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the answer to our challenge.
    Response,
    /// Waiting for the peer's challenge.
    Challenge,
    /// Waiting for the peer's verdict on our answer.
    Verdict,
}

struct Pending {
    sock: OwnedFd,
    unix: bool,
    stage: Stage,
    /// Our challenge's message (what the peer must MAC).
    message: Vec<u8>,
    buf: Vec<u8>,
    /// `None`: no deadline (a timeout too long to represent).
    deadline: Option<Instant>,
    /// When it was accepted.
    started: Instant,
}

enum Step {
    More,
    Done,
}

impl Pending {
    fn start(sock: OwnedFd, unix: bool, deadline: Option<Instant>) -> Result<Self> {
        let (challenge, message) = auth::new_challenge()?;
        let pending = Pending {
            sock,
            unix,
            stage: Stage::Response,
            message,
            buf: Vec::with_capacity(HEADER),
            deadline,
            started: Instant::now(),
        };
        pending.send(&challenge)?;
        Ok(pending)
    }

    /// Sends one framed message; the socket buffer of a fresh connection
    /// always has room for the few bytes of a handshake, so a peer that
    /// does not read is an error, not a wait.
    fn send(&self, payload: &[u8]) -> Result<()> {
        let framed = [&(payload.len() as u32).to_be_bytes()[..], payload].concat();
        match socket::send_nowait(self.sock.as_fd(), &framed) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::new(
                ErrorKind::Authentication,
                "the peer does not read its handshake",
            )),
            Err(e) => Err(Error::io("could not send a handshake message", e)),
        }
    }

    /// How many more bytes the message being read needs; `Err` for a
    /// header that announces more than a handshake message may hold.
    fn wanted(&self) -> Result<usize> {
        if self.buf.len() < HEADER {
            return Ok(HEADER - self.buf.len());
        }
        let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        match usize::try_from(len) {
            Ok(n) if n <= auth::MAX_MESSAGE => Ok(HEADER + n - self.buf.len()),
            _ => Err(Error::new(
                ErrorKind::Authentication,
                format!(
                    "handshake message of {len} bytes announced (at most {} allowed)",
                    auth::MAX_MESSAGE
                ),
            )),
        }
    }

    /// Reads what is there and acts on each complete message.
    fn drive(&mut self, key: &[u8]) -> Result<Step> {
        loop {
            let want = self.wanted()?;
            if want == 0 {
                let payload = self.buf.split_off(HEADER);
                self.buf.clear();
                if let Step::Done = self.on_message(key, &payload)? {
                    return Ok(Step::Done);
                }
                continue;
            }
            let mut chunk = [0u8; HEADER + auth::MAX_MESSAGE];
            match socket::recv_bytes(self.sock.as_fd(), &mut chunk[..want], false) {
                Ok(Received::Bytes(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Received::WouldBlock) => return Ok(Step::More),
                Ok(Received::Eof) => {
                    return Err(Error::new(
                        ErrorKind::Eof,
                        "the peer hung up during the handshake",
                    ));
                }
                Err(e) => return Err(Error::io("could not read a handshake message", e)),
            }
        }
    }

    fn on_message(&mut self, key: &[u8], payload: &[u8]) -> Result<Step> {
        match self.stage {
            Stage::Response => {
                if !auth::response_ok(key, &self.message, payload) {
                    let _ = self.send(auth::FAILURE);
                    return Err(Error::new(
                        ErrorKind::Authentication,
                        "authentication failed: the peer's digest was wrong (a different authkey?)",
                    ));
                }
                self.send(auth::WELCOME)?;
                self.stage = Stage::Challenge;
                Ok(Step::More)
            }
            Stage::Challenge => {
                self.send(&auth::respond(key, payload)?)?;
                self.stage = Stage::Verdict;
                Ok(Step::More)
            }
            Stage::Verdict if payload == auth::WELCOME => Ok(Step::Done),
            Stage::Verdict => Err(Error::new(
                ErrorKind::Authentication,
                "authentication failed: the peer rejected our digest (a different authkey?)",
            )),
        }
    }
}

/// The handshakes in progress on one listening socket; see the module docs.
pub(crate) struct Gate {
    key: Vec<u8>,
    deadline: Duration,
    pending: Vec<Pending>,
    backoff: Duration,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// What [`Gate::accept`] needs of a listening socket: take one connection
/// without blocking (`Ok(None)`: none waiting), saying whether it is a Unix
/// socket.
pub(crate) type AcceptOne<'a> = &'a mut dyn FnMut() -> io::Result<Option<(OwnedFd, bool)>>;

impl Gate {
    pub(crate) fn new(key: Vec<u8>) -> Self {
        Gate {
            key,
            deadline: DEADLINE,
            pending: Vec::new(),
            backoff: Duration::ZERO,
        }
    }

    /// Sets how long a peer has to complete the handshake.
    pub(crate) fn set_deadline(&mut self, deadline: Duration) {
        self.deadline = deadline;
    }

    /// How many handshakes are in progress.
    #[allow(dead_code)] // for tests and the manager's statistics
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Accepts connections from `listen` (a non-blocking listening socket,
    /// read through `accept_one`) and runs their handshakes until one
    /// passes, and returns it; returns the error of one that fails with a
    /// wrong key ([`ErrorKind::Authentication`]; the others carry on); or returns `Ok(None)` when `stop()` says so
    /// (it is asked each time the gate wakes up: a connection arriving
    /// wakes it).
    pub(crate) fn accept(
        &mut self,
        listen: BorrowedFd<'_>,
        accept_one: AcceptOne<'_>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<(OwnedFd, bool)>> {
        loop {
            if stop() {
                return Ok(None);
            }
            // Drop handshakes past their deadline.
            let now = Instant::now();
            self.pending.retain(|p| p.deadline.is_none_or(|d| d > now));
            let mut wake = self.pending.iter().filter_map(|p| p.deadline).min();
            if !self.backoff.is_zero() {
                let until = now + self.backoff; // at most 1 s
                wake = Some(wake.map_or(until, |w| w.min(until)));
            }
            let ready = {
                let mut fds: Vec<BorrowedFd<'_>> = Vec::with_capacity(self.pending.len() + 1);
                if self.backoff.is_zero() {
                    fds.push(listen);
                }
                fds.extend(self.pending.iter().map(|p| p.sock.as_fd()));
                socket::wait_readable(&fds, wake).map_err(|e| Error::io("poll failed", e))?
            };
            let (listen_ready, pending_ready) = if self.backoff.is_zero() {
                (ready[0], &ready[1..])
            } else {
                (false, &ready[..])
            };
            // Drive every readable handshake (in reverse, so removal keeps
            // the indices of the ones not yet visited).
            for i in (0..pending_ready.len()).rev() {
                if !pending_ready[i] {
                    continue;
                }
                match self.pending[i].drive(&self.key) {
                    Ok(Step::More) => {}
                    Ok(Step::Done) => {
                        let p = self.pending.swap_remove(i);
                        return Ok(Some((p.sock, p.unix)));
                    }
                    Err(e) => {
                        self.pending.swap_remove(i);
                        // A wrong key is the caller's to know (Python's
                        // accept raises AuthenticationError); a peer that
                        // hung up or broke off is only dropped.
                        if e.kind() == ErrorKind::Authentication {
                            return Err(e);
                        }
                        log::debug!(target: "multiproc", "listener: dropped a client: {e}");
                    }
                }
            }
            if listen_ready || !self.backoff.is_zero() {
                self.accept_new(accept_one);
            }
        }
    }

    /// Takes every connection waiting on the listening socket.
    fn accept_new(&mut self, accept_one: AcceptOne<'_>) {
        loop {
            match accept_one() {
                Ok(Some((sock, unix))) => {
                    self.backoff = Duration::ZERO;
                    if self.pending.len() >= MAX_PENDING {
                        // The oldest is the one most likely stalled.
                        let oldest = (0..self.pending.len())
                            .min_by_key(|&i| self.pending[i].started)
                            .unwrap_or(0);
                        self.pending.swap_remove(oldest);
                    }
                    let deadline = crate::time::deadline_after(self.deadline);
                    match Pending::start(sock, unix, deadline) {
                        Ok(p) => self.pending.push(p),
                        Err(e) => log::debug!(target: "multiproc", "listener: {e}"),
                    }
                }
                Ok(None) => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // Out of descriptors: the connection stays queued in
                    // the kernel and the socket stays readable. Wait for
                    // handshakes to finish or expire instead of spinning.
                    self.backoff =
                        (self.backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    log::warn!(target: "multiproc", "listener: accept: {e}; retrying in {:?}", self.backoff);
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and the like concern one connection.
                    log::debug!(target: "multiproc", "listener: accept: {e}");
                    return;
                }
            }
        }
    }
}
