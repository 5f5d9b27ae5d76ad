//! Managers under every start method (the server's and the children's):
//! proxies shared with children, exact atomic increments, a lock holder
//! SIGKILLed while it holds a manager lock, a queue between processes.
//!
//! `harness = false`: see `tests/suite/mod.rs` (the supervisor is the
//! per-test watchdog; fork needs a single-threaded suite process).

mod suite;

use multiproc::manager::{DictProxy, EventProxy, ListProxy, LockProxy, QueueProxy};
use multiproc::sync::AcquireError;
use multiproc::{ErrorKind, Manager, Process, StartMethod};

fn main() {
    suite::main(
        "manager_methods",
        &[
            (
                "dict_and_list_shared_with_a_child",
                dict_and_list_shared_with_a_child,
            ),
            (
                "four_processes_increment_exactly",
                four_processes_increment_exactly,
            ),
            (
                "lock_holder_killed_owner_died",
                lock_holder_killed_owner_died,
            ),
            ("queue_between_processes", queue_between_processes),
        ],
        |_| false,
    );
}

fn manager(method: StartMethod) -> Manager {
    Manager::builder().start_method(method).start().unwrap()
}

fn seed_func(dit: DictProxy<i32, i32>, lst: ListProxy<i32>) {
    dit.insert(1, 1).unwrap();
    lst.reverse().unwrap();
}

fn dict_and_list_shared_with_a_child(method: StartMethod) {
    let m = manager(method);
    let dit = m.dict::<i32, i32>().unwrap();
    let lst = m.list_from(5..10).unwrap();
    // The parent talks to the manager before the child starts, so a fork
    // child inherits the parent's connection (and must not use it).
    assert_eq!(dit.len().unwrap(), 0);
    Process::new(seed_func, (dit.clone(), lst.clone()))
        .start_method(method)
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(dit.items().unwrap(), vec![(1, 1)]);
    assert_eq!(lst.to_vec().unwrap(), vec![9, 8, 7, 6, 5]);
    m.shutdown().unwrap();
}

fn increment(counts: DictProxy<String, u64>) {
    for _ in 0..1000 {
        counts
            .modify("n".to_string(), |n| n.unwrap_or(0) + 1)
            .unwrap();
    }
}

fn four_processes_increment_exactly(method: StartMethod) {
    let m = manager(method);
    let counts = m.dict::<String, u64>().unwrap();
    counts.insert("n".into(), 0).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Process::new(increment, counts.clone())
                .start_method(method)
                .start()
                .unwrap()
        })
        .collect();
    for c in children {
        c.join().unwrap();
    }
    assert_eq!(counts.get(&"n".to_string()).unwrap(), Some(4000));
}

fn hold_and_hang(lock: LockProxy, ready: EventProxy) {
    lock.acquire().unwrap().leak();
    ready.set().unwrap();
    loop {
        std::thread::park();
    }
}

fn lock_holder_killed_owner_died(method: StartMethod) {
    let m = manager(method);
    let lock = m.lock().unwrap();
    let ready = m.event().unwrap();
    let child = Process::new(hold_and_hang, (lock.clone(), ready.clone()))
        .start_method(method)
        .start()
        .unwrap();
    ready.wait().unwrap();
    assert!(matches!(lock.try_acquire(), Err(AcquireError::WouldBlock)));
    child.kill().unwrap();
    assert_eq!(child.join().unwrap_err().kind(), ErrorKind::Killed);
    // Told, and told again (sticky) until into_guard.
    match lock.acquire() {
        Err(AcquireError::OwnerDied(died)) => drop(died),
        other => panic!("{other:?}"),
    }
    let guard = match lock.acquire_timeout(std::time::Duration::MAX) {
        Err(AcquireError::OwnerDied(died)) => died.into_guard(),
        other => panic!("{other:?}"),
    };
    drop(guard);
    drop(lock.try_acquire().unwrap());
}

fn produce(q: QueueProxy<u64>) {
    for i in 0..100 {
        q.put(i).unwrap();
    }
}

fn queue_between_processes(method: StartMethod) {
    let m = manager(method);
    let q = m.queue::<u64>(4).unwrap();
    let child = Process::new(produce, q.clone())
        .start_method(method)
        .start()
        .unwrap();
    let got: Vec<u64> = (0..100).map(|_| q.get().unwrap()).collect();
    child.join().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}
