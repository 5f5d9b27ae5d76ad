//! Queues in [`connection::wait`](crate::connection::wait): ready when a
//! get would not wait. They have no descriptor; `wait` sleeps on the
//! ring's data futex, which every put wakes once a waiter armed it.

use std::os::fd::BorrowedFd;
use std::sync::atomic::AtomicU32;

use super::{JoinableQueue, Queue, SimpleQueue};
use crate::connection::wait::sealed::Waitable;

impl<T> Waitable for Queue<T> {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    fn ready_now(&self) -> bool {
        self.ring.get_ready()
    }
    fn confirm(&self) -> bool {
        self.ring.get_ready()
    }
    fn arm(&self) -> Option<(&AtomicU32, u32)> {
        self.ring.arm_get()
    }
}

/// `SimpleQueue` and `JoinableQueue` wrap a [`Queue`]: they are ready when
/// it is.
macro_rules! waitable_as_inner_queue {
    ($($wrapper:ident),*) => {$(
        impl<T> Waitable for $wrapper<T> {
            fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
                None
            }
            fn ready_now(&self) -> bool {
                self.0.ready_now()
            }
            fn confirm(&self) -> bool {
                self.0.confirm()
            }
            fn arm(&self) -> Option<(&AtomicU32, u32)> {
                self.0.arm()
            }
        }
    )*};
}

waitable_as_inner_queue!(SimpleQueue, JoinableQueue);
