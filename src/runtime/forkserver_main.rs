//! What the fork server process runs: become ready, then fork a child for
//! each request (protocol in [`super::forkserver`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::error::Error;
use crate::sys;

use super::child;
use super::forkserver::{FAILED, FORK, PRELOAD, PRELOAD_PACKET, PreloadList, READY};

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
    if let Err(why) = preload(&ctrl) {
        fail(&ctrl, &why);
    }
    serve_on(ctrl, parent, "fork-server")
}

/// Says why the server cannot serve, and exits.
fn fail(ctrl: &OwnedFd, why: &str) -> ! {
    let _ = sys::socket::send_packet(ctrl.as_fd(), &[&[FAILED][..], why.as_bytes()].concat(), &[]);
    sys::process::exit_now(1)
}

/// Reads the `PRELOAD` packet and runs its functions; `Err` says why the
/// server cannot start.
fn preload(ctrl: &OwnedFd) -> Result<(), String> {
    let mut buf = vec![0u8; PRELOAD_PACKET];
    let n = loop {
        match sys::socket::recv_packet(ctrl.as_fd(), &mut buf) {
            Ok(Some((n, _fds))) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The parent is gone: so are we.
            _ => sys::process::exit_now(0),
        }
    };
    if n == 0 || buf[0] != PRELOAD || n >= PRELOAD_PACKET {
        return Err("its first message was not the preload list".into());
    }
    let (image, fns): PreloadList = postcard::from_bytes(&buf[1..n])
        .map_err(|e| format!("could not read the preload list: {e}"))?;
    let same_image = sys::image::ImageId::current().is_ok_and(|id| id == image);
    for (i, f) in fns.iter().enumerate() {
        let f = f.resolve(same_image).ok_or_else(|| {
            format!(
                "preload function {} of {} is not in this executable",
                i + 1,
                fns.len()
            )
        })?;
        std::panic::catch_unwind(f).map_err(|payload| {
            let report = crate::error::PanicReport::take(&*payload);
            format!(
                "preload function {} of {} panicked: {}",
                i + 1,
                fns.len(),
                report.message
            )
        })?;
    }
    Ok(())
}

/// The server's loop on `ctrl`, shown in `ps` as `title`: the executed
/// fork server above, and a pool's forker under the fork start method
/// ([`super::zygote`]), a forked copy of the program.
pub(super) fn serve_on(ctrl: OwnedFd, parent: i32, title: &str) -> ! {
    let threads = sys::process::thread_count().unwrap_or(0);
    if threads != 1 {
        let why = format!(
            "it has {threads} threads where it must have one; something started threads before \
             multiproc::init() ran (make init() the first line of main), or a preload function \
             (set_forkserver_preload) started one"
        );
        fail(&ctrl, &why);
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
