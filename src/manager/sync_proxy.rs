//! Proxies for the manager's synchronisation objects, which live in the
//! server process (see `blocking.rs`; the queues are in `queue_proxy.rs`).
//!
//! They follow the crate's outcome rules as the local objects of
//! [`sync`](crate::sync) do, with the same names and the same errors:
//!
//! - every acquisition (of a [`LockProxy`], [`RLockProxy`],
//!   [`SemaphoreProxy`] or [`ConditionProxy`]) comes in four forms —
//!   `acquire`, `try_acquire`, `acquire_timeout`, `acquire_deadline` —
//!   whose `Ok` is a [`ProxyGuard`], and returns an
//!   [`AcquireResult`]: [`AcquireError::WouldBlock`] for the `try_` form,
//!   [`AcquireError::Timeout`] when the time ran out,
//!   [`AcquireError::OwnerDied`] when a holder died, and
//!   [`AcquireError::Failed`] when the manager is gone
//!   ([`ErrorKind::Eof`]) or refused ([`ErrorKind::Remote`], shutting down
//!   included);
//! - waits for a state (a condition's `wait`, an event's, a barrier's) come
//!   in the blocking, `_timeout` and `_deadline` forms, and a wait whose
//!   time ran out is an error of kind [`ErrorKind::Timeout`];
//! - every `Duration` is accepted: `Duration::MAX` waits as long as it
//!   takes;
//! - counts (semaphore values, `notify(n)`, barrier parties) are `u32`.
//!
//! Each blocking call waits in the server, on the calling thread's own
//! connection, so other threads of the process go on.
//!
//! Locks and permits belong to the calling thread's connection: when the
//! thread or its process ends without releasing them (killed, panicked),
//! the server gives them back, and every later acquisition gets an
//! [`OwnerDied`] until a holder acknowledges it with
//! [`OwnerDied::into_guard`] — something Python's manager cannot do (its
//! lock stays held forever).

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::link::{Link, unexpected};
use super::protocol::{Op, Reply};
use super::proxy::{Handle, Wait, proxy_common};
use crate::error::{Error, ErrorKind, Result};
use crate::sync::{AcquireError, AcquireResult, OwnerDied};
use crate::time::{deadline_after, expired, remaining};

/// An [`OwnerDied`] for a manager's object: acknowledging it
/// ([`OwnerDied::into_guard`]) asks the server to clear the indication.
fn owner_died<G>(handle: &Handle, guard: G) -> OwnerDied<G> {
    let handle = handle.clone();
    OwnerDied::remote(
        guard,
        Box::new(move || {
            // If the manager is gone, so is the indication.
            let _ = handle.op(Op::Acknowledge);
        }),
    )
}

fn acquire(handle: &Handle, wait: Wait) -> AcquireResult<ProxyGuard<'_>> {
    let died = match handle.op(Op::Acquire {
        timeout: wait.for_server(),
    })? {
        Reply::Acquired(Some(died)) => died,
        Reply::Acquired(None) => {
            return Err(match wait {
                Wait::No => AcquireError::WouldBlock,
                Wait::Until(Some(_)) => AcquireError::Timeout,
                Wait::Until(None) => AcquireError::Failed(unexpected(&Reply::Acquired(None))),
            });
        }
        other => return Err(AcquireError::Failed(unexpected(&other))),
    };
    let guard = ProxyGuard {
        handle,
        _not_send: PhantomData,
    };
    if died {
        Err(AcquireError::OwnerDied(owner_died(handle, guard)))
    } else {
        Ok(guard)
    }
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

/// A `u32` the server sent as a `u64` (a bigger one breaks the protocol).
fn count(n: u64) -> Result<u32> {
    u32::try_from(n).map_err(|_| unexpected(&Reply::Len(n)))
}

/// Holds a manager's lock (or one permit of its semaphore) until dropped:
/// the `Ok` of every acquisition of a [`LockProxy`], [`RLockProxy`],
/// [`SemaphoreProxy`] and [`ConditionProxy`] (the manager's counterpart of
/// [`sync::LockGuard`](crate::sync::LockGuard)).
///
/// Dropping it releases, in one round trip; if the manager is gone there is
/// nothing left to release and nothing is reported. It is not `Send`: the
/// lock belongs to this thread's connection, so the release must come from
/// this thread (as with `std::sync::MutexGuard`).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ProxyGuard<'a> {
    handle: &'a Handle,
    _not_send: PhantomData<*const ()>,
}

impl ProxyGuard<'_> {
    /// Keeps the lock (or permit) held after the guard is gone; release it
    /// later with the proxy's `release` (Python's acquire-here,
    /// release-there). Never fails.
    pub fn leak(self) {
        std::mem::forget(self)
    }
}

impl fmt::Debug for ProxyGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyGuard")
            .field("id", &self.handle.id)
            .finish()
    }
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        // If the manager is gone there is nothing left to release.
        let _ = self.handle.op(Op::Release);
    }
}

macro_rules! acquire_forms {
    ($it:literal, $release_refused:literal) => {
        #[doc = concat!("Acquires ", $it, ", waiting as long as it takes; the guard releases it")]
        /// when dropped (Python's `with lock:`), or keep it with
        /// [`ProxyGuard::leak`] and release it with
        /// [`release`](Self::release) (Python's `acquire()`).
        ///
        /// # Errors
        ///
        /// [`AcquireError::OwnerDied`] (holding the guard) if a client died
        /// holding it and nobody has acknowledged that since;
        /// [`AcquireError::Failed`] of kind [`ErrorKind::Eof`] if the
        /// manager is gone (or goes while waiting), [`ErrorKind::Remote`]
        /// if it refused (shutting down included).
        pub fn acquire(&self) -> AcquireResult<ProxyGuard<'_>> {
            acquire(&self.handle, Wait::Until(None))
        }

        #[doc = concat!("Acquires ", $it, " if that needs no wait.")]
        ///
        /// # Errors
        ///
        /// [`AcquireError::WouldBlock`] if it is held (or no permit is
        /// free); the others as [`acquire`](Self::acquire).
        #[doc(alias = "acquire(block=False)")]
        pub fn try_acquire(&self) -> AcquireResult<ProxyGuard<'_>> {
            acquire(&self.handle, Wait::No)
        }

        #[doc = concat!("Acquires ", $it, ", waiting at most `timeout` (any `Duration`:")]
        /// `Duration::MAX` waits as long as it takes).
        ///
        /// # Errors
        ///
        /// [`AcquireError::Timeout`] if it was not free in time; the others
        /// as [`acquire`](Self::acquire).
        #[doc(alias = "acquire(timeout)")]
        pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<ProxyGuard<'_>> {
            acquire(&self.handle, Wait::timeout(timeout))
        }

        #[doc = concat!("Acquires ", $it, ", waiting until `deadline` at the latest.")]
        ///
        /// # Errors
        ///
        /// As [`acquire_timeout`](Self::acquire_timeout).
        pub fn acquire_deadline(&self, deadline: Instant) -> AcquireResult<ProxyGuard<'_>> {
            acquire(&self.handle, Wait::Until(Some(deadline)))
        }

        #[doc = concat!("Releases ", $it, " (Python's `release()`): the counterpart of")]
        /// [`ProxyGuard::leak`].
        ///
        /// # Errors
        ///
        #[doc = $release_refused]
        /// [`ErrorKind::Eof`] if the manager is gone.
        pub fn release(&self) -> Result<()> {
            done(self.handle.op(Op::Release)?)
        }
    };
}

/// A lock in the manager (Python's `manager.Lock()`): any client may
/// release it, as in Python, but the server remembers who took it and
/// frees it if that thread or process ends without releasing.
///
/// ```
/// use multiproc::sync::AcquireError;
/// # multiproc::init();
/// let manager = multiproc::Manager::new()?;
/// let lock = manager.lock()?;
/// let held = lock.acquire()?;
/// assert!(matches!(lock.try_acquire(), Err(AcquireError::WouldBlock)));
/// drop(held);
/// let held = lock.acquire_timeout(std::time::Duration::MAX)?;
/// # drop(held);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct LockProxy {
    handle: Handle,
    _types: PhantomData<()>,
}
proxy_common!(LockProxy);

impl LockProxy {
    acquire_forms!(
        "the lock",
        "[`ErrorKind::NotAcquired`] if the lock is not held;"
    );

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
    acquire_forms!(
        "the lock",
        "[`ErrorKind::NotAcquired`] if this thread does not hold it;"
    );

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
/// Unlike a local [`Semaphore`](crate::sync::Semaphore), whose permits have
/// no owner, the server knows which thread took a permit: permits a thread
/// acquired and did not release are given back when the thread or its
/// process ends, and acquisitions report it as for a lock
/// ([`AcquireError::OwnerDied`], until a holder acknowledges it). A permit
/// released by another client counts as released by its holder. (A
/// semaphore used to signal events rather than to guard a resource is
/// better served by a queue or an event.)
pub struct SemaphoreProxy {
    handle: Handle,
    _types: PhantomData<()>,
}
proxy_common!(SemaphoreProxy);

impl SemaphoreProxy {
    acquire_forms!(
        "a permit",
        "[`ErrorKind::NotAcquired`] if a bounded semaphore would go above its initial value, or the value would overflow `u32`;"
    );

    /// The number of permits free now (Python's `get_value()`); it may
    /// change at once.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn get_value(&self) -> Result<u32> {
        match self.handle.op(Op::GetValue)? {
            Reply::Len(n) => count(n),
            other => Err(unexpected(&other)),
        }
    }
}

/// A condition variable in the manager with its own reentrant lock
/// (Python's `manager.Condition()`).
///
/// Acquire its lock with the acquisition forms, then [`wait`](Self::wait)
/// and [`notify`](Self::notify) while holding it (the server checks, as
/// Python does at run time).
///
/// ```
/// use std::time::Duration;
/// # multiproc::init();
/// let manager = multiproc::Manager::new()?;
/// let cond = manager.condition()?;
/// let held = cond.acquire()?;
/// let waited = cond.wait_timeout(Duration::from_millis(1));
/// assert_eq!(waited.unwrap_err().kind(), multiproc::ErrorKind::Timeout);
/// cond.notify_all()?; // the lock is held again after a timeout
/// drop(held);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct ConditionProxy {
    handle: Handle,
    _types: PhantomData<()>,
}
proxy_common!(ConditionProxy);

impl ConditionProxy {
    acquire_forms!(
        "the lock",
        "[`ErrorKind::NotAcquired`] if this thread does not hold the lock;"
    );

    fn wait_op(&self, wait: Wait) -> AcquireResult<()> {
        match self.handle.op(Op::Wait {
            timeout: wait.for_server(),
        })? {
            Reply::Waited {
                owner_died: true, ..
            } => Err(AcquireError::OwnerDied(owner_died(&self.handle, ()))),
            Reply::Waited { notified: true, .. } => Ok(()),
            Reply::Waited {
                notified: false, ..
            } if matches!(wait, Wait::Until(Some(_))) => Err(AcquireError::Timeout),
            other => Err(AcquireError::Failed(unexpected(&other))),
        }
    }

    /// Releases the lock, waits for a notification, and takes the lock
    /// back (Python's `wait()`). The caller must hold the lock; it is held
    /// again however the wait ends, unless the manager is gone.
    ///
    /// # Errors
    ///
    /// [`AcquireError::OwnerDied`] if a client died holding the lock (while
    /// this waited, or before, unacknowledged);
    /// [`AcquireError::Failed`] of kind [`ErrorKind::NotAcquired`] if this
    /// thread does not hold the lock, [`ErrorKind::Remote`] if the manager
    /// refused (shutting down included), [`ErrorKind::Eof`] if it is gone.
    pub fn wait(&self) -> AcquireResult<()> {
        self.wait_op(Wait::Until(None))
    }

    /// Like [`wait`](Self::wait), for at most `timeout` (Python's
    /// `wait(timeout)`; any `Duration`: `Duration::MAX` waits as long as it
    /// takes). The lock is held again however it ends.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] if the time ran out without a notify; the
    /// others as [`wait`](Self::wait).
    #[doc(alias = "wait(timeout)")]
    pub fn wait_timeout(&self, timeout: Duration) -> AcquireResult<()> {
        self.wait_op(Wait::timeout(timeout))
    }

    /// Like [`wait`](Self::wait), until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&self, deadline: Instant) -> AcquireResult<()> {
        self.wait_op(Wait::Until(Some(deadline)))
    }

    /// Waits until `predicate` (called with the lock held) is true (Python's
    /// `wait_for`).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait); after an [`AcquireError::OwnerDied`] the
    /// predicate is not called again, since the state may be half-changed.
    pub fn wait_for(&self, predicate: impl FnMut() -> bool) -> AcquireResult<()> {
        self.wait_for_until(predicate, None)
    }

    /// Like [`wait_for`](Self::wait_for), for at most `timeout` (Python's
    /// `wait_for(predicate, timeout)`; any `Duration`).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] if the predicate is still false when the
    /// time runs out; the others as [`wait_for`](Self::wait_for).
    pub fn wait_for_timeout(
        &self,
        predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> AcquireResult<()> {
        self.wait_for_until(predicate, deadline_after(timeout))
    }

    /// Like [`wait_for`](Self::wait_for), until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`wait_for_timeout`](Self::wait_for_timeout).
    pub fn wait_for_deadline(
        &self,
        predicate: impl FnMut() -> bool,
        deadline: Instant,
    ) -> AcquireResult<()> {
        self.wait_for_until(predicate, Some(deadline))
    }

    fn wait_for_until(
        &self,
        mut predicate: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> AcquireResult<()> {
        loop {
            if predicate() {
                return Ok(());
            }
            if expired(deadline) {
                return Err(AcquireError::Timeout);
            }
            match self.wait_op(Wait::Until(deadline)) {
                // A timeout is decided above, after the predicate's last say.
                Ok(()) | Err(AcquireError::Timeout) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`). The caller must hold
    /// the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotAcquired`] if this thread does not hold the lock;
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn notify(&self, n: u32) -> Result<()> {
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
///
/// ```
/// use std::time::Duration;
/// # multiproc::init();
/// let manager = multiproc::Manager::new()?;
/// let ev = manager.event()?;
/// let err = ev.wait_timeout(Duration::from_millis(1)).unwrap_err();
/// assert_eq!(err.kind(), multiproc::ErrorKind::Timeout);
/// ev.set()?;
/// assert!(ev.is_set()?);
/// ev.wait()?;
/// ev.wait_timeout(Duration::MAX)?;
/// # Ok::<(), multiproc::Error>(())
/// ```
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

    fn wait_op(&self, deadline: Option<Instant>) -> Result<()> {
        match self.handle.op(Op::Wait {
            timeout: remaining(deadline),
        })? {
            Reply::Bool(true) => Ok(()),
            Reply::Bool(false) if deadline.is_some() => Err(Error::new(
                ErrorKind::Timeout,
                "the time ran out before the event was set",
            )),
            other => Err(unexpected(&other)),
        }
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone; [`ErrorKind::Remote`] if
    /// it refused (shutting down included).
    pub fn wait(&self) -> Result<()> {
        self.wait_op(None)
    }

    /// Waits at most `timeout` for the flag (Python's `wait(timeout)`; any
    /// `Duration`: `Duration::MAX` waits as long as it takes).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if it is still clear then; the others as
    /// [`wait`](Self::wait).
    #[doc(alias = "wait(timeout)")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_op(deadline_after(timeout))
    }

    /// Waits until `deadline` at the latest for the flag.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&self, deadline: Instant) -> Result<()> {
        self.wait_op(Some(deadline))
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
    fn wait_op(&self, deadline: Option<Instant>) -> Result<u32> {
        match self.handle.op(Op::Wait {
            timeout: remaining(deadline),
        })? {
            Reply::Len(i) => count(i),
            other => Err(unexpected(&other)),
        }
    }

    /// Waits until `parties` clients wait; returns this one's arrival index
    /// in `0..parties` (Python's `wait()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BrokenBarrier`] if the barrier is or becomes broken
    /// (Python's `BrokenBarrierError`; [`broken`](Self::broken) says so),
    /// or is reset, while waiting; [`ErrorKind::Eof`] if the manager is
    /// gone; [`ErrorKind::Remote`] if it refused (shutting down included).
    pub fn wait(&self) -> Result<u32> {
        self.wait_op(None)
    }

    /// Like [`wait`](Self::wait) for at most `timeout` (any `Duration`:
    /// `Duration::MAX` waits as long as it takes).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the time ran out — which breaks the
    /// barrier, as in Python, so the other waiters get
    /// [`ErrorKind::BrokenBarrier`]; the others as [`wait`](Self::wait).
    #[doc(alias = "wait(timeout)")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_op(deadline_after(timeout))
    }

    /// Like [`wait`](Self::wait) until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&self, deadline: Instant) -> Result<u32> {
        self.wait_op(Some(deadline))
    }

    /// Returns the barrier to its starting state; clients waiting now get
    /// [`ErrorKind::BrokenBarrier`], and a broken barrier becomes usable.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn reset(&self) -> Result<()> {
        done(self.handle.op(Op::Reset)?)
    }

    /// Breaks the barrier: current and later waiters get
    /// [`ErrorKind::BrokenBarrier`] until [`reset`](Self::reset).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn abort(&self) -> Result<()> {
        done(self.handle.op(Op::Abort)?)
    }

    fn state(&self) -> Result<(u32, u32, bool)> {
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
    pub fn parties(&self) -> Result<u32> {
        self.state().map(|s| s.0)
    }

    /// How many wait now.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the manager is gone.
    pub fn n_waiting(&self) -> Result<u32> {
        self.state().map(|s| s.1)
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
