//! [`Connection::recv_async`] and [`Connection::recv_bytes_async`]
//! (feature `async`).
//!
//! Each try receives without waiting on the awaiting task
//! (`recv_message_nowait`: what arrived of a message stays in the
//! connection, never in the future); only the wait for the socket to
//! become readable runs on a pool thread, 50 ms at a time, on a duplicate
//! of the socket's descriptor.
//!
//! Readiness is not just `poll`: a pipe's messages travel through its
//! ring, and its socket rings only while the reader says it sleeps. The
//! failed try is what says so (it drains stale doorbells, then sets the
//! reader's *sleeps* flag, as [`wait`](super::wait) does), so a message
//! put after it makes the socket readable; a stale doorbell only costs
//! one more try. A pipe's large message (over 64 MiB, on the socket) is
//! read as it arrives across tries, its ring record kept in the
//! connection: a receive never blocks the task mid-message, and a future
//! dropped between tries leaves the message for the next receive.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conn::Connection;
use crate::aio::wait_slice;
use crate::error::{Error, Result};
use crate::sys;

/// Waits up to one slice on a pool thread for `fd` to become readable
/// (or hang up). Spurious returns are fine: the caller tries again.
async fn readable(fd: &Arc<OwnedFd>) -> Result<()> {
    let fd = Arc::clone(fd);
    wait_slice(move |deadline| sys::socket::wait_readable(&[fd.as_fd()], Some(deadline)))
        .await
        .map(drop)
        .map_err(|e| Error::io("poll failed", e))
}

impl<T> Connection<T> {
    /// Receives one message as bytes, awaiting one while none is there:
    /// the `async` form of [`recv_bytes`](Connection::recv_bytes), for any
    /// runtime (feature `async`).
    ///
    /// The message is received on the awaiting task, when the future is
    /// polled, and only once it can be without waiting; the wait for the
    /// connection's socket to become readable runs on a pool thread of the
    /// [`blocking`](https://docs.rs/blocking) crate, 50 ms at a time.
    ///
    /// **Cancel-safe**: a future dropped before it returned received
    /// nothing; the next receive (of any form) gets the message. What had
    /// arrived of a message (a large one comes in pieces) is kept in the
    /// connection, not in the future. Its pool thread is free again within
    /// 50 ms; until then it holds a duplicate of the socket, so a
    /// connection closed meanwhile shows end of file to its peer up to
    /// 50 ms late. Put a time limit on it with the runtime's own timeout
    /// (`tokio::time::timeout`, `smol::future::or` with a timer). Do not
    /// receive on the same end from two places at once (as for `recv`).
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes):
    /// [`ErrorKind::Eof`](crate::ErrorKind::Eof) once the other end closed
    /// (or its process died) and everything it sent was received;
    /// [`ErrorKind::MessageTooLarge`](crate::ErrorKind::MessageTooLarge)
    /// for a message over the connection's limit;
    /// [`ErrorKind::Protocol`](crate::ErrorKind::Protocol) for a corrupt
    /// stream; [`ErrorKind::Io`](crate::ErrorKind::Io) for other failures,
    /// or when this end cannot receive.
    pub async fn recv_bytes_async(&self) -> Result<Vec<u8>> {
        let mut fd = None;
        loop {
            if let Some((body, _fds)) = self.recv_message_nowait(usize::MAX, false)? {
                return Ok(body);
            }
            let fd = match &fd {
                Some(fd) => fd,
                None => fd.insert(Arc::new(self.wait_handle()?)),
            };
            readable(fd).await?;
        }
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Receives a value, awaiting one while none is there: the `async`
    /// form of [`recv`](Connection::recv), for any runtime (feature
    /// `async`).
    ///
    /// As [`recv_bytes_async`](Connection::recv_bytes_async), the message
    /// is received and decoded on the awaiting task once it can be without
    /// waiting; only the wait for readiness runs on a pool thread, 50 ms
    /// at a time.
    ///
    /// **Cancel-safe**: a future dropped before it returned received
    /// nothing (what had arrived of a message is kept in the connection):
    /// the next receive gets the message. See
    /// [`recv_bytes_async`](Connection::recv_bytes_async).
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv):
    /// [`ErrorKind::Eof`](crate::ErrorKind::Eof) when the other end is
    /// closed and everything was received;
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) if the bytes are not
    /// a `T` (the message is consumed; the connection stays usable);
    /// [`ErrorKind::MessageTooLarge`](crate::ErrorKind::MessageTooLarge),
    /// [`ErrorKind::Protocol`](crate::ErrorKind::Protocol) or
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) otherwise.
    pub async fn recv_async(&self) -> Result<T> {
        let mut fd = None;
        loop {
            if let Some(value) = self.recv_nowait()? {
                return Ok(value);
            }
            let fd = match &fd {
                Some(fd) => fd,
                None => fd.insert(Arc::new(self.wait_handle()?)),
            };
            readable(fd).await?;
        }
    }
}
