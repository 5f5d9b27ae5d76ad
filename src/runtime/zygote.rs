//! A pool's forker under the fork start method: a copy of the program
//! forked once, when the pool is built (while forking is still safe), and
//! kept single-threaded, that forks the pool's replacement workers.
//!
//! Why: a worker that dies must be replaced, but the process that owns the
//! pool may by then have threads of its own (an async runtime, the pool's
//! background thread) and must not fork: a lock another thread holds would
//! stay locked in the child. The forker has one thread, so it can fork at
//! any time. It speaks the fork server's protocol ([`super::forkserver`]):
//! one `FORK` packet per child, carrying the child's end of a stream
//! socket; the child (made with `CLONE_PARENT`, so a child of the pool's
//! process) reads its `BOOT` and `ARGS` as an executed child does.
//!
//! What a replacement sees: the program as it was when the pool was built,
//! not as it is when the worker is replaced (Python's fork pool forks its
//! replacements from the parent as it is then). The forker holds copies of
//! the descriptors the program had at that moment, as every forked child
//! does. It dies with its parent, and is killed and reaped when the pool
//! goes.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::sys;

use super::forking::{flush_stdio, fork_guard};
use super::forkserver::{FORK, READY};
use super::{forkserver, forkserver_main, helpers};

/// A running forker; see the module docs.
#[derive(Debug)]
pub(crate) struct Zygote {
    ctrl: OwnedFd,
    pidfd: OwnedFd,
    /// The process that forked it: only there is it killed on drop.
    owner: i32,
}

impl Zygote {
    /// Forks a forker from this process, as the fork start method forks a
    /// child (same checks), and waits until it is ready.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ForkWithThreads`] as for a forked child;
    /// [`ErrorKind::Io`] if the OS refuses; [`ErrorKind::Bootstrap`] if
    /// the forker died before it was ready.
    pub(crate) fn fork(allow_threads: bool) -> Result<Arc<Zygote>> {
        let (ours, theirs) = sys::socket::packet_pair()
            .map_err(|e| Error::io("could not create a socket pair", e))?;
        let paused = fork_guard(allow_threads)?;
        flush_stdio();
        let parent = sys::process::getpid();
        match sys::process::fork().map_err(|e| Error::io("fork failed", e))? {
            sys::process::Forked::Child => {
                std::mem::forget(paused);
                helpers::forget_in_child();
                forkserver::forget_inherited();
                drop(ours);
                if !sys::process::die_with_parent(parent) {
                    sys::process::exit_now(0);
                }
                forkserver_main::serve_on(theirs, parent, "pool-forker")
            }
            sys::process::Forked::Parent(pid) => {
                drop(paused);
                drop(theirs);
                let pidfd = match sys::process::pidfd(pid) {
                    Ok(fd) => fd,
                    Err(e) => {
                        sys::process::kill_and_reap_pid(pid);
                        return Err(Error::io("could not watch the pool's forker", e));
                    }
                };
                let mut buf = [0u8; 512];
                match sys::socket::recv_packet(ours.as_fd(), &mut buf) {
                    Ok(Some((n, _))) if n >= 1 && buf[0] == READY => Ok(Arc::new(Zygote {
                        ctrl: ours,
                        pidfd,
                        owner: parent,
                    })),
                    got => {
                        sys::process::kill_and_reap(pidfd.as_fd());
                        let why = match got {
                            Ok(Some((n, _))) if n > 1 => {
                                String::from_utf8_lossy(&buf[1..n]).into_owned()
                            }
                            _ => "it exited".into(),
                        };
                        Err(Error::new(
                            ErrorKind::Bootstrap,
                            format!("the pool's forker could not start: {why}"),
                        ))
                    }
                }
            }
        }
    }

    /// Asks the forker for a child that will serve `child_sock`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the forker is gone (killed from outside).
    pub(crate) fn request(&self, child_sock: OwnedFd) -> Result<()> {
        sys::socket::send_packet(self.ctrl.as_fd(), &[FORK], &[child_sock.as_fd()])
            .map_err(|e| Error::io("could not reach the pool's forker (was it killed?)", e))
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        if self.owner == sys::process::getpid() {
            sys::process::kill_and_reap(self.pidfd.as_fd());
        }
    }
}
