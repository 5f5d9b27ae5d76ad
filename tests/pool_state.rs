//! Per-worker state (`PoolBuilder::worker_state`, `worker_exit`) under each
//! start method: built once per worker after the initializer, given to
//! every task of that worker, rebuilt in replacements, and the exit
//! hook's values collected, one per worker, replaced ones included.
//!
//! The harness is `tests/isolated` (a process per test and start method,
//! a watchdog each, no child or zombie left behind).

use std::collections::BTreeMap;

use multiproc::{ErrorKind, Pool, Queue, StartMethod};

mod isolated;

const TESTS: isolated::Tests = &[
    (
        "state_is_built_once_per_worker_after_the_initializer",
        state_is_built_once_per_worker_after_the_initializer,
        true,
    ),
    (
        "exit_values_come_from_every_worker_replaced_ones_too",
        exit_values_come_from_every_worker_replaced_ones_too,
        true,
    ),
    (
        "a_panicking_task_keeps_every_state",
        a_panicking_task_keeps_every_state,
        true,
    ),
    (
        "a_killed_worker_leaves_no_exit_value",
        a_killed_worker_leaves_no_exit_value,
        true,
    ),
    (
        "a_builder_that_panics_stops_the_pool",
        a_builder_that_panics_stops_the_pool,
        true,
    ),
];

fn main() {
    isolated::main("pool_state", TESTS);
}

/// What the builds and the initializer report: (pid, 0) from the
/// initializer, (pid, 1) from the state's builder.
type Events = Queue<(u32, u8)>;

struct Counter {
    pid: u32,
    n: u64,
}

fn note_init(events: Events) {
    events.put((std::process::id(), 0)).unwrap();
}

fn build(events: Events) -> Counter {
    events.put((std::process::id(), 1)).unwrap();
    Counter {
        pid: std::process::id(),
        n: 0,
    }
}

/// The worker's pid and how many tasks its state has seen, this one
/// included.
fn tick(c: &mut Counter, x: u64) -> (u32, u64, u64) {
    c.n += 1;
    (c.pid, c.n, x)
}

fn tick_or_panic(c: &mut Counter, x: u64) -> (u32, u64, u64) {
    c.n += 1;
    if x == 7 {
        panic!("task 7 fails");
    }
    (c.pid, c.n, x)
}

fn report(c: &mut Counter) -> (u32, u64) {
    (c.pid, c.n)
}

/// Per pid, the counters in input order.
fn by_pid(results: &[(u32, u64, u64)]) -> BTreeMap<u32, Vec<u64>> {
    let mut out: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for &(pid, n, _) in results {
        out.entry(pid).or_default().push(n);
    }
    out
}

fn assert_counts_up(per_pid: &BTreeMap<u32, Vec<u64>>) {
    for (pid, ns) in per_pid {
        let expected: Vec<u64> = (1..=ns.len() as u64).collect();
        assert_eq!(ns, &expected, "worker {pid}'s state counts its tasks");
    }
}

fn state_is_built_once_per_worker_after_the_initializer(method: StartMethod) {
    let events: Events = Queue::new().unwrap();
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .initializer(note_init, events.clone())
        .worker_state(build, events.clone())
        .build()
        .unwrap();
    let results = pool.map_with_state(tick, 0..400u64).unwrap();
    assert_eq!(
        results.iter().map(|r| r.2).collect::<Vec<_>>(),
        (0..400).collect::<Vec<_>>()
    );
    let per_pid = by_pid(&results);
    assert_counts_up(&per_pid);
    // More calls go on with the same states.
    let more = pool.map_with_state(tick, 0..40u64).unwrap();
    let mut all = results.clone();
    all.extend(more);
    let per_pid_all = by_pid(&all);
    assert_counts_up(&per_pid_all);
    assert_eq!(per_pid_all.values().map(Vec::len).sum::<usize>(), 440);
    // The other forms share the states too.
    let lazy: Vec<_> = pool
        .imap_with_state(tick, 0..20u64)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let unordered: Vec<_> = pool
        .imap_unordered_with_state(tick, 0..20u64)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let later = pool
        .map_async_with_state(tick, 0..20u64)
        .unwrap()
        .get()
        .unwrap();
    for (pid, ns) in by_pid(&lazy.iter().chain(&later).copied().collect::<Vec<_>>()) {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{pid}: {ns:?}");
    }
    all.extend(lazy);
    all.extend(unordered);
    all.extend(later);
    let mut total: BTreeMap<u32, u64> = BTreeMap::new();
    for &(pid, n, _) in &all {
        let top = total.entry(pid).or_default();
        *top = (*top).max(n);
    }
    assert_eq!(
        total.values().sum::<u64>(),
        500,
        "one state per worker counted every task"
    );
    // Plain tasks work on the same pool.
    assert_eq!(pool.map(|x: u64| x + 1, 0..3u64).unwrap(), [1, 2, 3]);
    pool.close();
    pool.join().unwrap();
    assert_eq!(pool.stats().worker_restarts, 0);
    // One initializer, then one build, per worker, and no more.
    let mut seen: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for (pid, what) in events.try_iter() {
        seen.entry(pid).or_default().push(what);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (pid, order) in &seen {
        assert_eq!(order, &[0, 1], "worker {pid}: initializer, then the state");
    }
    for pid in total.keys() {
        assert!(seen.contains_key(pid), "{pid} ran tasks but built no state");
    }
    // No hook: no exit values.
    assert!(pool.worker_exit_results().is_empty());
}

fn exit_values_come_from_every_worker_replaced_ones_too(method: StartMethod) {
    let events: Events = Queue::new().unwrap();
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .maxtasksperchild(2)
        .worker_state(build, events.clone())
        .worker_exit(report)
        .build()
        .unwrap();
    let mut results = Vec::new();
    for x in 0..10u64 {
        results.push(pool.apply_with_state(tick, x).unwrap());
    }
    let per_pid = by_pid(&results);
    assert_counts_up(&per_pid);
    for ns in per_pid.values() {
        assert!(ns.len() <= 2, "a worker runs 2 tasks, then is replaced");
    }
    pool.close();
    pool.join().unwrap();
    let restarts = pool.stats().worker_restarts;
    // 10 tasks, at most 2 per worker: at least 5 workers.
    assert!(restarts >= 3, "10 tasks, 2 per worker: {restarts}");
    let built: Vec<u32> = events.try_iter().map(|(pid, _)| pid).collect();
    assert_eq!(built.len() as u64, 2 + restarts, "a fresh state per worker");
    let exits: Vec<(u32, u64)> = pool
        .worker_exit_results()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    // One value per worker that was started, replaced ones included, and
    // each says how many tasks its state saw.
    assert_eq!(exits.len(), built.len(), "{exits:?}");
    let mut exit_pids: Vec<u32> = exits.iter().map(|e| e.0).collect();
    exit_pids.sort();
    let mut built_sorted = built.clone();
    built_sorted.sort();
    assert_eq!(exit_pids, built_sorted);
    for (pid, n) in &exits {
        let ran = per_pid.get(pid).map_or(0, Vec::len) as u64;
        assert_eq!(*n, ran, "worker {pid}'s exit value");
    }
    assert_eq!(exits.iter().map(|e| e.1).sum::<u64>(), 10);
    // Taken: a second call has nothing new.
    assert!(pool.worker_exit_results().is_empty());
}

fn a_panicking_task_keeps_every_state(method: StartMethod) {
    let events: Events = Queue::new().unwrap();
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .worker_state(build, events.clone())
        .worker_exit(report)
        .build()
        .unwrap();
    let handles: Vec<_> = (0..20u64)
        .map(|x| pool.apply_async_with_state(tick_or_panic, x).unwrap())
        .collect();
    let mut ok = Vec::new();
    for (x, h) in handles.into_iter().enumerate() {
        match h.get() {
            Ok(r) => ok.push(r),
            Err(e) => {
                assert_eq!(x, 7);
                assert_eq!(e.kind(), ErrorKind::Panicked);
                assert!(e.to_string().contains("task 7 fails"), "{e}");
            }
        }
    }
    assert_eq!(ok.len(), 19);
    // Every worker's counter only goes up: no state was rebuilt. The
    // panicking worker kept its state as the task left it (counted).
    let per_pid = by_pid(&ok);
    for ns in per_pid.values() {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{ns:?}");
    }
    pool.close();
    pool.join().unwrap();
    assert_eq!(pool.stats().worker_restarts, 0);
    assert_eq!(events.try_iter().count(), 2, "two builds, no more");
    let exits: Vec<(u32, u64)> = pool
        .worker_exit_results()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(exits.len(), 2);
    // All 20 tasks were counted, the panicking one too.
    assert_eq!(exits.iter().map(|e| e.1).sum::<u64>(), 20);
    // Exactly one worker has a gap (the panicking task's count).
    let gaps: u64 = exits
        .iter()
        .map(|(pid, n)| n - per_pid.get(pid).map_or(0, Vec::len) as u64)
        .sum();
    assert_eq!(gaps, 1);
}

fn bad_build(_: ()) -> Counter {
    panic!("no state today");
}

fn a_builder_that_panics_stops_the_pool(method: StartMethod) {
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .worker_state(bad_build, ())
        .build()
        .unwrap();
    let err = pool.map_with_state(tick, 0..3u64).unwrap_err();
    assert!(err.to_string().contains("no state today"), "{err}");
    assert!(err.to_string().contains("worker state"), "{err}");
}

fn die(_: &mut Counter, _: u64) -> u64 {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    unreachable!("SIGKILL")
}

/// A worker killed by SIGKILL runs no hook: the values are those of the
/// workers that left by themselves (its replacement, here).
fn a_killed_worker_leaves_no_exit_value(method: StartMethod) {
    let events: Events = Queue::new().unwrap();
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .worker_state(build, events.clone())
        .worker_exit(report)
        .build()
        .unwrap();
    let first = pool.apply_with_state(tick, 0).unwrap();
    let err = pool.apply_with_state(die, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost);
    // The replacement has a fresh state: its count starts again.
    let after = pool.apply_with_state(tick, 1).unwrap();
    assert_ne!(after.0, first.0);
    assert_eq!(after.1, 1);
    pool.close();
    pool.join().unwrap();
    let built: Vec<u32> = events.try_iter().map(|(pid, _)| pid).collect();
    assert_eq!(built, [first.0, after.0]);
    let exits: Vec<(u32, u64)> = pool
        .worker_exit_results()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(exits, [(after.0, 1)], "none from the killed worker");
}
