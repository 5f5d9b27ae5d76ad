//! Workers as users expect them, under each start method: names in `ps`
//! and `top`, backtraces of panics, log records that reach the parent.
//!
//! The harness (a process per test and start method, a watchdog each, no
//! child or zombie left behind) is `tests/isolated`.

use multiproc::connection::{self, Connection};
use multiproc::{Pool, Process, StartMethod};

mod isolated;

const TESTS: isolated::Tests = &[
    ("names_in_ps", names_in_ps, true),
    ("pool_worker_names_go_on", pool_worker_names_go_on, true),
    ("panics_carry_a_backtrace", panics_carry_a_backtrace, true),
    ("no_backtrace_unless_asked", no_backtrace_unless_asked, true),
];

fn main() {
    isolated::main("workers", TESTS);
}

/// What `ps -o comm=` shows for `pid`.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap()
        .trim_end()
        .to_string()
}

/// What `ps -o args=` shows for `pid`: its cmdline, NULs as spaces.
fn cmdline(pid: u32) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    String::from_utf8_lossy(&bytes)
        .replace('\0', " ")
        .trim_end()
        .to_string()
}

fn app() -> String {
    let argv0 = std::env::args().next().unwrap();
    argv0.rsplit('/').next().unwrap().to_string()
}

/// This process's children whose `comm` is `name`.
fn children_named(name: &str) -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1);
        if ppid == Some(me.as_str()) && head.ends_with(&format!("({name}")) {
            found.push(pid);
        }
    }
    found
}

fn wait_for_word(conn: Connection<u8>) {
    let _ = conn.recv();
}

/// A process shows its name as `comm` (cut to 15 bytes) and `app: name`
/// as its title; the fork server shows as `fork-server`.
fn names_in_ps(method: StartMethod) {
    for name in ["greeter", "a-rather-long-process-name"] {
        let (ours, theirs) = connection::pipe::<u8>().unwrap();
        let p = Process::new(wait_for_word, theirs)
            .name(name)
            .start()
            .unwrap();
        // The child sets its title, then its comm, before it runs.
        let pid = p.pid();
        let expected = &name[..name.len().min(15)];
        wait_until(|| comm(pid) == expected);
        assert_eq!(cmdline(pid), format!("{}: {name}", app()));
        ours.send(&1).unwrap();
        p.join().unwrap();
    }
    let manager = multiproc::Manager::new().unwrap();
    // The manager may not have named itself yet when `new` returns.
    wait_until(|| children_named("SyncManager").len() == 1);
    let managers = children_named("SyncManager");
    assert_eq!(cmdline(managers[0]), format!("{}: SyncManager", app()));
    drop(manager);
    let servers = children_named("fork-server");
    if method == StartMethod::Forkserver {
        assert_eq!(servers.len(), 1, "one fork server: {servers:?}");
        assert_eq!(cmdline(servers[0]), format!("{}: fork-server", app()));
    } else {
        assert!(servers.is_empty(), "no fork server under {method}");
    }
}

/// Polls `done` until it holds (the watchdog ends a test that never gets
/// there). The child names itself before it runs its function, so this
/// waits at most for the child's start.
fn wait_until(mut done: impl FnMut() -> bool) {
    while !done() {
        std::thread::yield_now();
    }
}

fn whoami(_: ()) -> (u32, String) {
    (
        std::process::id(),
        multiproc::current_process().name().to_string(),
    )
}

/// Worker names are unique in the program: a second pool's first worker
/// is `PoolWorker-2`, and each shows its name in `ps`.
fn pool_worker_names_go_on(method: StartMethod) {
    for expected in ["PoolWorker-1", "PoolWorker-2"] {
        let pool = Pool::builder()
            .processes(1)
            .start_method(method)
            .build()
            .unwrap();
        let (pid, name) = pool.apply(whoami, ()).unwrap();
        assert_eq!(name, expected);
        assert_eq!(comm(pid), expected);
        assert_eq!(cmdline(pid), format!("{}: {expected}", app()));
        pool.close();
        pool.join().unwrap();
    }
}

fn deep_in_the_child(_: ()) -> u32 {
    panic!("boom from the child")
}

/// Sets the backtrace variables for the children this test starts (the
/// test process is single-threaded, and starts its fork server later).
#[allow(unsafe_code)]
fn ask_for_backtraces(value: &str) {
    // SAFETY: no other thread of this test process reads the environment.
    unsafe {
        std::env::set_var("RUST_BACKTRACE", value);
        std::env::set_var("RUST_LIB_BACKTRACE", value);
    }
}

/// With `RUST_BACKTRACE=1` in the child's environment, a panic's error
/// carries the child's backtrace, naming the function that panicked; for a
/// process and for a pool task.
fn panics_carry_a_backtrace(method: StartMethod) {
    ask_for_backtraces("1");
    let err = Process::new(deep_in_the_child, ())
        .start()
        .unwrap()
        .join()
        .unwrap_err();
    let bt = err.panic_backtrace().expect("a backtrace");
    assert!(bt.contains("deep_in_the_child"), "{bt}");
    assert!(format!("{err:#}").contains("deep_in_the_child"));
    assert!(!format!("{err}").contains("deep_in_the_child"));
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .unwrap();
    let err = pool.apply(deep_in_the_child, ()).unwrap_err();
    assert_eq!(err.panic_message(), Some("boom from the child"));
    let bt = err.panic_backtrace().expect("a backtrace from the pool");
    assert!(bt.contains("deep_in_the_child"), "{bt}");
    pool.close();
    pool.join().unwrap();
}

/// Without the variables (or with `0`), no backtrace is taken.
fn no_backtrace_unless_asked(method: StartMethod) {
    ask_for_backtraces("0");
    let err = Process::new(deep_in_the_child, ())
        .start()
        .unwrap()
        .join()
        .unwrap_err();
    assert_eq!(err.panic_message(), Some("boom from the child"));
    assert_eq!(err.panic_backtrace(), None);
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .unwrap();
    let err = pool.apply(deep_in_the_child, ()).unwrap_err();
    assert_eq!(err.panic_backtrace(), None);
    pool.close();
    pool.join().unwrap();
}
