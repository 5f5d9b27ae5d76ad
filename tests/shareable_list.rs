//! `ShareableList` between programs: Rust makes one and Python 3.11's
//! `ShareableList(name=...)` reads and writes it, Python makes one and Rust
//! reads and writes it, and a child `Process` changes an item by name.
//! Nothing is left in /dev/shm on any path.
//!
//! These tests need `python3` (CPython 3.8 or later: 3.11 on CI) on PATH;
//! without it they fail and say so.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use multiproc::Process;
use multiproc::shared::{ListItem, ShareableList, SharedMemory};

multiproc::test_support!();

mod common;
use common::watchdog;

/// How long a Python program may run before it is killed.
const PYTHON_LIMIT: Duration = Duration::from_secs(30);

/// What every script starts with: the version check and the imports.
const PRELUDE: &str = r#"
import sys
if sys.version_info < (3, 11):
    sys.exit("these tests need CPython 3.11 or later (3.8-3.10 lay a ShareableList out differently), not " + sys.version)
from multiprocessing import resource_tracker, shared_memory
"#;

/// Unlinks the segment `name` when dropped, whoever made it and however the
/// test ends.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        if let Ok(mut shm) = SharedMemory::attach(&self.0) {
            let _ = shm.unlink();
        }
    }
}

fn in_dev_shm(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// A running `python3 -c PRELUDE+script args...`, killed if it runs past
/// [`PYTHON_LIMIT`] or if the test fails first.
struct Python {
    child: Option<Child>,
    pid: rustix::process::Pid,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    /// Dropping the sender disarms the killer.
    killer: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Python {
    fn start(script: &str, args: &[&str]) -> Python {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(format!("{PRELUDE}{script}"))
            .args(args)
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not run python3 ({e}): the ShareableList interop tests need \
                     CPython 3.11's python3 on PATH (it is on every CI machine)"
                )
            });
        let pid = rustix::process::Pid::from_child(&child);
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let (tx, rx) = mpsc::channel::<()>();
        // The pid stays this child's until `finish` or `drop` reaps it,
        // which they do only after this thread has ended.
        let killer = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(PYTHON_LIMIT) {
                eprintln!("python3 ran past {PYTHON_LIMIT:?}: killing it");
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        });
        Python {
            child: Some(child),
            pid,
            stdin,
            stdout,
            stderr: Some(stderr),
            killer: Some((tx, killer)),
        }
    }

    /// The next line Python prints, without its newline (empty at the end).
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end_matches('\n').to_string()
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the exit without reaping, disarms the killer, then reaps.
    fn reap(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = rustix::process::waitid(
            rustix::process::WaitId::Pid(self.pid),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
        );
        if let Some((tx, killer)) = self.killer.take() {
            drop(tx);
            let _ = killer.join();
        }
        child.wait().ok()
    }

    /// Closes Python's stdin, reads the rest of its output, and waits.
    fn finish(mut self) -> Finished {
        drop(self.stdin.take());
        let mut stdout = String::new();
        self.stdout.read_to_string(&mut stdout).unwrap();
        let status = self.reap().unwrap();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    /// Runs a script to its end and returns its output, which must be a
    /// success.
    fn run(script: &str, args: &[&str]) -> String {
        let out = Python::start(script, args).finish();
        assert!(
            out.status.success(),
            "python3 failed ({}):\n{}",
            out.status,
            out.stderr
        );
        out.stdout
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            self.reap();
        }
    }
}

#[test]
fn python_attaches_a_list_made_here_reads_it_and_writes_back() {
    let _w = watchdog("python attaches");
    let name = format!("multiproc-slist-to-python-{}", std::process::id());
    let _unlink = Unlink(name.clone());
    let list = ShareableList::create(
        Some(&name),
        &[
            42.into(),
            (-1.5).into(),
            true.into(),
            ().into(),
            "héllo wörld".into(),
            b"\x00\x01bin".into(),
            (1i64 << 62).into(),
            "".into(),
        ],
    )
    .unwrap();
    let out = Python::run(
        r#"
sl = shared_memory.ShareableList(name=sys.argv[1])
# Python < 3.13 would unlink what it attached when it ends.
resource_tracker.unregister(sl.shm._name, "shared_memory")
print(repr(list(sl)))
print(sl.format)
sl[0] = 43
sl[1] = "py"
sl[2] = None
sl[3] = 2.25
sl[4] = b"from python"
sl[5] = False
sl[7] = -(2 ** 63)
try:
    sl[6] = "nine byte"
except ValueError:
    print("too long")
sl.shm.close()
"#,
        &[&name],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            r"[42, -1.5, True, None, 'héllo wörld', b'\x00\x01bin', 4611686018427387904, '']",
            "qdxxxxxxx?xxxxxx?x16s8sq8s",
            "too long",
        ]
    );
    assert_eq!(
        list.to_vec().unwrap(),
        [
            43.into(),
            "py".into(),
            ().into(),
            2.25.into(),
            b"from python".into(),
            false.into(),
            (1i64 << 62).into(),
            i64::MIN.into(),
        ]
    );
    assert_eq!(list.format().unwrap(), "q8sxxxxxx?xd16sxxxxxxx?qq");
    assert!(
        in_dev_shm(&name),
        "Python's attach left the segment in place"
    );
    drop(list);
    assert!(!in_dev_shm(&name), "the creating handle unlinked it");
}

#[test]
fn rust_attaches_a_list_python_made_and_python_sees_the_writes() {
    let _w = watchdog("rust attaches");
    let mut python = Python::start(
        r#"
sl = shared_memory.ShareableList([7, 0.5, False, None, "naïve", b"raw\xff", "x" * 20])
try:
    print(sl.shm.name, flush=True)
    sys.stdin.readline()
    print(repr(list(sl)), flush=True)
    print(sl.format, flush=True)
finally:
    sl.shm.close()
    sl.shm.unlink()
"#,
        &[],
    );
    let name = python.line();
    let _unlink = Unlink(name.clone());
    assert!(name.starts_with("psm_"), "python3 printed {name:?}");
    let list = ShareableList::attach(&name).unwrap();
    assert_eq!(list.len(), 7);
    assert_eq!(
        list.to_vec().unwrap(),
        [
            7.into(),
            0.5.into(),
            false.into(),
            ().into(),
            "naïve".into(),
            b"raw\xff".into(),
            "x".repeat(20).into(),
        ]
    );
    assert_eq!(list.format().unwrap(), "qdxxxxxxx?xxxxxx?x8s8s24s");
    assert_eq!(list.index(&ListItem::from(false)).unwrap(), Some(2));
    list.set(0, -7).unwrap();
    list.set(1, "rust").unwrap();
    list.set(2, true).unwrap();
    list.set(3, 1.25).unwrap();
    list.set(4, b"bytes").unwrap();
    list.set(6, "é".repeat(12)).unwrap();
    // Python's slots are as tight as ours.
    let e = list.set(5, "123456789").unwrap_err();
    assert_eq!(e.kind(), multiproc::ErrorKind::InvalidArgument, "{e}");
    python.send("done");
    assert_eq!(
        python.line(),
        r"[-7, 'rust', True, 1.25, b'bytes', b'raw\xff', 'éééééééééééé']"
    );
    assert_eq!(python.line(), "q8sxxxxxxx?d8s8s24s");
    let out = python.finish();
    assert!(out.status.success(), "python3 failed:\n{}", out.stderr);
    assert!(!in_dev_shm(&name), "Python unlinked what it made");
    // Attached handles never unlink; this one still reads the memory.
    assert_eq!(list.get(0).unwrap(), (-7).into());
}

/// A child's work: attach the list by name, change item 1, and return what
/// item 0 held.
fn change_by_name(name: String) -> i64 {
    let list = ShareableList::attach(&name).unwrap();
    let before = list.get(0).unwrap().as_int().unwrap();
    list.set(1, "set by the child").unwrap();
    list.set(0, before + 1).unwrap();
    before
}

#[test]
fn a_child_process_attaches_by_name_and_changes_items() {
    let _w = watchdog("child attaches");
    let list = ShareableList::create(None, &[41.into(), "a 16-byte slot..".into()]).unwrap();
    let name = list.name().to_string();
    let _unlink = Unlink(name.clone());
    let child = Process::new(change_by_name, name.clone()).start().unwrap();
    assert_eq!(child.join().unwrap(), 41);
    assert_eq!(
        list.to_vec().unwrap(),
        [42.into(), "set by the child".into()]
    );
    drop(list);
    assert!(!in_dev_shm(&name));
}
