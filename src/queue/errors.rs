//! The per-operation errors of the queues, local ([`Queue`](super::Queue)
//! and its kin) and managed ([`QueueProxy`](crate::manager::QueueProxy)):
//! a failed put hands the value back (crossbeam style); both convert into
//! [`crate::Error`] with `?`, keeping their [`ErrorKind`].

use std::fmt;

use crate::error::{Error, ErrorKind};

/// Why a put did not happen, for local and managed queues alike. Every
/// variant hands the value back; [`PutError::into_inner`] takes it
/// whatever the variant.
pub enum PutError<T> {
    /// The queue holds `maxsize` messages (from `try_put`; Python's
    /// `queue.Full`). Kind [`ErrorKind::Full`].
    Full(T),
    /// The queue stayed full, or its lock held, until the timeout or
    /// deadline (from `put_timeout`, `put_deadline`). Kind
    /// [`ErrorKind::Timeout`].
    Timeout(T),
    /// This handle was [closed](super::Queue::close) or the queue
    /// [shut down](super::Queue::shutdown) (local queues only). Kind
    /// [`ErrorKind::Closed`].
    Closed(T),
    /// Anything else; the error's kind says what:
    /// [`ErrorKind::Encode`] if the value could not be encoded (or holds
    /// descriptors, which a queue does not carry);
    /// [`ErrorKind::MessageTooLarge`] if it is larger than a queue holds;
    /// [`ErrorKind::Decode`] if a local queue's memory is damaged; for a
    /// managed queue, [`ErrorKind::Eof`] if the
    /// manager is gone and [`ErrorKind::Remote`] if it refused (shutting
    /// down included).
    Failed(T, Error),
}

impl<T> PutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v) | PutError::Timeout(v) | PutError::Closed(v) => v,
            PutError::Failed(v, _) => v,
        }
    }

    /// The [`ErrorKind`] this converts to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PutError::Full(_) => ErrorKind::Full,
            PutError::Timeout(_) => ErrorKind::Timeout,
            PutError::Closed(_) => ErrorKind::Closed,
            PutError::Failed(_, e) => e.kind(),
        }
    }

    /// Whether the queue was full (`Full`).
    pub fn is_full(&self) -> bool {
        matches!(self, PutError::Full(_))
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Failed(_, e) => write!(f, "Failed(.., {e:?})"),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("the queue is full"),
            PutError::Timeout(_) => f.write_str("timed out putting on a full queue"),
            PutError::Closed(_) => f.write_str("the queue is closed for puts"),
            PutError::Failed(_, e) => write!(f, "{e}"),
        }
    }
}

impl<T> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PutError::Failed(_, e) => Some(e),
            _ => None,
        }
    }
}

impl<T> From<PutError<T>> for Error {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Failed(_, e) => e,
            other => Error::new(other.kind(), other.to_string()),
        }
    }
}

/// Why a get returned no value, for local and managed queues alike.
#[derive(Debug)]
pub enum GetError {
    /// The queue is empty (from `try_get`; Python's `queue.Empty`). Kind
    /// [`ErrorKind::Empty`].
    Empty,
    /// The queue stayed empty until the timeout or deadline (from
    /// `get_timeout`, `get_deadline`). Kind [`ErrorKind::Timeout`].
    Timeout,
    /// The queue was [shut down](super::Queue::shutdown) and every message
    /// in it has been taken (local queues only). Kind
    /// [`ErrorKind::Closed`].
    Closed,
    /// Anything else; the error's kind says what: [`ErrorKind::Decode`]
    /// if a message was taken but could not be decoded into the queue's
    /// type (another type was put, or the bytes are corrupt; that message
    /// is gone and the queue still works); for a managed queue,
    /// [`ErrorKind::Eof`] if the manager is gone and [`ErrorKind::Remote`]
    /// if it refused (shutting down included).
    Failed(Error),
}

impl GetError {
    /// The [`ErrorKind`] this converts to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GetError::Empty => ErrorKind::Empty,
            GetError::Timeout => ErrorKind::Timeout,
            GetError::Closed => ErrorKind::Closed,
            GetError::Failed(e) => e.kind(),
        }
    }

    /// Whether the queue was empty (`Empty` or `Timeout`).
    pub fn is_empty(&self) -> bool {
        matches!(self, GetError::Empty | GetError::Timeout)
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("the queue is empty"),
            GetError::Timeout => f.write_str("timed out getting from an empty queue"),
            GetError::Closed => f.write_str("the queue is shut down and empty"),
            GetError::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for GetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<GetError> for Error {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Failed(e) => e,
            other => Error::new(other.kind(), other.to_string()),
        }
    }
}
