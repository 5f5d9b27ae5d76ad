//! One page of memory shared between a pool and one of its workers: an
//! anonymous segment ([`super::shm`]) seen as an array of `AtomicU64`. A
//! crash leaves no name behind.
//!
//! The worker writes how many tasks it has started (and when, if a time
//! limit is set) before it runs each one; the pool reads that after a
//! worker died to know exactly which task it was running.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU64;

use super::shm::{self, Mapping};

const SIZE: usize = 4096;

/// A mapped shared page of `AtomicU64` words.
pub(crate) struct SharedPage {
    map: Mapping,
}

impl SharedPage {
    /// Creates a zeroed page and returns it with its memfd (to send to the
    /// other process).
    pub(crate) fn create() -> io::Result<(Self, OwnedFd)> {
        let fd = shm::memfd("multiproc-pool", SIZE)?;
        let page = Self::map(fd.as_fd())?;
        Ok((page, fd))
    }

    /// Maps the page behind `fd`, which must be at least a page long
    /// (`InvalidData` otherwise).
    pub(crate) fn map(fd: BorrowedFd<'_>) -> io::Result<Self> {
        Ok(Self {
            map: Mapping::new(fd, SIZE)?,
        })
    }

    /// Word `i` of the page (`i < 512`; panics otherwise).
    #[inline]
    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < SIZE / 8, "word index out of the page");
        self.map.atomic_u64(i * 8)
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
