//! What an acquisition reports: [`LockResult`] for the blocking forms of
//! local locks, [`AcquireResult`] for the `try_`, `_timeout` and
//! `_deadline` forms and for every acquisition of a manager's lock, and
//! the [`OwnerDied`] both carry when a holder died (the crate's "Outcome
//! rules" 3 and 4).
//!
//! An `OwnerDied` is acknowledged through whoever keeps the indication: a
//! flag word beside a local lock's word in shared memory, or the manager's
//! server for a manager's lock (see [`Acknowledge`]).

use std::fmt;
use std::sync::atomic::Ordering;

use crate::error::{Error, ErrorKind};
use crate::shm::region::Region;

/// The outcome of a blocking acquisition of a local lock: the guard, or
/// [`OwnerDied`] carrying the guard when a holder died holding the lock.
pub type LockResult<G> = std::result::Result<G, OwnerDied<G>>;

/// The outcome of a `try_`, `_timeout` or `_deadline` acquisition, and of
/// every acquisition of a manager's lock: the guard, or an
/// [`AcquireError`] saying why there is none (or, for
/// [`AcquireError::OwnerDied`], why the guard comes with a warning).
pub type AcquireResult<G> = std::result::Result<G, AcquireError<G>>;

/// Tells the keeper of an owner-died indication that it is acknowledged.
/// Local locks keep it in shared memory; a manager's lock in its server.
pub(crate) trait Acknowledge: Send + Sync {
    /// Clears the indication ("the data is repaired"). Failures are not
    /// reported: if the keeper is gone, so is the lock.
    fn acknowledge(&self);
}

/// Any closure acknowledges by being called: a manager's lock passes one
/// that holds its proxy's handle and sends the server the request that
/// clears the indication (this module is private to `sync`, so the
/// manager cannot name the trait, only hand over a closure).
impl<F: Fn() + Send + Sync> Acknowledge for F {
    fn acknowledge(&self) {
        self()
    }
}

/// Where the indication an [`OwnerDied`] reports is kept.
enum Ack {
    /// A `u32` flag at `offset` in `region` (1: set).
    Flag { region: Region, offset: usize },
    /// Somewhere else (a manager's server).
    Remote(Box<dyn Acknowledge>),
}

/// A process died while holding the lock: what the lock protects may be
/// half-changed. You hold the lock now (the guard is inside).
///
/// This is the robust-mutex counterpart of std's `PoisonError`, and it is
/// sticky in the same way: every later acquisition, in any process, gets an
/// `OwnerDied` too until someone calls [`into_guard`](Self::into_guard),
/// which says "I am repairing the data" and clears the indication.
/// Converting it into an [`Error`] (with `?`) gives
/// [`ErrorKind::OwnerDied`], releases the lock and leaves the indication
/// set, so the next holder is told as well. The same type reports a dead
/// holder of a local lock, of a [`Value`](crate::shared::Value) or
/// [`Array`](crate::shared::Array), and of a manager's lock.
///
/// ```
/// # multiproc::init();
/// let lock = multiproc::sync::Lock::new()?;
/// let guard = match lock.acquire() {
///     Ok(guard) => guard,
///     Err(died) => {
///         // repair the shared data here, then:
///         died.into_guard()
///     }
/// };
/// drop(guard);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "the lock is held, and the data it protects may need repair"]
pub struct OwnerDied<G> {
    guard: G,
    ack: Ack,
}

impl<G> OwnerDied<G> {
    /// The indication is the `u32` flag at `flag_offset` in `flag`.
    pub(crate) fn new(guard: G, flag: Region, flag_offset: usize) -> Self {
        Self {
            guard,
            ack: Ack::Flag {
                region: flag,
                offset: flag_offset,
            },
        }
    }

    /// The indication is kept elsewhere; `ack` clears it.
    pub(crate) fn remote(guard: G, ack: Box<dyn Acknowledge>) -> Self {
        Self {
            guard,
            ack: Ack::Remote(ack),
        }
    }

    /// The guard, after acknowledging that the previous holder died: the
    /// indication is cleared, so later acquisitions succeed normally. Repair
    /// the data before you release the guard.
    ///
    /// For a manager's lock this is one round trip to the manager, on the
    /// thread that acquired the lock (call it there); if the manager is
    /// gone there is nothing left to acknowledge and nothing is reported.
    pub fn into_guard(self) -> G {
        match self.ack {
            Ack::Flag { region, offset } => region.u32_at(offset).store(0, Ordering::Release),
            Ack::Remote(ack) => ack.acknowledge(),
        }
        self.guard
    }

    /// The guard, without acknowledging anything (the indication stays).
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// The guard, mutably, without acknowledging anything.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    /// [`ErrorKind::OwnerDied`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::OwnerDied
    }

    /// Maps the guard inside, keeping the indication pending.
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied {
            guard: f(self.guard),
            ack: self.ack,
        }
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a process died while holding the lock: the data it protects may be half-changed \
             (handle the OwnerDied and call into_guard() after repairing it)",
        )
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

impl<G> From<OwnerDied<G>> for Error {
    /// An [`ErrorKind::OwnerDied`] error. The guard is dropped (the lock is
    /// released) and the indication stays for the next holder.
    fn from(e: OwnerDied<G>) -> Self {
        Error::new(ErrorKind::OwnerDied, e.to_string())
    }
}

/// Why a `try_`, `_timeout` or `_deadline` acquisition (or any acquisition
/// of a manager's lock) has no plain guard.
///
/// [`kind`](Self::kind) names it as an [`ErrorKind`], and `?` turns it
/// into an [`Error`] of that kind (an `OwnerDied` releasing the lock, the
/// indication left set, as [`OwnerDied`]'s conversion does).
///
/// ```
/// use std::time::Duration;
/// use multiproc::sync::{AcquireError, Lock};
/// # multiproc::init();
/// let lock = Lock::new()?;
/// let held = lock.acquire()?;
/// match lock.acquire_timeout(Duration::from_millis(1)) {
///     Err(AcquireError::Timeout) => {} // still held (by us)
///     other => panic!("{other:?}"),
/// }
/// drop(held);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "an OwnerDied holds the lock"]
pub enum AcquireError<G> {
    /// Acquired, but a holder died holding the lock: the guard is inside
    /// ([`ErrorKind::OwnerDied`]).
    OwnerDied(OwnerDied<G>),
    /// A `try_` form: the lock is held, or no permit is free
    /// ([`ErrorKind::WouldBlock`]).
    WouldBlock,
    /// A `_timeout` or `_deadline` form: the time ran out
    /// ([`ErrorKind::Timeout`]).
    Timeout,
    /// The acquisition failed: a manager's lock whose manager is gone
    /// ([`ErrorKind::Eof`]) or refused ([`ErrorKind::Remote`], shutting
    /// down included), a condition wait without the lock
    /// ([`ErrorKind::NotAcquired`]); the error says which.
    Failed(Error),
}

impl<G> AcquireError<G> {
    /// What happened, as an [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            AcquireError::OwnerDied(_) => ErrorKind::OwnerDied,
            AcquireError::WouldBlock => ErrorKind::WouldBlock,
            AcquireError::Timeout => ErrorKind::Timeout,
            AcquireError::Failed(e) => e.kind(),
        }
    }

    /// Maps the guard of an `OwnerDied` inside.
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> AcquireError<H> {
        match self {
            AcquireError::OwnerDied(d) => AcquireError::OwnerDied(d.map(f)),
            AcquireError::WouldBlock => AcquireError::WouldBlock,
            AcquireError::Timeout => AcquireError::Timeout,
            AcquireError::Failed(e) => AcquireError::Failed(e),
        }
    }
}

impl<G> From<OwnerDied<G>> for AcquireError<G> {
    fn from(d: OwnerDied<G>) -> Self {
        AcquireError::OwnerDied(d)
    }
}

impl<G> From<Error> for AcquireError<G> {
    fn from(e: Error) -> Self {
        AcquireError::Failed(e)
    }
}

impl<G> fmt::Debug for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::OwnerDied(d) => f.debug_tuple("OwnerDied").field(d).finish(),
            AcquireError::WouldBlock => f.write_str("WouldBlock"),
            AcquireError::Timeout => f.write_str("Timeout"),
            AcquireError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::OwnerDied(d) => fmt::Display::fmt(d, f),
            AcquireError::WouldBlock => f.write_str("the lock is held (or no permit is free)"),
            AcquireError::Timeout => f.write_str("the time ran out"),
            AcquireError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<G> std::error::Error for AcquireError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AcquireError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl<G> From<AcquireError<G>> for Error {
    /// An error of the same [`kind`](AcquireError::kind); an `OwnerDied`
    /// releases the lock and leaves the indication set.
    fn from(e: AcquireError<G>) -> Self {
        match e {
            AcquireError::Failed(e) => e,
            AcquireError::OwnerDied(d) => d.into(),
            AcquireError::WouldBlock | AcquireError::Timeout => Error::new(e.kind(), e.to_string()),
        }
    }
}
