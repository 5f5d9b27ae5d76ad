//! The `idle_rss` and `idle_uss` tables: memory of an idle child,
//! multiproc's beside Python's, for each start method.
//!
//! A run starts `iters` children one after the other; each says it is ready
//! and blocks receiving on its pipe while the parent reads its memory from
//! `/proc`, then is told to exit. The value is the median, in MiB.
//!
//! - RSS (`VmRSS` in `/proc/PID/status`) counts every page the child maps
//!   that is in memory, including those shared with its parent after a
//!   fork and with other processes (the C library), as `ps` and `top` do:
//!   after a fork it says more about the parent than about the child.
//! - USS (`Private_Clean` + `Private_Dirty` in `/proc/PID/smaps_rollup`)
//!   counts only the pages no other process shares: what the child costs.

use multiproc::connection::{self, Connection};
use multiproc::{Process, StartMethod};

use crate::report::median;

/// Children per run.
pub fn iters(_variant: &str, quick: bool) -> usize {
    if quick { 1 } else { 3 }
}

/// The resident set size of process `pid`, in MiB.
pub fn rss_mib(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .ok_or_else(|| format!("{path} has no VmRSS line"))
}

/// The unique set size of process `pid` (its private pages), in MiB.
pub fn uss_mib(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let rollup = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let kib: f64 = rollup
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Private_Clean:")
                .or_else(|| l.strip_prefix("Private_Dirty:"))
        })
        .filter_map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .sum();
    Ok(kib / 1024.0)
}

/// The idle child: ready, then waits for the word to exit.
fn idle(conn: Connection<u8>) {
    conn.send(&1).unwrap();
    let _ = conn.recv();
}

/// RSS of a multiproc child, with the start method named by `variant`.
pub fn multiproc_rss(variant: &str, iters: usize) -> Result<f64, String> {
    measure(variant, iters, rss_mib)
}

/// USS of a multiproc child, with the start method named by `variant`.
pub fn multiproc_uss(variant: &str, iters: usize) -> Result<f64, String> {
    measure(variant, iters, uss_mib)
}

fn measure(
    variant: &str,
    iters: usize,
    metric: fn(u32) -> Result<f64, String>,
) -> Result<f64, String> {
    let method: StartMethod = variant.parse().map_err(|e| format!("{e}"))?;
    let mut values = Vec::with_capacity(iters);
    for _ in 0..iters {
        let (ours, theirs) = connection::pipe::<u8>().map_err(|e| e.to_string())?;
        let child = Process::new(idle, theirs)
            .start_method(method)
            .start()
            .map_err(|e| e.to_string())?;
        ours.recv().map_err(|e| e.to_string())?;
        let rss = metric(child.pid());
        ours.send(&0).map_err(|e| e.to_string())?;
        child.join().map_err(|e| e.to_string())?;
        values.push(rss?);
    }
    Ok(median(&mut values))
}
