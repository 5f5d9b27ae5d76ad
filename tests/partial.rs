//! Functions with values given to them (`multiproc::partial`), under each
//! start method: every pool form sees the values, each worker decodes them
//! once per call, calls with other values at once or one after another
//! never mix them up, a replacement worker gets them again, and a process
//! takes them with its arguments (descriptors included).
//!
//! The harness is `tests/isolated` (a process per test and start method,
//! a watchdog each, no child or zombie left behind).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use multiproc::{ErrorKind, Pool, Process, Queue, StartMethod, partial};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod isolated;

const TESTS: isolated::Tests = &[
    (
        "every_pool_form_sees_the_values",
        every_pool_form_sees_the_values,
        true,
    ),
    (
        "values_are_decoded_once_per_worker_and_call",
        values_are_decoded_once_per_worker_and_call,
        true,
    ),
    (
        "calls_with_other_values_never_mix",
        calls_with_other_values_never_mix,
        true,
    ),
    (
        "a_replacement_worker_gets_the_values_again",
        a_replacement_worker_gets_the_values_again,
        true,
    ),
    (
        "a_process_takes_values_and_descriptors",
        a_process_takes_values_and_descriptors,
        true,
    ),
    (
        "values_with_descriptors_stay_out_of_the_pool",
        values_with_descriptors_stay_out_of_the_pool,
        false,
    ),
];

fn main() {
    isolated::main("partial", TESTS);
}

fn scaled(&(offset, scale): &(u64, u64), x: u64) -> u64 {
    offset + scale * x
}

fn every_pool_form_sees_the_values(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    let f = partial(scaled, (10, 3));
    let expected: Vec<u64> = (0..100).map(|x| 10 + 3 * x).collect();
    assert_eq!(pool.map(f.clone(), 0..100).unwrap(), expected);
    assert_eq!(pool.chunksize(1).map(f.clone(), 0..100).unwrap(), expected);
    assert_eq!(
        pool.map_async(f.clone(), 0..100).unwrap().get().unwrap(),
        expected
    );
    let lazy: Vec<u64> = pool
        .imap(f.clone(), 0..100)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(lazy, expected);
    let mut unordered: Vec<u64> = pool
        .imap_unordered(f.clone(), 0..100)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    unordered.sort();
    assert_eq!(unordered, expected);
    assert_eq!(pool.apply(f.clone(), 5).unwrap(), 25);
    assert_eq!(pool.apply_async(f, 6).unwrap().get().unwrap(), 28);
    // A closure, values of several types, arguments as a tuple (starmap).
    let words = vec!["a".to_string(), "bb".into(), "ccc".into()];
    let g = partial(
        |words: &Vec<String>, (i, n): (usize, usize)| words[i].repeat(n),
        words,
    );
    assert_eq!(
        pool.starmap(g, [(0, 2), (2, 1), (1, 3)]).unwrap(),
        ["aa", "ccc", "bbbbbb"]
    );
    // A task that panics reports as any other.
    let h = partial(
        |&k: &u64, x: u64| {
            if x == k {
                panic!("item {x} is the bad one")
            } else {
                x
            }
        },
        3,
    );
    let err = pool.map(h, 0..5).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(err.to_string().contains("item 3 is the bad one"), "{err}");
    pool.close();
    pool.join().unwrap();
}

/// How many `Counted` values this process has decoded.
static DECODES: AtomicU64 = AtomicU64::new(0);

/// A value that counts its decodings.
struct Counted(u64);

impl Serialize for Counted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DECODES.fetch_add(1, Ordering::SeqCst);
        u64::deserialize(d).map(Counted)
    }
}

/// (worker pid, decodes so far in that worker, result).
fn counted(c: &Counted, x: u64) -> (u32, u64, u64) {
    (std::process::id(), DECODES.load(Ordering::SeqCst), c.0 + x)
}

fn values_are_decoded_once_per_worker_and_call(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for call in 1..=3u64 {
        // One item per chunk: 60 chunks, and still one decode per worker.
        let out = pool
            .chunksize(1)
            .map(partial(counted, Counted(call * 100)), 0..60)
            .unwrap();
        let mut seen: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for (i, &(pid, decodes, value)) in out.iter().enumerate() {
            assert_eq!(value, call * 100 + i as u64);
            seen.entry(pid).or_default().push(decodes);
        }
        for (pid, decodes) in seen {
            let once = last.get(&pid).copied().unwrap_or(0) + 1;
            assert!(
                decodes.iter().all(|&d| d == once),
                "worker {pid} decoded the values of call {call} once: {decodes:?}"
            );
            last.insert(pid, once);
        }
    }
}

fn add(&k: &u64, x: u64) -> u64 {
    k + x
}

fn calls_with_other_values_never_mix(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    // One after another: each call's id is given again to the next.
    for k in 0..200u64 {
        assert_eq!(pool.apply(partial(add, k * 1000), 7).unwrap(), k * 1000 + 7);
    }
    // At once: many calls in flight, each with its values.
    let handles: Vec<_> = (0..20u64)
        .map(|k| {
            (
                k,
                pool.chunksize(3)
                    .map_async(partial(add, k * 1000), 0..50)
                    .unwrap(),
            )
        })
        .collect();
    for (k, h) in handles {
        let expected: Vec<u64> = (0..50).map(|x| k * 1000 + x).collect();
        assert_eq!(h.get().unwrap(), expected, "call {k}");
    }
    // The same function without values still runs as itself.
    assert_eq!(pool.map(|x: u64| x * 2, 0..4).unwrap(), [0, 2, 4, 6]);
}

/// The first time item 3 runs (the marker file is not there yet), its
/// worker dies.
fn die_once(values: &(std::path::PathBuf, u64), x: u64) -> u64 {
    let (marker, k) = values;
    if x == 3 && std::fs::File::create_new(marker).is_ok() {
        std::process::abort();
    }
    k + x
}

/// A directory of this test's own, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("multiproc-test-partial-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn a_replacement_worker_gets_the_values_again(method: StartMethod) {
    let dir = TempDir::new();
    let marker = dir.0.join("died");
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    let out = pool
        .chunksize(1)
        .retries(1)
        .map(partial(die_once, (marker.clone(), 500)), 0..20)
        .unwrap();
    assert_eq!(out, (500..520).collect::<Vec<u64>>());
    assert!(marker.exists(), "a worker died under item 3");
    assert_eq!(pool.stats().worker_restarts, 1);
    // The replacement knows nothing of the earlier call's values.
    assert_eq!(
        pool.chunksize(1).map(partial(add, 9), 0..4).unwrap(),
        [9, 10, 11, 12]
    );
}

fn a_process_takes_values_and_descriptors(method: StartMethod) {
    let queue: Queue<String> = Queue::new().unwrap();
    let greet = partial(
        |(q, greeting): &(Queue<String>, String), n: u32| {
            q.put(format!("{greeting} {n}")).unwrap();
            n * 2
        },
        (queue.clone(), "hello".to_string()),
    );
    let child = Process::new(greet, 21)
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(queue.get().unwrap(), "hello 21");
    assert_eq!(child.join().unwrap(), 42);
}

fn values_with_descriptors_stay_out_of_the_pool(method: StartMethod) {
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .unwrap();
    let queue: Queue<u64> = Queue::new().unwrap();
    let err = pool
        .map(
            partial(|q: &Queue<u64>, x: u64| q.put(x).is_ok(), queue),
            0..3,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode);
    assert!(err.to_string().contains("initializer"), "{err}");
    // Nothing was queued; the pool goes on.
    assert_eq!(pool.map(partial(add, 1), 0..3).unwrap(), [1, 2, 3]);
}
