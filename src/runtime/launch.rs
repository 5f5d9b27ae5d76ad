//! Executing this program again, from a thread that lasts.
//!
//! Every child asks the kernel to kill it when its parent dies
//! (`PR_SET_PDEATHSIG`). The kernel means the parent *thread*: a child
//! started from a short-lived thread (a test thread, a thread-pool worker)
//! would be killed when that thread ends, not when the program does. So
//! executables are started from the main thread when the caller is on it,
//! and otherwise from the keeper: one thread, started on first need, that
//! lives as long as the process and does nothing but start programs. The
//! fork server is started the same way, and its children are made children
//! of this process (`CLONE_PARENT`) whose parent thread is the same lasting
//! one.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Sender};

use crate::sys;

/// The environment variable that tells an executed copy of the program what
/// it is for: `spawn:<parent pid>` or `forkserver:<parent pid>`, either
/// followed by `:bindnow` when `LD_BIND_NOW` was set for it alone (see
/// [`exec_self`]).
pub(crate) const ROLE_ENV: &str = "MULTIPROC_ROLE";

type Job = Box<dyn FnOnce() + Send>;

/// The keeper's job queue, with the pid of the process it belongs to (a
/// forked child inherits the queue but not the thread).
static KEEPER: Mutex<Option<(i32, Sender<Job>)>> = Mutex::new(None);

/// How many threads of this process are the keeper's (0 or 1): they hold no
/// locks while idle, so `fork` need not count them.
pub(crate) fn keeper_threads() -> usize {
    let guard = KEEPER.lock().unwrap_or_else(|p| p.into_inner());
    usize::from(
        guard
            .as_ref()
            .is_some_and(|(pid, _)| *pid == sys::process::getpid()),
    )
}

/// Runs `f` on a thread whose life is the process's life, and returns what
/// it returns.
pub(crate) fn on_lasting_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    if sys::process::is_main_thread() {
        return Ok(f());
    }
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = reply_tx.send(f());
    });
    let pid = sys::process::getpid();
    let mut guard = KEEPER.lock().unwrap_or_else(|p| p.into_inner());
    let sender = match guard.as_ref() {
        Some((owner, tx)) if *owner == pid => tx.clone(),
        _ => {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("multiproc-keeper".into())
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })?;
            *guard = Some((pid, tx.clone()));
            tx
        }
    };
    drop(guard);
    sender
        .send(job)
        .map_err(|_| io::Error::other("the multiproc keeper thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the multiproc keeper thread dropped a job"))
}

/// The dynamic loader's switch for resolving every symbol at start-up.
pub(crate) const BIND_NOW_ENV: &str = "LD_BIND_NOW";

/// Executes this program again with `role` in its environment and `stdin`
/// as its standard input; returns the new process's pid. Must run on a
/// lasting thread (see [`on_lasting_thread`]).
///
/// With `bind_now` the new program resolves all its dynamic symbols as it
/// loads (`LD_BIND_NOW`), for a fork server: otherwise every child it forks
/// would resolve again, page faults included, each C-library function the
/// server itself never called. The role then ends in `:bindnow`, telling
/// the new program to take the variable out of its environment again —
/// unless the user had set it, in which case it is left alone.
pub(crate) fn exec_self(role: String, stdin: OwnedFd, bind_now: bool) -> io::Result<i32> {
    // The arguments as the program got them: this process's own may show
    // its title by now (`sys::title`).
    let mut args = sys::title::original_args().iter().cloned();
    let argv0 = args.next().unwrap_or_else(|| "multiproc-child".into());
    let mut command = Command::new("/proc/self/exe");
    command.arg0(argv0).args(args).stdin(Stdio::from(stdin));
    if bind_now && std::env::var_os(BIND_NOW_ENV).is_none() {
        command
            .env(BIND_NOW_ENV, "1")
            .env(ROLE_ENV, format!("{role}:bindnow"));
    } else {
        command.env(ROLE_ENV, role);
    }
    let child = command.spawn()?;
    // The Child handle neither waits nor kills when dropped; the caller
    // reaps the process through a pidfd.
    Ok(child.id() as i32)
}
