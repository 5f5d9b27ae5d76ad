//! The pool from async code (feature `async`), under tokio and smol:
//! awaited results and `imap` / `imap_unordered` as streams, with each
//! item's failure its own and a dropped stream cancelling what it did not
//! deliver.
#![cfg(feature = "async")]

use multiproc::{ErrorKind, Pool};
use smol::stream::StreamExt;

multiproc::test_support!();

mod common;
use common::watchdog;

fn square(x: u64) -> u64 {
    x * x
}

fn fail_on_7(x: u64) -> u64 {
    assert_ne!(x, 7, "seven");
    x
}

fn sleep_forever(_: u64) -> u64 {
    loop {
        std::thread::park();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_awaits_ten_thousand_results() {
    let _w = watchdog("tokio await 10k");
    let pool = Pool::new(2).unwrap();
    let results: Vec<_> = (0..10_000u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    // Half awaited in spawned tasks, half here: any task may be woken.
    let mut rest = results;
    let theirs = rest.split_off(5_000);
    let spawned = tokio::spawn(async move {
        let mut sum = 0u64;
        for r in theirs {
            sum += r.await.unwrap();
        }
        sum
    });
    let mut sum = 0u64;
    for r in rest {
        sum += r.await.unwrap();
    }
    sum += spawned.await.unwrap();
    assert_eq!(sum, (0..10_000u64).map(square).sum::<u64>());
}

#[test]
fn smol_awaits_ten_thousand_results() {
    let _w = watchdog("smol await 10k");
    let pool = Pool::new(2).unwrap();
    let results: Vec<_> = (0..10_000u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    let sum = smol::block_on(async {
        let mut sum = 0u64;
        for r in results {
            sum += r.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, (0..10_000u64).map(square).sum::<u64>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_streams_imap_in_order() {
    let _w = watchdog("tokio imap stream");
    let pool = Pool::new(2).unwrap();
    let mut results = pool.imap(square, 0..20_000u64).unwrap().into_stream();
    let mut got = Vec::new();
    while let Some(r) = results.next().await {
        got.push(r.unwrap());
    }
    assert_eq!(got, (0..20_000u64).map(square).collect::<Vec<_>>());
}

#[test]
fn smol_streams_imap_unordered_with_a_failure_of_its_own() {
    let _w = watchdog("smol imap_unordered stream");
    let pool = Pool::new(2).unwrap();
    let (mut ok, failed) = smol::block_on(async {
        let mut results = pool
            .chunksize(1)
            .imap_unordered(fail_on_7, 0..50u64)
            .unwrap()
            .into_stream();
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        while let Some(r) = results.next().await {
            match r {
                Ok(v) => ok.push(v),
                Err(e) => failed.push((e.kind(), e.to_string())),
            }
        }
        (ok, failed)
    });
    ok.sort_unstable();
    assert_eq!(ok, (0..50u64).filter(|&x| x != 7).collect::<Vec<_>>());
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, ErrorKind::Panicked);
    assert!(failed[0].1.contains("seven"), "{}", failed[0].1);
}

/// An `imap` iterated for a while goes on as a stream; a stream dropped
/// with tasks running in the workers cancels them: the pool is free for
/// new work at once (the workers under the cancelled tasks are replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_cancels_what_it_did_not_deliver() {
    let _w = watchdog("dropped stream");
    let pool = Pool::new(2).unwrap();
    {
        let mut results = pool.chunksize(1).imap(square, 0..10u64).unwrap();
        assert_eq!(results.next().unwrap().unwrap(), 0);
        let rest: Vec<u64> = results.into_stream().map(|r| r.unwrap()).collect().await;
        assert_eq!(rest, (1..10u64).map(square).collect::<Vec<_>>());
    }
    {
        let mut stuck = pool
            .chunksize(1)
            .imap(sleep_forever, 0..4u64)
            .unwrap()
            .into_stream();
        // Nothing can come: the first poll sends the tasks and is pending.
        let polled = tokio::time::timeout(std::time::Duration::from_millis(20), stuck.next()).await;
        assert!(polled.is_err());
    }
    let r = pool.apply_async(square, 9).unwrap();
    assert_eq!(r.await.unwrap(), 81);
}

/// The program side of the Ctrl-C tests below: run as a copy of this test
/// binary in its own process group, with `POOL_ASYNC_SIGINT_ROLE` set; six
/// results that never come are awaited from tokio tasks, so no thread
/// waits inside the pool when Ctrl-C comes. Does nothing otherwise.
/// Says which worker runs it, then never ends.
fn report_then_sleep(q: multiproc::Queue<u32>) -> u64 {
    q.put(std::process::id()).unwrap();
    loop {
        std::thread::park();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_under_awaiting_tasks_fails_only_its_own() {
    let _w = watchdog("SIGKILL under awaiters");
    let pool = Pool::new(2).unwrap();
    let q: multiproc::Queue<u32> = multiproc::Queue::new().unwrap();
    let doomed = pool.apply_async(report_then_sleep, q.clone()).unwrap();
    let others: Vec<_> = (0..200u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    // Awaited from spawned tasks, all in flight when the worker dies.
    let doomed = tokio::spawn(async move { doomed.await });
    let others = tokio::spawn(async move {
        let mut sum = 0;
        for r in others {
            sum += r.await.unwrap();
        }
        sum
    });
    let pid = tokio::task::spawn_blocking(move || q.get().unwrap())
        .await
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let err = doomed.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost, "{err}");
    assert_eq!(others.await.unwrap(), (0..200u64).map(square).sum::<u64>());
    // The pool replaced the worker and goes on.
    assert_eq!(pool.apply_async(square, 9).unwrap().await.unwrap(), 81);
    assert_eq!(pool.stats().worker_restarts, 1);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn async_sigint_role() {
    let Ok(mode) = std::env::var("POOL_ASYNC_SIGINT_ROLE") else {
        return;
    };
    // As in tests/pool.rs: a background start may inherit SIGINT ignored.
    #[allow(unsafe_code)]
    // SAFETY: setting the default disposition installs no code.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if mode == "handled" {
        signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone()).unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = Pool::new(2).unwrap();
        let awaiting: Vec<_> = (0..6u64)
            .map(|i| {
                let r = pool.apply_async(sleep_forever, i).unwrap();
                tokio::spawn(async move { r.await })
            })
            .collect();
        let tick = std::time::Duration::from_millis(5);
        while pool.stats().tasks_running < 2 {
            tokio::time::sleep(tick).await;
        }
        println!("ready");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        // The program's own reaction to Ctrl-C (its handler set the flag).
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(tick).await;
        }
        pool.terminate();
        for task in awaiting {
            let e = task.await.unwrap().unwrap_err();
            println!("awaited: {:?}", e.kind());
        }
        println!("clean exit");
    });
}

/// Runs `async_sigint_role` in `mode`, presses Ctrl-C on its process group
/// once its workers run, and returns its exit status and output, after
/// checking that no process of the group survives.
fn interrupt_async_role(mode: &str) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "async_sigint_role",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("POOL_ASYNC_SIGINT_ROLE", mode)
        .process_group(0)
        .stdout(std::process::Stdio::piped())
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
    // Every process of the group goes: the workers die with their parent
    // (or were terminated by it), the fork server when its parent is gone.
    let t0 = std::time::Instant::now();
    while rustix::process::test_kill_process_group(pgid).is_ok() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "processes of the interrupted program survive: {seen}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    (status, seen)
}

/// Ctrl-C while only async tasks await the pool: the program ends by
/// SIGINT (the default), and its workers and fork server go with it.
#[test]
fn ctrl_c_with_awaiters_in_flight_leaves_no_orphan() {
    let _w = watchdog("ctrl-c with awaiters");
    let (status, out) = interrupt_async_role("default");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGINT), "{out}");
}

/// A program that handles Ctrl-C itself and terminates the pool: every
/// awaiting task gets `PoolClosed` (none hangs) and the program exits
/// normally, leaving no process behind.
#[test]
fn ctrl_c_handled_by_the_program_wakes_every_awaiter() {
    let _w = watchdog("ctrl-c handled with awaiters");
    let (status, out) = interrupt_async_role("handled");
    assert!(status.success(), "{out}");
    assert_eq!(out.matches("awaited: PoolClosed").count(), 6, "{out}");
    assert!(out.contains("clean exit"), "{out}");
}
