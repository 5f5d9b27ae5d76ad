//! `pipe_small`, `pipe_1mib`, `pipe_pingpong` and the `pipe_size` sweep:
//! messages through [`multiproc::pipe`] between the harness and a child.
//!
//! Every run starts a child (default start method), waits until it says it
//! is ready, and only then starts the clock, so process start is not part
//! of the figure. The Python peers (`bench/python/pipe_*.py`) do the same.

use std::time::Instant;

use multiproc::Process;
use multiproc::connection::{self, Connection};

/// The size of `pipe_1mib` messages.
const MIB: usize = 1 << 20;

/// Iterations per run of `pipe_small` (messages).
pub fn small_iters(_variant: &str, quick: bool) -> usize {
    if quick { 20_000 } else { 200_000 }
}

/// Iterations per run of `pipe_1mib` (messages of 1 MiB).
pub fn mib_iters(_variant: &str, quick: bool) -> usize {
    if quick { 100 } else { 500 }
}

/// Iterations per run of `pipe_pingpong` (round trips).
pub fn pingpong_iters(_variant: &str, quick: bool) -> usize {
    if quick { 2_000 } else { 20_000 }
}

/// Iterations per run of the size sweep: about 256 MiB (quick: 32 MiB) of
/// bodies, but at least 16 and at most 200 000 (quick: 20 000) messages.
pub fn sweep_iters(variant: &str, quick: bool) -> usize {
    let size = parse_size(variant).unwrap_or(MIB).max(1);
    let (bytes, most) = if quick {
        (32 << 20, 20_000)
    } else {
        (256 << 20, 200_000)
    };
    (bytes / size).clamp(16, most)
}

/// A message size from a variant: a number of bytes, or `-` for 1 MiB.
fn parse_size(variant: &str) -> Result<usize, String> {
    match variant {
        "-" => Ok(MIB),
        v => v
            .parse()
            .map_err(|_| format!("{v:?} is not a message size in bytes")),
    }
}

fn err(e: multiproc::Error) -> String {
    e.to_string()
}

/// The child of `pipe_small`: says it is ready, receives `n` values, and
/// answers with their count.
fn small_receiver(conn: Connection<u64>, n: u64) {
    conn.send(&u64::MAX).unwrap();
    for _ in 0..n {
        conn.recv().unwrap();
    }
    conn.send(&n).unwrap();
}

/// `pipe_small`: `iters` typed `u64`s parent to child; messages per second.
pub fn small(_variant: &str, iters: usize) -> Result<f64, String> {
    let (ours, theirs) = connection::pipe::<u64>().map_err(err)?;
    let child = Process::new(small_receiver, (theirs, iters as u64))
        .start()
        .map_err(err)?;
    if ours.recv().map_err(err)? != u64::MAX {
        return Err("the child did not say it was ready".into());
    }
    let t0 = Instant::now();
    for i in 0..iters as u64 {
        ours.send(&i).map_err(err)?;
    }
    let n = ours.recv().map_err(err)?;
    let elapsed = t0.elapsed().as_secs_f64();
    child.join().map_err(err)?;
    if n != iters as u64 {
        return Err(format!("the child counted {n} messages, not {iters}"));
    }
    Ok(iters as f64 / elapsed)
}

/// The child of the byte scenarios: says it is ready, receives `n`
/// messages with `recv_bytes`, and answers once it has them all.
fn bytes_receiver(conn: Connection, n: u64) {
    conn.send_bytes(b"ready").unwrap();
    let mut total = 0u64;
    for _ in 0..n {
        total += conn.recv_bytes().unwrap().len() as u64;
    }
    conn.send_bytes(&total.to_le_bytes()).unwrap();
}

/// `pipe_1mib` and the sweep: `iters` messages of the variant's size
/// (bytes; `-` for 1 MiB) with `send_bytes`, parent to child; GB/s.
pub fn bytes(variant: &str, iters: usize) -> Result<f64, String> {
    let size = parse_size(variant)?;
    let payload = vec![7u8; size];
    let (ours, theirs) = connection::pipe::<Vec<u8>>().map_err(err)?;
    let child = Process::new(bytes_receiver, (theirs, iters as u64))
        .start()
        .map_err(err)?;
    if ours.recv_bytes().map_err(err)? != b"ready" {
        return Err("the child did not say it was ready".into());
    }
    let t0 = Instant::now();
    for _ in 0..iters {
        ours.send_bytes(&payload).map_err(err)?;
    }
    let total = ours.recv_bytes().map_err(err)?;
    let elapsed = t0.elapsed().as_secs_f64();
    child.join().map_err(err)?;
    let expected = (size as u64 * iters as u64).to_le_bytes();
    if total != expected {
        return Err("the child did not receive every byte".into());
    }
    Ok(size as f64 * iters as f64 / elapsed / 1e9)
}

/// The child of `pipe_pingpong`: sends back every value until `u64::MAX`.
fn echo(conn: Connection<u64>) {
    loop {
        let v = conn.recv().unwrap();
        if v == u64::MAX {
            return;
        }
        conn.send(&v).unwrap();
    }
}

/// `pipe_pingpong`: a `u64` to the child and back, `iters` times after one
/// untimed round trip; mean µs per round trip.
pub fn pingpong(_variant: &str, iters: usize) -> Result<f64, String> {
    let (ours, theirs) = connection::pipe::<u64>().map_err(err)?;
    let child = Process::new(echo, theirs).start().map_err(err)?;
    ours.send(&0).map_err(err)?;
    ours.recv().map_err(err)?;
    let t0 = Instant::now();
    for i in 0..iters as u64 {
        ours.send(&i).map_err(err)?;
        if ours.recv().map_err(err)? != i {
            return Err("the child echoed the wrong value".into());
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    ours.send(&u64::MAX).map_err(err)?;
    child.join().map_err(err)?;
    Ok(elapsed * 1e6 / iters as f64)
}
