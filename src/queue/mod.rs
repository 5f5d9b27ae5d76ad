//! Queues between processes: [`Queue`], [`SimpleQueue`] and
//! [`JoinableQueue`], as in Python's `multiprocessing`.
//!
//! Any number of processes put and get; a handle is cloned, passed to
//! children in their arguments (under every start method) or inherited
//! under fork.
//!
//! ```
//! # multiproc::init();
//! use multiproc::Process;
//! use multiproc::queue::Queue;
//!
//! fn write_all(q: Queue<String>) {
//!     for word in ["A", "B", "C"] {
//!         q.put(word.to_string()).unwrap();
//!     }
//! }
//!
//! let q: Queue<String> = Queue::new()?;
//! let writer = Process::new(write_all, q.clone()).start()?;
//! writer.join()?; // the writer exits at once: its messages are in the queue
//! assert_eq!(q.get()?, "A");
//! assert_eq!(q.get()?, "B");
//! assert_eq!(q.get()?, "C");
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # How it works
//!
//! A queue is a ring of bytes in shared memory (an anonymous memfd
//! segment), not Python's pipe + lock + feeder thread: a put encodes the
//! value (serde + postcard) and copies it into the ring under the
//! producers' lock; a get copies it out under the consumers' lock. Nobody
//! makes a system call unless someone sleeps. Producers and consumers never
//! share a lock, so one of each run in parallel. See `src/queue/README.md`
//! for the design and measurements, and `src/shm/ring.rs` for the
//! algorithm and the shared-memory layout.
//!
//! What Python users get that Python does not give them:
//!
//! - **No feeder thread**: a put is in the queue when it returns, so a
//!   process with data still in a queue exits at once, and joining it
//!   never hangs (Python's pain point 5).
//! - **Crashes do not corrupt it**: a producer killed in the middle of a
//!   put published nothing; a consumer killed in the middle of a get took
//!   nothing (the next consumer gets that message). A lock held by a dead
//!   process is taken over within a few tens of milliseconds. Both hold
//!   whatever the moment of death: the tests kill children at each one.
//! - **Unbounded means unbounded**: a full ring grows instead of blocking
//!   the put, up to 16 GiB of messages (memory is only used as the ring
//!   fills). `maxsize` counts messages, as in Python.
//! - **A way out for consumers**: [`Queue::shutdown`] (Python 3.13's
//!   `queue.Queue.shutdown`) makes every put fail and every get fail once
//!   the queue is drained, so blocked consumers wake up.
//! - A value of the wrong type is a [`GetError::Failed`] with
//!   [`ErrorKind::Decode`], never a panic.
//!
//! Values that hold descriptors ([`Fd`](crate::Fd), a `Connection`, another
//! queue) cannot travel through a queue: shared memory does not carry
//! descriptors, and such a put fails with
//! [`ErrorKind::Encode`]. Send them in a child's
//! arguments or through a [`Pipe`](crate::connection::pipe).

#[cfg(feature = "async")]
mod aio;
mod errors;
mod wait;

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use errors::{GetError, PutError};

use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::region::Region;
use crate::shm::ring::{Fail, Ring, Wait};

thread_local! {
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the thread's buffer in `cell`; `f` gives its result and
/// the size of the message it handled ([`codec::NO_MESSAGE`]: none).
fn with_buffer<R>(
    cell: &'static std::thread::LocalKey<RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> (R, usize),
) -> R {
    cell.with(|c| match c.try_borrow_mut() {
        Ok(mut buf) => {
            let (r, used) = f(&mut buf);
            codec::trim_buffer(&mut buf, used);
            r
        }
        // Re-entered (a value's Serialize putting on a queue): a fresh one.
        Err(_) => f(&mut Vec::new()).0,
    })
}

/// A multi-producer, multi-consumer queue between processes (Python's
/// `multiprocessing.Queue`). `T` is the message type; any serde type.
///
/// Unbounded by default ([`new`](Queue::new)); [`with_maxsize`](Queue::with_maxsize)
/// bounds the number of messages. Every blocking put and get has a `try_`,
/// a `_timeout` and a `_deadline` form with the same `Ok`, and failed puts
/// hand the value back. See the [module
/// docs](self).
pub struct Queue<T> {
    ring: Ring,
    /// Shared by the clones in this process: [`Queue::close`].
    closed: Arc<AtomicBool>,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self {
            ring: self.ring.clone(),
            closed: self.closed.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.ring.len())
            .field("maxsize", &self.ring.maxsize())
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .field("shut_down", &self.ring.is_shut_down())
            .finish()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.ring.region().serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let region = Region::deserialize(deserializer)?;
        let ring = Ring::from_region(region).map_err(crate::codec::refuse::<D::Error>)?;
        Ok(Self::from_ring(ring))
    }
}

impl<T> Queue<T> {
    fn from_ring(ring: Ring) -> Self {
        Self {
            ring,
            closed: Arc::new(AtomicBool::new(false)),
            _type: PhantomData,
        }
    }

    /// How many messages are in the queue (Python's `qsize`). Exact when
    /// nobody is putting or getting; a snapshot otherwise.
    pub fn qsize(&self) -> usize {
        self.ring.len() as usize
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Whether the queue holds `maxsize` messages now (never, unbounded).
    pub fn full(&self) -> bool {
        self.ring.is_full()
    }

    /// The bound given to [`with_maxsize`](Queue::with_maxsize), `None` if
    /// unbounded.
    pub fn maxsize(&self) -> Option<usize> {
        match self.ring.maxsize() {
            0 => None,
            n => Some(n as usize),
        }
    }

    /// Says that this process will put no more through this handle and its
    /// clones (Python's `close`): later puts through them fail with
    /// [`PutError::Closed`]. Gets still work, and other processes' handles
    /// are unaffected. There is no feeder thread to flush, so nothing else
    /// happens; Python's `join_thread` and `cancel_join_thread` have
    /// nothing to do and do not exist here.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Whether [`close`](Queue::close) was called on this handle or a clone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Shuts the queue down for every process (Python 3.13's
    /// `queue.Queue.shutdown()`): from now on every put fails with
    /// [`PutError::Closed`], and gets take what is left and then fail with
    /// [`GetError::Closed`], which wakes consumers blocked in `get`. It
    /// cannot be undone.
    pub fn shutdown(&self) {
        self.ring.shut_down();
    }

    /// Whether the queue was [shut down](Queue::shutdown).
    pub fn is_shut_down(&self) -> bool {
        self.ring.is_shut_down()
    }

    fn fail_put(value: T, fail: Fail) -> PutError<T> {
        match fail {
            Fail::WouldBlock => PutError::Full(value),
            Fail::Timeout => PutError::Timeout(value),
            Fail::Closed => PutError::Closed(value),
            Fail::Error(e) => PutError::Failed(value, e),
        }
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared-memory segment cannot be created.
    pub fn new() -> Result<Self> {
        Ok(Self::from_ring(Ring::new(0)?))
    }

    /// A queue that holds at most `maxsize` messages: puts block (or fail,
    /// in their `try_` form) while it is full. `0` means unbounded, as in
    /// Python.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared-memory segment cannot be created.
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        Ok(Self::from_ring(Ring::new(maxsize as u64)?))
    }

    fn put_with(&self, value: T, wait: Wait) -> Result<(), PutError<T>> {
        if self.is_closed() {
            return Err(PutError::Closed(value));
        }
        let result = with_buffer(&ENCODE_BUF, |buf| {
            buf.clear();
            let r = codec::append_plain(&value, buf, codec::NoFds::Queue)
                .map(|()| self.ring.put(buf, wait));
            (r, buf.len())
        });
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(fail)) => Err(Self::fail_put(value, fail)),
            Err(e) => Err(PutError::Failed(value, e)),
        }
    }

    /// Puts `value`, waiting while a bounded queue is full. An unbounded
    /// queue never waits (beyond another process's put in progress).
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] if this handle was closed or the queue shut
    /// down; [`PutError::Failed`] if the value cannot be encoded, holds
    /// descriptors, or is larger than 8 GiB. The value is handed back.
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_with(value, Wait::Until(None))
    }

    /// Like [`put`](Queue::put), waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put), and [`PutError::Timeout`] if the queue
    /// stayed full.
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_with(value, Wait::timeout(timeout))
    }

    /// Like [`put`](Queue::put), waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Queue::put_timeout).
    pub fn put_deadline(&self, value: T, deadline: Instant) -> Result<(), PutError<T>> {
        self.put_with(value, Wait::Until(Some(deadline)))
    }

    /// Puts `value` if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// As [`put`](Queue::put), and [`PutError::Full`] if the queue is full.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> Result<(), PutError<T>> {
        self.put_with(value, Wait::No)
    }

    fn get_with(&self, wait: Wait) -> Result<T, GetError> {
        with_buffer(&DECODE_BUF, |buf| match self.ring.get(buf, wait) {
            Ok(n) => (
                codec::decode_plain::<T>(&buf[..n]).map_err(GetError::Failed),
                n,
            ),
            Err(fail) => (
                Err(match fail {
                    Fail::WouldBlock => GetError::Empty,
                    Fail::Timeout => GetError::Timeout,
                    Fail::Closed => GetError::Closed,
                    Fail::Error(e) => GetError::Failed(e),
                }),
                codec::NO_MESSAGE, // nothing taken: the buffer stays as it is
            ),
        })
    }

    /// Takes the oldest message, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the queue is shut down and empty;
    /// [`GetError::Failed`] if the message does not decode into a `T`
    /// (that message is dropped; the next get takes the next one).
    pub fn get(&self) -> Result<T, GetError> {
        self.get_with(Wait::Until(None))
    }

    /// Like [`get`](Queue::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get), and [`GetError::Timeout`] if the queue
    /// stayed empty.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_with(Wait::timeout(timeout))
    }

    /// Like [`get`](Queue::get), waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](Queue::get_timeout).
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetError> {
        self.get_with(Wait::Until(Some(deadline)))
    }

    /// Takes the oldest message if there is one (Python's `get_nowait`).
    ///
    /// # Errors
    ///
    /// As [`get`](Queue::get), and [`GetError::Empty`] if the queue is
    /// empty.
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, GetError> {
        self.get_with(Wait::No)
    }

    /// Crash-test support, not part of the API: puts `value` (or, if
    /// `None`, gets) and, at `stage` (`put-record`, `put-grow`,
    /// `put-published`, `get-record`, `get-retired`), calls `notify` and
    /// stops forever, holding the queue's lock, so that a test can SIGKILL
    /// the process at exactly that moment. Returns if the stage is never
    /// reached. Exists only with the `test-hooks` feature, which
    /// multiproc's own tests enable.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub fn __stall(&self, value: Option<T>, stage: &str, notify: impl Fn()) -> Result<Option<T>> {
        let stage = match stage {
            "put-record" => crate::shm::ring::Stage::PutRecord,
            "put-grow" => crate::shm::ring::Stage::PutGrow,
            "put-published" => crate::shm::ring::Stage::PutPublished,
            "get-record" => crate::shm::ring::Stage::GetRecord,
            "get-retired" => crate::shm::ring::Stage::GetRetired,
            other => panic!("no stage {other}"),
        };
        let hook = |s: crate::shm::ring::Stage| {
            if s == stage {
                notify();
                loop {
                    std::thread::park();
                }
            }
        };
        let fail = |f: Fail| match f {
            Fail::Error(e) => e,
            other => Error::new(ErrorKind::Io, format!("{other:?}")),
        };
        match value {
            Some(v) => {
                let bytes = codec::encode(&v)?.bytes;
                self.ring
                    .put_hooked(&bytes, Wait::Until(None), Some(&hook))
                    .map_err(fail)?;
                Ok(None)
            }
            None => {
                let mut buf = Vec::new();
                let n = self
                    .ring
                    .get_hooked(&mut buf, Wait::Until(None), Some(&hook))
                    .map_err(fail)?;
                codec::decode(&buf[..n], Vec::new()).map(Some)
            }
        }
    }

    /// A blocking iterator over the messages: each `next` is a
    /// [`get`](Queue::get); it ends when the queue is shut down and
    /// drained. A message that fails to decode ends it too; use `get` to
    /// see such errors.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { queue: self }
    }

    /// A non-blocking iterator over the messages there are now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { queue: self }
    }
}

/// See [`Queue::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    queue: &'a Queue<T>,
}

impl<T: Serialize + DeserializeOwned> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.queue.get().ok()
    }
}

/// See [`Queue::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    queue: &'a Queue<T>,
}

impl<T: Serialize + DeserializeOwned> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.queue.try_get().ok()
    }
}

/// Python's `SimpleQueue`: an unbounded queue with only `put`, `get`,
/// `empty` and `close` (plus the `try_`, `_timeout` and `_deadline` forms
/// of `get`). It is
/// a [`Queue`] underneath, as fast and as crash-safe.
pub struct SimpleQueue<T>(Queue<T>);

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.0).finish()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Queue::deserialize(deserializer).map(Self)
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new empty queue.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared-memory segment cannot be created.
    pub fn new() -> Result<Self> {
        Queue::new().map(Self)
    }

    /// Puts `value`; never waits for room.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.0.put(value)
    }

    /// Takes the oldest message, waiting while the queue is empty.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> Result<T, GetError> {
        self.0.get()
    }

    /// Like [`get`](SimpleQueue::get), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.0.get_timeout(timeout)
    }

    /// Like [`get`](SimpleQueue::get), waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`Queue::get_deadline`].
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetError> {
        self.0.get_deadline(deadline)
    }

    /// Takes the oldest message if there is one.
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`].
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, GetError> {
        self.0.try_get()
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> bool {
        self.0.empty()
    }

    /// Later puts through this handle and its clones fail; see
    /// [`Queue::close`].
    pub fn close(&self) {
        self.0.close()
    }
}

/// Python's `JoinableQueue`: a [`Queue`] (it derefs to one) whose
/// consumers call [`task_done`](JoinableQueue::task_done) for each message
/// they finish, so that [`join`](JoinableQueue::join) can wait until every
/// message put has been finished — across processes.
///
/// A consumer that dies between taking a message and calling `task_done`
/// leaves that message unfinished, so `join` waits forever, as in Python;
/// [`join_timeout`](JoinableQueue::join_timeout) and
/// [`join_deadline`](JoinableQueue::join_deadline) bound the wait.
pub struct JoinableQueue<T>(Queue<T>);

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.0)
            .field("unfinished", &self.0.ring.unfinished())
            .finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Queue::deserialize(deserializer).map(Self)
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.0
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// An unbounded joinable queue.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared-memory segment cannot be created.
    pub fn new() -> Result<Self> {
        Queue::new().map(Self)
    }

    /// A joinable queue holding at most `maxsize` messages (`0`: unbounded).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the shared-memory segment cannot be created.
    pub fn with_maxsize(maxsize: usize) -> Result<Self> {
        Queue::with_maxsize(maxsize).map(Self)
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one message taken from the queue as finished.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::TaskDone`] if called more times than messages were
    /// taken (Python's `ValueError`).
    pub fn task_done(&self) -> Result<()> {
        self.0.ring.task_done()
    }

    /// Waits until every message ever put has been marked done with
    /// [`task_done`](JoinableQueue::task_done), in any process.
    pub fn join(&self) {
        self.0.ring.join(None);
    }

    /// Like [`join`](JoinableQueue::join), waiting at most `timeout`.
    /// `Duration::MAX` waits as long as it takes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if messages were still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(crate::time::deadline_after(timeout))
    }

    /// Like [`join`](JoinableQueue::join), waiting until `deadline` at
    /// most.
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](JoinableQueue::join_timeout).
    pub fn join_deadline(&self, deadline: Instant) -> Result<()> {
        self.join_until(Some(deadline))
    }

    fn join_until(&self, deadline: Option<Instant>) -> Result<()> {
        if self.0.ring.join(deadline) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{} messages were still unfinished at the deadline",
                    self.0.ring.unfinished()
                ),
            ))
        }
    }

    /// The messages put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        self.0.ring.unfinished() as usize
    }

    /// The [`Queue`] underneath.
    pub fn into_queue(self) -> Queue<T> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_kept_while_messages_stay_large_then_given_back() {
        let cap = |cell: &'static std::thread::LocalKey<RefCell<Vec<u8>>>| {
            cell.with(|c| c.borrow().capacity())
        };
        let q = Queue::<serde_bytes::ByteBuf>::new().unwrap();
        let big = serde_bytes::ByteBuf::from(vec![1u8; 16 << 20]);
        q.put(big.clone()).unwrap();
        assert_eq!(q.get().unwrap().len(), 16 << 20);
        assert!(cap(&ENCODE_BUF) >= 16 << 20, "kept for the next large put");
        assert!(cap(&DECODE_BUF) >= 16 << 20, "kept for the next large get");
        // A poll of the empty queue takes nothing and keeps it.
        assert!(q.try_get().is_err());
        assert!(cap(&DECODE_BUF) >= 16 << 20, "kept after an empty poll");
        q.put(serde_bytes::ByteBuf::from(vec![2u8; 10])).unwrap();
        assert_eq!(q.get().unwrap().len(), 10);
        assert!(
            cap(&ENCODE_BUF) <= codec::KEEP_BUFFER,
            "a small put gave it back"
        );
        assert!(
            cap(&DECODE_BUF) <= codec::KEEP_BUFFER,
            "a small get gave it back"
        );
        // Past KEEP_LARGE nothing is kept.
        q.put(serde_bytes::ByteBuf::from(vec![3u8; codec::KEEP_LARGE + 1]))
            .unwrap();
        assert_eq!(q.get().unwrap().len(), codec::KEEP_LARGE + 1);
        assert!(cap(&ENCODE_BUF) <= codec::KEEP_BUFFER);
        assert!(cap(&DECODE_BUF) <= codec::KEEP_BUFFER);
    }

    #[test]
    fn a_handle_to_a_segment_of_the_wrong_size_is_a_decode_error() {
        let small = Region::new("not-a-queue", 4096).unwrap();
        let e = codec::encode(&small).unwrap();
        let err = codec::decode::<Queue<u8>>(&e.bytes, e.fds).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
    }

    #[test]
    fn a_handle_travels_and_shares_the_queue() {
        let q = Queue::<String>::new().unwrap();
        q.put("before".into()).unwrap();
        let e = codec::encode(&q).unwrap();
        let back: Queue<String> = codec::decode(&e.bytes, e.fds).unwrap();
        assert_eq!(back.get().unwrap(), "before");
        back.put("after".into()).unwrap();
        assert_eq!(q.try_get().unwrap(), "after");
        assert!(!back.is_closed(), "close() is per process, not carried");
    }

    #[test]
    fn threads_of_one_process_share_a_bounded_queue_exactly() {
        // The locks exclude threads of one process too (the lock word
        // names a process, and a second thread of it waits like anyone).
        let q = Queue::<(u32, u32)>::with_maxsize(8).unwrap();
        let producers: Vec<_> = (0..3u32)
            .map(|id| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        q.put((id, i)).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let mut last = [None::<u32>; 3];
                    let mut n = 0u64;
                    for (id, i) in q.iter() {
                        assert!(last[id as usize].is_none_or(|l| l < i), "order");
                        last[id as usize] = Some(i);
                        n += u64::from(i);
                    }
                    n
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        q.shutdown();
        let total: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(total, 3 * (19_999 * 20_000 / 2));
        assert!(q.empty());
    }

    #[test]
    fn every_form_takes_any_duration_and_any_deadline() {
        let q = Queue::<u8>::with_maxsize(1).unwrap();
        q.put_timeout(1, Duration::MAX).unwrap();
        assert!(matches!(
            q.put_deadline(2, Instant::now()),
            Err(PutError::Timeout(2))
        ));
        assert_eq!(q.get_timeout(Duration::MAX).unwrap(), 1);
        assert!(matches!(
            q.get_deadline(Instant::now()),
            Err(GetError::Timeout)
        ));
        let s = SimpleQueue::<u8>::new().unwrap();
        s.put(3).unwrap();
        assert_eq!(s.get_deadline(Instant::now()).unwrap(), 3);
        assert!(matches!(
            s.get_deadline(Instant::now()),
            Err(GetError::Timeout)
        ));
        let j = JoinableQueue::<u8>::new().unwrap();
        j.join_timeout(Duration::MAX).unwrap();
        j.put(4).unwrap();
        let err = j.join_deadline(Instant::now()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(j.get().unwrap(), 4);
        j.task_done().unwrap();
        j.join_deadline(Instant::now()).unwrap();
    }

    #[test]
    fn errors_convert_with_their_kinds() {
        let e: Error = PutError::Full(1).into();
        assert_eq!(e.kind(), ErrorKind::Full);
        let e: Error = GetError::Closed.into();
        assert_eq!(e.kind(), ErrorKind::Closed);
        assert_eq!(PutError::Timeout("x").into_inner(), "x");
        assert_eq!(format!("{:?}", PutError::Closed(5)), "Closed(..)");
    }
}
