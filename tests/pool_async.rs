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
