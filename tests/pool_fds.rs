//! Queues, locks, `Value`s, shared memory and pipe ends in pool task
//! arguments (`apply_async`, `map`, `imap`, `starmap`), under each start
//! method; a result holding one comes back (over the cap: a clear error); nothing leaks.
//!
//! The harness (a process per test and start method, a watchdog each, no
//! child or zombie left behind) is `tests/isolated`: the fork start method
//! needs a single-threaded process.

use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc::connection::{Connection, pipe};
use multiproc::shared::{SharedMemory, Value};
use multiproc::sync::Lock;
use multiproc::{ErrorKind, Pool, Queue, StartMethod};
use serde::{Deserialize, Serialize};

mod isolated;

const TESTS: isolated::Tests = &[
    (
        "a_queue_a_lock_a_value_and_a_pipe_end_in_tasks",
        a_queue_a_lock_a_value_and_a_pipe_end_in_tasks,
        true,
    ),
    (
        "many_descriptor_tasks_in_one_map",
        many_descriptor_tasks_in_one_map,
        true,
    ),
    (
        "descriptor_tasks_after_a_worker_died",
        descriptor_tasks_after_a_worker_died,
        true,
    ),
    (
        "a_result_holding_descriptors_comes_back",
        a_result_holding_descriptors_comes_back,
        true,
    ),
    (
        "no_descriptor_or_shared_memory_is_left",
        no_descriptor_or_shared_memory_is_left,
        true,
    ),
];

fn main() {
    isolated::main("pool_fds", TESTS);
}

fn pool_of_two(method: StartMethod) -> Pool {
    Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap()
}

fn put_square(q: Queue<u64>, x: u64) -> u64 {
    q.put(x * x).unwrap();
    x
}

/// Adds one to the `Value` under the `Lock` (read, then write: without the
/// shared lock, concurrent tasks lose counts).
fn count_under_lock(lock: Lock, count: Value<u64>) -> u64 {
    let _guard = lock.acquire().unwrap();
    let n = count.get().unwrap();
    count.set(n + 1).unwrap();
    n
}

fn send_down(conn: Connection<u64>, x: u64) -> u64 {
    conn.send(&x).unwrap();
    x
}

fn add_to_shm(shm: SharedMemory, x: u64) -> u64 {
    shm.atomic_u64(0).unwrap().fetch_add(x, Ordering::SeqCst);
    x
}

fn lock_is_free(lock: Lock) -> bool {
    lock.try_acquire().is_ok()
}

fn a_queue_a_lock_a_value_and_a_pipe_end_in_tasks(method: StartMethod) {
    let pool = pool_of_two(method);
    // A Queue in apply_async's arguments receives what the worker puts.
    let q = Queue::<u64>::new().unwrap();
    let r = pool.apply_async(put_square, (q.clone(), 7)).unwrap();
    assert_eq!(r.get().unwrap(), 7);
    assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), 49);
    // A Lock and a Value shared by 40 tasks (starmap).
    let lock = Lock::new().unwrap();
    let count = Value::new(0u64).unwrap();
    let mut seen = pool
        .starmap(
            count_under_lock,
            (0..40).map(|_| (lock.clone(), count.clone())),
        )
        .unwrap();
    assert_eq!(count.get().unwrap(), 40);
    seen.sort_unstable();
    assert_eq!(seen, (0..40u64).collect::<Vec<_>>(), "each count seen once");
    // The same lock: held here, busy there.
    let guard = lock.acquire().unwrap();
    assert!(!pool.apply(lock_is_free, lock.clone()).unwrap());
    drop(guard);
    assert!(pool.apply(lock_is_free, lock.clone()).unwrap());
    // A pipe end in a task.
    let (ours, theirs) = pipe::<u64>().unwrap();
    assert_eq!(pool.apply(send_down, (theirs, 5)).unwrap(), 5);
    assert_eq!(ours.recv().unwrap(), 5);
    // Shared memory in imap's arguments.
    let shm = SharedMemory::new(64).unwrap();
    let done: Vec<u64> = pool
        .imap(add_to_shm, (1..=10u64).map(|x| (shm.clone(), x)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(done, (1..=10u64).collect::<Vec<_>>());
    assert_eq!(shm.atomic_u64(0).unwrap().load(Ordering::SeqCst), 55);
}

/// Items with and without descriptors in the same chunks.
#[derive(Serialize, Deserialize)]
enum Item {
    Plain(u64),
    Put(Queue<u64>, u64),
}

fn run_item(item: Item) -> u64 {
    match item {
        Item::Plain(x) => x,
        Item::Put(q, x) => {
            q.put(x).unwrap();
            x
        }
    }
}

fn items(q: &Queue<u64>, n: u64) -> impl Iterator<Item = Item> + '_ {
    (0..n).map(move |x| {
        if x % 3 == 0 {
            Item::Plain(x)
        } else {
            Item::Put(q.clone(), x)
        }
    })
}

fn many_descriptor_tasks_in_one_map(method: StartMethod) {
    let pool = pool_of_two(method);
    let q = Queue::<u64>::new().unwrap();
    let n = 600u64;
    for chunk in [1usize, 7, 100] {
        let out = pool.chunksize(chunk).map(run_item, items(&q, n)).unwrap();
        assert_eq!(out, (0..n).collect::<Vec<_>>(), "chunksize {chunk}");
        let mut got: Vec<u64> = (0..n - n / 3)
            .map(|_| q.get_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        got.sort_unstable();
        let want: Vec<u64> = (0..n).filter(|x| x % 3 != 0).collect();
        assert_eq!(got, want, "chunksize {chunk}");
    }
    // The pool's own chunking, and imap_unordered.
    let mut out: Vec<u64> = pool
        .imap_unordered(run_item, items(&q, 90))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    out.sort_unstable();
    assert_eq!(out, (0..90u64).collect::<Vec<_>>());
    let mut got: Vec<u64> = (0..60)
        .map(|_| q.get_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..90u64).filter(|x| x % 3 != 0).collect::<Vec<_>>());
}

fn die_or_put(q: Queue<u64>, x: u64) -> u64 {
    if x == 2 {
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
            .unwrap();
    }
    q.put(x).unwrap();
    x
}

fn descriptor_tasks_after_a_worker_died(method: StartMethod) {
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .unwrap();
    let q = Queue::<u64>::new().unwrap();
    // Item 2 kills its worker; items 3..8 of the same chunk were sent with
    // their descriptors and go again, with them, to the replacement.
    let out: Vec<_> = pool
        .chunksize(8)
        .imap(die_or_put, (0..8u64).map(|x| (q.clone(), x)))
        .unwrap()
        .collect();
    for (x, r) in out.iter().enumerate() {
        match r {
            Err(e) if x == 2 => assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}"),
            Ok(v) => assert_eq!(*v, x as u64),
            Err(e) => panic!("item {x}: {e}"),
        }
    }
    // Items that finished before the death but whose results had not come
    // back run again (at least once), so some values may come twice.
    let want: std::collections::BTreeSet<u64> = [0, 1, 3, 4, 5, 6, 7].into();
    let mut got = std::collections::BTreeSet::new();
    while got != want {
        let v = q.get_timeout(Duration::from_secs(30)).unwrap();
        assert!(want.contains(&v), "{v} was put");
        got.insert(v);
    }
    assert!(pool.stats().worker_restarts >= 1, "{:?}", pool.stats());
    // And a new task with a descriptor after the replacement.
    assert_eq!(pool.apply(put_square, (q.clone(), 9)).unwrap(), 9);
    assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), 81);
}

fn make_queue(_: ()) -> Queue<u64> {
    Queue::new().unwrap()
}

/// A descriptor of /dev/null (a duplicate of one opened once: cheap).
fn null_fd(_: u32) -> multiproc::Fd {
    static NULL: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    let null = NULL.get_or_init(|| std::fs::File::open("/dev/null").unwrap());
    multiproc::Fd::new(null.try_clone().unwrap().into())
}

/// More descriptors than one message can carry.
fn too_many_fds(_: ()) -> Vec<multiproc::Fd> {
    let null = std::fs::File::open("/dev/null").unwrap();
    (0..300)
        .map(|_| multiproc::Fd::new(null.try_clone().unwrap().into()))
        .collect()
}

fn a_result_holding_descriptors_comes_back(method: StartMethod) {
    let pool = pool_of_two(method);
    // A queue made in a worker, used here.
    let made = pool.apply(make_queue, ()).unwrap();
    made.put(5).unwrap();
    assert_eq!(made.get_timeout(Duration::from_secs(30)).unwrap(), 5);
    // Results with and without descriptors mixed in one call, in order.
    let queues = pool.chunksize(3).map(make_queue, vec![(); 10]).unwrap();
    for (i, q) in queues.iter().enumerate() {
        q.put(i as u64).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), i as u64);
    }
    // Thousands of cheap tasks returning descriptors, batched by the
    // default chunking: each result's frame goes out with its descriptors
    // (held back, they filled the worker's descriptor socket: a hang).
    // (A window of 800 and each dropped as it comes: the test holds few
    // descriptors at a time, whatever the descriptor limit.)
    let n = pool
        .window(800)
        .imap(null_fd, 0..20_000u32)
        .unwrap()
        .map(|r| drop(r.unwrap()))
        .count();
    assert_eq!(n, 20_000);
    // Over the cap of one message: a clear error for that item.
    let err = pool.apply(too_many_fds, ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode, "{err}");
    assert!(err.to_string().contains("300 descriptors"), "{err}");
    // The pool goes on.
    let q = Queue::<u64>::new().unwrap();
    assert_eq!(pool.apply(put_square, (q.clone(), 3)).unwrap(), 3);
    assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), 9);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// One pool's life with descriptor-carrying tasks, results and errors.
fn one_round(method: StartMethod) {
    let pool = pool_of_two(method);
    let q = Queue::<u64>::new().unwrap();
    let name = format!("/multiproc-pool-fds-{}", std::process::id());
    let shm = SharedMemory::create(&name, 64).unwrap();
    let out = pool.chunksize(5).map(run_item, items(&q, 60)).unwrap();
    assert_eq!(out.len(), 60);
    assert_eq!(pool.apply(add_to_shm, (shm.clone(), 4)).unwrap(), 4);
    let (ours, theirs) = pipe::<u64>().unwrap();
    assert_eq!(pool.apply(send_down, (theirs, 1)).unwrap(), 1);
    assert_eq!(ours.recv().unwrap(), 1);
    let _ = pool.apply(make_queue, ());
    for _ in 0..40 {
        q.get_timeout(Duration::from_secs(30)).unwrap();
    }
    pool.close();
    pool.join().unwrap();
}

fn no_descriptor_or_shared_memory_is_left(method: StartMethod) {
    // Once first, so that what the library opens once (the fork server,
    // the tracker) is open before counting.
    one_round(method);
    let name = format!("/multiproc-pool-fds-{}", std::process::id());
    assert!(!std::path::Path::new(&format!("/dev/shm{name}")).exists());
    let before = open_fds();
    one_round(method);
    assert_eq!(open_fds(), before, "descriptors left open in the parent");
    assert!(
        !std::path::Path::new(&format!("/dev/shm{name}")).exists(),
        "{name} left in /dev/shm"
    );
}
