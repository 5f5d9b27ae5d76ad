//! The progress bar of long `map` and `imap` calls (feature `progress`):
//! drawn on stderr with indicatif once a call has run for half a second,
//! and only when stderr is a terminal.

use std::time::{Duration, Instant};

/// After how long a call gets a bar.
#[cfg(feature = "progress")]
const DELAY: Duration = Duration::from_millis(500);

pub(crate) struct Progress {
    #[cfg(feature = "progress")]
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
    #[allow(dead_code)]
    started: Instant,
    #[allow(dead_code)]
    total: Option<u64>,
}

impl Progress {
    pub(crate) fn new(enabled: bool, total: Option<u64>) -> Self {
        #[cfg(feature = "progress")]
        let enabled = enabled && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let _ = Duration::ZERO;
        Self {
            #[cfg(feature = "progress")]
            bar: None,
            enabled,
            started: Instant::now(),
            total,
        }
    }

    /// `done` items have been handed to the caller.
    pub(crate) fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        #[cfg(feature = "progress")]
        {
            if self.bar.is_none() && self.started.elapsed() >= DELAY {
                let style = match self.total {
                    Some(_) => indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} [{elapsed_precise}] {per_sec} ETA {eta}",
                    ),
                    None => indicatif::ProgressStyle::with_template(
                        "{spinner} {pos} [{elapsed_precise}] {per_sec}",
                    ),
                };
                let bar = match self.total {
                    Some(n) => indicatif::ProgressBar::new(n),
                    None => indicatif::ProgressBar::new_spinner(),
                };
                if let Ok(style) = style {
                    bar.set_style(style);
                }
                self.bar = Some(bar);
            }
            if let Some(bar) = &self.bar {
                bar.set_position(done);
            }
        }
        #[cfg(not(feature = "progress"))]
        let _ = done;
    }

    /// The call is over.
    pub(crate) fn finish(&mut self) {
        #[cfg(feature = "progress")]
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
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
