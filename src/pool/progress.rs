//! The progress bar of long `map` and `imap` calls (feature `progress`):
//! drawn on stderr with indicatif once a call has run for half a second,
//! and only when stderr is a terminal; its last line carries the pool's
//! insights when they are on. Beside it, the user's progress callback
//! (`PoolBuilder::on_progress`), whatever stderr is.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How far a `map` or `imap` call is, for
/// [`PoolBuilder::on_progress`](crate::PoolBuilder::on_progress).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgressUpdate {
    /// Items delivered to the caller so far.
    pub done: u64,
    /// How many items the call has, when its input said.
    pub total: Option<u64>,
    /// Since the call began.
    pub elapsed: Duration,
    /// The call is over (the last update).
    pub finished: bool,
}

/// The user's progress callback.
pub(crate) type OnProgress = Arc<dyn Fn(&ProgressUpdate) + Send + Sync>;

/// How often the callback is called at most.
const CALLBACK_EVERY: Duration = Duration::from_millis(100);

/// After how long a call gets a bar.
#[cfg(feature = "progress")]
const DELAY: Duration = Duration::from_millis(500);

pub(crate) struct Progress {
    #[cfg(feature = "progress")]
    bar: Option<indicatif::ProgressBar>,
    /// A bar may be drawn (asked for, and stderr is a terminal).
    #[cfg(feature = "progress")]
    enabled: bool,
    started: Instant,
    total: Option<u64>,
    callback: Option<OnProgress>,
    last_call: Instant,
    done: u64,
}

impl Progress {
    pub(crate) fn new(enabled: bool, total: Option<u64>, callback: Option<OnProgress>) -> Self {
        #[cfg(feature = "progress")]
        let enabled = enabled && std::io::IsTerminal::is_terminal(&std::io::stderr());
        #[cfg(not(feature = "progress"))]
        let _ = enabled;
        let now = Instant::now();
        Self {
            #[cfg(feature = "progress")]
            bar: None,
            #[cfg(feature = "progress")]
            enabled,
            started: now,
            total,
            callback,
            last_call: now,
            done: 0,
        }
    }

    fn call_back(&mut self, finished: bool) {
        if let Some(f) = &self.callback {
            self.last_call = Instant::now();
            f(&ProgressUpdate {
                done: self.done,
                total: self.total,
                elapsed: self.started.elapsed(),
                finished,
            });
        }
    }

    /// `done` items have been handed to the caller.
    pub(crate) fn update(&mut self, done: u64) {
        self.done = done;
        if self.callback.is_some() && self.last_call.elapsed() >= CALLBACK_EVERY {
            self.call_back(false);
        }
        #[cfg(feature = "progress")]
        if self.enabled {
            let elapsed = self.started.elapsed();
            if self.bar.is_none() && elapsed >= DELAY {
                let bar = match self.total {
                    Some(n) => indicatif::ProgressBar::new(n),
                    None => indicatif::ProgressBar::new_spinner(),
                }
                // The clock starts with the call, not with the bar.
                .with_elapsed(elapsed);
                let template = match self.total {
                    Some(_) => "{bar:40} {pos}/{len} [{elapsed_precise}] {msg}",
                    None => "{spinner} {pos} [{elapsed_precise}] {msg}",
                };
                if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                    bar.set_style(style);
                }
                self.bar = Some(bar);
            }
            if let Some(bar) = &self.bar {
                // Rate and ETA over the whole call: indicatif's own estimate
                // would only see the jumps since the bar appeared.
                let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
                let eta = match self.total {
                    Some(n) if rate > 0.0 => {
                        format!(
                            " ETA {:.0?}",
                            Duration::from_secs_f64((n.saturating_sub(done)) as f64 / rate)
                        )
                    }
                    _ => String::new(),
                };
                bar.set_message(format!("{rate:.0}/s{eta}"));
                bar.set_position(done);
            }
        }
    }

    /// The call is over; `summary` gives the bar's last line (the pool's
    /// insights), if it has one to give.
    pub(crate) fn finish(&mut self, summary: impl FnOnce() -> Option<String>) {
        if self.callback.is_some() {
            self.call_back(true);
            // Once only: a stream's later polls finish again.
            self.callback = None;
        }
        #[cfg(feature = "progress")]
        if let Some(bar) = self.bar.take() {
            match summary() {
                Some(line) => bar.finish_with_message(line),
                None => bar.finish_and_clear(),
            }
        }
        #[cfg(not(feature = "progress"))]
        let _ = summary;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        #[cfg(feature = "progress")]
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}
