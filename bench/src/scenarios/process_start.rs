//! `process_start`: start a process running a no-op function and join it.
//!
//! One run does one warm-up cycle (which, under forkserver, starts the fork
//! server) and then `iters` timed start+join cycles; its value is the median
//! cycle, in microseconds.

use std::time::Instant;

use multiproc::{Process, StartMethod};

use crate::report::median;

/// Iterations per run: spawn executes the program again, so fewer of those.
pub fn iters(variant: &str, quick: bool) -> usize {
    match (quick, variant) {
        (true, _) => 10,
        (false, "spawn") => 50,
        (false, _) => 200,
    }
}

/// The child's work.
fn noop() {}

/// The same for procspawn, which wants a `fn(A) -> R`.
fn noop_procspawn(_: ()) {}

/// Times `cycle` once untimed and then `iters` times; the median in µs.
fn median_cycle_us(
    iters: usize,
    mut cycle: impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    cycle()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = Instant::now();
        cycle()?;
        times.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(&mut times))
}

/// multiproc, with the start method named by `variant`.
pub fn multiproc(variant: &str, iters: usize) -> Result<f64, String> {
    let method: StartMethod = variant.parse().map_err(|e| format!("{e}"))?;
    median_cycle_us(iters, || {
        Process::new(noop, ())
            .start_method(method)
            .start()
            .and_then(Process::join)
            .map_err(|e| format!("{e}"))
    })
}

/// procspawn (which only spawns).
pub fn procspawn(_variant: &str, iters: usize) -> Result<f64, String> {
    median_cycle_us(iters, || {
        procspawn::spawn((), noop_procspawn)
            .join()
            .map_err(|e| format!("{e}"))
    })
}
