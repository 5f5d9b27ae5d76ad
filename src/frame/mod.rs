//! The framing layer: how a stream of bytes from another process is cut
//! into messages, for every wire format of the crate.
//!
//! - [`buffer`]: the one receive buffer ([`RecvBuf`]), which holds what
//!   was read from a socket and not yet handed out, with the one
//!   grow/compact policy (growth follows the bytes that arrive, never a
//!   header's promise) and the size check every header goes through.
//! - One header codec per format, each a [`Format`]:
//!   - [`control`]: the control wire between a parent and its children and
//!     the fork server (16-byte header, descriptors; `crate::wire`);
//!   - [`python`]: Python's `multiprocessing.connection` framing, used by
//!     [`Listener`](crate::connection::Listener)/[`Client`](crate::connection::Client)
//!     connections and by the manager;
//!   - [`pipe`]: what a pipe's socket carries beside its rings (doorbell
//!     bytes and frames numbered in the rings' order);
//!   - [`pool`]: a pool and its workers (5-byte header; the bodies are
//!     `crate::pool::frame`'s).
//!
//! A new format is one more [`Format`]: a `decode` that reads a header
//! from a slice, nothing else.
//!
//! Every decoder here is reached from `crate::fuzzing::decode_everything`.

pub(crate) mod buffer;
pub(crate) mod control;
pub(crate) mod pipe;
pub(crate) mod pool;
pub(crate) mod python;

pub(crate) use self::buffer::{Fill, Format, FrameError, RecvBuf};
