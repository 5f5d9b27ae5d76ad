//! Pool workers that start processes and pools of their own
//! (`PoolBuilder::nested`), under each start method: refused without the
//! option (Python's "daemonic processes are not allowed to have
//! children"), working with it, and what happens to a worker's children
//! when the worker is killed (they die too: parent-death signal).
//!
//! The harness is `tests/isolated` (a process per test and start method,
//! a watchdog each, no child or zombie left behind).

use multiproc::{Pool, Process, StartMethod, current_process};

mod isolated;

const TESTS: isolated::Tests = &[
    (
        "workers_have_no_children_unless_asked",
        workers_have_no_children_unless_asked,
        true,
    ),
    (
        "a_nested_worker_runs_a_process_and_a_pool",
        a_nested_worker_runs_a_process_and_a_pool,
        true,
    ),
    (
        "a_killed_worker_takes_its_children_along",
        a_killed_worker_takes_its_children_along,
        true,
    ),
];

fn main() {
    isolated::main("nested", TESTS);
}

fn double(x: u64) -> u64 {
    x * 2
}

/// Starts a child and reports how that went.
fn try_child(_: ()) -> Result<u64, String> {
    match Process::new(double, 21).start() {
        Ok(p) => p.join().map_err(|e| e.to_string()),
        Err(e) => Err(format!("{:?}: {e}", e.kind())),
    }
}

fn workers_have_no_children_unless_asked(method: StartMethod) {
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .unwrap();
    let err = pool.apply(try_child, ()).unwrap().unwrap_err();
    assert!(err.starts_with("DaemonChild"), "{err}");
    assert!(err.contains("nested"), "the error names the option: {err}");
}

/// A child of the worker, then a pool of the worker's own: the sum of
/// `double` over `0..n`, and the pool workers' parent.
fn fan_out(n: u64) -> (u64, u64, String) {
    let child = Process::new(double, n).start().unwrap().join().unwrap();
    let inner = Pool::new(2).unwrap();
    let sum = inner.map(double, 0..n).unwrap().iter().sum();
    let parent = inner
        .apply(
            |_: ()| multiproc::parent_process().map(|p| p.name().to_string()),
            (),
        )
        .unwrap();
    inner.close();
    inner.join().unwrap();
    (child, sum, parent.unwrap_or_default())
}

fn a_nested_worker_runs_a_process_and_a_pool(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .nested(true)
        .build()
        .unwrap();
    let out = pool.map(fan_out, [10u64, 20, 30]).unwrap();
    for (&(child, sum, ref parent), n) in out.iter().zip([10u64, 20, 30]) {
        assert_eq!(child, 2 * n);
        assert_eq!(sum, n * (n - 1));
        assert!(
            parent.starts_with("PoolWorker-"),
            "inner workers' parent: {parent}"
        );
    }
    pool.close();
    pool.join().unwrap();
    assert_eq!(current_process().name(), "MainProcess");
}

fn sleep_forever(_: ()) {
    loop {
        std::thread::park();
    }
}

/// Starts a child that never ends, leaves it running, and says who is
/// who: (worker pid, child pid).
fn leave_a_child(_: ()) -> (i32, i32) {
    let child = Process::new(sleep_forever, ()).start().unwrap();
    let pid = child.pid() as i32;
    std::mem::forget(child);
    (std::process::id() as i32, pid)
}

/// Whether `pid` runs (it is not gone, nor a zombie no one reaped yet).
fn runs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

fn a_killed_worker_takes_its_children_along(method: StartMethod) {
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .nested(true)
        .build()
        .unwrap();
    let (worker, child) = pool.apply(leave_a_child, ()).unwrap();
    assert!(runs(child), "the worker's child runs");
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(child).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(worker).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // The kernel sends the child its parent-death signal: its pidfd turns
    // readable when it ends (the watchdog is there if it never does).
    let mut fds = [rustix::event::PollFd::new(
        &pidfd,
        rustix::event::PollFlags::IN,
    )];
    rustix::event::poll(&mut fds, None).unwrap();
    assert!(!runs(child), "child {child} outlived its worker {worker}");
    // The pool replaced the worker and goes on.
    assert_eq!(pool.map(double, 0..4).unwrap(), [0, 2, 4, 6]);
}
