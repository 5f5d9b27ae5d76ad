//! [`Value`] and [`Array`]: plain data in shared memory behind a lock of
//! its own.
//!
//! The segment starts with a [`LockLayout`](crate::sync::Lock) (8 bytes);
//! an `Array` adds its length; the data follows, aligned for `T`. The
//! guards hand out `&mut T` / `&mut [T]` while the lock is held (see
//! `layout.rs` for why that is sound).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::layout::{LockedSlice, align_up, fits};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::region::Region;
use crate::sync::{
    AcquireError, AcquireResult, Lock, LockGuard, LockLayout, LockResult, OwnerDied,
};

/// Where a `Value<T>`'s data starts: after the lock, aligned for `T`.
pub(crate) const fn value_offset<T>() -> usize {
    align_up(size_of::<LockLayout>(), align_of::<T>())
}

/// The header of an `Array` (16 bytes): the lock, then the length.
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | `lock` | a `LockLayout`: lock word, owner-died flag |
/// | 8 | `len` | number of elements (fixed at creation) |
/// | 16, aligned for `T` | data | `len` elements of `T` |
#[repr(C)]
pub(crate) struct ArrayHeader {
    pub(crate) lock: LockLayout,
    pub(crate) len: std::sync::atomic::AtomicU64,
}

/// Where an `Array<T>`'s elements start.
pub(crate) const fn array_offset<T>() -> usize {
    align_up(size_of::<ArrayHeader>(), align_of::<T>())
}

fn map_guard<G, H>(r: LockResult<G>, f: impl FnOnce(G) -> H) -> LockResult<H> {
    match r {
        Ok(g) => Ok(f(g)),
        Err(e) => Err(e.map(f)),
    }
}

fn map_try<G, H>(r: AcquireResult<G>, f: impl FnOnce(G) -> H) -> AcquireResult<H> {
    match r {
        Ok(g) => Ok(f(g)),
        Err(e) => Err(e.map(f)),
    }
}

/// A `T` in shared memory with its own lock: Python's
/// `multiprocessing.Value(typecode, value)` (with `lock=True`).
///
/// `T` is any plain-old-data type ([`bytemuck::Pod`]: integers, floats,
/// arrays of them, and `#[repr(C)]` structs of them that derive `Pod`).
/// [`lock`](Self::lock) returns a guard that derefs to `&mut T`;
/// [`get`](Self::get) and [`set`](Self::set) lock for one read or write.
/// A process that dies holding the lock is reported as for
/// [`Lock`](crate::sync::Lock), through [`OwnerDied`].
///
/// ```
/// use multiproc::{Process, shared::Value};
///
/// fn add_many(counter: Value<u64>) {
///     for _ in 0..1000 {
///         *counter.lock().unwrap() += 1;
///     }
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// # multiproc::init();
/// let counter = Value::new(0u64)?;
/// let children: Vec<_> = (0..2)
///     .map(|_| Process::new(add_many, counter.clone()).start())
///     .collect::<Result<_, _>>()?;
/// for c in children {
///     c.join()?;
/// }
/// assert_eq!(counter.get()?, 2000);
/// # Ok(()) }
/// ```
pub struct Value<T: Pod> {
    lock: Lock,
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Self {
            lock: self.lock.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Value");
        match self.try_lock() {
            Ok(g) => d.field("value", &*g),
            _ => d.field("value", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.lock.region().serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize(d)?;
        if !fits::<T>(&region, value_offset::<T>(), 1) {
            return Err(crate::codec::refuse::<D::Error>(format!(
                "a Value<{}> does not fit in the {} bytes received",
                std::any::type_name::<T>(),
                region.len()
            )));
        }
        Ok(Self {
            lock: Lock::for_data(region),
            _t: PhantomData,
        })
    }
}

impl<T: Pod> Value<T> {
    /// A new value in a fresh anonymous shared-memory segment.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the segment cannot be created or mapped.
    pub fn new(value: T) -> Result<Self> {
        let off = value_offset::<T>();
        let region = Region::new("multiproc-value", off + size_of::<T>().max(1))?;
        region.map().write(off, bytemuck::bytes_of(&value));
        Ok(Self {
            lock: Lock::for_data(region),
            _t: PhantomData,
        })
    }

    fn guard<'a>(&'a self, lock: LockGuard<'a>) -> ValueGuard<'a, T> {
        ValueGuard(LockedSlice::new(lock, value_offset::<T>(), 1))
    }

    /// Locks the value, waiting as long as it takes; the guard derefs to
    /// `&mut T`.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) if a process died holding the
    /// lock and nobody has acknowledged it since: the value may be
    /// half-written.
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        map_guard(self.lock.acquire(), |g| self.guard(g))
    }

    /// Locks the value if it is free now.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] if it is locked;
    /// [`AcquireError::OwnerDied`], as [`lock`](Self::lock).
    #[doc(alias = "acquire(block=False)")]
    pub fn try_lock(&self) -> AcquireResult<ValueGuard<'_, T>> {
        map_try(self.lock.try_acquire(), |g| self.guard(g))
    }

    /// Locks the value, waiting at most `timeout` (any `Duration`:
    /// `Duration::MAX` waits as long as it takes).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] if it is still locked then;
    /// [`AcquireError::OwnerDied`], as [`lock`](Self::lock).
    #[doc(alias = "acquire(timeout)")]
    pub fn lock_timeout(&self, timeout: Duration) -> AcquireResult<ValueGuard<'_, T>> {
        map_try(self.lock.acquire_timeout(timeout), |g| self.guard(g))
    }

    /// Locks the value, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    pub fn lock_deadline(&self, deadline: Instant) -> AcquireResult<ValueGuard<'_, T>> {
        map_try(self.lock.acquire_deadline(deadline), |g| self.guard(g))
    }

    /// A copy of the value, read under the lock (Python's `.value`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::OwnerDied`] if a holder died and nobody acknowledged it
    /// (use [`lock`](Self::lock) to repair).
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Stores `value` under the lock (Python's `.value = ...`).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }

    /// The value's lock (Python's `get_lock()`), for example to hold it
    /// across several values. Its [`release`](Lock::release) is refused;
    /// to read or write the value, use [`lock`](Self::lock).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }
}

/// Exclusive access to a [`Value`]; unlocks when dropped.
#[must_use = "the value is unlocked as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Pod>(LockedSlice<'a, T>);

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0[0]
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0[0]
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A fixed-length array of `T` in shared memory with its own lock:
/// Python's `multiprocessing.Array(typecode, size_or_initializer)` (with
/// `lock=True`).
///
/// [`lock`](Self::lock) returns a guard that derefs to `&mut [T]`;
/// [`get`](Self::get), [`set`](Self::set) and [`to_vec`](Self::to_vec)
/// lock for one access.
///
/// ```
/// # multiproc::init();
/// let arr = multiproc::shared::Array::from_slice(&[1i32, 2, 3])?;
/// arr.lock()?.iter_mut().for_each(|x| *x *= 10);
/// assert_eq!(arr.to_vec()?, [10, 20, 30]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Array<T: Pod> {
    lock: Lock,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Self {
            lock: self.lock.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Array");
        d.field("len", &self.len);
        if let Ok(g) = self.try_lock() {
            d.field("items", &&*g);
        }
        d.finish()
    }
}

impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.lock.region().serialize(s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let region = Region::deserialize(d)?;
        Self::from_region(region).map_err(crate::codec::refuse::<D::Error>)
    }
}

impl<T: Pod> Array<T> {
    fn from_region(region: Region) -> Result<Self> {
        let bad = |len: &dyn fmt::Display| {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "an Array<{}> of {len} elements does not fit in the {} bytes received",
                    std::any::type_name::<T>(),
                    region.len()
                ),
            )
        };
        if region.len() < size_of::<ArrayHeader>() {
            return Err(bad(&"?"));
        }
        let len = region
            .u64_at(std::mem::offset_of!(ArrayHeader, len))
            .load(Ordering::Acquire);
        let len = usize::try_from(len).map_err(|_| bad(&len))?;
        if !fits::<T>(&region, array_offset::<T>(), len) {
            return Err(bad(&len));
        }
        Ok(Self {
            lock: Lock::for_data(region),
            len,
            _t: PhantomData,
        })
    }

    /// An array of `len` zeroes (Python's `Array(typecode, size)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the size overflows;
    /// [`ErrorKind::Io`] if the segment cannot be created or mapped.
    pub fn new(len: usize) -> Result<Self> {
        let off = array_offset::<T>();
        let bytes = len
            .checked_mul(size_of::<T>())
            .and_then(|b| b.checked_add(off))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("an Array of {len} elements is too large"),
                )
            })?;
        let region = Region::new("multiproc-array", bytes)?;
        region
            .u64_at(std::mem::offset_of!(ArrayHeader, len))
            .store(len as u64, Ordering::Release);
        Self::from_region(region)
    }

    /// An array holding a copy of `items` (Python's
    /// `Array(typecode, initializer)`).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_slice(items: &[T]) -> Result<Self> {
        let a = Self::new(items.len())?;
        a.lock
            .region()
            .map()
            .write(array_offset::<T>(), bytemuck::cast_slice(items));
        Ok(a)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn guard<'a>(&'a self, lock: LockGuard<'a>) -> ArrayGuard<'a, T> {
        ArrayGuard(LockedSlice::new(lock, array_offset::<T>(), self.len))
    }

    /// Locks the array, waiting as long as it takes; the guard derefs to
    /// `&mut [T]`.
    ///
    /// # Errors
    ///
    /// [`OwnerDied`] (holding the guard) if a process died holding the
    /// lock and nobody has acknowledged it since.
    #[doc(alias = "acquire")]
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        map_guard(self.lock.acquire(), |g| self.guard(g))
    }

    /// Locks the array if it is free now.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] if it is locked;
    /// [`AcquireError::OwnerDied`], as [`lock`](Self::lock).
    #[doc(alias = "acquire(block=False)")]
    pub fn try_lock(&self) -> AcquireResult<ArrayGuard<'_, T>> {
        map_try(self.lock.try_acquire(), |g| self.guard(g))
    }

    /// Locks the array, waiting at most `timeout` (any `Duration`:
    /// `Duration::MAX` waits as long as it takes).
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`] if it is still locked then;
    /// [`AcquireError::OwnerDied`], as [`lock`](Self::lock).
    #[doc(alias = "acquire(timeout)")]
    pub fn lock_timeout(&self, timeout: Duration) -> AcquireResult<ArrayGuard<'_, T>> {
        map_try(self.lock.acquire_timeout(timeout), |g| self.guard(g))
    }

    /// Locks the array, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    pub fn lock_deadline(&self, deadline: Instant) -> AcquireResult<ArrayGuard<'_, T>> {
        map_try(self.lock.acquire_deadline(deadline), |g| self.guard(g))
    }

    fn index_error(&self, index: usize) -> Error {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "index {index} out of range for an Array of {} elements",
                self.len
            ),
        )
    }

    /// A copy of element `index`, read under the lock.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if `index` is out of range;
    /// [`ErrorKind::OwnerDied`] as for [`Value::get`].
    pub fn get(&self, index: usize) -> Result<T> {
        if index >= self.len {
            return Err(self.index_error(index));
        }
        Ok(self.lock()?[index])
    }

    /// Stores `value` at `index` under the lock.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        if index >= self.len {
            return Err(self.index_error(index));
        }
        self.lock()?[index] = value;
        Ok(())
    }

    /// A copy of every element, read under the lock (Python's `arr[:]`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::OwnerDied`] as for [`Value::get`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }

    /// The array's lock (Python's `get_lock()`); see [`Value::get_lock`].
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }
}

/// Exclusive access to an [`Array`]; unlocks when dropped.
#[must_use = "the array is unlocked as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod>(LockedSlice<'a, T>);

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

// Keep OwnerDied and AcquireError in scope for the docs above.
#[allow(unused)]
type _Docs = (OwnerDied<()>, AcquireError<()>);
