//! The pool under each start method: results, a dead worker replaced,
//! recycled workers, termination.
//!
//! This file has its own `main` (`harness = false`): the fork start method
//! needs a single-threaded process, which libtest's thread-per-test runner
//! is not, and a fork pool must fork again to replace a dead worker. `main`
//! runs this binary once per start method (`pool_start_methods suite
//! fork`, ...) and kills it if it passes the watchdog's limit.

use std::process::Command;
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, Pool, Signal, StartMethod};

const WATCHDOG: Duration = Duration::from_secs(120);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    multiproc::init();
    match args.get(1).map(String::as_str) {
        Some("suite") => suite(args[2].parse().expect("a start method")),
        _ if args.iter().any(|a| a == "--list") => {
            if !args.iter().any(|a| a == "--ignored") {
                println!("pool_all_start_methods: test");
            }
        }
        _ => supervise(),
    }
}

fn supervise() {
    let exe = std::env::current_exe().expect("own path");
    let mut failed = Vec::new();
    for method in ["fork", "spawn", "forkserver"] {
        let mut child = Command::new(&exe)
            .args(["suite", method])
            .spawn()
            .expect("start the suite");
        let deadline = Instant::now() + WATCHDOG;
        let ok = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status.success();
            }
            if Instant::now() > deadline {
                eprintln!("watchdog: the {method} pool suite hung; killing it");
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        println!(
            "pool suite under {method}: {}",
            if ok { "ok" } else { "FAILED" }
        );
        if !ok {
            failed.push(method);
        }
    }
    println!(
        "pool_start_methods: {} passed, {} failed",
        3 - failed.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "pool suite failed under {failed:?}");
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

fn suite(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
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

    // Time limits.
    drop(pool);
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .task_timeout(Duration::from_millis(200))
        .maxtasksperchild(1)
        .build()
        .unwrap();
    let err = pool.apply(sleep_ms, 60_000).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let pids = pool.chunksize(1).map(pid, 0..20u64).unwrap();
    let mut distinct = pids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "a fresh worker per task");

    let r = pool.apply_async(sleep_ms, 100).unwrap();
    pool.close();
    pool.join().unwrap();
    assert_eq!(r.get().unwrap(), 100);
    println!("{method}: ok");
}
