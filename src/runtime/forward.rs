//! The parent's side of log forwarding (see `crate::logging` for what the
//! user sees): one sequenced-packet socket pair per process, made when the
//! first child that forwards starts. Every child gets a copy of the sending
//! end (a grandchild gets its parent's copy, so its records come straight
//! here, naming the grandchild); a collector thread, one of the runtime's
//! helpers (so `fork` can hold it still), reads the receiving end and logs
//! each record again through `log::logger()`.
//!
//! [`drain`], called when a child is found to have ended, re-logs what is
//! waiting before returning: a dead child's records are all in the socket,
//! so once `drain` returns they are all in the logger. Reading and
//! re-logging happen under one lock, so a record the collector took off
//! the socket is logged before a `drain` that started later returns.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use crate::logging;
use crate::sys;

use super::helpers;

struct Collector {
    /// The process it belongs to (a forked child inherits the memory).
    pid: i32,
    tx: OwnedFd,
    rx: Arc<OwnedFd>,
}

static COLLECTOR: Mutex<Option<Collector>> = Mutex::new(None);

/// The receiving buffer: one byte more than the largest packet, so that a
/// longer one shows as too long. Held while a packet is re-logged.
static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// The socket a child started now sends its records on, and the level it
/// forwards at; `None` when it does not forward. Starts the collector on
/// first need. A failure to set it up is logged and the child does not
/// forward: logs are not worth failing a start for.
pub(crate) fn for_child() -> Option<(OwnedFd, log::LevelFilter)> {
    let level = logging::forward_level()?;
    if let Some(fd) = logging::dup_sink() {
        return Some((fd, level));
    }
    match collector_tx() {
        Ok(fd) => Some((fd, level)),
        Err(e) => {
            log::warn!(target: "multiproc", "children's log records will not be forwarded: {e}");
            None
        }
    }
}

fn collector_tx() -> io::Result<OwnedFd> {
    let mut guard = COLLECTOR.lock().unwrap_or_else(|p| p.into_inner());
    let pid = sys::process::getpid();
    if let Some(c) = guard.as_ref().filter(|c| c.pid == pid) {
        return sys::socket::dup(c.tx.as_fd());
    }
    let (rx, tx) = sys::socket::packet_pair()?;
    let rx = Arc::new(rx);
    let reserved = helpers::reserve();
    let theirs = rx.clone();
    std::thread::Builder::new()
        .name("multiproc-logs".into())
        .spawn(move || {
            let _helper = reserved.register();
            collect(&theirs);
        })?;
    let fd = sys::socket::dup(tx.as_fd())?;
    *guard = Some(Collector { pid, tx, rx });
    Ok(fd)
}

/// The collector thread's loop: wait (as a point where a fork may happen),
/// then re-log what came.
fn collect(rx: &OwnedFd) {
    loop {
        let ready = helpers::safe_wait(|| sys::socket::wait_readable(&[rx.as_fd()], None));
        if ready.is_err() {
            return;
        }
        drain_socket(rx);
    }
}

/// Re-logs every record waiting on `rx`, without blocking.
fn drain_socket(rx: &OwnedFd) {
    let mut buf = BUFFER.lock().unwrap_or_else(|p| p.into_inner());
    if buf.len() != logging::MAX_PACKET + 1 {
        buf.resize(logging::MAX_PACKET + 1, 0);
    }
    loop {
        // Descriptors a hostile child attached are closed as they drop.
        let mut fds = Vec::new();
        match sys::socket::recv_with(rx.as_fd(), &mut buf, &mut fds, false) {
            Ok(sys::socket::Received::Bytes(n)) => {
                if let Some(p) = logging::decode(&buf[..n]) {
                    logging::emit_forwarded(&p);
                }
            }
            // An empty packet (a hostile child can send one) reads as
            // end of file; the real end never comes, as the collector holds
            // a sending end itself. Stopping there would let `drain` return
            // with records still waiting behind it.
            Ok(sys::socket::Received::Eof) => {}
            Ok(sys::socket::Received::WouldBlock) => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Re-logs every record children have sent so far; see the module docs.
pub(crate) fn drain() {
    let rx = {
        let guard = COLLECTOR.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(c) if c.pid == sys::process::getpid() => c.rx.clone(),
            _ => return,
        }
    };
    drain_socket(&rx);
}

/// In a new child: the parent's collector is the parent's (its thread was
/// not copied); its sockets are closed here.
pub(crate) fn forget_inherited() {
    let mut guard = COLLECTOR.lock().unwrap_or_else(|p| p.into_inner());
    if guard
        .as_ref()
        .is_some_and(|c| c.pid != sys::process::getpid())
    {
        *guard = None;
    }
}
