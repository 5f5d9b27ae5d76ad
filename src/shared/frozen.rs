//! [`Frozen`]: a large read-only value encoded once into sealed shared
//! memory, sent as a descriptor, and decoded once per process (`ray.put`).
//!
//! ## The per-process table
//!
//! A receiver keys what it decoded by the segment's identity (device and
//! inode, the same in every process) and the 16 random bytes `Frozen::new`
//! writes first in the segment (inode numbers of memfds repeat on kernels
//! before 5.9), and keeps the last [`KEEP`] values, each with its segment
//! (so the identity cannot be reused while kept).
//! Every task that takes the same `Frozen` after the first one in a worker
//! costs a descriptor and a table lookup, not a decode. The price: a worker
//! holds up to [`KEEP`] such values after the caller has dropped them,
//! until newer ones push them out or it exits.
//!
//! The table's lock is only ever tried, never waited for: a child forked
//! while another thread held it would otherwise hang, and a miss only costs
//! one more decode.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, TryLockError};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::slice::{SharedSlice, SharedVec};
use crate::error::{Error, ErrorKind, Result};

/// How many decoded values a process keeps.
pub(crate) const KEEP: usize = 4;

/// The segment's identity and its tag.
type Id = ((u64, u64), [u8; TAG]);

/// The random bytes at the start of every `Frozen` segment.
const TAG: usize = 16;

struct Kept {
    id: Id,
    value: Arc<dyn Any + Send + Sync>,
    _segment: SharedSlice<u8>,
}

static KEPT: Mutex<VecDeque<Kept>> = Mutex::new(VecDeque::new());

fn with_table<R>(f: impl FnOnce(&mut VecDeque<Kept>) -> R) -> Option<R> {
    match KEPT.try_lock() {
        Ok(mut t) => Some(f(&mut t)),
        Err(TryLockError::Poisoned(p)) => Some(f(&mut p.into_inner())),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// A read-only value in sealed shared memory, made once and taken by many
/// tasks: Ray's `ray.put`, made by [`Pool::put`](crate::Pool::put) or
/// [`Frozen::new`]. It dereferences to `&T` everywhere.
///
/// The value is encoded (postcard) into a segment that is then sealed
/// read-only ([`SharedSlice`]). Sending a `Frozen` — in task arguments or
/// results, a process's arguments, a pipe — sends the segment's descriptor,
/// never the bytes; each receiving process decodes it the first time and
/// keeps it (the last 4 per process; module `shared::frozen` explains), so
/// a map of 10 000 tasks over one model decodes it once per worker.
///
/// ```
/// use std::collections::HashMap;
/// use multiproc::Pool;
/// use multiproc::shared::Frozen;
///
/// fn lookup((table, key): (Frozen<HashMap<u32, String>>, u32)) -> String {
///     table.get(&key).cloned().unwrap_or_default()
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// # multiproc::init();
/// let pool = Pool::new(2)?;
/// let table: HashMap<u32, String> = (0..1000).map(|i| (i, format!("#{i}"))).collect();
/// let table = pool.put(table)?;
/// let names = pool.map(lookup, (0..100).map(|k| (table.clone(), k)))?;
/// assert_eq!(names[42], "#42");
/// # Ok(()) }
/// ```
///
/// Memory: the segment goes back to the system when no process holds it;
/// a process that decoded it holds it while it keeps the value.
pub struct Frozen<T> {
    value: Arc<T>,
    segment: SharedSlice<u8>,
}

impl<T> Clone for Frozen<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            segment: self.segment.clone(),
        }
    }
}

impl<T: Serialize> Frozen<T> {
    /// Encodes `value` into a fresh sealed segment (one copy: the encoder
    /// writes into the shared pages) and keeps `value` here.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if `value` cannot be encoded (a descriptor
    /// inside it: a `Frozen` holds bytes only); [`ErrorKind::Io`] if the
    /// memory cannot be had (a full `/dev/shm` or memory cgroup, `ulimit
    /// -v`, the descriptor limit).
    pub fn new(value: T) -> Result<Self> {
        let mut out = Out {
            vec: SharedVec::new()?,
            failed: None,
        };
        out.vec.extend_from_slice(&crate::sys::shm::random_tag())?;
        let done = postcard::serialize_with_flavor(&value, &mut out);
        if let Some(e) = out.failed {
            return Err(e);
        }
        done.map_err(|e| {
            Error::new(
                ErrorKind::Encode,
                format!(
                    "could not encode a value of type {} into shared memory",
                    std::any::type_name::<T>()
                ),
            )
            .with_source(e)
        })?;
        Ok(Self {
            value: Arc::new(value),
            segment: out.vec.freeze()?,
        })
    }
}

impl<T> Frozen<T> {
    /// The encoded value's size in bytes (what each receiver maps).
    pub fn encoded_len(&self) -> usize {
        self.segment.len()
    }
}

/// postcard's output: straight into the shared vector.
struct Out {
    vec: SharedVec<u8>,
    failed: Option<Error>,
}

impl postcard::ser_flavors::Flavor for &mut Out {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.vec.extend_from_slice(bytes).map_err(|e| {
            self.failed = Some(e);
            postcard::Error::SerializeBufferFull
        })
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl<T> Deref for Frozen<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Frozen<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Frozen").field(&*self.value).finish()
    }
}

impl<T> Serialize for Frozen<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.segment.serialize(s)
    }
}

impl<'de, T: DeserializeOwned + Send + Sync + 'static> Deserialize<'de> for Frozen<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let segment = SharedSlice::<u8>::deserialize(d)?;
        let Some((tag, bytes)) = segment.split_first_chunk::<TAG>() else {
            return Err(crate::codec::refuse::<D::Error>(format!(
                "a Frozen<{}> of {} bytes is too short to be one",
                std::any::type_name::<T>(),
                segment.len()
            )));
        };
        let id = segment.identity().ok().map(|ino| (ino, *tag));
        if let Some(id) = id {
            let hit = with_table(|t| {
                t.iter()
                    .find(|k| k.id == id)
                    .and_then(|k| k.value.clone().downcast::<T>().ok())
            })
            .flatten();
            if let Some(value) = hit {
                return Ok(Self { value, segment });
            }
        }
        // The bytes are sealed, so they are what the sender encoded (or a
        // hostile sender's, which decode as any other bytes: postcard's
        // lengths are bounded by the bytes present, and the segment has
        // its pages). No descriptor of the message around it can be taken.
        let value: T = crate::codec::with_incoming(Vec::new(), || postcard::from_bytes(bytes))
            .map_err(|e| {
                crate::codec::refuse::<D::Error>(format!(
                    "could not decode a Frozen<{}> of {} bytes: {}",
                    std::any::type_name::<T>(),
                    segment.len(),
                    crate::codec::why(&e)
                ))
            })?;
        let value = Arc::new(value);
        if let Some(id) = id {
            let evicted = with_table(|t| {
                let mut out = Vec::new();
                if let Some(at) = t.iter().position(|k| k.id == id) {
                    out.extend(t.remove(at));
                }
                if t.len() == KEEP {
                    out.extend(t.pop_front());
                }
                t.push_back(Kept {
                    id,
                    value: value.clone(),
                    _segment: segment.clone(),
                });
                out
            });
            // Dropped outside the lock: a large value takes a while.
            drop(evicted);
        }
        Ok(Self { value, segment })
    }
}

/// Decodes `data` as the bytes of a `Frozen` segment would be decoded (for
/// `crate::fuzzing`): the tag, then postcard values of a few types.
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn fuzz(data: &[u8]) {
    if let Some((_, bytes)) = data.split_first_chunk::<TAG>() {
        let _ = crate::codec::with_incoming(Vec::new(), || {
            postcard::from_bytes::<(Vec<u64>, String, Option<Vec<u8>>)>(bytes)
        });
        let _ = postcard::from_bytes::<std::collections::HashMap<u32, String>>(bytes);
    }
}
