//! One page of memory shared between a pool and one of its workers: an
//! anonymous `memfd_create(2)` mapped with `mmap(2)` `MAP_SHARED` on both
//! sides, seen as an array of `AtomicU64`. A crash leaves no name behind.
//!
//! The worker writes how many tasks it has started (and when, if a time
//! limit is set) before it runs each one; the pool reads that after a
//! worker died to know exactly which task it was running.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

const SIZE: usize = 4096;

/// A mapped shared page of `AtomicU64` words.
pub(crate) struct SharedPage {
    ptr: NonNull<AtomicU64>,
}

// SAFETY: the page is only accessed through atomics, which are Sync.
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// Creates a zeroed page and returns it with its memfd (to send to the
    /// other process).
    pub(crate) fn create() -> io::Result<(Self, OwnedFd)> {
        let fd = rustix::fs::memfd_create("multiproc-pool", rustix::fs::MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, SIZE as u64)?;
        let page = Self::map(fd.as_fd())?;
        Ok((page, fd))
    }

    /// Maps the page behind `fd`, which must be at least a page long.
    pub(crate) fn map(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let st = rustix::fs::fstat(fd)?;
        if (st.st_size as u64) < SIZE as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared page too small",
            ));
        }
        // SAFETY: mapping a fresh region (null hint) of a file we checked is
        // at least SIZE bytes long; the kernel picks the address, so no
        // existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
        })
    }

    /// Word `i` of the page (`i < 512`).
    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < SIZE / 8, "word index out of the page");
        // SAFETY: the mapping is SIZE bytes, page-aligned (so 8-aligned), and
        // lives as long as `self`; i is in bounds; memory shared with another
        // process is only ever accessed through atomics.
        unsafe { &*self.ptr.as_ptr().add(i) }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `map`; no reference
        // from `word` outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), SIZE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_mappings_share_their_words() {
        let (a, fd) = SharedPage::create().unwrap();
        let b = SharedPage::map(fd.as_fd()).unwrap();
        a.word(3).store(42, Ordering::SeqCst);
        assert_eq!(b.word(3).load(Ordering::SeqCst), 42);
        assert_eq!(b.word(0).load(Ordering::SeqCst), 0, "a fresh page is zero");
    }
}
