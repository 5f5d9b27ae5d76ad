//! The seeds' Manager examples in Rust: `cargo run --example manager`.
//!
//! 1. A child sets an entry of a shared dict and reverses a shared list
//!    made from `range(5, 10)` (seed 003; seed 004's official example).
//! 2. Five workers return values through a shared dict (seed 004).
//! 3. A Namespace: named values every process sees (seed 002). As in
//!    Python, changing a list *inside* a field does not propagate: write
//!    the field again.
//! 4. Beyond the seeds: a shared counter of your own type whose methods
//!    run in the manager, a lock that a dead process does not keep, and
//!    many operations in one round trip.

use std::collections::BTreeMap;

use multiproc::manager::{DictProxy, ListProxy, Namespace, ObjectProxy, SharedObject};
use multiproc::sync::AcquireError;
use multiproc::{Manager, Process};
use serde::{Deserialize, Serialize};

fn func(dit: DictProxy<i32, i32>, lst: ListProxy<i32>) {
    dit.insert(1, 1).unwrap();
    lst.reverse().unwrap();
}

fn worker(procnum: u32, return_dict: DictProxy<u32, u32>) {
    println!("{procnum} represent!");
    return_dict.insert(procnum, procnum).unwrap();
}

fn producer(ns: Namespace) {
    ns.set("x", 3).unwrap();
    ns.set("name", "set by a child").unwrap();
    // Changing a copy of a field changes nothing shared...
    let mut items: Vec<i32> = ns.get("items").unwrap().unwrap_or_default();
    items.push(1);
    // ...until it is written back.
    ns.set("items", items).unwrap();
}

/// A counter whose methods run in the manager (Python's
/// `BaseManager.register("Counter", Counter)`).
#[derive(Serialize, Deserialize)]
struct Counter {
    counts: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize)]
enum CounterOp {
    Add(String, u64),
    Get(String),
}

impl SharedObject for Counter {
    type Request = CounterOp;
    type Response = u64;
    fn handle(&mut self, op: CounterOp) -> u64 {
        match op {
            CounterOp::Add(k, n) => {
                let c = self.counts.entry(k).or_insert(0);
                *c += n;
                *c
            }
            CounterOp::Get(k) => self.counts.get(&k).copied().unwrap_or(0),
        }
    }
}

fn count_words(counter: ObjectProxy<Counter>, text: String) {
    for word in text.split_whitespace() {
        counter.call(CounterOp::Add(word.to_string(), 1)).unwrap();
    }
}

fn take_lock_and_die(lock: multiproc::manager::LockProxy) {
    let _held = lock.acquire().unwrap();
    std::process::abort();
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init();
    let manager = Manager::builder().register::<Counter>("Counter").start()?;

    // 1. A dict and a list shared with a child.
    let dit = manager.dict::<i32, i32>()?;
    let lst = manager.list_from(5..10)?;
    Process::new(func, (dit.clone(), lst.clone()))
        .start()?
        .join()?;
    println!("{:?} {:?}", dit.items()?, lst.to_vec()?); // [(1, 1)] [9, 8, 7, 6, 5]

    // 2. Return values collected in a dict.
    let return_dict = manager.dict::<u32, u32>()?;
    let jobs: Vec<_> = (0..5)
        .map(|i| Process::new(worker, (i, return_dict.clone())).start())
        .collect::<Result<_, _>>()?;
    for proc in jobs {
        proc.join()?;
    }
    let mut values = return_dict.values()?;
    values.sort();
    println!("{values:?}"); // [0, 1, 2, 3, 4]

    // 3. A Namespace.
    let ns = manager.namespace()?;
    ns.set("items", Vec::<i32>::new())?;
    Process::new(producer, ns.clone()).start()?.join()?;
    println!(
        "x = {:?}, name = {:?}, items = {:?}",
        ns.get::<i32>("x")?,
        ns.get::<String>("name")?,
        ns.get::<Vec<i32>>("items")?
    );

    // 4a. Your own type, its methods run in the manager.
    let counter = manager.create(
        "Counter",
        &Counter {
            counts: BTreeMap::new(),
        },
    )?;
    let texts = ["the cat sat", "the dog sat", "the end"];
    let jobs: Vec<_> = texts
        .iter()
        .map(|t| Process::new(count_words, (counter.clone(), t.to_string())).start())
        .collect::<Result<_, _>>()?;
    for j in jobs {
        j.join()?;
    }
    println!(
        "'the' counted {} times",
        counter.call(CounterOp::Get("the".into()))?
    );

    // 4b. A process that dies holding a manager lock does not keep it.
    let lock = manager.lock()?;
    let _ = Process::new(take_lock_and_die, lock.clone())
        .start()?
        .join();
    match lock.acquire() {
        Err(AcquireError::OwnerDied(died)) => {
            println!("lock taken back from a dead owner"); // repair here, then:
            drop(died.into_guard());
        }
        other => println!("unexpected: {:?}", other.map(drop)),
    }
    drop(lock.acquire()?); // acknowledged: a plain guard again

    // 4c. Many operations, one round trip.
    let squares = manager.dict::<u32, u32>()?;
    squares.update((0..1000).map(|i| (i, i * i)))?;
    let some = squares.get_many([&3, &30, &3000])?;
    println!("{some:?}"); // [Some(9), Some(900), None]

    manager.shutdown()
}
