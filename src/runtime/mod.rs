//! The per-process runtime: who this process is, which children it has, and
//! what `init()` does in a process that `multiproc` started.
//!
//! See `README.md` in this folder for how the three start methods work.

pub(crate) mod child;
pub(crate) mod config;
pub(crate) mod forking;
pub(crate) mod forkserver;
mod forkserver_main;
pub(crate) mod forward;
pub(crate) mod handle;
pub(crate) mod helpers;
pub(crate) mod launch;
pub(crate) mod method;
pub(crate) mod protocol;
pub(crate) mod start;
pub(crate) mod state;
pub(crate) mod zygote;

use crate::sys;

use self::launch::ROLE_ENV;

pub(crate) use self::state::{authkey, initialized, reap_finished, unregister, with_state};

/// What `multiproc::init()` does; see there.
pub(crate) fn init() {
    // Set first: a child inherits the flag, and may start children itself.
    state::mark_initialized();
    // A setuid or setcap program (secure execution) must not let whoever
    // runs it choose, through the environment, to make it a child that
    // runs code named on its standard input.
    let role = match std::env::var_os(ROLE_ENV) {
        Some(_) if sys::process::secure_execution() => {
            eprintln!("multiproc: ignoring {ROLE_ENV} in a setuid/setcap program");
            None
        }
        role => role,
    };
    if let Some(role) = role {
        let role = role.to_string_lossy().into_owned();
        let (role, bind_now) = match role.strip_suffix(":bindnow") {
            Some(r) => (r.to_string(), true),
            None => (role, false),
        };
        // We were started by multiproc; nothing else has run yet.
        if sys::process::thread_count().unwrap_or(2) == 1 {
            sys::process::remove_env(ROLE_ENV);
            if bind_now {
                sys::process::remove_env(launch::BIND_NOW_ENV);
            }
        }
        let parent = |rest: &str| rest.parse::<i32>().ok().filter(|&p| p > 0);
        if let Some(ppid) = role.strip_prefix("spawn:").and_then(parent) {
            let sock = match sys::process::take_stdin() {
                Ok(fd) => fd,
                Err(_) => sys::process::exit_now(70),
            };
            // The socket must be one our parent made: not a socket some
            // other process handed to a program it started with our role.
            if sys::socket::peer_pid(std::os::fd::AsFd::as_fd(&sock)).ok() != Some(ppid) {
                sys::process::exit_now(70);
            }
            sys::process::close_fds_except(std::os::fd::AsFd::as_fd(&sock));
            child::serve(sock, ppid);
        }
        if let Some(ppid) = role.strip_prefix("forkserver:").and_then(parent) {
            forkserver_main::serve(ppid);
        }
        eprintln!("multiproc: ignoring malformed {ROLE_ENV}={role:?}");
    }
    state::register_exit_hook();
}
