//! Attacks and hostile limits, made for real: another user's files in
//! `/dev/shm`, a full `/dev/shm`, an address-space limit, a kill of the
//! application's whole process group, names built to inject the tracker's
//! protocol, and a setuid copy of the program told by its environment to
//! act as a child.
//!
//! Each test runs in a process of its own (`tests/isolated`), so the ones
//! that start programs under `prlimit`, `unshare` or a setuid bit run this
//! same binary again in a *role* (`BINARY role NAME`). Tests that need
//! root (CI runs as root) say so and pass without asserting anything
//! otherwise, printing why.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::connection::{Address, Listener, pipe};
use multiproc::queue::Queue;
use multiproc::shared::SharedMemory;
use multiproc::{ErrorKind, StartMethod};

mod isolated;

const TESTS: isolated::Tests = &[
    (
        "symlink_at_a_name_is_refused",
        symlink_at_a_name_is_refused,
        false,
    ),
    (
        "another_users_segment_is_refused",
        another_users_segment_is_refused,
        false,
    ),
    (
        "full_dev_shm_is_enospc_at_creation",
        full_dev_shm_is_enospc_at_creation,
        false,
    ),
    (
        "queues_and_pipes_under_a_2_gib_address_space_limit",
        queues_and_pipes_under_a_2_gib_address_space_limit,
        false,
    ),
    (
        "a_queue_out_of_address_space_says_so_and_loses_nothing",
        a_queue_out_of_address_space_says_so_and_loses_nothing,
        false,
    ),
    (
        "names_that_would_inject_the_tracker_are_refused",
        names_that_would_inject_the_tracker_are_refused,
        false,
    ),
    (
        "the_tracker_outlives_a_kill_of_the_whole_group",
        the_tracker_outlives_a_kill_of_the_whole_group,
        false,
    ),
    (
        "sockets_live_in_a_fresh_private_directory",
        sockets_live_in_a_fresh_private_directory,
        false,
    ),
    (
        "a_killed_owners_socket_directory_is_removed",
        a_killed_owners_socket_directory_is_removed,
        false,
    ),
    (
        "stalled_handshakes_cost_no_thread_and_block_no_client",
        stalled_handshakes_cost_no_thread_and_block_no_client,
        false,
    ),
    (
        "a_server_at_its_descriptor_limit_does_not_spin",
        a_server_at_its_descriptor_limit_does_not_spin,
        false,
    ),
    (
        "hostile_handshake_headers_are_refused_and_the_listener_goes_on",
        hostile_handshake_headers_are_refused_and_the_listener_goes_on,
        false,
    ),
    (
        "at_the_descriptor_limit_errors_say_too_many_open_files",
        at_the_descriptor_limit_errors_say_too_many_open_files,
        false,
    ),
    (
        "hostile_lengths_under_a_2_gib_address_space_limit",
        hostile_lengths_under_a_2_gib_address_space_limit,
        false,
    ),
    (
        "a_descriptor_flood_inside_one_message_is_closed_as_it_comes",
        a_descriptor_flood_inside_one_message_is_closed_as_it_comes,
        false,
    ),
    (
        "a_setuid_copy_ignores_the_role_in_its_environment",
        a_setuid_copy_ignores_the_role_in_its_environment,
        false,
    ),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("role") {
        multiproc::init();
        role(&args[2..]);
        return;
    }
    isolated::main("hardening", TESTS);
}

/// What this binary does when started as `BINARY role NAME ARGS...`.
fn role(args: &[String]) {
    match args[0].as_str() {
        "full-shm" => {
            let name = &args[1];
            let err = SharedMemory::create(name, 4 << 20).expect_err("4 MiB in a 1 MiB /dev/shm");
            let io = std::error::Error::source(&err)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .map(|e| e.raw_os_error());
            assert_eq!(io, Some(Some(libc::ENOSPC)), "{err}");
            assert!(
                !Path::new(&format!("/dev/shm/{name}")).exists(),
                "a failed create leaves no name behind"
            );
            // What fits still works.
            let mut small = SharedMemory::create(name, 64 << 10).expect("64 KiB fits");
            small.write(0, b"ok").unwrap();
            small.unlink().unwrap();
            println!("full-shm ok");
        }
        "many" => {
            let queues: Vec<Queue<Vec<u8>>> = (0..48).map(|_| Queue::new().unwrap()).collect();
            let pipes: Vec<_> = (0..48).map(|_| pipe::<Vec<u8>>().unwrap()).collect();
            let msg = vec![7u8; 1 << 20];
            for q in &queues {
                for _ in 0..4 {
                    q.put(msg.clone()).unwrap(); // makes each ring grow
                }
            }
            for (a, b) in &pipes {
                a.send(&msg).unwrap();
                assert_eq!(b.recv().unwrap(), msg);
            }
            for q in &queues {
                for _ in 0..4 {
                    assert_eq!(q.get().unwrap(), msg);
                }
            }
            println!("many ok");
        }
        "hostile-lengths" => {
            // Python's `-1` escape and an 8-byte length, a few bytes of
            // body, a hang-up: under no limit, end of file, with memory
            // taken only for the bytes that came (before: 2^62 aborted the
            // process, 20 GiB was reserved, which fails under the limit);
            // under a 1 GiB limit, refused from the header.
            use std::io::Write;
            for address in [
                Address::Tcp("127.0.0.1:0".parse().unwrap()),
                Address::Unix(
                    std::env::temp_dir().join(format!("multiproc-hostile-{}", std::process::id())),
                ),
            ] {
                let listener = Listener::bind(address, None).unwrap();
                let address = listener.address().clone();
                for (limit, want) in [
                    (usize::MAX, ErrorKind::Eof),
                    (1 << 30, ErrorKind::MessageTooLarge),
                ] {
                    listener.set_max_message_size(limit);
                    for len in [1u64 << 62, 1 << 63, u64::MAX, 20 << 30, 3 << 30] {
                        let mut bytes = (-1i32).to_be_bytes().to_vec();
                        bytes.extend_from_slice(&len.to_be_bytes());
                        bytes.extend_from_slice(&[7; 5000]);
                        let a = address.clone();
                        let peer = std::thread::spawn(move || {
                            let mut s: Box<dyn Write> = match &a {
                                Address::Unix(p) => {
                                    Box::new(std::os::unix::net::UnixStream::connect(p).unwrap())
                                }
                                Address::Tcp(t) => {
                                    Box::new(std::net::TcpStream::connect(t).unwrap())
                                }
                            };
                            let _ = s.write_all(&bytes);
                        });
                        let conn = listener.accept::<Vec<u8>>().unwrap();
                        let e = conn.recv_bytes().unwrap_err();
                        assert_eq!(e.kind(), want, "{address} {len}: {e}");
                        peer.join().unwrap();
                    }
                }
            }
            println!("hostile-lengths ok");
        }
        "grow-until-enomem" => {
            let q: Queue<Vec<u8>> = Queue::new().unwrap();
            q.put(vec![1, 2, 3]).unwrap();
            let big = vec![9u8; 32 << 20];
            let mut put = 0;
            let err = loop {
                match q.put(big.clone()) {
                    Ok(()) => put += 1,
                    Err(e) => break e,
                }
                assert!(put < 1000, "the limit never bit");
            };
            let text = format!("{}", multiproc::Error::from(err));
            assert!(text.contains("ulimit -v"), "{text}");
            // Nothing lost: what was put before is all there.
            assert_eq!(q.get().unwrap(), vec![1, 2, 3]);
            for _ in 0..put {
                assert_eq!(q.get().unwrap().len(), big.len());
            }
            println!("grow-until-enomem ok after {put} messages");
        }
        "create-and-hang" => {
            let shm = SharedMemory::create(&args[1], 4096).unwrap();
            shm.write(0, b"x").unwrap();
            println!("created");
            loop {
                std::thread::park();
            }
        }
        "listen-and-hang" => {
            let listener = multiproc::connection::Listener::bind_temp(None).unwrap();
            println!("{}", listener.address());
            loop {
                std::thread::park();
            }
        }
        "secure" => println!("secure: ran as a program, not as a child"),
        other => panic!("unknown role {other}"),
    }
}

fn exe() -> PathBuf {
    std::env::current_exe().expect("own path")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `command` (a role of this binary under some wrapper) with a
/// watchdog; returns its stdout, panicking with its stderr if it failed.
fn run(command: &mut Command) -> String {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a role");
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            std::thread::park_timeout(Duration::from_millis(100));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    });
    let out = child.wait_with_output().expect("wait for a role");
    watchdog.thread().unpark();
    let _ = watchdog.join();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{:?} failed ({}):\n{stdout}\n{}",
        command,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn unique(what: &str) -> String {
    format!("multiproc-hardening-{what}-{}", std::process::id())
}

fn symlink_at_a_name_is_refused(_: StartMethod) {
    let dir = tempdir();
    let target = dir.join("victim");
    std::fs::write(&target, b"secret").unwrap();
    let name = unique("link");
    let link = format!("/dev/shm/{name}");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let attached = SharedMemory::attach(&name);
    let created = SharedMemory::create(&name, 4096);
    std::fs::remove_file(&link).unwrap();
    let contents = std::fs::read(&target).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let err = attached.expect_err("a symlink was followed");
    assert_eq!(err.kind(), ErrorKind::Io);
    let os = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .and_then(|e| e.raw_os_error());
    assert_eq!(os, Some(libc::ELOOP), "{err}");
    assert!(created.is_err(), "create went through the symlink");
    assert_eq!(contents, b"secret", "the symlink's target was written");
}

fn another_users_segment_is_refused(_: StartMethod) {
    if !is_root() {
        println!("skipped: needs root to make a file of another uid");
        return;
    }
    let name = unique("foreign");
    let path = format!("/dev/shm/{name}");
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let attached = SharedMemory::attach(&name);
    std::fs::remove_file(&path).unwrap();
    let err = attached.expect_err("another user's segment was attached");
    assert!(err.to_string().contains("uid 65534"), "{err}");
    // A FIFO planted at the name neither blocks nor is opened.
    let fifo = unique("fifo");
    let status = Command::new("mkfifo")
        .arg(format!("/dev/shm/{fifo}"))
        .status();
    if status.is_ok_and(|s| s.success()) {
        let attached = SharedMemory::attach(&fifo);
        std::fs::remove_file(format!("/dev/shm/{fifo}")).unwrap();
        let err = attached.expect_err("a FIFO was attached");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}

fn full_dev_shm_is_enospc_at_creation(_: StartMethod) {
    if !is_root() || !have("unshare") {
        println!("skipped: needs root and unshare to mount a small /dev/shm");
        return;
    }
    // A private mount namespace with a 1 MiB /dev/shm: before the fix the
    // creation succeeded and the first write past 1 MiB was a SIGBUS.
    let script = format!(
        "mount -t tmpfs -o size=1m tmpfs /dev/shm && exec {} role full-shm {}",
        exe().display(),
        unique("full")
    );
    let out = run(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    assert!(out.contains("full-shm ok"), "{out}");
}

fn queues_and_pipes_under_a_2_gib_address_space_limit(_: StartMethod) {
    if !have("prlimit") {
        println!("skipped: needs prlimit");
        return;
    }
    // Before: each queue reserved 16 GiB of address space, each pipe
    // 256 MiB, and `Queue::new()` failed with a bare ENOMEM.
    let out = run(Command::new("prlimit")
        .arg(format!("--as={}", 2u64 << 30))
        .arg(exe())
        .args(["role", "many"]));
    assert!(out.contains("many ok"), "{out}");
}

fn hostile_lengths_under_a_2_gib_address_space_limit(_: StartMethod) {
    if !have("prlimit") {
        println!("skipped: needs prlimit");
        return;
    }
    let out = run(Command::new("prlimit")
        .arg(format!("--as={}", 2u64 << 30))
        .arg(exe())
        .args(["role", "hostile-lengths"]));
    assert!(out.contains("hostile-lengths ok"), "{out}");
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn a_descriptor_flood_inside_one_message_is_closed_as_it_comes(_: StartMethod) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::os::fd::AsFd;
    // A peer announces a 1 MiB message and sends it in 2000 pieces, each
    // with a descriptor attached: before, all 2000 stayed open in the
    // receiver until the message ended (and a longer message could fill
    // the descriptor table); now a frame holds at most 255.
    let listener = Listener::bind_temp(None).unwrap();
    let path = match listener.address() {
        Address::Unix(p) => p.clone(),
        other => panic!("{other}"),
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let peer = std::thread::spawn(move || {
        let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (_r, w) = std::io::pipe().unwrap();
        let mut header = (1i32 << 20).to_be_bytes().to_vec();
        header.push(0);
        let mut pieces = vec![header];
        pieces.extend((0..2000).map(|_| vec![7u8; 10]));
        for piece in &pieces {
            let mut space =
                [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            let fds = [w.as_fd()];
            assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
            let n = rustix::net::sendmsg(
                &s,
                &[std::io::IoSlice::new(piece)],
                &mut control,
                SendFlags::empty(),
            )
            .unwrap();
            assert_eq!(n, piece.len());
        }
        done_tx.send(()).unwrap();
        s
    });
    let conn = listener.accept::<Vec<u8>>().unwrap();
    let before = open_fds();
    let mut most = before;
    // Read everything the peer sends (poll reads what arrives; the
    // message never completes).
    let mut finished = false;
    loop {
        let ready = conn.poll(Some(Duration::from_millis(20))).unwrap();
        assert!(!ready, "the message cannot be complete");
        most = most.max(open_fds());
        if finished {
            break;
        }
        finished = done_rx.try_recv().is_ok();
    }
    let s = peer.join().unwrap();
    let held = most.saturating_sub(before);
    println!("descriptors held for one unfinished message: at most {held}");
    assert!(held <= 255 + 8, "{held} descriptors held");
    drop(s);
    assert_eq!(conn.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
    drop(conn);
    assert!(open_fds() <= before, "descriptors left open");
}

fn a_queue_out_of_address_space_says_so_and_loses_nothing(_: StartMethod) {
    if !have("prlimit") {
        println!("skipped: needs prlimit");
        return;
    }
    let out = run(Command::new("prlimit")
        .arg(format!("--as={}", 1u64 << 30))
        .arg(exe())
        .args(["role", "grow-until-enomem"]));
    assert!(out.contains("grow-until-enomem ok"), "{out}");
}

fn names_that_would_inject_the_tracker_are_refused(_: StartMethod) {
    for name in [
        "a\n-victim",
        "a\rb",
        "tab\there",
        "nul\0",
        "..",
        "a/b",
        "esc\u{1b}[2J",
    ] {
        let err = SharedMemory::create(name, 4096).expect_err(name);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name:?}");
        let err = SharedMemory::attach(name).expect_err(name);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name:?}");
    }
}

fn the_tracker_outlives_a_kill_of_the_whole_group(_: StartMethod) {
    let name = unique("group");
    let path = format!("/dev/shm/{name}");
    let mut child = Command::new(exe())
        .args(["role", "create-and-hang", &name])
        .process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the creator");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "created");
    assert!(Path::new(&path).exists());
    // What a supervisor or a shell does to a job: SIGKILL to the group.
    let group = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
    child.wait().unwrap();
    // The tracker, in a group of its own, sees its pipe close and unlinks
    // the name; wait for that (bounded: the watchdog of this test is the
    // harness's, this deadline only gives a clear message).
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&path).exists() && Instant::now() < deadline {
        std::thread::park_timeout(Duration::from_millis(20));
    }
    let left = Path::new(&path).exists();
    if left {
        let _ = std::fs::remove_file(&path);
    }
    assert!(!left, "the tracker died with the group and left {path}");
}

fn a_setuid_copy_ignores_the_role_in_its_environment(_: StartMethod) {
    if !is_root() {
        println!("skipped: needs root to make a setuid copy of another uid");
        return;
    }
    let dir = tempdir();
    let copy = dir.join("setuid-copy");
    std::fs::copy(exe(), &copy).unwrap();
    std::os::unix::fs::chown(&copy, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    // Told by the environment to be a spawned child of pid 1 reading its
    // code from stdin. Before the fix it took stdin as its parent's socket
    // (and exited 70 here, where stdin is /dev/null).
    let out = Command::new(&copy)
        .args(["role", "secure"])
        .env("MULTIPROC_ROLE", "spawn:1")
        .env("MULTIPROC_SHM_TRACKER", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run the setuid copy");
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(stdout.contains("ran as a program"), "{stdout} / {stderr}");
    assert!(stderr.contains("ignoring MULTIPROC_ROLE"), "{stderr}");
}

/// A fresh directory under cargo's temporary directory for tests (on the
/// same file system as the binary, which may allow setuid where /tmp does
/// not).
fn tempdir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique("dir"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn socket_dir(listener: &Listener) -> PathBuf {
    match listener.address() {
        Address::Unix(path) => path.parent().unwrap().to_path_buf(),
        other => panic!("not a Unix socket: {other}"),
    }
}

fn sockets_live_in_a_fresh_private_directory(_: StartMethod) {
    // What another user could do before: pre-create the predictable
    // /tmp/multiproc-<pid> (here as a plain file, which made every
    // bind_temp and Manager::new of this pid fail).
    let planted = std::env::temp_dir().join(format!("multiproc-{}", std::process::id()));
    std::fs::write(&planted, b"").unwrap();
    let a = Listener::bind_temp(None);
    let b = Listener::bind_temp(None);
    let manager = multiproc::manager::Manager::new();
    std::fs::remove_file(&planted).unwrap();
    let (a, b, manager) = (a.unwrap(), b.unwrap(), manager.unwrap());
    let (da, db) = (socket_dir(&a), socket_dir(&b));
    assert_ne!(da, db, "two listeners share a directory");
    for dir in [&da, &db] {
        let meta = std::fs::symlink_metadata(dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o700,
            "{}",
            dir.display()
        );
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            rustix::process::geteuid().as_raw()
        );
    }
    // The manager works through its socket, and both go away.
    let list = manager.list::<u32>().unwrap();
    list.push(7).unwrap();
    assert_eq!(list.len().unwrap(), 1);
    let manager_dir = match manager.address() {
        Address::Unix(path) => path.parent().unwrap().to_path_buf(),
        other => panic!("not a Unix socket: {other}"),
    };
    assert!(manager_dir.exists());
    drop(list);
    manager.shutdown().unwrap();
    drop((a, b));
    for dir in [da, db, manager_dir] {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

fn a_killed_owners_socket_directory_is_removed(_: StartMethod) {
    let mut child = Command::new(exe())
        .args(["role", "listen-and-hang"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the owner");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let dir = Path::new(line.trim()).parent().unwrap().to_path_buf();
    assert!(dir.exists());
    child.kill().unwrap(); // SIGKILL: no code of the owner runs
    child.wait().unwrap();
    assert!(dir.exists(), "nothing could have removed it yet");
    // The next program to make one removes the dead owner's.
    let next = Listener::bind_temp(None).unwrap();
    let gone = !dir.exists();
    if !gone {
        let _ = std::fs::remove_dir_all(&dir);
    }
    drop(next);
    assert!(gone, "{} outlived its SIGKILLed owner", dir.display());
}

/// Raises this process's soft descriptor limit to `want` (or the hard
/// limit), for tests that open thousands of sockets.
fn raise_nofile(want: u64) -> u64 {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = lim.maximum.unwrap_or(u64::MAX);
    let soft = want.min(hard);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(soft),
            maximum: lim.maximum,
        },
    )
    .unwrap();
    soft
}

fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}

fn cpu_ticks_of(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
}

fn manager_socket(manager: &multiproc::manager::Manager) -> PathBuf {
    match manager.address() {
        Address::Unix(path) => path.clone(),
        other => panic!("not a Unix socket: {other}"),
    }
}

fn stalled_handshakes_cost_no_thread_and_block_no_client(_: StartMethod) {
    let limit = raise_nofile(4096);
    let silent_count = 2000.min(limit as usize - 200);
    let manager = multiproc::manager::Manager::new().unwrap();
    let server = manager.server_pid().unwrap();
    let path = manager_socket(&manager);
    // Connections that never say a word (before: a thread each, 2 001
    // threads and 159 MB for 2 000 of them).
    let silent: Vec<std::os::unix::net::UnixStream> = (0..silent_count)
        .map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap())
        .collect();
    // A legitimate client, from another thread's connection, is served.
    let started = Instant::now();
    let client = std::thread::spawn(move || {
        let dict = manager.dict::<u32, u32>().unwrap();
        dict.insert(1, 2).unwrap();
        assert_eq!(dict.get(&1).unwrap(), Some(2));
        drop(dict);
        manager
    });
    let manager = client.join().unwrap();
    println!(
        "with {silent_count} stalled handshakes: a client served in {:?}, the server has {} threads",
        started.elapsed(),
        threads_of(server)
    );
    let threads = threads_of(server);
    assert!(threads < 100, "the server has {threads} threads");
    drop(silent);
    manager.shutdown().unwrap();
}

fn a_server_at_its_descriptor_limit_does_not_spin(_: StartMethod) {
    if !have("prlimit") {
        println!("skipped: needs prlimit");
        return;
    }
    raise_nofile(4096);
    let manager = multiproc::manager::Manager::new().unwrap();
    let server = manager.server_pid().unwrap();
    let path = manager_socket(&manager);
    let status = Command::new("prlimit")
        .args(["--pid", &server.to_string(), "--nofile=48:48"])
        .status()
        .unwrap();
    assert!(status.success());
    // More silent peers than the server has descriptors: accept fails
    // with EMFILE while the rest wait in the kernel's queue.
    let silent: Vec<std::os::unix::net::UnixStream> = (0..100)
        .map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap())
        .collect();
    // Measure the server's CPU over a second of that (before: 4.4 s of
    // CPU in 5 s). The sleep is the measurement window, not a wait for
    // something to happen.
    let before = cpu_ticks_of(server);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks_of(server) - before;
    let hz = rustix::param::clock_ticks_per_second();
    println!("server CPU at its descriptor limit: {used} ticks of {hz} in 1 s");
    assert!(
        used * 4 < hz,
        "the server spun: {used} of {hz} ticks in 1 s"
    );
    drop(silent);
    manager.shutdown().unwrap();
}

fn hostile_handshake_headers_are_refused_and_the_listener_goes_on(_: StartMethod) {
    use std::io::{Read, Write};
    let listener = Listener::bind_temp(Some(b"key")).unwrap();
    let path = match listener.address() {
        Address::Unix(p) => p.clone(),
        other => panic!("{other}"),
    };
    let peer = std::thread::spawn(move || {
        let mut outcomes = Vec::new();
        for header in [
            (-1i32).to_be_bytes().to_vec(),
            0x7fff_ffffi32.to_be_bytes().to_vec(),
            [(-1i32).to_be_bytes(), [0xff; 4]].concat(),
            257i32.to_be_bytes().to_vec(),
        ] {
            let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            let mut challenge = [0u8; 4 + 59];
            s.read_exact(&mut challenge).unwrap();
            // The listener may hang up as soon as it has read the header
            // (that is what is under test), so a write can meet EPIPE.
            let _ = s.write_all(&header);
            let _ = s.write_all(&[0u8; 64]);
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest); // the listener hangs up
            outcomes.push(rest);
        }
        let good =
            multiproc::connection::Client::connect::<String>(&Address::Unix(path), Some(b"key"))
                .unwrap();
        good.send(&"still here".to_string()).unwrap();
        outcomes
    });
    let mut refused = 0;
    let conn = loop {
        match listener.accept::<String>() {
            Ok(conn) => break conn,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
                refused += 1;
            }
        }
    };
    assert_eq!(conn.recv().unwrap(), "still here");
    let outcomes = peer.join().unwrap();
    assert_eq!(refused, 4, "{outcomes:?}");
}

/// At the descriptor limit, sending a descriptor (which duplicates it) says
/// "Too many open files" with the OS error as its source (before: postcard's
/// "Serde Serialization Error"), and once descriptors are free again the
/// same connection sends it.
fn at_the_descriptor_limit_errors_say_too_many_open_files(_: StartMethod) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let (a, b) = pipe::<multiproc::Fd>().unwrap();
    let passenger = std::fs::File::open("/dev/null").unwrap();
    // A low limit, so that filling the table takes few descriptors (this
    // test has a process of its own).
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(128),
            maximum: limit.maximum,
        },
    )
    .unwrap();
    let mut filler = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => filler.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
        assert!(filler.len() < 200, "the limit never bit");
    }
    let fd = multiproc::Fd::new(passenger.into());
    let err = a
        .send(&fd)
        .expect_err("no descriptor is free for the duplicate");
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    let os = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .and_then(|e| e.raw_os_error());
    assert_eq!(os, Some(libc::EMFILE), "{err}");
    let text = err.to_string();
    assert!(text.contains("Too many open files"), "{text}");
    assert!(!text.contains("Serde"), "{text}");
    // Free descriptors: the same connection goes on.
    filler.truncate(filler.len().saturating_sub(8));
    a.send(&fd).unwrap();
    let got = b.recv().unwrap();
    drop(got);
    drop(filler);
    setrlimit(Resource::Nofile, limit).unwrap();
}
