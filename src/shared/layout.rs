//! Typed views of shared memory: the only place outside `src/sys/` that
//! turns bytes of a [`Region`] into Rust references.
//!
//! Two kinds of view, each sound for its own reason:
//!
//! - **`&mut [T]` for `T: Pod`** ([`LockedSlice`]), handed out only while the
//!   lock that protects those bytes is held in this process, for no longer
//!   than the guard lives. `Pod` means every bit pattern is a valid `T`
//!   (so a half-written value left by a dead holder is still a valid one)
//!   and `T` holds no pointers (so nothing points into another process).
//! - **`&[A]` for atomic integers** ([`atomics`]): any number of processes
//!   may access atomics concurrently, and every bit pattern is a valid
//!   integer. `AtomicBool` is deliberately not allowed (only 0 and 1 are
//!   valid `bool`s, and another process may write 2).
//!
//! Both check bounds and alignment against the mapping (a corrupt length
//! from another process is an error at decoding time, before this; here a
//! violation is a bug and panics).
//!
//! One caveat no type system can check: the two sides must agree on the
//! type. A `Value<u64>` received as a `RawValue<AtomicU64>` would mix
//! locked plain accesses with lock-free atomic ones on the same bytes.
//! Channels and process arguments are typed on both ends, so this takes a
//! deliberate mismatch of the sender's and receiver's types.

#![allow(unsafe_code)]

use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize,
};

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;

use crate::shm::region::Region;
use crate::sync::LockGuard;

/// Rounds `offset` up to a multiple of `align` (a power of two).
pub(crate) const fn align_up(offset: usize, align: usize) -> usize {
    (offset + align - 1) & !(align - 1)
}

/// Where `len` items of `T` from `offset` end, if that fits in `region`.
pub(crate) fn fits<T>(region: &Region, offset: usize, len: usize) -> bool {
    len.checked_mul(size_of::<T>())
        .and_then(|bytes| bytes.checked_add(offset))
        .is_some_and(|end| end <= region.len())
        && (region.map().as_ptr() as usize + offset).is_multiple_of(align_of::<T>())
}

/// `len` items of `T` at `offset` of the region of a held data lock
/// ([`Lock::for_data`]): derefs to `[T]` and `&mut [T]` for as long as the
/// guard inside is held, and no longer (the views borrow `self`).
pub(crate) struct LockedSlice<'a, T: Pod> {
    guard: LockGuard<'a>,
    offset: usize,
    len: usize,
    _t: PhantomData<&'a mut [T]>,
}

impl<'a, T: Pod> LockedSlice<'a, T> {
    /// Panics if the items do not fit the lock's region (a layout bug:
    /// lengths from other processes are checked when decoding), or if the
    /// lock does not guard data.
    pub(crate) fn new(guard: LockGuard<'a>, offset: usize, len: usize) -> Self {
        assert!(guard.lock().guards_data(), "a typed view needs a data lock");
        assert!(
            fits::<T>(guard.lock().region(), offset, len),
            "typed view outside its region"
        );
        assert!(offset >= size_of::<crate::sync::LockLayout>());
        Self {
            guard,
            offset,
            len,
            _t: PhantomData,
        }
    }

    fn ptr(&self) -> *mut T {
        // SAFETY: `offset` is in bounds of the mapping (checked in `new`).
        unsafe {
            self.guard
                .lock()
                .region()
                .map()
                .as_ptr()
                .add(self.offset)
                .cast::<T>()
        }
    }
}

impl<T: Pod> Deref for LockedSlice<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: in bounds and aligned (checked in `new`); every bit
        // pattern is a valid `T` (Pod); the lock is held by `self.guard`
        // for as long as this borrow of `self`, and every process touches
        // these bytes only under that lock (they lie past the lock words,
        // and a data lock refuses `release()`), so nothing writes them
        // meanwhile; the mapping lives as long as the lock's region.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }
}

impl<T: Pod> DerefMut for LockedSlice<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and the borrow of `self` is exclusive, so
        // this is the only reference to the bytes in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// An atomic integer type that may live in shared memory and be accessed
/// from several processes at once: `AtomicU8` … `AtomicU64`, `AtomicI8` …
/// `AtomicI64`, `AtomicUsize`, `AtomicIsize`. (Not `AtomicBool`: another
/// process could store a byte that is not a valid `bool`.)
pub trait SharedAtomic: sealed::Sealed + Send + Sync + 'static {
    /// The plain integer type (`u64` for `AtomicU64`).
    type Prim: Pod;
}

macro_rules! shared_atomic {
    ($($a:ty => $p:ty),*) => {$(
        impl sealed::Sealed for $a {}
        impl SharedAtomic for $a {
            type Prim = $p;
        }
        // The atomic and its integer share size and alignment (std
        // documents it), which `atomics` relies on.
        const _: () = assert!(size_of::<$a>() == size_of::<$p>() && align_of::<$a>() == align_of::<$p>());
    )*};
}

shared_atomic!(
    AtomicU8 => u8, AtomicU16 => u16, AtomicU32 => u32, AtomicU64 => u64, AtomicUsize => usize,
    AtomicI8 => i8, AtomicI16 => i16, AtomicI32 => i32, AtomicI64 => i64, AtomicIsize => isize
);

/// `len` atomics at `offset`, shared.
pub(crate) fn atomics<A: SharedAtomic>(region: &Region, offset: usize, len: usize) -> &[A] {
    assert!(
        fits::<A>(region, offset, len),
        "atomic view outside its region"
    );
    // SAFETY: in bounds and aligned (checked); `A` is an atomic integer,
    // valid for every bit pattern and sound to access from any number of
    // threads and processes at once; the mapping outlives the borrow of
    // `region`.
    unsafe { std::slice::from_raw_parts(region.map().as_ptr().add(offset).cast::<A>(), len) }
}
