//! `log_forward`: what a log record costs when a child's records reach the
//! parent's logger (multiproc forwards them; Python's idiom is a
//! `QueueHandler` in the child and a `QueueListener` in the parent).
//!
//! Runs in a fresh copy of this binary, which installs a counting logger:
//! the harness's own process keeps no logger, so that no other scenario
//! pays for one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use log::{LevelFilter, Log, Metadata, Record};
use multiproc::{Process, StartMethod};

/// Records per run (quick: fewer).
pub fn iters(_: &str, quick: bool) -> usize {
    if quick { 2_000 } else { 100_000 }
}

/// The argument that makes the bench binary run [`forward_main`].
pub const FORWARD_ARG: &str = "__log_forward";

static SEEN: AtomicU64 = AtomicU64::new(0);

/// The parent's logger: counts what reaches it.
struct Counting;

impl Log for Counting {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &Record<'_>) {
        if record.target() != "multiproc" {
            SEEN.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn flush(&self) {}
}

/// The child: `n` records at info level, each formatted with a number.
fn chatter(n: u64) {
    for i in 0..n {
        log::info!(target: "bench", "record {i} of the child");
    }
}

/// µs per record from start to join of a forkserver child that logs
/// `iters` records, all of which the parent's logger has seen when `join`
/// returns, less the same cycle with no record.
pub fn forward(variant: &str, iters: usize) -> Result<f64, String> {
    super::in_fresh_copy(FORWARD_ARG, variant, iters)
}

/// The helper's side of [`forward`]: `VARIANT ITERS`; prints the value.
pub fn forward_main(args: &[String]) -> Result<(), String> {
    let [variant, iters] = args else {
        return Err(format!("usage: {FORWARD_ARG} METHOD ITERS"));
    };
    let method: StartMethod = variant.parse().map_err(|e| format!("{e}"))?;
    let n: u64 = iters.parse().map_err(|e| format!("{e}"))?;
    multiproc::logging::set_logger(Box::new(Counting), LevelFilter::Info)
        .map_err(|e| e.to_string())?;
    let cycle = |records: u64| -> Result<f64, String> {
        let before = SEEN.load(Ordering::Relaxed);
        let t0 = Instant::now();
        Process::new(chatter, records)
            .start_method(method)
            .start()
            .and_then(Process::join)
            .map_err(|e| e.to_string())?;
        let secs = t0.elapsed().as_secs_f64();
        let seen = SEEN.load(Ordering::Relaxed) - before;
        if seen != records {
            return Err(format!(
                "the parent's logger saw {seen} of {records} records"
            ));
        }
        Ok(secs)
    };
    cycle(10)?; // warm-up: the fork server and the collector start
    let empty = cycle(0)?;
    let full = cycle(n)?;
    println!("{:.4}", ((full - empty).max(0.0) * 1e6) / n as f64);
    Ok(())
}
