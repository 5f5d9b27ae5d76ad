//! What the typed front end shares: the lock on the engine and the loop
//! that drives it ([`Shared::drive`]), the checks on a task function, and
//! decoding a batch of results. The front-end files (`api.rs`,
//! `builder.rs`, `stream.rs`, `async_result.rs`) import this; it imports
//! only the engine.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::target::Target;

use super::core::{Callback, Core};
use super::worker;

/// How long one thread drives the pool before letting another have a turn.
const SLICE: Duration = Duration::from_millis(20);

/// What every thread that uses the pool shares.
pub(super) struct Shared {
    pub(super) core: Mutex<Core>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Does the pool's work until `check` returns `Some`, or `deadline`
    /// passes (`Ok(None)`). Callbacks run with the lock released.
    pub(super) fn drive<T>(
        &self,
        deadline: Option<Instant>,
        mut check: impl FnMut(&mut Core) -> Option<T>,
    ) -> Result<Option<T>> {
        loop {
            let (outcome, due) = {
                let mut core = self.lock();
                let outcome = if let Some(t) = check(&mut core) {
                    Some(Ok(Some(t)))
                } else {
                    let now = Instant::now();
                    match deadline {
                        Some(d) if now >= d => Some(Ok(None)),
                        _ => {
                            let wait = deadline.map_or(SLICE, |d| (d - now).min(SLICE));
                            match core.pump(wait) {
                                Ok(()) => None,
                                // What the failure delivered may be what we wait for.
                                Err(e) => Some(match check(&mut core) {
                                    Some(t) => Ok(Some(t)),
                                    None => Err(e),
                                }),
                            }
                        }
                    }
                };
                (outcome, std::mem::take(&mut core.due))
            };
            run(due);
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }

    /// One round of work without waiting.
    pub(super) fn poke(&self) {
        let due = {
            let mut core = self.lock();
            let _ = core.pump(Duration::ZERO);
            std::mem::take(&mut core.due)
        };
        run(due);
    }
}

pub(super) fn run(due: Vec<Callback>) {
    for callback in due {
        callback();
    }
}

pub(super) fn check_target<F>() -> Result<()> {
    if std::mem::size_of::<F>() != 0 {
        return Err(Error::new(
            ErrorKind::CapturingClosure,
            "a pool task must be a function or a closure that captures nothing: the workers are other \
             processes that have the function's code but not the captured values. Pass the values as \
             arguments (a tuple for several)",
        ));
    }
    Ok(())
}

pub(super) fn task_fn<F: Target<M> + Copy, M>() -> worker::TaskFn {
    worker::task_entry::<F, M>
}

pub(super) fn describe<F>(call: &str) -> String {
    format!("{call}({})", std::any::type_name::<F>())
}
