//! Connections: [`pipe`], [`Listener`] and [`Client`], and [`wait`].
//!
//! A [`Connection`] is one end of a two-way message channel, with two
//! transports behind one API:
//!
//! - **Pipes** ([`pipe`], [`pipe_oneway`]) carry messages through shared
//!   memory: one byte ring per direction (the queues' ring,
//!   `src/shm/ring.rs`), with a Unix socket pair beside them as doorbell,
//!   end-of-file detector, and carrier of descriptors and large messages.
//!   A send copies the message into the ring and makes no system call
//!   unless the receiver sleeps; a receiver with nothing to read spins
//!   ~20 µs, yields ~100 µs, then sets a flag and sleeps in `poll(2)` on
//!   the socket, so a peer that closes or dies wakes it at once. Messages
//!   with descriptors and bodies over 64 MiB go on the socket instead,
//!   numbered in the ring's order. A writer with 8 MiB unread in the ring
//!   waits for the reader (as a socket's buffer makes it). Measured here:
//!   7–10 M small messages/s (43–52× Python, 12–15× a C loop writing a
//!   socketpair), 1 MiB messages at 108–114% of a raw socketpair, round
//!   trips of ~1–2 µs when both processes run; see
//!   `src/connection/README.md`.
//! - **[`Listener`]/[`Client`]** connections are Unix or TCP stream
//!   sockets carrying messages in the framing of Python's
//!   `multiprocessing.connection`, so `send_bytes`/`recv_bytes`
//!   interoperate with a Python peer.
//!
//! With feature `async`, `Connection::recv_async` and
//! `Connection::recv_bytes_async` await a message under any runtime
//! (cancel-safe: a dropped future receives nothing).
//!
//! Typed [`send`](Connection::send)/[`recv`](Connection::recv) carry serde
//! values (postcard), and, except over TCP, any [`Fd`](crate::Fd) inside a
//! value travels as a descriptor.
//!
//! ```
//! # multiproc::init();
//! use multiproc::{connection, Process};
//!
//! fn child(conn: connection::Connection<String>) {
//!     conn.send(&"hello from the child".to_string()).unwrap();
//! }
//!
//! let (parent_end, child_end) = connection::pipe::<String>()?;
//! let p = Process::new(child, child_end).start()?;
//! assert_eq!(parent_end.recv()?, "hello from the child");
//! p.join()?;
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! When the other end is closed, or its process dies, `recv` fails at once
//! with [`ErrorKind::Eof`](crate::ErrorKind::Eof) (after the messages already sent): it never
//! hangs. Keep an end in one process at a time: after passing an end to a
//! child, drop the parent's copy, or the other side will not see
//! end-of-file when the child exits (as in Python). Two processes
//! receiving on the same pipe end at once is not supported.
//!
//! A pipe's `send` into shared memory does not fail at once when the
//! reader is gone: the writer notices when it rings the doorbell, sends on
//! the socket, or at its periodic check (every 256 sends), and then fails
//! with [`ErrorKind::Eof`](crate::ErrorKind::Eof); messages sent in between are lost, as they
//! would be in a socket's buffer.

#[cfg(feature = "async")]
mod aio;
pub(crate) mod auth;
mod conn;
mod handshake;
mod listener;
mod rings;
mod stream;
pub(crate) mod wait;

use crate::error::{Error, Result};
use crate::sys;

pub use self::conn::Connection;
pub use self::listener::{Address, Client, Listener};
pub use self::stream::DEFAULT_MAX_MESSAGE_SIZE;
pub use self::wait::{Waitable, wait};

/// Crash-test support, not part of the API: a pipe's bodies over `bytes`
/// take its socket in this process (0: the default, 64 MiB, again).
/// Exists only with the `test-hooks` feature, which multiproc's own tests
/// enable.
#[doc(hidden)]
#[cfg(feature = "test-hooks")]
pub fn __set_inline_max(bytes: usize) {
    rings::set_inline_max(bytes);
}

use self::rings::Rings;

/// A duplex pipe between two connections (Python's `Pipe()`). Each end can
/// send and receive.
///
/// Messages travel through shared memory (one ring per direction), with a
/// Unix socket pair beside them as doorbell, end-of-file detector and
/// carrier of descriptors and large messages; see the [module docs](self).
///
/// # Errors
///
/// [`ErrorKind::Io`](crate::ErrorKind::Io) if the socket pair or the shared memory cannot be
/// created.
pub fn pipe<T>() -> Result<(Connection<T>, Connection<T>)> {
    let (a, b) =
        sys::socket::stream_pair().map_err(|e| Error::io("could not create a socket pair", e))?;
    let (ra, rb) = Rings::pair(true)?;
    Ok((
        Connection::with_rings(a, true, true, Some(ra)),
        Connection::with_rings(b, true, true, Some(rb)),
    ))
}

/// A one-way pipe (Python's `Pipe(duplex=False)`): returns `(reader,
/// writer)`. Sending on the reader or receiving on the writer is an error.
///
/// # Errors
///
/// [`ErrorKind::Io`](crate::ErrorKind::Io) if the socket pair or the shared memory cannot be
/// created.
pub fn pipe_oneway<T>() -> Result<(Connection<T>, Connection<T>)> {
    let (a, b) =
        sys::socket::stream_pair().map_err(|e| Error::io("could not create a socket pair", e))?;
    let (ra, rb) = Rings::pair(false)?;
    Ok((
        Connection::with_rings(a, true, false, Some(ra)),
        Connection::with_rings(b, false, true, Some(rb)),
    ))
}
