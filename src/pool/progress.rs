//! The progress bar of long `map` and `imap` calls (feature `progress`):
//! drawn on stderr with indicatif once a call has run for half a second,
//! and only when stderr is a terminal.

#[cfg(feature = "progress")]
use std::time::Duration;
use std::time::Instant;

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
        #[cfg(not(feature = "progress"))]
        let _ = done;
    }

    /// The call is over.
    pub(crate) fn finish(&mut self) {
        #[cfg(feature = "progress")]
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
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
