//! Where a worker process keeps its per-worker state (`state.rs`, the
//! pool's `worker_state` option) and what it runs when it leaves (the
//! `worker_exit` hook). Worker-side only: the worker's loop
//! (`worker.rs`) calls [`run_at_exit`] when it ends.

use std::any::Any;
use std::cell::RefCell;

thread_local! {
    /// The state the builder made in this worker (the worker's loop runs
    /// on one thread).
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    /// The exit hook, with the queue its value goes to.
    static AT_EXIT: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
}

/// Keeps `state` for the tasks of this worker.
pub(crate) fn set_state(state: Box<dyn Any>) {
    STATE.with(|s| *s.borrow_mut() = Some(state));
}

/// Runs `f` on this worker's state. A panic in `f` leaves the state in
/// place, as `f` left it.
///
/// # Panics
///
/// If the worker has no state of type `S` (a message the pool reports as
/// the task's [`Panicked`](crate::ErrorKind::Panicked) error; the typed
/// front end makes it unreachable).
pub(crate) fn with_state<S: 'static, R>(f: impl FnOnce(&mut S) -> R) -> R {
    STATE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let state = slot
            .as_mut()
            .and_then(|b| b.downcast_mut::<S>())
            .unwrap_or_else(|| {
                panic!(
                    "this pool worker has no state of type {}",
                    std::any::type_name::<S>()
                )
            });
        f(state)
    })
}

/// Takes this worker's state out (for the exit hook).
pub(crate) fn take_state<S: 'static>() -> Option<Box<S>> {
    STATE
        .with(|s| s.borrow_mut().take())
        .and_then(|b| b.downcast::<S>().ok())
}

/// What runs when the worker's loop ends.
pub(crate) fn set_at_exit(hook: Box<dyn FnOnce()>) {
    AT_EXIT.with(|h| *h.borrow_mut() = Some(hook));
}

/// Runs the exit hook if one was set, then drops the state (so its `Drop`
/// runs: the process would otherwise exit without it).
pub(crate) fn run_at_exit() {
    if let Some(hook) = AT_EXIT.with(|h| h.borrow_mut().take()) {
        hook();
    }
    drop(STATE.with(|s| s.borrow_mut().take()));
}
