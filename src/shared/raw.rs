//! [`RawValue`] and [`RawArray`]: atomics in shared memory, no lock.
//!
//! A `RawValue<A>` segment holds one `A` at offset 0; a `RawArray<A>`
//! segment holds its length (a `u64` at offset 0) and the elements from
//! offset 8 (every allowed atomic has alignment ≤ 8).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::layout::{SharedAtomic, atomics, fits};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::region::Region;

/// Where a `RawArray`'s elements start.
pub(crate) const RAW_ARRAY_DATA: usize = 8;

/// One atomic integer in shared memory, without a lock: Python's
/// `RawValue`, made safe by being atomic. Derefs to the atomic
/// (`RawValue<AtomicU64>` derefs to `AtomicU64`).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// # multiproc::init();
/// let hits = multiproc::shared::RawValue::<AtomicU64>::new(5)?;
/// hits.fetch_add(1, Ordering::Relaxed);
/// assert_eq!(hits.load(Ordering::Relaxed), 6);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct RawValue<A: SharedAtomic> {
    region: Region,
    _a: PhantomData<A>,
}

impl<A: SharedAtomic> Clone for RawValue<A> {
    fn clone(&self) -> Self {
        Self {
            region: self.region.clone(),
            _a: PhantomData,
        }
    }
}

impl<A: SharedAtomic + fmt::Debug> fmt::Debug for RawValue<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&**self).finish()
    }
}

impl<A: SharedAtomic> Serialize for RawValue<A> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.region.serialize(s)
    }
}

impl<'de, A: SharedAtomic> Deserialize<'de> for RawValue<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize(d)?;
        if !fits::<A>(&region, 0, 1) {
            return Err(crate::codec::refuse::<D::Error>(
                "a RawValue does not fit in the segment received",
            ));
        }
        Ok(Self {
            region,
            _a: PhantomData,
        })
    }
}

impl<A: SharedAtomic> RawValue<A> {
    /// A new atomic holding `value`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the segment cannot be created or mapped.
    pub fn new(value: A::Prim) -> Result<Self> {
        let region = Region::new("multiproc-rawvalue", size_of::<A>())?;
        region.map().write(0, bytemuck::bytes_of(&value));
        Ok(Self {
            region,
            _a: PhantomData,
        })
    }
}

impl<A: SharedAtomic> Deref for RawValue<A> {
    type Target = A;
    fn deref(&self) -> &A {
        &atomics::<A>(&self.region, 0, 1)[0]
    }
}

/// A fixed-length array of atomic integers in shared memory, without a
/// lock: Python's `RawArray`, made safe by being atomic. Derefs to `[A]`.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// # multiproc::init();
/// let slots = multiproc::shared::RawArray::<AtomicU32>::new(4)?;
/// slots[2].store(7, Ordering::Relaxed);
/// assert_eq!(slots.iter().map(|a| a.load(Ordering::Relaxed)).sum::<u32>(), 7);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct RawArray<A: SharedAtomic> {
    region: Region,
    len: usize,
    _a: PhantomData<A>,
}

impl<A: SharedAtomic> Clone for RawArray<A> {
    fn clone(&self) -> Self {
        Self {
            region: self.region.clone(),
            len: self.len,
            _a: PhantomData,
        }
    }
}

impl<A: SharedAtomic + fmt::Debug> fmt::Debug for RawArray<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawArray").field(&&**self).finish()
    }
}

impl<A: SharedAtomic> Serialize for RawArray<A> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.region.serialize(s)
    }
}

impl<'de, A: SharedAtomic> Deserialize<'de> for RawArray<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize(d)?;
        Self::from_region(region).map_err(crate::codec::refuse::<D::Error>)
    }
}

impl<A: SharedAtomic> RawArray<A> {
    fn from_region(region: Region) -> Result<Self> {
        let bad = || {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "a RawArray does not fit in the {} bytes received",
                    region.len()
                ),
            )
        };
        if region.len() < RAW_ARRAY_DATA {
            return Err(bad());
        }
        let len = usize::try_from(region.u64_at(0).load(Ordering::Acquire)).map_err(|_| bad())?;
        if !fits::<A>(&region, RAW_ARRAY_DATA, len) {
            return Err(bad());
        }
        Ok(Self {
            region,
            len,
            _a: PhantomData,
        })
    }

    /// `len` atomics, all zero.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the size overflows;
    /// [`ErrorKind::Io`] if the segment cannot be created or mapped.
    pub fn new(len: usize) -> Result<Self> {
        let bytes = len
            .checked_mul(size_of::<A>())
            .and_then(|b| b.checked_add(RAW_ARRAY_DATA))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("a RawArray of {len} elements is too large"),
                )
            })?;
        let region = Region::new("multiproc-rawarray", bytes)?;
        let header: &AtomicU64 = region.u64_at(0);
        header.store(len as u64, Ordering::Release);
        Self::from_region(region)
    }

    /// Atomics holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_slice(items: &[A::Prim]) -> Result<Self> {
        let a = Self::new(items.len())?;
        a.region
            .map()
            .write(RAW_ARRAY_DATA, bytemuck::cast_slice(items));
        Ok(a)
    }
}

impl<A: SharedAtomic> Deref for RawArray<A> {
    type Target = [A];
    fn deref(&self) -> &[A] {
        atomics::<A>(&self.region, RAW_ARRAY_DATA, self.len)
    }
}
