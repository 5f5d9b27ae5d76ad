//! Where workers' time goes (`PoolBuilder::insights`, `Pool::insights`)
//! and the progress callback (`PoolBuilder::on_progress`), under each
//! start method.
//!
//! The harness is `tests/isolated` (a process per test and start method,
//! a watchdog each, no child or zombie left behind).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::pool::ProgressUpdate;
use multiproc::{Pool, StartMethod};

mod isolated;

const TESTS: isolated::Tests = &[
    (
        "timed_workers_account_for_their_tasks",
        timed_workers_account_for_their_tasks,
        true,
    ),
    (
        "untimed_workers_still_count",
        untimed_workers_still_count,
        true,
    ),
    (
        "a_dead_worker_is_summed_among_the_retired",
        a_dead_worker_is_summed_among_the_retired,
        true,
    ),
    (
        "progress_callback_sees_the_call_through",
        progress_callback_sees_the_call_through,
        true,
    ),
];

fn main() {
    isolated::main("insights", TESTS);
}

/// Keeps its worker busy for at least a millisecond.
fn busy(x: u64) -> u64 {
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1) {
        std::hint::spin_loop();
    }
    x
}

fn timed_workers_account_for_their_tasks(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .insights(true)
        .build()
        .unwrap();
    assert_eq!(pool.chunksize(1).map(busy, 0..20).unwrap().len(), 20);
    let insights = pool.insights();
    assert!(insights.timed);
    assert_eq!(insights.workers.len(), 2);
    let total = insights.total();
    assert_eq!(total.tasks, 20);
    // Each task spun for a millisecond in the task function.
    assert!(total.working >= Duration::from_millis(20), "{insights}");
    for w in &insights.workers {
        assert!(w.name.starts_with("PoolWorker-"), "{w:?}");
        assert!(w.pid > 0);
        assert!(w.start_up > Duration::ZERO, "{w:?}");
        // It waited for its first task at least.
        assert!(w.waiting > Duration::ZERO, "{w:?}");
    }
    let table = insights.to_string();
    assert!(
        table.contains("total") && table.contains("working"),
        "{table}"
    );
    assert!(
        insights.summary().contains("20 tasks"),
        "{}",
        insights.summary()
    );
}

fn untimed_workers_still_count(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    assert_eq!(pool.map(busy, 0..10).unwrap().len(), 10);
    let insights = pool.insights();
    assert!(!insights.timed);
    let total = insights.total();
    assert_eq!(total.tasks, 10);
    assert_eq!(total.working, Duration::ZERO);
    assert_eq!(total.waiting, Duration::ZERO);
    assert!(
        insights.workers.iter().all(|w| w.start_up > Duration::ZERO),
        "{insights}"
    );
    assert!(!insights.summary().contains("working"));
}

fn die_on_3(x: u64) -> u64 {
    if x == 3 {
        std::process::abort();
    }
    x
}

fn a_dead_worker_is_summed_among_the_retired(method: StartMethod) {
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .insights(true)
        .build()
        .unwrap();
    let results: Vec<_> = pool.chunksize(1).imap(die_on_3, 0..6).unwrap().collect();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    let insights = pool.insights();
    let (n, retired) = insights.retired.clone().expect("the dead worker");
    assert_eq!(n, 1);
    assert_eq!(retired.name, "retired (1)");
    // Items 0, 1 and 2 finished in the worker that died under 3; its
    // replacement ran 4 and 5, and again those of 0..3 whose results had
    // not left the dead worker yet.
    assert_eq!(retired.tasks, 3, "{insights}");
    let live = insights.workers[0].tasks;
    assert!((2..=5).contains(&live), "{insights}");
    assert_eq!(insights.total().tasks, 3 + live);
}

fn progress_callback_sees_the_call_through(method: StartMethod) {
    let updates: Arc<Mutex<Vec<ProgressUpdate>>> = Arc::default();
    let seen = updates.clone();
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .on_progress(move |u| seen.lock().unwrap().push(u.clone()))
        .build()
        .unwrap();
    assert_eq!(pool.chunksize(1).map(busy, 0..50).unwrap().len(), 50);
    let got = updates.lock().unwrap().clone();
    let last = got.last().expect("at least the final update");
    assert!(last.finished);
    assert_eq!((last.done, last.total), (50, Some(50)));
    assert_eq!(got.iter().filter(|u| u.finished).count(), 1, "{got:?}");
    assert!(got.windows(2).all(|w| w[0].done <= w[1].done), "{got:?}");
    // An imap of unknown length: no total.
    updates.lock().unwrap().clear();
    let n = pool.imap(busy, (0..10).filter(|_| true)).unwrap().count();
    assert_eq!(n, 10);
    let got = updates.lock().unwrap().clone();
    assert_eq!(
        got.last().map(|u| (u.done, u.total, u.finished)),
        Some((10, None, true))
    );
}
