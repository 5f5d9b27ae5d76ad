//! What a connection has read from its socket and not yet handed out:
//! the receive state both transports share.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use crate::error::{Error, ErrorKind};

/// How many bytes one read asks for when no large body is pending.
pub(crate) const CHUNK: usize = 64 * 1024;

pub(crate) struct ReadState {
    /// Storage for received bytes, zeroed once when it grows and reused
    /// (so a read never pays for clearing memory): `buf[start..end]` holds
    /// what was received and not yet consumed.
    pub(crate) buf: Vec<u8>,
    /// How much of `buf` has been consumed.
    pub(crate) start: usize,
    /// How much of `buf` has been filled.
    pub(crate) end: usize,
    pub(crate) fds: VecDeque<OwnedFd>,
    pub(crate) eof: bool,
    /// A header that could not be honoured; the stream cannot be resynchronised.
    pub(crate) broken: Option<String>,
    /// Ring transport: where small messages are copied out of the ring.
    pub(crate) scratch: Vec<u8>,
    /// Ring transport: a message taken out of the ring that the caller
    /// could not take (too large for its buffer); the next receive gets it.
    pub(crate) pending: Option<(Vec<u8>, Vec<OwnedFd>)>,
}

impl ReadState {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            end: 0,
            fds: VecDeque::new(),
            eof: false,
            broken: None,
            scratch: Vec::new(),
            pending: None,
        }
    }
}

pub(crate) fn eof_error() -> Error {
    Error::new(
        ErrorKind::Eof,
        "the other end of the connection is closed (or its process died)",
    )
}
