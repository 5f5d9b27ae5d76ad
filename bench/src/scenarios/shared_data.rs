//! Large data without copies (issue 15): `pool_argsize_shared`, the
//! `pool_argsize` sweep with the argument a `SharedSlice` made once (as
//! Python's `[arg] * iters` shares one bytes object), and `pool_array`, a
//! 1 GiB array of f64 reaching two workers.

use std::time::Instant;

use multiproc::Pool;
use multiproc::shared::{SharedSlice, SharedVec};

use crate::report::median;

use super::pool::err;

fn pool() -> Result<Pool, String> {
    super::pool::pool("forkserver")
}

fn slice_len(s: SharedSlice<u8>) -> u64 {
    s.len() as u64
}

/// `pool_argsize_shared`: `map` with chunksize 1 of a function taking a
/// `variant`-byte `SharedSlice<u8>` and returning its length, on a
/// forkserver pool of 2; µs per task. Each task sends a descriptor and
/// maps the segment; no byte of it is copied.
pub fn argsize_shared(variant: &str, iters: usize) -> Result<f64, String> {
    let size: usize = variant
        .parse()
        .map_err(|_| format!("{variant:?} is not a size in bytes"))?;
    let pool = pool()?;
    let mut v = SharedVec::<u8>::zeroed(size).map_err(err)?;
    v.fill(7);
    let arg = v.freeze().map_err(err)?;
    let t0 = Instant::now();
    let out = pool
        .chunksize(1)
        .map(slice_len, (0..iters).map(|_| arg.clone()))
        .map_err(err)?;
    let us = t0.elapsed().as_secs_f64() * 1e6 / iters as f64;
    if out.len() != iters || out.iter().any(|&n| n != size as u64) {
        return Err("wrong results".into());
    }
    Ok(us)
}

/// Columns of the `pool_array` array: one row is 8 KiB.
const COLS: usize = 1024;

/// Sums row `row` of the array; returns the sum and the worker's resident
/// memory afterwards (MiB).
fn row_sum((a, row): (SharedSlice<f64>, usize)) -> (f64, f64) {
    let sum = a[row * COLS..(row + 1) * COLS].iter().sum();
    (
        sum,
        super::idle_rss::rss_mib(std::process::id()).unwrap_or(0.0),
    )
}

/// Handovers per run of `pool_array`.
pub fn array_iters(_: &str, quick: bool) -> usize {
    if quick { 5 } else { 50 }
}

/// `pool_array`: a 1 GiB array of f64 (`variant` is its size in GiB),
/// built in place in shared memory and frozen, reaches the two workers of
/// a forkserver pool: `map` of two tasks, each reading one row (8 KiB);
/// median ms per handover. Fails if a worker's resident memory shows a
/// copy (over 256 MiB).
pub fn array(variant: &str, iters: usize) -> Result<f64, String> {
    let gib: usize = variant
        .trim_end_matches("gib")
        .parse()
        .map_err(|_| format!("{variant:?} is not a size like 1gib"))?;
    let len = (gib << 30) / 8;
    let pool = pool()?;
    let mut v = SharedVec::<f64>::zeroed(len).map_err(err)?;
    v.fill(1.0);
    let a = v.freeze().map_err(err)?;
    let mut times = Vec::with_capacity(iters);
    for i in 0..iters + 1 {
        let t0 = Instant::now();
        let out = pool
            .chunksize(1)
            .map(row_sum, [(a.clone(), 2 * i), (a.clone(), 2 * i + 1)])
            .map_err(err)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        for (sum, rss) in out {
            if sum != COLS as f64 {
                return Err(format!("a row summed to {sum}"));
            }
            if rss > 256.0 {
                return Err(format!("a worker holds {rss:.0} MiB: the array was copied"));
            }
        }
        if i > 0 {
            times.push(ms);
        }
    }
    Ok(median(&mut times))
}

fn make_bytes(n: usize) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![7u8; n])
}

/// `pool_resultsize`: `map` with chunksize 1 of a function returning a
/// `variant`-byte result (bytes made in the worker), on a forkserver pool
/// of 2; µs per task.
pub fn resultsize(variant: &str, iters: usize) -> Result<f64, String> {
    let size: usize = variant
        .parse()
        .map_err(|_| format!("{variant:?} is not a size in bytes"))?;
    let pool = pool()?;
    let t0 = Instant::now();
    let out = pool
        .chunksize(1)
        .map(make_bytes, (0..iters).map(|_| size))
        .map_err(err)?;
    let us = t0.elapsed().as_secs_f64() * 1e6 / iters as f64;
    if out.len() != iters || out.iter().any(|b| b.len() != size) {
        return Err("wrong results".into());
    }
    Ok(us)
}
