//! The engine of the `async` forms (feature `async`): a wait run in slices
//! on [`blocking`]'s thread pool, so that any runtime can await it.
//!
//! An async form never takes, consumes or hands over anything off the
//! awaiting task: it tries the non-waiting form (`try_get`, `try_acquire`,
//! ...) in `poll`, and only the *wait for readiness* runs on a pool thread,
//! for at most [`SLICE`] at a time. So dropping the future loses nothing,
//! and leaves at most one pool thread busy until its slice ends.

use std::time::{Duration, Instant};

/// The longest one readiness wait runs on a pool thread: a dropped future's
/// thread is free again within this.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// Runs `wait(deadline)` on the blocking pool, `deadline` being one slice
/// from now, and returns its value. `wait` may return early (spuriously):
/// the caller tries again.
pub(crate) async fn wait_slice<R, F>(wait: F) -> R
where
    F: FnOnce(Instant) -> R + Send + 'static,
    R: Send + 'static,
{
    blocking::unblock(move || wait(Instant::now() + SLICE)).await
}
