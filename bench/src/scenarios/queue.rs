//! `queue_small` and `queue_1mib`: one process puts, another gets; and
//! `queue_create`: what a queue costs to make.
//!
//! The consumer is a child started with the variant's start method; it
//! says it is ready on a second queue, the parent then times putting
//! `iters` messages until the child reports (on that second queue) that
//! it got them all. Small messages are integers (`u64`; Python `int`),
//! large ones 1 MiB byte strings (`serde_bytes::ByteBuf`; Python `bytes`).
//! The `rayon` column is the in-process limit: the same exchange between
//! two threads over a `crossbeam-channel`.
//!
//! `queue_create` times `Queue::new()` and its drop in one process (no
//! child, nothing put): µs per cycle, the median of cycles, beside
//! Python's `multiprocessing.Queue()` and `close()`.

use std::time::Instant;

use multiproc::queue::Queue;
use multiproc::{Process, StartMethod};
use serde_bytes::ByteBuf;

/// Iterations (messages) per run.
pub fn iters_small(_variant: &str, quick: bool) -> usize {
    if quick { 1_000 } else { 200_000 }
}

/// Iterations (1 MiB messages) per run.
pub fn iters_1mib(_variant: &str, quick: bool) -> usize {
    if quick { 10 } else { 1_000 }
}

const MIB: usize = 1 << 20;

/// `queue_create`: µs per `Queue::new()` + drop, median of `iters` cycles
/// after one untimed.
pub fn create(_variant: &str, iters: usize) -> Result<f64, String> {
    let mut times = Vec::with_capacity(iters);
    for i in 0..=iters {
        let t0 = Instant::now();
        let q = Queue::<u64>::new().map_err(err)?;
        drop(std::hint::black_box(q));
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(crate::report::median(&mut times))
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn consume_small(q: Queue<u64>, back: Queue<u64>, n: u64) {
    back.put(0).unwrap();
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(q.get().unwrap());
    }
    back.put(sum).unwrap();
}

/// multiproc, small messages: messages per second.
pub fn multiproc_small(variant: &str, iters: usize) -> Result<f64, String> {
    let method: StartMethod = variant.parse().map_err(err)?;
    let q = Queue::<u64>::new().map_err(err)?;
    let back = Queue::<u64>::new().map_err(err)?;
    let n = iters as u64;
    let child = Process::new(consume_small, (q.clone(), back.clone(), n))
        .start_method(method)
        .start()
        .map_err(err)?;
    back.get().map_err(err)?;
    let t0 = Instant::now();
    for i in 0..n {
        q.put(i).map_err(err)?;
    }
    let sum = back.get().map_err(err)?;
    let secs = t0.elapsed().as_secs_f64();
    child.join().map_err(err)?;
    if sum != n * (n - 1) / 2 {
        return Err(format!("checksum {sum} is wrong"));
    }
    Ok(n as f64 / secs)
}

fn consume_1mib(q: Queue<ByteBuf>, back: Queue<u64>, n: u64) {
    back.put(0).unwrap();
    let mut bytes = 0u64;
    for _ in 0..n {
        let m = q.get().unwrap();
        bytes += m.len() as u64 + u64::from(m[m.len() - 1]);
    }
    back.put(bytes).unwrap();
}

/// multiproc, 1 MiB messages: GB per second.
pub fn multiproc_1mib(variant: &str, iters: usize) -> Result<f64, String> {
    let method: StartMethod = variant.parse().map_err(err)?;
    let q = Queue::<ByteBuf>::new().map_err(err)?;
    let back = Queue::<u64>::new().map_err(err)?;
    let n = iters as u64;
    let child = Process::new(consume_1mib, (q.clone(), back.clone(), n))
        .start_method(method)
        .start()
        .map_err(err)?;
    let mut msg = vec![7u8; MIB];
    back.get().map_err(err)?;
    let t0 = Instant::now();
    for i in 0..n {
        msg[MIB - 1] = (i % 2) as u8;
        q.put(ByteBuf::from(msg.clone())).map_err(err)?;
    }
    let total = back.get().map_err(err)?;
    let secs = t0.elapsed().as_secs_f64();
    child.join().map_err(err)?;
    if total != n * MIB as u64 + n / 2 {
        return Err(format!(
            "received {total} bytes, expected {}",
            n * MIB as u64 + n / 2
        ));
    }
    Ok(n as f64 * MIB as f64 / secs / 1e9)
}

/// The in-process limit for small messages: two threads, a crossbeam channel.
pub fn crossbeam_small(_variant: &str, iters: usize) -> Result<f64, String> {
    let (tx, rx) = crossbeam_channel::unbounded::<u64>();
    let n = iters as u64;
    let t0 = Instant::now();
    let consumer = std::thread::spawn(move || rx.iter().take(n as usize).sum::<u64>());
    for i in 0..n {
        tx.send(i).map_err(err)?;
    }
    let sum = consumer
        .join()
        .map_err(|_| "consumer panicked".to_string())?;
    let secs = t0.elapsed().as_secs_f64();
    if sum != n * (n - 1) / 2 {
        return Err(format!("checksum {sum} is wrong"));
    }
    Ok(n as f64 / secs)
}

/// The in-process limit for 1 MiB messages: the same with a fresh 1 MiB
/// buffer per message (one copy, as the producer's clone above).
pub fn crossbeam_1mib(_variant: &str, iters: usize) -> Result<f64, String> {
    let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    let n = iters;
    let msg = vec![7u8; MIB];
    let t0 = Instant::now();
    let consumer = std::thread::spawn(move || rx.iter().take(n).map(|m| m.len()).sum::<usize>());
    for _ in 0..n {
        tx.send(msg.clone()).map_err(err)?;
    }
    let total = consumer
        .join()
        .map_err(|_| "consumer panicked".to_string())?;
    let secs = t0.elapsed().as_secs_f64();
    if total != n * MIB {
        return Err(format!("received {total} bytes"));
    }
    Ok(n as f64 * MIB as f64 / secs / 1e9)
}

/// Messages per run of the `queue_size` sweep: about 256 MiB (quick:
/// 32 MiB) of bodies, between 16 and 200 000 (quick: 20 000) messages.
pub fn size_iters(variant: &str, quick: bool) -> usize {
    let size: usize = variant.parse().unwrap_or(MIB);
    let (bytes, most) = if quick {
        (32 << 20, 20_000)
    } else {
        (256 << 20, 200_000)
    };
    (bytes / size.max(1)).clamp(16, most)
}

fn consume_sized(q: Queue<ByteBuf>, back: Queue<u64>, n: u64) {
    back.put(0).unwrap();
    let mut bytes = 0u64;
    for _ in 0..n {
        bytes += q.get().unwrap().len() as u64;
    }
    back.put(bytes).unwrap();
}

/// The `queue_size` sweep: `variant`-byte messages from the parent to a
/// forkserver child through a `Queue`; GB per second of message bodies.
pub fn multiproc_sized(variant: &str, iters: usize) -> Result<f64, String> {
    let size: usize = variant
        .parse()
        .map_err(|_| format!("{variant:?} is not a size in bytes"))?;
    let q = Queue::<ByteBuf>::new().map_err(err)?;
    let back = Queue::<u64>::new().map_err(err)?;
    let n = iters as u64;
    let child = Process::new(consume_sized, (q.clone(), back.clone(), n))
        .start()
        .map_err(err)?;
    let msg = ByteBuf::from(vec![7u8; size]);
    back.get().map_err(err)?;
    let t0 = Instant::now();
    for _ in 0..n {
        q.put(msg.clone()).map_err(err)?;
    }
    let total = back.get().map_err(err)?;
    let secs = t0.elapsed().as_secs_f64();
    child.join().map_err(err)?;
    if total != n * size as u64 {
        return Err(format!(
            "received {total} bytes, expected {}",
            n * size as u64
        ));
    }
    Ok(n as f64 * size as f64 / secs / 1e9)
}
