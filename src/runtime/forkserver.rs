//! The fork server: a copy of this program, executed once and kept
//! single-threaded, that forks a child whenever asked.
//!
//! Protocol, on a sequenced-packet socket pair (one packet per message):
//! the requester sends `PRELOAD` once (the image's identity and the
//! functions of [`set_forkserver_preload`], postcard); the server runs
//! them, then sends `READY` (or `FAILED` and a reason) once; then each
//! request is one packet `FORK` carrying one descriptor, the child's end of
//! a fresh stream socket to the requester. The server forks with
//! `CLONE_PARENT`, so the new process is a child of the requester, and the
//! child runs [`child::serve`] on that socket (its first frame is its
//! `HELLO`). When the server cannot fork it sends an `ERROR` frame on the
//! socket instead. Only one process ever writes to that socket — the child,
//! or the server when there is no child: two writers could interleave the
//! pieces of a large frame. The server exits when
//! its parent's end of the socket closes.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use super::launch;
use crate::error::{Error, ErrorKind};
use crate::sys;
use crate::sys::image::{FnRef, ImageId};

pub(super) const READY: u8 = b'R';
pub(super) const FAILED: u8 = b'F';
pub(super) const FORK: u8 = b'K';
pub(super) const PRELOAD: u8 = b'P';

/// The most preload functions: their packet fits [`PRELOAD_PACKET`].
const MAX_PRELOAD: usize = 64;
/// The largest `PRELOAD` packet the server reads.
pub(super) const PRELOAD_PACKET: usize = 4096;

/// How a preload function travels to the fork server.
type PreloadRef = FnRef<fn(), sys::image::Preloads>;

/// What a `PRELOAD` packet carries after its kind byte.
pub(super) type PreloadList = (ImageId, Vec<PreloadRef>);

static PRELOAD_FNS: Mutex<Vec<Preload>> = Mutex::new(Vec::new());

/// A function for the fork server to run before it forks
/// ([`set_forkserver_preload`]), made by [`preload`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preload(PreloadRef);

/// Names `f`, a function (or a closure that captures nothing), for
/// [`set_forkserver_preload`]: `set_forkserver_preload(&[preload(load_model)])`.
///
/// # Errors
///
/// None at run time; an `f` that captures variables does not build (the
/// fork server is another process, with `f`'s code but not its captures).
pub fn preload<F: Fn() + Copy + 'static>(f: F) -> Preload {
    let _ = f;
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a preload function must be a function or a closure that captures nothing: the fork \
             server is another process, which has its code but not its captured values"
        )
    };
    Preload(FnRef::new(preload_entry::<F> as fn()))
}

/// Runs preload function `F` in the fork server: a registered entry point
/// (`fn()`, in `sys::image::Preloads`), so that the server never calls an
/// address it was merely sent.
// Placement only; the section holds functions of this signature alone
// (`sys::image::Section`'s contract).
#[allow(unsafe_code)]
#[unsafe(link_section = "multiproc_preload")]
fn preload_entry<F: Fn() + Copy + 'static>() {
    if let Some(f) = sys::image::conjure::<F>() {
        f()
    }
}

/// Has every fork server started from now on call `functions` (each made
/// by [`preload`]), in order, before it forks its first child (Python's
/// `set_forkserver_preload`, with functions where Python takes module
/// names): what they load — a model, a large table in a `static`, a
/// native library that is slow to initialise — is then in every
/// forkserver child from its first instruction, shared copy-on-write,
/// instead of loaded by each. Replaces the list given before; a fork
/// server already running keeps its own.
///
/// ```
/// # multiproc::init();
/// fn load_model() { /* fill a static */ }
/// multiproc::set_forkserver_preload(&[multiproc::preload(load_model)])?;
/// # multiproc::set_forkserver_preload(&[])?;
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// A preload function must not start threads (the fork server must stay
/// single-threaded to fork safely). If one panics, starts a thread or is
/// not found in the executable, the fork server does not start, and the
/// start of the process that needed it fails with
/// [`ErrorKind::Bootstrap`] saying which and why.
///
/// # Errors
///
/// [`ErrorKind::InvalidArgument`] for more than 64 functions.
pub fn set_forkserver_preload(functions: &[Preload]) -> Result<(), Error> {
    if functions.len() > MAX_PRELOAD {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{} fork-server preload functions; at most {MAX_PRELOAD}",
                functions.len()
            ),
        ));
    }
    *PRELOAD_FNS.lock().unwrap_or_else(|p| p.into_inner()) = functions.to_vec();
    Ok(())
}

/// The `PRELOAD` packet for a server starting now.
fn preload_packet() -> Result<Vec<u8>, Error> {
    let image = super::protocol::image_id()?;
    let fns: Vec<PreloadRef> = PRELOAD_FNS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|p| p.0)
        .collect();
    let body = postcard::to_allocvec(&(image, fns)).map_err(|e| {
        Error::new(
            ErrorKind::Encode,
            "could not encode the fork server's preload list",
        )
        .with_source(e)
    })?;
    Ok([&[PRELOAD][..], &body].concat())
}

struct Client {
    ctrl: OwnedFd,
    pidfd: OwnedFd,
    /// The process this connection belongs to.
    owner: i32,
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.owner == sys::process::getpid() {
            // Closing ctrl tells the server to exit; reap it if it already has.
            let _ = sys::process::try_reap(self.pidfd.as_fd());
        }
    }
}

static CLIENT: Mutex<Option<Arc<Client>>> = Mutex::new(None);

/// Drops a connection inherited through fork: it belongs to the parent.
pub(crate) fn forget_inherited() {
    let mut guard = CLIENT.lock().unwrap_or_else(|p| p.into_inner());
    if guard
        .as_ref()
        .is_some_and(|c| c.owner != sys::process::getpid())
    {
        *guard = None;
    }
}

fn start() -> Result<Client, Error> {
    match start_once(true) {
        // The dynamic loader refuses to start a program whose libraries
        // name a function nobody defines when it must resolve every symbol
        // at once; lazily, such a program runs. So try again without.
        Err(Unready::Exited) => {
            log::debug!(target: "multiproc", "the fork server did not start with LD_BIND_NOW; trying without");
            start_once(false).map_err(Unready::into_error)
        }
        other => other.map_err(Unready::into_error),
    }
}

/// Why a fork server did not become ready.
enum Unready {
    /// It exited (or closed its socket) without a word.
    Exited,
    /// It said why, or could not be started or watched.
    Error(Error),
}

impl Unready {
    fn into_error(self) -> Error {
        match self {
            Unready::Exited => Error::new(
                ErrorKind::Bootstrap,
                "the fork server exited before it was ready: make multiproc::init() the first line of main \
                 (in test files, use multiproc::test_support!())",
            ),
            Unready::Error(e) => e,
        }
    }
}

fn start_once(bind_now: bool) -> Result<Client, Unready> {
    let preload = preload_packet().map_err(Unready::Error)?;
    let (ours, theirs) = sys::socket::packet_pair()
        .map_err(|e| Unready::Error(Error::io("could not create a socket pair", e)))?;
    let ppid = sys::process::getpid();
    let pid = launch::on_lasting_thread(move || {
        launch::exec_self(format!("forkserver:{ppid}"), theirs, bind_now)
    })
    .and_then(|r| r)
    .map_err(|e| Unready::Error(Error::io("could not start the fork server", e)))?;
    let pidfd = sys::process::pidfd(pid)
        .map_err(|e| Unready::Error(Error::io("could not watch the fork server", e)))?;
    // A server that died before reading it shows below, as it says nothing.
    let _ = sys::socket::send_packet(ours.as_fd(), &preload, &[]);
    let mut buf = [0u8; 512];
    let failed = match sys::socket::recv_packet(ours.as_fd(), &mut buf) {
        Ok(Some((n, _))) if n >= 1 && buf[0] == READY => None,
        Ok(Some((n, _))) if n >= 1 && buf[0] == FAILED => Some(Unready::Error(Error::new(
            ErrorKind::Bootstrap,
            format!(
                "the fork server could not start: {}",
                String::from_utf8_lossy(&buf[1..n])
            ),
        ))),
        _ => Some(Unready::Exited),
    };
    if let Some(why) = failed {
        // Not left a zombie: it is our child.
        sys::process::kill_and_reap(pidfd.as_fd());
        return Err(why);
    }
    log::debug!(target: "multiproc", "fork server started (pid {pid})");
    Ok(Client {
        ctrl: ours,
        pidfd,
        owner: ppid,
    })
}

fn client() -> Result<Arc<Client>, Error> {
    let mut guard = CLIENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = guard.as_ref().filter(|c| c.owner == sys::process::getpid()) {
        return Ok(c.clone());
    }
    let c = Arc::new(start()?);
    *guard = Some(c.clone());
    Ok(c)
}

/// Asks the fork server for a child that will serve `child_sock`. Starts
/// the server on first use, and again if it died.
pub(crate) fn request(child_sock: OwnedFd) -> Result<(), Error> {
    for attempt in 0..2 {
        let c = client()?;
        match sys::socket::send_packet(c.ctrl.as_fd(), &[FORK], &[child_sock.as_fd()]) {
            Ok(()) => return Ok(()),
            Err(e)
                if attempt == 0
                    && matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)) =>
            {
                log::warn!(target: "multiproc", "the fork server died; starting a new one");
                let mut guard = CLIENT.lock().unwrap_or_else(|p| p.into_inner());
                if guard.as_ref().is_some_and(|g| Arc::ptr_eq(g, &c)) {
                    *guard = None;
                }
            }
            Err(e) => return Err(Error::io("could not reach the fork server", e)),
        }
    }
    unreachable!("the loop returns on its second pass")
}
