//! The parent's view of a child: its pidfd, our end of its socket, what it
//! reported and how it ended. Shared between the child's `Process` handle
//! and the list of children that `active_children()` and the exit hook
//! walk ([`super::register`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::{Error, ErrorKind, PanicReport, Result};
use crate::process::status::{ExitStatus, Signal};
use crate::sys;
use crate::wire;

use super::protocol::{self, ErrorReport};

/// What a start path hands over: the child's pid, our end of its socket,
/// and what was already read from it.
pub(crate) struct Started {
    pub(crate) pid: i32,
    pub(crate) sock: OwnedFd,
    pub(crate) reader: wire::Reader,
    pub(crate) hello: bool,
}

/// The status `waitid` reported, as the crate's value type.
pub(crate) fn status_from_raw(raw: sys::process::RawStatus) -> ExitStatus {
    match raw {
        sys::process::RawStatus::Exited(c) => ExitStatus::Exited(c),
        sys::process::RawStatus::Signaled { signal, .. } => {
            ExitStatus::Signaled(Signal::from_raw(signal))
        }
    }
}

/// What the child reported, first report wins.
enum Outcome {
    Value(wire::Frame),
    Panic(PanicReport),
    Failed(ErrorReport),
    Corrupt(String),
}

struct ChildState {
    /// Our end of the socket; `None` once the handle was dropped or all
    /// was read.
    sock: Option<Arc<OwnedFd>>,
    reader: wire::Reader,
    hello: bool,
    outcome: Option<Outcome>,
    status: Option<ExitStatus>,
}

/// One child, shared between its [`Process`] handle and the list of
/// children that `active_children()` and the exit hook walk.
pub(crate) struct ChildShared {
    pub(crate) name: String,
    pub(crate) pid: i32,
    pub(crate) daemon: bool,
    pidfd: OwnedFd,
    state: Mutex<ChildState>,
}

impl ChildShared {
    pub(crate) fn new(name: String, daemon: bool, started: Started) -> Result<Self> {
        let pidfd = sys::process::pidfd(started.pid)
            .map_err(|e| Error::io("could not open a pidfd for the child", e))?;
        sys::socket::set_nonblocking(started.sock.as_fd(), true)
            .map_err(|e| Error::io("socket setup failed", e))?;
        Ok(Self {
            name,
            pid: started.pid,
            daemon,
            pidfd,
            state: Mutex::new(ChildState {
                sock: Some(Arc::new(started.sock)),
                reader: started.reader,
                hello: started.hello,
                outcome: None,
                status: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ChildState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pidfd: readable once the child has ended.
    pub(crate) fn sentinel(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// How the child ended, if it was reaped already (no system call).
    pub(crate) fn known_status(&self) -> Option<ExitStatus> {
        self.lock().status
    }

    /// Nobody will read the result: the child's write fails instead of
    /// blocking, so it can always exit.
    pub(crate) fn discard_result(&self) {
        self.lock().sock = None;
    }

    /// Reads whatever the child has sent so far, without blocking.
    fn pump(st: &mut ChildState) {
        let Some(sock) = st.sock.clone() else { return };
        loop {
            loop {
                match st.reader.next_frame() {
                    Ok(Some(frame)) => Self::take_frame(st, frame),
                    Ok(None) => break,
                    Err(e) => {
                        st.outcome.get_or_insert(Outcome::Corrupt(e.to_string()));
                        st.sock = None;
                        return;
                    }
                }
            }
            match st.reader.fill(sock.as_fd()) {
                Ok(wire::Fill::Data) => continue,
                Ok(wire::Fill::WouldBlock) => return,
                Ok(wire::Fill::Eof) | Err(_) => {
                    st.sock = None;
                    return;
                }
            }
        }
    }

    fn take_frame(st: &mut ChildState, frame: wire::Frame) {
        if st.outcome.is_some() {
            return;
        }
        match frame.kind {
            protocol::HELLO => st.hello = true,
            protocol::RESULT => st.outcome = Some(Outcome::Value(frame)),
            protocol::PANIC => {
                st.outcome = Some(match postcard::from_bytes(&frame.body) {
                    Ok(report) => Outcome::Panic(report),
                    Err(e) => Outcome::Corrupt(format!("unreadable panic report: {e}")),
                })
            }
            protocol::ERROR => {
                st.outcome = Some(match postcard::from_bytes(&frame.body) {
                    Ok(report) => Outcome::Failed(report),
                    Err(e) => Outcome::Corrupt(format!("unreadable error report: {e}")),
                })
            }
            other => st.outcome = Some(Outcome::Corrupt(format!("unexpected frame kind {other}"))),
        }
    }

    /// The exit status if the child has ended (reaping it), reading what it
    /// sent; `None` while it runs.
    pub(crate) fn poll(&self) -> Result<Option<ExitStatus>> {
        let mut st = self.lock();
        if st.status.is_some() {
            return Ok(st.status);
        }
        Self::pump(&mut st);
        let reaped = sys::process::try_reap(self.pidfd.as_fd())
            .map_err(|e| Error::io("waitid failed", e))?;
        if let Some(raw) = reaped {
            let status = status_from_raw(raw);
            st.status = Some(status);
            // Everything the child wrote before it exited is in the socket,
            // and so are its log records: they reach the logger first.
            Self::pump(&mut st);
            super::forward::drain();
            st.sock = None;
            log::info!(target: "multiproc", "{} (pid {}) {status}", self.name, self.pid);
        }
        Ok(st.status)
    }

    /// Waits until the child ends or `deadline` passes (`Ok(None)`), reading
    /// what it sends meanwhile so that it never blocks on a full socket.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.poll()? {
                return Ok(Some(status));
            }
            // Once the child has reported, what is left is its exit: the
            // socket's end-of-file would only wake us once more.
            let sock = {
                let st = self.lock();
                st.sock.clone().filter(|_| st.outcome.is_none())
            };
            let mut fds: Vec<BorrowedFd<'_>> = vec![self.pidfd.as_fd()];
            if let Some(sock) = &sock {
                fds.push(sock.as_fd());
            }
            let ready = sys::socket::wait_readable(&fds, deadline)
                .map_err(|e| Error::io("poll failed", e))?;
            if !ready.iter().any(|r| *r) && crate::time::expired(deadline) {
                return self.poll();
            }
        }
    }

    pub(crate) fn signal(&self, signal: i32) -> Result<()> {
        sys::process::send_signal(self.pidfd.as_fd(), signal).map_err(|e| {
            Error::io(
                format!("could not signal {} (pid {})", self.name, self.pid),
                e,
            )
        })
    }

    pub(crate) fn who(&self) -> String {
        format!("process '{}' (pid {})", self.name, self.pid)
    }

    /// The value the child returned, or why there is none. Call after the
    /// child ended.
    pub(crate) fn take_result<R: DeserializeOwned>(&self) -> Result<R> {
        let mut st = self.lock();
        let status = st.status;
        match st.outcome.take() {
            Some(Outcome::Value(frame)) => codec::decode(&frame.body, frame.fds).map_err(|e| {
                Error::new(
                    ErrorKind::Decode,
                    format!("the value {} returned could not be decoded", self.who()),
                )
                .with_source(e)
                .with_status(status)
            }),
            Some(Outcome::Panic(report)) => {
                let at = report
                    .location
                    .as_deref()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                Err(Error::new(
                    ErrorKind::Panicked,
                    format!("{} panicked{at}: {}", self.who(), report.message),
                )
                .with_status(status)
                .with_panic(report))
            }
            Some(Outcome::Failed(report)) => Err(Error::new(
                report.kind(),
                format!("{}: {}", self.who(), report.message),
            )
            .with_status(status)),
            Some(Outcome::Corrupt(why)) => Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "{} sent bytes that do not follow the protocol: {why}",
                    self.who()
                ),
            )
            .with_status(status)),
            None => {
                let hint = if st.hello {
                    String::new()
                } else {
                    " before multiproc took over (is multiproc::init() the first line of main?)"
                        .to_string()
                };
                match status {
                    Some(ExitStatus::Signaled(signal)) => Err(Error::new(
                        ErrorKind::Killed,
                        format!("{} was killed by {signal}{hint}", self.who()),
                    )
                    .with_status(status)),
                    Some(ExitStatus::Exited(code)) => Err(Error::new(
                        ErrorKind::Exited,
                        format!(
                            "{} exited with code {code} without returning a value{hint}",
                            self.who()
                        ),
                    )
                    .with_status(status)),
                    None => Err(Error::new(
                        ErrorKind::StillRunning,
                        format!("{} is still running", self.who()),
                    )),
                }
            }
        }
    }
}
