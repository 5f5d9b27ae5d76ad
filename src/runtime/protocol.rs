//! The child's side: receiving what to run, running it, reporting back.
//!
//! Parent and child talk over one Unix stream socket in [`wire`] frames:
//!
//! | frame  | from   | body |
//! |--------|--------|------|
//! | HELLO  | child  | its pid (u32, little-endian): the child is under `multiproc`'s control (not sent under fork: the parent knows the pid) |
//! | BOOT   | parent | [`Boot`]: image identity, which function, who the child is (spawn and forkserver only) |
//! | ARGS   | parent | the encoded arguments, with their descriptors (spawn and forkserver only) |
//!
//! BOOT carries as descriptors, in this order, the standard streams its
//! [`ChildConfig`](super::config::ChildConfig) redirects (as many as it
//! says), then the child's socket to the parent's log collector when the
//! child forwards its log records (see `runtime::forward`).
//! | RESULT | child  | the encoded return value, with its descriptors |
//! | PANIC  | child  | [`PanicReport`]: message and location |
//! | ERROR  | child or fork server | [`ErrorReport`]: the child could not run the function |
//!
//! The exit status does not travel on the socket: every child is a real
//! child of the process that started it, which reaps it through a pidfd.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::sys;
use crate::sys::image::{FnRef, ImageId};
use crate::wire;

pub(crate) const HELLO: u8 = 1;
pub(crate) const RESULT: u8 = 2;
pub(crate) const PANIC: u8 = 3;
pub(crate) const ERROR: u8 = 4;
pub(crate) const BOOT: u8 = 10;
pub(crate) const ARGS: u8 = 11;

/// The largest frame a child accepts from its parent, and the parent from
/// its child: far more than memory, so in practice a corrupt length.
pub(crate) const MAX_FRAME: u64 = 1 << 40;

/// A function the child can be told to run: decodes the arguments, runs
/// the target, sends the result.
pub(crate) type Entry = fn(&ChildIo, Vec<u8>, Vec<OwnedFd>) -> Result<(), Error>;

/// How an [`Entry`] travels to the child.
pub(crate) type EntryRef = FnRef<Entry, crate::sys::image::Entries>;

/// Who the child is, as the parent tells it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ChildInfo {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    /// A daemon that may start children all the same (a nested pool's
    /// worker).
    pub(crate) may_have_children: bool,
    pub(crate) parent_pid: i32,
    pub(crate) parent_name: String,
    pub(crate) log_level: Option<u8>,
    /// The level at which the child forwards its log records to the
    /// parent (`None`: it does not; see `logging`).
    pub(crate) forward_level: Option<u8>,
    pub(crate) authkey: [u8; 32],
    pub(crate) start_method: u8,
}

/// The first frame a spawned or fork-server child receives.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Boot {
    pub(crate) image: ImageId,
    pub(crate) entry: EntryRef,
    pub(crate) info: ChildInfo,
    /// What the child applies before its target runs.
    pub(crate) config: super::config::ChildConfig,
}

/// This program's image identity, which a BOOT (and a fork server's
/// PRELOAD) carries so that the other side can check it runs the same one.
///
/// # Errors
///
/// [`ErrorKind::Io`] when the executable cannot be identified.
pub(crate) fn image_id() -> Result<ImageId, Error> {
    ImageId::current().map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("could not identify this program's executable: {e}"),
        )
    })
}

/// Why a child could not run its function.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorReport {
    pub(crate) kind: u8,
    pub(crate) message: String,
}

impl ErrorReport {
    pub(crate) fn from_error(e: &Error) -> Self {
        Self {
            kind: e.kind().code(),
            message: e.to_string(),
        }
    }

    pub(crate) fn kind(&self) -> ErrorKind {
        ErrorKind::from_code(self.kind).unwrap_or(ErrorKind::Bootstrap)
    }
}

/// The child's end of the socket to its parent.
pub(crate) struct ChildIo {
    sock: OwnedFd,
}

impl ChildIo {
    pub(crate) fn new(sock: OwnedFd) -> Self {
        Self { sock }
    }

    /// The socket.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    pub(crate) fn send(
        &self,
        kind: u8,
        body: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> std::io::Result<()> {
        wire::send(self.sock.as_fd(), kind, body, fds)
    }

    pub(crate) fn hello(&self) {
        let _ = self.send(HELLO, &(sys::process::getpid() as u32).to_le_bytes(), &[]);
    }

    pub(crate) fn send_value<T: Serialize>(&self, kind: u8, value: &T) {
        if let Ok(bytes) = postcard::to_allocvec(value) {
            let _ = self.send(kind, &bytes, &[]);
        }
    }

    pub(crate) fn send_error(&self, e: &Error) {
        self.send_value(ERROR, &ErrorReport::from_error(e));
    }
}
