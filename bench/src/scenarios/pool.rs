//! The pool scenarios: `pool_start`, `pool_map_chunk1`, `pool_map_auto`,
//! `pool_apply_async`, `pool_imap_unordered`.
//!
//! Each throughput run makes a pool of 2 workers (untimed, with a warm-up
//! call), then times one call over `iters` items; its value is the time per
//! item. `pool_start` times pool creation up to its first result.

use std::time::Instant;

use multiproc::{Pool, StartMethod};

use crate::report::median;

/// How many workers every pool scenario uses (the machines have 2 cores).
const WORKERS: usize = 2;

/// The trivial task: u64 to u64.
fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn noop(_: ()) {}

pub(super) fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Iterations per run of `pool_start`.
pub fn start_iters(variant: &str, quick: bool) -> usize {
    match (quick, variant) {
        (true, _) => 1,
        (false, "spawn") => 10,
        (false, _) => 20,
    }
}

/// Items per run of the chunksize-1 scenarios (Python does 20 000 too;
/// quick: 200, as the slowest add-ons need 250 µs a task).
pub fn chunk1_iters(_: &str, quick: bool) -> usize {
    if quick { 200 } else { 20_000 }
}

/// Items per run of `pool_map_auto`.
pub fn auto_iters(_: &str, quick: bool) -> usize {
    if quick { 20_000 } else { 1_000_000 }
}

/// The pools' `shared_memory_above`, from `MULTIPROC_BENCH_SHM_ABOVE` when
/// set (bytes; `max` for off), to choose the default by measurement.
fn with_shm_above(b: multiproc::PoolBuilder) -> multiproc::PoolBuilder {
    match std::env::var("MULTIPROC_BENCH_SHM_ABOVE").ok().as_deref() {
        Some("max") => b.shared_memory_above(usize::MAX),
        Some(n) => match n.parse() {
            Ok(n) => b.shared_memory_above(n),
            Err(_) => b,
        },
        None => b,
    }
}

pub(super) fn pool(method: &str) -> Result<Pool, String> {
    let method: StartMethod = method.parse().map_err(err)?;
    let pool = with_shm_above(Pool::builder())
        .processes(WORKERS)
        .start_method(method)
        .build()
        .map_err(err)?;
    pool.map(square, 0..1_000u64).map_err(err)?;
    Ok(pool)
}

/// `pool_start`: `Pool::new` of 2 workers with `variant`'s start method
/// until the first result of `apply`; median ms.
pub fn start(variant: &str, iters: usize) -> Result<f64, String> {
    let method: StartMethod = variant.parse().map_err(err)?;
    let cycle = || -> Result<f64, String> {
        let t0 = Instant::now();
        let pool = Pool::builder()
            .processes(WORKERS)
            .start_method(method)
            .build()
            .map_err(err)?;
        pool.apply(noop, ()).map_err(err)?;
        let t = t0.elapsed().as_secs_f64() * 1e3;
        drop(pool);
        Ok(t)
    };
    cycle()?; // warm-up: starts the fork server
    let mut times = (0..iters).map(|_| cycle()).collect::<Result<Vec<_>, _>>()?;
    Ok(median(&mut times))
}

/// `pool_start` for procspawn's pool (spawn only).
pub fn start_procspawn(_: &str, iters: usize) -> Result<f64, String> {
    let mut times = Vec::with_capacity(iters);
    for _ in 0..=iters {
        let t0 = Instant::now();
        let pool = procspawn::Pool::new(WORKERS).map_err(err)?;
        pool.spawn((), noop).join().map_err(err)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        pool.shutdown();
    }
    times.remove(0);
    Ok(median(&mut times))
}

fn per_item_us(iters: usize, f: impl FnOnce() -> Result<(), String>) -> Result<f64, String> {
    let t0 = Instant::now();
    f()?;
    Ok(t0.elapsed().as_secs_f64() * 1e6 / iters as f64)
}

/// `pool_map_chunk1`: `map` of a trivial function with chunksize 1.
pub fn map_chunk1(variant: &str, iters: usize) -> Result<f64, String> {
    let pool = pool(variant)?;
    per_item_us(iters, || {
        let out = pool
            .chunksize(1)
            .map(square, 0..iters as u64)
            .map_err(err)?;
        assert_eq!(out.len(), iters);
        Ok(())
    })
}

/// `pool_map_auto`: `map` of u64 to u64 with the default chunking.
pub fn map_auto(variant: &str, iters: usize) -> Result<f64, String> {
    let pool = pool(variant)?;
    per_item_us(iters, || {
        let out = pool.map(square, 0..iters as u64).map_err(err)?;
        assert_eq!(out.len(), iters);
        Ok(())
    })
}

/// The stateful task of `pool_map_state`: counts in its worker's state.
fn square_counted(count: &mut u64, x: u64) -> u64 {
    *count += 1;
    x.wrapping_mul(x)
}

/// The task of `pool_map_state`'s `partial` variant: a value given with it.
fn square_plus(&k: &u64, x: u64) -> u64 {
    x.wrapping_mul(x).wrapping_add(k)
}

/// `pool_map_state`: `map` with the default chunking under forkserver, of the plain
/// task (`plain`), of a task that takes its worker's state (`state`,
/// `StatePool::map_with_state`), or of a task given a value with
/// `multiproc::partial` (`partial`), or of the plain task with the pool's insights on
/// (`insights`), to show what state, values and insights cost per task.
pub fn map_state(variant: &str, iters: usize) -> Result<f64, String> {
    let builder = Pool::builder()
        .processes(WORKERS)
        .start_method(StartMethod::Forkserver);
    match variant {
        "plain" => {
            let pool = builder.build().map_err(err)?;
            pool.map(square, 0..1_000u64).map_err(err)?;
            per_item_us(iters, || {
                let out = pool.map(square, 0..iters as u64).map_err(err)?;
                assert_eq!(out.len(), iters);
                Ok(())
            })
        }
        "insights" => {
            let pool = builder.insights(true).build().map_err(err)?;
            pool.map(square, 0..1_000u64).map_err(err)?;
            per_item_us(iters, || {
                let out = pool.map(square, 0..iters as u64).map_err(err)?;
                assert_eq!(out.len(), iters);
                Ok(())
            })
        }
        "partial" => {
            let pool = builder.build().map_err(err)?;
            pool.map(multiproc::partial(square_plus, 7), 0..1_000u64)
                .map_err(err)?;
            per_item_us(iters, || {
                let out = pool
                    .map(multiproc::partial(square_plus, 7), 0..iters as u64)
                    .map_err(err)?;
                assert_eq!(out.len(), iters);
                Ok(())
            })
        }
        "state" => {
            let pool = builder
                .worker_state(|start: u64| start, 0)
                .build()
                .map_err(err)?;
            pool.map_with_state(square_counted, 0..1_000u64)
                .map_err(err)?;
            per_item_us(iters, || {
                let out = pool
                    .map_with_state(square_counted, 0..iters as u64)
                    .map_err(err)?;
                assert_eq!(out.len(), iters);
                Ok(())
            })
        }
        other => Err(format!("unknown variant {other}")),
    }
}

/// `pool_apply_async`: `iters` calls in flight, then every result.
pub fn apply_async(variant: &str, iters: usize) -> Result<f64, String> {
    let pool = pool(variant)?;
    per_item_us(iters, || {
        let results = (0..iters as u64)
            .map(|i| pool.apply_async(square, i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        for r in results {
            r.get().map_err(err)?;
        }
        Ok(())
    })
}

/// `pool_apply_async` for procspawn's pool.
pub fn apply_async_procspawn(_: &str, iters: usize) -> Result<f64, String> {
    let pool = procspawn::Pool::new(WORKERS).map_err(err)?;
    let r = per_item_us(iters, || {
        // procspawn keeps descriptors per task: at most 256 in flight.
        let mut i = 0u64;
        while i < iters as u64 {
            let end = (i + 256).min(iters as u64);
            let handles: Vec<_> = (i..end).map(|i| pool.spawn(i, square)).collect();
            for h in handles {
                h.join().map_err(err)?;
            }
            i = end;
        }
        Ok(())
    });
    pool.shutdown();
    r
}

/// `pool_imap_unordered`: chunksize 1, consumed as results arrive.
pub fn imap_unordered(variant: &str, iters: usize) -> Result<f64, String> {
    let pool = pool(variant)?;
    per_item_us(iters, || {
        let mut n = 0;
        for r in pool
            .chunksize(1)
            .imap_unordered(square, 0..iters as u64)
            .map_err(err)?
        {
            r.map_err(err)?;
            n += 1;
        }
        assert_eq!(n, iters);
        Ok(())
    })
}

/// Runs `f` in a rayon pool of 2 threads, then waits until its threads are
/// gone, so that the fork start method works again in later scenarios.
fn with_rayon<T>(f: impl FnOnce() -> T + Send, _: T) -> Result<T, String>
where
    T: Send,
{
    let tp = rayon::ThreadPoolBuilder::new()
        .num_threads(WORKERS)
        .build()
        .map_err(err)?;
    let out = tp.install(f);
    drop(tp);
    let t0 = Instant::now();
    while threads() > 1 && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(out)
}

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// rayon on `pool_map_auto`'s work: the in-process limit.
pub fn map_auto_rayon(_: &str, iters: usize) -> Result<f64, String> {
    use rayon::prelude::*;
    with_rayon(
        || {
            let input: Vec<u64> = (0..iters as u64).collect();
            let t0 = Instant::now();
            let out: Vec<u64> = input.par_iter().map(|&x| square(x)).collect();
            assert_eq!(out.len(), iters);
            t0.elapsed().as_secs_f64() * 1e6 / iters as f64
        },
        0.0,
    )
}

/// rayon on `pool_map_chunk1`'s work, one item per rayon task.
pub fn map_chunk1_rayon(_: &str, iters: usize) -> Result<f64, String> {
    use rayon::prelude::*;
    with_rayon(
        || {
            let input: Vec<u64> = (0..iters as u64).collect();
            let t0 = Instant::now();
            let out: Vec<u64> = input
                .par_iter()
                .with_max_len(1)
                .map(|&x| square(x))
                .collect();
            assert_eq!(out.len(), iters);
            t0.elapsed().as_secs_f64() * 1e6 / iters as f64
        },
        0.0,
    )
}

/// Items per run of the `pool_workers` sweep.
pub fn workers_iters(_: &str, quick: bool) -> usize {
    if quick { 200 } else { 20_000 }
}

/// The `pool_workers` sweep: `map` with chunksize 1 on a forkserver pool of
/// `variant` workers (1, 2, 4, 8 on a 2-core machine); µs per task.
pub fn workers(variant: &str, iters: usize) -> Result<f64, String> {
    let n: usize = variant
        .parse()
        .map_err(|_| format!("{variant:?} is not a number of workers"))?;
    let pool = Pool::builder().processes(n).build().map_err(err)?;
    pool.map(square, 0..1_000u64).map_err(err)?;
    per_item_us(iters, || {
        let out = pool
            .chunksize(1)
            .map(square, 0..iters as u64)
            .map_err(err)?;
        assert_eq!(out.len(), iters);
        Ok(())
    })
}

/// Items per run of the `pool_argsize` sweep: about 64 MiB of arguments
/// (quick: 2 MiB), between 8 and 20 000 (quick: 200) items.
pub fn argsize_iters(variant: &str, quick: bool) -> usize {
    let size: usize = variant.parse().unwrap_or(1 << 20);
    let (bytes, most) = if quick {
        (2 << 20, 200)
    } else {
        (64 << 20, 20_000)
    };
    (bytes / size.max(1)).clamp(8, most)
}

fn byte_len(b: std::sync::Arc<serde_bytes::ByteBuf>) -> u64 {
    b.len() as u64
}

/// The `pool_argsize` sweep: `map` with chunksize 1 of a function taking a
/// `variant`-byte argument (in an `Arc`, so that the items share one
/// buffer) and returning its length, on a forkserver pool of 2; µs per task.
pub fn argsize(variant: &str, iters: usize) -> Result<f64, String> {
    let size: usize = variant
        .parse()
        .map_err(|_| format!("{variant:?} is not a size in bytes"))?;
    let pool = pool("forkserver")?;
    // One buffer shared by every item, as Python's `[arg] * iters` shares
    // one bytes object: the input costs no copy on either side.
    let arg = std::sync::Arc::new(serde_bytes::ByteBuf::from(vec![7u8; size]));
    per_item_us(iters, || {
        let out = pool
            .chunksize(1)
            .map(byte_len, (0..iters).map(|_| arg.clone()))
            .map_err(err)?;
        if out.len() != iters || out.iter().any(|&n| n != size as u64) {
            return Err("wrong results".into());
        }
        Ok(())
    })
}
