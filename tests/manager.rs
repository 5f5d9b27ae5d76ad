//! Managers: shared dict, list, set and namespace across processes,
//! registered types, atomic updates, remote use, and faults.

use std::sync::mpsc;
use std::time::Duration;

use multiproc::connection::{Address, Client};
use multiproc::manager::{DictProxy, ListProxy, Namespace, ObjectProxy, SharedObject};
use multiproc::{ErrorKind, Manager, Process};
use serde::{Deserialize, Serialize};

multiproc::test_support!();

struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

fn watchdog(name: &'static str) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(120)) {
            eprintln!("watchdog: {name} hung; aborting");
            std::process::abort();
        }
    });
    Watchdog(tx)
}

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

    // The server dies: the next call says so, without hanging.
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
}

#[test]
fn malformed_and_oversized_requests_are_refused() {
    let _w = watchdog("malformed");
    let manager = Manager::builder().authkey(b"k").start().unwrap();
    let d = manager.dict::<u8, u8>().unwrap();
    let raw = Client::connect::<()>(manager.address(), Some(b"k")).unwrap();
    raw.send_bytes(&[0xff, 0xff, 0xff, 0x01]).unwrap();
    let reply = raw.recv_bytes().unwrap();
    assert!(!reply.is_empty());
    d.insert(1, 2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
}
