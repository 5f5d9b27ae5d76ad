//! SIGINT for pools: workers ignore it, and a pool waiting in the parent
//! learns of it through a self-pipe when the application handles SIGINT
//! itself.
//!
//! When SIGINT has its default action, Ctrl-C simply ends the parent, and
//! its children follow through `PR_SET_PDEATHSIG`. When the application
//! installed a handler (to shut down cleanly), the signal does not end the
//! process, so a pool that waits would never notice. [`watch_sigint`] then
//! puts a small handler in front of the application's: it counts the
//! signal, writes one byte to a non-blocking pipe that the pool's `poll`
//! watches, and calls the application's handler, as signal-hook's pipe
//! does (<https://man7.org/linux/man-pages/man2/sigaction.2.html>).

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

static COUNT: AtomicU64 = AtomicU64::new(0);
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);
static PREVIOUS_SIGINFO: AtomicBool = AtomicBool::new(false);
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);
static WAKE_READ: OnceLock<OwnedFd> = OnceLock::new();
static INSTALL: Mutex<()> = Mutex::new(());

/// Makes this process ignore SIGINT (pool workers: Ctrl-C is the parent's
/// business).
pub(crate) fn ignore_sigint() {
    // SAFETY: setting a disposition to SIG_IGN installs no code; it only
    // changes what the kernel does with the signal.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

extern "C" fn on_sigint(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    COUNT.fetch_add(1, Ordering::SeqCst);
    let fd = WAKE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; `fd` is the write end of a
        // non-blocking pipe that is never closed; a full pipe just drops the
        // byte (one pending byte is enough to wake the reader).
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
    let previous = PREVIOUS.load(Ordering::SeqCst);
    if previous != libc::SIG_DFL && previous != libc::SIG_IGN {
        if PREVIOUS_SIGINFO.load(Ordering::SeqCst) {
            // SAFETY: `previous` is the sa_sigaction of the handler that was
            // installed before ours, with SA_SIGINFO, so it has this type; it
            // is called with the arguments the kernel gave us.
            let f = unsafe {
                std::mem::transmute::<
                    usize,
                    extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void),
                >(previous)
            };
            f(sig, info, ctx);
        } else {
            // SAFETY: as above, for a handler installed without SA_SIGINFO,
            // which takes only the signal number.
            let f = unsafe { std::mem::transmute::<usize, extern "C" fn(c_int)>(previous) };
            f(sig);
        }
    }
}

/// How many SIGINTs our handler has seen.
pub(crate) fn sigint_count() -> u64 {
    COUNT.load(Ordering::SeqCst)
}

/// If the application handles SIGINT itself, puts our counting handler in
/// front of its handler (once) and returns the pipe that becomes readable
/// when SIGINT arrives. `None` when SIGINT has its default action or is
/// ignored: then nothing is installed.
///
/// # Errors
///
/// The OS refused `sigaction` or `pipe2`.
pub(crate) fn watch_sigint() -> io::Result<Option<BorrowedFd<'static>>> {
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: an all-zero sigaction is a valid value of this plain C struct.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `old`.
    if unsafe { libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let ours = on_sigint as extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
    if old.sa_sigaction == ours {
        return Ok(WAKE_READ.get().map(|fd| fd.as_fd()));
    }
    if old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN {
        return Ok(None);
    }
    if WAKE_READ.get().is_none() {
        let (r, w) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )?;
        WAKE_WRITE.store(w.as_raw_fd(), Ordering::SeqCst);
        std::mem::forget(w); // lives as long as the process: the handler writes to it
        let _ = WAKE_READ.set(r);
    }
    PREVIOUS.store(old.sa_sigaction, Ordering::SeqCst);
    PREVIOUS_SIGINFO.store(old.sa_flags & libc::SA_SIGINFO != 0, Ordering::SeqCst);
    let mut new = old;
    new.sa_sigaction = ours;
    new.sa_flags = old.sa_flags | libc::SA_SIGINFO;
    // SAFETY: `new` is a valid action whose handler only does
    // async-signal-safe work (an atomic add, write(2)) and then calls the
    // handler that was installed, as the kernel would have.
    if unsafe { libc::sigaction(libc::SIGINT, &new, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(WAKE_READ.get().map(|fd| fd.as_fd()))
}

/// Empties the wake pipe after it was seen readable.
pub(crate) fn drain_wake() {
    if let Some(fd) = WAKE_READ.get() {
        let mut buf = [0u8; 64];
        while let Ok(n) = rustix::io::read(fd, &mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

#[cfg_attr(not(feature = "cluster"), allow(dead_code))] // the cluster agent
static SIGTERMS: AtomicU64 = AtomicU64::new(0);

#[cfg_attr(not(feature = "cluster"), allow(dead_code))] // the cluster agent
extern "C" fn on_sigterm(_: c_int) {
    SIGTERMS.fetch_add(1, Ordering::SeqCst);
}

#[cfg_attr(not(feature = "cluster"), allow(dead_code))] // the cluster agent
/// Makes SIGTERM a request instead of the end (a cluster agent drains on
/// it): if SIGTERM has its default action, a handler that only counts it
/// is installed. Returns false if the program handles or ignores SIGTERM
/// itself (then nothing is installed and [`sigterms`] stays 0).
///
/// # Errors
///
/// The OS refused `sigaction`.
pub(crate) fn count_sigterm() -> io::Result<bool> {
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: an all-zero sigaction is a valid value of this plain C struct.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `old`.
    if unsafe { libc::sigaction(libc::SIGTERM, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let ours = on_sigterm as extern "C" fn(c_int) as usize;
    if old.sa_sigaction == ours {
        return Ok(true);
    }
    if old.sa_sigaction != libc::SIG_DFL {
        return Ok(false);
    }
    let mut new = old;
    new.sa_sigaction = ours;
    new.sa_flags = libc::SA_RESTART;
    // SAFETY: the handler only adds to an atomic, which is async-signal-safe.
    if unsafe { libc::sigaction(libc::SIGTERM, &new, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

#[cfg_attr(not(feature = "cluster"), allow(dead_code))] // the cluster agent
/// How many SIGTERMs the handler of [`count_sigterm`] has seen.
pub(crate) fn sigterms() -> u64 {
    SIGTERMS.load(Ordering::SeqCst)
}
