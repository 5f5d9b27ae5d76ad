//! `lock_uncontended`, `lock_contended`, `value_incr` and `shm_create`:
//! the locks and shared memory of `multiproc::sync` / `multiproc::shared`.
//!
//! - `lock_uncontended`: one process acquires and releases a `Lock`
//!   `iters` times; ns per acquire+release.
//! - `lock_contended`: two processes each do `iters / 2` increments of a
//!   shared integer under one `Lock`; total increments per second, timed
//!   in each child from a common `Barrier` to its last increment (the
//!   slower child counts), so process start-up is excluded.
//! - `value_incr`: the same with a `Value<u64>` and its built-in lock.
//! - `shm_create`: create a named 4 KiB segment, attach it by name, close
//!   both and unlink; µs per cycle (median of cycles). Variant `anonymous`
//!   creates and drops an anonymous segment instead (no Python peer: Python
//!   has no anonymous `SharedMemory`).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use multiproc::Process;
use multiproc::shared::{RawValue, SharedMemory, Value};
use multiproc::sync::{Barrier, Lock};

use crate::report::median;

/// Iterations per run.
pub fn iters_lock(_: &str, quick: bool) -> usize {
    if quick { 100_000 } else { 5_000_000 }
}

/// Increments per run, shared by the two processes.
pub fn iters_contended(_: &str, quick: bool) -> usize {
    if quick { 20_000 } else { 2_000_000 }
}

/// Create+attach+close cycles per run.
pub fn iters_shm(_: &str, quick: bool) -> usize {
    if quick { 50 } else { 2_000 }
}

fn err(e: multiproc::Error) -> String {
    e.to_string()
}

/// ns per uncontended acquire + release.
pub fn lock_uncontended(_: &str, iters: usize) -> Result<f64, String> {
    let lock = Lock::new().map_err(err)?;
    for _ in 0..1000 {
        drop(black_box(lock.acquire().map_err(|e| e.to_string())?));
    }
    let t0 = Instant::now();
    for _ in 0..iters {
        drop(black_box(lock.acquire().map_err(|e| e.to_string())?));
    }
    Ok(t0.elapsed().as_secs_f64() * 1e9 / iters as f64)
}

/// A child of `lock_contended`: seconds from the barrier to its last
/// increment.
fn contend(lock: Lock, counter: RawValue<AtomicU64>, start: Barrier, n: u64) -> f64 {
    start.wait().expect("barrier");
    let t0 = Instant::now();
    for _ in 0..n {
        let _held = lock.acquire().expect("lock");
        // A plain read-modify-write, as `v.value += 1` in Python.
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    t0.elapsed().as_secs_f64()
}

/// Increments per second, two processes on one lock.
pub fn lock_contended(_: &str, iters: usize) -> Result<f64, String> {
    let lock = Lock::new().map_err(err)?;
    let counter = RawValue::<AtomicU64>::new(0).map_err(err)?;
    let start = Barrier::new(2).map_err(err)?;
    let half = (iters / 2) as u64;
    let children = (0..2)
        .map(|_| {
            Process::new(
                contend,
                (lock.clone(), counter.clone(), start.clone(), half),
            )
            .start()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let mut slowest = 0f64;
    for c in children {
        slowest = slowest.max(c.join().map_err(err)?);
    }
    let total = counter.load(Ordering::Relaxed);
    if total != 2 * half {
        return Err(format!("lost updates: {total} != {}", 2 * half));
    }
    Ok(total as f64 / slowest)
}

/// A child of `value_incr`.
fn increment(value: Value<u64>, start: Barrier, n: u64) -> f64 {
    start.wait().expect("barrier");
    let t0 = Instant::now();
    for _ in 0..n {
        *value.lock().expect("lock") += 1;
    }
    t0.elapsed().as_secs_f64()
}

/// `Value<u64>` increments per second, two processes.
pub fn value_incr(_: &str, iters: usize) -> Result<f64, String> {
    let value = Value::new(0u64).map_err(err)?;
    let start = Barrier::new(2).map_err(err)?;
    let half = (iters / 2) as u64;
    let children = (0..2)
        .map(|_| Process::new(increment, (value.clone(), start.clone(), half)).start())
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let mut slowest = 0f64;
    for c in children {
        slowest = slowest.max(c.join().map_err(err)?);
    }
    let total = value.get().map_err(err)?;
    if total != 2 * half {
        return Err(format!("lost updates: {total} != {}", 2 * half));
    }
    Ok(total as f64 / slowest)
}

/// µs per create + attach + close (+ unlink), median of cycles.
pub fn shm_create(variant: &str, iters: usize) -> Result<f64, String> {
    let name = format!("multiproc-bench-{}", std::process::id());
    let mut times = Vec::with_capacity(iters);
    for i in 0..=iters {
        let t0 = Instant::now();
        if variant == "anonymous" {
            let shm = SharedMemory::new(4096).map_err(err)?;
            shm.write(0, b"x").map_err(err)?;
            drop(shm);
        } else {
            let owner = SharedMemory::create(&name, 4096).map_err(err)?;
            let other = SharedMemory::attach(&name).map_err(err)?;
            other.write(0, b"x").map_err(err)?;
            other.close();
            owner.close(); // the owner unlinks
        }
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(median(&mut times))
}
