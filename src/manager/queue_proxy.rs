//! Proxies for the manager's queues (Python's `manager.Queue()` and
//! `manager.JoinableQueue()`), which live in the server process (see
//! `blocking.rs`).
//!
//! They follow the crate's outcome rules exactly as the local queues do,
//! with the same errors: every put and get comes in four forms (blocking,
//! `try_`, `_timeout`, `_deadline`) with one `Ok`; a failed put hands the
//! value back in a [`PutError`]; a get that finds nothing is a
//! [`GetError::Empty`] or [`GetError::Timeout`]. What only a managed queue
//! can fail with is a [`PutError::Failed`] or [`GetError::Failed`] whose
//! kind is [`ErrorKind::Eof`] (the manager is gone) or
//! [`ErrorKind::Remote`] (it refused, shutting down included).
//!
//! A wait happens in the server, on the calling thread's own connection,
//! so other threads of the process go on.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::link::{Link, unexpected};
use super::protocol::{Op, Reply};
use super::proxy::{Handle, Wait, dec, enc};
use crate::error::{Error, ErrorKind, Result};
use crate::queue::{GetError, PutError};

/// A FIFO queue in the manager (Python's `manager.Queue(maxsize)`).
///
/// Cheap to clone, passable to children under every start method, usable
/// from several threads. Puts and gets follow the same rules and return
/// the same errors as a local [`Queue`](crate::Queue)
/// ([`PutError`](crate::queue::PutError),
/// [`GetError`](crate::queue::GetError)).
pub struct QueueProxy<T> {
    handle: Handle,
    maxsize: u64,
    _types: PhantomData<fn(T) -> T>,
}

impl<T> Clone for QueueProxy<T> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
            maxsize: self.maxsize,
            _types: PhantomData,
        }
    }
}

impl<T> fmt::Debug for QueueProxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueProxy")
            .field("manager", &self.handle.link.address)
            .field("id", &self.handle.id)
            .field("maxsize", &self.maxsize)
            .finish()
    }
}

impl<T> Serialize for QueueProxy<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.handle, self.maxsize).serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for QueueProxy<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (handle, maxsize) = <(Handle, u64)>::deserialize(d)?;
        Ok(Self {
            handle,
            maxsize,
            _types: PhantomData,
        })
    }
}

impl<T> QueueProxy<T> {
    pub(crate) fn new(link: Link, id: u64, maxsize: u64) -> Self {
        Self {
            handle: Handle { link, id },
            maxsize,
            _types: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    fn put_with(&self, value: T, wait: Wait) -> std::result::Result<(), PutError<T>> {
        let item = match enc(&value) {
            Ok(b) => b,
            Err(e) => return Err(PutError::Failed(value, e)),
        };
        let reply = self.handle.op(Op::Put {
            item,
            timeout: wait.for_server(),
        });
        match (reply, wait) {
            (Ok(Reply::Bool(true)), _) => Ok(()),
            (Ok(Reply::Bool(false)), Wait::No) => Err(PutError::Full(value)),
            (Ok(Reply::Bool(false)), Wait::Until(Some(_))) => Err(PutError::Timeout(value)),
            (Ok(other), _) => Err(PutError::Failed(value, unexpected(&other))),
            (Err(e), _) => Err(PutError::Failed(value, e)),
        }
    }

    /// Puts a value, waiting while the queue is full (Python's `put`).
    ///
    /// # Errors
    ///
    /// [`PutError::Failed`] with the value and an error of kind
    /// [`ErrorKind::Encode`] if it cannot be encoded, [`ErrorKind::Eof`] if
    /// the manager is gone, [`ErrorKind::Remote`] if it refused (shutting
    /// down included).
    pub fn put(&self, value: T) -> std::result::Result<(), PutError<T>> {
        self.put_with(value, Wait::Until(None))
    }

    /// Puts a value if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), and [`PutError::Full`] with the value if the
    /// queue is full.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> std::result::Result<(), PutError<T>> {
        self.put_with(value, Wait::No)
    }

    /// Puts a value, waiting at most `timeout` for room (Python's
    /// `put(v, timeout=t)`). `Duration::MAX` waits as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), and [`PutError::Timeout`] with the value if
    /// the queue stayed full.
    pub fn put_timeout(&self, value: T, timeout: Duration) -> std::result::Result<(), PutError<T>> {
        self.put_with(value, Wait::timeout(timeout))
    }

    /// Puts a value, waiting until `deadline` at most for room.
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Self::put_timeout).
    pub fn put_deadline(
        &self,
        value: T,
        deadline: Instant,
    ) -> std::result::Result<(), PutError<T>> {
        self.put_with(value, Wait::Until(Some(deadline)))
    }

    fn get_with(&self, wait: Wait) -> std::result::Result<T, GetError> {
        let reply = self.handle.op(Op::Take {
            timeout: wait.for_server(),
        });
        match (reply, wait) {
            (Ok(Reply::Value(Some(b))), _) => dec(&b).map_err(GetError::Failed),
            (Ok(Reply::Value(None)), Wait::No) => Err(GetError::Empty),
            (Ok(Reply::Value(None)), Wait::Until(Some(_))) => Err(GetError::Timeout),
            (Ok(other), _) => Err(GetError::Failed(unexpected(&other))),
            (Err(e), _) => Err(GetError::Failed(e)),
        }
    }

    /// Takes the oldest value, waiting while the queue is empty (Python's
    /// `get`).
    ///
    /// # Errors
    ///
    /// [`GetError::Failed`] with an error of kind [`ErrorKind::Decode`] if
    /// the value is not a `T` (it is gone; the queue goes on),
    /// [`ErrorKind::Eof`] if the manager is gone, [`ErrorKind::Remote`] if
    /// it refused (shutting down included).
    pub fn get(&self) -> std::result::Result<T, GetError> {
        self.get_with(Wait::Until(None))
    }

    /// Takes the oldest value if there is one (Python's `get_nowait`).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`GetError::Empty`] if the queue is
    /// empty (Python's `queue.Empty`).
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> std::result::Result<T, GetError> {
        self.get_with(Wait::No)
    }

    /// Takes the oldest value, waiting at most `timeout` (Python's
    /// `get(timeout=t)`). `Duration::MAX` waits as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`GetError::Timeout`] if the queue
    /// stayed empty.
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetError> {
        self.get_with(Wait::timeout(timeout))
    }

    /// Takes the oldest value, waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](Self::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> std::result::Result<T, GetError> {
        self.get_with(Wait::Until(Some(deadline)))
    }

    /// How many values wait in the queue (Python's `qsize`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn qsize(&self) -> Result<usize> {
        match self.handle.op(Op::Len)? {
            Reply::Len(n) => Ok(n as usize),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether the queue is empty now (Python's `empty`).
    ///
    /// # Errors
    ///
    /// As [`qsize`](Self::qsize).
    pub fn empty(&self) -> Result<bool> {
        self.qsize().map(|n| n == 0)
    }

    /// Whether the queue is full now (Python's `full`); never for an
    /// unbounded queue.
    ///
    /// # Errors
    ///
    /// As [`qsize`](Self::qsize).
    pub fn full(&self) -> Result<bool> {
        if self.maxsize == 0 {
            return Ok(false);
        }
        self.qsize().map(|n| n as u64 >= self.maxsize)
    }

    /// The values as they come, waiting for each; ends at the first get
    /// that fails (the manager goes away, a value is not a `T`). Use
    /// [`get`](Self::get) to see such errors.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.get().ok())
    }
}

/// A queue whose consumers say when each value is handled, so that a
/// producer can wait until all are (Python's `manager.JoinableQueue()`).
/// It derefs to a [`QueueProxy`] for `put` and `get`.
///
/// Beyond Python: a consumer thread or process that ends (killed,
/// panicked) between `get` and `task_done` does not leave `join` waiting
/// forever — the values it took and did not finish go back to the front of
/// the queue for another consumer. `task_done` finishes the oldest value
/// the calling thread took. (So a value may be handled twice if a consumer
/// dies after handling it and before `task_done`: at least once, never
/// lost.)
pub struct JoinableQueueProxy<T> {
    queue: QueueProxy<T>,
}

impl<T> Clone for JoinableQueueProxy<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueueProxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueueProxy")
            .field(&self.queue)
            .finish()
    }
}

impl<T> Serialize for JoinableQueueProxy<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueueProxy<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Self {
            queue: QueueProxy::deserialize(d)?,
        })
    }
}

impl<T> Deref for JoinableQueueProxy<T> {
    type Target = QueueProxy<T>;
    fn deref(&self) -> &QueueProxy<T> {
        &self.queue
    }
}

impl<T> JoinableQueueProxy<T> {
    pub(crate) fn new(link: Link, id: u64, maxsize: u64) -> Self {
        Self {
            queue: QueueProxy::new(link, id, maxsize),
        }
    }

    /// Says one value taken with `get` is handled (Python's `task_done`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotAcquired`] if called more often than values were put;
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn task_done(&self) -> Result<()> {
        match self.queue.handle.op(Op::TaskDone)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn join_with(&self, deadline: Option<Instant>) -> Result<()> {
        let timeout = crate::time::remaining(deadline);
        match self.queue.handle.op(Op::JoinTasks { timeout })? {
            Reply::Bool(true) => Ok(()),
            Reply::Bool(false) if timeout.is_some() => Err(Error::new(
                ErrorKind::Timeout,
                "values put on the manager's joinable queue were still unfinished at the deadline",
            )),
            other => Err(unexpected(&other)),
        }
    }

    /// Waits until every value put has been handled (Python's `join`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Remote`] if
    /// it refused (shutting down included).
    pub fn join(&self) -> Result<()> {
        self.join_with(None)
    }

    /// Like [`join`](Self::join), waiting at most `timeout` (Python's
    /// `join()` has no timeout; this is the crate's `_timeout` form).
    /// `Duration::MAX` waits as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join), and [`ErrorKind::Timeout`] if values were
    /// still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_with(crate::time::deadline_after(timeout))
    }

    /// Like [`join`](Self::join), waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](Self::join_timeout).
    pub fn join_deadline(&self, deadline: Instant) -> Result<()> {
        self.join_with(Some(deadline))
    }
}
