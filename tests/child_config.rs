//! A child's environment, working directory, standard streams, resource
//! limits and CPU affinity (`ProcessBuilder::env` and its neighbours, the
//! pool's `worker_env`, `worker_rlimit`, `cpu_ids`), and the fork
//! server's preload functions, under each start method (the
//! `tests/isolated` harness: a process and a watchdog per test and start
//! method).

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use multiproc::pool::Pool;
use multiproc::{ErrorKind, Process, Resource, StartMethod, Stdio};

mod isolated;

const TESTS: isolated::Tests = &[
    (
        "pool_workers_share_one_output_file",
        pool_workers_share_one_output_file,
        true,
    ),
    ("env_reaches_the_child", env_reaches_the_child, true),
    ("env_clear_leaves_only_what_is_set", env_clear, true),
    ("current_dir_is_the_childs", current_dir_is_the_childs, true),
    (
        "a_missing_dir_fails_the_child_not_the_target",
        missing_dir,
        true,
    ),
    ("stdout_to_a_file_and_stderr_to_a_pipe", streams, true),
    (
        "a_file_that_cannot_be_made_fails_start",
        bad_stdout_path,
        false,
    ),
    ("output_is_captured_and_returned", captured, true),
    ("pool_workers_run_in_their_directory", pool_cwd, false),
    ("pool_workers_that_cannot_be_set_up", pool_bad_setup, true),
    ("rlimits_apply_and_bad_ones_are_refused", rlimits, true),
    (
        "cpu_affinity_applies_and_bad_sets_are_refused",
        affinity,
        true,
    ),
    ("pool_workers_get_env_limits_and_cpus", pool_workers, true),
    ("forkserver_preload_runs_once_in_the_server", preload, false),
    ("a_panicking_preload_fails_the_start", preload_panics, false),
    (
        "a_preload_that_starts_a_thread_fails_the_start",
        preload_thread,
        false,
    ),
];

fn main() {
    isolated::main("child_config", TESTS);
}

/// A directory of this test's, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("multiproc-test-cfg-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn var(name: String) -> Option<String> {
    std::env::var(name).ok()
}

fn env_reaches_the_child(method: StartMethod) {
    let p = Process::new(var, "MULTIPROC_TEST_GREETING".to_string())
        .start_method(method)
        .env("MULTIPROC_TEST_GREETING", "bonjour")
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap().as_deref(), Some("bonjour"));
    // The parent's environment is not touched.
    assert!(std::env::var_os("MULTIPROC_TEST_GREETING").is_none());
    // PATH is in every test process's environment.
    assert!(std::env::var_os("PATH").is_some());
    let p = Process::new(var, "PATH".to_string())
        .start_method(method)
        .env_remove("PATH")
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), None);
    // Names and values the environment cannot hold fail the start.
    for (key, value) in [("A=B", "1"), ("", "1"), ("NUL\0", "1"), ("OK", "nul\0")] {
        let err = Process::new(var, "OK".to_string())
            .start_method(method)
            .env(key, value)
            .start()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{key:?}: {err}");
    }
    assert!(multiproc::active_children().is_empty());
}

fn all_vars() -> Vec<String> {
    let mut keys: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    keys.sort();
    keys
}

fn env_clear(method: StartMethod) {
    let p = Process::new(all_vars, ())
        .start_method(method)
        .env("BEFORE_THE_CLEAR", "gone")
        .env_clear()
        .env("ONLY", "1")
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), ["ONLY"]);
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap()
}

fn current_dir_is_the_childs(method: StartMethod) {
    let dir = TempDir::new("cwd");
    let before = cwd();
    let p = Process::new(cwd, ())
        .start_method(method)
        .current_dir(&dir.0)
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), dir.0.canonicalize().unwrap());
    assert_eq!(cwd(), before);
}

static RAN: AtomicU32 = AtomicU32::new(0);

fn mark_ran(path: PathBuf) {
    std::fs::write(path, "ran").unwrap();
}

fn missing_dir(method: StartMethod) {
    let dir = TempDir::new("missing");
    let marker = dir.0.join("marker");
    let p = Process::new(mark_ran, marker.clone())
        .start_method(method)
        .current_dir(dir.0.join("no-such-dir"))
        .start()
        .unwrap();
    let err = p.join().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ChildSetup, "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    assert!(!marker.exists(), "the target must not run");
}

fn speak() {
    use std::io::Write;
    println!("to stdout");
    eprintln!("to stderr");
    let _ = std::io::stdout().flush();
}

fn streams(method: StartMethod) {
    let dir = TempDir::new("streams");
    let out = dir.0.join("out.txt");
    let (mut reader, writer) = std::io::pipe().unwrap();
    let p = Process::new(speak, ())
        .start_method(method)
        .stdout(Stdio::file(&out))
        .stderr(Stdio::Fd(writer.into()))
        .start()
        .unwrap();
    // The builder's copy of the pipe's write end was closed by start().
    p.join().unwrap();
    let mut err = String::new();
    reader.read_to_string(&mut err).unwrap();
    assert_eq!(err, "to stderr\n");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "to stdout\n");

    // To /dev/null: nothing in a file, and the child still succeeds.
    let p = Process::new(speak, ())
        .start_method(method)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .start()
        .unwrap();
    p.join().unwrap();
}

fn speak_a_lot(lines: u32) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for i in 0..lines {
        writeln!(out, "line {i}").unwrap();
    }
    out.flush().unwrap();
    eprintln!("done");
}

fn captured(method: StartMethod) {
    let p = Process::new(speak, ())
        .start_method(method)
        .stdout(Stdio::capture())
        .stderr(Stdio::capture())
        .start()
        .unwrap();
    p.join_timeout(std::time::Duration::from_secs(60)).unwrap();
    assert_eq!(p.captured_stdout().unwrap(), b"to stdout\n");
    assert_eq!(p.captured_stderr().unwrap(), b"to stderr\n");
    // Read again: the same (pread does not move the child's offset).
    assert_eq!(p.captured_stdout().unwrap(), b"to stdout\n");
    p.join().unwrap();

    // More than a pipe holds, and only stdout captured.
    let p = Process::new(speak_a_lot, 20_000)
        .start_method(method)
        .stdout(Stdio::capture())
        .stderr(Stdio::null())
        .start()
        .unwrap();
    p.join_timeout(std::time::Duration::from_secs(60)).unwrap();
    let out = String::from_utf8(p.captured_stdout().unwrap()).unwrap();
    assert_eq!(out.lines().count(), 20_000);
    assert_eq!(out.lines().last(), Some("line 19999"));
    let err = p.captured_stderr().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    p.join().unwrap();
}

fn pool_cwd(method: StartMethod) {
    let dir = TempDir::new("poolcwd");
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .worker_current_dir(&dir.0)
        .build()
        .unwrap();
    let seen = pool.map(cwd_of, 0..4u32).unwrap();
    let want = dir.0.canonicalize().unwrap();
    assert!(seen.iter().all(|d| *d == want), "{seen:?}");
    pool.close();
    pool.join().unwrap();
}

fn say(x: u32) -> u32 {
    println!("task {x} out");
    // One write per line: Rust's stderr is unbuffered, and eprintln!
    // writes its pieces apart, so two workers' lines could mix.
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("task {x} err\n").as_bytes());
    x
}

fn pool_workers_share_one_output_file(method: StartMethod) {
    let dir = TempDir::new("poolout");
    let (out, err) = (dir.0.join("out.txt"), dir.0.join("err.txt"));
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        // Replacements come and go: none may truncate the file.
        .maxtasksperchild(3)
        .worker_stdout(multiproc::Stdio::file(&out))
        .worker_stderr(multiproc::Stdio::file(&err))
        .build()
        .unwrap();
    assert_eq!(pool.chunksize(1).map(say, 0..20u32).unwrap().len(), 20);
    pool.close();
    pool.join().unwrap();
    for (path, tag) in [(&out, "out"), (&err, "err")] {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        let mut want: Vec<String> = (0..20).map(|x| format!("task {x} {tag}")).collect();
        want.sort();
        assert_eq!(lines, want, "{tag}: {text:?}");
    }
    // Capture is per process.
    let e = Pool::builder()
        .worker_stdout(multiproc::Stdio::capture())
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = Pool::builder()
        .worker_stderr(multiproc::Stdio::file(dir.0.join("no/such/dir")))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
}

fn pool_bad_setup(method: StartMethod) {
    let dir = TempDir::new("poolbad");
    let result = Pool::builder()
        .processes(2)
        .start_method(method)
        .worker_current_dir(dir.0.join("no-such-dir"))
        .build()
        .and_then(|pool| pool.map(cwd_of, 0..4u32));
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ChildSetup, "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

fn cwd_of(_: u32) -> PathBuf {
    cwd()
}

fn bad_stdout_path(method: StartMethod) {
    let dir = TempDir::new("badpath");
    let path = dir.0.join("no-such-dir").join("out.txt");
    let err = Process::new(speak, ())
        .start_method(method)
        .stdout(Stdio::file(&path))
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    assert!(multiproc::active_children().is_empty());
}

/// The soft and hard limits of `name` in /proc/self/limits ("unlimited"
/// as u64::MAX).
fn limit(name: String) -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = text.lines().find(|l| l.starts_with(&name)).unwrap();
    let fields: Vec<&str> = line[name.len()..].split_whitespace().collect();
    let parse = |s: &str| {
        if s == "unlimited" {
            u64::MAX
        } else {
            s.parse().unwrap()
        }
    };
    (parse(fields[0]), parse(fields[1]))
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    uid.split_whitespace().nth(2) == Some("0")
}

fn rlimits(method: StartMethod) {
    let (_, hard) = limit("Max open files".into());
    let want_hard = hard.min(4096);
    let p = Process::new(limit, "Max open files".to_string())
        .start_method(method)
        .rlimit(Resource::NoFile, 100, want_hard)
        .rlimit(Resource::Core, 0, 0)
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), (100, want_hard));

    let err = Process::new(limit, "Max open files".to_string())
        .start_method(method)
        .rlimit(Resource::NoFile, 200, 100)
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("RLIMIT_NOFILE"), "{err}");

    // Raising a hard limit needs privilege: the child says so.
    if !is_root() && hard != u64::MAX {
        let p = Process::new(limit, "Max open files".to_string())
            .start_method(method)
            .rlimit(Resource::NoFile, 100, u64::MAX)
            .start()
            .unwrap();
        let err = p.join().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ChildSetup, "{err}");
        assert!(err.to_string().contains("RLIMIT_NOFILE"), "{err}");
    }
}

fn allowed_cpus() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().to_string()
}

/// The first CPU this process may run on.
fn first_cpu() -> usize {
    let list = allowed_cpus();
    list.split([',', '-']).next().unwrap().parse().unwrap()
}

fn affinity(method: StartMethod) {
    let cpu = first_cpu();
    let p = Process::new(allowed_cpus, ())
        .start_method(method)
        .cpu_affinity([cpu])
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), cpu.to_string());

    for bad in [vec![], vec![1 << 20]] {
        let err = Process::new(allowed_cpus, ())
            .start_method(method)
            .cpu_affinity(bad.clone())
            .start()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}: {err}");
    }
}

fn worker_view(_: u32) -> (Option<String>, u64, String) {
    (
        std::env::var("MULTIPROC_TEST_WORKER").ok(),
        limit("Max open files".into()).0,
        allowed_cpus(),
    )
}

fn pool_workers(method: StartMethod) {
    let cpu = first_cpu();
    let (_, hard) = limit("Max open files".into());
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .maxtasksperchild(3)
        .worker_env("MULTIPROC_TEST_WORKER", "yes")
        .worker_rlimit(Resource::NoFile, 128, hard)
        .cpu_ids([[cpu]])
        .build()
        .unwrap();
    // 3 tasks per worker: the replacements get the same.
    let seen = pool.chunksize(1).map(worker_view, 0..12u32).unwrap();
    for view in seen {
        assert_eq!(view, (Some("yes".to_string()), 128, cpu.to_string()));
    }
    pool.close();
    pool.join().unwrap();

    let err = Pool::builder()
        .processes(2)
        .start_method(method)
        .cpu_ids([[cpu], [cpu], [cpu]])
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

fn load_the_table() {
    RAN.fetch_add(42, Ordering::SeqCst);
}

fn table() -> u32 {
    RAN.load(Ordering::SeqCst)
}

fn preload(_: StartMethod) {
    multiproc::set_forkserver_preload(&[multiproc::preload(load_the_table)]).unwrap();
    for _ in 0..2 {
        let p = Process::new(table, ())
            .start_method(StartMethod::Forkserver)
            .start()
            .unwrap();
        // Loaded once in the server, there in every child.
        assert_eq!(p.join().unwrap(), 42);
    }
    assert_eq!(table(), 0, "the preload runs in the server only");
    let too_many = vec![multiproc::preload(load_the_table); 65];
    let err = multiproc::set_forkserver_preload(&too_many).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

fn panics() {
    panic!("the table is missing");
}

fn preload_panics(_: StartMethod) {
    multiproc::set_forkserver_preload(&[multiproc::preload(panics)]).unwrap();
    let err = Process::new(table, ())
        .start_method(StartMethod::Forkserver)
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Bootstrap, "{err}");
    assert!(err.to_string().contains("the table is missing"), "{err}");
    // With the preload gone, the next start brings up a server that works.
    multiproc::set_forkserver_preload(&[]).unwrap();
    let p = Process::new(table, ())
        .start_method(StartMethod::Forkserver)
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), 0);
}

fn starts_a_thread() {
    // Counted by the server as soon as spawn returns.
    std::thread::spawn(std::thread::park);
}

fn preload_thread(_: StartMethod) {
    multiproc::set_forkserver_preload(&[multiproc::preload(starts_a_thread)]).unwrap();
    let err = Process::new(table, ())
        .start_method(StartMethod::Forkserver)
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Bootstrap, "{err}");
    assert!(err.to_string().contains("preload"), "{err}");
}
