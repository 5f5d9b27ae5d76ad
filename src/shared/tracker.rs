//! The tracker of named shared memory: what Python's resource tracker is
//! for, without its habit of unlinking segments that others still use.
//!
//! The first [`SharedMemory::create`](super::SharedMemory::create) in a
//! process starts a small helper process (this same executable, run again
//! with [`ENV`] set; [`crate::init`] turns it into the tracker before
//! anything else runs). The creator keeps the write end of a pipe whose
//! read end is the tracker's stdin, and writes `+NAME` when it creates a
//! named segment and `-NAME` when it unlinks it or gives it up
//! ([`keep`](super::SharedMemory::keep)).
//!
//! When the pipe reaches end of file — every process holding the write
//! end has exited, normally or by SIGKILL — the tracker looks at each name
//! still registered. If no live process has the segment mapped or open
//! (from `/proc/*/maps` and `/proc/*/fd`), it unlinks it; if some process
//! still uses it, it says so on stderr and waits until none does. So a
//! creator that dies leaves nothing behind, and a segment is never pulled
//! from under a live user. (A process that attaches in the instant between
//! that check and the unlink keeps its mapping; only the name goes.)
//!
//! Without `multiproc::init()` (the tracker is the program run again, so
//! `init()` must be its first line) no tracker is started, and a creator
//! killed by SIGKILL leaves its named segments behind.
//!
//! The tracker runs in a process group of its own, so killing the
//! application's whole group (`kill -9 -PGID`) leaves it to clean up. If
//! the tracker itself is killed, nothing else changes while the creators
//! live: their segments work, and each creator still unlinks its names
//! when it drops them or exits normally. Only the clean-up after a
//! creator's *crash* is lost, as when no tracker runs; a new tracker starts
//! at the next `SharedMemory::create` of that process, for the segments
//! created from then on.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::sys::shm;

/// Set in the tracker's environment.
pub(crate) const ENV: &str = "MULTIPROC_SHM_TRACKER";

/// How often the tracker looks again at a segment still in use.
const POLL: Duration = Duration::from_millis(100);

struct Tracker {
    pipe: io::PipeWriter,
}

static TRACKER: Mutex<Option<Tracker>> = Mutex::new(None);

fn start() -> io::Result<Tracker> {
    if !crate::runtime::initialized() {
        return Err(io::Error::other(
            "multiproc::init() was not called, so the program cannot be run again as the tracker",
        ));
    }
    let (read, pipe) = io::pipe()?;
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    // Shown by `ps -f` and `top -c`; `comm` is set in `serve_if_asked`.
    let title = format!(
        "{}: multiproc-shm-tracker",
        crate::sys::title::program_name()
    );
    std::os::unix::process::CommandExt::arg0(&mut command, title);
    // A process group of its own: `kill -9 -PGID` of the application (a
    // shell's Ctrl-\, a supervisor stopping a job) must not take the
    // tracker with it, or what the application created stays in /dev/shm.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .env(ENV, "1")
        .stdin(read)
        .stdout(Stdio::null())
        .spawn()?;
    // The child is never waited for: it outlives this process by design
    // (it exits only after our end of the pipe closes), and is reaped by
    // whoever adopts it.
    Ok(Tracker { pipe })
}

/// Whether `name` may go on the tracker's pipe: what
/// [`SharedMemory`](super::SharedMemory) accepts (no `/`, no control
/// character, not `.` or `..`). The creator checks it before sending and
/// the tracker again on every line, so no name can smuggle a second line
/// (`"x\n-other"`) or a path into the protocol.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 250
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c.is_control())
}

fn send(line: String) {
    let mut guard = TRACKER.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        match start() {
            Ok(t) => *guard = Some(t),
            Err(e) => {
                log::debug!("no shared-memory tracker: {e}");
                return;
            }
        }
    }
    if let Some(t) = guard.as_mut() {
        // One short write: atomic on a pipe. A failure (the tracker died)
        // only loses the clean-up after a crash.
        if t.pipe.write_all(line.as_bytes()).is_err() {
            *guard = None;
        }
    }
}

/// Tells the tracker that this process created the named segment `name`
/// (without its leading `/`).
pub(crate) fn register(name: &str) {
    if valid_name(name) {
        send(format!("+{name}\n"));
    }
}

/// Tells the tracker that `name` is no longer this process's to clean up.
pub(crate) fn unregister(name: &str) {
    if valid_name(name) && TRACKER.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
        send(format!("-{name}\n"));
    }
}

/// Becomes the tracker if this process was started as one; called first
/// thing in [`crate::init`].
pub(crate) fn serve_if_asked() {
    if std::env::var_os(ENV).is_none() {
        return;
    }
    // In a setuid/setcap program, whoever set the variable could feed the
    // tracker names to unlink with the program's rights.
    if crate::sys::process::secure_execution() {
        eprintln!("multiproc: ignoring {ENV} in a setuid/setcap program");
        return;
    }
    let _ = crate::sys::title::set_comm("shm-tracker");
    let mut names = BTreeSet::new();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (op, name) = line.split_at_checked(1).unwrap_or(("", ""));
        if !valid_name(name) {
            continue;
        }
        match op {
            "+" => {
                names.insert(name.to_string());
            }
            "-" => {
                names.remove(name);
            }
            _ => {}
        }
    }
    // Every creator is gone.
    for name in names {
        clean(&name);
    }
    std::process::exit(0)
}

/// Unlinks `/dev/shm/NAME` once no live process uses it.
fn clean(name: &str) {
    let path = format!("/dev/shm/{name}");
    let mut told = false;
    loop {
        if std::fs::symlink_metadata(&path).is_err() {
            return; // already gone
        }
        let users = users_of(&path);
        if users.is_empty() {
            match shm::unlink_named(&format!("/{name}")) {
                Ok(()) => eprintln!(
                    "multiproc-shm-tracker: unlinked shared memory /{name}, which a process that died had created"
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => eprintln!("multiproc-shm-tracker: could not unlink /{name}: {e}"),
            }
            return;
        }
        if !told {
            eprintln!(
                "multiproc-shm-tracker: shared memory /{name}, whose creator died, is still used by pid {users:?}; \
                 it will be unlinked when they let go"
            );
            told = true;
        }
        std::thread::sleep(POLL);
    }
}

/// The live processes (other than this one) that map or hold open `path`.
fn users_of(path: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut users = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return users;
    };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let mapped = maps.lines().any(|l| l.ends_with(&format!(" {path}")));
        let open = !mapped
            && std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|fds| {
                    fds.flatten().any(|fd| {
                        std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == path)
                    })
                })
                .unwrap_or(false);
        if mapped || open {
            users.push(pid);
        }
    }
    users
}
