//! Shared state between processes: [`Value`] and [`Array`] (plain data
//! with a lock of their own), [`RawValue`] and [`RawArray`] (atomics, no
//! lock), and [`SharedMemory`] (bytes, anonymous or named) — Python's
//! `multiprocessing.Value`, `Array`, `RawValue`, `RawArray` and
//! `shared_memory.SharedMemory`.
//!
//! For large data read by many processes: [`SharedVec`] (built in place
//! by one process) frozen into a [`SharedSlice`] (sealed read-only, `&[T]`
//! everywhere, no copy), and [`Frozen`] (any serde value encoded once,
//! decoded once per process; `Pool::put`). See the crate tutorial's
//! "Sharing big data".
//!
//! [`ShareableList`]: Python's `shared_memory.ShareableList` (ints, floats,
//! bools, None, str and bytes in a named segment), in CPython 3.11's
//! layout, attachable by name from Python programs and back.
//!
//! Each lives in its own anonymous shared-memory segment (memfd) unless you
//! name a [`SharedMemory`]; handles are `Clone`, travel to children in their
//! arguments under every start method, and are inherited under fork.
//! Anonymous segments vanish with the last process that uses them, however
//! it ends: nothing is ever left in `/dev/shm`.
//!
//! Which types may be shared: [`Value`] and [`Array`] take any
//! [`Pod`] type (every bit pattern valid, no pointers —
//! integers, floats, and `#[repr(C)]` structs deriving `bytemuck::Pod`);
//! [`RawValue`] and [`RawArray`] take the atomic integer types
//! ([`SharedAtomic`]), which is what makes lock-free access safe.
//!
//! [`Pod`] and [`Zeroable`] are bytemuck 1's traits, re-exported so that
//! `#[derive(Pod, Zeroable)]` types of yours work here: bytemuck's major
//! version is part of multiproc's API, and moving to a bytemuck 2 would be
//! a breaking multiproc release (listed in CHANGELOG.md).
//!
//! ```
//! use multiproc::Process;
//! use multiproc::shared::{Array, Value};
//!
//! fn square_all(n: Value<f64>, arr: Array<i32>) {
//!     *n.lock().unwrap() = 3.1415927;
//!     for x in arr.lock().unwrap().iter_mut() {
//!         *x = -*x;
//!     }
//! }
//!
//! # fn main() -> multiproc::Result<()> {
//! # multiproc::init();
//! let num = Value::new(0.0f64)?;
//! let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
//! Process::new(square_all, (num.clone(), arr.clone())).start()?.join()?;
//! assert_eq!(num.get()?, 3.1415927);
//! assert_eq!(arr.get(3)?, -3);
//! # Ok(()) }
//! ```
//!
//! Layouts: `Value<T>` is the 8-byte lock of [`crate::sync::Lock`] then
//! `T` (aligned); `Array<T>` the lock, a `u64` length, then the elements
//! (from offset 16, aligned); `RawValue<A>` just `A`; `RawArray<A>` a `u64`
//! length then the elements from offset 8. Pinned by this module's tests.

pub mod frozen;
mod layout;
mod memory;
mod raw;
pub(crate) mod shareable_list;
mod slice;
pub(crate) mod tracker;
mod value;

pub use bytemuck::{Pod, Zeroable};
pub use frozen::Frozen;
pub use layout::SharedAtomic;
pub use memory::SharedMemory;
pub use raw::{RawArray, RawValue};
pub use shareable_list::{ListItem, ShareableList};
pub use slice::{SharedSlice, SharedVec};
pub use value::{Array, ArrayGuard, Value, ValueGuard};

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

    #[test]
    fn shared_layouts_are_pinned() {
        assert_eq!(value::value_offset::<u8>(), 8);
        assert_eq!(value::value_offset::<u64>(), 8);
        assert_eq!(value::value_offset::<[u64; 3]>(), 8);
        #[repr(C, align(32))]
        #[derive(Clone, Copy)]
        struct Wide([u8; 32]);
        assert_eq!(value::value_offset::<Wide>(), 32);
        assert_eq!(size_of::<value::ArrayHeader>(), 16);
        assert_eq!(offset_of!(value::ArrayHeader, len), 8);
        assert_eq!(value::array_offset::<u8>(), 16);
        assert_eq!(value::array_offset::<f64>(), 16);
        assert_eq!(value::array_offset::<Wide>(), 32);
        assert_eq!(raw::RAW_ARRAY_DATA, 8);
    }

    #[test]
    fn values_and_arrays_round_trip_through_encoding() {
        let v = Value::new(41u32).unwrap();
        let e = crate::codec::encode(&v).unwrap();
        let back: Value<u32> = crate::codec::decode(&e.bytes, e.fds).unwrap();
        *back.lock().unwrap() += 1;
        assert_eq!(v.get().unwrap(), 42);

        let a = Array::from_slice(&[1u16, 2, 3]).unwrap();
        let e = crate::codec::encode(&a).unwrap();
        let back: Array<u16> = crate::codec::decode(&e.bytes, e.fds).unwrap();
        assert_eq!(back.len(), 3);
        back.set(2, 9).unwrap();
        assert_eq!(a.to_vec().unwrap(), [1, 2, 9]);
        assert_eq!(
            a.get(3).unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            a.get_lock().release().unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn value_and_array_lock_forms() {
        use crate::sync::AcquireError;
        use std::time::{Duration, Instant};
        let v = Value::new(1u64).unwrap();
        let a = Array::<u8>::new(2).unwrap();
        {
            let _v = v.lock().unwrap();
            let _a = a.lock_timeout(Duration::MAX).unwrap();
            assert!(matches!(v.try_lock(), Err(AcquireError::WouldBlock)));
            assert!(matches!(a.try_lock(), Err(AcquireError::WouldBlock)));
            let e = v.lock_timeout(Duration::from_millis(2)).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Timeout);
            let e = a.lock_deadline(Instant::now()).unwrap_err();
            assert_eq!(crate::Error::from(e).kind(), crate::ErrorKind::Timeout);
        }
        *v.lock_deadline(Instant::now()).unwrap() += 1;
        a.try_lock().unwrap()[1] = 5;
        assert_eq!(v.get().unwrap(), 2);
        assert_eq!(a.to_vec().unwrap(), [0, 5]);
        // A dead holder's indication (set by hand here): get refuses,
        // every form reports it, into_guard clears it.
        v.get_lock().region().u32_at(4).store(1, Ordering::Release);
        assert_eq!(v.get().unwrap_err().kind(), crate::ErrorKind::OwnerDied);
        assert!(matches!(v.try_lock(), Err(AcquireError::OwnerDied(_))));
        assert!(matches!(
            v.lock_timeout(Duration::MAX),
            Err(AcquireError::OwnerDied(_))
        ));
        drop(v.lock().unwrap_err().into_guard());
        assert_eq!(v.get().unwrap(), 2);
    }

    #[test]
    fn a_too_short_segment_is_a_decode_error() {
        // An Array<u64> whose header claims more elements than the segment holds.
        let a = Array::<u8>::new(8).unwrap();
        let e = crate::codec::encode(&a).unwrap();
        let err = crate::codec::decode::<Array<u64>>(&e.bytes, e.fds).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Decode);
        let v = Value::new(0u8).unwrap();
        let e = crate::codec::encode(&v).unwrap();
        let err = crate::codec::decode::<Value<[u64; 1024]>>(&e.bytes, e.fds).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Decode);
    }

    #[test]
    fn raw_atomics() {
        let v = RawValue::<AtomicU64>::new(7).unwrap();
        assert_eq!(v.fetch_add(1, Ordering::Relaxed), 7);
        let a = RawArray::<AtomicU8>::from_slice(&[1, 2, 3]).unwrap();
        let e = crate::codec::encode(&a).unwrap();
        let back: RawArray<AtomicU8> = crate::codec::decode(&e.bytes, e.fds).unwrap();
        back[0].store(100, Ordering::Relaxed);
        assert_eq!(a[0].load(Ordering::Relaxed), 100);
        assert_eq!(back.len(), 3);
    }

    fn io_kind(e: &crate::Error) -> Option<std::io::ErrorKind> {
        std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .map(|e| e.kind())
    }

    #[test]
    fn shared_memory_bounds_and_names() {
        let m = SharedMemory::new(16).unwrap();
        assert_eq!(m.name(), None);
        assert_eq!(
            m.write(10, &[0; 7]).unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            m.atomic_u64(4).unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
        m.atomic_u64(8).unwrap().store(3, Ordering::Relaxed);
        assert_eq!(m.to_vec()[8], 3);
        assert_eq!(
            SharedMemory::new(0).unwrap_err().kind(),
            crate::ErrorKind::InvalidArgument
        );
        for bad in ["", "/", "a/b", "..", "x\0y"] {
            assert_eq!(
                SharedMemory::create(bad, 8).unwrap_err().kind(),
                crate::ErrorKind::InvalidArgument,
                "{bad:?}"
            );
        }
        let name = format!("multiproc-unit-{}", std::process::id());
        let mut owner = SharedMemory::create(&name, 8).unwrap();
        let err = SharedMemory::create(&format!("/{name}"), 8).unwrap_err();
        assert_eq!(io_kind(&err), Some(std::io::ErrorKind::AlreadyExists));
        owner.unlink().unwrap();
        assert_eq!(
            io_kind(&SharedMemory::attach(&name).unwrap_err()),
            Some(std::io::ErrorKind::NotFound)
        );
    }
}
