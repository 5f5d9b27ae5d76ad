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

/// Iterations per run of `process_start_preload`: every cold child builds
/// the table (tens of ms), so few.
pub fn preload_iters(_: &str, quick: bool) -> usize {
    if quick { 3 } else { 20 }
}

/// Elements of the table the children of `process_start_preload` need:
/// 8 MiB of `u64`, built by a loop (a stand-in for loading a model or a
/// large lookup table once).
const TABLE_LEN: usize = 1 << 20;

static TABLE: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();

fn table() -> &'static [u64] {
    TABLE.get_or_init(|| {
        (0..TABLE_LEN as u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
            .collect()
    })
}

/// The fork server's preload: builds the table once, in the server.
fn build_table() {
    table();
}

/// The child's work: one look-up in the table (built first if this child
/// did not inherit it).
fn use_table(i: u64) -> u64 {
    table()[i as usize % TABLE_LEN]
}

/// The argument that makes the bench binary run [`preload_main`] instead
/// of the harness.
pub const PRELOAD_ARG: &str = "__process_start_preload";

/// `process_start_preload`: start+join of a forkserver child that needs a
/// table built by a heavy one-time initialisation, without (`cold`: each
/// child builds it) and with (`preloaded`: the fork server built it once,
/// `set_forkserver_preload`) a preload. Runs in a fresh copy of this
/// binary, so that its fork server is a new one; median µs per cycle.
pub fn preload(variant: &str, iters: usize) -> Result<f64, String> {
    super::in_fresh_copy(PRELOAD_ARG, variant, iters)
}

/// The helper's side of [`preload`]: `VARIANT ITERS` from the command
/// line; prints the median.
pub fn preload_main(args: &[String]) -> Result<(), String> {
    let [variant, iters] = args else {
        return Err(format!("usage: {PRELOAD_ARG} cold|preloaded ITERS"));
    };
    let iters: usize = iters.parse().map_err(|e| format!("{e}"))?;
    match variant.as_str() {
        "cold" => {}
        "preloaded" => multiproc::set_forkserver_preload(&[multiproc::preload(build_table)])
            .map_err(|e| e.to_string())?,
        other => return Err(format!("unknown variant {other:?}")),
    }
    let mut i = 0;
    let us = median_cycle_us(iters, || {
        i += 1;
        let want = (i as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(17);
        let got = Process::new(use_table, i as u64)
            .start_method(StartMethod::Forkserver)
            .start()
            .and_then(Process::join)
            .map_err(|e| format!("{e}"))?;
        if got != want {
            return Err(format!("the child read {got}, not {want}"));
        }
        Ok(())
    })?;
    println!("{us:.3}");
    Ok(())
}
