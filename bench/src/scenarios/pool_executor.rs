//! Issue 14's executor scenarios: `pool_map_async_busy`,
//! `pool_as_completed` and `pool_await_latency` (their Python peers are
//! the scripts of the same names in `bench/python`).

use std::time::{Duration, Instant};

use multiproc::pool::as_completed;
use multiproc::{Pool, StartMethod};

/// A task that spins for 100 µs and returns its input.
fn spin_100us(x: u64) -> u64 {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_micros(100) {
        std::hint::spin_loop();
    }
    x
}

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn pool(variant: &str) -> Result<Pool, String> {
    let method: StartMethod = variant.parse().map_err(err)?;
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .map_err(err)?;
    pool.map(square, 0..1_000u64).map_err(err)?;
    Ok(pool)
}

/// Items of `pool_map_async_busy`: 20 000 (quick: 500, caller busy 37 ms).
pub fn busy_iters(_: &str, quick: bool) -> usize {
    if quick { 500 } else { 20_000 }
}

/// `pool_map_async_busy`: `map_async` of `iters` × 100 µs spin tasks on 2
/// workers while the caller sleeps (its own work) for the time the map
/// needs plus half of it (1.5 s for 20 000); value = ms from the caller's
/// return to having the result (goal ≤ 10 ms).
pub fn map_async_busy(variant: &str, iters: usize) -> Result<f64, String> {
    let pool = pool(variant)?;
    let busy = Duration::from_micros(75 * iters as u64);
    let r = pool.map_async(spin_100us, 0..iters as u64).map_err(err)?;
    std::thread::sleep(busy);
    let t0 = Instant::now();
    let out = r.get().map_err(err)?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if out.len() != iters {
        return Err(format!("{} results for {iters} items", out.len()));
    }
    Ok(ms)
}

/// Results of `pool_as_completed`: 20 000 (quick: 200).
pub fn as_completed_iters(_: &str, quick: bool) -> usize {
    if quick { 200 } else { 20_000 }
}

/// `pool_as_completed`: `iters` `apply_async` calls all finished, then
/// `as_completed` over them vs `get` of each in order; value = µs of
/// overhead per result (goal ≤ 1 µs). Both loops start after every result
/// has arrived, so only the collection is timed.
pub fn as_completed_overhead(variant: &str, iters: usize) -> Result<f64, String> {
    let pool = pool(variant)?;
    let submit = || -> Result<Vec<_>, String> {
        let rs = (0..iters as u64)
            .map(|i| pool.apply_async(square, i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        // Let every result arrive before timing the collection.
        while !rs.iter().all(|r| r.ready()) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(rs)
    };
    let rs = submit()?;
    let t0 = Instant::now();
    let mut n = 0;
    for item in as_completed(&rs, None) {
        item.map_err(err)?;
        n += 1;
    }
    let t_ac = t0.elapsed().as_secs_f64();
    if n != iters {
        return Err(format!("as_completed gave {n} of {iters}"));
    }
    let rs = submit()?;
    let t0 = Instant::now();
    for r in rs {
        r.get().map_err(err)?;
    }
    let t_get = t0.elapsed().as_secs_f64();
    Ok(((t_ac - t_get) * 1e6 / iters as f64).max(0.0))
}

/// Awaited results per run of `pool_await_latency`: 200 (quick: 20).
pub fn await_iters(_: &str, quick: bool) -> usize {
    if quick { 20 } else { 200 }
}

/// The awaited task: spins 1 ms (so that the awaiting task is parked when
/// the result comes), then returns the time it finished (CLOCK_MONOTONIC,
/// shared by every process).
fn stamp_after_1ms(_: ()) -> u64 {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1) {
        std::hint::spin_loop();
    }
    super::pool_faults::monotonic_ns()
}

/// `pool_await_latency`: `apply_async(..).await` in a tokio current-thread
/// runtime (no threads of its own), one at a time; value = median µs from
/// the task finishing in the worker (its CLOCK_MONOTONIC stamp) to the
/// awaiting task running again (goal ≤ 20 µs).
pub fn await_latency(variant: &str, iters: usize) -> Result<f64, String> {
    await_median(variant, iters, |finished| finished)
}

/// `pool_await_handover`: as `pool_await_latency`, timed from the moment the
/// pool hands the result to the awaiting task's waker (the result has
/// arrived in this process and is decoded) to the task running again:
/// the "within 20 µs of arriving", without the worker-to-pool hop.
pub fn await_handover(variant: &str, iters: usize) -> Result<f64, String> {
    await_median(variant, iters, |_| multiproc::pool::__last_wake_ns())
}

/// Awaits `stamp_after_1ms` `iters` times, one at a time, in a tokio
/// current-thread runtime; the median µs from `since(task's end stamp)` to
/// the awaiting task running again.
fn await_median(variant: &str, iters: usize, since: impl Fn(u64) -> u64) -> Result<f64, String> {
    let pool = pool(variant)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(err)?;
    let mut times = rt.block_on(async {
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let r = pool.apply_async(stamp_after_1ms, ()).map_err(err)?;
            let finished = r.await.map_err(err)?;
            let woke = super::pool_faults::monotonic_ns();
            times.push(woke.saturating_sub(since(finished)) as f64 / 1e3);
        }
        Ok::<_, String>(times)
    })?;
    Ok(crate::report::median(&mut times))
}
