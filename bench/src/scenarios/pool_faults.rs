//! What a pool does when a task goes wrong: `pool_cancel_replace` (issue
//! 14), `pool_worker_killed` and `pool_time_limit` (issue 18).
//!
//! Each cycle runs a *victim* task that writes its pid and the time it
//! started (CLOCK_MONOTONIC, which every process on the machine shares) to
//! a file, then sleeps (at most [`VICTIM_SLEEP`]); the parent polls for the
//! file, then cancels, kills or lets the limit pass, and times until the
//! pool has reported it and runs the next task. Every wait is bounded
//! ([`BOUND`]): a pool that does not report is an error, never a hang.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, Pool, StartMethod};

use crate::report::median;

/// Longest a victim sleeps if nothing stops it.
const VICTIM_SLEEP: Duration = Duration::from_secs(30);

/// Longest the parent waits for any step of a cycle.
const BOUND: Duration = Duration::from_secs(10);

/// The time limit of `pool_time_limit`.
pub const LIMIT: Duration = Duration::from_millis(50);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// CLOCK_MONOTONIC in ns: one clock for every process on the machine.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The victim: writes `PID NS` to `path` (atomically, by a rename), then
/// sleeps until it is stopped (or [`VICTIM_SLEEP`] passes).
fn victim(path: String) -> u64 {
    let line = format!("{} {}", std::process::id(), monotonic_ns());
    let tmp = format!("{path}.tmp");
    if std::fs::write(&tmp, line).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
    std::thread::sleep(VICTIM_SLEEP);
    0
}

/// Item 0 is the victim, every other item returns at once.
fn victim_or_echo(item: (u64, String)) -> u64 {
    if item.0 == 0 { victim(item.1) } else { item.0 }
}

fn noop(_: ()) {}

fn echo(x: u64) -> u64 {
    x
}

/// A temporary directory for the victims' files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Result<Scratch, String> {
        let dir =
            std::env::temp_dir().join(format!("multiproc-bench-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }

    fn file(&self, cycle: usize) -> String {
        self.0.join(format!("victim-{cycle}")).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits (bounded) for the victim's file: its pid and start time.
fn wait_victim(path: &str) -> Result<(i32, u64), String> {
    let t0 = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(Path::new(path)) {
            let mut it = text.split_whitespace().map(str::parse::<u64>);
            if let (Some(Ok(pid)), Some(Ok(ns))) = (it.next(), it.next()) {
                return Ok((pid as i32, ns));
            }
        }
        if t0.elapsed() > BOUND {
            return Err(format!("the victim task did not start within {BOUND:?}"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn pool(variant: &str, workers: usize) -> Result<Pool, String> {
    let method: StartMethod = variant.parse().map_err(err)?;
    let pool = Pool::builder()
        .processes(workers)
        .start_method(method)
        .build()
        .map_err(err)?;
    pool.apply(noop, ()).map_err(err)?;
    Ok(pool)
}

/// The next task on `pool`, bounded.
fn next_task(pool: &Pool) -> Result<(), String> {
    pool.apply_async(noop, ())
        .map_err(err)?
        .get_timeout(BOUND)
        .map_err(|e| format!("the next task: {e}"))
}

fn expect_kind<T>(r: multiproc::Result<T>, kind: ErrorKind, what: &str) -> Result<(), String> {
    match r {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(format!(
            "{what}: expected {kind:?}, got {:?}: {e}",
            e.kind()
        )),
        Ok(_) => Err(format!("{what}: expected {kind:?}, got a value")),
    }
}

/// Cycles of `pool_cancel_replace` and `pool_time_limit` per run.
pub fn cancel_iters(_: &str, quick: bool) -> usize {
    if quick { 3 } else { 20 }
}

/// `pool_cancel_replace`: on a 1-worker pool, `cancel` of a running task
/// (it sleeps) until a following `apply_async` has returned (the
/// replacement worker ran it); median ms per cycle (goal ≤ 2 ms).
pub fn cancel_replace(variant: &str, iters: usize) -> Result<f64, String> {
    let pool = pool(variant, 1)?;
    let scratch = Scratch::new("cancel")?;
    let mut times = Vec::with_capacity(iters);
    for cycle in 0..iters {
        let path = scratch.file(cycle);
        let r = pool.apply_async(victim, path.clone()).map_err(err)?;
        wait_victim(&path)?;
        let t0 = Instant::now();
        if !r.cancel() {
            return Err("cancel of a running task returned false".into());
        }
        next_task(&pool)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        expect_kind(
            r.get_timeout(BOUND),
            ErrorKind::Cancelled,
            "the cancelled task",
        )?;
    }
    Ok(median(&mut times))
}

/// Cycles of `pool_time_limit` per run (each at least 50 ms).
pub fn limit_iters(_: &str, quick: bool) -> usize {
    if quick { 2 } else { 10 }
}

/// Cycles of `pool_worker_killed` per run.
pub fn killed_iters(_: &str, quick: bool) -> usize {
    if quick { 1 } else { 5 }
}

/// Items of the map in `pool_worker_killed`.
const KILLED_ITEMS: u64 = 100;

/// `pool_worker_killed`: `map` (chunksize 1) of 100 items on 2 workers;
/// item 0 sleeps and its worker is SIGKILLed; value = median ms from the
/// kill until the map returns with the lost task's error
/// ([`ErrorKind::WorkerLost`]), then (untimed) the pool runs the next map.
pub fn worker_killed(variant: &str, iters: usize) -> Result<f64, String> {
    let pool = pool(variant, 2)?;
    let scratch = Scratch::new("killed")?;
    let mut times = Vec::with_capacity(iters);
    for cycle in 0..iters {
        let path = scratch.file(cycle);
        let items: Vec<(u64, String)> = (0..KILLED_ITEMS).map(|i| (i, path.clone())).collect();
        let r = pool
            .chunksize(1)
            .map_async(victim_or_echo, items)
            .map_err(err)?;
        let (pid, _) = wait_victim(&path)?;
        let pid = rustix::process::Pid::from_raw(pid).ok_or("pid 0")?;
        rustix::process::kill_process(pid, rustix::process::Signal::KILL)
            .map_err(|e| format!("kill {pid:?}: {e}"))?;
        let t0 = Instant::now();
        expect_kind(r.get_timeout(BOUND), ErrorKind::WorkerLost, "the map")?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        // The pool goes on: a whole map on both workers.
        let out = pool.map(echo, 0..100u64).map_err(err)?;
        if out.len() != 100 {
            return Err("the pool lost items after a worker died".into());
        }
    }
    Ok(median(&mut times))
}

/// `pool_time_limit`: on a 1-worker pool, a task with a 50 ms limit that
/// sleeps; value = median ms from the limit (the task's start + 50 ms)
/// until its [`ErrorKind::TimeLimit`] error is reported and a following
/// task has run (on the replacement worker).
pub fn time_limit(variant: &str, iters: usize) -> Result<f64, String> {
    let pool = pool(variant, 1)?;
    let scratch = Scratch::new("limit")?;
    let mut times = Vec::with_capacity(iters);
    for cycle in 0..iters {
        let path = scratch.file(cycle);
        let r = pool
            .task_timeout(LIMIT)
            .apply_async(victim, path.clone())
            .map_err(err)?;
        let (_, started) = wait_victim(&path)?;
        expect_kind(r.get_timeout(BOUND), ErrorKind::TimeLimit, "the task")?;
        next_task(&pool)?;
        let done = monotonic_ns();
        let limit = started + LIMIT.as_nanos() as u64;
        times.push(done.saturating_sub(limit) as f64 / 1e6);
    }
    Ok(median(&mut times))
}
