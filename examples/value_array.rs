//! Seed 000's shared `Value` and `Array` in Rust: `cargo run --example value_array`.
//!
//! Python: `num = Value('d', 1.0)`, `arr = Array('i', range(10))`, two
//! children print `n.value` and the squares of `arr`. Here the children
//! also return what they saw (Python would need a Queue for that), and a
//! second part shows the counter that needs the value's own lock.

use multiproc::Process;
use multiproc::shared::{Array, Value};

fn run_proc(name: String, n: Value<f64>, arr: Array<i32>) -> Vec<i32> {
    println!(
        "Run child process {name} ({})...",
        multiproc::current_process().pid()
    );
    println!("{:?}", n.get().unwrap()); // n.value
    let squares: Vec<i32> = arr.to_vec().unwrap().iter().map(|x| x * x).collect();
    println!("{squares:?}");
    squares
}

fn count(counter: Value<u64>) {
    for _ in 0..100_000 {
        // `+=` on the guard: read, add and write under the value's lock.
        *counter.lock().unwrap() += 1;
    }
}

fn main() -> multiproc::Result<()> {
    multiproc::init();

    // Value('d', 1.0) is a Value<f64>; Array('i', range(10)) an Array<i32>.
    let num = Value::new(1.0f64)?;
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
    let p1 = Process::new(run_proc, ("test1".to_string(), num.clone(), arr.clone())).start()?;
    let p2 = Process::new(run_proc, ("test2".to_string(), num.clone(), arr.clone())).start()?;
    p1.join()?;
    p2.join()?;

    // Four processes, 100 000 increments each: exactly 400 000.
    let counter = Value::new(0u64)?;
    let workers: Vec<_> = (0..4)
        .map(|_| Process::new(count, counter.clone()).start())
        .collect::<Result<_, _>>()?;
    for w in workers {
        w.join()?;
    }
    println!("counter = {}", counter.get()?);
    assert_eq!(counter.get()?, 400_000);
    Ok(())
}
