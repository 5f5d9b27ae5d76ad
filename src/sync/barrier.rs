//! [`Barrier`]: make a fixed number of processes meet.
//!
//! The shared state sits behind a lock word (taking it over from a dead
//! holder breaks the barrier, since the state may be half-changed):
//!
//! - `count` arrivals in the current generation;
//! - `generation`, the futex word waiters sleep on: bits 0–30 the generation
//!   number, bit 31 *broken*;
//! - `history`, one bit per generation (number mod 64): set if that
//!   generation ended by a [`reset`](Barrier::reset) rather than by all
//!   parties arriving.
//!
//! The last arrival runs the action, zeroes `count`, writes its
//! generation's history bit (0), bumps the generation and wakes everyone.
//! A woken waiter whose generation is over reads that bit to learn whether
//! it was released or reset; one whose generation is current but broken
//! fails. A waiter that times out breaks the barrier (as in Python), so
//! the others fail at once instead of hanging. A waiter that sleeps
//! through 64 further generations could misread its history bit; that
//! needs more processes using the barrier than it has parties.
//!
//! A party that dies while waiting is not detected (it still counts as
//! arrived); give waits a timeout when parties may crash.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::check_len;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::lockword;
use crate::shm::region::Region;
use crate::sys::futex;
use crate::time::deadline_after;

/// The shared-memory layout of a [`Barrier`] (24 bytes).
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `lock` | lock word guarding the rest |
/// | 4 | `parties` | how many must arrive (fixed at creation) |
/// | 8 | `count` | arrivals in the current generation |
/// | 12 | `generation` | generation (bits 0–30), broken (bit 31); futex word |
/// | 16 | `history` | bit `g % 64`: generation `g` ended by a reset |
#[repr(C)]
pub(crate) struct BarrierLayout {
    pub(crate) lock: AtomicU32,
    pub(crate) parties: AtomicU32,
    pub(crate) count: AtomicU32,
    pub(crate) generation: AtomicU32,
    pub(crate) history: AtomicU64,
}

const LOCK: usize = std::mem::offset_of!(BarrierLayout, lock);
const PARTIES: usize = std::mem::offset_of!(BarrierLayout, parties);
const COUNT: usize = std::mem::offset_of!(BarrierLayout, count);
const GEN: usize = std::mem::offset_of!(BarrierLayout, generation);
const HISTORY: usize = std::mem::offset_of!(BarrierLayout, history);

const BROKEN: u32 = 1 << 31;
const GEN_MASK: u32 = !BROKEN;

/// A meeting point for a fixed number of processes: Python's
/// `multiprocessing.Barrier`.
///
/// Each of `parties` processes calls [`wait`](Self::wait); all of them
/// return once the last one arrives, and the barrier is ready for the next
/// round. A wait that times out (it gets [`ErrorKind::Timeout`]), an
/// [`abort`](Self::abort), a [`reset`](Self::reset) while processes wait,
/// or a panicking action *breaks* it: every other waiter, present and
/// future, gets [`ErrorKind::BrokenBarrier`] until `reset`.
///
/// The action ([`with_action`](Self::with_action)) runs in the last
/// process to arrive, before the others are released. It is a property of
/// the handle and does not travel: a handle sent to a spawn or forkserver
/// child has none (a forked child inherits it); give each process's handle
/// the action if any of them may arrive last.
///
/// ```
/// # multiproc::init();
/// let barrier = multiproc::sync::Barrier::new(1)?;
/// assert_eq!(barrier.wait()?, 0);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Barrier {
    #[serde(with = "barrier_region")]
    region: Region,
    timeout: Option<Duration>,
    #[serde(skip)]
    action: Option<fn()>,
}

mod barrier_region {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        r: &Region,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        r.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Region, D::Error> {
        let r = Region::deserialize(d)?;
        check_len(&r, size_of::<BarrierLayout>(), "Barrier")
            .map_err(crate::codec::refuse::<D::Error>)?;
        Ok(r)
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

fn broken_error(why: &str) -> Error {
    Error::new(
        ErrorKind::BrokenBarrier,
        format!("the barrier is broken: {why}"),
    )
}

impl Barrier {
    /// A barrier for `parties` processes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if `parties` is 0 or above 2^31;
    /// [`ErrorKind::Io`] if the segment cannot be created.
    pub fn new(parties: u32) -> Result<Self> {
        if parties == 0 || parties > GEN_MASK {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("a barrier needs between 1 and 2^31 - 1 parties, not {parties}"),
            ));
        }
        let region = Region::new("multiproc-barrier", size_of::<BarrierLayout>())?;
        region.u32_at(PARTIES).store(parties, Ordering::Release);
        Ok(Self {
            region,
            timeout: None,
            action: None,
        })
    }

    /// Runs `action` in this handle's process when it is the last to
    /// arrive, before the others are released (see the type's docs).
    pub fn with_action(mut self, action: fn()) -> Self {
        self.action = Some(action);
        self
    }

    /// The timeout [`wait`](Self::wait) uses (Python's `timeout`
    /// argument); it travels with the handle.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn generation(&self) -> &AtomicU32 {
        self.region.u32_at(GEN)
    }

    /// Takes the state lock; a dead holder breaks the barrier.
    fn lock(&self) -> StateLock<'_> {
        let word = self.region.u32_at(LOCK);
        let got = lockword::lock(word, None).expect("no deadline");
        if got.owner_died {
            self.generation().fetch_or(BROKEN, Ordering::Release);
            futex::wake_all(self.generation());
        }
        StateLock(word)
    }

    /// Waits for all parties; returns this process's arrival index,
    /// `0..parties` (the last to arrive gets `parties - 1`). Uses the
    /// handle's timeout, if it has one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BrokenBarrier`] if the barrier is or becomes broken, or
    /// is reset, while waiting; [`ErrorKind::Timeout`] if the handle's
    /// timeout ran out first — which breaks the barrier, as in Python, so
    /// the other waiters get `BrokenBarrier`.
    pub fn wait(&self) -> Result<u32> {
        self.wait_until(self.timeout.and_then(deadline_after))
    }

    /// [`wait`](Self::wait) with its own timeout instead of the handle's
    /// (any `Duration`: `Duration::MAX` waits as long as it takes).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait): [`ErrorKind::Timeout`] if `timeout` ran
    /// out (and the barrier is broken).
    #[doc(alias = "wait(timeout)")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_until(deadline_after(timeout))
    }

    /// [`wait`](Self::wait) until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(&self, deadline: Instant) -> Result<u32> {
        self.wait_until(Some(deadline))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32> {
        let r = &self.region;
        let held = self.lock();
        let g = self.generation().load(Ordering::Acquire);
        if g & BROKEN != 0 {
            return Err(broken_error(
                "it was aborted, reset while in use, or a wait timed out",
            ));
        }
        let parties = r.u32_at(PARTIES).load(Ordering::Relaxed);
        let index = r.u32_at(COUNT).load(Ordering::Relaxed);
        if index + 1 >= parties {
            // Last to arrive: run the action, then release this generation.
            if let Some(action) = self.action
                && std::panic::catch_unwind(action).is_err()
            {
                self.break_locked();
                drop(held);
                return Err(broken_error("the barrier's action panicked"));
            }
            r.u32_at(COUNT).store(0, Ordering::Relaxed);
            let bit = 1u64 << (g % 64);
            r.u64_at(HISTORY).fetch_and(!bit, Ordering::Relaxed);
            self.generation()
                .store(g.wrapping_add(1) & GEN_MASK, Ordering::Release);
            drop(held);
            futex::wake_all(self.generation());
            return Ok(index);
        }
        r.u32_at(COUNT).store(index + 1, Ordering::Relaxed);
        drop(held);
        loop {
            let now = self.generation().load(Ordering::Acquire);
            if now & GEN_MASK != g {
                // Our generation ended: released, or reset?
                let bit = 1u64 << (g % 64);
                if r.u64_at(HISTORY).load(Ordering::Acquire) & bit != 0 {
                    return Err(broken_error("it was reset while this process waited"));
                }
                return Ok(index);
            }
            if now & BROKEN != 0 {
                return Err(broken_error("it was aborted, or another wait timed out"));
            }
            if futex::wait_until(self.generation(), now, deadline) == futex::Woken::TimedOut {
                let held = self.lock();
                let now = self.generation().load(Ordering::Acquire);
                if now == g {
                    self.break_locked();
                    drop(held);
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        "the barrier wait timed out; the barrier is now broken",
                    ));
                }
                // Released or broken at the last moment: decide above.
            }
        }
    }

    /// Breaks the barrier; the state lock is held.
    fn break_locked(&self) {
        self.generation().fetch_or(BROKEN, Ordering::Release);
        futex::wake_all(self.generation());
    }

    /// Breaks the barrier: current and future waiters fail with
    /// [`ErrorKind::BrokenBarrier`] until [`reset`](Self::reset).
    pub fn abort(&self) {
        let _held = self.lock();
        self.break_locked();
    }

    /// Makes the barrier fresh again. Processes waiting now fail with
    /// [`ErrorKind::BrokenBarrier`]; a broken barrier becomes usable.
    pub fn reset(&self) {
        let r = &self.region;
        let held = self.lock();
        let g = self.generation().load(Ordering::Acquire) & GEN_MASK;
        let bit = 1u64 << (g % 64);
        if r.u32_at(COUNT).load(Ordering::Relaxed) > 0 {
            r.u64_at(HISTORY).fetch_or(bit, Ordering::Relaxed);
        } else {
            r.u64_at(HISTORY).fetch_and(!bit, Ordering::Relaxed);
        }
        r.u32_at(COUNT).store(0, Ordering::Relaxed);
        self.generation()
            .store(g.wrapping_add(1) & GEN_MASK, Ordering::Release);
        drop(held);
        futex::wake_all(self.generation());
    }

    /// How many processes must arrive.
    pub fn parties(&self) -> u32 {
        self.region.u32_at(PARTIES).load(Ordering::Relaxed)
    }

    /// How many are waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.region.u32_at(COUNT).load(Ordering::Relaxed)
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.generation().load(Ordering::Acquire) & BROKEN != 0
    }
}

struct StateLock<'a>(&'a AtomicU32);

impl Drop for StateLock<'_> {
    fn drop(&mut self) {
        lockword::unlock(self.0);
    }
}
