//! A harness for multi-process suites that run every test in a process of
//! its own, under each start method (`tests/start_methods.rs`,
//! `tests/pool_start_methods.rs`, `tests/queue.rs`, `tests/pipe.rs`).
//!
//! The suite binary has its own `main` (`harness = false`), because the
//! fork start method needs a single-threaded process. `main` is a
//! supervisor: it runs this same binary once per test and start method
//! (`BINARY run fork NAME`), each with its own watchdog that kills it (and
//! so its children) if it hangs; each test process checks that it leaves
//! no child and no zombie behind. The output ends in `SUITE: N passed, N
//! failed`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::StartMethod;

/// How long one test may run before the supervisor kills it.
pub const WATCHDOG: Duration = Duration::from_secs(90);

/// A test: runs in its own process with the start method it is given.
pub type Test = fn(StartMethod);

/// A suite: each test's name, body, and whether it runs under each start
/// method (`true`) or once (under the default, forkserver).
pub type Tests = &'static [(&'static str, Test, bool)];

/// The `main` of a suite binary.
pub fn main(suite: &str, tests: Tests) {
    let args: Vec<String> = std::env::args().collect();
    multiproc::init();
    match args.get(1).map(String::as_str) {
        Some("run") => run_one(tests, args[2].parse().expect("a start method"), &args[3]),
        // cargo nextest lists tests first, then runs each by name: this
        // binary is one test to it.
        _ if args.iter().any(|a| a == "--list") => {
            if !args.iter().any(|a| a == "--ignored") {
                println!("all_{suite}_tests: test");
            }
        }
        _ => supervise(suite, tests),
    }
}

fn supervise(suite: &str, tests: Tests) {
    let exe = std::env::current_exe().expect("own path");
    let (mut passed, mut failed) = (0, 0);
    for (name, _, every_method) in tests {
        let methods: &[&str] = if *every_method {
            &["fork", "spawn", "forkserver"]
        } else {
            &["forkserver"]
        };
        for method in methods {
            let mut child = Command::new(&exe)
                .args(["run", method, name])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a test");
            let mut out = child.stdout.take().expect("piped");
            let reader = std::thread::spawn(move || {
                let mut text = String::new();
                let _ = out.read_to_string(&mut text);
                text
            });
            let deadline = Instant::now() + WATCHDOG;
            let status = loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    break Some(status);
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            print!("{}", reader.join().expect("reader"));
            match status {
                Some(s) if s.success() => {
                    println!("test {method}::{name} ... ok");
                    passed += 1;
                }
                Some(s) => {
                    println!("test {method}::{name} ... FAILED ({s})");
                    failed += 1;
                }
                None => {
                    println!("test {method}::{name} ... FAILED (watchdog: hung for {WATCHDOG:?})");
                    failed += 1;
                }
            }
            let _ = std::io::stdout().flush();
        }
    }
    println!("\n{suite}: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

fn run_one(tests: Tests, method: StartMethod, name: &str) {
    multiproc::set_start_method(method).expect("fresh process");
    let (_, test, _) = tests
        .iter()
        .find(|(n, _, _)| *n == name)
        .expect("a test name");
    test(method);
    let leftover = multiproc::active_children();
    assert!(leftover.is_empty(), "children left running: {leftover:?}");
    assert!(zombies().is_empty(), "zombies left: {:?}", zombies());
}

/// This process's children that have exited but were not reaped.
pub fn zombies() -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if rest.first() == Some(&"Z") && rest.get(1) == Some(&me.as_str()) {
            found.push(pid);
        }
    }
    found
}
