//! Seed 002's Semaphore example (PyMOTW) in Rust: `cargo run --example semaphore`.
//!
//! Ten workers, at most three in the "pool" at once. PyMOTW's ActivePool
//! is a Manager list of names; here a lock-free counter in shared memory
//! tracks how many are inside, which is what the example prints.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc::Process;
use multiproc::shared::RawValue;
use multiproc::sync::Semaphore;

fn worker(s: Semaphore, active: RawValue<AtomicU32>) {
    let name = multiproc::current_process().name().to_string();
    let _permit = s.acquire(); // `with s:`
    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
    println!("{name} in; now running: {now}");
    std::thread::sleep(Duration::from_millis(100));
    active.fetch_sub(1, Ordering::SeqCst);
    println!("{name} out");
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let s = Semaphore::new(3)?;
    let active = RawValue::<AtomicU32>::new(0)?;
    let jobs: Vec<_> = (0..10)
        .map(|i| {
            Process::new(worker, (s.clone(), active.clone()))
                .name(i.to_string())
                .start()
        })
        .collect::<Result<_, _>>()?;
    for j in jobs {
        j.join()?;
    }
    println!("value at the end: {}", s.get_value());
    Ok(())
}
