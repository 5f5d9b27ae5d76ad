//! The shared-memory ring under every queue: its layout and its algorithm.
//!
//! One anonymous segment holds a header page and a byte ring. Messages are
//! records `[len: u32][len ^ MAGIC: u32][payload, padded to 8 bytes]` laid
//! end to end; positions (`head`, `tail`) are byte counters that only grow,
//! and a position's offset in the ring is `position % cap`.
//!
//! - **Put** (under the producers' lock): write the record at `tail`, then
//!   publish it with one release store of `tail`. A producer killed before
//!   that store published nothing; its half-written bytes lie beyond `tail`
//!   and the next producer overwrites them.
//! - **Get** (under the consumers' lock): copy the record at `head` out,
//!   then retire it with one release store of `head`. A consumer killed
//!   before that store took nothing; the next consumer gets the same
//!   message.
//! - **Counts** (`put_count`, `got_count`, for `qsize`, `maxsize` and
//!   `join`) are stored right after the position, preceded by an *intent*
//!   (the position and count about to be stored). A lock taken over from a
//!   dead holder (`owner_died`) finishes the count if the dead holder's
//!   position store landed and its count store did not.
//! - **Growth** instead of blocking: when a record does not fit, the
//!   producer also takes the consumers' lock and doubles `cap` (the segment
//!   is reserved at [`MAX_CAP`] for a queue, less for a pipe's
//!   ring (`connection/rings.rs`), and only touched pages cost memory). Bytes
//!   whose offset changes under the new capacity are copied to
//!   `[cap, 2·cap)`, which the old ring never used, and then `cap` is
//!   switched with one store: a producer killed mid-growth leaves the old
//!   ring intact. So an unbounded queue never blocks a put, and `maxsize`
//!   counts messages, as in Python. A get that empties a large ring
//!   shrinks it back and gives the memory back.
//! - **Sleeping**: a waiter spins briefly, then yields, then sets a
//!   *sleepers* flag and sleeps on a sequence word's futex. The other side
//!   checks the flag after each operation (a fence and a load) and only
//!   when it is set clears it, bumps the sequence and wakes everyone. A
//!   sleeper that dies costs one extra wake, not one per operation.
//!
//! See `README.md` beside this file for the design and the measurements.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::shm::lockword;
use crate::shm::region::Region;
use crate::sys::shm::{GrowingMapping, Mapping};
use crate::sys::{futex, shm};

// The header, at offsets from the start of the segment. All-zero is a
// fresh empty queue (capacity 0 reads as MIN_CAP, maxsize 0 as unbounded).
// Each group that one side writes sits on its own 128-byte line pair.

/// u64: ring capacity in bytes, a power of two; 0 means [`MIN_CAP`].
pub(crate) const CAP: usize = 0;
/// u64: most messages the queue holds; 0 means unbounded.
pub(crate) const MAXSIZE: usize = 8;
/// u32: 1 once the queue is shut down.
pub(crate) const SHUTDOWN: usize = 16;
/// u64: when the ring last grew, in milliseconds of wall-clock time.
pub(crate) const LAST_GROW: usize = 24;

/// u32 lock word of the producers ([`crate::shm::lockword`]).
pub(crate) const PUT_LOCK: usize = 128;
/// u64: end of the published records (bytes ever put).
pub(crate) const TAIL: usize = 136;
/// u64: messages ever put.
pub(crate) const PUT_COUNT: usize = 144;
/// u64: the `TAIL` the lock holder is about to store.
pub(crate) const INTENT_TAIL: usize = 152;
/// u64: the `PUT_COUNT` that goes with `INTENT_TAIL`.
pub(crate) const INTENT_PUT: usize = 160;

/// u32 lock word of the consumers.
pub(crate) const GET_LOCK: usize = 256;
/// u64: start of the first unread record (bytes ever taken).
pub(crate) const HEAD: usize = 264;
/// u64: messages ever taken.
pub(crate) const GOT_COUNT: usize = 272;
/// u64: the `HEAD` the lock holder is about to store.
pub(crate) const INTENT_HEAD: usize = 280;
/// u64: the `GOT_COUNT` that goes with `INTENT_HEAD`.
pub(crate) const INTENT_GOT: usize = 288;

/// u32 futex: bumped when data arrives and someone sleeps for it.
pub(crate) const DATA_SEQ: usize = 384;
/// u32: 1 while some consumer may sleep on `DATA_SEQ`.
pub(crate) const DATA_SLEEPERS: usize = 388;

/// u32 futex: bumped when a message leaves and a producer sleeps for room.
pub(crate) const SPACE_SEQ: usize = 512;
/// u32: 1 while some producer may sleep on `SPACE_SEQ`.
pub(crate) const SPACE_SLEEPERS: usize = 516;

/// u64: `task_done` calls so far (JoinableQueue).
pub(crate) const DONE_COUNT: usize = 640;
/// u32 futex: bumped when `task_done` runs and someone sleeps in `join`.
pub(crate) const JOIN_SEQ: usize = 648;
/// u32: 1 while some process may sleep in `join`.
pub(crate) const JOIN_SLEEPERS: usize = 652;

/// 256 bytes the ring itself never touches, for structures built on it
/// (the pipe keeps its reader's sleep flag and its socket sequence here):
/// all-zero in a fresh ring.
pub(crate) const USER: usize = 768;

/// Where the ring starts.
pub(crate) const RING: usize = 4096;
/// The capacity of a fresh ring.
pub(crate) const MIN_CAP: u64 = 64 << 10;
/// The largest a queue's ring may grow: the segment's reserved size.
pub(crate) const MAX_CAP: u64 = 1 << 34;
/// A ring this large that a get leaves empty shrinks back to [`MIN_CAP`]
/// and gives its memory back, if it has not grown for [`SHRINK_AFTER_MS`]
/// (so a busy queue whose backlog comes and goes does not pay page faults
/// to grow again and again).
pub(crate) const SHRINK_AT: u64 = 64 << 20;
/// The capacity from which an emptied ring of `max_cap` shrinks:
/// [`SHRINK_AT`] for a queue, less for a ring reserved smaller (a pipe's
/// 256 MiB: from 16 MiB, as a pipe carries large messages through its ring
/// and should not keep their memory).
pub(crate) fn shrink_at(max_cap: u64) -> u64 {
    (max_cap / 16).clamp(MIN_CAP, SHRINK_AT)
}

/// See [`SHRINK_AT`].
pub(crate) const SHRINK_AFTER_MS: u64 = 2000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A record's header: length and check word.
const RECORD_HEADER: u64 = 8;
const MAGIC: u32 = 0x5155_4555; // "QUEU"

/// The largest payload one message may have in a ring of `max_cap`.
fn max_message(max_cap: u64) -> usize {
    (max_cap / 2) as usize - RECORD_HEADER as usize
}

/// How long a waiter spins, then yields, before it sleeps.
const SPIN: Duration = Duration::from_micros(20);
const YIELD: Duration = Duration::from_micros(100);
/// Pause instructions between two looks while spinning.
const SPIN_PAUSES: u32 = 1;

/// How a blocking operation waits.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all (the `try_` forms).
    No,
    /// Until the deadline (`None`: forever).
    Until(Option<Instant>),
}

impl Wait {
    pub(crate) fn timeout(d: Duration) -> Self {
        Wait::Until(Instant::now().checked_add(d))
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::No => None,
            Wait::Until(d) => d,
        }
    }

    fn expired(self) -> bool {
        match self {
            Wait::No => true,
            Wait::Until(None) => false,
            Wait::Until(Some(d)) => Instant::now() >= d,
        }
    }
}

/// Why an operation on the ring did not happen.
#[derive(Debug)]
pub(crate) enum Fail {
    /// Full (try), or empty (try).
    WouldBlock,
    /// The deadline passed.
    Timeout,
    /// Shut down (and, for a get, empty).
    Closed,
    /// Anything else: a message too large, a corrupt ring.
    Error(Error),
}

/// A point inside an operation where crash tests stop a process (see
/// `Queue::__stall_put`): the worst moments to die.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Put: half the payload copied into the ring.
    PutRecord,
    /// Put: growing, the moved bytes copied, the new capacity not stored.
    PutGrow,
    /// Put: `TAIL` stored, `PUT_COUNT` not.
    PutPublished,
    /// Get: half the payload copied out.
    GetRecord,
    /// Get: `HEAD` stored, `GOT_COUNT` not.
    GetRetired,
}

/// Called at each [`Stage`] (crash tests only; `None` in real use).
pub(crate) type Hook<'a> = Option<&'a dyn Fn(Stage)>;

fn at(hook: Hook<'_>, stage: Stage) {
    if let Some(h) = hook {
        h(stage)
    }
}

/// A handle on one queue's shared memory. Cloning shares the mapping.
#[derive(Clone, Debug)]
pub(crate) struct Ring {
    /// The header page, which travels to other processes (its segment
    /// holds the ring too, beyond the header).
    region: Region,
    /// This process's mapping of the ring itself, as large as the largest
    /// capacity it has seen.
    data: Arc<GrowingMapping>,
    seen: Arc<Seen>,
    /// The reserved capacity: the segment's length less the header.
    max_cap: u64,
}

/// What this process last saw of the other side's position. Positions only
/// grow, so a stale value is a safe lower bound: a producer rereads `HEAD`
/// (a cache line the consumers write) only when the space it knows of is
/// not enough, and a consumer rereads `TAIL` only when the messages it
/// knows of are used up. So while one side runs ahead, the other reads the
/// shared positions once per batch instead of once per message.
#[derive(Debug, Default)]
struct Seen {
    head: AtomicU64,
    tail: AtomicU64,
}

fn record_len(len: usize) -> u64 {
    RECORD_HEADER + (len as u64).next_multiple_of(8)
}

impl Ring {
    /// A fresh empty ring; `maxsize` 0 is unbounded.
    pub(crate) fn new(maxsize: u64) -> Result<Self, Error> {
        Self::with_max_cap(maxsize, MAX_CAP)
    }

    /// A fresh empty ring that may grow to `max_cap` bytes (a power of two
    /// from [`MIN_CAP`] to [`MAX_CAP`]).
    pub(crate) fn with_max_cap(maxsize: u64, max_cap: u64) -> Result<Self, Error> {
        debug_assert!(max_cap.is_power_of_two() && (MIN_CAP..=MAX_CAP).contains(&max_cap));
        let region = Region::new_sparse("multiproc-queue", RING + max_cap as usize, RING)?;
        shm::reserve(region.fd(), RING as u64, MIN_CAP).map_err(|e| {
            Error::io(
                "could not reserve a queue's first pages (is /dev/shm full?)",
                e,
            )
        })?;
        let ring = Self::with_region(region, max_cap)?;
        ring.a64(MAXSIZE).store(maxsize, Ordering::Release);
        Ok(ring)
    }

    fn with_region(region: Region, max_cap: u64) -> Result<Self, Error> {
        let data = GrowingMapping::new(region.fd(), RING, MIN_CAP as usize).map_err(no_room)?;
        Ok(Ring {
            region,
            data: Arc::new(data),
            seen: Arc::default(),
            max_cap,
        })
    }

    /// A ring received from another process: checks the segment's length
    /// (the header and a power-of-two capacity no larger than a queue's).
    pub(crate) fn from_region(region: Region) -> Result<Self, String> {
        let max_cap = region.size().saturating_sub(RING) as u64;
        if region.len() != RING
            || !max_cap.is_power_of_two()
            || !(MIN_CAP..=MAX_CAP).contains(&max_cap)
        {
            return Err(format!(
                "a ring's segment is {} bytes of which {} travel, not {RING} plus a power of two from {MIN_CAP} to {MAX_CAP}",
                region.size(),
                region.len()
            ));
        }
        Self::with_region(region, max_cap).map_err(|e| e.to_string())
    }

    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    #[inline(always)]
    fn a32(&self, off: usize) -> &AtomicU32 {
        self.region.u32_at(off)
    }

    #[inline(always)]
    fn a64(&self, off: usize) -> &AtomicU64 {
        self.region.u64_at(off)
    }

    /// The capacity, with this process's mapping made to cover it; an
    /// error if the header was overwritten or the mapping cannot grow.
    #[inline]
    fn cap(&self) -> Result<u64, Error> {
        let cap = match self.a64(CAP).load(Ordering::Acquire) {
            0 => MIN_CAP,
            c if c & (c - 1) == 0 && (MIN_CAP..=self.max_cap).contains(&c) => c,
            c => return Err(corrupt(format!("its capacity reads {c}"))),
        };
        self.data
            .at_least(self.region.fd(), cap as usize)
            .map_err(no_room)?;
        Ok(cap)
    }

    /// The ring's bytes as mapped here: at least the capacity last
    /// returned by [`cap`](Self::cap).
    #[inline(always)]
    fn ring(&self) -> &Mapping {
        self.data.get()
    }

    pub(crate) fn maxsize(&self) -> u64 {
        self.a64(MAXSIZE).load(Ordering::Relaxed)
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.a32(SHUTDOWN).load(Ordering::Acquire) != 0
    }

    /// Messages in the queue now (approximate while others operate).
    pub(crate) fn len(&self) -> u64 {
        let got = self.a64(GOT_COUNT).load(Ordering::Acquire);
        let put = self.a64(PUT_COUNT).load(Ordering::Acquire);
        put.saturating_sub(got)
    }

    pub(crate) fn is_empty(&self) -> bool {
        let head = self.a64(HEAD).load(Ordering::Acquire);
        head >= self.seen.tail.load(Ordering::Acquire) && head == self.load_tail()
    }

    /// Loads `TAIL` and remembers it.
    fn load_tail(&self) -> u64 {
        let tail = self.a64(TAIL).load(Ordering::Acquire);
        self.seen.tail.fetch_max(tail, Ordering::AcqRel);
        tail
    }

    pub(crate) fn is_full(&self) -> bool {
        let max = self.maxsize();
        max != 0 && self.len() >= max
    }

    /// The ring's current capacity in bytes.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> u64 {
        self.cap().unwrap_or(0)
    }

    /// Shuts the queue down: puts fail from now on, gets drain what is left
    /// and then fail. Wakes every sleeper.
    pub(crate) fn shut_down(&self) {
        self.a32(SHUTDOWN).store(1, Ordering::Release);
        for seq in [DATA_SEQ, SPACE_SEQ] {
            self.a32(seq).fetch_add(1, Ordering::AcqRel);
            futex::wake_all(self.a32(seq));
        }
    }

    // ---- writing and reading records ----

    fn write_wrapped(&self, pos: u64, bytes: &[u8], cap: u64) {
        let off = (pos & (cap - 1)) as usize;
        let first = bytes.len().min(cap as usize - off);
        let map = self.ring();
        map.write(off, &bytes[..first]);
        if first < bytes.len() {
            map.write(0, &bytes[first..]);
        }
    }

    fn read_wrapped(&self, pos: u64, out: &mut [u8], cap: u64) {
        let off = (pos & (cap - 1)) as usize;
        let first = out.len().min(cap as usize - off);
        let map = self.ring();
        let (a, b) = out.split_at_mut(first);
        map.read(off, a);
        if !b.is_empty() {
            map.read(0, b);
        }
    }

    // ---- put ----

    /// Puts one encoded message.
    pub(crate) fn put(&self, bytes: &[u8], wait: Wait) -> Result<(), Fail> {
        self.put_hooked(bytes, wait, None)
    }

    /// [`put`](Self::put), calling `hook` at each [`Stage`].
    pub(crate) fn put_hooked(&self, bytes: &[u8], wait: Wait, hook: Hook<'_>) -> Result<(), Fail> {
        let most = max_message(self.max_cap);
        if bytes.len() > most {
            return Err(Fail::Error(Error::new(
                ErrorKind::MessageTooLarge,
                format!(
                    "a message of {} bytes is larger than a queue holds ({most} bytes)",
                    bytes.len()
                ),
            )));
        }
        loop {
            let lock = self.a32(PUT_LOCK);
            let Some(acquired) = lockword::lock(lock, wait.deadline()) else {
                return Err(Fail::Timeout);
            };
            if acquired.owner_died {
                self.repair_put();
            }
            let result = self.put_locked(bytes, wait, hook);
            lockword::unlock(lock);
            match result {
                Ok(true) => {
                    self.notify(DATA_SEQ, DATA_SLEEPERS);
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => return Err(e),
            }
            // Full (bounded): wait for a get.
            if matches!(wait, Wait::No) {
                return Err(Fail::WouldBlock);
            }
            if wait.expired() {
                return Err(Fail::Timeout);
            }
            self.sleep(SPACE_SEQ, SPACE_SLEEPERS, wait.deadline(), || {
                !self.is_full() || self.is_shut_down()
            });
        }
    }

    /// With the producers' lock: `Ok(false)` if the queue is full.
    fn put_locked(&self, bytes: &[u8], wait: Wait, hook: Hook<'_>) -> Result<bool, Fail> {
        self.put_locked_parts(&[bytes], wait, hook)
    }

    /// [`put_locked`](Self::put_locked) of one record made of `parts` laid
    /// end to end (the hook, if any, sees the first part as the payload).
    fn put_locked_parts(&self, parts: &[&[u8]], wait: Wait, hook: Hook<'_>) -> Result<bool, Fail> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if self.is_shut_down() {
            return Err(Fail::Closed);
        }
        let count = self.a64(PUT_COUNT).load(Ordering::Relaxed);
        let max = self.maxsize();
        if max != 0 && count.saturating_sub(self.a64(GOT_COUNT).load(Ordering::Acquire)) >= max {
            return Ok(false);
        }
        let rec = record_len(total);
        let tail = self.a64(TAIL).load(Ordering::Relaxed);
        // Positions and counts only grow and cannot reach 2^64 (that many
        // bytes would take centuries): near it, the header was scribbled on.
        let (Some(new_tail), Some(new_count)) = (tail.checked_add(rec), count.checked_add(1))
        else {
            return Err(Fail::Error(corrupt(format!(
                "its tail reads {tail} and its put count {count}"
            ))));
        };
        let mut cap = self.cap().map_err(Fail::Error)?;
        // A remembered HEAD past TAIL can only come from corrupt memory:
        // ignore it, or we would overwrite unread records.
        let mut head = self.seen.head.load(Ordering::Acquire);
        if head > tail {
            head = 0;
        }
        if cap.saturating_sub(tail.saturating_sub(head)) < rec {
            // Not enough room as far as we knew: look again.
            head = self.a64(HEAD).load(Ordering::Acquire);
            self.seen.head.fetch_max(head, Ordering::AcqRel);
            let used = tail.wrapping_sub(head);
            if used > cap {
                return Err(Fail::Error(corrupt(format!(
                    "{used} bytes are in use in a ring of {cap}"
                ))));
            }
            if cap - used < rec {
                cap = self.grow(tail, rec, wait, hook)?;
            }
        }
        let len = total as u32;
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&(len ^ MAGIC).to_le_bytes());
        self.write_wrapped(tail, &header, cap);
        if let (Some(_), [bytes]) = (hook, parts) {
            let half = bytes.len() / 2;
            self.write_wrapped(tail + RECORD_HEADER, &bytes[..half], cap);
            at(hook, Stage::PutRecord);
            self.write_wrapped(tail + RECORD_HEADER + half as u64, &bytes[half..], cap);
        } else {
            let mut pos = tail + RECORD_HEADER;
            for part in parts {
                self.write_wrapped(pos, part, cap);
                pos += part.len() as u64;
            }
        }
        self.a64(INTENT_TAIL).store(new_tail, Ordering::Release);
        self.a64(INTENT_PUT).store(new_count, Ordering::Release);
        self.a64(TAIL).store(new_tail, Ordering::Release);
        at(hook, Stage::PutPublished);
        self.a64(PUT_COUNT).store(new_count, Ordering::Release);
        Ok(true)
    }

    /// Puts one record made of `parts` laid end to end, waiting only for
    /// the producers' lock (the pipe's rings are unbounded).
    pub(crate) fn put_parts(&self, parts: &[&[u8]]) -> Result<(), Fail> {
        self.put_built(|_| Ok(((), Vec::new())), parts, |()| Ok(()))
    }

    /// Under the producers' lock: runs `before` (which may read and change
    /// the [`USER`] words, e.g. to number the record) and puts the record
    /// made of `parts` followed by the bytes `before` gave; then runs
    /// `after` with the value `before` gave, still holding the lock (the
    /// pipe sends what goes with the record on its socket there, so that
    /// the socket's order is the ring's). An error from `before` puts
    /// nothing.
    pub(crate) fn put_built<V>(
        &self,
        before: impl FnOnce(&Self) -> Result<(V, Vec<u8>), Error>,
        parts: &[&[u8]],
        after: impl FnOnce(V) -> Result<(), Error>,
    ) -> Result<(), Fail> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let most = max_message(self.max_cap);
        if total > most {
            return Err(Fail::Error(Error::new(
                ErrorKind::MessageTooLarge,
                format!("a message of {total} bytes is larger than a ring holds ({most} bytes)"),
            )));
        }
        let lock = self.a32(PUT_LOCK);
        let Some(acquired) = lockword::lock(lock, None) else {
            return Err(Fail::Timeout);
        };
        if acquired.owner_died {
            self.repair_put();
        }
        let result = before(self).map_err(Fail::Error).and_then(|(v, extra)| {
            let published = if extra.is_empty() {
                self.put_locked_parts(parts, Wait::Until(None), None)?
            } else {
                let mut all = parts.to_vec();
                all.push(&extra);
                self.put_locked_parts(&all, Wait::Until(None), None)?
            };
            if published {
                after(v).map_err(Fail::Error)
            } else {
                Err(Fail::WouldBlock)
            }
        });
        lockword::unlock(lock);
        self.notify(DATA_SEQ, DATA_SLEEPERS);
        result
    }

    /// Waits until fewer than `bytes` bytes of records are in the ring, or
    /// `deadline` passes (spurious returns allowed): spins, yields, then
    /// sleeps until a get wakes it (the pipe's backpressure).
    pub(crate) fn wait_below(&self, bytes: u64, deadline: Option<Instant>) {
        self.sleep(SPACE_SEQ, SPACE_SLEEPERS, deadline, || {
            self.bytes_used() < bytes
        });
    }

    /// Bytes of records in the ring now (a snapshot).
    pub(crate) fn bytes_used(&self) -> u64 {
        let head = self.a64(HEAD).load(Ordering::Acquire);
        self.a64(TAIL).load(Ordering::Acquire).saturating_sub(head)
    }

    /// The 32-bit word at `USER + off`.
    pub(crate) fn user_u32(&self, off: usize) -> &AtomicU32 {
        self.a32(USER + off)
    }

    /// The 64-bit word at `USER + off`.
    pub(crate) fn user_u64(&self, off: usize) -> &AtomicU64 {
        self.a64(USER + off)
    }

    /// Whether a process holds the producers' lock and is alive: its puts
    /// may still be under way.
    pub(crate) fn producer_busy(&self) -> bool {
        lockword::holder(self.a32(PUT_LOCK)).is_some_and(|pid| !crate::sys::process::is_dead(pid))
    }

    /// Finishes what a producer that died holding the lock left: if its
    /// `TAIL` store landed, its `PUT_COUNT` store must land too.
    fn repair_put(&self) {
        let intent = self.a64(INTENT_TAIL).load(Ordering::Acquire);
        if intent == self.a64(TAIL).load(Ordering::Acquire) {
            let count = self.a64(INTENT_PUT).load(Ordering::Acquire);
            self.a64(PUT_COUNT).store(count, Ordering::Release);
        }
    }

    /// With the producers' lock: makes room for `rec` more bytes by
    /// doubling the ring, under the consumers' lock too. Returns the new
    /// capacity.
    fn grow(&self, tail: u64, rec: u64, wait: Wait, hook: Hook<'_>) -> Result<u64, Fail> {
        let lock = self.a32(GET_LOCK);
        let Some(acquired) = lockword::lock(lock, wait.deadline()) else {
            return Err(Fail::Timeout);
        };
        if acquired.owner_died {
            self.repair_get();
        }
        let result = self.grow_locked(tail, rec, hook);
        lockword::unlock(lock);
        result
    }

    fn grow_locked(&self, tail: u64, rec: u64, hook: Hook<'_>) -> Result<u64, Fail> {
        let cap = self.cap().map_err(Fail::Error)?;
        let head = self.a64(HEAD).load(Ordering::Acquire);
        let used = tail.wrapping_sub(head);
        let mut new_cap = cap;
        while new_cap - used < rec {
            new_cap *= 2;
            if new_cap > self.max_cap {
                let max_cap = self.max_cap;
                return Err(Fail::Error(Error::new(
                    ErrorKind::MessageTooLarge,
                    format!(
                        "the queue holds {used} bytes and cannot grow past {max_cap} to take {rec} more"
                    ),
                )));
            }
        }
        if new_cap == cap {
            return Ok(cap); // consumers made room meanwhile
        }
        // Pages first, then the mapping: a full /dev/shm or an
        // address-space limit is an error here, with the old ring intact.
        shm::reserve(self.region.fd(), RING as u64 + cap, new_cap - cap)
            .map_err(|e| Fail::Error(no_room(e)))?;
        let map = self
            .data
            .at_least(self.region.fd(), new_cap as usize)
            .map_err(|e| Fail::Error(no_room(e)))?;
        // Copy every byte whose offset changes to its new offset. New
        // offsets that differ lie in [cap, new_cap), which the old ring
        // never used: nothing live is overwritten. Chunks never cross a
        // multiple of `cap`, so each is contiguous in both rings.
        let mut buf = Vec::new();
        let mut pos = head;
        while pos != tail {
            let old_off = pos & (cap - 1);
            let chunk = (cap - old_off).min(tail - pos).min(1 << 20);
            let new_off = pos & (new_cap - 1);
            if new_off != old_off {
                buf.resize(chunk as usize, 0);
                map.read(old_off as usize, &mut buf);
                map.write(new_off as usize, &buf);
            }
            pos += chunk;
        }
        at(hook, Stage::PutGrow);
        self.a64(CAP).store(new_cap, Ordering::Release);
        self.a64(LAST_GROW).store(now_ms(), Ordering::Relaxed);
        Ok(new_cap)
    }

    // ---- get ----

    /// Takes one message into `out` (grown as needed); returns its length.
    pub(crate) fn get(&self, out: &mut Vec<u8>, wait: Wait) -> Result<usize, Fail> {
        self.get_hooked(out, wait, None)
    }

    /// [`get`](Self::get), calling `hook` at each [`Stage`].
    pub(crate) fn get_hooked(
        &self,
        out: &mut Vec<u8>,
        wait: Wait,
        hook: Hook<'_>,
    ) -> Result<usize, Fail> {
        loop {
            if !self.is_empty() {
                let lock = self.a32(GET_LOCK);
                let Some(acquired) = lockword::lock(lock, wait.deadline()) else {
                    return Err(Fail::Timeout);
                };
                if acquired.owner_died {
                    self.repair_get();
                }
                let result = self.get_locked(out, hook);
                lockword::unlock(lock);
                match result {
                    Ok(Some(n)) => {
                        self.notify(SPACE_SEQ, SPACE_SLEEPERS);
                        return Ok(n);
                    }
                    Ok(None) => {} // another consumer was first
                    Err(e) => return Err(Fail::Error(e)),
                }
            }
            if self.is_shut_down() && self.is_empty() {
                return Err(Fail::Closed);
            }
            if matches!(wait, Wait::No) {
                return Err(Fail::WouldBlock);
            }
            if wait.expired() {
                return Err(Fail::Timeout);
            }
            self.sleep(DATA_SEQ, DATA_SLEEPERS, wait.deadline(), || {
                !self.is_empty() || self.is_shut_down()
            });
        }
    }

    /// With the consumers' lock: `Ok(None)` if empty.
    fn get_locked(&self, out: &mut Vec<u8>, hook: Hook<'_>) -> Result<Option<usize>, Error> {
        let head = self.a64(HEAD).load(Ordering::Relaxed);
        let mut tail = self.seen.tail.load(Ordering::Acquire);
        if tail <= head {
            tail = self.load_tail();
            if tail == head {
                return Ok(None);
            }
        }
        let cap = self.cap()?;
        let used = tail.wrapping_sub(head);
        if used > cap || !used.is_multiple_of(8) {
            return Err(self.discard_all(format!("{used} bytes are in use in a ring of {cap}")));
        }
        let mut header = [0u8; 8];
        self.read_wrapped(head, &mut header, cap);
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let check = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let rec = record_len(len as usize);
        if check != len ^ MAGIC || rec > used {
            return Err(self.discard_all(format!(
                "a record header reads length {len}, check {check:#x}, with {used} bytes in use"
            )));
        }
        let len = len as usize;
        if out.len() < len {
            out.resize(len, 0);
        }
        if hook.is_some() {
            let half = len / 2;
            self.read_wrapped(head.wrapping_add(RECORD_HEADER), &mut out[..half], cap);
            at(hook, Stage::GetRecord);
            let second = head.wrapping_add(RECORD_HEADER + half as u64);
            self.read_wrapped(second, &mut out[half..len], cap);
        } else {
            self.read_wrapped(head.wrapping_add(RECORD_HEADER), &mut out[..len], cap);
        }
        // Positions count modulo 2^64 (the capacity, a power of two,
        // divides it): a head scribbled to near u64::MAX wraps like the
        // tail it is compared with, through `used` above.
        let new_head = head.wrapping_add(rec);
        // A count at u64::MAX was scribbled on; wrapping keeps the ring
        // usable (counts only feed qsize and join).
        let got = self.a64(GOT_COUNT).load(Ordering::Relaxed).wrapping_add(1);
        self.a64(INTENT_HEAD).store(new_head, Ordering::Release);
        self.a64(INTENT_GOT).store(got, Ordering::Release);
        self.a64(HEAD).store(new_head, Ordering::Release);
        at(hook, Stage::GetRetired);
        self.a64(GOT_COUNT).store(got, Ordering::Release);
        if cap >= shrink_at(self.max_cap) && new_head == tail {
            self.maybe_shrink(new_head);
        }
        Ok(Some(len))
    }

    /// With the consumers' lock, after a get that emptied a large ring: if
    /// the producers' lock is free and the ring is still empty, shrinks it
    /// to [`MIN_CAP`] (one store: an empty ring is valid under any
    /// capacity) and gives the rest of its memory back. Never waits for
    /// the producers' lock (a producer holding it may be waiting for ours,
    /// to grow).
    fn maybe_shrink(&self, head: u64) {
        let grown = self.a64(LAST_GROW).load(Ordering::Relaxed);
        if now_ms().saturating_sub(grown) < SHRINK_AFTER_MS {
            return;
        }
        let lock = self.a32(PUT_LOCK);
        let Some(acquired) = lockword::try_lock(lock) else {
            return;
        };
        if acquired.owner_died {
            self.repair_put();
        }
        let Ok(cap) = self.cap() else {
            lockword::unlock(lock);
            return;
        };
        let empty = self.a64(TAIL).load(Ordering::Acquire) == head;
        if empty {
            self.a64(CAP).store(MIN_CAP, Ordering::Release);
        }
        lockword::unlock(lock);
        if empty {
            // Producers now write below MIN_CAP only, and growing again
            // needs the consumers' lock, which we hold.
            let _ = shm::punch_hole(self.region.fd(), (RING as u64) + MIN_CAP, cap - MIN_CAP);
        }
    }

    /// Finishes what a consumer that died holding the lock left.
    fn repair_get(&self) {
        let intent = self.a64(INTENT_HEAD).load(Ordering::Acquire);
        if intent == self.a64(HEAD).load(Ordering::Acquire) {
            let count = self.a64(INTENT_GOT).load(Ordering::Acquire);
            self.a64(GOT_COUNT).store(count, Ordering::Release);
        }
    }

    /// With the consumers' lock, after finding the ring corrupt: drops
    /// every message in it so that later puts and gets work again.
    fn discard_all(&self, what: String) -> Error {
        let tail = self.a64(TAIL).load(Ordering::Acquire);
        let put = self.a64(PUT_COUNT).load(Ordering::Acquire);
        self.a64(INTENT_HEAD).store(tail, Ordering::Release);
        self.a64(INTENT_GOT).store(put, Ordering::Release);
        self.a64(HEAD).store(tail, Ordering::Release);
        self.a64(GOT_COUNT).store(put, Ordering::Release);
        // What this process remembered may be as wrong as the header was.
        self.seen.head.store(tail, Ordering::Release);
        self.seen.tail.store(tail, Ordering::Release);
        corrupt(format!("{what}; the messages in it were discarded"))
    }

    // ---- JoinableQueue ----

    /// One taken message is finished.
    pub(crate) fn task_done(&self) -> Result<(), Error> {
        let done = self.a64(DONE_COUNT);
        let mut d = done.load(Ordering::Acquire);
        loop {
            if d >= self.a64(GOT_COUNT).load(Ordering::Acquire) {
                return Err(Error::new(
                    ErrorKind::TaskDone,
                    "task_done() called more times than messages were taken from the queue",
                ));
            }
            match done.compare_exchange_weak(d, d + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => d = now,
            }
        }
        self.notify(JOIN_SEQ, JOIN_SLEEPERS);
        Ok(())
    }

    /// Messages put and not yet marked done.
    pub(crate) fn unfinished(&self) -> u64 {
        let done = self.a64(DONE_COUNT).load(Ordering::Acquire);
        self.a64(PUT_COUNT)
            .load(Ordering::Acquire)
            .saturating_sub(done)
    }

    /// Waits until every message put has been marked done. `false`: the
    /// deadline passed first.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.unfinished() == 0 {
                return true;
            }
            if crate::time::expired(deadline) {
                return false;
            }
            self.sleep(JOIN_SEQ, JOIN_SLEEPERS, deadline, || self.unfinished() == 0);
        }
    }

    // ---- sleeping and waking ----

    /// After changing what sleepers on `seq` wait for: wakes them, if the
    /// flag says there may be some.
    ///
    /// Every caller has just done an atomic read-modify-write (the unlock's
    /// swap, `task_done`'s compare-and-swap) after the stores that sleepers
    /// wait for, so on x86 (where a locked instruction is a full barrier)
    /// only the compiler must be kept from hoisting the flag's load above
    /// it; elsewhere this is a real fence. This saves an `mfence` (tens of
    /// cycles) per put and per get.
    fn notify(&self, seq: usize, sleepers: usize) {
        fence_after_rmw();
        let flag = self.a32(sleepers);
        if flag.load(Ordering::Relaxed) != 0 && flag.swap(0, Ordering::SeqCst) != 0 {
            self.a32(seq).fetch_add(1, Ordering::AcqRel);
            futex::wake_all(self.a32(seq));
        }
    }

    /// For a wait on many objects (`connection::wait`): `None` if a get
    /// would not wait (a message is there or the queue is shut down);
    /// otherwise asks putters to wake the data futex and returns it with the
    /// value to sleep on.
    pub(crate) fn arm_get(&self) -> Option<(&AtomicU32, u32)> {
        let ready = || !self.is_empty() || self.is_shut_down();
        if ready() {
            return None;
        }
        let word = self.a32(DATA_SEQ);
        let before = word.load(Ordering::Acquire);
        self.a32(DATA_SLEEPERS).swap(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if ready() {
            return None;
        }
        Some((word, before))
    }

    /// Whether a get would not wait (`connection::wait`).
    pub(crate) fn get_ready(&self) -> bool {
        !self.is_empty() || self.is_shut_down()
    }

    /// Waits until a get (`for_get`) or a put may succeed, the queue is shut
    /// down, or `deadline` passes, without taking or putting anything (the
    /// async forms; spurious returns allowed).
    #[cfg(feature = "async")]
    pub(crate) fn wait_ready(&self, for_get: bool, deadline: Instant) {
        if for_get {
            self.sleep(DATA_SEQ, DATA_SLEEPERS, Some(deadline), || {
                !self.is_empty() || self.is_shut_down()
            });
        } else {
            self.sleep(SPACE_SEQ, SPACE_SLEEPERS, Some(deadline), || {
                !self.is_full() || self.is_shut_down()
            });
        }
    }

    /// Waits until `ready()` may hold (spurious returns allowed): spins,
    /// yields, then sleeps on `seq` until a notify or the deadline.
    fn sleep(
        &self,
        seq: usize,
        sleepers: usize,
        deadline: Option<Instant>,
        ready: impl Fn() -> bool,
    ) {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if ready() {
                return;
            }
            spins += 1;
            if spins.is_multiple_of(64) {
                let waited = start.elapsed();
                if waited >= SPIN + YIELD || crate::time::expired(deadline) {
                    break;
                }
                if waited >= SPIN {
                    std::thread::yield_now();
                }
            }
            // Look less often than every cycle: each look pulls a cache
            // line the other side is writing, and stalls it.
            for _ in 0..SPIN_PAUSES {
                std::hint::spin_loop();
            }
        }
        let word = self.a32(seq);
        let before = word.load(Ordering::Acquire);
        self.a32(sleepers).swap(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if ready() {
            return;
        }
        futex::wait_until(word, before, deadline);
    }
}

/// For the fuzz target and its unit test: scribbles `data` over the header
/// fields another process could corrupt (not the lock and futex words,
/// which only ever hold what the lock code writes) and the first bytes of
/// the ring, then runs every non-blocking operation. Whatever the bytes,
/// each gives a value or an error: never a panic, a hang or an access
/// outside the mapping. The capacity is kept at most 1 MiB so that a
/// record header cannot make the fuzzer allocate gigabytes (a corrupt
/// queue may make one get allocate up to the ring's capacity).
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn fuzz(data: &[u8]) {
    thread_local! {
        static FUZZ_RING: Ring = Ring::new(0).expect("a queue for fuzzing");
    }
    FUZZ_RING.with(|r| {
        let mut words = data.chunks(8).map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        });
        for field in [
            CAP,
            MAXSIZE,
            TAIL,
            PUT_COUNT,
            INTENT_TAIL,
            INTENT_PUT,
            HEAD,
            GOT_COUNT,
            INTENT_HEAD,
            INTENT_GOT,
            DONE_COUNT,
        ] {
            let Some(mut w) = words.next() else { break };
            if field == CAP {
                w &= (1 << 20) - 1;
            }
            r.a64(field).store(w, Ordering::Relaxed);
        }
        r.a32(SHUTDOWN)
            .store(u32::from(data.first() == Some(&7)), Ordering::Relaxed);
        let rest = data.get(88..).unwrap_or(&[]);
        r.ring().write(0, &rest[..rest.len().min(MIN_CAP as usize)]);
        r.seen.head.store(0, Ordering::Relaxed);
        r.seen.tail.store(0, Ordering::Relaxed);
        let mut out = Vec::new();
        for _ in 0..3 {
            let _ = r.get(&mut out, Wait::No);
        }
        let _ = r.put(b"fuzz", Wait::No);
        let _ = r.get(&mut out, Wait::No);
        let _ = (r.len(), r.is_empty(), r.is_full(), r.unfinished());
        let _ = r.task_done();
        let _ = r.join(Some(Instant::now()));
        // Leave a sane queue for the next input.
        for off in [CAP, MAXSIZE, TAIL, PUT_COUNT, INTENT_TAIL, INTENT_PUT] {
            r.a64(off).store(0, Ordering::Relaxed);
        }
        for off in [HEAD, GOT_COUNT, INTENT_HEAD, INTENT_GOT, DONE_COUNT] {
            r.a64(off).store(0, Ordering::Relaxed);
        }
        r.a32(SHUTDOWN).store(0, Ordering::Relaxed);
    });
}

/// A store-load fence for code that has just executed an atomic
/// read-modify-write; see [`Ring::notify`].
#[inline(always)]
pub(crate) fn fence_after_rmw() {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    fence(Ordering::SeqCst);
}

/// The error for a ring that cannot get the memory or the address space
/// it needs; says what to do about it.
fn no_room(e: std::io::Error) -> Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOMEM) => {
            "; this process is out of address space or memory (see `ulimit -v`, RLIMIT_AS): \
             raise the limit, or hold fewer or smaller queues and pipes"
        }
        Some(libc::ENOSPC) => "; /dev/shm (or the memory cgroup) is full",
        _ => "",
    };
    Error::io(
        format!("a queue's ring could not be mapped or grown{hint}"),
        e,
    )
}

fn corrupt(what: String) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("the queue's shared memory is corrupt: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout other processes rely on: every field where the docs say,
    /// on its own line pair per writer, inside the header page.
    #[test]
    fn layout_is_pinned() {
        assert_eq!([CAP, MAXSIZE, SHUTDOWN], [0, 8, 16], "configuration line");
        assert_eq!(
            [PUT_LOCK, TAIL, PUT_COUNT, INTENT_TAIL, INTENT_PUT],
            [128, 136, 144, 152, 160]
        );
        assert_eq!(
            [GET_LOCK, HEAD, GOT_COUNT, INTENT_HEAD, INTENT_GOT],
            [256, 264, 272, 280, 288]
        );
        assert_eq!([DATA_SEQ, DATA_SLEEPERS], [384, 388]);
        assert_eq!([SPACE_SEQ, SPACE_SLEEPERS], [512, 516]);
        assert_eq!([DONE_COUNT, JOIN_SEQ, JOIN_SLEEPERS], [640, 648, 652]);
        assert_eq!(USER, 768);
        assert_eq!(RING, 4096);
        assert!(MIN_CAP.is_power_of_two() && MAX_CAP.is_power_of_two());
        assert_eq!(record_len(0), 8);
        assert_eq!(record_len(1), 16);
        assert_eq!(record_len(8), 16);
    }

    #[test]
    fn a_smaller_ring_reserves_less_and_a_received_segment_is_checked() {
        const PIPE_MAX_CAP: u64 = 1 << 28;
        let queue = Ring::new(0).unwrap();
        assert_eq!(queue.region().size(), 4096 + (16 << 30));
        assert_eq!(queue.region().len(), 4096, "only the header is mapped");
        assert_eq!(queue.ring().len(), MIN_CAP as usize, "and the ring in use");
        let pipe = Ring::with_max_cap(0, PIPE_MAX_CAP).unwrap();
        assert_eq!(pipe.region().size(), 4096 + (256 << 20));
        // What travels is the segment; its length says the capacity.
        let again = Ring::from_region(pipe.region().clone()).unwrap();
        assert_eq!(again.max_cap, PIPE_MAX_CAP);
        for (size, mapped) in [
            (4096, 4096),
            (4096 + 3 * MIN_CAP as usize, 4096),
            (100, 100),
            (4096 + MIN_CAP as usize, 8192),
        ] {
            let region = Region::new_sparse("test", size, mapped).unwrap();
            assert!(
                Ring::from_region(region).is_err(),
                "{size}/{mapped} accepted"
            );
        }
        // A small ring refuses a message larger than half of it, and a
        // backlog it cannot hold, with an error rather than a hang.
        let small = Ring::with_max_cap(0, MIN_CAP).unwrap();
        let too_big = vec![0u8; MIN_CAP as usize];
        assert!(
            matches!(small.put(&too_big, Wait::No), Err(Fail::Error(e)) if e.kind() == ErrorKind::MessageTooLarge)
        );
        let half = vec![1u8; (MIN_CAP / 2) as usize - 64];
        small.put(&half, Wait::No).unwrap();
        small.put(&half, Wait::No).unwrap();
        assert!(
            matches!(small.put(&half, Wait::No), Err(Fail::Error(e)) if e.kind() == ErrorKind::MessageTooLarge)
        );
        assert_eq!(get_vec(&small, Wait::No).unwrap(), half);
    }

    fn get_vec(r: &Ring, wait: Wait) -> Result<Vec<u8>, Fail> {
        let mut out = Vec::new();
        let n = r.get(&mut out, wait)?;
        out.truncate(n);
        Ok(out)
    }

    #[test]
    fn fifo_across_wrap_and_growth() {
        let r = Ring::new(0).unwrap();
        assert_eq!(r.capacity(), MIN_CAP);
        // Wrap a few times with messages of odd sizes.
        let mut next_out = 0u32;
        for i in 0..20_000u32 {
            let msg = vec![(i % 251) as u8; (i % 37) as usize];
            r.put(&msg, Wait::No).unwrap();
            if i % 3 != 0 {
                let got = get_vec(&r, Wait::No).unwrap();
                assert_eq!(got, vec![(next_out % 251) as u8; (next_out % 37) as usize]);
                next_out += 1;
            }
        }
        assert!(r.capacity() > MIN_CAP, "the backlog made it grow");
        while next_out < 20_000 {
            let got = get_vec(&r, Wait::No).unwrap();
            assert_eq!(got, vec![(next_out % 251) as u8; (next_out % 37) as usize]);
            next_out += 1;
        }
        assert!(matches!(get_vec(&r, Wait::No), Err(Fail::WouldBlock)));
        assert_eq!(r.len(), 0);
        // A message larger than the ring.
        let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| i as u8).collect();
        r.put(&[1, 2, 3], Wait::No).unwrap();
        r.put(&big, Wait::No).unwrap();
        assert_eq!(get_vec(&r, Wait::No).unwrap(), [1, 2, 3]);
        assert_eq!(get_vec(&r, Wait::No).unwrap(), big);
    }

    #[test]
    fn an_emptied_large_ring_shrinks_and_gives_its_memory_back() {
        let blocks = |r: &Ring| rustix::fs::fstat(r.region.fd()).unwrap().st_blocks * 512;
        let r = Ring::new(0).unwrap();
        let msg = vec![9u8; 1 << 20];
        for _ in 0..80 {
            r.put(&msg, Wait::No).unwrap();
        }
        assert!(r.capacity() >= 80 << 20);
        assert!(blocks(&r) >= 80 << 20);
        // Not right after growing: a backlog that comes and goes keeps
        // its memory. (The clock is set to "just grew", so that a slow
        // machine cannot make this run past the shrink delay.)
        r.a64(LAST_GROW)
            .store(now_ms() + 3_600_000, Ordering::Relaxed);
        assert_eq!(get_vec(&r, Wait::No).unwrap(), msg);
        r.put(&msg, Wait::No).unwrap();
        for _ in 0..80 {
            assert_eq!(get_vec(&r, Wait::No).unwrap(), msg);
        }
        assert!(r.capacity() >= 80 << 20, "shrunk right after growing");
        // Once it has not grown for a while, an emptying get shrinks it.
        r.a64(LAST_GROW).store(0, Ordering::Relaxed);
        for _ in 0..80 {
            r.put(&msg, Wait::No).unwrap();
        }
        for _ in 0..80 {
            assert_eq!(get_vec(&r, Wait::No).unwrap(), msg);
        }
        assert_eq!(r.capacity(), MIN_CAP);
        assert!(
            blocks(&r) <= 2 * MIN_CAP as i64 + 8192,
            "{} bytes kept",
            blocks(&r)
        );
        // And it works, and grows, again.
        for _ in 0..3 {
            r.put(&msg, Wait::No).unwrap();
        }
        for _ in 0..3 {
            assert_eq!(get_vec(&r, Wait::No).unwrap(), msg);
        }
    }

    #[test]
    fn a_pipe_sized_ring_gives_back_its_memory_from_16_mib() {
        assert_eq!(shrink_at(MAX_CAP), SHRINK_AT);
        assert_eq!(shrink_at(1 << 28), 16 << 20);
        let r = Ring::with_max_cap(0, 1 << 28).unwrap();
        let msg = vec![5u8; 20 << 20];
        r.put(&msg, Wait::No).unwrap();
        assert!(r.capacity() >= 32 << 20);
        r.a64(LAST_GROW).store(0, Ordering::Relaxed);
        assert_eq!(get_vec(&r, Wait::No).unwrap(), msg);
        assert_eq!(r.capacity(), MIN_CAP, "a queue's ring would keep 32 MiB");
    }

    #[test]
    fn maxsize_counts_messages() {
        let r = Ring::new(2).unwrap();
        r.put(b"a", Wait::No).unwrap();
        r.put(b"b", Wait::No).unwrap();
        assert!(r.is_full());
        assert!(matches!(r.put(b"c", Wait::No), Err(Fail::WouldBlock)));
        assert!(matches!(
            r.put(b"c", Wait::timeout(Duration::from_millis(5))),
            Err(Fail::Timeout)
        ));
        assert_eq!(get_vec(&r, Wait::No).unwrap(), b"a");
        r.put(b"c", Wait::No).unwrap();
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn a_dead_producers_count_is_finished_and_its_half_record_ignored() {
        let r = Ring::new(0).unwrap();
        r.put(b"first", Wait::No).unwrap();
        // A producer that stored TAIL and died before PUT_COUNT.
        let tail = r.a64(TAIL).load(Ordering::Relaxed);
        r.write_wrapped(tail, &[5, 0, 0, 0], MIN_CAP); // half a header
        r.a64(INTENT_TAIL).store(tail, Ordering::Relaxed);
        r.a64(INTENT_PUT).store(1, Ordering::Relaxed);
        r.a64(PUT_COUNT).store(0, Ordering::Relaxed);
        r.repair_put();
        assert_eq!(r.len(), 1);
        assert_eq!(get_vec(&r, Wait::No).unwrap(), b"first");
        r.put(b"second", Wait::No).unwrap();
        assert_eq!(get_vec(&r, Wait::No).unwrap(), b"second");
    }

    #[test]
    fn a_corrupt_ring_is_an_error_and_then_usable() {
        let r = Ring::new(0).unwrap();
        r.put(b"hello", Wait::No).unwrap();
        r.put(b"world", Wait::No).unwrap();
        r.ring().write(0, &[0xff; 8]); // scribble over the first header
        let err = match get_vec(&r, Wait::No) {
            Err(Fail::Error(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(r.is_empty());
        r.put(b"again", Wait::No).unwrap();
        assert_eq!(get_vec(&r, Wait::No).unwrap(), b"again");
        // A capacity that is not a power of two: an error, never a panic.
        r.a64(CAP).store(12345, Ordering::Relaxed);
        assert!(matches!(r.put(b"x", Wait::No), Err(Fail::Error(_))));
    }

    #[test]
    fn positions_scribbled_far_ahead_do_not_poison_later_operations() {
        let r = Ring::new(0).unwrap();
        r.put(b"one", Wait::No).unwrap();
        // Another process scribbles huge positions; this one reads them.
        let (head, tail) = (
            r.a64(HEAD).load(Ordering::Relaxed),
            r.a64(TAIL).load(Ordering::Relaxed),
        );
        r.a64(HEAD).store(1 << 50, Ordering::Relaxed);
        r.a64(TAIL).store(1 << 51, Ordering::Relaxed);
        assert!(matches!(get_vec(&r, Wait::No), Err(Fail::Error(_))));
        let _ = r.put(b"x", Wait::No);
        // The header is put right (by the other process, say).
        r.a64(HEAD).store(head, Ordering::Relaxed);
        r.a64(TAIL).store(tail, Ordering::Relaxed);
        r.a64(INTENT_TAIL).store(tail, Ordering::Relaxed);
        let _ = get_vec(&r, Wait::No); // may report the garbage once
        for i in 0..5000u32 {
            r.put(&i.to_le_bytes(), Wait::No).unwrap();
        }
        for i in 0..5000u32 {
            assert_eq!(get_vec(&r, Wait::No).unwrap(), i.to_le_bytes());
        }
    }

    #[test]
    fn a_record_that_straddles_2_pow_64_is_read_not_overflowed() {
        // Found by cargo fuzz: a head scribbled to just below 2^64 with a
        // valid record there overflowed `head + header` in get.
        let r = Ring::new(0).unwrap();
        let cap = r.cap().unwrap();
        let head = u64::MAX - 7; // the last 8 positions before 2^64
        let mut record = Vec::new();
        record.extend_from_slice(&4u32.to_le_bytes());
        record.extend_from_slice(&(4 ^ MAGIC).to_le_bytes());
        record.extend_from_slice(b"wrap");
        r.write_wrapped(head, &record, cap);
        r.a64(HEAD).store(head, Ordering::Relaxed);
        r.a64(INTENT_HEAD).store(head, Ordering::Relaxed);
        let tail = head.wrapping_add(record_len(4));
        r.a64(TAIL).store(tail, Ordering::Relaxed);
        r.a64(INTENT_TAIL).store(tail, Ordering::Relaxed);
        assert_eq!(get_vec(&r, Wait::No).unwrap(), b"wrap");
        assert_eq!(r.a64(HEAD).load(Ordering::Relaxed), tail);
    }

    #[test]
    fn a_sleeping_consumer_is_woken_by_a_put_on_another_thread() {
        let r = Ring::new(0).unwrap();
        let r2 = r.clone();
        let t = std::thread::spawn(move || get_vec(&r2, Wait::Until(None)).unwrap());
        // Whether the consumer is asleep yet or not, it must get this.
        r.put(b"wake", Wait::No).unwrap();
        assert_eq!(t.join().unwrap(), b"wake");
    }
}
