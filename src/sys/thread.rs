//! The calling thread's id, cached.
//!
//! Thread ids ([gettid(2)](https://man7.org/linux/man-pages/man2/gettid.2.html))
//! are unique across all processes of a pid namespace, so `RLock` uses one
//! to name its owner across processes. `gettid` is a system call; the cache
//! makes a repeated call one thread-local read. The cache is keyed by the
//! caller's pid so that a forked child (whose only thread has a new id but
//! a copy of the parent's thread-locals) never reuses the parent's.

use std::cell::Cell;

thread_local! {
    static TID: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// The calling thread's id; `pid` is the calling process's (cached) pid.
pub(crate) fn current_tid(pid: u32) -> u32 {
    let (cached_for, tid) = TID.get();
    if cached_for == pid && tid != 0 {
        return tid;
    }
    let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    TID.set((pid, tid));
    tid
}
