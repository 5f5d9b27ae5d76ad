//! Where results announce that they are done, for [`as_completed`] and
//! [`wait`] (`futures.rs`); a result's slot (`async_result.rs`) notifies
//! it. Imports nothing of the pool.
//!
//! [`as_completed`]: super::as_completed
//! [`wait`]: super::wait

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use crate::sys;

/// Where results announce that they are done.
pub(super) struct Watch {
    ready: Mutex<VecDeque<usize>>,
    /// Bumped at every announcement (a futex word).
    pub(super) count: AtomicU32,
}

impl Watch {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Watch {
            ready: Mutex::new(VecDeque::new()),
            count: AtomicU32::new(0),
        })
    }

    pub(super) fn notify(&self, index: usize) {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(index);
        self.count.fetch_add(1, SeqCst);
        sys::futex::wake_all(&self.count);
    }

    pub(super) fn pop(&self) -> Option<usize> {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}
