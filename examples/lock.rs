//! The seeds' Lock examples in Rust: `cargo run --example lock`.
//!
//! Seed 003: "a lock keeps data consistent when several processes each add
//! 1 to a variable". Seed 002 (PyMOTW): workers take turns writing to a
//! shared resource, one with `with lock:`, one with acquire/release. And
//! what Python cannot do: a worker killed while holding the lock does not
//! hang the others — the next one gets the lock and is told.

use std::time::Duration;

use multiproc::Process;
use multiproc::sync::{AcquireError, Event, Lock};

fn worker_with(lock: Lock, name: String) {
    let _held = lock.acquire().unwrap(); // `with lock:`
    println!("Lock acquired via with ({name})");
}

fn worker_no_with(lock: Lock) {
    let held = lock.acquire().unwrap(); // lock.acquire()
    println!("Lock acquired directly");
    drop(held); // lock.release()
}

fn doomed(lock: Lock, holding: Event) {
    let _held = lock.acquire().unwrap();
    holding.set();
    loop {
        std::thread::park(); // killed while holding the lock
    }
}

fn main() -> multiproc::Result<()> {
    multiproc::init();

    let lock = Lock::new()?;
    let w = Process::new(worker_with, (lock.clone(), "w".to_string())).start()?;
    let nw = Process::new(worker_no_with, lock.clone()).start()?;
    w.join()?;
    nw.join()?;

    // A holder that dies.
    let holding = Event::new()?;
    let victim = Process::new(doomed, (lock.clone(), holding.clone())).start()?;
    holding.wait();
    victim.kill()?;
    let _ = victim.join();
    match lock.acquire_timeout(Duration::from_secs(5)) {
        Err(AcquireError::OwnerDied(died)) => {
            println!("the holder died; we have the lock and repair the data");
            drop(died.into_guard());
        }
        Ok(_) => println!("got the lock normally"),
        Err(e) => println!("no lock: {e}"),
    }
    Ok(())
}
