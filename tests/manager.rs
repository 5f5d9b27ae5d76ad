//! Managers: shared dict, list, set and namespace across processes,
//! registered types, atomic updates, remote use, and faults.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::connection::{Address, Client};
use multiproc::manager::{
    BarrierProxy, ConditionProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy,
    Namespace, ObjectProxy, ProxyGuard, QueueProxy, RLockProxy, SemaphoreProxy, SharedObject,
    ValueProxy,
};
use multiproc::queue::{GetError, PutError};
use multiproc::sync::{AcquireError, AcquireResult};
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
    // A million batches nested in 2 MB ([3, 1]: a batch of one) around a
    // shutdown: refused as malformed, not decoded by recursing a million
    // times (which overflowed the server thread's stack and aborted the
    // manager), and the shutdown inside does not run.
    let mut nested = [3u8, 1].repeat(1_000_000);
    nested.push(4);
    raw.send_bytes(&nested).unwrap();
    let reply = raw.recv_bytes().unwrap();
    assert!(!reply.is_empty());
    d.insert(1, 2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
}

/// `n` as a postcard varint.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

#[test]
fn a_duration_max_timeout_sent_raw_waits_in_the_server_without_panicking() {
    let _w = watchdog("raw duration max");
    let manager = Manager::builder().authkey(b"k").start().unwrap();
    let ev = manager.event().unwrap();
    let debug = format!("{ev:?}");
    let id: u64 = debug
        .rsplit("id: ")
        .next()
        .and_then(|s| s.trim_end_matches([' ', '}']).parse().ok())
        .unwrap_or_else(|| panic!("no id in {debug}"));
    let raw = Client::connect::<()>(manager.address(), Some(b"k")).unwrap();
    assert_eq!(raw.recv_bytes().unwrap(), b"");
    // `Request::Op { id, op: Op::Wait { timeout: Some(Duration::MAX) } }`
    // as postcard writes it (Op 2; Wait is the Op's variant 28; Some 1):
    // what a client of another version, or a hostile one, may send. The
    // server cannot add it to an Instant; it must wait, not panic.
    let mut request = vec![2];
    request.extend(varint(id));
    request.extend([28, 1]);
    request.extend(varint(u64::MAX));
    request.extend(varint(999_999_999));
    raw.send_bytes(&request).unwrap();
    // The server turns the timeout into a deadline before it looks at the
    // event, so the overflow is met whether the set below lands before
    // or during its wait: no sleep needed to order them.
    ev.set().unwrap();
    // `Reply::Bool(true)`: the event was set while it waited.
    assert_eq!(raw.recv_bytes().unwrap(), vec![4u8, 1]);
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
        let guard = lock.acquire().unwrap();
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
    // Acquire here, release there (Python's hand-off): leak, then release.
    lock.acquire().unwrap().leak();
    assert!(lock.locked().unwrap());
    std::thread::scope(|s| {
        s.spawn(|| lock.release().unwrap());
    });
    assert!(!lock.locked().unwrap());
}

#[test]
fn a_thread_blocked_on_a_manager_lock_holds_up_no_other_thread() {
    let _w = watchdog("threads");
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let d = manager.dict::<u32, u32>().unwrap();
    lock.acquire().unwrap().leak();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            tx.send(()).unwrap();
            // Blocks in the server until the main thread releases.
            let guard = lock.acquire().unwrap();
            drop(guard);
        });
        rx.recv().unwrap();
        // Meanwhile this thread still talks to the manager (with one
        // connection per process, this would wait for the waiter, which
        // waits for us).
        for i in 0..100 {
            d.insert(i, i).unwrap();
        }
        lock.release().unwrap();
        waiter.join().unwrap();
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

fn hold_and_hang(
    lock: LockProxy,
    rlock: RLockProxy,
    sem: SemaphoreProxy,
    cond: ConditionProxy,
    ready: EventProxy,
) {
    lock.acquire().unwrap().leak();
    rlock.acquire().unwrap().leak();
    rlock.acquire().unwrap().leak();
    sem.acquire().unwrap().leak();
    cond.acquire().unwrap().leak();
    ready.set().unwrap();
    loop {
        std::thread::park();
    }
}

/// The owner-died indication of `what`'s acquisitions: sticky until
/// `into_guard`, and `?` releases the lock and leaves it set.
fn assert_sticky_owner_died<'a>(
    what: &str,
    acquire: impl Fn() -> AcquireResult<ProxyGuard<'a>> + Sync,
) {
    // The first acquirer is told...
    let died = match acquire() {
        Err(AcquireError::OwnerDied(died)) => died,
        other => panic!("{what}: {other:?}"),
    };
    assert_eq!(died.kind(), ErrorKind::OwnerDied);
    // ... and `?` makes it an OwnerDied error, releasing the lock and
    // leaving the indication set.
    let err: multiproc::Error = AcquireError::OwnerDied(died).into();
    assert_eq!(err.kind(), ErrorKind::OwnerDied, "{what}");
    // So a second acquirer (another thread: another owner) is told too.
    std::thread::scope(|s| {
        s.spawn(|| match acquire() {
            Err(AcquireError::OwnerDied(died)) => drop(died),
            other => panic!("{what}, second acquirer: {other:?}"),
        });
    });
    // Until a holder calls into_guard, which acknowledges it.
    let guard = match acquire() {
        Err(AcquireError::OwnerDied(died)) => died.into_guard(),
        other => panic!("{what}, third acquirer: {other:?}"),
    };
    drop(guard);
    // After into_guard, acquisitions are clean, in any thread.
    drop(acquire().unwrap_or_else(|e| panic!("{what} after into_guard: {e:?}")));
    std::thread::scope(|s| {
        s.spawn(|| drop(acquire().unwrap()));
    });
}

#[test]
fn a_child_killed_holding_locks_frees_them_and_every_acquirer_is_told_until_into_guard() {
    let _w = watchdog("owner died");
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let rlock = manager.rlock().unwrap();
    let sem = manager.bounded_semaphore(1).unwrap();
    let cond = manager.condition().unwrap();
    let ready = manager.event().unwrap();
    let child = Process::new(
        hold_and_hang,
        (
            lock.clone(),
            rlock.clone(),
            sem.clone(),
            cond.clone(),
            ready.clone(),
        ),
    )
    .start()
    .unwrap();
    ready.wait().unwrap();
    assert!(lock.locked().unwrap());
    assert!(matches!(lock.try_acquire(), Err(AcquireError::WouldBlock)));
    assert!(matches!(rlock.try_acquire(), Err(AcquireError::WouldBlock)));
    assert!(matches!(sem.try_acquire(), Err(AcquireError::WouldBlock)));
    assert!(matches!(cond.try_acquire(), Err(AcquireError::WouldBlock)));
    assert_eq!(sem.get_value().unwrap(), 0u32);
    child.kill().unwrap();
    assert_eq!(child.join().unwrap_err().kind(), ErrorKind::Killed);
    // Blocking acquisitions return once the server sees the connection
    // close; the indication stays until into_guard.
    assert_sticky_owner_died("lock", || lock.acquire());
    assert_sticky_owner_died("rlock", || rlock.acquire_timeout(Duration::MAX));
    assert_sticky_owner_died("semaphore", || {
        sem.acquire_deadline(Instant::now() + Duration::from_secs(60))
    });
    assert_sticky_owner_died("condition", || cond.acquire());
    assert_eq!(sem.get_value().unwrap(), 1);
    assert!(!lock.locked().unwrap());
    let held = lock.try_acquire().unwrap();
    assert!(matches!(lock.try_acquire(), Err(AcquireError::WouldBlock)));
    drop(held);
}

fn take_the_condition_and_die(cond: ConditionProxy) {
    cond.acquire().unwrap().leak();
    std::process::abort();
}

#[test]
fn a_condition_waiter_taking_back_a_dead_owners_lock_is_told() {
    let _w = watchdog("condition owner died");
    let manager = Manager::new().unwrap();
    let cond = manager.condition().unwrap();
    let held = cond.acquire().unwrap();
    // Another process takes the lock while we wait, and dies holding it;
    // the wait that takes the lock back is told.
    let dier = Process::new(take_the_condition_and_die, cond.clone())
        .start()
        .unwrap();
    let died = loop {
        match cond.wait_timeout(Duration::from_millis(50)) {
            Err(AcquireError::Timeout) => continue,
            Err(AcquireError::OwnerDied(died)) => break died,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(dier.join().unwrap_err().kind(), ErrorKind::Killed);
    // Sticky: a wait reports it again until into_guard.
    assert!(matches!(
        cond.wait_deadline(Instant::now()),
        Err(AcquireError::OwnerDied(_))
    ));
    died.into_guard();
    // Acknowledged: the next wait just times out.
    assert!(matches!(
        cond.wait_timeout(Duration::from_millis(10)),
        Err(AcquireError::Timeout)
    ));
    drop(held);
}

#[test]
fn acquisitions_come_in_four_forms_with_one_ok() {
    let _w = watchdog("acquire forms");
    let manager = Manager::new().unwrap();
    let lock = manager.lock().unwrap();
    let rlock = manager.rlock().unwrap();
    let sem = manager.semaphore(1).unwrap();
    let bounded = manager.bounded_semaphore(1).unwrap();
    let cond = manager.condition().unwrap();
    let never = || Instant::now() + Duration::from_secs(60);
    // Free: every form gets the guard; Duration::MAX never panics.
    drop(lock.acquire().unwrap());
    drop(lock.try_acquire().unwrap());
    drop(lock.acquire_timeout(Duration::MAX).unwrap());
    drop(lock.acquire_deadline(never()).unwrap());
    drop(sem.acquire_timeout(Duration::MAX).unwrap());
    drop(bounded.acquire_timeout(Duration::MAX).unwrap());
    drop(cond.acquire_timeout(Duration::MAX).unwrap());
    drop(rlock.acquire_timeout(Duration::MAX).unwrap());
    // Held by this thread: try_ is WouldBlock, the timed forms Timeout
    // (a deadline in the past too), and `?` keeps the kind.
    let held = (
        lock.acquire().unwrap(),
        sem.acquire().unwrap(),
        bounded.acquire().unwrap(),
    );
    for (what, try_form, timed, past) in [
        (
            "lock",
            lock.try_acquire(),
            lock.acquire_timeout(Duration::from_millis(10)),
            lock.acquire_deadline(Instant::now()),
        ),
        (
            "semaphore",
            sem.try_acquire(),
            sem.acquire_timeout(Duration::from_millis(10)),
            sem.acquire_deadline(Instant::now()),
        ),
        (
            "bounded semaphore",
            bounded.try_acquire(),
            bounded.acquire_timeout(Duration::from_millis(10)),
            bounded.acquire_deadline(Instant::now()),
        ),
    ] {
        assert!(
            matches!(try_form, Err(AcquireError::WouldBlock)),
            "{what}: {try_form:?}"
        );
        assert!(
            matches!(timed, Err(AcquireError::Timeout)),
            "{what}: {timed:?}"
        );
        assert!(
            matches!(past, Err(AcquireError::Timeout)),
            "{what}: {past:?}"
        );
    }
    let err: multiproc::Error = lock.try_acquire().unwrap_err().into();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    let err: multiproc::Error = sem
        .acquire_timeout(Duration::from_millis(1))
        .unwrap_err()
        .into();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    drop(held);
    // An RLock or a condition is reentrant for its holder, not for others.
    let r1 = rlock.acquire().unwrap();
    let r2 = rlock.try_acquire().unwrap();
    let c = cond.acquire().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(rlock.try_acquire(), Err(AcquireError::WouldBlock)));
            assert!(matches!(
                rlock.acquire_timeout(Duration::from_millis(10)),
                Err(AcquireError::Timeout)
            ));
            assert!(matches!(
                cond.acquire_deadline(Instant::now() + Duration::from_millis(10)),
                Err(AcquireError::Timeout)
            ));
            assert_eq!(rlock.release().unwrap_err().kind(), ErrorKind::NotAcquired);
        });
    });
    drop((r1, r2, c));
    assert!(!rlock.locked().unwrap());
}

#[test]
fn semaphores_count_in_u32_and_follow_python() {
    let _w = watchdog("semaphores");
    let manager = Manager::new().unwrap();
    let sem = manager.semaphore(2).unwrap();
    let a = sem.acquire().unwrap();
    let b = sem.acquire().unwrap();
    assert!(matches!(sem.try_acquire(), Err(AcquireError::WouldBlock)));
    drop(a);
    let value: u32 = sem.get_value().unwrap();
    assert_eq!(value, 1);
    drop(b);
    sem.release().unwrap(); // unbounded: may go above its start
    assert_eq!(sem.get_value().unwrap(), 3);

    // The full u32 range: a value at u32::MAX cannot be released further.
    let big = manager.semaphore(u32::MAX).unwrap();
    assert_eq!(big.get_value().unwrap(), u32::MAX);
    assert_eq!(big.release().unwrap_err().kind(), ErrorKind::NotAcquired);
    drop(big.try_acquire().unwrap());
    assert_eq!(big.get_value().unwrap(), u32::MAX);

    let bounded = manager.bounded_semaphore(1).unwrap();
    assert_eq!(
        bounded.release().unwrap_err().kind(),
        ErrorKind::NotAcquired
    );
    bounded.acquire().unwrap().leak();
    assert_eq!(bounded.get_value().unwrap(), 0);
    bounded.release().unwrap();
    assert_eq!(bounded.get_value().unwrap(), 1);
    let zero = manager.semaphore(0).unwrap();
    assert!(matches!(zero.try_acquire(), Err(AcquireError::WouldBlock)));
}

fn wait_for_go(cond: ConditionProxy, go: ValueProxy<bool>, done: EventProxy) {
    let _guard = cond.acquire().unwrap();
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
    let err = done.wait_timeout(Duration::from_millis(20)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    {
        let _g = cond.acquire().unwrap();
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
    assert_eq!(
        cond.wait_timeout(Duration::MAX).unwrap_err().kind(),
        ErrorKind::NotAcquired
    );
    let _g = cond.acquire().unwrap();
    assert!(matches!(
        cond.wait_timeout(Duration::from_millis(10)),
        Err(AcquireError::Timeout)
    ));
    assert!(matches!(
        cond.wait_deadline(Instant::now()),
        Err(AcquireError::Timeout)
    ));
    assert!(matches!(
        cond.wait_for_timeout(|| false, Duration::from_millis(10)),
        Err(AcquireError::Timeout)
    ));
    assert!(matches!(
        cond.wait_for_deadline(|| false, Instant::now() + Duration::from_millis(10)),
        Err(AcquireError::Timeout)
    ));
    cond.wait_for_timeout(|| true, Duration::MAX).unwrap();
    cond.wait_for_deadline(|| true, Instant::now()).unwrap();
    cond.notify(u32::MAX).unwrap();
    // The lock is held again after every timeout.
    cond.notify_all().unwrap();
}

fn notify_when_waited_for(cond: ConditionProxy, waiting: EventProxy) {
    waiting.wait().unwrap();
    let _g = cond.acquire().unwrap();
    cond.notify(1).unwrap();
}

#[test]
fn a_condition_wait_with_duration_max_is_woken_by_a_notify() {
    let _w = watchdog("condition max");
    let manager = Manager::new().unwrap();
    let cond = manager.condition().unwrap();
    let waiting = manager.event().unwrap();
    let _g = cond.acquire().unwrap();
    let child = Process::new(notify_when_waited_for, (cond.clone(), waiting.clone()))
        .start()
        .unwrap();
    // The child can take the lock only once this wait has released it.
    waiting.set().unwrap();
    cond.wait_timeout(Duration::MAX).unwrap();
    child.join().unwrap();
}

fn set_later(ev: EventProxy) {
    // No sleep first: whether the parent's wait has begun or not, it must
    // end with the event set (a `Duration::MAX` wait that has begun waits
    // for this; one that has not finds the event set).
    ev.set().unwrap();
}

#[test]
fn event_proxy_waits_time_out_with_an_error_duration_max_included() {
    let _w = watchdog("event forms");
    let manager = Manager::new().unwrap();
    let ev = manager.event().unwrap();
    let err = ev.wait_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let err = ev.wait_deadline(Instant::now()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let child = Process::new(set_later, ev.clone()).start().unwrap();
    ev.wait_timeout(Duration::MAX).unwrap();
    child.join().unwrap();
    ev.wait_deadline(Instant::now()).unwrap();
    ev.wait().unwrap();
}

fn meet(barrier: BarrierProxy) -> u32 {
    barrier.wait_timeout(Duration::MAX).unwrap()
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
    assert_eq!(indices, vec![0u32, 1, 2]);
    assert_eq!(barrier.parties().unwrap(), 3u32);

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
    // A timeout is a Timeout for the waiter and breaks the barrier for the
    // others, as in Python; abort breaks it as well.
    let err = barrier.wait_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(barrier.broken().unwrap());
    assert_eq!(
        barrier.wait_timeout(Duration::MAX).unwrap_err().kind(),
        ErrorKind::BrokenBarrier
    );
    barrier.reset().unwrap();
    let err = barrier.wait_deadline(Instant::now()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    barrier.reset().unwrap();
    barrier.abort().unwrap();
    assert_eq!(barrier.wait().unwrap_err().kind(), ErrorKind::BrokenBarrier);
    assert_eq!(
        manager.barrier(0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let one = manager.barrier(1).unwrap();
    assert_eq!(one.wait_deadline(Instant::now()).unwrap(), 0);
}

#[test]
fn shutdown_ends_blocked_calls_with_an_error_not_a_hang() {
    let _w = watchdog("shutdown");
    let manager = Manager::new().unwrap();
    let q = manager.queue::<u8>(0).unwrap();
    let lock = manager.lock().unwrap();
    lock.acquire().unwrap().leak();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let getter = s.spawn(|| {
            tx.send(()).unwrap();
            q.get()
        });
        let locker = s.spawn(|| {
            tx.send(()).unwrap();
            lock.acquire().map(drop).map_err(|e| e.kind())
        });
        rx.recv().unwrap();
        rx.recv().unwrap();
        // Blocked in the server (it refused: Remote) or not yet there (it
        // was gone: Eof): either way an error.
        manager.shutdown().unwrap();
        assert!(getter.join().unwrap().is_err());
        let kind = locker.join().unwrap().unwrap_err();
        assert!(
            matches!(kind, ErrorKind::Remote | ErrorKind::Eof),
            "{kind:?}"
        );
    });
    assert_eq!(q.qsize().unwrap_err().kind(), ErrorKind::Eof);
    // Every form of every acquisition says Eof now.
    for result in [
        lock.acquire(),
        lock.try_acquire(),
        lock.acquire_timeout(Duration::MAX),
        lock.acquire_deadline(Instant::now()),
    ] {
        match result {
            Err(e @ AcquireError::Failed(_)) => assert_eq!(e.kind(), ErrorKind::Eof),
            other => panic!("{other:?}"),
        }
    }
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
