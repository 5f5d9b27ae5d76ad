//! Locks, semaphores, events, conditions and barriers across processes,
//! under every start method — including a lock holder SIGKILLed while it
//! holds the lock.
//!
//! `harness = false`: see `tests/suite/mod.rs` (the supervisor is the
//! per-test watchdog; fork needs a single-threaded suite process).

mod suite;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::shared::{RawArray, RawValue};
use multiproc::sync::{
    AcquireError, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore,
};
use multiproc::{ErrorKind, Process, Signal, StartMethod};

fn main() {
    suite::main(
        "sync",
        &[
            ("lock_excludes_four_processes", lock_excludes_four_processes),
            (
                "lock_released_by_another_process",
                lock_released_by_another_process,
            ),
            (
                "semaphore_admits_at_most_two_of_six",
                semaphore_admits_at_most_two_of_six,
            ),
            (
                "barrier_three_processes_rounds",
                barrier_three_processes_rounds,
            ),
            (
                "barrier_timeout_breaks_it_for_all",
                barrier_timeout_breaks_it_for_all,
            ),
            ("event_wait_with_timeout", event_wait_with_timeout),
            ("condition_producer_consumer", condition_producer_consumer),
            (
                "lock_holder_killed_owner_died",
                lock_holder_killed_owner_died,
            ),
            (
                "rlock_holder_killed_owner_died",
                rlock_holder_killed_owner_died,
            ),
            (
                "condition_holder_killed_wakes_the_waiter",
                condition_holder_killed_wakes_the_waiter,
            ),
            (
                "bounded_semaphore_over_release_in_a_child",
                bounded_semaphore_over_release_in_a_child,
            ),
        ],
        |_| false,
    );
}

const LONG: Duration = Duration::from_secs(30);

// ---- Lock ----------------------------------------------------------------

/// A deliberately non-atomic read-modify-write under the lock: any overlap
/// of two holders loses an update.
fn locked_increments(lock: Lock, counter: RawValue<AtomicU64>, n: u64) {
    for _ in 0..n {
        let _held = lock.acquire().unwrap();
        let v = counter.load(Ordering::Relaxed);
        std::hint::spin_loop();
        counter.store(v + 1, Ordering::Relaxed);
    }
}

fn lock_excludes_four_processes(_: StartMethod) {
    let lock = Lock::new().unwrap();
    let counter = RawValue::<AtomicU64>::new(0).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Process::new(locked_increments, (lock.clone(), counter.clone(), 20_000))
                .start()
                .unwrap()
        })
        .collect();
    for c in children {
        c.join().unwrap();
    }
    assert_eq!(counter.load(Ordering::Relaxed), 80_000);
    assert!(!lock.is_locked());
}

fn release_it(lock: Lock) -> (bool, String) {
    let first = lock.release().is_ok();
    let second = format!("{:?}", lock.release().unwrap_err().kind());
    (first, second)
}

fn lock_released_by_another_process(_: StartMethod) {
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap().leak();
    assert_eq!(lock.holder(), Some(std::process::id()));
    let (released, again) = Process::new(release_it, lock.clone())
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert!(released, "Python's acquire here, release there");
    assert_eq!(again, "NotAcquired");
    assert!(lock.try_acquire().is_ok());
}

// ---- Semaphore -----------------------------------------------------------

/// counters[0]: processes inside now; counters[1]: the most ever inside.
fn crowd(sem: Semaphore, counters: RawArray<AtomicU32>) {
    for _ in 0..300 {
        let _permit = sem.acquire();
        let inside = counters[0].fetch_add(1, Ordering::SeqCst) + 1;
        counters[1].fetch_max(inside, Ordering::SeqCst);
        for _ in 0..200 {
            std::hint::spin_loop();
        }
        counters[0].fetch_sub(1, Ordering::SeqCst);
    }
}

fn semaphore_admits_at_most_two_of_six(_: StartMethod) {
    let sem = Semaphore::new(2).unwrap();
    let counters = RawArray::<AtomicU32>::new(2).unwrap();
    let children: Vec<_> = (0..6)
        .map(|_| {
            Process::new(crowd, (sem.clone(), counters.clone()))
                .start()
                .unwrap()
        })
        .collect();
    for c in children {
        c.join().unwrap();
    }
    let most = counters[1].load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&most),
        "{most} processes were inside at once"
    );
    assert_eq!(counters[0].load(Ordering::SeqCst), 0);
    assert_eq!(sem.get_value(), 2, "every permit came back");
}

// ---- Barrier -------------------------------------------------------------

const ROUNDS: u32 = 20;

/// Each round: count an arrival, meet, and check that all three had
/// arrived. Returns the arrival indices.
fn meet(barrier: Barrier, arrivals: RawValue<AtomicU32>) -> Vec<u32> {
    let mut indices = Vec::new();
    for round in 0..ROUNDS {
        arrivals.fetch_add(1, Ordering::SeqCst);
        indices.push(barrier.wait().unwrap());
        assert!(arrivals.load(Ordering::SeqCst) >= 3 * (round + 1));
    }
    indices
}

fn barrier_three_processes_rounds(_: StartMethod) {
    let barrier = Barrier::new(3).unwrap();
    let arrivals = RawValue::<AtomicU32>::new(0).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Process::new(meet, (barrier.clone(), arrivals.clone()))
                .start()
                .unwrap()
        })
        .collect();
    let mine = meet(barrier.clone(), arrivals.clone());
    let theirs: Vec<Vec<u32>> = children.into_iter().map(|c| c.join().unwrap()).collect();
    for round in 0..ROUNDS as usize {
        let mut got = [mine[round], theirs[0][round], theirs[1][round]];
        got.sort();
        assert_eq!(got, [0, 1, 2], "round {round}");
    }
    assert_eq!(arrivals.load(Ordering::SeqCst), 3 * ROUNDS);
    assert!(!barrier.broken());
    assert_eq!(barrier.parties(), 3);
}

fn wait_on(barrier: Barrier) -> String {
    format!("{:?}", barrier.wait().unwrap_err().kind())
}

fn barrier_timeout_breaks_it_for_all(_: StartMethod) {
    // Three parties, only two ever come: the parent's timeout must break
    // the barrier, and the child (with no timeout) must not hang.
    let barrier = Barrier::new(3).unwrap();
    let child = Process::new(wait_on, barrier.clone()).start().unwrap();
    let err = barrier
        .wait_timeout(Duration::from_millis(200))
        .unwrap_err();
    // The one whose time ran out is told so; the others, that it broke.
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(child.join().unwrap(), "BrokenBarrier");
    assert!(barrier.broken());
    assert_eq!(barrier.wait().unwrap_err().kind(), ErrorKind::BrokenBarrier);
    barrier.reset();
    assert!(!barrier.broken());
    // Usable again, with the timeout carried in the handle.
    let quick = Barrier::new(1)
        .unwrap()
        .with_timeout(Duration::from_millis(10));
    assert_eq!(quick.wait().unwrap(), 0);
}

// ---- Event ---------------------------------------------------------------

/// How a wait ended: "Ok" or the error's kind.
fn outcome(r: multiproc::Result<()>) -> String {
    match r {
        Ok(()) => "Ok".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

fn event_child(never: Event, started: Event, go: Event) -> (String, String) {
    let timed_out = outcome(never.wait_timeout(Duration::from_millis(30)));
    started.set();
    let got = outcome(go.wait_timeout(LONG));
    (timed_out, got)
}

fn event_wait_with_timeout(_: StartMethod) {
    let (never, started, go) = (
        Event::new().unwrap(),
        Event::new().unwrap(),
        Event::new().unwrap(),
    );
    let child = Process::new(event_child, (never.clone(), started.clone(), go.clone()))
        .start()
        .unwrap();
    started.wait_timeout(LONG).expect("the child set `started`");
    go.set();
    assert_eq!(
        child.join().unwrap(),
        ("Timeout".to_string(), "Ok".to_string())
    );
    assert!(!never.is_set());
    go.clear();
    assert_eq!(
        outcome(go.wait_timeout(Duration::from_millis(1))),
        "Timeout"
    );
    assert_eq!(
        outcome(go.wait_deadline(Instant::now())),
        "Timeout",
        "a deadline already passed"
    );
    go.set();
    go.wait_timeout(Duration::MAX).unwrap();
    go.wait_deadline(Instant::now()).unwrap();
    go.wait();
}

// ---- Condition -----------------------------------------------------------

const ITEMS: u64 = 3_000;
const SLOTS: u64 = 4;

/// A bounded buffer in a RawArray: [head, tail, slot 0..SLOTS].
fn produce(cond: Condition, buf: RawArray<AtomicU64>) {
    for item in 1..=ITEMS {
        let mut g = cond.acquire().unwrap();
        let has_room = || buf[1].load(Ordering::Relaxed) - buf[0].load(Ordering::Relaxed) < SLOTS;
        g.wait_for(has_room).unwrap();
        let tail = buf[1].load(Ordering::Relaxed);
        buf[2 + (tail % SLOTS) as usize].store(item, Ordering::Relaxed);
        buf[1].store(tail + 1, Ordering::Relaxed);
        g.notify_all();
    }
}

fn condition_producer_consumer(_: StartMethod) {
    let cond = Condition::new().unwrap();
    let buf = RawArray::<AtomicU64>::new(2 + SLOTS as usize).unwrap();
    let producer = Process::new(produce, (cond.clone(), buf.clone()))
        .start()
        .unwrap();
    for expected in 1..=ITEMS {
        let mut g = cond.acquire().unwrap();
        let has_item = || buf[1].load(Ordering::Relaxed) > buf[0].load(Ordering::Relaxed);
        g.wait_for(has_item).unwrap();
        let head = buf[0].load(Ordering::Relaxed);
        assert_eq!(
            buf[2 + (head % SLOTS) as usize].load(Ordering::Relaxed),
            expected
        );
        buf[0].store(head + 1, Ordering::Relaxed);
        g.notify(1);
    }
    producer.join().unwrap();
    let mut g = cond.acquire().unwrap();
    assert!(
        matches!(
            g.wait_timeout(Duration::from_millis(5)),
            Err(AcquireError::Timeout)
        ),
        "nobody notifies"
    );
}

// ---- A holder that dies --------------------------------------------------

fn hold_lock(lock: Lock, holding: Event) {
    let _held = lock.acquire().unwrap();
    holding.set();
    suite::park_forever()
}

/// Waits for the lock; what it got.
fn wait_for_lock(lock: Lock) -> String {
    match lock.acquire() {
        Ok(_) => "clean".into(),
        // `?`-style conversion: releases the lock, the indication stays.
        Err(died) => format!("{:?}", multiproc::Error::from(died).kind()),
    }
}

fn lock_holder_killed_owner_died(_: StartMethod) {
    let lock = Lock::new().unwrap();
    let holding = Event::new().unwrap();
    let holder = Process::new(hold_lock, (lock.clone(), holding.clone()))
        .start()
        .unwrap();
    holding.wait_timeout(LONG).unwrap();
    assert_eq!(lock.holder(), Some(holder.pid()));
    // A second process queues up behind the doomed holder.
    let waiter = Process::new(wait_for_lock, lock.clone()).start().unwrap();
    holder.kill().unwrap();
    assert_eq!(holder.join().unwrap_err().signal(), Some(Signal::KILL));
    let t0 = Instant::now();
    assert_eq!(waiter.join().unwrap(), "OwnerDied", "the waiter was told");
    println!(
        "  (waiter got the dead holder's lock {:?} after the kill was reaped)",
        t0.elapsed()
    );
    // Sticky until acknowledged: the parent is told too.
    let died = match lock.acquire_timeout(LONG) {
        Err(AcquireError::OwnerDied(died)) => died,
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    let guard = died.into_guard(); // "repaired"
    drop(guard);
    assert!(lock.acquire().is_ok(), "acknowledged: clean from now on");
}

fn hold_rlock_twice(lock: RLock, holding: Event) {
    let _a = lock.acquire().unwrap();
    let _b = lock.acquire().unwrap();
    assert_eq!(lock.count(), 2);
    holding.set();
    suite::park_forever()
}

fn rlock_holder_killed_owner_died(_: StartMethod) {
    let lock = RLock::new().unwrap();
    let holding = Event::new().unwrap();
    let holder = Process::new(hold_rlock_twice, (lock.clone(), holding.clone()))
        .start()
        .unwrap();
    holding.wait_timeout(LONG).unwrap();
    assert!(!lock.is_mine());
    assert!(
        matches!(lock.try_acquire(), Err(AcquireError::WouldBlock)),
        "held by a live process"
    );
    holder.kill().unwrap();
    let _ = holder.join();
    let t0 = Instant::now();
    let guard = match lock.acquire_timeout(LONG) {
        Err(AcquireError::OwnerDied(died)) => died.into_guard(),
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    println!(
        "  (took over the dead holder's RLock in {:?})",
        t0.elapsed()
    );
    assert!(lock.is_mine());
    assert_eq!(lock.count(), 1, "the dead holder's recursion is gone");
    let again = lock.acquire().unwrap();
    assert_eq!(lock.count(), 2);
    drop(again);
    drop(guard);
    assert_eq!(lock.count(), 0);
    assert!(lock.acquire().is_ok());
}

/// Waits on the condition; what `wait` reported.
fn wait_on_condition(cond: Condition, waiting: Event) -> String {
    let mut g = cond.acquire().unwrap();
    waiting.set();
    match g.wait_timeout(LONG) {
        Ok(()) => "notified: true".to_string(),
        Err(AcquireError::Timeout) => "notified: false".to_string(),
        Err(AcquireError::OwnerDied(died)) => {
            died.into_guard();
            "OwnerDied".to_string()
        }
        Err(e) => format!("{e}"),
    }
}

fn hold_condition(cond: Condition, holding: Event) {
    let _g = cond.acquire().unwrap();
    holding.set();
    suite::park_forever()
}

fn condition_holder_killed_wakes_the_waiter(_: StartMethod) {
    let cond = Condition::new().unwrap();
    let (waiting, holding) = (Event::new().unwrap(), Event::new().unwrap());
    let waiter = Process::new(wait_on_condition, (cond.clone(), waiting.clone()))
        .start()
        .unwrap();
    waiting.wait_timeout(LONG).unwrap();
    // The waiter released the lock inside wait(); a second process takes
    // it and dies holding it, without notifying.
    let holder = Process::new(hold_condition, (cond.clone(), holding.clone()))
        .start()
        .unwrap();
    holding.wait_timeout(LONG).unwrap();
    holder.kill().unwrap();
    let _ = holder.join();
    // We take the lock from the dead holder, learn it, notify the waiter
    // and release without acknowledging: the waiter re-takes the lock and
    // is told too.
    let died = match cond.acquire_timeout(LONG) {
        Err(AcquireError::OwnerDied(died)) => died,
        other => panic!("expected OwnerDied, got {other:?}"),
    };
    died.get_ref().notify_all();
    drop(died);
    assert_eq!(waiter.join().unwrap(), "OwnerDied");
    // The waiter acknowledged it: clean from now on.
    assert!(cond.acquire().is_ok());
}

fn over_release(sem: BoundedSemaphore) -> (String, u32) {
    let err = sem.release().unwrap_err();
    sem.acquire().leak();
    sem.release().unwrap();
    (format!("{:?}", err.kind()), sem.get_value())
}

fn bounded_semaphore_over_release_in_a_child(_: StartMethod) {
    let sem = BoundedSemaphore::new(2).unwrap();
    let (kind, value) = Process::new(over_release, sem.clone())
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(kind, "NotAcquired");
    assert_eq!(value, 2);
    assert_eq!(sem.get_value(), 2);
}
