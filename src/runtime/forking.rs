//! What every fork from this process does first (a forked child in
//! `start.rs`, a pool's forker in `zygote.rs`): pause multiproc's helper
//! threads, refuse when other threads run, flush stdio.

use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::sys;

use super::{helpers, launch};

/// How long a fork waits for multiproc's busy helper threads.
const PAUSE_BOUND: Duration = Duration::from_millis(200);

/// What every fork from this process checks first: multiproc's own helper
/// threads are paused where they hold no lock (until the returned guard is
/// dropped, or forgotten in the child), and, unless `allow_threads`, no
/// other thread runs.
///
/// # Errors
///
/// [`ErrorKind::ForkWithThreads`] when a helper stays busy or other
/// threads run; [`ErrorKind::Io`] if the threads cannot be counted.
pub(super) fn fork_guard(allow_threads: bool) -> Result<helpers::Paused> {
    // multiproc's own helper threads (a pool's background thread) are
    // held where they hold no lock until the fork is done.
    let paused = helpers::pause(PAUSE_BOUND).map_err(|busy| {
        Error::new(
            ErrorKind::ForkWithThreads,
            format!(
                "fork refused: {busy} of multiproc's own helper threads (a pool's background thread) stayed \
                 busy for {PAUSE_BOUND:?}, for example in a pool callback, and a forked child could inherit a \
                 lock one of them holds. Try again, or use the forkserver (default) or spawn start method"
            ),
        )
    })?;
    if !allow_threads {
        let count = || -> Result<usize> {
            let threads = sys::process::thread_count()
                .map_err(|e| Error::io("could not count this process's threads", e))?;
            Ok(threads
                .saturating_sub(launch::keeper_threads())
                .saturating_sub(paused.helpers))
        };
        let mut threads = count()?;
        // A helper that just ended can be counted a moment longer.
        let until = Instant::now() + PAUSE_BOUND;
        while threads > 1 && helpers::had_helpers() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
            threads = count()?;
        }
        if threads > 1 {
            return Err(Error::new(
                ErrorKind::ForkWithThreads,
                format!(
                    "fork refused: this process has {threads} threads, and a forked child gets a copy of only the \
                     calling one, so a lock another thread holds (the allocator's, stdout's, any Mutex) stays locked \
                     forever in the child. Use the forkserver (default) or spawn start method, start children before \
                     starting threads, or, if the other threads cannot hold such locks, opt in with \
                     `unsafe {{ builder.allow_fork_with_threads() }}`"
                ),
            ));
        }
    }
    Ok(paused)
}

pub(super) fn flush_stdio() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}
