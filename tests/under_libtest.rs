//! multiproc inside an ordinary `cargo test` binary: `test_support!()`
//! instead of `init()`, tests on many threads at once, and children that
//! outlive the thread that started them.

use std::io::{Read, Write};

use multiproc::{ErrorKind, Fd, Process, StartMethod};

multiproc::test_support!();

mod common;
use common::watchdog;

fn square(x: u64) -> u64 {
    x * x
}

fn wait_for_go(fd: Fd) -> String {
    let mut text = String::new();
    std::fs::File::from(fd.into_owned())
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[test]
fn spawn_and_forkserver_from_many_threads_at_once() {
    let _w = watchdog("many threads");
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                let method = if t % 2 == 0 {
                    StartMethod::Forkserver
                } else {
                    StartMethod::Spawn
                };
                (0..10u64)
                    .map(|i| {
                        let p = Process::new(square, t * 100 + i)
                            .start_method(method)
                            .start()
                            .unwrap();
                        p.join().unwrap()
                    })
                    .sum::<u64>()
            })
        })
        .collect();
    for (t, handle) in threads.into_iter().enumerate() {
        let expected: u64 = (0..10u64).map(|i| (t as u64 * 100 + i).pow(2)).sum();
        assert_eq!(handle.join().unwrap(), expected);
    }
}

#[test]
fn a_child_outlives_the_thread_that_started_it() {
    // PR_SET_PDEATHSIG fires when the parent *thread* exits; multiproc starts
    // children from a thread that lasts, so this child must survive.
    let _w = watchdog("outlives thread");
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        let (r, mut w) = std::io::pipe().unwrap();
        let fd = Fd::new(r.into());
        let p = std::thread::spawn(move || {
            Process::new(wait_for_go, fd)
                .start_method(method)
                .start()
                .unwrap()
        })
        .join()
        .unwrap();
        // The starting thread is gone; the child must still be running.
        assert!(p.is_alive());
        w.write_all(b"still here").unwrap();
        drop(w);
        assert_eq!(p.join().unwrap(), "still here");
    }
}

#[test]
fn fork_is_refused_while_the_harness_has_threads() {
    let _w = watchdog("fork refused");
    let err = Process::new(square, 3)
        .start_method(StartMethod::Fork)
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ForkWithThreads);
    assert!(err.to_string().contains("allow_fork_with_threads"), "{err}");
}

#[test]
fn panics_come_back_from_test_children() {
    let _w = watchdog("panic");
    fn fails(msg: String) {
        panic!("{msg}");
    }
    let err = Process::new(fails, "from a test".to_string())
        .start()
        .unwrap()
        .join()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert_eq!(err.panic_message(), Some("from a test"));
}
