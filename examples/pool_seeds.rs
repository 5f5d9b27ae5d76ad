//! The Pool examples of the tutorials users learned from (the seeds), in
//! Rust: `cargo run --release --example pool_seeds`.
//!
//! Each part names what it is from and what differs: tasks are functions
//! whose arguments and results are serde types, several arguments are a
//! tuple (Python's `starmap` / `partial` tricks are not needed), and
//! `map` returns a `Result`.

use std::time::{Duration, Instant};

use multiproc::Pool;

/// seed 000: a task that sleeps a random while and says where it ran.
fn task(name: u64) {
    println!("Run task {name}, pid ({})", std::process::id());
    let start = Instant::now();
    // A small deterministic "random" so the example needs no crate.
    let ms = name.wrapping_mul(2_654_435_761) % 1000;
    std::thread::sleep(Duration::from_millis(ms));
    println!(
        "Task {name} runs {:.2} seconds.",
        start.elapsed().as_secs_f64()
    );
}

fn f(x: u64) -> u64 {
    x * x
}

/// seed 004: a task that turns its number into a string.
fn to_string(pid: u64) -> String {
    pid.to_string()
}

/// seed 004: the same, sleeping on even numbers.
fn to_string_slowly(pid: u64) -> String {
    if pid.is_multiple_of(2) {
        std::thread::sleep(Duration::from_millis(200));
    }
    pid.to_string()
}

/// seed 004, "several arguments": a tuple is several arguments.
fn power(base: u64, exp: u32) -> u64 {
    base.pow(exp)
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();

    println!("== seed 000: apply_async of tasks, then map");
    println!("Parent process {}.", std::process::id());
    let poolsize = multiproc::cpu_count() * 2;
    let p = Pool::new(poolsize)?;
    let pending: Vec<_> = (0..poolsize as u64)
        .map(|i| p.apply_async(task, i))
        .collect::<Result<_, _>>()?;
    println!("Waiting for all subprocesses done...");
    let aftermap = p.map(f, 0..10)?;
    println!("{aftermap:?}");
    p.close();
    p.join()?;
    for r in pending {
        r.get()?; // a task's panic would come back here
    }

    println!("\n== seed 003: map, map_async(...).get(), close, join");
    let pool = Pool::new(4)?;
    println!("{:?}", pool.map(f, 0..8)?);
    println!("{:?}", pool.map_async(f, 0..8)?.get()?);
    pool.close(); // no new tasks
    pool.join()?; // wait for the pool's processes to end

    println!("\n== seed 004: map returns the list");
    let pool = Pool::new(multiproc::cpu_count())?;
    println!("{:?}", pool.map(to_string, 0..10)?);

    println!("\n== seed 004: map_async returns an AsyncResult; get() after join()");
    let rslt = pool.map_async(to_string_slowly, 0..10)?;
    pool.close();
    pool.join()?;
    println!("{:?}", rslt.get()?);

    println!("\n== seed 004: apply_async, results collected in a list");
    let pool = Pool::new(multiproc::cpu_count())?;
    let results: Vec<_> = (0..multiproc::cpu_count() as u64)
        .map(|i| pool.apply_async(to_string, i))
        .collect::<Result<_, _>>()?;
    pool.close();
    pool.join()?;
    for result in results {
        println!("{}", result.get()?);
    }

    println!("\n== seed 004: several arguments to map");
    let pool = Pool::new(2)?;
    println!("{:?}", pool.starmap(power, [(2, 10), (3, 3), (10, 2)])?);

    println!("\n== seed 004: Ctrl-C ends a pool");
    println!(
        "nothing to do: Ctrl-C stops the program and every worker at once, with no \
         traceback per worker; a program that handles SIGINT itself gets \
         ErrorKind::Interrupted from the call that was waiting"
    );
    println!("\nthe thumbnail maker of seed 004 is examples/thumbnails.rs");
    Ok(())
}
