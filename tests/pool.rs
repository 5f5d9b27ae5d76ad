//! Pools: the API, dead workers, time limits, recycling, termination.
//!
//! Crashes are real: tasks kill their own worker with SIGKILL, abort it, or
//! sleep past their limit, and each test asserts what the caller sees and
//! that the pool goes on working.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use multiproc::{ErrorKind, Pool, Signal};

multiproc::test_support!();

/// Aborts the test binary if a test hangs; children die with it.
struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

fn watchdog(name: &'static str) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(120)) {
            eprintln!("watchdog: {name} hung; aborting");
            std::process::abort();
        }
    });
    Watchdog(tx)
}

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn pid_of_worker(_: u32) -> u32 {
    std::process::id()
}

#[test]
fn map_returns_results_in_order() {
    let _w = watchdog("map");
    let pool = Pool::new(2).unwrap();
    let squares = pool.map(square, 0..10_000u64).unwrap();
    assert_eq!(squares, (0..10_000u64).map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(
        pool.map(square, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
    // An input of unknown length takes the adaptive path.
    let odd = pool
        .map(square, (0..5_000u64).filter(|x| x % 2 == 1))
        .unwrap();
    assert_eq!(odd.len(), 2_500);
    assert_eq!(odd[1], 9);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn the_work_is_spread_over_the_workers() {
    let _w = watchdog("spread");
    let pool = Pool::new(3).unwrap();
    let pids = pool.chunksize(1).map(pid_of_worker, 0..300).unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 2, "all 300 tasks ran in {distinct:?}");
    assert!(!distinct.contains(&std::process::id()));
}

#[test]
fn several_arguments_travel_as_tuples() {
    let _w = watchdog("starmap");
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(add, (1, 2)).unwrap(), 3);
    assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), [3, 7]);
    let r = pool.starmap_async(add, vec![(5, 5)]).unwrap();
    assert_eq!(r.get().unwrap(), [10]);
}

#[test]
fn imap_next_timeout_says_timeout_and_the_iteration_goes_on() {
    let _w = watchdog("imap next_timeout");
    let pool = Pool::new(1).unwrap();
    let mut it = pool.imap(sleep_ms, vec![1_000, 1]).unwrap();
    let err = it
        .next_timeout(Duration::from_millis(1))
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let err = it
        .next_deadline(std::time::Instant::now())
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(it.next_timeout(Duration::MAX).unwrap().unwrap(), 1_000);
    assert_eq!(it.next().unwrap().unwrap(), 1);
    assert!(it.next_timeout(Duration::MAX).is_none(), "exhausted");
}

#[test]
fn apply_async_results_and_their_state() {
    let _w = watchdog("apply_async");
    let pool = Pool::new(2).unwrap();
    let results: Vec<_> = (0..100u64)
        .map(|i| pool.apply_async(add, (i, 1)).unwrap())
        .collect();
    let r0 = &results[0];
    r0.wait().unwrap();
    assert!(r0.ready());
    assert_eq!(r0.successful(), Some(true));
    let sum: u64 = results.into_iter().map(|r| r.get().unwrap()).sum();
    assert_eq!(sum, (1..=100).sum());

    let slow = pool.apply_async(sleep_ms, 2_000).unwrap();
    // Not there yet: each form says so its own way, and the task goes on.
    let err = slow.get_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let err = slow.wait_timeout(Duration::ZERO).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let err = slow.try_get().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
    assert_eq!(slow.successful(), None);
    assert_eq!(slow.get_timeout(Duration::MAX).unwrap(), 2_000);
    assert_eq!(
        slow.try_get().unwrap_err().kind(),
        ErrorKind::AlreadyTaken,
        "the value is handed out once"
    );
    let err = slow.get_deadline(std::time::Instant::now()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyTaken, "{err}");
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn callbacks_run_before_join_returns() {
    let _w = watchdog("callbacks");
    let pool = Pool::new(2).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    for i in 0..20u64 {
        let got = got.clone();
        let errors = errors.clone();
        let _ = pool
            .apply_async_with(
                fail_on_7,
                i,
                move |v: &u64| got.lock().unwrap().push(*v),
                move |e| {
                    assert_eq!(e.kind(), ErrorKind::Panicked);
                    errors.fetch_add(1, Ordering::SeqCst);
                },
            )
            .unwrap();
    }
    let total = Arc::new(AtomicUsize::new(0));
    let t = total.clone();
    let _ = pool
        .map_async_with(
            square,
            0..10u64,
            move |v: &Vec<u64>| t.store(v.iter().sum::<u64>() as usize, Ordering::SeqCst),
            |_| panic!("no error expected"),
        )
        .unwrap();
    pool.close();
    pool.join().unwrap();
    let mut got = got.lock().unwrap().clone();
    got.sort();
    assert_eq!(got.len(), 19);
    assert!(!got.contains(&7));
    assert_eq!(errors.load(Ordering::SeqCst), 1);
    assert_eq!(total.load(Ordering::SeqCst), 285);
}

fn fail_on_7(x: u64) -> u64 {
    assert_ne!(x, 7, "seven is not allowed");
    x
}

#[test]
fn a_panicking_task_is_that_tasks_error_and_the_worker_survives() {
    let _w = watchdog("panic");
    let pool = Pool::new(1).unwrap();
    let before = pool.apply(pid_of_worker, 0).unwrap();
    let err = pool.apply(fail_on_7, 7).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(
        err.panic_message()
            .unwrap()
            .contains("seven is not allowed"),
        "{err}"
    );
    assert!(err.to_string().contains("task 0"), "{err}");
    assert_eq!(pool.apply(pid_of_worker, 0).unwrap(), before, "same worker");
    assert_eq!(pool.stats().worker_restarts, 0);

    let results: Vec<_> = pool.imap(fail_on_7, 0..10u64).unwrap().collect();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert!(results[7].is_err());
    let err = pool.map(fail_on_7, 0..10u64).unwrap_err();
    assert!(err.to_string().contains("task 7"), "{err}");
}

fn kill_self_at(i: u64, at: u64) -> u64 {
    if i == at {
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
            .unwrap();
    }
    i
}

#[test]
fn a_worker_killed_mid_map_fails_exactly_one_task() {
    let _w = watchdog("sigkill");
    let pool = Pool::new(2).unwrap();
    let input: Vec<(u64, u64)> = (0..10_000).map(|i| (i, 5_000)).collect();
    let results: Vec<_> = pool.imap(kill_self_at, input.clone()).unwrap().collect();
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, [5_000]);
    let err = results[5_000].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost);
    assert_eq!(err.signal(), Some(Signal::KILL));
    assert!(err.to_string().contains("task 5000"), "{err}");
    for (i, r) in results.iter().enumerate() {
        if i != 5_000 {
            assert_eq!(*r.as_ref().unwrap(), i as u64);
        }
    }
    let stats = pool.stats();
    assert_eq!(stats.tasks_failed, 1);
    assert_eq!(stats.worker_restarts, 1);

    // map reports it as its error; the pool stays usable.
    let err = pool.map(kill_self_at, input).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost);
    assert_eq!(pool.map(square, 0..100u64).unwrap().len(), 100);
    assert_eq!(pool.stats().workers, 2);
}

fn abort_on(i: u64) -> u64 {
    if i == 3 {
        std::process::abort();
    }
    if i == 5 {
        // What a segmentation fault delivers.
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::SEGV)
            .unwrap();
    }
    i
}

#[test]
fn an_aborting_worker_is_named_with_its_signal() {
    let _w = watchdog("abort");
    let pool = Pool::new(2).unwrap();
    let r = pool.apply_async(abort_on, 3).unwrap();
    let err = r.get().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost);
    assert_eq!(err.signal(), Some(Signal::ABRT));
    assert!(err.to_string().contains("PoolWorker-"), "{err}");
    assert_eq!(pool.apply(abort_on, 4).unwrap(), 4);
    let err = pool.apply(abort_on, 5).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost);
    assert_eq!(err.signal(), Some(Signal::SEGV));
    // map_async reports the first failure, and the rest is cancelled.
    let err = pool
        .chunksize(1)
        .map_async(abort_on, 0..10u64)
        .unwrap()
        .get()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost);
    assert_eq!(pool.map(abort_on, [1, 2]).unwrap(), [1, 2]);
}

#[test]
fn a_task_past_its_time_limit_is_killed_and_reported() {
    let _w = watchdog("timeout");
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let results: Vec<_> = pool
        .chunksize(1)
        .imap(sleep_ms, vec![1, 60_000, 2, 3])
        .unwrap()
        .collect();
    let err = results[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimeLimit, "{err}");
    assert!(err.to_string().contains("task 1"), "{err}");
    assert_eq!(*results[3].as_ref().unwrap(), 3);
    assert_eq!(pool.stats().worker_restarts, 1);
    assert_eq!(pool.apply(sleep_ms, 1).unwrap(), 1);
}

#[test]
fn maxtasksperchild_replaces_workers() {
    let _w = watchdog("maxtasks");
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let pids = pool.chunksize(1).map(pid_of_worker, 0..200).unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 200, "every task ran in a fresh worker");
    assert!(pool.stats().worker_restarts >= 198);
    assert_eq!(pool.stats().tasks_failed, 0);
}

#[test]
fn imap_streams_an_endless_input_and_can_be_dropped() {
    let _w = watchdog("endless");
    let pool = Pool::new(2).unwrap();
    let mut it = pool.imap(square, 0u64..).unwrap();
    for i in 0..1_000u64 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
    }
    drop(it);
    let mut n = 0;
    for r in pool.imap_unordered(square, 0u64..).unwrap().take(1_000) {
        r.unwrap();
        n += 1;
    }
    assert_eq!(n, 1_000);
    assert_eq!(pool.map(square, 0..10u64).unwrap()[3], 9);
    // A `break` out of an imap whose tasks never end frees the pool: the
    // workers under them are killed and replaced.
    let mut stuck = pool
        .chunksize(1)
        .imap(sleep_ms, [1, 600_000, 600_000, 600_000])
        .unwrap();
    assert_eq!(stuck.next().unwrap().unwrap(), 1);
    drop(stuck);
    assert_eq!(pool.map(square, 0..10u64).unwrap()[3], 9);
    assert!(pool.stats().worker_restarts >= 1, "{:?}", pool.stats());
}

/// A quick task's result is not held back by a long task after it in the
/// same worker, even after a run of tiny tasks (which make the worker
/// batch its results).
#[test]
fn a_result_is_not_held_behind_a_long_task() {
    let _w = watchdog("held result");
    let pool = Pool::new(1).unwrap();
    for _ in 0..3 {
        assert_eq!(pool.map(square, 0..5_000u64).unwrap().len(), 5_000);
        let mut it = pool.chunksize(1).imap(sleep_ms, [1, 600_000]).unwrap();
        assert_eq!(it.next().unwrap().unwrap(), 1);
    }
}

#[test]
fn imap_unordered_yields_every_result() {
    let _w = watchdog("unordered");
    let pool = Pool::new(2).unwrap();
    let mut got: Vec<u64> = pool
        .imap_unordered(square, 0..1_000u64)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    got.sort();
    assert_eq!(got, (0..1_000u64).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn terminate_during_a_long_map_fails_the_rest() {
    let _w = watchdog("terminate");
    let pool = Pool::new(2).unwrap();
    let r = pool
        .chunksize(1)
        .map_async(sleep_ms, vec![60_000; 4])
        .unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Wait until both workers run a task, then terminate.
            while pool.stats().tasks_running < 2 {
                std::thread::yield_now();
            }
            pool.terminate();
        });
    });
    let err = r.get().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PoolClosed);
    assert_eq!(
        pool.apply(square, 2).unwrap_err().kind(),
        ErrorKind::PoolClosed
    );
    pool.join().unwrap();
    assert_eq!(pool.stats().workers, 0);
}

#[test]
fn close_then_join_finishes_the_work() {
    let _w = watchdog("close");
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.join().unwrap_err().kind(), ErrorKind::StillRunning);
    let r = pool.map_async(sleep_ms, vec![50, 50, 50]).unwrap();
    pool.close();
    assert_eq!(
        pool.apply(square, 2).unwrap_err().kind(),
        ErrorKind::PoolClosed
    );
    pool.join().unwrap();
    assert_eq!(r.get().unwrap(), [50, 50, 50]);
    assert_eq!(pool.stats().workers, 0);
}

#[test]
fn dropping_the_pool_terminates_it() {
    let _w = watchdog("drop");
    let pool = Pool::new(2).unwrap();
    let r = pool.apply_async(sleep_ms, 60_000).unwrap();
    let pid = pool.apply(pid_of_worker, 0).unwrap();
    drop(pool);
    assert_eq!(r.get().unwrap_err().kind(), ErrorKind::PoolClosed);
    // The worker is gone (reaped): signal 0 finds nothing.
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    assert!(rustix::process::test_kill_process(pid).is_err());
}

fn set_token(v: u64) {
    TOKEN.store(v as usize, Ordering::SeqCst);
}

static TOKEN: AtomicUsize = AtomicUsize::new(0);

fn read_token(_: ()) -> usize {
    TOKEN.load(Ordering::SeqCst)
}

fn bad_init() {
    panic!("no database");
}

#[test]
fn the_initializer_runs_in_every_worker() {
    let _w = watchdog("initializer");
    let pool = Pool::builder()
        .processes(2)
        .initializer(set_token, 42)
        .build()
        .unwrap();
    assert!(
        pool.chunksize(1)
            .map(read_token, vec![(); 20])
            .unwrap()
            .iter()
            .all(|&t| t == 42)
    );
    let broken = Pool::builder()
        .processes(2)
        .initializer(bad_init, ())
        .build()
        .unwrap();
    let err = broken.map(square, 0..10u64).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(err.to_string().contains("no database"), "{err}");
}

#[test]
fn bad_input_gets_clear_errors() {
    let _w = watchdog("bad input");
    assert_eq!(Pool::new(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let pool = Pool::new(1).unwrap();
    // Values that hold a descriptor cannot go to the workers with the
    // function (a capturing closure does not build: see `partial`).
    let queue: multiproc::Queue<u64> = multiproc::Queue::new().unwrap();
    let with_queue =
        multiproc::partial(|q: &multiproc::Queue<u64>, x: u64| q.put(x).is_ok(), queue);
    let err = pool.map(with_queue, 0..3u64).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode);
    assert!(err.to_string().contains("initializer"), "{err}");
    assert_eq!(pool.map(|x: u64| x + 1, 0..3u64).unwrap(), [1, 2, 3]);
}

/// The program side of the Ctrl-C tests: run by
/// `ctrl_c_stops_the_whole_tree*` as a copy of this test binary in its own
/// process group, with `POOL_SIGINT_ROLE` set. Does nothing otherwise.
#[test]
fn sigint_role() {
    let Ok(mode) = std::env::var("POOL_SIGINT_ROLE") else {
        return;
    };
    // A program started in the background by a non-interactive shell (as
    // CI may start the tests) inherits SIGINT ignored; Ctrl-C in a terminal
    // reaches a program with the default disposition, which is what this
    // test is about.
    #[allow(unsafe_code)]
    // SAFETY: setting the default disposition installs no code.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if mode == "handled" {
        signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone()).unwrap();
    }
    let pool = Pool::new(2).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            while pool.stats().tasks_running < 2 {
                std::thread::sleep(Duration::from_millis(5));
            }
            println!("ready");
            use std::io::Write;
            std::io::stdout().flush().unwrap();
        });
        let err = pool
            .chunksize(1)
            .map(sleep_ms, vec![60_000u64; 4])
            .unwrap_err();
        println!("map failed: {:?}", err.kind());
        assert_eq!(err.kind(), ErrorKind::Interrupted);
        assert!(flag.load(Ordering::SeqCst), "the program's own handler ran");
    });
    assert_eq!(pool.stats().workers, 0, "the pool was terminated");
    // The program goes on, and can make a new pool.
    let again = Pool::new(2).unwrap();
    assert_eq!(again.map(square, 0..10u64).unwrap()[3], 9);
    println!("clean exit");
}

/// Runs `sigint_role` in `mode`, presses Ctrl-C on its process group once
/// its workers run, and returns its exit status and output, after checking
/// that no process of the group survives.
fn interrupt_role(mode: &str) -> (std::process::ExitStatus, String, String) {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["sigint_role", "--exact", "--nocapture", "--test-threads=1"])
        .env("POOL_SIGINT_ROLE", mode)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "no ready: {seen}");
        seen.push_str(&line);
        if line.trim_end().ends_with("ready") {
            break;
        }
    }
    rustix::process::kill_process_group(pgid, rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    stdout.read_to_string(&mut seen).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    // Every process of the group goes: the workers die with their parent
    // (or were terminated by it), the fork server when its parent is gone.
    let t0 = std::time::Instant::now();
    while rustix::process::test_kill_process_group(pgid).is_ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "processes of the interrupted program survive"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (status, seen, stderr)
}

#[test]
fn ctrl_c_stops_the_whole_tree_quietly() {
    let _w = watchdog("ctrl-c");
    let (status, out, err) = interrupt_role("default");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGINT), "{out}\n{err}");
    assert!(!err.contains("panicked"), "no message per worker: {err}");
    assert!(!err.contains("PoolWorker"), "no message per worker: {err}");
}

#[test]
fn ctrl_c_in_a_program_that_handles_it_interrupts_the_call() {
    let _w = watchdog("ctrl-c handled");
    let (status, out, err) = interrupt_role("handled");
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("map failed: Interrupted"), "{out}");
    assert!(out.contains("clean exit"), "{out}");
}

fn hog_and_report(mib: usize) -> u32 {
    // Memory that stays: the worker's resident size grows past the cap.
    let block = vec![1u8; mib << 20];
    std::mem::forget(block);
    std::thread::sleep(Duration::from_millis(10));
    std::process::id()
}

#[test]
fn a_worker_past_its_memory_cap_is_recycled_between_tasks() {
    let _w = watchdog("memory cap");
    let pool = Pool::builder()
        .processes(2)
        .max_memory_per_worker(64 << 20)
        .build()
        .unwrap();
    let pids = pool.chunksize(1).map(hog_and_report, vec![96; 6]).unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 6, "each task left its worker over the cap");
    let stats = pool.stats();
    assert_eq!(stats.tasks_failed, 0, "recycling fails nothing");
    // Six distinct workers: the two first ones and at least four replacements.
    assert!(stats.worker_restarts >= 4, "{stats:?}");
}

#[test]
fn counters_say_what_the_pool_did() {
    let _w = watchdog("counters");
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.stats().workers, 2);
    pool.map(square, 0..100u64).unwrap();
    let _ = pool.apply(fail_on_7, 7);
    let stats = pool.stats();
    assert_eq!(stats.tasks_done, 100);
    assert_eq!(stats.tasks_failed, 1);
    assert_eq!((stats.tasks_running, stats.tasks_queued), (0, 0));
    assert_eq!(stats.worker_restarts, 0);
}

fn big(n: usize) -> Vec<u8> {
    vec![7u8; n]
}

fn total(v: Vec<u8>) -> usize {
    v.iter().map(|&b| b as usize).sum()
}

#[test]
fn large_arguments_and_results_travel_whole() {
    let _w = watchdog("large values");
    let pool = Pool::new(2).unwrap();
    let results = pool.map(big, vec![5 << 20, 1, 3 << 20]).unwrap();
    assert_eq!(
        results.iter().map(Vec::len).collect::<Vec<_>>(),
        [5 << 20, 1, 3 << 20]
    );
    let sums = pool.map(total, results).unwrap();
    assert_eq!(sums, [7 * (5 << 20), 7, 7 * (3 << 20)]);
}

/// Writes `b"hi"` into the pipe end it was given.
fn takes_fd(fd: multiproc::Fd) -> bool {
    use std::io::Write;
    std::fs::File::from(fd.into_owned())
        .write_all(b"hi")
        .is_ok()
}

/// A result cannot hold one.
/// A pipe whose write end stays in the worker: its read end comes back.
fn returns_fd(_: ()) -> multiproc::Fd {
    use std::io::Write;
    let (r, mut w) = std::io::pipe().unwrap();
    w.write_all(b"from the worker").unwrap();
    multiproc::Fd::new(r.into())
}

#[test]
fn a_descriptor_travels_in_task_arguments_and_results() {
    use std::io::Read;
    let _w = watchdog("fd argument");
    let pool = Pool::new(1).unwrap();
    let (mut r, w) = std::io::pipe().unwrap();
    let fd = multiproc::Fd::new(w.into());
    let results: Vec<_> = pool.imap(takes_fd, vec![fd]).unwrap().collect();
    assert!(*results[0].as_ref().unwrap());
    let mut got = [0u8; 2];
    r.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi");
    let back = pool.apply(returns_fd, ()).unwrap();
    let mut text = String::new();
    std::fs::File::from(back.into_owned())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "from the worker");
    assert_eq!(pool.apply(square, 4).unwrap(), 16, "the pool goes on");
}

#[test]
fn threads_can_share_a_pool() {
    let _w = watchdog("threads");
    let pool = Pool::new(2).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let pool = &pool;
                s.spawn(move || {
                    let out = pool.map(square, t * 1000..(t + 1) * 1000).unwrap();
                    assert_eq!(out[999], ((t + 1) * 1000 - 1).pow(2));
                    let r = pool.apply_async(add, (t, 1)).unwrap();
                    assert_eq!(r.get().unwrap(), t + 1);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(pool.stats().tasks_done, 4 * 1001);
}

/// A callback that the background thread runs finishes before `get` and
/// `join` return and before `ready` says so (Python's result handler runs
/// the callback before it sets the result's event); one that panics is
/// logged and the pool and its other callbacks go on.
#[test]
fn callbacks_run_before_their_result_is_handed_out() {
    let _w = watchdog("callbacks_settle");
    let pool = Pool::new(1).unwrap();
    let (started_tx, started) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let r = pool
        .apply_async_with(
            square,
            3,
            move |v: &u64| {
                started_tx.send(()).unwrap();
                release_rx.lock().unwrap().recv().unwrap();
                s.store(*v as usize, Ordering::SeqCst);
            },
            |_| panic!("no error expected"),
        )
        .unwrap();
    // Nobody waits on the pool: the background thread runs the callback.
    started.recv().unwrap();
    assert!(!r.ready(), "ready while its callback still runs");
    assert_eq!(
        r.wait_timeout(Duration::from_millis(1)).unwrap_err().kind(),
        ErrorKind::Timeout
    );
    let seen2 = seen.clone();
    let getter = std::thread::spawn(move || {
        let v = r.get().unwrap();
        (v, seen2.load(Ordering::SeqCst))
    });
    release.send(()).unwrap();
    assert_eq!(getter.join().unwrap(), (9, 9));

    let later = Arc::new(AtomicUsize::new(0));
    let l = later.clone();
    let _ = pool
        .apply_async_with(square, 4, |_| panic!("a callback's own bug"), |_| {})
        .unwrap();
    let _ = pool
        .apply_async_with(
            square,
            5,
            move |v: &u64| l.store(*v as usize, Ordering::SeqCst),
            |_| {},
        )
        .unwrap();
    pool.close();
    pool.join().unwrap();
    assert_eq!(later.load(Ordering::SeqCst), 25);
    assert_eq!(
        pool.apply(square, 6).unwrap_err().kind(),
        ErrorKind::PoolClosed
    );
}

fn sleep_forever(_: ()) {
    std::thread::sleep(Duration::from_secs(600));
}

/// `as_completed` yields results in the order they complete (one worker:
/// the order of submission, whatever their order in the slice); `wait`
/// stops at the first failure, at the first completion, or when its time
/// runs out (then `not_done` says what is left); neither waits for a task
/// that never ends.
#[test]
fn as_completed_and_wait() {
    let _w = watchdog("as_completed");
    let pool = Pool::new(1).unwrap();
    let first = pool.apply_async(square, 1).unwrap();
    let second = pool.apply_async(square, 2).unwrap();
    let third = pool.apply_async(square, 3).unwrap();
    let results = vec![third, second, first];
    let order: Vec<usize> = multiproc::pool::as_completed(&results, None)
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(order, vec![2, 1, 0]);
    let values: Vec<u64> = results.iter().map(|r| r.try_get().unwrap()).collect();
    assert_eq!(values, vec![9, 4, 1]);

    use multiproc::pool::{Done, ReturnWhen, wait};
    let results = vec![
        pool.apply_async(fail_on_7, 1).unwrap(),
        pool.apply_async(fail_on_7, 7).unwrap(),
        pool.apply_async(fail_on_7, 600).unwrap(),
    ];
    let d = wait(&results, None, ReturnWhen::FirstException).unwrap();
    assert!(d.done.starts_with(&[0, 1]), "{d:?}");
    assert_eq!(
        results[1].try_get().unwrap_err().kind(),
        ErrorKind::Panicked
    );
    let d = wait(&results, None, ReturnWhen::AllCompleted).unwrap();
    assert_eq!(d.not_done, Vec::<usize>::new());

    let pool = Pool::new(2).unwrap();
    let slow = vec![
        pool.apply_async(sleep_forever, ()).unwrap(),
        pool.apply_async(sleep_forever, ()).unwrap(),
    ];
    let quick = pool.apply_async(sleep_forever, ()).unwrap();
    assert!(quick.cancel());
    let mixed = vec![slow.into_iter().next().unwrap(), quick];
    let d = wait(&mixed, None, ReturnWhen::FirstCompleted).unwrap();
    assert_eq!(
        d,
        Done {
            done: vec![1],
            not_done: vec![0]
        }
    );
    let d = wait(
        &mixed[..1],
        Some(Duration::from_millis(5)),
        ReturnWhen::AllCompleted,
    )
    .unwrap();
    assert_eq!((d.done.len(), d.not_done), (0, vec![0]));
    let mut it = multiproc::pool::as_completed(&mixed[..1], Some(Duration::from_millis(5)));
    assert_eq!(it.next().unwrap().unwrap_err().kind(), ErrorKind::Timeout);
    assert!(it.next().is_none());
    assert!(mixed[0].cancel());
}

/// A done-callback added before the result runs when it arrives; one added
/// after runs at once; both see the outcome. `shutdown(cancel_futures)`
/// cancels what has not reached a worker and waits for the rest.
#[test]
fn done_callbacks_and_shutdown() {
    let _w = watchdog("done_callbacks");
    let pool = Pool::new(1).unwrap();
    let (tx, rx) = mpsc::channel::<u64>();
    let blocker = pool.apply_async(sleep_forever, ()).unwrap();
    let r = pool.apply_async(square, 6).unwrap();
    let t = tx.clone();
    r.add_done_callback(move |v| t.send(*v.as_ref().unwrap()).unwrap());
    assert!(blocker.cancel());
    assert_eq!(rx.recv().unwrap(), 36);
    let t = tx.clone();
    r.add_done_callback(move |v| t.send(*v.as_ref().unwrap() + 1).unwrap());
    assert_eq!(rx.try_recv().unwrap(), 37, "ran at once");
    assert_eq!(r.get().unwrap(), 36);

    // A map of more items than a worker is ever given at once (8 192) keeps
    // the queue behind it from reaching the worker.
    let wall = pool
        .chunksize(1)
        .map_async(sleep_forever, vec![(); 10_000])
        .unwrap();
    let queued: Vec<_> = (0..20u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    let errs = Arc::new(AtomicUsize::new(0));
    for q in &queued {
        assert!(!q.running());
        let e = errs.clone();
        q.add_done_callback(move |r| {
            if r.as_ref().is_err_and(|e| e.kind() == ErrorKind::Cancelled) {
                e.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    pool.shutdown(false, true).unwrap();
    assert!(queued.iter().all(|q| q.cancelled()));
    assert_eq!(errs.load(Ordering::SeqCst), 20);
    assert!(
        wall.running() && !wall.cancelled(),
        "it had reached the worker"
    );
    assert!(wall.cancel());
    pool.join().unwrap();
    assert_eq!(
        pool.apply(square, 1).unwrap_err().kind(),
        ErrorKind::PoolClosed
    );
}

/// A minimal executor: polls `f` on this thread, parked between wakes.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Results can be awaited: the background thread does the work and wakes
/// the task (no thread waits on the pool); a failure and a cancelled task
/// come out as their errors; 2 000 results awaited one after another.
#[test]
fn results_can_be_awaited() {
    let _w = watchdog("await");
    let pool = Pool::new(2).unwrap();
    let all: Vec<_> = (0..2_000u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    let many = pool.map_async(square, 0..100u64).unwrap();
    let failing = pool.apply_async(fail_on_7, 7).unwrap();
    let stopped = pool.apply_async(sleep_forever, ()).unwrap();
    assert!(stopped.cancel());
    let (sum, total, fail, cancel) = block_on(async {
        let mut sum = 0;
        for r in all {
            sum += r.await.unwrap();
        }
        let total: u64 = many.await.unwrap().iter().sum();
        (
            sum,
            total,
            failing.await.unwrap_err().kind(),
            stopped.await.unwrap_err().kind(),
        )
    });
    assert_eq!(sum, (0..2_000u64).map(|i| i * i).sum::<u64>());
    assert_eq!(total, 328_350);
    assert_eq!((fail, cancel), (ErrorKind::Panicked, ErrorKind::Cancelled));
}

/// A call's own time limit: on a pool without one, the task passing it is
/// stopped (`TimeLimit`, naming the call's limit) and the pool goes on;
/// beside a pool-wide limit, a call's longer limit lets its task finish
/// and a call's shorter one stops it.
#[test]
fn per_call_time_limits() {
    let _w = watchdog("per_call_limits");
    let pool = Pool::new(1).unwrap();
    let e = pool
        .task_timeout(Duration::from_millis(50))
        .apply_async(sleep_ms, 600_000)
        .unwrap()
        .get()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimeLimit);
    assert!(e.to_string().contains("50ms"), "{e}");
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let out = pool
        .task_timeout(Duration::from_millis(50))
        .chunksize(1)
        .imap(sleep_ms, vec![1, 600_000, 2])
        .unwrap()
        .map(|r| r.map_err(|e| e.kind()))
        .collect::<Vec<_>>();
    assert_eq!(out, vec![Ok(1), Err(ErrorKind::TimeLimit), Ok(2)]);

    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let longer = pool
        .task_timeout(Duration::from_secs(60))
        .apply_async(sleep_ms, 200)
        .unwrap();
    assert_eq!(longer.get().unwrap(), 200);
    let e = pool.apply(sleep_ms, 600_000).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimeLimit);
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let e = pool
        .task_timeout(Duration::from_millis(50))
        .map(sleep_ms, vec![600_000])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimeLimit);
}
