//! Seed 002's Condition example (PyMOTW) in Rust: `cargo run --example condition`.
//!
//! Stage 1 does its work and notifies; the stage 2 workers wait for it and
//! then run in parallel. A flag in shared memory says that stage 1 is done,
//! so a stage 2 worker that starts late does not wait for a notify that
//! already happened (`wait_for` checks it first).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc::Process;
use multiproc::shared::RawValue;
use multiproc::sync::Condition;

fn stage_1(cond: Condition, done: RawValue<AtomicU32>) {
    let name = multiproc::current_process().name().to_string();
    println!("Starting {name}");
    let held = cond.acquire().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    println!("{name} done and ready for stage 2");
    done.store(1, Ordering::Relaxed);
    held.notify_all();
}

fn stage_2(cond: Condition, done: RawValue<AtomicU32>) {
    let name = multiproc::current_process().name().to_string();
    println!("Starting {name}");
    let mut held = cond.acquire().unwrap();
    held.wait_for(|| done.load(Ordering::Relaxed) == 1).unwrap();
    println!("{name} running");
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let cond = Condition::new()?;
    let done = RawValue::<AtomicU32>::new(0)?;
    let s2: Vec<_> = (1..=2)
        .map(|i| {
            Process::new(stage_2, (cond.clone(), done.clone()))
                .name(format!("s2-{i}"))
                .start()
        })
        .collect::<Result<_, _>>()?;
    std::thread::sleep(Duration::from_secs(1));
    let s1 = Process::new(stage_1, (cond, done)).name("s1").start()?;
    s1.join()?;
    for p in s2 {
        p.join()?;
    }
    Ok(())
}
