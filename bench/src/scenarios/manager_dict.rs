//! `manager_dict`: a shared dict served by a manager process.
//!
//! Variants, all in microseconds:
//! - `op_from_child`: one `d[k] = v` from a child process, one round trip
//!   each; the run's value is the mean over `iters` operations.
//! - `batched`: the same writes sent 100 to a round trip (`update` with
//!   100 entries; Python's peer does `d.update(...)` the same way); per
//!   operation.
//! - `start`: `Manager()` until its first round trip (making a dict) is
//!   answered, then shut down; the median of `iters` starts.

use std::time::Instant;

use multiproc::manager::DictProxy;
use multiproc::{Manager, Process};

use crate::report::median;

/// Entries per round trip in `batched`.
const BATCH: u64 = 100;

/// Iterations per run.
pub fn iters(variant: &str, quick: bool) -> usize {
    match (quick, variant) {
        (true, "start") => 3,
        (true, _) => 1_000,
        (false, "start") => 20,
        (false, _) => 20_000,
    }
}

/// The child's work: `n` single writes, or `n` writes in batches; the mean
/// µs per write.
fn writes(d: DictProxy<u64, u64>, n: u64, batched: bool) -> f64 {
    // Warm up: the child's first call connects.
    d.insert(0, 0).unwrap();
    let t0 = Instant::now();
    if batched {
        let mut done = 0;
        while done < n {
            d.update((done..done + BATCH).map(|i| (i % 1000, i)))
                .unwrap();
            done += BATCH;
        }
    } else {
        for i in 0..n {
            d.insert(i % 1000, i).unwrap();
        }
    }
    t0.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn err(e: multiproc::Error) -> String {
    e.to_string()
}

/// multiproc.
pub fn multiproc(variant: &str, iters: usize) -> Result<f64, String> {
    match variant {
        "start" => {
            let mut times = Vec::with_capacity(iters);
            // One untimed start: the fork server comes up with the first.
            Manager::new().and_then(Manager::shutdown).map_err(err)?;
            for _ in 0..iters {
                let t0 = Instant::now();
                let m = Manager::new().map_err(err)?;
                m.dict::<u8, u8>().map_err(err)?;
                times.push(t0.elapsed().as_secs_f64() * 1e6);
                m.shutdown().map_err(err)?;
            }
            Ok(median(&mut times))
        }
        "op_from_child" | "batched" => {
            let m = Manager::new().map_err(err)?;
            let d = m.dict::<u64, u64>().map_err(err)?;
            let batched = variant == "batched";
            let per_op = Process::new(writes, (d, iters as u64, batched))
                .start()
                .and_then(Process::join)
                .map_err(err)?;
            m.shutdown().map_err(err)?;
            Ok(per_op)
        }
        other => Err(format!("no variant {other}")),
    }
}
