//! What the fork server process runs: become ready, then fork a child for
//! each request (protocol in [`super::forkserver`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::error::Error;
use crate::sys;

use super::child;
use super::forkserver::{FAILED, FORK, READY};

/// The fork server's life. Never returns.
pub(crate) fn serve(parent: i32) -> ! {
    let Ok(ctrl) = sys::process::take_stdin() else {
        sys::process::exit_now(70)
    };
    // As for a spawned child (see `runtime::init`): the control socket
    // must be one our parent made.
    if sys::socket::peer_pid(ctrl.as_fd()).ok() != Some(parent) {
        sys::process::exit_now(70);
    }
    sys::process::close_fds_except(ctrl.as_fd());
    if !sys::process::die_with_parent(parent) {
        sys::process::exit_now(0);
    }
    serve_on(ctrl, parent, "fork-server")
}

/// The server's loop on `ctrl`, shown in `ps` as `title`: the executed
/// fork server above, and a pool's forker under the fork start method
/// ([`super::zygote`]), a forked copy of the program.
pub(super) fn serve_on(ctrl: OwnedFd, parent: i32, title: &str) -> ! {
    let threads = sys::process::thread_count().unwrap_or(0);
    if threads != 1 {
        let why = format!(
            "it has {threads} threads where it must have one; something started threads before \
             multiproc::init() ran: make init() the first line of main"
        );
        let _ =
            sys::socket::send_packet(ctrl.as_fd(), &[&[FAILED][..], why.as_bytes()].concat(), &[]);
        sys::process::exit_now(1);
    }
    super::state::show_as(title);
    child::prepare_image();
    if sys::socket::send_packet(ctrl.as_fd(), &[READY], &[]).is_err() {
        sys::process::exit_now(0);
    }
    let mut buf = [0u8; 16];
    let sock = loop {
        let (n, fds) = match sys::socket::recv_packet(ctrl.as_fd(), &mut buf) {
            Ok(Some(got)) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The parent is gone: so are we.
            _ => sys::process::exit_now(0),
        };
        let Ok([sock]) = <[OwnedFd; 1]>::try_from(fds) else {
            continue;
        };
        if n != 1 || buf[0] != FORK {
            continue;
        }
        match sys::process::clone_parent() {
            Ok(sys::process::Forked::Child) => break sock,
            Ok(sys::process::Forked::Parent(_)) => drop(sock),
            Err(e) => child::report_error(sock, &Error::io("the fork server could not fork", e)),
        }
    };
    drop(ctrl);
    child::serve(sock, parent)
}
