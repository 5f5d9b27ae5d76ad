//! A small harness for multi-process suites that must also run under the
//! fork start method (which needs a single-threaded process, so libtest's
//! thread-per-test runner will not do).
//!
//! `main` is a supervisor: it runs this same binary once per start method
//! (`BINARY suite fork`, ...) and reads its output line by line. Each test
//! prints a line when it starts and one when it ends; if no line comes for
//! [`WATCHDOG`], the test is declared hung and the suite process is killed
//! (its children die with it), so a bug fails instead of hanging CI. The
//! suite runs its tests one by one in its main thread and checks at the
//! end that no child process is left.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::panic::AssertUnwindSafe;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use multiproc::StartMethod;

/// How long one test may run.
pub const WATCHDOG: Duration = Duration::from_secs(90);

pub type Test = fn(StartMethod);

/// The `main` of a suite binary. `roles` handles extra command lines
/// (helper programs the tests start); it returns false for an unknown one.
pub fn main(suite_name: &str, tests: &[(&str, Test)], roles: fn(&[String]) -> bool) {
    let args: Vec<String> = std::env::args().collect();
    multiproc::init();
    match args.get(1).map(String::as_str) {
        Some("suite") => run(args[2].parse().expect("a start method"), tests),
        _ if args.iter().any(|a| a == "--list") => {
            if !args.iter().any(|a| a == "--ignored") {
                println!("{suite_name}: test");
            }
        }
        Some(_) if roles(&args[1..]) => {}
        _ => supervise(suite_name),
    }
}

fn supervise(suite_name: &str) {
    let exe = std::env::current_exe().expect("own path");
    let (mut passed, mut failed) = (0, 0);
    for method in ["fork", "spawn", "forkserver"] {
        let mut child = Command::new(&exe)
            .args(["suite", method])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the suite");
        let out = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut current = String::from("(start-up)");
        let hung = loop {
            match rx.recv_timeout(WATCHDOG) {
                Ok(line) => {
                    println!("{line}");
                    if let Some(name) = line.strip_prefix("running ") {
                        current = name.to_string();
                    } else if line.starts_with("test ") && line.ends_with(" ok") {
                        passed += 1;
                    } else if line.starts_with("test ") && line.ends_with("FAILED") {
                        failed += 1;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break false,
                Err(mpsc::RecvTimeoutError::Timeout) => break true,
            }
        };
        if hung {
            let _ = child.kill();
            println!("test {current} ... FAILED (watchdog: no progress for {WATCHDOG:?})");
            failed += 1;
        }
        let status = child.wait().expect("wait");
        let _ = reader.join();
        if !hung && !status.success() {
            println!("suite {method}: {status}");
            failed += 1;
        }
    }
    println!("\n{suite_name}: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

fn run(method: StartMethod, tests: &[(&str, Test)]) {
    multiproc::set_start_method(method).expect("fresh process");
    let mut failed = 0;
    for (name, test) in tests {
        println!("running {method}::{name}");
        let _ = std::io::stdout().flush();
        match std::panic::catch_unwind(AssertUnwindSafe(|| test(method))) {
            Ok(()) => println!("test {method}::{name} ... ok"),
            Err(_) => {
                println!("test {method}::{name} ... FAILED");
                failed += 1;
            }
        }
        let _ = std::io::stdout().flush();
    }
    let leftover = multiproc::active_children();
    if leftover.is_empty() {
        println!("test {method}::no_child_left_behind ... ok");
    } else {
        println!("test {method}::no_child_left_behind ... FAILED ({leftover:?})");
        failed += 1;
    }
    std::process::exit(i32::from(failed > 0));
}

/// Names in /dev/shm now.
pub fn dev_shm() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Blocks forever (until killed).
pub fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// Whether process `pid` is gone or a zombie.
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => matches!(
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next(),
            Some("Z" | "X")
        ),
    }
}
