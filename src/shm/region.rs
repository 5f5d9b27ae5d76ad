//! A region of shared memory that can travel to other processes: the
//! building block of the queues, locks and shared values.
//!
//! A [`Region`] is an anonymous segment (memfd) and this process's mapping
//! of it. Cloning is cheap (one mapping per process, shared by the clones).
//! Sending one to a child — in its arguments, under any start method, or
//! through a queue or pipe — sends the segment's descriptor; the receiver
//! maps it again (see [`crate::codec`]). Under fork the mapping is simply
//! inherited.
//!
//! Fresh memory is all zero, so every structure laid out in a region must
//! treat all-zero as its initial state.
//!
//! The segment has no name: it disappears when the last process holding
//! its descriptor or a mapping exits, however it exits. Nothing is ever
//! left in `/dev/shm`.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{self, Fd};
use crate::error::{Error, Result};
use crate::sys::shm::{self, Mapping};

struct Inner {
    fd: OwnedFd,
    map: Mapping,
    size: usize,
}

/// Shared memory that can be sent to other processes. See the module docs.
#[derive(Clone)]
pub(crate) struct Region(Arc<Inner>);

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("fd", &self.0.fd)
            .field("len", &self.len())
            .finish()
    }
}

impl Region {
    /// A fresh zeroed region of `len` bytes. `name` is a label for
    /// `/proc/PID/maps` (e.g. `"multiproc-queue"`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the kernel refuses the
    /// segment or the mapping (out of memory, descriptor limit).
    pub(crate) fn new(name: &str, len: usize) -> Result<Self> {
        Self::new_sparse(name, len, len)
    }

    /// A fresh zeroed segment of `size` bytes of which only the first
    /// `mapped` are mapped here and have their pages reserved (a queue's
    /// header, whose ring is mapped apart as it grows: see
    /// [`crate::shm::ring`]). [`len`](Self::len) is `mapped`,
    /// [`size`](Self::size) is `size`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) as [`new`](Self::new); a
    /// full `/dev/shm` or memory cgroup is an error here (ENOSPC), not a
    /// SIGBUS at the first write.
    pub(crate) fn new_sparse(name: &str, size: usize, mapped: usize) -> Result<Self> {
        let fd = shm::memfd(name, size)
            .map_err(|e| Error::io("could not create a shared-memory segment", e))?;
        shm::reserve(fd.as_fd(), 0, mapped as u64).map_err(|e| {
            Error::io(
                format!("could not reserve {mapped} bytes of shared memory (is /dev/shm full?)"),
                e,
            )
        })?;
        Self::from_fd(fd, mapped)
    }

    /// Maps `len` bytes of the segment behind `fd` (which must be at least
    /// that long).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the segment is shorter
    /// than `len` or cannot be mapped.
    pub(crate) fn from_fd(fd: OwnedFd, len: usize) -> Result<Self> {
        let map = Mapping::new(fd.as_fd(), len)
            .map_err(|e| Error::io("could not map a shared-memory segment", e))?;
        let size = shm::size(fd.as_fd())
            .map_err(|e| Error::io("could not size a shared-memory segment", e))?;
        Ok(Self(Arc::new(Inner { fd, map, size })))
    }

    /// The mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.0.map.len()
    }

    /// The segment's size in bytes, mapped here or not (at least
    /// [`len`](Self::len)).
    pub(crate) fn size(&self) -> usize {
        self.0.size
    }

    /// The segment's descriptor.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.0.fd.as_fd()
    }

    /// The mapping: atomics at offsets, and copies in and out.
    #[inline]
    pub(crate) fn map(&self) -> &Mapping {
        &self.0.map
    }

    /// The 32-bit atomic at `offset` (panics if outside or misaligned).
    #[inline]
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        self.0.map.atomic_u32(offset)
    }

    /// The 64-bit atomic at `offset` (panics if outside or misaligned).
    #[inline]
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        self.0.map.atomic_u64(offset)
    }

    /// Whether two handles map the same segment in this process.
    #[allow(dead_code)] // used by tests (and the queues)
    pub(crate) fn same(&self, other: &Region) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Serialize for Region {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        codec::serialize_segment(self.fd(), self.len() as u64, serializer)
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (fd, len): (Fd, u64) = Deserialize::deserialize(deserializer)?;
        let len = usize::try_from(len).map_err(crate::codec::refuse::<D::Error>)?;
        Region::from_fd(fd.into_owned(), len).map_err(crate::codec::refuse::<D::Error>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_region_survives_encoding_and_shares_memory() {
        let r = Region::new("test", 4096).unwrap();
        r.u64_at(8).store(42, Ordering::Release);
        let e = codec::encode(&r).unwrap();
        assert_eq!(e.fds.len(), 1);
        let back: Region = codec::decode(&e.bytes, e.fds).unwrap();
        assert!(!back.same(&r), "a second mapping, as in another process");
        assert_eq!(back.len(), 4096);
        assert_eq!(back.u64_at(8).load(Ordering::Acquire), 42);
        back.u32_at(0).store(5, Ordering::Release);
        assert_eq!(r.u32_at(0).load(Ordering::Acquire), 5);
    }

    #[test]
    fn a_lying_length_is_a_decode_error_not_a_crash() {
        let r = Region::new("test", 4096).unwrap();
        // Encode a (descriptor, length) pair that claims more than the segment has.
        let e = codec::encode(&(
            Fd::new(crate::sys::socket::dup(r.fd()).unwrap()),
            1u64 << 30,
        ))
        .unwrap();
        let err = codec::decode::<Region>(&e.bytes, e.fds).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Decode);
    }
}
