//! How a process shows in `ps` and `top`: its command name (`comm`, 15
//! bytes, through `prctl(PR_SET_NAME)`,
//! <https://man7.org/linux/man-pages/man2/pr_set_name.2const.html>) and its
//! argv title (`/proc/PID/cmdline`, what `ps -f` and `top -c` print).
//!
//! The title is written over the process's own argument strings, as
//! `setproctitle(3)` does: the kernel gives no unprivileged way to move
//! them (`PR_SET_MM_ARG_START` needs `CAP_SYS_RESOURCE`). The area is the
//! one `/proc/self/stat` names (`arg_start`, `arg_end`); the title is cut
//! to fit it, and its last byte is left non-zero, which tells the kernel
//! to stop `cmdline` at the title's end instead of showing the NUL padding.
//!
//! Caveat: `std::env::args()` reads those same strings, so after a title is
//! set it returns the title. [`original_args`] keeps a copy taken before
//! the first change; it is what executing the program again uses.

use std::ffi::{CString, OsString};
use std::io;
use std::sync::OnceLock;

static ORIGINAL: OnceLock<Vec<OsString>> = OnceLock::new();

/// This program's arguments as they were before any title was set.
pub(crate) fn original_args() -> &'static [OsString] {
    ORIGINAL.get_or_init(|| std::env::args_os().collect())
}

/// The program's short name: the last part of its original `argv[0]`.
pub(crate) fn program_name() -> String {
    original_args()
        .first()
        .map(|a| {
            let a = a.to_string_lossy();
            a.rsplit('/').next().unwrap_or(&a).to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "multiproc".into())
}

/// `prctl(PR_SET_NAME)`: the calling thread's name, which for the main
/// thread is the process's `comm`. Cut to 15 bytes at a character boundary
/// (the kernel would cut in the middle of one); a NUL ends it early.
pub(crate) fn set_comm(name: &str) -> io::Result<()> {
    let name = name.split('\0').next().unwrap_or("");
    let c = CString::new(truncate(name, 15)).expect("no NUL left");
    rustix::thread::set_name(&c).map_err(io::Error::from)
}

/// Writes `title` over this process's argument strings (see the module
/// docs). Only for a process whose other threads do not read
/// `std::env::args()` at the same time (a child that just started).
pub(crate) fn set_title(title: &str) -> io::Result<()> {
    original_args();
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let (start, end) =
        arg_area(&stat).ok_or_else(|| io::Error::other("no argument area in /proc/self/stat"))?;
    let len = end - start;
    if len < 2 {
        return Ok(());
    }
    // The title, NULs, and a last byte that is not NUL (the kernel's sign
    // that cmdline was rewritten, so it stops at the first NUL).
    let title = truncate(title.split('\0').next().unwrap_or(""), len - 2);
    let mut bytes = vec![0u8; len];
    bytes[..title.len()].copy_from_slice(title.as_bytes());
    bytes[len - 1] = b' ';
    // SAFETY: [start, end) is this process's argument area as the kernel
    // set it up at exec (in the initial stack mapping, writable, never
    // unmapped); nothing in Rust holds a reference into it (std and the C
    // library keep raw pointers, and read it only in `args()`, which the
    // caller promises no other thread runs now).
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), start as *mut u8, len) };
    Ok(())
}

/// `arg_start` and `arg_end` from the text of `/proc/self/stat` (fields 48
/// and 49, counted after the parenthesised command name, which may hold
/// spaces).
fn arg_area(stat: &str) -> Option<(usize, usize)> {
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is the first after the name.
    let start: usize = fields.get(48 - 3)?.parse().ok()?;
    let end: usize = fields.get(49 - 3)?.parse().ok()?;
    (start != 0 && end > start && end - start < (1 << 20)).then_some((start, end))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    &s[..at]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_at_a_character_boundary() {
        assert_eq!(truncate("PoolWorker-12345678", 15), "PoolWorker-1234");
        assert_eq!(truncate("ééééééééé", 15), "ééééééé");
        assert_eq!(truncate("short", 15), "short");
    }

    #[test]
    fn reads_the_argument_area() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (start, end) = arg_area(&stat).expect("an area");
        assert!(end > start);
        assert_eq!(arg_area("1 (a) b c"), None);
    }
}
