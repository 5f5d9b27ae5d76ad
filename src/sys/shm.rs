//! Shared memory: anonymous segments (`memfd_create`), named POSIX segments
//! (`shm_open`), and mappings of either (`mmap(MAP_SHARED)`).
//!
//! Anonymous segments are the default everywhere in the crate: the segment
//! lives exactly as long as some process holds its descriptor or a mapping,
//! so a crash leaves nothing behind in `/dev/shm`. Named segments exist for
//! Python's `SharedMemory(name=...)`, which unrelated processes attach by
//! name; whoever creates one must unlink it.
//!
//! [`Mapping`] is the only handle to mapped memory. It hands out atomics
//! (the way processes synchronise) and copies bytes in and out; it never
//! gives out `&[u8]` or `&mut [u8]`, because another process may write the
//! same bytes at any time.
//!
//! References: [memfd_create(2)](https://man7.org/linux/man-pages/man2/memfd_create.2.html),
//! [shm_open(3)](https://man7.org/linux/man-pages/man3/shm_open.3.html),
//! [mmap(2)](https://man7.org/linux/man-pages/man2/mmap.2.html).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use rustix::fs::{MemfdFlags, Mode};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

/// A fresh anonymous segment of `len` bytes, all zero, close-on-exec.
/// `name` only shows in `/proc/PID/fd` and `/proc/PID/maps`.
pub(crate) fn memfd(name: &str, len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    Ok(fd)
}

/// The size in bytes of the segment (or file) behind `fd`.
pub(crate) fn size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let st = rustix::fs::fstat(fd)?;
    usize::try_from(st.st_size).map_err(|_| io::Error::other("segment size out of range"))
}

/// Gives the memory behind bytes `offset..offset + len` of the segment
/// back to the system; they read as zero afterwards
/// ([fallocate(2)](https://man7.org/linux/man-pages/man2/fallocate.2.html)
/// with `FALLOC_FL_PUNCH_HOLE`). The size does not change.
pub(crate) fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    use rustix::fs::FallocateFlags;
    rustix::fs::fallocate(
        fd,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    )?;
    Ok(())
}

/// Creates the named segment `name` (of the form `/something`) with `len`
/// zero bytes, readable and writable by this user only. Fails with
/// `AlreadyExists` if the name is taken.
pub(crate) fn create_named(name: &str, len: usize) -> io::Result<OwnedFd> {
    let fd = shm::open(
        name,
        shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
        Mode::RUSR | Mode::WUSR,
    )?;
    if let Err(e) = rustix::fs::ftruncate(&fd, len as u64) {
        let _ = shm::unlink(name);
        return Err(e.into());
    }
    Ok(fd)
}

/// Opens the existing named segment `name` for reading and writing. Fails
/// with `NotFound` if there is none.
pub(crate) fn open_named(name: &str) -> io::Result<OwnedFd> {
    Ok(shm::open(name, shm::OFlags::RDWR, Mode::empty())?)
}

/// Removes the name `name`; mappings and descriptors stay valid.
pub(crate) fn unlink_named(name: &str) -> io::Result<()> {
    Ok(shm::unlink(name)?)
}

/// A shared, read-write mapping of a whole segment. Unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes anyway;
// every access goes through atomics or explicit copies, which are sound from
// any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above: `&Mapping` only allows atomic accesses and copies.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of the segment behind `fd`, which must be
    /// at least that long (checked: a shorter segment is `InvalidData`
    /// rather than a SIGBUS later). `len` must not be 0.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map 0 bytes",
            ));
        }
        let have = size(fd)?;
        if have < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the segment has {have} bytes, {len} were expected"),
            ));
        }
        // SAFETY: a fresh mapping at an address the kernel picks cannot
        // overlap any Rust object; the segment is at least `len` long, so
        // every mapped page is backed.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self { ptr, len })
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first byte. Writing through it is only sound under a protocol
    /// that excludes concurrent access to the same bytes.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    #[inline(always)]
    fn check(&self, offset: usize, size: usize, align: usize) {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len),
            "shared-memory access at {offset}+{size} outside a mapping of {} bytes",
            self.len
        );
        // mmap returns page-aligned addresses, so the offset alone decides
        // alignment (and a constant offset makes this check free).
        assert!(
            offset.is_multiple_of(align),
            "misaligned shared-memory access at {offset}"
        );
    }

    /// The 32-bit atomic at `offset`. Panics if it lies outside the mapping
    /// or is misaligned (a bug in the caller's layout, not bad input).
    #[inline]
    pub(crate) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        // SAFETY: in bounds and aligned (checked); the memory lives as long
        // as `self`; AtomicU32 has the size and alignment of u32 and every
        // bit pattern is valid; all processes access these bytes atomically.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The 64-bit atomic at `offset`; panics as [`atomic_u32`](Self::atomic_u32).
    #[inline]
    pub(crate) fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        // SAFETY: as in atomic_u32.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// Copies `src` into the mapping at `offset`. Panics if out of bounds.
    /// The bytes are not synchronised: publish them with a release store to
    /// an atomic afterwards.
    #[inline]
    pub(crate) fn write(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len(), 1);
        // SAFETY: the destination is in bounds (checked) and cannot overlap
        // `src`, which is a Rust slice outside the mapping or, if inside,
        // only ever reached through copies like this one.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        }
    }

    /// Copies bytes at `offset` out into `dst`. Panics if out of bounds.
    /// Read them after an acquire load of the atomic that published them.
    #[inline]
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len(), 1);
        // SAFETY: the source is in bounds (checked); `dst` is an exclusive
        // Rust slice and cannot overlap the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned, and no reference
        // into the mapping outlives `self` (atomics are borrowed from it).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_mappings_of_one_segment_share_bytes_and_atomics() {
        let fd = memfd("test", 4096).unwrap();
        let a = Mapping::new(fd.as_fd(), 4096).unwrap();
        let b = Mapping::new(fd.as_fd(), 4096).unwrap();
        a.atomic_u32(0).store(7, Ordering::Release);
        assert_eq!(b.atomic_u32(0).load(Ordering::Acquire), 7);
        a.write(100, b"hello");
        let mut out = [0u8; 5];
        b.read(100, &mut out);
        assert_eq!(&out, b"hello");
        assert_eq!(
            b.atomic_u64(8).load(Ordering::Relaxed),
            0,
            "fresh memory is zero"
        );
    }

    #[test]
    fn a_short_segment_is_refused_not_a_sigbus() {
        let fd = memfd("short", 100).unwrap();
        let err = Mapping::new(fd.as_fd(), 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            Mapping::new(fd.as_fd(), 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    #[should_panic(expected = "outside a mapping")]
    fn out_of_bounds_access_panics() {
        let fd = memfd("oob", 64).unwrap();
        let m = Mapping::new(fd.as_fd(), 64).unwrap();
        m.write(60, b"12345");
    }

    #[test]
    fn named_segments_are_exclusive_and_unlinkable() {
        let name = format!("/multiproc-test-{}", std::process::id());
        let fd = create_named(&name, 64).unwrap();
        assert_eq!(
            create_named(&name, 64).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let other = open_named(&name).unwrap();
        assert_eq!(size(other.as_fd()).unwrap(), 64);
        unlink_named(&name).unwrap();
        assert_eq!(
            open_named(&name).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        drop(fd);
    }
}
