//! Value, Array, RawValue, RawArray and SharedMemory across processes,
//! under every start method: exact counts under contention, a holder
//! SIGKILLed mid-update, named segments attached by an unrelated program,
//! and nothing left in /dev/shm after every process is SIGKILLed.
//!
//! `harness = false`: see `tests/suite/mod.rs`.

mod suite;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc::shared::{Array, RawArray, SharedMemory, Value};
use multiproc::sync::{Event, Lock};
use multiproc::{Process, StartMethod};

fn main() {
    suite::main(
        "shared",
        &[
            ("value_four_processes_400k", value_four_processes_400k),
            ("seed_value_and_array", seed_value_and_array),
            (
                "value_holder_killed_mid_update",
                value_holder_killed_mid_update,
            ),
            ("raw_array_lock_free_counts", raw_array_lock_free_counts),
            ("shared_memory_to_children", shared_memory_to_children),
            (
                "named_segment_from_unrelated_program",
                named_segment_from_unrelated_program,
            ),
            ("named_segment_owner_unlinks", named_segment_owner_unlinks),
            (
                "inherited_by_a_forked_closure",
                inherited_by_a_forked_closure,
            ),
            (
                "named_segment_of_a_killed_creator_is_cleaned_up",
                named_segment_of_a_killed_creator_is_cleaned_up,
            ),
            (
                "named_segment_in_use_is_not_unlinked",
                named_segment_in_use_is_not_unlinked,
            ),
            (
                "nothing_left_after_sigkill_of_all",
                nothing_left_after_sigkill_of_all,
            ),
        ],
        roles,
    );
}

const LONG: Duration = Duration::from_secs(30);

fn roles(args: &[String]) -> bool {
    match args.first().map(String::as_str) {
        Some("attach") => {
            // An unrelated program: attaches by name, reads, writes, exits.
            let shm = SharedMemory::attach(&args[1]).unwrap();
            let mut buf = [0u8; 4];
            shm.read(0, &mut buf).unwrap();
            println!("{}|{}", String::from_utf8_lossy(&buf), shm.size());
            shm.write(4, b"pong").unwrap();
            true
        }
        Some("named-role") => {
            // Creates a named segment, never unlinks it, waits to be killed.
            let shm = SharedMemory::create(&args[1], 4096).unwrap();
            shm.write(0, b"left behind").unwrap();
            println!("ready");
            suite::park_forever()
        }
        Some("leak-role") => {
            leak_role(args[1].parse().unwrap());
            true
        }
        _ => false,
    }
}

// ---- Value and Array -----------------------------------------------------

fn add_100k(counter: Value<u64>) {
    for _ in 0..100_000 {
        *counter.lock().unwrap() += 1;
    }
}

fn value_four_processes_400k(_: StartMethod) {
    let counter = Value::new(0u64).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| Process::new(add_100k, counter.clone()).start().unwrap())
        .collect();
    for c in children {
        c.join().unwrap();
    }
    assert_eq!(counter.get().unwrap(), 400_000);
}

/// Seed 000's `run_proc`: reads the shared number and squares the array.
fn run_proc(n: Value<f64>, arr: Array<i32>) -> (f64, Vec<i32>) {
    let squares = arr.to_vec().unwrap().iter().map(|x| x * x).collect();
    *n.lock().unwrap() += 1.0;
    (n.get().unwrap(), squares)
}

fn seed_value_and_array(_: StartMethod) {
    let num = Value::new(1.0f64).unwrap();
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>()).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Process::new(run_proc, (num.clone(), arr.clone()))
                .start()
                .unwrap()
        })
        .collect();
    let mut seen = Vec::new();
    for c in children {
        let (n, squares) = c.join().unwrap();
        assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
        seen.push(n);
    }
    seen.sort_by(f64::total_cmp);
    assert!(
        seen[1] == 3.0 && (seen[0] == 2.0 || seen[0] == 3.0),
        "{seen:?}"
    );
    assert_eq!(num.get().unwrap(), 3.0);
}

/// Starts changing a pair that must stay equal, and is killed half-way.
fn half_update(pair: Value<[u64; 2]>, halfway: Event) {
    let mut g = pair.lock().unwrap();
    g[0] += 1;
    halfway.set();
    suite::park_forever()
}

fn value_holder_killed_mid_update(_: StartMethod) {
    let pair = Value::new([7u64, 7]).unwrap();
    let halfway = Event::new().unwrap();
    let child = Process::new(half_update, (pair.clone(), halfway.clone()))
        .start()
        .unwrap();
    halfway.wait_timeout(LONG).unwrap();
    child.kill().unwrap();
    let _ = child.join();
    // `get` refuses to pretend all is well.
    let err = pair.get().unwrap_err();
    assert_eq!(err.kind(), multiproc::ErrorKind::OwnerDied, "{err}");
    // The survivor sees the half-done update and repairs it.
    let died = pair.lock().unwrap_err();
    assert_eq!(**died.get_ref(), [8, 7]);
    let mut g = died.into_guard();
    g[1] = g[0];
    drop(g);
    assert_eq!(pair.get().unwrap(), [8, 8]);
}

fn bump_slots(slots: RawArray<AtomicU64>, n: u64) {
    for i in 0..n {
        slots[(i % slots.len() as u64) as usize].fetch_add(1, Ordering::Relaxed);
    }
}

fn raw_array_lock_free_counts(_: StartMethod) {
    let slots = RawArray::<AtomicU64>::new(3).unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Process::new(bump_slots, (slots.clone(), 30_000))
                .start()
                .unwrap()
        })
        .collect();
    for c in children {
        c.join().unwrap();
    }
    assert!(slots.iter().all(|s| s.load(Ordering::Relaxed) == 30_000));
}

// ---- SharedMemory --------------------------------------------------------

fn write_greeting(shm: SharedMemory, named: String) -> usize {
    shm.write(0, b"hi from the child").unwrap();
    // Attaching by name in a child, then dropping, never unlinks.
    let again = SharedMemory::attach(&named).unwrap();
    again.write(0, b"named!").unwrap();
    drop(again);
    shm.size()
}

fn shared_memory_to_children(method: StartMethod) {
    let anon = SharedMemory::new(4096).unwrap();
    let name = format!("multiproc-test-{}-{method}", std::process::id());
    let named = SharedMemory::create(&name, 100).unwrap();
    let size = Process::new(write_greeting, (anon.clone(), name.clone()))
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(size, 4096);
    let mut buf = [0u8; 17];
    anon.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"hi from the child");
    let mut buf = [0u8; 6];
    named.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"named!");
    assert!(
        suite::dev_shm().contains(&name),
        "the child did not unlink it"
    );
    drop(named);
    assert!(!suite::dev_shm().contains(&name), "the owner unlinked it");
}

fn named_segment_from_unrelated_program(method: StartMethod) {
    let name = format!("multiproc-test-unrelated-{}-{method}", std::process::id());
    let shm = SharedMemory::create(&format!("/{name}"), 64).unwrap();
    assert_eq!(shm.name(), Some(name.as_str()));
    shm.write(0, b"ping").unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["attach", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ping|64");
    let mut buf = [0u8; 4];
    shm.read(4, &mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    assert!(suite::dev_shm().contains(&name), "attaching never unlinks");
}

fn named_segment_owner_unlinks(method: StartMethod) {
    let name = format!("multiproc-test-owner-{}-{method}", std::process::id());
    let mut kept = SharedMemory::create(&name, 8).unwrap();
    kept.keep();
    drop(kept);
    assert!(suite::dev_shm().contains(&name), "kept past its owner");
    let mut again = SharedMemory::attach(&name).unwrap();
    again.unlink().unwrap();
    assert!(!suite::dev_shm().contains(&name));
    // Still usable after the name is gone.
    again.write(0, b"x").unwrap();
    assert!(again.unlink().is_err(), "already unlinked");
}

// ---- Nothing leaks after SIGKILL -----------------------------------------

/// A child that makes anonymous objects of its own and waits to be killed.
fn busy_child(lock: Lock, counter: Value<u64>, ready: Event) {
    let _mine = (
        Lock::new().unwrap(),
        Value::new(1u32).unwrap(),
        Array::<u8>::new(1 << 16).unwrap(),
        SharedMemory::new(1 << 20).unwrap(),
    );
    let _held = lock.acquire().unwrap();
    *counter.lock().unwrap() += 1;
    ready.set();
    suite::park_forever()
}

/// A program that uses only anonymous objects, with two children, and
/// prints "ready" when everything exists.
fn leak_role(method: StartMethod) {
    multiproc::set_start_method(method).unwrap();
    let lock = Lock::new().unwrap();
    let counter = Value::new(0u64).unwrap();
    let _others = (
        Array::<f64>::new(1000).unwrap(),
        RawArray::<AtomicU64>::new(10).unwrap(),
        SharedMemory::new(1 << 20).unwrap(),
        Event::new().unwrap(),
        multiproc::sync::Semaphore::new(3).unwrap(),
        multiproc::sync::Barrier::new(2).unwrap(),
        multiproc::sync::Condition::new().unwrap(),
    );
    let mut pids = Vec::new();
    for _ in 0..2 {
        let ready = Event::new().unwrap();
        let c = Process::new(busy_child, (lock.clone(), counter.clone(), ready.clone()))
            .start()
            .unwrap();
        pids.push(c.pid());
        std::mem::forget(c);
        // The second child queues on the lock the first one holds; wait
        // only for the first.
        if pids.len() == 1 {
            ready.wait_timeout(LONG).unwrap();
        }
    }
    println!("pids {} {}", pids[0], pids[1]);
    println!("ready");
    suite::park_forever()
}

fn nothing_left_after_sigkill_of_all(method: StartMethod) {
    let before = suite::dev_shm();
    let mut role = Command::new(std::env::current_exe().unwrap())
        .args(["leak-role", method.name()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(role.stdout.take().unwrap()).lines();
    let pids: Vec<u32> = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("pids ")
        .unwrap()
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    role.kill().unwrap(); // SIGKILL
    role.wait().unwrap();
    // Its children die with it (they follow their parent).
    while !pids.iter().all(|&p| suite::gone(p)) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = suite::dev_shm();
    let new: Vec<_> = after.difference(&before).collect();
    assert!(new.is_empty(), "left in /dev/shm: {new:?}");
}

// ---- Inherited under fork ------------------------------------------------

fn inherited_by_a_forked_closure(_: StartMethod) {
    // No sending at all: a forked closure captures the handles, and the
    // mappings it inherits are the same memory.
    let counter = Value::new(0u64).unwrap();
    let lock = Lock::new().unwrap();
    let done = Event::new().unwrap();
    let shm = SharedMemory::new(64).unwrap();
    let held = lock.acquire().unwrap();
    let (c, l, d, m) = (counter.clone(), lock.clone(), done.clone(), shm.clone());
    let child = Process::fork(move || {
        *c.lock().unwrap() += 5;
        m.write(0, b"forked").unwrap();
        d.set();
        // Blocks until the parent releases the lock it holds.
        let _g = l.acquire().unwrap();
        c.get().unwrap()
    })
    .start()
    .unwrap();
    done.wait_timeout(LONG).unwrap();
    assert_eq!(counter.get().unwrap(), 5);
    let mut buf = [0u8; 6];
    shm.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"forked");
    drop(held);
    assert_eq!(child.join().unwrap(), 5);
}

// ---- Named segments of a creator that dies -------------------------------

/// Starts a program that creates the named segment `name` and waits; its
/// stderr (which the tracker shares) comes back as lines.
fn start_named_role(
    name: &str,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut role = Command::new(std::env::current_exe().unwrap())
        .args(["named-role", name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(role.stdout.take().unwrap()).lines();
    assert_eq!(out.next().unwrap().unwrap(), "ready");
    let err = BufReader::new(role.stderr.take().unwrap()).lines();
    (role, err)
}

/// Reads the tracker's stderr until a line contains `what`.
fn tracker_says(lines: &mut impl Iterator<Item = std::io::Result<String>>, what: &str) -> String {
    for line in lines {
        let line = line.unwrap();
        if line.contains(what) {
            return line;
        }
    }
    panic!("the tracker never said {what:?}");
}

fn named_segment_of_a_killed_creator_is_cleaned_up(method: StartMethod) {
    let name = format!("multiproc-test-killed-{}-{method}", std::process::id());
    let (mut role, mut err) = start_named_role(&name);
    assert!(suite::dev_shm().contains(&name));
    role.kill().unwrap(); // SIGKILL: the creator runs no code at all
    role.wait().unwrap();
    tracker_says(&mut err, &format!("unlinked shared memory /{name}"));
    assert!(
        !suite::dev_shm().contains(&name),
        "cleaned up after its creator died"
    );
}

fn named_segment_in_use_is_not_unlinked(method: StartMethod) {
    let name = format!("multiproc-test-in-use-{}-{method}", std::process::id());
    let (mut role, mut err) = start_named_role(&name);
    let user = SharedMemory::attach(&name).unwrap();
    role.kill().unwrap();
    role.wait().unwrap();
    let line = tracker_says(&mut err, "is still used by pid");
    assert!(line.contains(&std::process::id().to_string()), "{line}");
    assert!(
        suite::dev_shm().contains(&name),
        "not unlinked while we use it"
    );
    let mut buf = [0u8; 11];
    user.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"left behind");
    drop(user);
    tracker_says(&mut err, &format!("unlinked shared memory /{name}"));
    assert!(!suite::dev_shm().contains(&name));
}
