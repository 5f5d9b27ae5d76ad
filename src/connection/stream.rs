//! What a connection has read from its socket and not yet handed out:
//! the receive state of both transports.
//!
//! A [`Listener`](super::Listener)/[`Client`](super::Client) connection
//! reads through the crate's one receive buffer (`frames`, a
//! [`RecvBuf`] of Python's framing), which grows with the bytes that
//! arrive, never with what a header announces, and refuses a message over
//! the connection's limit (`max`) from its header. A pipe's ring transport
//! reads its socket's bytes (doorbells, and frames for messages over 64 MiB or
//! with descriptors) through a second buffer of the same kind (`pipe`).

use std::os::fd::OwnedFd;

use crate::error::{Error, ErrorKind};
use crate::frame::RecvBuf;
use crate::frame::pipe::PipeSocket;
use crate::frame::python::Python;

pub(crate) struct ReadState {
    /// Socket transport: what was read and not handed out.
    pub(crate) frames: RecvBuf<Python>,
    /// The longest message this end accepts (both transports).
    pub(crate) max: usize,
    /// Ring transport: what was read from the socket and not handed out
    /// (doorbells and frames of messages over 64 MiB or with descriptors).
    pub(crate) pipe: RecvBuf<PipeSocket>,
    /// Ring transport: the socket hung up.
    pub(crate) eof: bool,
    /// Why the stream cannot be read any more (a header that could not be
    /// honoured: it cannot be resynchronised), and the kind every later
    /// receive fails with.
    pub(crate) broken: Option<(ErrorKind, String)>,
    /// Ring transport: where small messages are copied out of the ring.
    pub(crate) scratch: Vec<u8>,
    /// The size of the last message in `scratch` (`codec::trim_buffer`
    /// gives a large one's memory back after a small one).
    pub(crate) scratch_used: usize,
    /// Ring transport: a message taken out of the ring that the caller
    /// could not take (too large for its buffer); the next receive gets it.
    pub(crate) pending: Option<(Vec<u8>, Vec<OwnedFd>)>,
    /// Ring transport: a socket record taken from the ring, `(seq, len)`,
    /// whose frame has not all arrived (an async receive does not wait
    /// for it); the next receive finishes it.
    pub(crate) due: Option<(u64, u64)>,
}

impl ReadState {
    pub(crate) fn new() -> Self {
        Self {
            frames: RecvBuf::new(DEFAULT_MAX_MESSAGE_SIZE),
            max: DEFAULT_MAX_MESSAGE_SIZE,
            pipe: RecvBuf::new(DEFAULT_MAX_MESSAGE_SIZE),
            eof: false,
            broken: None,
            scratch: Vec::new(),
            scratch_used: 0,
            pending: None,
            due: None,
        }
    }

    /// The error of a broken stream, if it is.
    pub(crate) fn broken_error(&self) -> Option<Error> {
        self.broken
            .as_ref()
            .map(|(kind, why)| Error::new(*kind, why.clone()))
    }

    /// Marks the stream broken for good and returns the error.
    pub(crate) fn break_with(&mut self, kind: ErrorKind, why: impl Into<String>) -> Error {
        let why = format!("{}; the connection cannot be used any more", why.into());
        self.broken = Some((kind, why.clone()));
        Error::new(kind, why)
    }
}

/// The longest message a [`Connection`](super::Connection) accepts unless
/// told otherwise ([`Connection::set_max_message_size`](super::Connection::set_max_message_size),
/// [`Listener::set_max_message_size`](super::Listener::set_max_message_size)):
/// 2 GiB − 1 byte (`2^31 − 1`), the longest message Python's 4-byte header
/// can announce, and the longest any Python before 3.8 sends or accepts.
/// Longer messages need the 12-byte header; a peer that announces one gets
/// [`ErrorKind::MessageTooLarge`] unless the receiver raised its limit.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 0x7fff_ffff;

pub(crate) fn eof_error() -> Error {
    Error::new(
        ErrorKind::Eof,
        "the other end of the connection is closed (or its process died)",
    )
}
