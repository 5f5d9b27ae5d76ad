//! Proxies for the manager's synchronisation objects, which live in the
//! server process (see `blocking.rs`; the queues are in `queue_proxy.rs`).
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
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::link::{Link, unexpected};
use super::protocol::{Op, Reply};
use super::proxy::{Handle, proxy_common};
#[cfg(doc)]
use crate::error::ErrorKind;
use crate::error::Result;

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
