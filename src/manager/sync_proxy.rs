//! Proxies for the manager's queues and synchronisation objects, which
//! live in the server process (see `blocking.rs`).
//!
//! Each blocking call waits in the server, on the calling thread's own
//! connection, so other threads of the process go on. Every blocking call
//! has a `try_` form (do not wait) and a `_timeout` form.
//!
//! Locks and permits belong to the calling thread's connection: when the
//! thread or its process ends without releasing them (killed, panicked),
//! the server gives them back, and the next acquirer gets
//! [`Acquired::PreviousOwnerDied`] — something Python's manager cannot
//! do (its lock stays held forever).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::link::{Link, unexpected};
use super::protocol::{Op, Reply};
use super::proxy::{Handle, dec, enc, proxy_common};
use crate::error::{Error, ErrorKind, Result};

/// How a lock or permit was acquired.
#[must_use = "PreviousOwnerDied means the state the lock protects may be half-changed"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// From a client that released it (or never held).
    Clean,
    /// A client (thread or process) that held it ended without releasing
    /// it; the server took it back. What it protects may be half-updated:
    /// check it. Like `EOWNERDEAD` from a robust pthread mutex, the lock
    /// is held by the caller now.
    PreviousOwnerDied,
}

impl Acquired {
    /// Whether the previous owner died holding it.
    pub fn previous_owner_died(self) -> bool {
        self == Acquired::PreviousOwnerDied
    }

    fn from_reply(reply: Reply) -> Result<Option<Acquired>> {
        match reply {
            Reply::Acquired(None) => Ok(None),
            Reply::Acquired(Some(false)) => Ok(Some(Acquired::Clean)),
            Reply::Acquired(Some(true)) => Ok(Some(Acquired::PreviousOwnerDied)),
            other => Err(unexpected(&other)),
        }
    }
}

fn acquire(handle: &Handle, timeout: Option<Duration>) -> Result<Option<Acquired>> {
    Acquired::from_reply(handle.op(Op::Acquire { timeout })?)
}

fn done(reply: Reply) -> Result<()> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected(&other)),
    }
}

fn boolean(reply: Reply) -> Result<bool> {
    match reply {
        Reply::Bool(b) => Ok(b),
        other => Err(unexpected(&other)),
    }
}

/// Holds a manager lock (or one permit of a semaphore) until dropped; made
/// by the `lock()` of [`LockProxy`], [`RLockProxy`], [`ConditionProxy`] and
/// [`SemaphoreProxy`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    handle: &'a Handle,
    acquired: Acquired,
    /// Not `Send`: the lock belongs to this thread's connection, so the
    /// release must come from this thread (as with `std::sync::MutexGuard`).
    _not_send: PhantomData<*const ()>,
}

impl LockGuard<'_> {
    /// How the lock was acquired: [`Acquired::PreviousOwnerDied`] if a
    /// client died holding it.
    pub fn acquired(&self) -> Acquired {
        self.acquired
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("id", &self.handle.id)
            .field("acquired", &self.acquired)
            .finish()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // If the manager is gone there is nothing left to release.
        let _ = self.handle.op(Op::Release);
    }
}

macro_rules! lock_methods {
    ($what:literal) => {
        /// Waits for the lock and takes it (Python's `acquire()`).
        ///
        /// # Errors
        ///
        /// [`ErrorKind::Eof`] if the manager is gone (or goes while
        /// waiting); [`ErrorKind::Remote`] if it is shutting down.
        pub fn acquire(&self) -> Result<Acquired> {
            acquire(&self.handle, None)?.ok_or_else(|| unexpected(&Reply::Acquired(None)))
        }

        /// Takes the lock if it is free; `None` if not (Python's
        /// `acquire(block=False)`).
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub fn try_acquire(&self) -> Result<Option<Acquired>> {
            acquire(&self.handle, Some(Duration::ZERO))
        }

        /// Waits up to `timeout` for the lock; `None` if it stayed taken
        /// (Python's `acquire(timeout=t)`).
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Acquired>> {
            acquire(&self.handle, Some(timeout))
        }

        /// Releases the lock (Python's `release()`).
        ///
        /// # Errors
        ///
        #[doc = $what]
        /// [`ErrorKind::Eof`] if the manager is gone.
        pub fn release(&self) -> Result<()> {
            done(self.handle.op(Op::Release)?)
        }

        /// Acquires and returns a guard that releases on drop (Python's
        /// `with lock:`).
        ///
        /// # Errors
        ///
        /// As [`acquire`](Self::acquire).
        pub fn lock(&self) -> Result<LockGuard<'_>> {
            let acquired = self.acquire()?;
            Ok(LockGuard {
                handle: &self.handle,
                acquired,
                _not_send: PhantomData,
            })
        }
    };
}

/// A lock in the manager (Python's `manager.Lock()`): any client may
/// release it, as in Python, but the server remembers who took it and
/// frees it if that thread or process ends without releasing.
pub struct LockProxy {
    handle: Handle,
    _types: PhantomData<()>,
}
proxy_common!(LockProxy);

impl LockProxy {
    lock_methods!("[`ErrorKind::NotAcquired`] if the lock is not held;");

    /// Whether some client holds the lock (Python's `locked()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn locked(&self) -> Result<bool> {
        boolean(self.handle.op(Op::Locked)?)
    }
}

/// A reentrant lock in the manager (Python's `manager.RLock()`): the
/// thread that holds it may take it again, and must release it as often.
pub struct RLockProxy {
    handle: Handle,
    _types: PhantomData<()>,
}
proxy_common!(RLockProxy);

impl RLockProxy {
    lock_methods!("[`ErrorKind::NotAcquired`] if this thread does not hold it;");

    /// Whether some client holds the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn locked(&self) -> Result<bool> {
        boolean(self.handle.op(Op::Locked)?)
    }
}

/// A semaphore in the manager (Python's `manager.Semaphore(n)` and
/// `manager.BoundedSemaphore(n)`).
///
/// Permits a thread acquired and did not release are given back when the
/// thread or its process ends, and the next acquirer of such a permit gets
/// [`Acquired::PreviousOwnerDied`]; a permit released by another client
/// counts as released by its holder. (A semaphore used to signal events
/// rather than to guard a resource is better served by a queue or an
/// event.)
pub struct SemaphoreProxy {
    handle: Handle,
    _types: PhantomData<()>,
}
proxy_common!(SemaphoreProxy);

impl SemaphoreProxy {
    lock_methods!(
        "[`ErrorKind::NotAcquired`] if a bounded semaphore would go above its initial value;"
    );

    /// The number of permits free now (Python's `get_value()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn get_value(&self) -> Result<u64> {
        match self.handle.op(Op::GetValue)? {
            Reply::Len(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }
}

/// A condition variable in the manager with its own reentrant lock
/// (Python's `manager.Condition()`).
pub struct ConditionProxy {
    handle: Handle,
    _types: PhantomData<()>,
}
proxy_common!(ConditionProxy);

impl ConditionProxy {
    lock_methods!("[`ErrorKind::NotAcquired`] if this thread does not hold the lock;");

    fn wait_op(&self, timeout: Option<Duration>) -> Result<Option<Acquired>> {
        match self.handle.op(Op::Wait { timeout })? {
            Reply::Waited {
                notified,
                owner_died,
            } => {
                let how = if owner_died {
                    Acquired::PreviousOwnerDied
                } else {
                    Acquired::Clean
                };
                Ok(notified.then_some(how))
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Releases the lock, waits for a notification, and takes the lock
    /// back (Python's `wait()`). The caller must hold the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotAcquired`] if this thread does not hold the lock;
    /// [`ErrorKind::Remote`] if the manager is shutting down;
    /// [`ErrorKind::Eof`] if it is gone.
    pub fn wait(&self) -> Result<Acquired> {
        self.wait_op(None)?
            .ok_or_else(|| unexpected(&Reply::Acquired(None)))
    }

    /// Like [`wait`](Self::wait), for at most `timeout`: `None` if no
    /// notification came (the lock is held again either way).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<Acquired>> {
        self.wait_op(Some(timeout))
    }

    /// Waits until `predicate` (evaluated holding the lock) is true
    /// (Python's `wait_for`).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_for(&self, mut predicate: impl FnMut() -> bool) -> Result<()> {
        while !predicate() {
            let _ = self.wait()?;
        }
        Ok(())
    }

    /// Like [`wait_for`](Self::wait_for) for at most `timeout`: the
    /// predicate's last value.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_for_timeout(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if predicate() {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let _ = self.wait_timeout(deadline - now)?;
        }
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`). The caller must hold
    /// the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotAcquired`] if this thread does not hold the lock;
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn notify(&self, n: u64) -> Result<()> {
        done(self.handle.op(Op::Notify(n))?)
    }

    /// Wakes every waiter (Python's `notify_all()`).
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    pub fn notify_all(&self) -> Result<()> {
        done(self.handle.op(Op::NotifyAll)?)
    }
}

/// An event in the manager (Python's `manager.Event()`): a flag processes
/// wait for.
pub struct EventProxy {
    handle: Handle,
    _types: PhantomData<()>,
}
proxy_common!(EventProxy);

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn set(&self) -> Result<()> {
        done(self.handle.op(Op::SetFlag)?)
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn clear(&self) -> Result<()> {
        done(self.handle.op(Op::ClearFlag)?)
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn is_set(&self) -> Result<bool> {
        boolean(self.handle.op(Op::IsSet)?)
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Remote`] if
    /// it is shutting down.
    pub fn wait(&self) -> Result<()> {
        boolean(self.handle.op(Op::Wait { timeout: None })?).map(drop)
    }

    /// Waits up to `timeout`; whether the flag is set (Python's
    /// `wait(timeout)`).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        boolean(self.handle.op(Op::Wait {
            timeout: Some(timeout),
        })?)
    }
}

/// A barrier in the manager (Python's `manager.Barrier(parties)`).
///
/// It breaks (every waiter gets an error) when it is aborted, reset while
/// some wait, when a waiter times out, and — beyond Python — when a
/// waiting thread's process dies, so the others do not wait forever.
pub struct BarrierProxy {
    handle: Handle,
    _types: PhantomData<()>,
}
proxy_common!(BarrierProxy);

impl BarrierProxy {
    fn wait_op(&self, timeout: Option<Duration>) -> Result<usize> {
        match self.handle.op(Op::Wait { timeout })? {
            Reply::Len(i) => Ok(i as usize),
            other => Err(unexpected(&other)),
        }
    }

    /// Waits until `parties` clients wait; returns this one's arrival index
    /// in `0..parties` (Python's `wait()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BrokenBarrier`] if the barrier is or becomes broken (Python's
    /// `BrokenBarrierError`; [`broken`](Self::broken) says so);
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn wait(&self) -> Result<usize> {
        self.wait_op(None)
    }

    /// Like [`wait`](Self::wait) for at most `timeout`; a timeout breaks
    /// the barrier, as in Python.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_op(Some(timeout))
    }

    /// Returns the barrier to its starting state; clients waiting now get
    /// an error.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn reset(&self) -> Result<()> {
        done(self.handle.op(Op::Reset)?)
    }

    /// Breaks the barrier: current and later waiters get an error until
    /// [`reset`](Self::reset).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn abort(&self) -> Result<()> {
        done(self.handle.op(Op::Abort)?)
    }

    fn state(&self) -> Result<(u64, u64, bool)> {
        match self.handle.op(Op::BarrierState)? {
            Reply::Barrier {
                parties,
                waiting,
                broken,
            } => Ok((parties, waiting, broken)),
            other => Err(unexpected(&other)),
        }
    }

    /// How many must wait for the barrier to open.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn parties(&self) -> Result<usize> {
        self.state().map(|s| s.0 as usize)
    }

    /// How many wait now.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn n_waiting(&self) -> Result<usize> {
        self.state().map(|s| s.1 as usize)
    }

    /// Whether the barrier is broken.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn broken(&self) -> Result<bool> {
        self.state().map(|s| s.2)
    }
}

/// Why a `try_put` or `put_timeout` did not put: the value comes back.
#[derive(Debug)]
pub enum PutError<T> {
    /// The queue is full.
    Full(T),
    /// The request failed (the manager is gone, the value cannot be
    /// encoded).
    Failed(T, Error),
}

impl<T> PutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v) | PutError::Failed(v, _) => v,
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => write!(f, "the queue is full"),
            PutError::Failed(_, e) => write!(f, "could not put on the queue: {e}"),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for PutError<T> {}

/// A FIFO queue in the manager (Python's `manager.Queue(maxsize)`).
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
    fn put_op(&self, value: T, timeout: Option<Duration>) -> std::result::Result<(), PutError<T>> {
        let item = match enc(&value) {
            Ok(b) => b,
            Err(e) => return Err(PutError::Failed(value, e)),
        };
        match self.handle.op(Op::Put { item, timeout }) {
            Ok(Reply::Bool(true)) => Ok(()),
            Ok(Reply::Bool(false)) => Err(PutError::Full(value)),
            Ok(other) => Err(PutError::Failed(value, unexpected(&other))),
            Err(e) => Err(PutError::Failed(value, e)),
        }
    }

    /// Puts a value, waiting while the queue is full (Python's `put`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if the value cannot be encoded;
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn put(&self, value: T) -> Result<()> {
        self.put_op(value, None).map_err(|e| match e {
            PutError::Failed(_, e) => e,
            PutError::Full(_) => Error::new(ErrorKind::Protocol, "a blocking put came back full"),
        })
    }

    /// Puts a value if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// [`PutError::Full`] with the value if the queue is full;
    /// [`PutError::Failed`] with the value and the error otherwise.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> std::result::Result<(), PutError<T>> {
        self.put_op(value, Some(Duration::ZERO))
    }

    /// Puts a value, waiting up to `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`try_put`](Self::try_put).
    pub fn put_timeout(&self, value: T, timeout: Duration) -> std::result::Result<(), PutError<T>> {
        self.put_op(value, Some(timeout))
    }

    fn get_op(&self, timeout: Option<Duration>) -> Result<Option<T>> {
        match self.handle.op(Op::Take { timeout })? {
            Reply::Value(v) => v.map(|b| dec(&b)).transpose(),
            other => Err(unexpected(&other)),
        }
    }

    /// Takes the oldest value, waiting while the queue is empty (Python's
    /// `get`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`] if it is not a `T`; [`ErrorKind::Eof`] if the
    /// manager is gone; [`ErrorKind::Remote`] if it is shutting down.
    pub fn get(&self) -> Result<T> {
        self.get_op(None)?
            .ok_or_else(|| unexpected(&Reply::Value(None)))
    }

    /// Takes the oldest value if there is one (Python's `get_nowait`;
    /// `None` is Python's `queue.Empty`).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<Option<T>> {
        self.get_op(Some(Duration::ZERO))
    }

    /// Takes the oldest value, waiting up to `timeout`; `None` if none came.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>> {
        self.get_op(Some(timeout))
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

    /// The values as they come, waiting for each; ends when the manager
    /// goes away.
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
        done(self.queue.handle.op(Op::TaskDone)?)
    }

    /// Waits until every value put has been handled (Python's `join`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Remote`] if
    /// it is shutting down.
    pub fn join(&self) -> Result<()> {
        boolean(self.queue.handle.op(Op::JoinTasks { timeout: None })?).map(drop)
    }

    /// Like [`join`](Self::join) for at most `timeout`: whether every value
    /// was handled.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        boolean(self.queue.handle.op(Op::JoinTasks {
            timeout: Some(timeout),
        })?)
    }
}
