//! Setting up a child before it runs its target: environment, working
//! directory, standard streams, resource limits, CPU affinity. Called only
//! in a child that has a single thread (right after `fork`, or at the
//! start of an executed or fork-server child), before any user code runs.

use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

/// Sets `key=value` in this process's environment (`setenv(3)`).
///
/// Call only while the process has one thread (see the module docs).
pub(crate) fn set_env(key: &OsStr, value: &OsStr) {
    // SAFETY: called in a single-threaded child before its target runs, so
    // nothing reads the environment concurrently.
    unsafe { std::env::set_var(key, value) }
}

/// Removes `key` from this process's environment (`unsetenv(3)`).
///
/// Call only while the process has one thread (see the module docs).
pub(crate) fn remove_env(key: &OsStr) {
    // SAFETY: as in `set_env`.
    unsafe { std::env::remove_var(key) }
}

/// Removes every variable from this process's environment.
///
/// Call only while the process has one thread (see the module docs).
pub(crate) fn clear_env() {
    for (key, _) in std::env::vars_os() {
        remove_env(&key);
    }
}

/// Changes the working directory ([`chdir(2)`](https://man7.org/linux/man-pages/man2/chdir.2.html)).
pub(crate) fn chdir(dir: &Path) -> io::Result<()> {
    rustix::process::chdir(dir).map_err(io::Error::from)
}

/// Puts `fd` on descriptor `target` (0, 1 or 2) ([`dup2(2)`](https://man7.org/linux/man-pages/man2/dup2.2.html));
/// the copy is not close-on-exec.
pub(crate) fn dup_onto(fd: BorrowedFd<'_>, target: u8) -> io::Result<()> {
    match target {
        0 => rustix::stdio::dup2_stdin(fd),
        1 => rustix::stdio::dup2_stdout(fd),
        _ => rustix::stdio::dup2_stderr(fd),
    }
    .map_err(io::Error::from)
}

/// Opens `/dev/null` for reading and writing (close-on-exec).
pub(crate) fn open_null() -> io::Result<std::os::fd::OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    Ok(f.into())
}

/// Everything in the file behind `fd`, read with `pread(2)` from offset 0:
/// the file offset, which the child writing to it shares, is not moved.
pub(crate) fn read_all_at(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match rustix::io::pread(fd, &mut chunk[..], out.len() as u64) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The resources [`set_rlimit`] knows, by number: the order of
/// `process::Resource`.
const RESOURCES: [rustix::process::Resource; 9] = [
    rustix::process::Resource::Cpu,
    rustix::process::Resource::Fsize,
    rustix::process::Resource::Data,
    rustix::process::Resource::Stack,
    rustix::process::Resource::Core,
    rustix::process::Resource::Nofile,
    rustix::process::Resource::As,
    rustix::process::Resource::Nproc,
    rustix::process::Resource::Memlock,
];

/// Sets resource limit number `resource` ([`setrlimit(2)`](https://man7.org/linux/man-pages/man2/setrlimit.2.html));
/// `u64::MAX` means unlimited.
pub(crate) fn set_rlimit(resource: u8, soft: u64, hard: u64) -> io::Result<()> {
    let resource = *RESOURCES
        .get(resource as usize)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let lim = |v: u64| (v != u64::MAX).then_some(v);
    rustix::process::setrlimit(
        resource,
        rustix::process::Rlimit {
            current: lim(soft),
            maximum: lim(hard),
        },
    )
    .map_err(io::Error::from)
}

/// The highest CPU number an affinity set may name, plus one.
pub(crate) const MAX_CPUS: usize = rustix::thread::CpuSet::MAX_CPU;

/// Restricts this process to `cpus` ([`sched_setaffinity(2)`](https://man7.org/linux/man-pages/man2/sched_setaffinity.2.html)).
/// Each must be below [`MAX_CPUS`] (checked by the caller).
pub(crate) fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        if c >= MAX_CPUS {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set).map_err(io::Error::from)
}
