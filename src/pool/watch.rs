//! Where results announce that they are done, for [`as_completed`] and
//! [`wait`] (`futures.rs`); a result's slot (`async_result.rs`) notifies
//! it. Imports nothing of the pool.
//!
//! [`as_completed`]: super::as_completed
//! [`wait`]: super::wait

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use crate::sys;

/// Where results announce that they are done. Announcements come out in
/// the order the results completed (their place in the process's order of
/// completion), whatever order they were announced in: a result found
/// done when the watch was set up is announced after one that completes
/// while it is set up, but comes out first.
pub(super) struct Watch {
    ready: Mutex<BinaryHeap<Reverse<(u64, usize)>>>,
    /// Bumped at every announcement (a futex word).
    pub(super) count: AtomicU32,
}

impl Watch {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Watch {
            ready: Mutex::new(BinaryHeap::new()),
            count: AtomicU32::new(0),
        })
    }

    /// Result `index`, which completed `seq`-th in the process, is done.
    pub(super) fn notify(&self, index: usize, seq: u64) {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Reverse((seq, index)));
        self.count.fetch_add(1, SeqCst);
        sys::futex::wake_all(&self.count);
    }

    pub(super) fn pop(&self) -> Option<usize> {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .map(|Reverse((_, index))| index)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}
