//! Typed slices of plain data in shared memory, without copies:
//! [`SharedVec`] (built by one process, growable, `&mut`) and
//! [`SharedSlice`] (sealed read-only, shared by any number of processes).
//!
//! ## Why it is sound
//!
//! Shared memory is normally reached only through atomics and copies,
//! because another process may write the same bytes at any time. These two
//! types hand out real slices, each under a rule the kernel enforces:
//!
//! - A [`SharedVec`] is a segment nobody else has: it is not `Clone`, not
//!   `Serialize`, and its descriptor never leaves it. The one way another
//!   process could reach its pages is to be forked from this one while it
//!   exists; such a child's copy refuses every access (a panic naming the
//!   builder's pid), so `&mut [T]` here is exclusive.
//! - [`freeze`](SharedVec::freeze) drops the writable mapping and *seals*
//!   the segment (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW |
//!   F_SEAL_SEAL`): from then on no process can write, shrink or grow it,
//!   nor map it writable, nor take the seals off. A [`SharedSlice`] only
//!   maps segments that carry those seals — a received descriptor without
//!   them is refused — so `&[T]` over it is a shared borrow of bytes that
//!   cannot change, and no page can vanish under it (no SIGBUS).
//!   If a forked child still maps the builder's pages writable, the seal
//!   cannot be had (`EBUSY`): `freeze` then copies into a fresh segment
//!   once and seals that.
//!
//! Both rules are enforced in `src/sys/shm.rs` (`SoleSegment`,
//! `SealedMapping`), which holds the only unsafe code behind these types;
//! this file casts the bytes they lend to `T` with bytemuck.
//!
//! `T` is [`Pod`]: any bytes are a valid `T`, so what another process
//! wrote is never undefined behaviour to read. Its alignment must not pass
//! a page (mappings start on one).
//!
//! ## Memory
//!
//! The segment is anonymous (memfd): it lives while some process holds
//! its descriptor or a mapping, and goes back to the system when the last
//! one drops it, however that process ends. In flight it is a descriptor
//! in a socket, which the kernel frees with the socket. A receiver maps it
//! lazily: its resident set grows only by the pages it reads, and they are
//! the same physical pages in every process (the system holds one copy).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, Fd};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::sys::shm::{SealedMapping, SoleSegment};
use bytemuck::Pod;

/// The label of the segments in `/proc/PID/fd` and `/proc/PID/maps`.
const LABEL: &str = "multiproc-slice";

const PAGE: usize = 4096;

fn round_to_page(bytes: usize) -> Option<usize> {
    bytes.checked_next_multiple_of(PAGE).map(|b| b.max(PAGE))
}

/// Refuses element types these slices cannot hold.
fn check_type<T: Pod>() -> Result<()> {
    if size_of::<T>() == 0 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{} is zero-sized: a shared slice of it would hold nothing",
                std::any::type_name::<T>()
            ),
        ));
    }
    if align_of::<T>() > PAGE {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{} is aligned to {} bytes; shared slices start on a {PAGE}-byte page",
                std::any::type_name::<T>(),
                align_of::<T>()
            ),
        ));
    }
    Ok(())
}

fn too_large<T>(len: usize) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!(
            "{len} elements of {} do not fit in the address space",
            std::any::type_name::<T>()
        ),
    )
}

/// A growable vector of plain data in shared memory, built by one process:
/// `Vec<T>`'s methods, `&mut [T]` access, and no copy when it grows or when
/// it becomes a [`SharedSlice`] that other processes map
/// ([`freeze`](Self::freeze)).
///
/// This is how a large array reaches workers without a copy: build it here
/// in place (or fill a [`zeroed`](Self::zeroed) one), freeze it, and send
/// the slice in task arguments, process arguments or pipes.
///
/// ```
/// use multiproc::shared::SharedVec;
/// # fn main() -> multiproc::Result<()> {
/// let mut v = SharedVec::<f64>::with_capacity(1000)?;
/// for i in 0..1000 {
///     v.push(i as f64)?;
/// }
/// v[0] = -1.0;
/// let frozen = v.freeze()?;
/// assert_eq!(frozen.len(), 1000);
/// assert_eq!(frozen[0], -1.0);
/// assert_eq!(frozen.iter().sum::<f64>(), 499_499.0);
/// # Ok(()) }
/// ```
///
/// Growing reserves the new pages at once (`fallocate`), so a full
/// `/dev/shm` or memory cgroup is an error from the call that grows —
/// [`ErrorKind::Io`], the vector unchanged — never a SIGBUS at a later
/// write. A `SharedVec` is not `Clone` and cannot be sent: it has one
/// owner. In a child forked while it exists, every access to the child's
/// copy panics (the pages are the parent's).
pub struct SharedVec<T: Pod> {
    /// The pages, only this process's (`sys::shm::SoleSegment`).
    seg: SoleSegment,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> SharedVec<T> {
    /// An empty vector; takes no memory until it grows.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a zero-sized `T` or one aligned
    /// to more than a page; [`ErrorKind::Io`] if the segment cannot be made
    /// (descriptor limit).
    pub fn new() -> Result<Self> {
        check_type::<T>()?;
        let seg = SoleSegment::new(LABEL)
            .map_err(|e| Error::io("could not create a shared-memory segment", e))?;
        Ok(Self {
            seg,
            len: 0,
            _t: PhantomData,
        })
    }

    /// An empty vector with room for `cap` elements.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and as [`reserve`](Self::reserve).
    pub fn with_capacity(cap: usize) -> Result<Self> {
        let mut v = Self::new()?;
        v.reserve(cap)?;
        Ok(v)
    }

    /// A vector of `len` zeroes (every `Pod` type has an all-zero value),
    /// to fill in place: `v.fill(..)`, `v[i] = ..`, or threads each
    /// filling a part through `chunks_mut` (rayon's `par_chunks_mut`)
    /// before freezing. The pages are reserved at once (`fallocate`: a
    /// full `/dev/shm` is an error here, not a SIGBUS later), so they count
    /// against memory from the start.
    ///
    /// # Errors
    ///
    /// As [`with_capacity`](Self::with_capacity).
    pub fn zeroed(len: usize) -> Result<Self> {
        let mut v = Self::with_capacity(len)?;
        // Fresh pages of a segment read as zero.
        v.len = len;
        Ok(v)
    }

    /// A vector holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As [`with_capacity`](Self::with_capacity).
    pub fn from_slice(items: &[T]) -> Result<Self> {
        let mut v = Self::with_capacity(items.len())?;
        v.extend_from_slice(items)?;
        Ok(v)
    }

    /// Elements held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements it can hold before it must grow.
    pub fn capacity(&self) -> usize {
        self.seg.len() / size_of::<T>()
    }

    /// Makes room for at least `additional` more elements. Growth doubles
    /// and never copies: the segment is lengthened and mapped again.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the size overflows the address
    /// space; [`ErrorKind::Io`] if the pages cannot be had (a full
    /// `/dev/shm` or memory cgroup: `ENOSPC`/`ENOMEM`) or mapped (`ulimit
    /// -v`). The vector is unchanged then.
    pub fn reserve(&mut self, additional: usize) -> Result<()> {
        self.check_owner();
        let need = self
            .len
            .checked_add(additional)
            .ok_or_else(|| too_large::<T>(usize::MAX))?;
        let cap = self.capacity();
        if need <= cap {
            return Ok(());
        }
        let want = need.max(cap.saturating_mul(2));
        let bytes = want
            .checked_mul(size_of::<T>())
            .and_then(round_to_page)
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(|| too_large::<T>(want))?;
        self.seg.grow(bytes).map_err(|e| {
            Error::io(
                format!("could not grow a shared vector to {bytes} bytes"),
                e,
            )
        })
    }

    /// Appends `item`.
    ///
    /// # Errors
    ///
    /// As [`reserve`](Self::reserve): the vector is unchanged.
    pub fn push(&mut self, item: T) -> Result<()> {
        self.extend_from_slice(std::slice::from_ref(&item))
    }

    /// Appends a copy of `items`.
    ///
    /// # Errors
    ///
    /// As [`reserve`](Self::reserve): the vector is unchanged.
    pub fn extend_from_slice(&mut self, items: &[T]) -> Result<()> {
        self.reserve(items.len())?;
        let at = self.len;
        self.len += items.len();
        self[at..].copy_from_slice(items);
        Ok(())
    }

    /// Sets the length to `len`: cut, or filled with `value`.
    ///
    /// # Errors
    ///
    /// As [`reserve`](Self::reserve): the vector is unchanged.
    pub fn resize(&mut self, len: usize, value: T) -> Result<()> {
        if len <= self.len {
            self.truncate(len);
            return Ok(());
        }
        self.reserve(len - self.len)?;
        let at = self.len;
        self.len = len;
        self[at..].fill(value);
        Ok(())
    }

    /// Keeps the first `len` elements (no effect if it holds fewer).
    pub fn truncate(&mut self, len: usize) {
        self.check_owner();
        self.len = self.len.min(len);
    }

    /// Seals the vector's memory read-only and hands it over as a
    /// [`SharedSlice`] that any number of processes map: no copy (unless a
    /// child forked while the vector existed still maps its pages, when it
    /// copies once). The capacity past the length goes back to the system.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if sealing, the fallback copy or the read-only
    /// mapping fails (descriptor or address-space limit); the elements are
    /// lost with the vector then.
    ///
    /// # Panics
    ///
    /// In a child forked while the vector existed (it is the parent's).
    pub fn freeze(self) -> Result<SharedSlice<T>> {
        self.check_owner();
        let len = self.len;
        let keep = round_to_page(len * size_of::<T>()).unwrap_or(PAGE);
        let io = |e| Error::io("could not seal a shared vector's memory", e);
        let fd = self.seg.seal(LABEL, keep).map_err(io)?;
        SharedSlice::from_sealed(fd, len).map_err(io)
    }

    fn check_owner(&self) {
        if !self.seg.is_mine() {
            owned_elsewhere(self.seg.owner());
        }
    }
}

#[cold]
#[track_caller]
fn owned_elsewhere(owner: u32) -> ! {
    panic!(
        "this SharedVec belongs to process {owner}, which was forked after making it; \
         a child cannot use its copy (freeze it and send the SharedSlice instead)"
    )
}

impl<T: Pod> Deref for SharedVec<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        let len = self.len * size_of::<T>();
        match self.seg.bytes() {
            // Page-aligned (the alignment of T was checked at creation)
            // and a whole number of elements: never panics.
            Some(bytes) => bytemuck::cast_slice(&bytes[..len]),
            None => owned_elsewhere(self.seg.owner()),
        }
    }
}

impl<T: Pod> DerefMut for SharedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let len = self.len * size_of::<T>();
        let owner = self.seg.owner();
        match self.seg.bytes_mut() {
            Some(bytes) => bytemuck::cast_slice_mut(&mut bytes[..len]),
            None => owned_elsewhere(owner),
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SharedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.seg.is_mine() {
            return f.write_str("SharedVec(<another process's>)");
        }
        f.debug_list().entries(self.iter()).finish()
    }
}

struct SliceInner {
    fd: OwnedFd,
    map: SealedMapping,
}

/// A read-only slice of plain data in sealed shared memory: cheap to clone
/// and to send (a descriptor travels, not the data), and every process that
/// receives it maps the same pages — no copy, and resident memory grows only
/// by the pages each one reads. Made by [`SharedVec::freeze`] or
/// [`from_slice`](Self::from_slice) (one copy); dereferences to `&[T]`.
///
/// It travels wherever a descriptor can: task arguments and results of a
/// `Pool`, a `Process`'s arguments (every start method), `Pipe` and
/// `Listener`/`Client` messages. A `Queue` cannot carry it (a queue's
/// messages live in shared memory, which holds no descriptors: the put is
/// an [`ErrorKind::Encode`] error). The memory goes back when the last handle in any process is
/// dropped. A received descriptor that is not a segment sealed read-only,
/// or one too short for the length sent, is a decode error
/// ([`ErrorKind::Decode`]), never a mapping of writable memory.
///
/// ```
/// use multiproc::Pool;
/// use multiproc::shared::SharedSlice;
///
/// fn row_sum((rows, i): (SharedSlice<f64>, usize)) -> f64 {
///     rows[i * 100..(i + 1) * 100].iter().sum()
/// }
///
/// # fn main() -> multiproc::Result<()> {
/// # multiproc::init();
/// let data: Vec<f64> = (0..10_000).map(|x| x as f64).collect();
/// let rows = SharedSlice::from_slice(&data)?;
/// let pool = Pool::new(2)?;
/// let sums = pool.map(row_sum, (0..100).map(|i| (rows.clone(), i)))?;
/// assert_eq!(sums[1], (100..200).sum::<i32>() as f64);
/// # Ok(()) }
/// ```
pub struct SharedSlice<T: Pod> {
    inner: Arc<SliceInner>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Pod> Clone for SharedSlice<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> SharedSlice<T> {
    /// A sealed copy of `items` (one copy; build a [`SharedVec`] in place
    /// to avoid it).
    ///
    /// # Errors
    ///
    /// As [`SharedVec::with_capacity`] and [`SharedVec::freeze`].
    pub fn from_slice(items: &[T]) -> Result<Self> {
        SharedVec::from_slice(items)?.freeze()
    }

    /// Maps a segment sealed read-only holding `len` elements.
    fn from_sealed(fd: OwnedFd, len: usize) -> std::io::Result<Self> {
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        if size_of::<T>() == 0 || align_of::<T>() > PAGE {
            return Err(bad(format!(
                "{} cannot be held in a shared slice",
                std::any::type_name::<T>()
            )));
        }
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or_else(|| bad(format!("{len} elements overflow the address space")))?;
        let map = SealedMapping::new(fd.as_fd(), bytes.max(1), false)?;
        Ok(Self {
            inner: Arc::new(SliceInner { fd, map }),
            len,
            _t: PhantomData,
        })
    }

    /// The elements' bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.inner.map.bytes()[..self.len * size_of::<T>()]
    }

    /// Which segment this is, the same in every process that maps it.
    pub(crate) fn identity(&self) -> std::io::Result<(u64, u64)> {
        sys::shm::identity(self.inner.fd.as_fd())
    }
}

impl<T: Pod> Deref for SharedSlice<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // The mapping is page-aligned and the alignment of T was checked
        // when it was made or received, so this never panics.
        bytemuck::cast_slice(self.as_bytes())
    }
}

impl<T: Pod> AsRef<[T]> for SharedSlice<T> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for SharedSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Pod + PartialEq> PartialEq<[T]> for SharedSlice<T> {
    fn eq(&self, other: &[T]) -> bool {
        **self == *other
    }
}

impl<T: Pod> Serialize for SharedSlice<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        codec::serialize_segment(self.inner.fd.as_fd(), self.len as u64, s)
    }
}

impl<'de, T: Pod> Deserialize<'de> for SharedSlice<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (fd, len): (Fd, u64) = Deserialize::deserialize(d)?;
        let len = usize::try_from(len).map_err(crate::codec::refuse::<D::Error>)?;
        Self::from_sealed(fd.into_owned(), len).map_err(|e| {
            crate::codec::refuse::<D::Error>(format!(
                "a SharedSlice<{}> of {len} elements was refused: {e}",
                std::any::type_name::<T>()
            ))
        })
    }
}

#[cfg(feature = "ndarray")]
mod nd {
    use super::*;
    use ndarray::{ArrayView, ArrayViewMut, Dimension, ShapeBuilder};

    fn shape_error(e: ndarray::ShapeError) -> Error {
        Error::new(ErrorKind::InvalidArgument, format!("wrong shape: {e}"))
    }

    impl<T: Pod> SharedSlice<T> {
        /// The elements as an n-dimensional array of `shape` (feature
        /// `ndarray`), without a copy: `rows.view((1000, 64))?` is an
        /// `ArrayView2` over the shared pages.
        ///
        /// # Errors
        ///
        /// [`ErrorKind::InvalidArgument`] if the shape does not hold
        /// exactly the slice's elements.
        pub fn view<D: Dimension, Sh: ShapeBuilder<Dim = D>>(
            &self,
            shape: Sh,
        ) -> Result<ArrayView<'_, T, D>> {
            ArrayView::from_shape(shape, &self[..]).map_err(shape_error)
        }
    }

    impl<T: Pod> SharedVec<T> {
        /// The elements as a mutable n-dimensional array of `shape`
        /// (feature `ndarray`), to build an array in place before
        /// [`freeze`](Self::freeze).
        ///
        /// # Errors
        ///
        /// As [`SharedSlice::view`].
        pub fn view_mut<D: Dimension, Sh: ShapeBuilder<Dim = D>>(
            &mut self,
            shape: Sh,
        ) -> Result<ArrayViewMut<'_, T, D>> {
            ArrayViewMut::from_shape(shape, &mut self[..]).map_err(shape_error)
        }
    }
}
