//! The seeds' Queue examples in Rust: `cargo run --example queue`.
//!
//! 1. (seed 000) Two children each put `{pid: time}` on a queue; the
//!    parent joins them and then gets two results. In Python the joins
//!    can hang if a child still has data in its feeder thread; here a
//!    child's put is in the queue when it returns, so join never waits on
//!    a reader.
//! 2. (seed 001) A writer puts 'A', 'B', 'C' with random pauses; a reader
//!    gets forever. Python ends the reader with `terminate()`; that works
//!    here too, and `shutdown()` is the clean way: the reader's `get`
//!    fails once the queue is empty, and its loop ends by itself.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use multiproc::queue::Queue;
use multiproc::{Process, current_process};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seed 000's `run_proc` (its `Value` and `Array` are the shared-memory
/// module's business): one `{pid: time}` onto the queue.
fn run_proc(name: String, q: Queue<HashMap<u32, u64>>) {
    println!("Run child process {name} ({})...", std::process::id());
    q.put(HashMap::from([(std::process::id(), now())])).unwrap();
}

/// A pause of up to a second (Python's `time.sleep(random.random())`).
fn random_pause() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::thread::sleep(Duration::from_millis(u64::from(nanos % 1000)));
}

fn write(q: Queue<String>) {
    println!("Process to write: {}", std::process::id());
    for value in ["A", "B", "C"] {
        println!("Put {value} to queue...");
        q.put(value.to_string()).unwrap();
        random_pause();
    }
}

fn read(q: Queue<String>) {
    println!("Process to read: {}", std::process::id());
    // Ends when the queue is shut down and drained (Python's loops forever).
    for value in q.iter() {
        println!("Get {value} from queue.");
    }
    println!("{} saw the queue shut down", current_process().name());
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();

    // Seed 000.
    let queue = Queue::new()?;
    let p1 = Process::new(run_proc, ("test1".to_string(), queue.clone())).start()?;
    let p2 = Process::new(run_proc, ("test2".to_string(), queue.clone())).start()?;
    p1.join()?;
    p2.join()?;
    for _ in 0..2 {
        println!("{:?}", queue.get()?);
    }

    // Seed 001.
    let q = Queue::new()?;
    let pw = Process::new(write, q.clone()).start()?;
    let pr = Process::new(read, q.clone()).start()?;
    pw.join()?;
    q.shutdown(); // Python: pr.terminate()
    pr.join()?;
    Ok(())
}
