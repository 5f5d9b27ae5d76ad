//! Large arguments across machines: content-addressed blobs.
//!
//! On one machine a large argument, a [`Frozen`](crate::shared::Frozen)
//! (`pool.put`) or a [`SharedSlice`](crate::shared::SharedSlice) travels
//! as the descriptor of a sealed segment. A descriptor cannot cross
//! machines, but a *sealed* segment's bytes never change, so the caller
//! names it by the SHA-256 of its bytes and stores it once in the broker
//! (`mp:{build}:blob:{caller}:{hash}`, [`Uploads`]); the task entry
//! carries the hashes ([`BlobRef`]). An agent fetches each hash once
//! ([`Cache`]), checks the bytes against it, copies them into a sealed
//! segment of its own and hands every local worker a descriptor of that
//! one segment, as a local pool would. So 100 tasks that take one 8 MiB
//! argument upload it once and fetch it once per agent, and a `Frozen` is
//! decoded once per worker process (its table keys it by the segment).
//!
//! Lifetimes: a blob lives as long as the caller's keys (its time to
//! live, refreshed while a chunk that names it is in flight) and is
//! deleted when the pool closes. The key names the caller, so one
//! caller's close never deletes what another uses. A descriptor of
//! anything else (a queue, a lock, a pipe end, an unsealed segment)
//! still cannot cross machines: an `Encode` error says so.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{Error, ErrorKind, Result};
use crate::pool::core::remote::cannot_travel;
use crate::sys;

/// The largest blob the cluster stores or fetches (the broker's own limit
/// on a value is 512 MiB).
pub(crate) const MAX_BLOB: u64 = 256 << 20;

/// A blob's name in a task entry: its bytes' SHA-256 and length.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BlobRef {
    pub(crate) hash: [u8; 32],
    pub(crate) len: u64,
}

impl BlobRef {
    /// The hash in hex (the tail of the blob's key).
    pub(crate) fn hex(&self) -> String {
        hex(&self.hash)
    }
}

/// A hash in hex.
pub(crate) fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The descriptors of one item of a chunk, as blobs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct ItemBlobs {
    /// The item's index in its chunk.
    pub(crate) item: u32,
    /// The item's bytes are in its one segment (a large argument); else
    /// its bytes name the descriptors by their place in `refs`.
    pub(crate) shm: bool,
    pub(crate) refs: Vec<BlobRef>,
}

/// A sealed segment of the caller's, named by its bytes' hash. Held by
/// every chunk in flight that carries it, to refresh or store it again.
pub(crate) struct Blob {
    pub(crate) at: BlobRef,
    fd: OwnedFd,
}

impl Blob {
    /// The segment's bytes, mapped.
    fn bytes(&self) -> Result<Mapped> {
        Mapped::new(self.fd.as_fd(), self.at.len)
    }
}

/// A segment's bytes: mapped, or none (an empty segment maps nothing).
enum Mapped {
    Empty,
    Pages(sys::shm::SealedMapping),
}

impl Mapped {
    fn new(fd: BorrowedFd<'_>, len: u64) -> Result<Mapped> {
        if len == 0 {
            return Ok(Mapped::Empty);
        }
        sys::shm::SealedMapping::new(fd, len as usize, true)
            .map(Mapped::Pages)
            .map_err(|e| Error::io("cannot map a sealed segment to send it to the cluster", e))
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Mapped::Empty => &[],
            Mapped::Pages(m) => m.bytes(),
        }
    }
}

/// The caller's segments hashed so far, by identity (while some chunk in
/// flight holds them: a segment's identity is only its own while it
/// lives).
#[derive(Default)]
pub(crate) struct Uploads {
    by_segment: HashMap<(u64, u64), Weak<Blob>>,
}

/// Which blobs the broker may hold for this caller, and since when they
/// were stored or refreshed there (`None`: the broker may have lost it —
/// after a reconnect, or a send that failed — but it is still deleted at
/// close). Shared by `send` and the reader thread, which refreshes those
/// in flight.
pub(crate) type Stored = HashMap<[u8; 32], Option<Instant>>;

/// Whether the broker may be trusted to hold `hash` for a while yet:
/// stored or refreshed less than `ttl / 2` ago.
pub(crate) fn fresh(stored: &Stored, hash: &[u8; 32], ttl: Duration) -> bool {
    stored
        .get(hash)
        .is_some_and(|at| at.is_some_and(|at| at.elapsed() < ttl / 2))
}

/// Notes `hash` stored now (keeping the table bounded: what expired
/// already needs no deleting).
pub(crate) fn note_stored(stored: &mut Stored, hash: [u8; 32], ttl: Duration) {
    if stored.len() >= 4096 {
        stored.retain(|_, at| at.is_some_and(|at| at.elapsed() < ttl));
    }
    stored.insert(hash, Some(Instant::now()));
}

/// Notes that the broker may have lost every blob (after a reconnect).
pub(crate) fn doubt_all(stored: &mut Stored) {
    stored.values_mut().for_each(|at| *at = None);
}

/// Notes that the broker may have lost `hash` (stored again before use).
pub(crate) fn doubt(stored: &mut Stored, hash: &[u8; 32]) {
    if let Some(at) = stored.get_mut(hash) {
        *at = None;
    }
}

/// A blob of a chunk being sent, with its bytes once mapped.
pub(crate) struct ToSend {
    pub(crate) blob: Arc<Blob>,
    bytes: Option<Mapped>,
}

impl ToSend {
    /// Its bytes, to store (mapped again unless hashed just now).
    pub(crate) fn bytes(&mut self) -> Result<&[u8]> {
        if self.bytes.is_none() {
            self.bytes = Some(self.blob.bytes()?);
        }
        Ok(self.bytes.as_ref().map(Mapped::bytes).unwrap_or_default())
    }
}

impl Uploads {
    /// The blob of the segment behind `fd`: hashed, unless this segment
    /// was hashed before and is still held.
    ///
    /// # Errors
    ///
    /// `Encode` for a descriptor that is not a sealed segment;
    /// `MessageTooLarge` for one over [`MAX_BLOB`]; `Io` when it cannot be
    /// read.
    pub(crate) fn blob_of(&mut self, fd: BorrowedFd<'_>) -> Result<ToSend> {
        if !sys::shm::is_sealed_read_only(fd) {
            return Err(cannot_travel(
                "an argument holds descriptors (a Queue, lock, pipe end, unsealed shared memory), which cannot cross machines; sealed shared memory (pool.put, SharedSlice) can",
            ));
        }
        let look = |e| Error::io("cannot look at a segment sent to the cluster", e);
        let id = sys::shm::identity(fd).map_err(look)?;
        let len = sys::shm::size(fd).map_err(look)? as u64;
        if len > MAX_BLOB {
            return Err(Error::new(
                ErrorKind::MessageTooLarge,
                format!(
                    "an argument of {len} bytes in shared memory passes the cluster's limit of {MAX_BLOB} bytes"
                ),
            ));
        }
        let known = self
            .by_segment
            .get(&id)
            .and_then(Weak::upgrade)
            .filter(|b| b.at.len == len);
        if let Some(blob) = known {
            return Ok(ToSend { blob, bytes: None });
        }
        let mapped = Mapped::new(fd, len)?;
        let hash: [u8; 32] = sha2::Sha256::digest(mapped.bytes()).into();
        let dup = sys::socket::dup(fd)
            .map_err(|e| Error::io("cannot hold a segment sent to the cluster", e))?;
        let blob = Arc::new(Blob {
            at: BlobRef { hash, len },
            fd: dup,
        });
        if self.by_segment.len() >= 1024 {
            self.by_segment.retain(|_, w| w.strong_count() > 0);
        }
        self.by_segment.insert(id, Arc::downgrade(&blob));
        Ok(ToSend {
            blob,
            bytes: Some(mapped),
        })
    }
}

/// Runs `f` on the bytes of `blob` (mapped again), to store it again.
pub(crate) fn with_bytes<R>(blob: &Blob, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    Ok(f(blob.bytes()?.bytes()))
}

/// An agent's blobs: each hash fetched once, kept as a sealed segment that
/// every local worker maps, the least recently used dropped past
/// [`CACHE_BYTES`] or [`CACHE_ENTRIES`].
#[derive(Default)]
pub(crate) struct Cache {
    kept: HashMap<[u8; 32], Kept>,
    bytes: u64,
    clock: u64,
}

struct Kept {
    fd: Arc<OwnedFd>,
    len: u64,
    used: u64,
}

/// What an agent keeps of fetched blobs (in use or not: a segment a
/// running chunk holds stays alive in it anyway).
pub(crate) const CACHE_BYTES: u64 = 1 << 30;
/// How many blobs an agent keeps at most: each holds a descriptor.
pub(crate) const CACHE_ENTRIES: usize = 256;

/// Why a blob could not be had.
pub(crate) enum Miss {
    /// The connection to the broker failed: try again later.
    Broker(redis::RedisError),
    /// The broker does not hold it (yet: a caller stores a blob it lost
    /// again within a tenth of its time to live): try again, for a while.
    Absent(Error),
    /// Refused, or not what its name says: the items fail.
    Failed(Error),
}

/// A failed query as a [`Miss`]: a lost connection is worth trying again,
/// a refusal (`NOPERM`, `WRONGTYPE`...) is not.
fn miss(e: redis::RedisError) -> Miss {
    if super::broker::connection_lost(&e) {
        Miss::Broker(e)
    } else {
        Miss::Failed(Error::new(
            ErrorKind::Io,
            format!("the broker refused an argument blob: {e}"),
        ))
    }
}

impl Cache {
    /// The segment of `blob`, fetched from `key` unless kept.
    pub(crate) fn get(
        &mut self,
        conn: &mut redis::Connection,
        key: &str,
        blob: BlobRef,
    ) -> std::result::Result<Arc<OwnedFd>, Miss> {
        self.clock += 1;
        if let Some(k) = self.kept.get_mut(&blob.hash) {
            k.used = self.clock;
            return Ok(k.fd.clone());
        }
        if blob.len > MAX_BLOB {
            return Err(Miss::Failed(Error::new(
                ErrorKind::Decode,
                format!("a cluster argument blob of {} bytes is too long", blob.len),
            )));
        }
        // Its length first: a key holding something else is not fetched.
        let (len, got): (u64, Option<Vec<u8>>) = {
            let len: u64 = redis::cmd("STRLEN").arg(key).query(conn).map_err(miss)?;
            if len != blob.len {
                (len, None)
            } else {
                (len, redis::cmd("GET").arg(key).query(conn).map_err(miss)?)
            }
        };
        let Some(bytes) = got else {
            if len != 0 {
                return Err(Miss::Failed(Error::new(
                    ErrorKind::Decode,
                    format!(
                        "the broker holds {len} bytes for the argument blob {} of {} bytes",
                        blob.hex(),
                        blob.len
                    ),
                )));
            }
            return Err(Miss::Absent(Error::new(
                ErrorKind::Io,
                format!(
                    "the broker does not hold the argument blob {} (its caller is gone, or the broker lost it)",
                    blob.hex()
                ),
            )));
        };
        let hash: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        if bytes.len() as u64 != blob.len || hash != blob.hash {
            return Err(Miss::Failed(Error::new(
                ErrorKind::Decode,
                format!(
                    "the argument blob {} from the broker does not match its name ({} bytes)",
                    blob.hex(),
                    bytes.len()
                ),
            )));
        }
        let fd = sys::shm::sealed_copy("multiproc-blob", &bytes)
            .map_err(|e| Miss::Failed(Error::io("no shared memory for a cluster argument", e)))?;
        Ok(self.keep(blob, fd))
    }

    /// Keeps `fd` as the segment of `blob`, dropping the least recently
    /// used past the bounds.
    fn keep(&mut self, blob: BlobRef, fd: OwnedFd) -> Arc<OwnedFd> {
        let fd = Arc::new(fd);
        while (self.bytes + blob.len > CACHE_BYTES || self.kept.len() >= CACHE_ENTRIES)
            && !self.kept.is_empty()
        {
            let oldest = *self
                .kept
                .iter()
                .min_by_key(|(_, k)| k.used)
                .map(|(h, _)| h)
                .expect("not empty");
            let k = self.kept.remove(&oldest).expect("listed");
            self.bytes -= k.len;
        }
        self.bytes += blob.len;
        self.clock += 1;
        self.kept.insert(
            blob.hash,
            Kept {
                fd: fd.clone(),
                len: blob.len,
                used: self.clock,
            },
        );
        fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_is_hashed_once_and_named_by_its_bytes() {
        let fd = sys::shm::sealed_copy("t", &[7u8; 5000]).unwrap();
        let mut up = Uploads::default();
        let mut a = up.blob_of(fd.as_fd()).unwrap();
        let hash = <[u8; 32]>::from(sha2::Sha256::digest([7u8; 5000]));
        assert_eq!(a.blob.at, BlobRef { hash, len: 5000 });
        assert_eq!(a.bytes().unwrap(), &[7u8; 5000][..]);
        // The same segment (another descriptor): known, not hashed again.
        let dup = sys::socket::dup(fd.as_fd()).unwrap();
        let mut b = up.blob_of(dup.as_fd()).unwrap();
        assert!(Arc::ptr_eq(&a.blob, &b.blob));
        assert_eq!(b.bytes().unwrap().len(), 5000);
        // Another segment with the same bytes: the same name.
        let other = sys::shm::sealed_copy("t", &[7u8; 5000]).unwrap();
        let c = up.blob_of(other.as_fd()).unwrap();
        assert!(!Arc::ptr_eq(&a.blob, &c.blob));
        assert_eq!(c.blob.at, a.blob.at);
        // Stored: fresh for half the time to live.
        let mut stored = Stored::default();
        let ttl = Duration::from_secs(3600);
        assert!(!fresh(&stored, &hash, ttl));
        note_stored(&mut stored, hash, ttl);
        assert!(fresh(&stored, &hash, ttl));
        assert!(!fresh(&stored, &hash, Duration::ZERO));
        // Doubted (a reconnect): not fresh, still listed for deleting.
        doubt(&mut stored, &hash);
        assert!(!fresh(&stored, &hash, ttl));
        assert!(stored.contains_key(&hash));
    }

    #[test]
    fn the_agent_keeps_at_most_its_bounds_least_recently_used_first() {
        let mut cache = Cache::default();
        let fd = || sys::shm::sealed_copy("t", &[1]).unwrap();
        let at = |i: u32, len| BlobRef {
            hash: {
                let mut h = [0; 32];
                h[..4].copy_from_slice(&i.to_le_bytes());
                h
            },
            len,
        };
        for i in 0..CACHE_ENTRIES as u32 + 10 {
            cache.keep(at(i, 1), fd());
        }
        assert_eq!(cache.kept.len(), CACHE_ENTRIES);
        assert!(!cache.kept.contains_key(&at(0, 1).hash), "the oldest went");
        assert!(
            cache
                .kept
                .contains_key(&at(CACHE_ENTRIES as u32 + 9, 1).hash)
        );
        // Bytes: a blob of nearly all of them pushes the others out.
        cache.keep(at(9999, CACHE_BYTES - 1), fd());
        assert_eq!(cache.kept.len(), 2, "itself and one of 1 byte");
        assert!(cache.bytes <= CACHE_BYTES);
    }

    #[test]
    fn only_sealed_segments_travel() {
        let open = sys::shm::memfd("t", 4096).unwrap();
        let e = match Uploads::default().blob_of(open.as_fd()) {
            Err(e) => e,
            Ok(_) => panic!("an unsealed segment travelled"),
        };
        assert_eq!(e.kind(), ErrorKind::Encode);
        let (r, _w) = rustix::pipe::pipe().unwrap();
        assert!(Uploads::default().blob_of(r.as_fd()).is_err());
    }
}
