//! Who this process is (its name, identity, parent and key) and which
//! children it has: the state behind `current_process()`,
//! `active_children()` and the joining of children at exit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};

use crate::logging;
use crate::sys;

use super::handle::ChildShared;
use super::method::{self, StartMethod};
use super::protocol::ChildInfo;

static INITIALIZED: AtomicBool = AtomicBool::new(false);
static EXIT_HOOK: Once = Once::new();
static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Who this process is.
#[derive(Clone, Debug)]
pub(crate) struct Me {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    /// A daemon allowed children (`ProcessBuilder::allow_children`).
    pub(crate) may_have_children: bool,
    pub(crate) pid: i32,
    pub(crate) parent: Option<(String, i32)>,
    pub(crate) authkey: [u8; 32],
}

pub(crate) struct State {
    pub(crate) me: Me,
    /// How many children this process has started (names `Process-N`).
    pub(crate) started: u32,
    /// Children not yet reaped.
    pub(crate) children: Vec<Arc<ChildShared>>,
    /// How many pool workers this process has started, in all its pools
    /// (names `PoolWorker-N`, unique in the process as in Python).
    pub(crate) pool_workers: u32,
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    if rustix::rand::getrandom(&mut key, rustix::rand::GetRandomFlags::empty()).is_err() {
        // getrandom cannot fail on Linux ≥ 3.17 once the pool is seeded; if it
        // ever does, fall back to something unpredictable enough for a key
        // that never leaves the machine unless the user sends it.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        key[..16].copy_from_slice(&t.to_le_bytes());
        key[16..20].copy_from_slice(&sys::process::getpid().to_le_bytes());
    }
    key
}

impl State {
    fn main_process() -> Self {
        Self {
            me: Me {
                name: "MainProcess".into(),
                identity: Vec::new(),
                daemon: false,
                may_have_children: true,
                pid: sys::process::getpid(),
                parent: None,
                authkey: random_key(),
            },
            started: 0,
            children: Vec::new(),
            pool_workers: 0,
        }
    }
}

/// Runs `f` on this process's state, creating it on first use. A state
/// inherited through a fork that did not go through `multiproc` (a raw
/// `libc::fork`) is replaced rather than trusted.
pub(crate) fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut guard: MutexGuard<'_, Option<State>> = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let pid = sys::process::getpid();
    if guard.as_ref().is_none_or(|s| s.me.pid != pid) {
        let inherited = guard.take();
        let mut fresh = State::main_process();
        if let Some(old) = inherited {
            // Someone forked behind our back: keep the key (the start
            // method and log level live in memory that the fork copied).
            fresh.me.authkey = old.me.authkey;
        }
        *guard = Some(fresh);
    }
    f(guard.as_mut().expect("state was just set"))
}

/// This process's authentication key (Python's `current_process().authkey`):
/// random in the main process, inherited by children.
pub(crate) fn authkey() -> [u8; 32] {
    with_state(|s| s.me.authkey)
}

/// Whether `init()` ran in this program.
pub(crate) fn initialized() -> bool {
    INITIALIZED.load(Ordering::Acquire)
}

/// Makes this process the child described by `info`: its name, its parent,
/// an empty list of children. Called first thing in every child.
pub(crate) fn become_child(info: &ChildInfo, log_sink: Option<std::os::fd::OwnedFd>) {
    sys::process::forget_cached_pid();
    let level = info.log_level.map(logging::level_from_u8);
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    *guard = Some(State {
        me: Me {
            name: info.name.clone(),
            identity: info.identity.clone(),
            daemon: info.daemon,
            may_have_children: info.may_have_children,
            pid: sys::process::getpid(),
            parent: Some((info.parent_name.clone(), info.parent_pid)),
            authkey: info.authkey,
        },
        started: 0,
        children: Vec::new(),
        pool_workers: 0,
    });
    drop(guard);
    method::inherit(StartMethod::from_u8(info.start_method));
    show_as(&info.name);
    let forward = info.forward_level.map(logging::level_from_u8);
    logging::start_child(&info.name, log_sink, forward, level);
    register_exit_hook();
}

/// Shows this process in `ps` and `top` as `name`: its `comm` (the first
/// 15 bytes) and its argv title, `app: name`. Best effort: a process whose
/// name cannot be set still runs.
pub(crate) fn show_as(name: &str) {
    // The title first: whoever sees the new comm sees the title too.
    let _ = sys::title::set_title(&format!("{}: {name}", sys::title::program_name()));
    let _ = sys::title::set_comm(name);
}

/// Records that `init()` ran in this program (a child inherits the flag,
/// and may start children itself).
pub(crate) fn mark_initialized() {
    INITIALIZED.store(true, Ordering::Release);
}

/// Registers [`at_exit`] with the C library, once per program.
pub(crate) fn register_exit_hook() {
    EXIT_HOOK.call_once(|| {
        if let Err(e) = sys::process::at_exit(exit_hook) {
            log::warn!(target: "multiproc", "children will not be joined at exit: {e}");
        }
    });
}

extern "C" fn exit_hook() {
    // Never unwind into the C library.
    let _ = std::panic::catch_unwind(finish_children);
}

/// What Python does at exit: terminate daemon children, then join all
/// children. Runs at normal exit of the main process and at the end of
/// every child.
pub(crate) fn finish_children() {
    let children: Vec<Arc<ChildShared>> = {
        let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(s) if s.me.pid == sys::process::getpid() => std::mem::take(&mut s.children),
            _ => return,
        }
    };
    if children.is_empty() {
        return;
    }
    log::info!(target: "multiproc", "process shutting down");
    for c in children.iter().filter(|c| c.daemon) {
        log::info!(target: "multiproc", "terminating daemon {} (pid {})", c.name, c.pid);
        let _ = c.signal(libc::SIGTERM);
    }
    for c in &children {
        if !c.daemon {
            log::info!(target: "multiproc", "joining {} (pid {})", c.name, c.pid);
        }
        let _ = c.wait(None);
    }
}

/// The name of the next pool worker this process starts, in any pool:
/// `PoolWorker-1`, `PoolWorker-2`, ... (the count goes on across pools).
pub(crate) fn next_pool_worker_name() -> String {
    with_state(|s| {
        s.pool_workers += 1;
        format!("PoolWorker-{}", s.pool_workers)
    })
}

/// Adds a started child to the list of children.
pub(crate) fn register(child: Arc<ChildShared>) {
    with_state(|s| s.children.push(child));
}

/// Removes a reaped child from the list.
pub(crate) fn unregister(child: &Arc<ChildShared>) {
    with_state(|s| s.children.retain(|c| !Arc::ptr_eq(c, child)));
}

/// Reaps every child that has ended, and returns the ones still running.
/// Python calls this when a process starts and in `active_children()`.
pub(crate) fn reap_finished() -> Vec<Arc<ChildShared>> {
    let children = with_state(|s| s.children.clone());
    let mut running = Vec::with_capacity(children.len());
    let mut ended = Vec::new();
    for c in children {
        match c.poll() {
            Ok(None) => running.push(c),
            _ => ended.push(c),
        }
    }
    if !ended.is_empty() {
        with_state(|s| {
            s.children
                .retain(|c| !ended.iter().any(|e| Arc::ptr_eq(c, e)))
        });
    }
    running
}
