//! `connection::wait` over everything a program waits on together: queues
//! and pool results (no descriptor: a futex) beside pipe ends and process
//! sentinels (descriptors), as a Python user passes `q._reader`,
//! `p.sentinel` and connections to one `wait`.

use std::time::Duration;

use multiproc::connection::{self, Waitable};
use multiproc::{Pool, Process, Queue};

multiproc::test_support!();

mod common;
use common::watchdog;

/// A task that runs until it is told to end.
fn until_told(go: Queue<u8>) -> u8 {
    go.get().unwrap() + 1
}

/// A child that puts one message into `q`.
fn put_one(q: Queue<u8>) {
    q.put(7).unwrap();
}

#[test]
fn wait_over_a_queue_a_pool_result_a_pipe_and_a_sentinel() {
    let _w = watchdog("wait over everything");
    let pool = Pool::new(1).unwrap();
    let go: Queue<u8> = Queue::new().unwrap();
    let q: Queue<u8> = Queue::new().unwrap();
    let result = pool.apply_async(until_told, go.clone()).unwrap();
    let (ours, theirs) = connection::pipe::<u8>().unwrap();
    let objects: [&dyn Waitable; 3] = [&q, &result, &theirs];

    // Nothing is ready: the time runs out, with both kinds of objects.
    let none = connection::wait(&objects, Some(Duration::from_millis(20))).unwrap();
    assert!(none.is_empty(), "{none:?}");

    // Another process puts into the queue: its put wakes this wait.
    let child = Process::new(put_one, q.clone()).start().unwrap();
    assert_eq!(connection::wait(&objects, None).unwrap(), vec![0]);
    assert_eq!(q.get().unwrap(), 7);
    // The child ends: its sentinel is ready beside the unfinished result.
    assert_eq!(connection::wait(&[&result, &child], None).unwrap(), vec![1]);
    child.join().unwrap();

    // The task ends: the result is ready, and has its value.
    go.put(41).unwrap();
    assert_eq!(connection::wait(&objects, None).unwrap(), vec![1]);
    assert!(result.done());
    assert_eq!(result.get().unwrap(), 42);

    // A message on the pipe.
    ours.send(&3).unwrap();
    assert_eq!(connection::wait(&[&q, &theirs], None).unwrap(), vec![1]);
    assert_eq!(theirs.recv().unwrap(), 3);

    // A queue shut down is ready: a get returns at once.
    q.shutdown();
    assert_eq!(connection::wait(&[&theirs, &q], None).unwrap(), vec![1]);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn wait_over_queues_and_results_alone_wakes_on_each() {
    let _w = watchdog("wait over futexes alone");
    let pool = Pool::new(2).unwrap();
    let go: Queue<u8> = Queue::new().unwrap();
    let q: Queue<u8> = Queue::new().unwrap();
    let result = pool.apply_async(until_told, go.clone()).unwrap();
    let objects: [&dyn Waitable; 2] = [&q, &result];
    assert!(
        connection::wait(&objects, Some(Duration::from_millis(10)))
            .unwrap()
            .is_empty()
    );
    let child = Process::new(put_one, q.clone()).start().unwrap();
    assert_eq!(connection::wait(&objects, None).unwrap(), vec![0]);
    child.join().unwrap();
    assert_eq!(q.get().unwrap(), 7);
    go.put(1).unwrap();
    assert_eq!(connection::wait(&objects, None).unwrap(), vec![1]);
    assert_eq!(result.get().unwrap(), 2);
    pool.close();
    pool.join().unwrap();
}

fn square(x: u64) -> u64 {
    x * x
}

/// More objects than one `futex_waitv` takes (128): every result is
/// reported once done, and only done ones are reported.
#[test]
fn wait_over_hundreds_of_results_reports_each_when_done() {
    let _w = watchdog("wait over many results");
    let pool = Pool::new(2).unwrap();
    let results: Vec<_> = (0..300u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    let (_keep, idle) = connection::pipe::<u8>().unwrap();
    let mut left: Vec<usize> = (0..results.len()).collect();
    while !left.is_empty() {
        let mut objects: Vec<&dyn Waitable> = vec![&idle];
        objects.extend(left.iter().map(|&i| &results[i] as &dyn Waitable));
        let ready = connection::wait(&objects, None).unwrap();
        assert!(!ready.is_empty());
        assert!(!ready.contains(&0), "the idle pipe is never ready");
        let done: Vec<usize> = ready.iter().map(|&k| left[k - 1]).collect();
        for &i in &done {
            assert!(results[i].done());
            assert_eq!(results[i].try_get().unwrap(), i as u64 * i as u64);
        }
        left.retain(|i| !done.contains(i));
    }
    pool.close();
    pool.join().unwrap();
}
