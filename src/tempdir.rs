//! Private temporary directories, for the Unix sockets of
//! [`Listener::bind_temp`](crate::connection::Listener::bind_temp) and of a
//! default [`Manager`](crate::manager::Manager).
//!
//! What CPython's `util.get_temp_dir()` gives (a fresh `mkdtemp`), with the
//! clean-up its users miss:
//!
//! - **Fresh and private.** `$TMPDIR/multiproc-<pid>-<64 random bits>`,
//!   made with `mkdir(2)` and mode 0700: a name that exists already (another
//!   user pre-created it, or left a file there) is never reused, only a new
//!   random name is tried; after creation the directory is checked to be a
//!   directory of this user with no access for anyone else. Another user can
//!   neither guess the name in advance nor reach a socket inside.
//! - **Removed on every exit path this process runs code on:** when the
//!   owner drops it, and at `exit` (the C library's `atexit`) for whatever
//!   is still registered, in the process that made it only (a forked child
//!   inherits the list, not the ownership).
//! - **Removed after a death that runs no code** (SIGKILL, or Ctrl-C with
//!   the default action): every creation first sweeps `$TMPDIR` for
//!   `multiproc-<pid>-*` directories of this user whose process is gone, so
//!   the next multiproc program of the same user removes them. (Not the
//!   shared-memory tracker: a tracker process for every listener would cost
//!   a process start; see `issues` note on issue 13.)

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use crate::sys;

/// The directories this process made and still owns: `(pid, path)`.
static OWNED: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

const PREFIX: &str = "multiproc-";

/// A fresh private directory, removed (with what it holds) on drop.
#[derive(Debug)]
pub(crate) struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Makes a fresh 0700 directory in the system's temporary directory.
    ///
    /// # Errors
    ///
    /// The `io::Error` of `mkdir` (after 16 names taken), or `PermissionDenied`
    /// if what was made is not a private directory of this user.
    pub(crate) fn new() -> io::Result<Self> {
        Self::new_in(&std::env::temp_dir())
    }

    fn new_in(base: &Path) -> io::Result<Self> {
        sweep(base);
        let pid = sys::process::cached_pid();
        let mut last = None;
        for _ in 0..16 {
            let mut n = [0u8; 8];
            rustix::rand::getrandom(&mut n, rustix::rand::GetRandomFlags::empty())?;
            let path = base.join(format!("{PREFIX}{pid}-{:016x}", u64::from_le_bytes(n)));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    check_private(&path)?;
                    register(pid, &path);
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no fresh temporary directory")))
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        let mut owned = OWNED.lock().unwrap_or_else(|p| p.into_inner());
        owned.retain(|(_, p)| p != &self.path);
    }
}

fn check_private(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
        let _ = std::fs::remove_dir(path);
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a private directory of uid {me}", path.display()),
        ));
    }
    Ok(())
}

fn register(pid: u32, path: &Path) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let _ = sys::process::at_exit(remove_owned_at_exit);
    });
    OWNED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((pid, path.to_path_buf()));
}

extern "C" fn remove_owned_at_exit() {
    let me = sys::process::cached_pid();
    // try_lock: exit may run while another thread holds the list.
    if let Ok(owned) = OWNED.try_lock() {
        for (pid, path) in owned.iter() {
            if *pid == me {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
}

/// Removes `multiproc-<pid>-<hex>` directories in `base` that belong to
/// this user and whose process is gone.
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some((pid, random)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if random.len() != 16 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        // lstat: never follow a link someone put in /tmp.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() && meta.uid() == me && sys::process::is_dead(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(test: &str) -> PathBuf {
        let base = std::env::temp_dir().join(format!("multiproc-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        base
    }

    #[test]
    fn a_private_dir_is_0700_fresh_and_removed_on_drop() {
        let base = base("fresh");
        let a = PrivateDir::new_in(&base).unwrap();
        let b = PrivateDir::new_in(&base).unwrap();
        assert_ne!(a.path(), b.path());
        let meta = std::fs::metadata(a.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        std::fs::write(a.path().join("socket"), b"").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
        drop(b);
        std::fs::remove_dir(&base).unwrap();
    }

    #[test]
    fn a_dead_owners_dir_is_swept_and_a_live_ones_kept() {
        let base = base("sweep");
        // pid 0x7fff_fff0 cannot exist (above pid_max).
        let dead = base.join(format!("{PREFIX}{}-{:016x}", 0x7fff_fff0u32, 7));
        let live = base.join(format!("{PREFIX}{}-{:016x}", std::process::id(), 8));
        let other = base.join(format!("{PREFIX}{}-notrandom", 0x7fff_fff0u32));
        for d in [&dead, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(dead.join("socket"), b"").unwrap();
        let fresh = PrivateDir::new_in(&base).unwrap();
        assert!(!dead.exists(), "a dead process's directory was kept");
        assert!(live.exists() && other.exists());
        drop(fresh);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
