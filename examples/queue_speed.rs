//! How fast a queue is: `cargo run --release --example queue_speed [N]`.
//! One child gets N small messages (u64) that the parent puts, five times;
//! prints each rate and the median. The benchmark harness (`bench/`,
//! scenarios `queue_small` and `queue_1mib`) has the comparison with Python.

use std::time::Instant;

use multiproc::Process;
use multiproc::queue::Queue;

fn consume(q: Queue<u64>, back: Queue<u64>, n: u64) {
    back.put(0).unwrap();
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(q.get().unwrap());
    }
    back.put(sum).unwrap();
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let mut rates = Vec::new();
    for _ in 0..5 {
        let q = Queue::<u64>::new()?;
        let back = Queue::<u64>::new()?;
        let child = Process::new(consume, (q.clone(), back.clone(), n)).start()?;
        back.get()?;
        let t0 = Instant::now();
        for i in 0..n {
            q.put(i)?;
        }
        let put_rate = n as f64 / t0.elapsed().as_secs_f64();
        let sum = back.get()?;
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        child.join()?;
        assert_eq!(sum, n * (n - 1) / 2);
        println!(
            "{:.2} M msgs/s (the producer alone: {:.2} M puts/s)",
            rate / 1e6,
            put_rate / 1e6
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("median {:.2} M msgs/s", rates[2] / 1e6);
    Ok(())
}
