//! The process suite, under each start method.
//!
//! The harness (a process per test and start method, a watchdog each, no
//! child or zombie left behind) is `tests/isolated`: the fork start method
//! needs a single-threaded process, which libtest's thread-per-test runner
//! is not.
//!
//! The binary also has small roles that tests start as separate programs:
//! `no-init` (a program that forgot `multiproc::init()`), `log-demo`,
//! `exit-demo` and `cpu-count`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, ExitStatus, Fd, Process, Signal, StartMethod};
use serde::{Deserialize, Serialize};

mod isolated;

use isolated::zombies;

const TESTS: isolated::Tests = &[
    ("returns_value", returns_value, true),
    ("no_argument_and_several", no_argument_and_several, true),
    ("exit_code_is_reported", exit_code_is_reported, true),
    (
        "panic_message_and_location",
        panic_message_and_location,
        true,
    ),
    ("kill_is_reported", kill_is_reported, true),
    ("segfault_is_reported", segfault_is_reported, true),
    ("abort_is_reported", abort_is_reported, true),
    ("terminate_and_interrupt", terminate_and_interrupt, true),
    (
        "join_timeout_on_sleeping_child",
        join_timeout_on_sleeping_child,
        true,
    ),
    ("is_alive_and_exitcode", is_alive_and_exitcode, true),
    ("descriptor_in_arguments", descriptor_in_arguments, true),
    ("descriptor_in_result", descriptor_in_result, true),
    (
        "large_arguments_and_result",
        large_arguments_and_result,
        true,
    ),
    ("names_and_parents", names_and_parents, true),
    ("nested_children", nested_children, true),
    (
        "daemon_may_not_have_children",
        daemon_may_not_have_children,
        true,
    ),
    ("run_trait", run_trait, true),
    ("undecodable_result", undecodable_result, true),
    ("unencodable_arguments", unencodable_arguments, true),
    ("panicking_arguments", panicking_arguments, true),
    ("capturing_closure", capturing_closure, true),
    ("dropped_handle_is_reaped", dropped_handle_is_reaped, true),
    (
        "parent_death_kills_children",
        parent_death_kills_children,
        true,
    ),
    (
        "many_processes_leak_nothing",
        many_processes_leak_nothing,
        true,
    ),
    (
        "not_initialized_is_explained",
        not_initialized_is_explained,
        true,
    ),
    (
        "log_lines_name_the_process",
        log_lines_name_the_process,
        true,
    ),
    (
        "cpu_count_respects_affinity",
        cpu_count_respects_affinity,
        true,
    ),
    (
        "environment_is_the_parents",
        environment_is_the_parents,
        true,
    ),
    (
        "exit_joins_children_and_terminates_daemons",
        exit_joins_children_and_terminates_daemons,
        true,
    ),
    ("fork_refuses_threads", fork_refuses_threads, false),
    (
        "fork_server_starts_where_bind_now_cannot",
        fork_server_starts_where_bind_now_cannot,
        false,
    ),
];

fn main() {
    // A program started in the background by a non-interactive shell (as CI
    // may start the tests) inherits SIGINT ignored, and so would every child;
    // `terminate_and_interrupt` checks what SIGINT does to a child with the
    // default disposition.
    #[allow(unsafe_code)]
    // SAFETY: setting the default disposition installs no code.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("no-init") => {
            // A program that never called init(): it must get a clear error.
            let err = Process::new(add, (1, 2))
                .start_method(StartMethod::Spawn)
                .start()
                .unwrap_err();
            println!("{:?}|{}", err.kind(), err);
        }
        Some("log-demo") => {
            multiproc::init();
            log_demo(args[2].parse().expect("a start method"));
        }
        Some("cpu-count") => {
            multiproc::init();
            println!("{}", multiproc::cpu_count());
        }
        Some("start-one") => {
            multiproc::init();
            match Process::new(add, (1, 2))
                .start_method(StartMethod::Forkserver)
                .start()
                .and_then(Process::join)
            {
                Ok(v) => println!("{v}"),
                Err(e) => println!("error: {e}"),
            }
        }
        Some("exit-demo") => {
            multiproc::init();
            exit_demo(args[2].parse().expect("a start method"));
        }
        _ => isolated::main("start_methods", TESTS),
    }
}

// ---- targets -------------------------------------------------------------

fn add(a: i32, b: i32) -> i32 {
    a + b
}

fn hello() -> String {
    "hello".to_string()
}

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn divide(a: u32, b: u32) -> u32 {
    a / b
}

/// Blocks until the parent writes a byte (or closes the pipe).
fn wait_for_go(fd: Fd) -> u8 {
    let mut f = std::fs::File::from(fd.into_owned());
    let mut b = [0u8; 1];
    let _ = f.read(&mut b);
    b[0]
}

fn block_forever() {
    loop {
        std::thread::park();
    }
}

fn segfault() {
    // raise(SIGSEGV) would not do: Rust's stack-overflow handler catches a
    // raised SIGSEGV and returns. A real invalid access faults again.
    #[allow(unsafe_code)]
    // SAFETY: deliberately not sound: this child exists to crash the way a
    // buggy native library would, by touching an unmapped address.
    unsafe {
        std::ptr::without_provenance::<u8>(8).read_volatile();
    }
}

fn abort() {
    std::process::abort()
}

fn write_to(fd: Fd, text: String) {
    let mut f = std::fs::File::from(fd.into_owned());
    f.write_all(text.as_bytes()).expect("write");
}

fn make_pipe_end() -> Fd {
    let (r, mut w) = std::io::pipe().expect("pipe");
    w.write_all(b"from the child").expect("write");
    Fd::new(r.into())
}

fn echo_len(v: Vec<u8>) -> Vec<u8> {
    let mut out = v.clone();
    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
    out
}

fn who_am_i() -> (String, u32, u32, bool) {
    let me = multiproc::current_process();
    let parent = multiproc::parent_process().expect("a child has a parent");
    (me.name().to_string(), me.pid(), parent.pid(), me.daemon())
}

fn start_grandchild() -> String {
    let p = Process::new(who_am_i, ()).start().expect("grandchild");
    let (name, _, ppid, _) = p.join().expect("grandchild result");
    assert_eq!(ppid, std::process::id());
    name
}

fn try_start_child() -> String {
    match Process::new(hello, ()).start() {
        Ok(_) => "started".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// Starts a grandchild that blocks forever, reports its pid, then blocks.
fn middle(report: Fd) {
    let grandchild = Process::new(block_forever, ()).start().expect("grandchild");
    let mut f = std::fs::File::from(report.into_owned());
    f.write_all(&grandchild.pid().to_le_bytes())
        .expect("report");
    drop(f);
    block_forever()
}

#[derive(Serialize, Deserialize)]
struct Countdown {
    from: u32,
}

impl multiproc::Run for Countdown {
    type Output = Vec<u32>;
    fn run(self) -> Vec<u32> {
        (0..=self.from).rev().collect()
    }
}

/// Serializes fine, refuses to deserialize: a result the parent cannot read.
#[derive(Serialize, Deserialize, Debug)]
#[serde(try_from = "u8")]
struct Picky(u8);

impl TryFrom<u8> for Picky {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        Err(format!("{v} is never acceptable"))
    }
}

fn picky() -> Picky {
    Picky(7)
}

/// Deserializes fine, refuses to serialize: arguments that cannot be sent.
#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(from = "u8")]
struct Shy;

impl From<u8> for Shy {
    fn from(_: u8) -> Self {
        Shy
    }
}

impl Serialize for Shy {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Shy refuses to be encoded"))
    }
}

fn takes_shy(_: Shy) -> u8 {
    1
}

/// Panics when encoded (a user's Serialize with a bug).
#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(from = "u8")]
struct Explosive;

impl From<u8> for Explosive {
    fn from(_: u8) -> Self {
        Explosive
    }
}

impl Serialize for Explosive {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("Explosive went off while being encoded")
    }
}

fn takes_explosive(_: Explosive) -> u8 {
    2
}

// ---- tests ---------------------------------------------------------------

fn returns_value(_: StartMethod) {
    let p = Process::new(add, (2, 3)).start().unwrap();
    assert_eq!(p.join().unwrap(), 5);
    let p = Process::new(|x: u64| x * 2, 21).start().unwrap();
    assert_eq!(p.join().unwrap(), 42);
}

fn no_argument_and_several(_: StartMethod) {
    assert_eq!(
        Process::new(hello, ()).start().unwrap().join().unwrap(),
        "hello"
    );
    fn many(a: u8, b: u16, c: u32, d: String) -> String {
        format!("{a}{b}{c}{d}")
    }
    assert_eq!(
        Process::new(many, (1, 2, 3, "x".into()))
            .start()
            .unwrap()
            .join()
            .unwrap(),
        "123x"
    );
}

fn exit_code_is_reported(_: StartMethod) {
    let err = Process::new(exit_with, 3)
        .start()
        .unwrap()
        .join()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exited);
    assert_eq!(err.exit_status(), Some(ExitStatus::Exited(3)));
    assert!(err.to_string().contains("exited with code 3"), "{err}");
}

fn panic_message_and_location(_: StartMethod) {
    let err = Process::new(divide, (1, 0))
        .name("divider")
        .start()
        .unwrap()
        .join()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert!(
        err.panic_message().unwrap().contains("divide by zero"),
        "{err}"
    );
    assert!(
        err.panic_location().unwrap().contains("start_methods.rs:"),
        "{err}"
    );
    assert_eq!(err.exit_status(), Some(ExitStatus::Exited(1)));
    assert!(err.to_string().contains("'divider'"), "{err}");
}

fn kill_is_reported(_: StartMethod) {
    let p = Process::new(block_forever, ()).start().unwrap();
    p.kill().unwrap();
    let err = p.join().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Killed);
    assert_eq!(err.signal(), Some(Signal::KILL));
    assert!(err.to_string().contains("SIGKILL"), "{err}");
}

fn segfault_is_reported(_: StartMethod) {
    let err = Process::new(segfault, ())
        .start()
        .unwrap()
        .join()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Killed);
    assert_eq!(err.signal(), Some(Signal::SEGV), "{err}");
}

fn abort_is_reported(_: StartMethod) {
    let err = Process::new(abort, ()).start().unwrap().join().unwrap_err();
    assert_eq!(err.signal(), Some(Signal::ABRT), "{err}");
    assert_eq!(err.exit_status().unwrap().python_exitcode(), -6);
}

fn terminate_and_interrupt(_: StartMethod) {
    let p = Process::new(block_forever, ()).start().unwrap();
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap_err().signal(), Some(Signal::TERM));
    let p = Process::new(block_forever, ()).start().unwrap();
    p.interrupt().unwrap();
    assert_eq!(p.join().unwrap_err().signal(), Some(Signal::INT));
}

fn join_timeout_on_sleeping_child(_: StartMethod) {
    let p = Process::new(block_forever, ()).start().unwrap();
    let err = p.join_timeout(Duration::from_millis(50)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let err = p.join_deadline(Instant::now()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(p.is_alive());
    p.kill().unwrap();
    let status = p.join_timeout(Duration::MAX).unwrap();
    assert_eq!(status, ExitStatus::Signaled(Signal::KILL));
    // Once it ended, every form answers at once, with the same status.
    assert_eq!(p.join_deadline(Instant::now()).unwrap(), status);
    assert_eq!(p.join_timeout(Duration::ZERO).unwrap(), status);
    assert!(!p.is_alive());
    // Terminating a process that has ended is not an error, as in Python.
    p.terminate().unwrap();
    p.close().unwrap();
}

fn is_alive_and_exitcode(_: StartMethod) {
    let (r, mut w) = std::io::pipe().unwrap();
    let p = Process::new(wait_for_go, Fd::new(r.into()))
        .start()
        .unwrap();
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    w.write_all(&[9]).unwrap();
    assert_eq!(
        p.join_timeout(Duration::from_secs(60)).unwrap(),
        ExitStatus::Exited(0)
    );
    assert_eq!(p.exitcode(), Some(ExitStatus::Exited(0)));
    assert!(!p.is_alive());
    assert_eq!(p.join().unwrap(), 9);
}

fn descriptor_in_arguments(_: StartMethod) {
    let (mut r, w) = std::io::pipe().unwrap();
    let p = Process::new(write_to, (Fd::new(w.into()), "through a pipe".to_string()))
        .start()
        .unwrap();
    p.join().unwrap();
    let mut text = String::new();
    r.read_to_string(&mut text).unwrap();
    assert_eq!(text, "through a pipe");
}

fn env_of_interest() -> (Option<String>, Option<String>) {
    (
        std::env::var("MULTIPROC_ROLE").ok(),
        std::env::var("LD_BIND_NOW").ok(),
    )
}

/// What multiproc puts in the environment of the programs it executes (the
/// role; LD_BIND_NOW for the fork server) does not reach the user's code.
fn environment_is_the_parents(_: StartMethod) {
    let child = Process::new(env_of_interest, ())
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(child, env_of_interest());
    assert_eq!(child.0, None);
}

fn descriptor_in_result(_: StartMethod) {
    let fd = Process::new(make_pipe_end, ())
        .start()
        .unwrap()
        .join()
        .unwrap();
    let mut text = String::new();
    std::fs::File::from(fd.into_owned())
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "from the child");
}

fn large_arguments_and_result(_: StartMethod) {
    let big: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
    let back = Process::new(echo_len, big.clone())
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(&back[..big.len()], &big[..]);
    assert_eq!(&back[big.len()..], &(big.len() as u64).to_le_bytes());
}

fn names_and_parents(_: StartMethod) {
    assert_eq!(multiproc::current_process().name(), "MainProcess");
    assert!(multiproc::parent_process().is_none());
    let p = Process::new(who_am_i, ()).start().unwrap();
    let default_name = p.name().to_string();
    assert!(default_name.starts_with("Process-"), "{default_name}");
    let pid = p.pid();
    let (name, child_pid, ppid, daemon) = p.join().unwrap();
    assert_eq!(
        (name, child_pid, ppid, daemon),
        (default_name, pid, std::process::id(), false)
    );
    let p = Process::new(who_am_i, ())
        .name("named")
        .daemon(true)
        .start()
        .unwrap();
    let (name, _, _, daemon) = p.join().unwrap();
    assert_eq!((name.as_str(), daemon), ("named", true));
}

fn nested_children(_: StartMethod) {
    let p = Process::new(start_grandchild, ()).start().unwrap();
    let parent_name = p.name().to_string();
    let grandchild = p.join().unwrap();
    // Python names the children of Process-3 "Process-3:1", "Process-3:2", ...
    assert_eq!(grandchild, format!("{parent_name}:1"));
}

fn daemon_may_not_have_children(_: StartMethod) {
    let p = Process::new(try_start_child, ())
        .daemon(true)
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), "DaemonChild");
}

fn run_trait(_: StartMethod) {
    let p = Process::from_run(Countdown { from: 3 }).start().unwrap();
    assert_eq!(p.join().unwrap(), vec![3, 2, 1, 0]);
}

fn undecodable_result(_: StartMethod) {
    let err = Process::new(picky, ()).start().unwrap().join().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert_eq!(err.exit_status(), Some(ExitStatus::Exited(0)));
}

/// Arguments that fail to encode are an Encode error from start(), and the
/// child that was already asked for is gone: no zombie, nothing running.
fn unencodable_arguments(method: StartMethod) {
    let started = Process::new(takes_shy, Shy).start();
    if method == StartMethod::Fork {
        // The fork child gets the value in memory: nothing to encode.
        assert_eq!(started.unwrap().join().unwrap(), 1);
        return;
    }
    let err = started.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode, "{err}");
    assert!(err.to_string().contains("Shy"), "{err}");
    assert!(multiproc::active_children().is_empty());
    assert_eq!(zombies(), Vec::<u32>::new());
    // The fork server is still of service.
    assert_eq!(
        Process::new(add, (1, 2)).start().unwrap().join().unwrap(),
        3
    );
}

/// A panic in the arguments' Serialize reaches the caller of start(), and
/// the child already asked for is gone: no zombie, nothing running.
fn panicking_arguments(method: StartMethod) {
    let started = std::panic::catch_unwind(|| Process::new(takes_explosive, Explosive).start());
    if method == StartMethod::Fork {
        assert_eq!(started.unwrap().unwrap().join().unwrap(), 2);
        return;
    }
    let payload = started.unwrap_err();
    let message = payload.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(message.contains("Explosive"), "{message:?}");
    assert!(multiproc::active_children().is_empty());
    assert_eq!(zombies(), Vec::<u32>::new());
    assert_eq!(
        Process::new(add, (2, 2)).start().unwrap().join().unwrap(),
        4
    );
}

fn capturing_closure(method: StartMethod) {
    let offset = 10u64;
    let started = Process::new(move |x: u64| x + offset, 5).start();
    // Process::fork always forks, whatever the default start method.
    assert_eq!(
        Process::fork(move || offset * 2)
            .start()
            .unwrap()
            .join()
            .unwrap(),
        20
    );
    if method == StartMethod::Fork {
        assert_eq!(started.unwrap().join().unwrap(), 15);
    } else {
        let err = started.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CapturingClosure);
        assert!(err.to_string().contains("Process::fork"), "{err}");
        let err = Process::fork(move || offset)
            .start_method(method)
            .start()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CapturingClosure);
    }
}

fn dropped_handle_is_reaped(_: StartMethod) {
    let (r, mut w) = std::io::pipe().unwrap();
    let p = Process::new(wait_for_go, Fd::new(r.into()))
        .start()
        .unwrap();
    let pid = p.pid();
    drop(p);
    assert!(multiproc::active_children().iter().any(|c| c.pid() == pid));
    w.write_all(&[1]).unwrap();
    // The child ends by itself now; active_children() reaps it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while multiproc::active_children().iter().any(|c| c.pid() == pid) {
        assert!(Instant::now() < deadline, "child {pid} never ended");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!zombies().contains(&pid));
}

fn parent_death_kills_children(_: StartMethod) {
    let (mut r, w) = std::io::pipe().unwrap();
    let m = Process::new(middle, Fd::new(w.into())).start().unwrap();
    let mut pid = [0u8; 4];
    r.read_exact(&mut pid).unwrap();
    let grandchild = u32::from_le_bytes(pid);
    assert!(alive(grandchild));
    m.kill().unwrap();
    assert_eq!(m.join().unwrap_err().signal(), Some(Signal::KILL));
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(grandchild) {
        assert!(
            Instant::now() < deadline,
            "grandchild {grandchild} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn many_processes_leak_nothing(method: StartMethod) {
    // Warm up (the fork server's descriptors are opened once).
    Process::new(hello, ()).start().unwrap().join().unwrap();
    let fds_before = open_fds();
    let n = if method == StartMethod::Spawn {
        200
    } else {
        500
    };
    for i in 0..n {
        assert_eq!(
            Process::new(add, (i, 1)).start().unwrap().join().unwrap(),
            i + 1
        );
    }
    assert_eq!(open_fds(), fds_before, "descriptors leaked");
    assert!(zombies().is_empty(), "zombies: {:?}", zombies());
    assert!(multiproc::active_children().is_empty());
}

fn not_initialized_is_explained(_: StartMethod) {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("no-init")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NotInitialized|"), "{text}");
    assert!(text.contains("multiproc::init()"), "{text}");
}

fn log_lines_name_the_process(method: StartMethod) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["log-demo", method.name()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    let parent = format!(
        "[INFO/MainProcess {}]",
        out.stdout
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            .trim()
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&parent) && l.contains("started logged")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("[INFO/logged ") && l.contains("from the child")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("logged") && l.contains("exited with code 0")),
        "{text}"
    );
}

fn log_from_child() {
    log::info!("from the child");
}

fn log_demo(method: StartMethod) {
    multiproc::log_to_stderr(log::LevelFilter::Info);
    print!("{}", std::process::id());
    Process::new(log_from_child, ())
        .name("logged")
        .start_method(method)
        .start()
        .unwrap()
        .join()
        .unwrap();
}

/// Starts a non-daemon child that works a little and a daemon that never
/// ends, then returns from main without joining either.
fn exit_demo(method: StartMethod) {
    multiproc::log_to_stderr(log::LevelFilter::Info);
    multiproc::set_start_method(method).unwrap();
    fn work() -> u64 {
        (0..2_000_000u64).fold(0, |a, x| a.wrapping_add(x * x))
    }
    let worker = Process::new(work, ()).name("worker").start().unwrap();
    let daemon = Process::new(block_forever, ())
        .name("sleeper")
        .daemon(true)
        .start()
        .unwrap();
    drop((worker, daemon));
}

fn exit_joins_children_and_terminates_daemons(method: StartMethod) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["exit-demo", method.name()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    let parent_says = |a: &str, b: &str| {
        text.lines()
            .any(|l| l.starts_with("[INFO/MainProcess") && l.contains(a) && l.contains(b))
    };
    assert!(parent_says("terminating daemon sleeper", ""), "{text}");
    assert!(parent_says("joining worker", ""), "{text}");
    assert!(parent_says("worker (pid", "exited with code 0"), "{text}");
    assert!(parent_says("sleeper (pid", "killed by SIGTERM"), "{text}");
}

fn cpu_count_respects_affinity(_: StartMethod) {
    let all = multiproc::cpu_count();
    assert!(all >= 1);
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(std::env::current_exe().unwrap())
        .arg("cpu-count")
        .output();
    match out {
        Ok(out) if out.status.success() => {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1")
        }
        _ => println!("(taskset not available: affinity not checked)"),
    }
}

/// The fork server runs with LD_BIND_NOW; a program whose libraries call a
/// function nobody defines runs fine lazily but cannot start that way. The
/// fork server must still start (without it). The library is preloaded
/// into a program of our own, built here with cc.
fn fork_server_starts_where_bind_now_cannot(_: StartMethod) {
    let dir = std::env::temp_dir().join(format!("multiproc-bindnow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("needs_missing.c");
    let lib = dir.join("libneeds_missing.so");
    std::fs::write(
        &source,
        "extern void multiproc_test_missing_function(void);\n\
         void multiproc_test_caller(void) { multiproc_test_missing_function(); }\n",
    )
    .unwrap();
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&source)
        .status()
        .expect("cc (the tests need a C compiler)");
    assert!(built.success(), "cc failed");
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("start-one")
        .env("LD_PRELOAD", &lib)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "3",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
}

/// Under any start method setting: `fork` itself is what is refused.
fn fork_refuses_threads(_: StartMethod) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || rx.recv());
    let err = Process::new(hello, ())
        .start_method(StartMethod::Fork)
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ForkWithThreads, "{err}");
    assert!(err.to_string().contains("2 threads"), "{err}");
    // The other thread waits in recv() and holds no lock the child needs.
    #[allow(unsafe_code)]
    // SAFETY: the only other thread is blocked in rx.recv(), holding no lock.
    let p = unsafe {
        Process::new(hello, ())
            .start_method(StartMethod::Fork)
            .allow_fork_with_threads()
    };
    assert_eq!(p.start().unwrap().join().unwrap(), "hello");
    tx.send(()).unwrap();
    t.join().unwrap().unwrap();
}

// ---- helpers -------------------------------------------------------------

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn open_fds() -> HashSet<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
