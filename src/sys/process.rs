//! Process creation, waiting, signals and exit.
//!
//! - `fork(2)` through libc, so that glibc's at-fork handlers run
//!   (<https://man7.org/linux/man-pages/man2/fork.2.html>).
//! - `clone(2)` with `CLONE_PARENT` for the fork server: the new process
//!   becomes a child of the fork server's parent, so the program that asked
//!   for it can wait for it like any other child
//!   (<https://man7.org/linux/man-pages/man2/clone.2.html>).
//! - pidfds for everything after that: `pidfd_open(2)`, `pidfd_send_signal(2)`
//!   and `waitid(P_PIDFD)`, which can never hit a recycled pid.

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::process::{
    Pid, PidfdFlags, Signal as RSignal, WaitId, WaitIdOptions, pidfd_open, pidfd_send_signal,
};

/// The result of [`fork`] or [`clone_parent`].
pub(crate) enum Forked {
    /// We are the new process.
    Child,
    /// We are the process that called; the child has this pid.
    Parent(i32),
}

/// `fork(2)`.
///
/// Callers make sure no other thread can be holding a lock the child needs
/// (the process is single-threaded, or the user opted in with `unsafe`).
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: fork has no memory-safety preconditions of its own; what the
    // child may do afterwards (only async-signal-safe work if other threads
    // existed) is the caller's contract, documented at the public opt-in.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// `clone(CLONE_PARENT | SIGCHLD)`: like fork, but the child's parent is our
/// parent. Used only by the single-threaded fork server.
///
/// glibc's fork handlers do not run. The fork server is single-threaded and
/// holds no locks when it calls this, so the child's copy of the C library
/// is consistent; the one piece of kernel state that glibc's own fork would
/// restore, the robust-futex list, is restored here.
pub(crate) fn clone_parent() -> io::Result<Forked> {
    let mut head: *mut libc::c_void = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: get_robust_list writes the head pointer and length of the
    // calling thread's list into the two out-pointers, which are valid.
    let have_list = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0 as libc::c_long,
            &mut head as *mut *mut libc::c_void,
            &mut len as *mut libc::size_t,
        )
    } == 0;
    let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: without CLONE_VM the child gets a copy of our address space and
    // continues on a copy of this stack, exactly as after fork; the null stack
    // and tid pointers are what the raw syscall takes for that case.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            if have_list {
                // SAFETY: the same list head glibc registered for this thread
                // before the clone; the child's copy lives at the same address.
                unsafe { libc::syscall(libc::SYS_set_robust_list, head, len) };
            }
            Ok(Forked::Child)
        }
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Ends the calling process at once with `code`, running no destructors,
/// no `atexit` handlers and flushing nothing (`_exit(2)`).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Registers `f` to run at normal process exit (`atexit(3)`).
pub(crate) fn at_exit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: f is a plain function with C ABI that lives for the whole program.
    match unsafe { libc::atexit(f) } {
        0 => Ok(()),
        _ => Err(io::Error::other("atexit refused another handler")),
    }
}

/// This process's id.
pub(crate) fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// The parent's id, 0 when there is none to speak of.
pub(crate) fn getppid() -> i32 {
    Pid::as_raw(rustix::process::getppid())
}

/// Whether the calling thread is the process's main thread, whose lifetime
/// is the process's lifetime.
pub(crate) fn is_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

/// How many threads this process has, read from `/proc/self/stat`.
pub(crate) fn thread_count() -> io::Result<usize> {
    // One read: the line is far shorter than the buffer, and the file is
    // generated whole on the first read.
    let mut buf = [0u8; 1024];
    let n = std::io::Read::read(&mut std::fs::File::open("/proc/self/stat")?, &mut buf)?;
    let stat = String::from_utf8_lossy(&buf[..n]);
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| io::Error::other("unexpected /proc/self/stat"))?;
    // Fields after the name start at field 3; num_threads is field 20.
    after
        .split_ascii_whitespace()
        .nth(17)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("unexpected /proc/self/stat"))
}

/// Asks the kernel to SIGKILL us when the thread that created us exits, and
/// checks that our parent is still `expected_parent` (it may have died
/// before the request took effect). Returns false if it has.
pub(crate) fn die_with_parent(expected_parent: i32) -> bool {
    let _ = rustix::process::set_parent_process_death_signal(Some(RSignal::KILL));
    getppid() == expected_parent
}

/// Whether the kernel started this program in secure-execution mode
/// (`AT_SECURE`: setuid, setgid or file capabilities gave it rights its
/// caller lacks; [getauxval(3)](https://man7.org/linux/man-pages/man3/getauxval.3.html)).
/// Such a process must not trust its environment.
pub(crate) fn secure_execution() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave
    // the process; it has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// A pidfd for our child `pid` (`pidfd_open(2)`).
pub(crate) fn pidfd(pid: i32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::other("pid 0"))?;
    Ok(pidfd_open(pid, PidfdFlags::empty())?)
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawStatus {
    Exited(i32),
    Signaled { signal: i32, core: bool },
}

/// Reaps the child behind `pidfd` if it has ended (`waitid(P_PIDFD)`);
/// `Ok(None)` while it runs.
pub(crate) fn try_reap(pidfd: BorrowedFd<'_>) -> io::Result<Option<RawStatus>> {
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), opts) {
            Ok(None) => return Ok(None),
            Ok(Some(st)) => {
                if let Some(code) = st.exit_status() {
                    return Ok(Some(RawStatus::Exited(code)));
                }
                if let Some(signal) = st.terminating_signal() {
                    return Ok(Some(RawStatus::Signaled {
                        signal,
                        core: st.dumped(),
                    }));
                }
                // A stop or continue report: not an end.
                return Ok(None);
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// SIGKILLs the child behind `pidfd` and reaps it, waiting for it to die
/// (for children that must not be left running or as zombies: a fork
/// server that did not become ready, a child that will not be told what
/// to run). Errors are ignored: a child that is gone already is fine.
pub(crate) fn kill_and_reap(pidfd: BorrowedFd<'_>) {
    let _ = send_signal(pidfd, libc::SIGKILL);
    loop {
        match rustix::process::waitid(WaitId::PidFd(pidfd), WaitIdOptions::EXITED) {
            Err(rustix::io::Errno::INTR) => continue,
            _ => return,
        }
    }
}

/// SIGKILLs our child `pid` and reaps it, without a pidfd (when none
/// could be opened: at the descriptor limit). Errors are ignored.
pub(crate) fn kill_and_reap_pid(pid: i32) {
    let Some(pid) = Pid::from_raw(pid) else {
        return;
    };
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Err(rustix::io::Errno::INTR) => continue,
            _ => return,
        }
    }
}

/// Sends `signal` through a pidfd. A process that has already ended is not
/// an error.
pub(crate) fn send_signal(pidfd: BorrowedFd<'_>, signal: c_int) -> io::Result<()> {
    let sig = RSignal::from_named_raw(signal)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown signal"))?;
    match pidfd_send_signal(pidfd.as_fd(), sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes an environment variable of ours.
///
/// Called only by `init()` in a process that `multiproc` itself just
/// executed, after checking that it is still single-threaded.
pub(crate) fn remove_env(key: &str) {
    // SAFETY: the caller checked that no other thread exists, so nothing can
    // read the environment concurrently.
    unsafe { std::env::remove_var(key) }
}

/// Closes every descriptor from 3 up except `keep` (`close_range(2)`), so a
/// freshly executed child holds nothing it did not ask for.
pub(crate) fn close_fds_except(keep: BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    let keep = keep.as_raw_fd() as libc::c_uint;
    let close = |lo: libc::c_uint, hi: libc::c_uint| {
        if lo <= hi {
            // SAFETY: only called at the very start of a child that multiproc
            // executed, before any Rust object owns those descriptors.
            unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0 as libc::c_uint) };
        }
    };
    if keep >= 3 {
        close(3, keep - 1);
    }
    close(keep.max(2) + 1, libc::c_uint::MAX);
}

/// Reopens standard input on `/dev/null`.
pub(crate) fn stdin_to_devnull() -> io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok(())
}

/// Takes ownership of descriptor 0 as a new descriptor (CLOEXEC), leaving
/// standard input on `/dev/null`.
pub(crate) fn take_stdin() -> io::Result<OwnedFd> {
    let stdin = rustix::stdio::stdin();
    let fd = rustix::io::fcntl_dupfd_cloexec(stdin, 3)?;
    stdin_to_devnull()?;
    Ok(fd)
}

/// This process's pid, cached: reading it costs one atomic load, which the
/// lock fast paths need (`getpid(2)` is a system call).
///
/// The cache is emptied in a child: by an at-fork handler for `fork(2)`,
/// and by [`forget_cached_pid`], which every child calls first thing
/// (the fork server's `clone` runs no at-fork handlers).
pub(crate) fn cached_pid() -> u32 {
    match CACHED_PID.load(std::sync::atomic::Ordering::Relaxed) {
        0 => cache_pid(),
        pid => pid,
    }
}

static CACHED_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cold]
fn cache_pid() -> u32 {
    static HANDLER: std::sync::Once = std::sync::Once::new();
    HANDLER.call_once(|| {
        extern "C" fn in_child() {
            forget_cached_pid();
        }
        // SAFETY: registers a handler that only stores to an atomic, which
        // is async-signal-safe and so fine in a fork child.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
    let pid = getpid() as u32;
    CACHED_PID.store(pid, std::sync::atomic::Ordering::Relaxed);
    pid
}

/// Empties the pid cache (in a new child).
pub(crate) fn forget_cached_pid() {
    CACHED_PID.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// Whether process `pid` is gone: no such process, or a zombie that has
/// exited but is not reaped yet (`kill(pid, 0)` alone would call a zombie
/// alive). A recycled pid looks alive; callers that act on death document
/// that.
pub(crate) fn is_dead(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return true;
    };
    // EPERM would mean it exists but belongs to another user.
    if let Err(rustix::io::Errno::SRCH) = rustix::process::test_kill_process(p) {
        return true;
    }
    match std::fs::read(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => match stat.iter().rposition(|&b| b == b')') {
            Some(i) => matches!(stat.get(i + 2), Some(b'Z' | b'X' | b'x')),
            None => false,
        },
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

#[cfg_attr(not(feature = "cluster"), allow(dead_code))] // the cluster agent
/// This machine's host name (`/proc/sys/kernel/hostname`), or `"host"` if
/// it cannot be read.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".into())
}
