//! The `async` forms (feature `async`) under tokio and smol: each awaits
//! something another process does, and a dropped future leaves the object
//! usable by a sync caller.
#![cfg(feature = "async")]

use std::time::Duration;

use multiproc::Process;
use multiproc::queue::Queue;
use multiproc::sync::{Event, Lock};

multiproc::test_support!();

mod common;
use common::watchdog;

/// Generous: only a hang would reach it.
const LONG: Duration = Duration::from_secs(30);

fn square(x: u64) -> u64 {
    x * x
}

fn fill(q: Queue<u32>, n: u32) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn set_it(ev: Event) {
    ev.set();
}

/// Holds `lock` from `held` being set until `release` is.
fn hold(lock: Lock, held: Event, release: Event) {
    let guard = lock.acquire().unwrap();
    held.set();
    release.wait_timeout(LONG).unwrap();
    drop(guard);
}

fn drain(q: Queue<u32>, n: u32) -> Vec<u32> {
    (0..n).map(|_| q.get_timeout(LONG).unwrap()).collect()
}

fn put_one(q: Queue<u32>, value: u32) {
    q.put(value).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_joins_a_child() {
    let _w = watchdog("tokio join");
    let p = Process::new(square, 12).start().unwrap();
    assert_eq!(p.join_async().await.unwrap(), 144);
}

#[test]
fn smol_joins_a_child() {
    let _w = watchdog("smol join");
    let p = Process::new(square, 7).start().unwrap();
    assert_eq!(smol::block_on(p.join_async()).unwrap(), 49);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_drains_a_queue_filled_by_a_child() {
    let _w = watchdog("tokio queue");
    let q: Queue<u32> = Queue::with_maxsize(4).unwrap();
    let child = Process::new(fill, (q.clone(), 100)).start().unwrap();
    // The child outruns a maxsize of 4 only while we get: the gets await.
    let mut got = Vec::new();
    for _ in 0..100 {
        got.push(q.get_async().await.unwrap());
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    child.join_async().await.unwrap();
}

#[test]
fn smol_puts_into_a_bounded_queue_a_child_drains() {
    let _w = watchdog("smol put");
    let q: Queue<u32> = Queue::with_maxsize(2).unwrap();
    let got = smol::block_on(async {
        let child = Process::new(drain, (q.clone(), 50)).start().unwrap();
        // A maxsize of 2: the puts await the child's gets.
        for i in 0..50 {
            q.put_async(i).await.unwrap();
        }
        child.join_async().await.unwrap()
    });
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    assert!(q.empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_acquires_a_lock_another_process_releases() {
    let _w = watchdog("tokio lock");
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let release = Event::new().unwrap();
    let child = Process::new(hold, (lock.clone(), held.clone(), release.clone()))
        .start()
        .unwrap();
    held.wait_async().await;
    assert!(lock.is_locked());
    // The first poll of acquire_async finds the lock held; then it is let go.
    let (guard, ()) = tokio::join!(lock.acquire_async(), async { release.set() });
    let guard = guard.unwrap();
    assert_eq!(lock.holder(), Some(std::process::id()));
    drop(guard);
    child.join_async().await.unwrap();
    assert!(!lock.is_locked());
}

#[test]
fn smol_waits_for_an_event_a_child_sets() {
    let _w = watchdog("smol event");
    let ev = Event::new().unwrap();
    smol::block_on(async {
        let child = Process::new(set_it, ev.clone()).start().unwrap();
        ev.wait_async().await;
        child.join_async().await.unwrap();
    });
    assert!(ev.is_set());
}

#[test]
fn a_dropped_acquire_leaves_the_lock_to_sync_callers() {
    let _w = watchdog("dropped acquire");
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let release = Event::new().unwrap();
    let child = Process::new(hold, (lock.clone(), held.clone(), release.clone()))
        .start()
        .unwrap();
    held.wait_timeout(LONG).unwrap();
    smol::block_on(async {
        let mut fut = Box::pin(lock.acquire_async());
        assert!(smol::future::poll_once(&mut fut).await.is_none());
        drop(fut);
    });
    release.set();
    let guard = lock.acquire_timeout(LONG).unwrap();
    drop(guard);
    child.join().unwrap();
    assert!(!lock.is_locked());
}

#[test]
fn a_dropped_get_takes_nothing() {
    let _w = watchdog("dropped get");
    let q: Queue<u32> = Queue::new().unwrap();
    smol::block_on(async {
        let mut fut = Box::pin(q.get_async());
        assert!(smol::future::poll_once(&mut fut).await.is_none());
        drop(fut);
    });
    let child = Process::new(put_one, (q.clone(), 5)).start().unwrap();
    child.join().unwrap();
    assert_eq!(q.get_timeout(LONG).unwrap(), 5);
    assert!(q.try_get().is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn a_get_future_dropped_by_a_tokio_timeout_takes_nothing() {
    let _w = watchdog("tokio timeout get");
    let q: Queue<u32> = Queue::new().unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(1), q.get_async())
            .await
            .is_err()
    );
    q.put(3).unwrap();
    assert_eq!(q.get_async().await.unwrap(), 3);
}
