//! The pool under each start method: results, a dead worker replaced,
//! recycled workers, termination.
//!
//! The harness (a process per test and start method, a watchdog each, no
//! child or zombie left behind) is `tests/isolated`: the fork start method
//! needs a single-threaded process, which libtest's thread-per-test runner
//! is not, and a fork pool must fork again to replace a dead worker.

use std::sync::mpsc;
use std::time::Duration;

use multiproc::{ErrorKind, Pool, Signal, StartMethod};

mod isolated;

const TESTS: isolated::Tests = &[
    (
        "results_and_a_dead_worker_replaced",
        results_and_a_dead_worker_replaced,
        true,
    ),
    (
        "time_limits_and_recycled_workers",
        time_limits_and_recycled_workers,
        true,
    ),
    (
        "work_goes_on_while_nobody_waits",
        work_goes_on_while_nobody_waits,
        true,
    ),
    (
        "an_imap_with_a_window_runs_while_nobody_iterates",
        an_imap_with_a_window_runs_while_nobody_iterates,
        true,
    ),
    (
        "cancel_queued_and_running_tasks",
        cancel_queued_and_running_tasks,
        true,
    ),
    (
        "retries_after_the_worker_was_killed",
        retries_after_the_worker_was_killed,
        true,
    ),
    (
        "initargs_carry_a_queue_a_lock_and_a_pipe_end",
        initargs_carry_a_queue_a_lock_and_a_pipe_end,
        true,
    ),
    (
        "workers_killed_while_results_are_awaited",
        workers_killed_while_results_are_awaited,
        true,
    ),
];

fn main() {
    isolated::main("pool_start_methods", TESTS);
}

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: u64) -> u32 {
    std::process::id()
}

fn die_on(x: u64) -> u64 {
    if x == 13 {
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
            .unwrap();
    }
    x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn pool_of_two(method: StartMethod) -> Pool {
    Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap()
}

fn results_and_a_dead_worker_replaced(method: StartMethod) {
    let pool = pool_of_two(method);
    assert_eq!(pool.map(square, 0..1000u64).unwrap()[999], 998_001);

    // A dead worker is replaced (under fork: by forking again).
    let results: Vec<_> = pool.chunksize(1).imap(die_on, 0..40u64).unwrap().collect();
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert_eq!(failed.len(), 1);
    let err = failed[0].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost);
    assert_eq!(err.signal(), Some(Signal::KILL));
    assert_eq!(pool.stats().worker_restarts, 1);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

fn time_limits_and_recycled_workers(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .task_timeout(Duration::from_millis(200))
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let err = pool.apply(sleep_ms, 60_000).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimeLimit);
    let pids = pool.chunksize(1).map(pid, 0..20u64).unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "a fresh worker per task");

    // close() + join() waits for what was submitted.
    let r = pool.apply_async(sleep_ms, 100).unwrap();
    pool.close();
    pool.join().unwrap();
    assert_eq!(r.get().unwrap(), 100);
}

/// Results arrive and callbacks run while no thread waits on the pool:
/// the test thread only waits on its own channel. A worker that dies while
/// nobody waits has its task failed in the background, and is replaced in
/// the background too (under fork by the pool's forker, since the
/// background thread must not fork).
fn work_goes_on_while_nobody_waits(method: StartMethod) {
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<Result<u64, ErrorKind>>();
    let send = |tx: &mpsc::Sender<_>| {
        let (ok, err) = (tx.clone(), tx.clone());
        (
            move |v: &u64| ok.send(Ok(*v)).unwrap(),
            move |e: &multiproc::Error| err.send(Err(e.kind())).unwrap(),
        )
    };
    let (ok, err) = send(&tx);
    let squares = pool.map_async(square, 0..2000u64).unwrap();
    let r = pool.apply_async_with(square, 7, ok, err).unwrap();
    assert_eq!(rx.recv().unwrap(), Ok(49));
    // Jobs run in order: the map was done before the apply.
    assert!(squares.ready());
    assert_eq!(squares.get().unwrap()[1999], 1999 * 1999);
    assert_eq!(r.get().unwrap(), 49);

    let (ok, err) = send(&tx);
    let dead = pool.apply_async_with(die_on, 13, ok, err).unwrap();
    assert_eq!(rx.recv().unwrap(), Err(ErrorKind::WorkerLost));
    let (ok, err) = send(&tx);
    let after = pool.apply_async_with(square, 5, ok, err).unwrap();
    // Replaced in the background under every start method (under fork by
    // the pool's forker): the callback comes while nobody waits.
    assert_eq!(rx.recv().unwrap(), Ok(25));
    assert_eq!(after.get().unwrap(), 25);
    assert_eq!(dead.get().unwrap_err().kind(), ErrorKind::WorkerLost);
    assert_eq!(pool.stats().worker_restarts, 1);
}

/// An `imap` with a window reads that much input when it is called and the
/// background thread runs it while nobody iterates: with one worker, jobs
/// run in order, so when a later `apply_async`'s callback has run, the
/// window's tasks are done — and no more than the window (the rest of the
/// input is read only by `next`). `window(usize::MAX)` is Python's `imap`:
/// all of it runs. Without a window, nothing of the imap runs before the
/// apply.
fn an_imap_with_a_window_runs_while_nobody_iterates(method: StartMethod) {
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<u64>();
    // Tasks done since `base`, besides the apply's own, once its callback ran.
    let done_before = |pool: &Pool, base: u64| {
        let tx = tx.clone();
        let r = pool
            .apply_async_with(square, 3, move |v: &u64| tx.send(*v).unwrap(), |_| {})
            .unwrap();
        assert_eq!(rx.recv().unwrap(), 9);
        assert_eq!(r.get().unwrap(), 9);
        pool.stats().tasks_done - base - 1
    };

    let base = pool.stats().tasks_done;
    let all = pool.window(usize::MAX).imap(square, 0..2000u64).unwrap();
    assert_eq!(done_before(&pool, base), 2000);
    let got: Vec<u64> = all.map(Result::unwrap).collect();
    assert_eq!(got, (0..2000u64).map(square).collect::<Vec<_>>());

    let base = pool.stats().tasks_done;
    let ten = pool
        .window(10)
        .chunksize(1)
        .imap_unordered(square, 0..1000u64)
        .unwrap();
    assert_eq!(done_before(&pool, base), 10);
    let mut got: Vec<u64> = ten.map(Result::unwrap).collect();
    got.sort_unstable();
    assert_eq!(got, (0..1000u64).map(square).collect::<Vec<_>>());

    let base = pool.stats().tasks_done;
    let lazy = pool.imap(square, 0..100u64).unwrap();
    assert_eq!(done_before(&pool, base), 0);
    assert_eq!(lazy.count(), 100);
}

/// Cancelling a task that runs kills its worker (replaced, under fork at
/// the next call that waits) and reports `Cancelled`; one queued behind it
/// is dropped; the task queued after them still runs; a task that is done
/// cannot be cancelled; cancelling or dropping a `map_async` cancels it.
/// Each cancelled task would sleep for ten minutes: the watchdog fails the
/// test if one runs on.
fn cancel_queued_and_running_tasks(method: StartMethod) {
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .unwrap();
    let before = pool.apply(pid, 0).unwrap();
    let long = pool.apply_async(sleep_ms, 600_000).unwrap();
    let queued = pool.apply_async(sleep_ms, 600_000).unwrap();
    let after = pool.apply_async(square, 5).unwrap();
    assert!(!long.cancelled());
    assert!(long.cancel());
    assert!(queued.cancel());
    assert!(long.cancelled() && queued.cancelled());
    assert!(!long.cancel(), "cancelled twice");
    assert_eq!(after.get().unwrap(), 25);
    assert_eq!(long.get().unwrap_err().kind(), ErrorKind::Cancelled);
    assert_eq!(queued.get().unwrap_err().kind(), ErrorKind::Cancelled);
    assert_ne!(
        pool.apply(pid, 0).unwrap(),
        before,
        "the worker was replaced"
    );
    assert_eq!(pool.stats().worker_restarts, 1);

    let done = pool.apply_async(square, 3).unwrap();
    done.wait().unwrap();
    assert!(done.done() && !done.running());
    assert!(!done.cancel());
    assert!(!done.cancelled());
    assert_eq!(done.get().unwrap(), 9);

    let many = pool.map_async(sleep_ms, vec![600_000; 4]).unwrap();
    assert!(many.cancel());
    assert_eq!(many.get().unwrap_err().kind(), ErrorKind::Cancelled);
    drop(pool.map_async(sleep_ms, vec![600_000; 3]).unwrap());
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
    pool.close();
    pool.join().unwrap();
}

/// Counts its runs in the file at `path` and kills its own worker (SIGKILL)
/// on the first `deaths` of them; returns the run it succeeded in.
fn die_first_times(path: String, deaths: u32) -> u32 {
    let runs: u32 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
        + 1;
    std::fs::write(&path, runs.to_string()).unwrap();
    if runs <= deaths {
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
            .unwrap();
    }
    runs
}

/// Panics the first `panics` times it runs with this `path`.
fn panic_first_times(path: String, panics: u32) -> u32 {
    let runs: u32 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
        + 1;
    std::fs::write(&path, runs.to_string()).unwrap();
    assert!(runs > panics, "attempt {runs} fails");
    runs
}

/// A task whose worker is SIGKILLed under it runs again while its retries
/// last (per call, or the pool's policy), and the final error names the
/// attempts made; without retries, a death is the task's failure at once.
fn retries_after_the_worker_was_killed(method: StartMethod) {
    let dir = std::env::temp_dir().join(format!(
        "multiproc-retries-{}-{method:?}",
        std::process::id()
    ));
    std::fs::create_dir(&dir).unwrap();
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();

    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .unwrap();
    let r = pool
        .retries(2)
        .apply_async(die_first_times, (file("a"), 2))
        .unwrap();
    assert_eq!(r.get().unwrap(), 3, "succeeded on the third attempt");
    let r = pool
        .retries(1)
        .apply_async(die_first_times, (file("b"), 5))
        .unwrap();
    let e = r.get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkerLost);
    assert!(e.to_string().contains("2 attempts made"), "{e}");
    let e = pool.apply(die_first_times, (file("c"), 1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkerLost);
    assert!(!e.to_string().contains("attempts"), "{e}");
    let out = pool
        .retries(1)
        .map(
            die_first_times,
            vec![(file("d"), 0), (file("e"), 1), (file("f"), 0)],
        )
        .unwrap();
    // Item 1 ran twice. Item 0 may have too: it had finished, but its
    // result may still have been in the worker's batch when the worker
    // died ("A dead worker never hangs the pool" in src/pool/README.md).
    assert_eq!(out[1], 2);
    assert!(out[0] >= 1 && out[2] == 1, "{out:?}");
    assert_eq!(pool.stats().worker_restarts, 6);
    drop(pool);

    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .retries(1)
        .build()
        .unwrap();
    let r = pool.apply_async(die_first_times, (file("g"), 1)).unwrap();
    assert_eq!(r.get().unwrap(), 2);
    // A panic is not retried by default, and is with `retry_panics`: in
    // the same worker, which survives its panics.
    let e = pool.apply(panic_first_times, (file("h"), 1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Panicked);
    let out = pool
        .retries(2)
        .retry_panics(true)
        .map(
            panic_first_times,
            vec![(file("i"), 0), (file("j"), 2), (file("k"), 1)],
        )
        .unwrap();
    assert_eq!(out, [1, 3, 2]);
    let e = pool
        .retries(2)
        .retry_panics(true)
        .apply_async(panic_first_times, (file("l"), 9))
        .unwrap()
        .get()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Panicked);
    assert!(e.to_string().contains("attempt 3 fails"), "{e}");
    assert!(e.to_string().contains("3 attempts made"), "{e}");
    assert_eq!(pool.stats().worker_restarts, 1);
}

/// What the initializer of `initargs_carry_...` keeps for the tasks.
type Kept = (
    multiproc::Queue<u64>,
    multiproc::sync::Lock,
    multiproc::Connection<u64>,
    multiproc::shared::Value<u64>,
    multiproc::shared::SharedMemory,
);

static KEPT: std::sync::Mutex<Option<Kept>> = std::sync::Mutex::new(None);

fn keep(
    q: multiproc::Queue<u64>,
    lock: multiproc::sync::Lock,
    conn: multiproc::Connection<u64>,
    count: multiproc::shared::Value<u64>,
    shm: multiproc::shared::SharedMemory,
) {
    *KEPT.lock().unwrap() = Some((q, lock, conn, count, shm));
}

/// Puts `x²` into the kept queue and `x` down the kept pipe end, both
/// under the kept lock (the workers share the pipe end); counts in the
/// kept `Value` and adds `x` in the kept shared memory.
fn use_kept(x: u64) -> u64 {
    let kept = KEPT.lock().unwrap();
    let (q, lock, conn, count, shm) = kept.as_ref().expect("kept by the initializer");
    let _guard = lock.acquire().unwrap();
    q.put(x * x).unwrap();
    conn.send(&x).unwrap();
    count.set(count.get().unwrap() + 1).unwrap();
    shm.atomic_u64(0)
        .unwrap()
        .fetch_add(x, std::sync::atomic::Ordering::SeqCst);
    x
}

/// Whether the kept lock is free now (without waiting).
fn lock_is_free(_: ()) -> bool {
    let kept = KEPT.lock().unwrap();
    kept.as_ref().unwrap().1.try_acquire().is_ok()
}

/// Python's `Pool(initializer=f, initargs=(queue, lock, conn))`: every
/// worker, replacements included, holds the same queue, lock and pipe as
/// the parent.
fn initargs_carry_a_queue_a_lock_and_a_pipe_end(method: StartMethod) {
    let q = multiproc::Queue::<u64>::new().unwrap();
    let lock = multiproc::sync::Lock::new().unwrap();
    let (ours, theirs) = multiproc::connection::pipe::<u64>().unwrap();
    let count = multiproc::shared::Value::new(0u64).unwrap();
    let shm = multiproc::shared::SharedMemory::new(64).unwrap();
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .maxtasksperchild(3) // replacements get their own handles too
        .initializer(
            keep,
            (q.clone(), lock.clone(), theirs, count.clone(), shm.clone()),
        )
        .build()
        .unwrap();
    let done = pool.chunksize(1).map(use_kept, 0..12u64).unwrap();
    assert_eq!(done, (0..12u64).collect::<Vec<_>>());
    let mut squares: Vec<u64> = (0..12)
        .map(|_| q.get_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    squares.sort_unstable();
    assert_eq!(squares, (0..12u64).map(|x| x * x).collect::<Vec<_>>());
    let mut sent: Vec<u64> = (0..12).map(|_| ours.recv().unwrap()).collect();
    sent.sort_unstable();
    assert_eq!(sent, (0..12u64).collect::<Vec<_>>());
    assert!(pool.stats().worker_restarts >= 2, "{:?}", pool.stats());
    assert_eq!(count.get().unwrap(), 12);
    let total = shm
        .atomic_u64(0)
        .unwrap()
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(total, (0..12u64).sum::<u64>());
    // The same lock: held here, busy there.
    let guard = lock.acquire().unwrap();
    assert!(!pool.apply(lock_is_free, ()).unwrap());
    drop(guard);
    assert!(pool.apply(lock_is_free, ()).unwrap());
}

/// Sleeps a millisecond; items 7, 57, 107 and 157 SIGKILL their own worker.
fn slow_or_die(x: u64) -> u32 {
    if x % 50 == 7 {
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1));
    std::process::id()
}

/// Workers SIGKILLed while 200 results are awaited from tokio tasks: each
/// killed task's awaiter gets `WorkerLost`, every other one its value, and
/// nobody hangs; once the pool is dropped, no worker it ever had is left
/// (no orphan, no zombie).
/// The pool is made before the runtime's threads (the fork start method
/// refuses a process with threads).
fn workers_killed_while_results_are_awaited(method: StartMethod) {
    let pool = pool_of_two(method);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
        .block_on(killed_while_awaited(method, pool));
}

async fn killed_while_awaited(method: StartMethod, pool: Pool) {
    let awaiting: Vec<_> = (0..200u64)
        .map(|i| {
            let r = pool.apply_async(slow_or_die, i).unwrap();
            tokio::spawn(async move { (i, r.await) })
        })
        .collect();
    let mut lost = Vec::new();
    let mut pids = std::collections::BTreeSet::new();
    for task in awaiting {
        match task.await.unwrap() {
            (_, Ok(pid)) => {
                pids.insert(pid);
            }
            (i, Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::WorkerLost, "{method:?} item {i}: {e}");
                lost.push(i);
            }
        }
    }
    assert_eq!(lost, [7, 57, 107, 157]);
    assert_eq!(pool.stats().worker_restarts, 4);
    drop(pool);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} outlived its pool"
        );
    }
}
