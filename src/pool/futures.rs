//! Waiting on many results at once: [`as_completed`] and [`wait`]
//! (Python's `concurrent.futures` functions of the same names).
//!
//! Each call registers one [`Watch`] with every result it was given; a
//! result that completes (its callbacks run) pushes its index there. So a
//! call costs O(1) per result, whatever their number. The waiting thread
//! drives the pool itself when every result comes from one pool (the fast
//! path, no thread wake-up per result); results of several pools are
//! waited for on the watch's futex while the pools' background threads do
//! the work.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::sys;

use super::async_result::AsyncResult;
use super::watch::Watch;

/// Registers a watch with every result.
fn watch_all<R>(results: &[AsyncResult<R>]) -> Arc<Watch> {
    let watch = Watch::new();
    for (i, r) in results.iter().enumerate() {
        if let Some(seq) = r.slot.watch(&watch, i) {
            watch.notify(i, seq);
        }
    }
    watch
}

/// Waits until `watch` has an announcement or `deadline` passes; `false`
/// on the deadline.
fn wait_for<R>(
    results: &[AsyncResult<R>],
    watch: &Watch,
    deadline: Option<Instant>,
) -> Result<bool> {
    let one_pool = results
        .iter()
        .all(|r| Arc::ptr_eq(&r.shared, &results[0].shared));
    if one_pool && let Some(first) = results.first() {
        return Ok(first
            .shared
            .drive(deadline, |_| (!watch.is_empty()).then_some(()))?
            .is_some());
    }
    loop {
        let seen = watch.count.load(SeqCst);
        if !watch.is_empty() {
            return Ok(true);
        }
        if let sys::futex::Woken::TimedOut = sys::futex::wait_until(&watch.count, seen, deadline) {
            return Ok(!watch.is_empty());
        }
    }
}

/// The results in the order they complete (Python's
/// `concurrent.futures.as_completed`): an iterator of
/// `Ok((index, result))`, `index` being the position in `results`. A
/// result that is done already comes first. Take each value with
/// [`AsyncResult::try_get`] (it is there).
///
/// `timeout` bounds the whole iteration (`None`: no limit; any `Duration`).
///
/// # Errors
///
/// An item `Err` of kind [`ErrorKind::Timeout`] when the time ran out
/// before every result completed (Python's `TimeoutError`); the
/// iteration then ends. [`ErrorKind::Interrupted`] or [`ErrorKind::Io`]
/// from driving the pool, after which it ends too.
pub fn as_completed<R>(
    results: &[AsyncResult<R>],
    timeout: Option<Duration>,
) -> AsCompleted<'_, R> {
    AsCompleted {
        watch: watch_all(results),
        results,
        deadline: timeout.and_then(crate::time::deadline_after),
        left: results.len(),
    }
}

/// The iterator of [`as_completed`].
pub struct AsCompleted<'a, R> {
    results: &'a [AsyncResult<R>],
    watch: Arc<Watch>,
    deadline: Option<Instant>,
    left: usize,
}

impl<R> std::fmt::Debug for AsCompleted<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish()
    }
}

impl<'a, R> Iterator for AsCompleted<'a, R> {
    type Item = Result<(usize, &'a AsyncResult<R>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        loop {
            if let Some(i) = self.watch.pop() {
                self.left -= 1;
                return Some(Ok((i, &self.results[i])));
            }
            match wait_for(self.results, &self.watch, self.deadline) {
                Ok(true) => {}
                Ok(false) => {
                    let left = std::mem::take(&mut self.left);
                    return Some(Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "as_completed: {left} result(s) were not done in time (they go on)"
                        ),
                    )));
                }
                Err(e) => {
                    self.left = 0;
                    return Some(Err(e));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as one result is done.
    FirstCompleted,
    /// As soon as one result is an error (a cancelled one included), or
    /// all are done.
    FirstException,
    /// When all are done.
    AllCompleted,
}

/// What [`wait`] found: indices into the results it was given, `done` in
/// the order they completed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Done {
    /// Finished, failed or cancelled.
    pub done: Vec<usize>,
    /// Not done when `wait` returned.
    pub not_done: Vec<usize>,
}

/// Waits until `when` holds for `results`, or `timeout` passes (`None`:
/// no limit; any `Duration`), and says which are done (Python's
/// `concurrent.futures.wait`). Like Python's, running out of time is not
/// an error: `not_done` then says what is left.
///
/// # Errors
///
/// [`ErrorKind::Interrupted`] on SIGINT in a program that handles it,
/// [`ErrorKind::Io`] from driving the pool.
pub fn wait<R>(
    results: &[AsyncResult<R>],
    timeout: Option<Duration>,
    when: ReturnWhen,
) -> Result<Done> {
    let deadline = timeout.and_then(crate::time::deadline_after);
    let watch = watch_all(results);
    let mut done = Vec::new();
    let mut is_done = vec![false; results.len()];
    loop {
        let mut stop = false;
        while let Some(i) = watch.pop() {
            done.push(i);
            is_done[i] = true;
            stop |= when == ReturnWhen::FirstException && results[i].slot.failed();
        }
        stop |=
            done.len() == results.len() || (when == ReturnWhen::FirstCompleted && !done.is_empty());
        if stop || !wait_for(results, &watch, deadline)? {
            // One more look: what completed while the time ran out.
            while let Some(i) = watch.pop() {
                done.push(i);
                is_done[i] = true;
            }
            let not_done = (0..results.len()).filter(|&i| !is_done[i]).collect();
            return Ok(Done { done, not_done });
        }
    }
}

/// A pool result in [`connection::wait`](crate::connection::wait): ready
/// when it is [`done`](AsyncResult::done). The first such wait registers a
/// watch of the handle's own with the result; `wait` sleeps on its futex.
impl<R> crate::connection::wait::sealed::Waitable for AsyncResult<R> {
    fn wait_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
    fn ready_now(&self) -> bool {
        self.ready()
    }
    fn confirm(&self) -> bool {
        self.is_done()
    }
    fn arm(&self) -> Option<(&std::sync::atomic::AtomicU32, u32)> {
        let watch = self.wait_watch.get_or_init(|| {
            let watch = Watch::new();
            // Done already: `is_done` below says so.
            let _ = self.slot.watch(&watch, 0);
            watch
        });
        let seen = watch.count.load(SeqCst);
        (!self.is_done()).then_some((&watch.count, seen))
    }
}
