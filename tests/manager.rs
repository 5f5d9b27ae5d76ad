//! Managers: shared dict, list, set and namespace across processes,
//! registered types, atomic updates, remote use, and faults.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::connection::{Address, Client};
use multiproc::manager::{
    Acquired, BarrierProxy, ConditionProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy,
    LockProxy, Namespace, ObjectProxy, QueueProxy, RLockProxy, SemaphoreProxy, SharedObject,
    ValueProxy,
};
use multiproc::queue::{GetError, PutError};
use multiproc::{ErrorKind, Manager, Process, StartMethod};
use serde::{Deserialize, Serialize};

multiproc::test_support!();

mod common;
use common::watchdog;

fn seed_func(dit: DictProxy<i32, i32>, lst: ListProxy<i32>) {
    dit.insert(1, 1).unwrap();
    lst.reverse().unwrap();
}

#[test]
fn a_child_changes_a_dict_and_a_list_the_parent_sees() {
    let _w = watchdog("seed");
    let manager = Manager::new().unwrap();
    let dit = manager.dict::<i32, i32>().unwrap();
    let lst = manager.list_from(5..10).unwrap();
    Process::new(seed_func, (dit.clone(), lst.clone()))
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(dit.items().unwrap(), vec![(1, 1)]);
    assert_eq!(lst.to_vec().unwrap(), vec![9, 8, 7, 6, 5]);
}

fn report(i: u32, results: DictProxy<u32, String>, ns: Namespace) {
    results.insert(i, format!("result {i}")).unwrap();
    if i == 0 {
        ns.set("first", multiproc::current_process().name().to_string())
            .unwrap();
    }
}

#[test]
fn children_return_values_through_a_dict_and_a_namespace() {
    let _w = watchdog("results");
    let manager = Manager::new().unwrap();
    let results = manager.dict::<u32, String>().unwrap();
    let ns = manager.namespace().unwrap();
    let children: Vec<_> = (0..4)
        .map(|i| {
            Process::new(report, (i, results.clone(), ns.clone()))
                .start()
                .unwrap()
        })
        .collect();
    let names: Vec<String> = children.iter().map(|c| c.name().to_string()).collect();
    for c in children {
        c.join().unwrap();
    }
    let mut got = results.items().unwrap();
    got.sort();
    assert_eq!(
        got,
        (0..4)
            .map(|i| (i, format!("result {i}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(ns.get::<String>("first").unwrap().as_ref(), Some(&names[0]));
    assert_eq!(ns.get::<String>("missing").unwrap(), None);
    // A field of another type is a decode error, not garbage.
    assert_eq!(ns.get::<u8>("first").unwrap_err().kind(), ErrorKind::Decode);
}

fn increment(counts: DictProxy<String, u64>) {
    for _ in 0..1000 {
        counts
            .modify("n".to_string(), |n| n.unwrap_or(0) + 1)
            .unwrap();
    }
}

#[test]
fn four_processes_increment_one_entry_exactly() {
    let _w = watchdog("atomic");
    let manager = Manager::new().unwrap();
    let counts = manager.dict::<String, u64>().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| Process::new(increment, counts.clone()).start().unwrap())
        .collect();
    for c in children {
        c.join().unwrap();
    }
    assert_eq!(counts.get(&"n".to_string()).unwrap(), Some(4000));
}

#[test]
fn list_set_and_dict_operations() {
    let _w = watchdog("ops");
    let manager = Manager::new().unwrap();
    let l = manager.list::<i64>().unwrap();
    l.extend([3, 1, 2]).unwrap();
    l.push(0).unwrap();
    assert_eq!(l.len().unwrap(), 4);
    assert_eq!(l.get(1).unwrap(), Some(1));
    assert_eq!(l.get(9).unwrap(), None);
    l.set(1, 10).unwrap();
    assert_eq!(l.set(9, 1).unwrap_err().kind(), ErrorKind::Remote);
    l.sort().unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![0, 2, 3, 10]);
    assert_eq!(l.pop().unwrap(), Some(10));
    l.clear().unwrap();
    assert_eq!(l.pop().unwrap(), None);

    let s = manager.set::<String>().unwrap();
    assert!(s.add("a".into()).unwrap());
    assert!(!s.add("a".into()).unwrap());
    assert!(s.contains(&"a".into()).unwrap());
    assert!(s.remove(&"a".into()).unwrap());
    assert!(s.is_empty().unwrap());

    let d = manager.dict::<String, Vec<u8>>().unwrap();
    d.update([("x".to_string(), vec![1]), ("y".to_string(), vec![2, 2])])
        .unwrap();
    assert_eq!(d.keys().unwrap(), vec!["x", "y"]);
    assert_eq!(
        d.get_many([&"y".to_string(), &"z".to_string()]).unwrap(),
        vec![Some(vec![2, 2]), None]
    );
    assert_eq!(d.remove(&"x".to_string()).unwrap(), Some(vec![1]));
    assert!(!d.contains(&"x".to_string()).unwrap());
    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);
}

/// A bank account whose methods run inside the manager.
#[derive(Serialize, Deserialize)]
struct Bank {
    balances: Vec<i64>,
}

#[derive(Serialize, Deserialize)]
enum BankOp {
    Transfer { from: usize, to: usize, amount: i64 },
    Balance(usize),
    Total,
}

impl SharedObject for Bank {
    type Request = BankOp;
    type Response = Result<i64, String>;
    fn handle(&mut self, op: BankOp) -> Result<i64, String> {
        match op {
            BankOp::Transfer { from, to, amount } => {
                if self.balances[from] < amount {
                    return Err("insufficient funds".into());
                }
                self.balances[from] -= amount;
                self.balances[to] += amount;
                Ok(self.balances[from])
            }
            BankOp::Balance(i) => Ok(self.balances[i]),
            BankOp::Total => Ok(self.balances.iter().sum()),
        }
    }
}

fn shuffle_money(bank: ObjectProxy<Bank>, from: usize, to: usize) {
    for _ in 0..200 {
        let _ = bank
            .call(BankOp::Transfer {
                from,
                to,
                amount: 1,
            })
            .unwrap();
    }
}

#[test]
fn a_registered_type_runs_its_methods_in_the_manager() {
    let _w = watchdog("bank");
    let manager = Manager::builder().register::<Bank>("Bank").start().unwrap();
    let bank = manager
        .create(
            "Bank",
            &Bank {
                balances: vec![1000, 1000],
            },
        )
        .unwrap();
    let a = Process::new(shuffle_money, (bank.clone(), 0, 1))
        .start()
        .unwrap();
    let b = Process::new(shuffle_money, (bank.clone(), 1, 0))
        .start()
        .unwrap();
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(bank.call(BankOp::Total).unwrap(), Ok(2000));
    assert_eq!(bank.call(BankOp::Balance(0)).unwrap(), Ok(1000));
    assert_eq!(
        bank.call(BankOp::Transfer {
            from: 0,
            to: 1,
            amount: 5000
        })
        .unwrap(),
        Err("insufficient funds".into())
    );
    // A method that panics is an error for that call; the object goes on.
    let err = bank.call(BankOp::Balance(7)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote);
    assert_eq!(bank.call(BankOp::Total).unwrap(), Ok(2000));
    // An unregistered type is refused.
    assert_eq!(
        manager
            .create("Nope", &Bank { balances: vec![] })
            .unwrap_err()
            .kind(),
        ErrorKind::Remote
    );
}

fn serve_remote(port_report: multiproc::Connection<String>) {
    // Bind first, then report the address, then serve.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    port_report.send(&address.to_string()).unwrap();
    Manager::builder()
        .address(address)
        .authkey(b"remote key")
        .register::<Bank>("Bank")
        .serve_forever()
        .unwrap();
}

fn remote_client(address: String) -> u64 {
    let address: Address = address.parse().unwrap();
    let m = Manager::connect(&address, b"remote key").unwrap();
    let d = m.dict::<String, u64>().unwrap();
    d.insert("from".into(), u64::from(std::process::id()))
        .unwrap();
    d.get(&"from".to_string()).unwrap().unwrap()
}

#[test]
fn a_remote_manager_over_tcp_with_a_key() {
    let _w = watchdog("remote");
    let (ours, theirs) = multiproc::pipe::<String>().unwrap();
    let server = Process::new(serve_remote, theirs).start().unwrap();
    let address: Address = ours.recv().unwrap().parse().unwrap();
    // Wait until it listens: connecting is retried, not slept on.
    let m = loop {
        match Manager::connect(&address, b"remote key") {
            Ok(m) => break m,
            Err(e) if e.kind() == ErrorKind::Io => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    };
    // A wrong key fails, and the server keeps serving others.
    assert_eq!(
        Manager::connect(&address, b"wrong").unwrap_err().kind(),
        ErrorKind::Authentication
    );
    let client = Process::new(remote_client, address.to_string())
        .start()
        .unwrap();
    let pid = client.pid();
    assert_eq!(client.join().unwrap(), u64::from(pid));
    let bank = m.create("Bank", &Bank { balances: vec![5] }).unwrap();
    assert_eq!(bank.call(BankOp::Total).unwrap(), Ok(5));
    m.shutdown().unwrap();
    server.join().unwrap();
}

fn hammer(d: DictProxy<u64, u64>) {
    for i in 0.. {
        d.insert(i % 10, i).unwrap();
    }
}

#[test]
fn a_client_killed_mid_request_harms_no_one_and_a_dead_server_is_an_error() {
    let _w = watchdog("faults");
    let manager = Manager::new().unwrap();
    let d = manager.dict::<u64, u64>().unwrap();
    let victim = Process::new(hammer, d.clone()).start().unwrap();
    // Let it get going, then kill it in the middle of its requests.
    while d.len().unwrap() < 10 {}
    victim.kill().unwrap();
    let _ = victim.join();
    d.insert(99, 1).unwrap();
    assert_eq!(d.get(&99).unwrap(), Some(1));

    // The server dies: a call blocked in it and the next call both say so,
    // without hanging.
    let q = manager.queue::<u8>(0).unwrap();
    let (tx, rx) = mpsc::channel();
    let blocked = std::thread::spawn(move || {
        tx.send(()).unwrap();
        q.get()
    });
    rx.recv().unwrap();
    let pid = manager.server_pid().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let err = loop {
        match d.get(&99) {
            Ok(_) => std::thread::yield_now(),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::Eof, "{err}");
    assert!(err.to_string().contains("manager"), "{err}");
    assert_eq!(blocked.join().unwrap().unwrap_err().kind(), ErrorKind::Eof);
    // And so do later calls, and new proxies.
    assert_eq!(d.len().unwrap_err().kind(), ErrorKind::Eof);
    assert_eq!(manager.dict::<u8, u8>().unwrap_err().kind(), ErrorKind::Eof);
}

#[test]
fn malformed_and_oversized_requests_are_refused() {
    let _w = watchdog("malformed");
    let manager = Manager::builder().authkey(b"k").start().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    let raw = Client::connect::<()>(manager.address(), Some(b"k")).unwrap();
    // The server says it is ready with an empty message.
    assert_eq!(raw.recv_bytes().unwrap(), b"");
    raw.send_bytes(&[0xff, 0xff, 0xff, 0x01]).unwrap();
    let reply = raw.recv_bytes().unwrap();
    assert!(!reply.is_empty());
    // A request with a byte left over after it is malformed as well, even
    // when what comes first decodes: [4] is `Shutdown`, which must not run.
    raw.send_bytes(&[4, 0]).unwrap();
    let reply = raw.recv_bytes().unwrap();
    assert!(!reply.is_empty());
    d.insert(1, 2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
}

// ---- queues and synchronisation objects ----

fn produce(q: QueueProxy<u64>, n: u64) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[test]
fn a_queue_carries_values_in_order_and_hands_back_what_does_not_fit() {
    let _w = watchdog("queue");
    let manager = Manager::new().unwrap();
    let q = manager.queue::<u64>(2).unwrap();
    // Bounded: a child blocks while the queue is full, and goes on as we take.
    let child = Process::new(produce, (q.clone(), 100)).start().unwrap();
    let got: Vec<u64> = (0..100).map(|_| q.get().unwrap()).collect();
    child.join().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    // The same errors as a local queue: Python's queue.Empty, and a timeout.
    let empty = q.try_get().unwrap_err();
    assert!(matches!(empty, GetError::Empty), "{empty:?}");
    assert_eq!(empty.kind(), ErrorKind::Empty);
    let timed_out = q.get_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(matches!(timed_out, GetError::Timeout), "{timed_out:?}");
    assert_eq!(timed_out.kind(), ErrorKind::Timeout);
    q.try_put(1).unwrap();
    q.put_timeout(2, Duration::from_millis(10)).unwrap();
    assert!(q.full().unwrap());
    match q.try_put(3) {
        Err(PutError::Full(v)) => assert_eq!(v, 3),
        other => panic!("{other:?}"),
    }
    match q.put_timeout(4, Duration::from_millis(10)) {
        Err(e @ PutError::Timeout(_)) => {
            assert_eq!(e.kind(), ErrorKind::Timeout);
            assert_eq!(e.into_inner(), 4);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(q.qsize().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 1);
    assert!(!q.empty().unwrap());
}

fn consume(q: JoinableQueueProxy<String>, seen: ListProxy<String>) {
    loop {
        let s = q.get_timeout(Duration::from_secs(30)).unwrap();
        if s == "stop" {
            q.task_done().unwrap();
            return;
        }
        seen.push(s).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn a_joinable_queue_join_waits_until_every_task_is_done() {
    let _w = watchdog("joinable");
    let manager = Manager::new().unwrap();
    let q = manager.joinable_queue::<String>(0).unwrap();
    let seen = manager.list::<String>().unwrap();
    let child = Process::new(consume, (q.clone(), seen.clone()))
        .start()
        .unwrap();
    for i in 0..20 {
        q.put(format!("task {i}")).unwrap();
    }
    q.put("stop".into()).unwrap();
    q.join().unwrap();
    // Every task was handled before join returned.
    assert_eq!(seen.len().unwrap(), 20);
    child.join().unwrap();
    q.join_timeout(Duration::ZERO).unwrap();
    assert_eq!(q.task_done().unwrap_err().kind(), ErrorKind::NotAcquired);
}

#[test]
fn queue_proxy_forms_follow_the_outcome_rules_deadlines_and_duration_max_included() {
    let _w = watchdog("queue forms");
    let manager = Manager::new().unwrap();
    let q = manager.queue::<u64>(1).unwrap();
    // Duration::MAX is "as long as it takes", never a panic (here or in
    // the server).
    q.put_timeout(1, Duration::MAX).unwrap();
    let past = Instant::now();
    match q.put_deadline(2, past) {
        Err(e @ PutError::Timeout(_)) => assert_eq!(e.into_inner(), 2),
        other => panic!("{other:?}"),
    }
    let later = Instant::now() + Duration::from_millis(10);
    match q.put_deadline(3, later) {
        Err(e @ PutError::Timeout(_)) => assert_eq!(e.kind(), ErrorKind::Timeout),
        other => panic!("{other:?}"),
    }
    assert_eq!(q.get_timeout(Duration::MAX).unwrap(), 1);
    q.put_deadline(4, Instant::now() + Duration::from_secs(60))
        .unwrap();
    assert_eq!(
        q.get_deadline(Instant::now() + Duration::from_secs(60))
            .unwrap(),
        4
    );
    let err = q.get_deadline(Instant::now()).unwrap_err();
    assert!(matches!(err, GetError::Timeout), "{err:?}");
    // Through `?`, the kinds stay.
    let err: multiproc::Error = q.try_get().unwrap_err().into();
    assert_eq!(err.kind(), ErrorKind::Empty);
    q.put(5).unwrap();
    let err: multiproc::Error = q.try_put(6).unwrap_err().into();
    assert_eq!(err.kind(), ErrorKind::Full);
    // A value of another type is a decode error; the queue goes on.
    let as_string: QueueProxy<String> =
        postcard::from_bytes(&postcard::to_allocvec(&q).unwrap()).unwrap();
    let err = as_string.get().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(matches!(err, GetError::Failed(_)), "{err:?}");
    q.try_put(7).unwrap();
    assert_eq!(q.try_get().unwrap(), 7);
}

#[test]
fn joinable_queue_proxy_join_forms_time_out_with_an_error() {
    let _w = watchdog("join forms");
    let manager = Manager::new().unwrap();
    let q = manager.joinable_queue::<u8>(0).unwrap();
    q.join_timeout(Duration::MAX).unwrap();
    q.put(1).unwrap();
    let err = q.join_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let err = q.join_deadline(Instant::now()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(q.get().unwrap(), 1);
    q.task_done().unwrap();
    q.join_deadline(Instant::now() + Duration::from_secs(60))
        .unwrap();
    q.join().unwrap();
}

#[test]
fn a_queue_proxy_in_flight_at_shutdown_is_refused_and_after_it_finds_the_manager_gone() {
    let _w = watchdog("queue shutdown");
    let manager = Manager::new().unwrap();
    let empty = manager.queue::<u8>(0).unwrap();
    let full = manager.queue::<u8>(1).unwrap();
    full.put(0).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let getter = s.spawn(|| {
            // This thread's connection exists before the blocking get.
            empty.qsize().unwrap();
            tx.send(()).unwrap();
            empty.get()
        });
        let putter = s.spawn(|| {
            full.qsize().unwrap();
            tx.send(()).unwrap();
            full.put(1)
        });
        rx.recv().unwrap();
        rx.recv().unwrap();
        manager.shutdown().unwrap();
        // Blocked in the server: it refused (Remote). Not there yet: the
        // server had gone (Eof). Never a protocol error.
        let err = getter.join().unwrap().unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Remote | ErrorKind::Eof),
            "{err:?}"
        );
        match putter.join().unwrap() {
            Err(PutError::Failed(v, e)) => {
                assert_eq!(v, 1, "the value comes back");
                assert!(
                    matches!(e.kind(), ErrorKind::Remote | ErrorKind::Eof),
                    "{e:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    });
    // The server process is gone now: every form says Eof.
    assert_eq!(empty.get().unwrap_err().kind(), ErrorKind::Eof);
    assert_eq!(empty.try_get().unwrap_err().kind(), ErrorKind::Eof);
    assert_eq!(
        empty.get_timeout(Duration::MAX).unwrap_err().kind(),
        ErrorKind::Eof
    );
    match full.try_put(2) {
        Err(e @ PutError::Failed(..)) => {
            assert_eq!(e.kind(), ErrorKind::Eof);
            assert_eq!(e.into_inner(), 2);
        }
        other => panic!("{other:?}"),
    }
}

fn add_under_lock(lock: LockProxy, total: ValueProxy<u64>) {
    for _ in 0..250 {
        let guard = lock.lock().unwrap();
        assert_eq!(guard.acquired(), Acquired::Clean);
        let v = total.get().unwrap();
        total.set(v + 1).unwrap();
        drop(guard);
    }
}

#[test]
fn a_manager_lock_makes_read_then_write_exact_across_processes() {
    let _w = watchdog("lock");
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let total = manager.value(0u64).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Process::new(add_under_lock, (lock.clone(), total.clone()))
                .start()
                .unwrap()
        })
        .collect();
    for c in children {
        c.join().unwrap();
    }
    assert_eq!(total.get().unwrap(), 1000);
    assert!(!lock.locked().unwrap());
    assert_eq!(lock.release().unwrap_err().kind(), ErrorKind::NotAcquired);
    assert_eq!(total.modify(|v| v * 2).unwrap(), 2000);
}

#[test]
fn a_thread_blocked_on_a_manager_lock_holds_up_no_other_thread() {
    let _w = watchdog("threads");
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let d = manager.dict::<u32, u32>().unwrap();
    let _ = lock.acquire().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            tx.send(()).unwrap();
            // Blocks in the server until the main thread releases.
            let how = lock.acquire().unwrap();
            lock.release().unwrap();
            how
        });
        rx.recv().unwrap();
        // Meanwhile this thread still talks to the manager (with one
        // connection per process, this would wait for the waiter, which
        // waits for us).
        for i in 0..100 {
            d.insert(i, i).unwrap();
        }
        lock.release().unwrap();
        assert_eq!(waiter.join().unwrap(), Acquired::Clean);
    });
    assert_eq!(d.len().unwrap(), 100);
    // Several threads at once on one dict.
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let d = d.clone();
            s.spawn(move || {
                for i in 0..100 {
                    d.insert(1000 + t * 100 + i, i).unwrap();
                }
            });
        }
    });
    assert_eq!(d.len().unwrap(), 500);
}

fn hold_and_hang(lock: LockProxy, rlock: RLockProxy, sem: SemaphoreProxy, ready: EventProxy) {
    let _ = lock.acquire().unwrap();
    let _ = rlock.acquire().unwrap();
    let _ = rlock.acquire().unwrap();
    let _ = sem.acquire().unwrap();
    ready.set().unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn a_child_killed_holding_locks_frees_them_and_the_next_owner_is_told() {
    let _w = watchdog("owner died");
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let rlock = manager.rlock().unwrap();
    let sem = manager.bounded_semaphore(1).unwrap();
    let ready = manager.event().unwrap();
    let child = Process::new(
        hold_and_hang,
        (lock.clone(), rlock.clone(), sem.clone(), ready.clone()),
    )
    .start()
    .unwrap();
    ready.wait().unwrap();
    assert!(lock.locked().unwrap());
    assert_eq!(lock.try_acquire().unwrap(), None);
    assert_eq!(sem.get_value().unwrap(), 0);
    child.kill().unwrap();
    assert_eq!(child.join().unwrap_err().kind(), ErrorKind::Killed);
    // Blocking acquires return once the server sees the connection close.
    assert_eq!(lock.acquire().unwrap(), Acquired::PreviousOwnerDied);
    assert_eq!(rlock.acquire().unwrap(), Acquired::PreviousOwnerDied);
    assert_eq!(sem.acquire().unwrap(), Acquired::PreviousOwnerDied);
    // Told once: the next acquisitions are clean.
    lock.release().unwrap();
    rlock.release().unwrap();
    sem.release().unwrap();
    assert_eq!(lock.acquire().unwrap(), Acquired::Clean);
    assert_eq!(rlock.acquire().unwrap(), Acquired::Clean);
    assert_eq!(sem.acquire().unwrap(), Acquired::Clean);
}

#[test]
fn rlock_and_semaphores_follow_python() {
    let _w = watchdog("rlock");
    let manager = Manager::new().unwrap();
    let r = manager.rlock().unwrap();
    let _ = r.acquire().unwrap();
    let _ = r.acquire().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Another thread is another owner.
            assert_eq!(r.try_acquire().unwrap(), None);
            assert_eq!(r.release().unwrap_err().kind(), ErrorKind::NotAcquired);
            assert_eq!(r.acquire_timeout(Duration::from_millis(20)).unwrap(), None);
        });
    });
    r.release().unwrap();
    assert!(r.locked().unwrap());
    r.release().unwrap();
    assert!(!r.locked().unwrap());

    let sem = manager.semaphore(2).unwrap();
    let _a = sem.lock().unwrap();
    let _b = sem.lock().unwrap();
    assert_eq!(sem.try_acquire().unwrap(), None);
    drop(_a);
    assert_eq!(sem.get_value().unwrap(), 1);
    drop(_b);
    sem.release().unwrap(); // unbounded: may go above its start
    assert_eq!(sem.get_value().unwrap(), 3);

    let bounded = manager.bounded_semaphore(1).unwrap();
    assert_eq!(
        bounded.release().unwrap_err().kind(),
        ErrorKind::NotAcquired
    );
}

fn wait_for_go(cond: ConditionProxy, go: ValueProxy<bool>, done: EventProxy) {
    let _guard = cond.lock().unwrap();
    cond.wait_for(|| go.get().unwrap()).unwrap();
    done.set().unwrap();
}

#[test]
fn condition_wait_and_notify_across_processes() {
    let _w = watchdog("condition");
    let manager = Manager::new().unwrap();
    let cond = manager.condition().unwrap();
    let go = manager.value(false).unwrap();
    let done = manager.event().unwrap();
    let child = Process::new(wait_for_go, (cond.clone(), go.clone(), done.clone()))
        .start()
        .unwrap();
    assert!(!done.wait_timeout(Duration::from_millis(20)).unwrap());
    {
        let _g = cond.lock().unwrap();
        go.set(true).unwrap();
        cond.notify_all().unwrap();
    }
    done.wait().unwrap();
    assert!(done.is_set().unwrap());
    child.join().unwrap();
    done.clear().unwrap();
    assert!(!done.is_set().unwrap());

    // Waiting or notifying without the lock is refused; a wait times out.
    assert_eq!(cond.notify(1).unwrap_err().kind(), ErrorKind::NotAcquired);
    assert_eq!(cond.wait().unwrap_err().kind(), ErrorKind::NotAcquired);
    let _g = cond.lock().unwrap();
    assert_eq!(cond.wait_timeout(Duration::from_millis(10)).unwrap(), None);
    assert!(
        !cond
            .wait_for_timeout(|| false, Duration::from_millis(10))
            .unwrap()
    );
}

fn meet(barrier: BarrierProxy) -> usize {
    barrier.wait().unwrap()
}

fn wait_at_barrier(barrier: BarrierProxy) {
    let _ = barrier.wait();
}

#[test]
fn a_barrier_opens_for_all_parties_and_breaks_when_a_waiter_dies() {
    let _w = watchdog("barrier");
    let manager = Manager::new().unwrap();
    let barrier = manager.barrier(3).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| Process::new(meet, barrier.clone()).start().unwrap())
        .collect();
    let mut indices = vec![barrier.wait().unwrap()];
    for c in children {
        indices.push(c.join().unwrap());
    }
    indices.sort();
    assert_eq!(indices, vec![0, 1, 2]);
    assert_eq!(barrier.parties().unwrap(), 3);

    // A waiter that dies breaks the barrier instead of leaving the others
    // waiting forever.
    let victim = Process::new(wait_at_barrier, barrier.clone())
        .start()
        .unwrap();
    while barrier.n_waiting().unwrap() == 0 {
        std::thread::yield_now();
    }
    victim.kill().unwrap();
    let _ = victim.join();
    let err = barrier.wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenBarrier, "{err}");
    assert!(barrier.broken().unwrap());
    barrier.reset().unwrap();
    assert!(!barrier.broken().unwrap());
    // A timeout breaks it too, as in Python; abort as well.
    assert_eq!(
        barrier
            .wait_timeout(Duration::from_millis(10))
            .unwrap_err()
            .kind(),
        ErrorKind::BrokenBarrier
    );
    barrier.reset().unwrap();
    barrier.abort().unwrap();
    assert_eq!(barrier.wait().unwrap_err().kind(), ErrorKind::BrokenBarrier);
    assert_eq!(
        manager.barrier(0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

#[test]
fn shutdown_ends_blocked_calls_with_an_error_not_a_hang() {
    let _w = watchdog("shutdown");
    let manager = Manager::new().unwrap();
    let q = manager.queue::<u8>(0).unwrap();
    let lock = manager.lock().unwrap();
    let _ = lock.acquire().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let getter = s.spawn(|| {
            tx.send(()).unwrap();
            q.get()
        });
        let locker = s.spawn(|| {
            tx.send(()).unwrap();
            lock.acquire()
        });
        rx.recv().unwrap();
        rx.recv().unwrap();
        // Blocked in the server or not yet there: either way an error.
        manager.shutdown().unwrap();
        assert!(getter.join().unwrap().is_err());
        assert!(locker.join().unwrap().is_err());
    });
    assert_eq!(q.qsize().unwrap_err().kind(), ErrorKind::Eof);
}

#[test]
fn an_oversized_request_closes_only_that_connection() {
    use std::io::Write;
    let _w = watchdog("oversized");
    let manager = Manager::builder().authkey(b"k").start().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    let raw = Client::connect::<()>(manager.address(), Some(b"k")).unwrap();
    assert_eq!(raw.recv_bytes().unwrap(), b"");
    // A header announcing 1 GiB, then a little of it, written raw.
    let mut msg = (1i32 << 30).to_be_bytes().to_vec();
    msg.extend_from_slice(&[0; 64]);
    let mut stream =
        std::os::unix::net::UnixStream::from(raw.fileno().try_clone_to_owned().unwrap());
    stream.write_all(&msg).unwrap();
    assert_eq!(raw.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
    d.insert(1, 2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
}

fn count_in(d: DictProxy<String, u32>, key: String) {
    d.modify(key, |n| n.unwrap_or(0) + 1).unwrap();
}

#[test]
fn proxies_travel_under_spawn_and_forkserver_and_the_server_can_be_spawned() {
    let _w = watchdog("start methods");
    let manager = Manager::builder()
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    let d = manager.dict::<String, u32>().unwrap();
    for method in [StartMethod::Spawn, StartMethod::Forkserver] {
        Process::new(count_in, (d.clone(), format!("{method:?}")))
            .start_method(method)
            .start()
            .unwrap()
            .join()
            .unwrap();
    }
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, vec!["Forkserver", "Spawn"]);
    let l = manager.list_from([3, 1, 2]).unwrap();
    assert_eq!(l.iter().unwrap().collect::<Vec<_>>(), vec![3, 1, 2]);
}

#[test]
fn a_client_stalled_in_the_handshake_holds_up_no_one() {
    let _w = watchdog("stalled handshake");
    let manager = Manager::new().unwrap();
    let Address::Unix(path) = manager.address().clone() else {
        panic!("a private manager listens on a Unix socket");
    };
    // Connects and never answers the challenge.
    let _stalled = std::os::unix::net::UnixStream::connect(&path).unwrap();
    // A new connection (a new thread) is still served.
    let d = manager.dict::<u8, u8>().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| d.insert(1, 1).unwrap());
    });
    assert_eq!(d.get(&1).unwrap(), Some(1));
}

#[test]
fn dropping_the_manager_stops_its_server_and_removes_its_socket() {
    let _w = watchdog("drop");
    let manager = Manager::new().unwrap();
    let pid = manager.server_pid().unwrap();
    let Address::Unix(path) = manager.address().clone() else {
        panic!("a private manager listens on a Unix socket");
    };
    let d = manager.dict::<u8, u8>().unwrap();
    d.insert(1, 1).unwrap();
    assert!(path.exists());
    drop(manager);
    assert!(!path.exists());
    assert_eq!(d.len().unwrap_err().kind(), ErrorKind::Eof);
    // The server process is gone (and reaped).
    let gone =
        rustix::process::test_kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap());
    assert_eq!(gone, Err(rustix::io::Errno::SRCH));
}

fn produce_range(q: QueueProxy<u64>, from: u64, n: u64) {
    for i in from..from + n {
        q.put(i).unwrap();
    }
}

fn drain(q: QueueProxy<u64>, seen: ListProxy<u64>) {
    let mut mine = Vec::new();
    loop {
        let v = q.get_timeout(Duration::from_secs(30)).unwrap();
        if v == u64::MAX {
            break;
        }
        mine.push(v);
    }
    seen.extend(mine).unwrap();
}

#[test]
fn several_producers_and_consumers_share_a_queue_each_item_once() {
    let _w = watchdog("mpmc");
    let manager = Manager::new().unwrap();
    let q = manager.queue::<u64>(8).unwrap();
    let seen = manager.list::<u64>().unwrap();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            Process::new(drain, (q.clone(), seen.clone()))
                .start()
                .unwrap()
        })
        .collect();
    let producers: Vec<_> = (0..3)
        .map(|p| {
            Process::new(produce_range, (q.clone(), p * 1000, 300))
                .start()
                .unwrap()
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    for _ in &consumers {
        q.put(u64::MAX).unwrap();
    }
    for c in consumers {
        c.join().unwrap();
    }
    let mut got = seen.to_vec().unwrap();
    got.sort();
    let want: Vec<u64> = (0..3).flat_map(|p| p * 1000..p * 1000 + 300).collect();
    assert_eq!(got, want);
}

fn take_and_die(q: JoinableQueueProxy<String>, took: EventProxy) {
    let _task = q.get().unwrap();
    took.set().unwrap();
    loop {
        std::thread::park();
    }
}

fn work_all(q: JoinableQueueProxy<String>, done: ListProxy<String>) {
    loop {
        let s = q.get_timeout(Duration::from_secs(30)).unwrap();
        if s == "stop" {
            q.task_done().unwrap();
            return;
        }
        done.push(s).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn a_consumer_killed_mid_task_hands_its_task_back_and_join_completes() {
    let _w = watchdog("requeue");
    let manager = Manager::new().unwrap();
    let q = manager.joinable_queue::<String>(0).unwrap();
    let done = manager.list::<String>().unwrap();
    let took = manager.event().unwrap();
    q.put("a".into()).unwrap();
    let victim = Process::new(take_and_die, (q.clone(), took.clone()))
        .start()
        .unwrap();
    took.wait().unwrap();
    victim.kill().unwrap();
    let _ = victim.join();
    q.put("b".into()).unwrap();
    let worker = Process::new(work_all, (q.clone(), done.clone()))
        .start()
        .unwrap();
    // Python would wait here forever: the killed consumer never calls
    // task_done. Its task went back to the queue instead.
    q.join().unwrap();
    let mut got = done.to_vec().unwrap();
    got.sort();
    assert_eq!(got, ["a", "b"]);
    q.put("stop".into()).unwrap();
    worker.join().unwrap();
    q.join_timeout(Duration::ZERO).unwrap();
}

#[test]
fn a_descriptor_cannot_be_stored_in_a_manager() {
    let _w = watchdog("fd");
    let manager = Manager::new().unwrap();
    let d = manager.dict::<u8, multiproc::Fd>().unwrap();
    let (a, _b) = multiproc::pipe::<()>().unwrap();
    let fd = multiproc::Fd::new(a.fileno().try_clone_to_owned().unwrap());
    let err = d.insert(1, fd).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode);
    assert!(err.to_string().contains("Pipe"), "{err}");
    assert_eq!(d.len().unwrap(), 0);
}
