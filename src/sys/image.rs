//! Naming a function in one process and calling it in another.
//!
//! With the spawn and forkserver start methods the child is a fresh `exec` of
//! this program, loaded at another address (ASLR). A function is therefore
//! sent as its offset from an anchor function in the same image, and the
//! child adds its own anchor's address. That is only right if the child runs
//! the very same image, so three checks come first:
//!
//! 1. the child is started through `/proc/self/exe`, which names the file the
//!    parent runs even if it was replaced or deleted since;
//! 2. parent and child compare the device, inode, size and modification time
//!    of their `/proc/self/exe` (a running executable cannot be written to:
//!    `ETXTBSY`);
//! 3. before jumping, the child compares the first bytes of machine code at
//!    the computed address with the bytes the parent read at its own copy.
//!
//! Only then is the address turned back into a function pointer.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::runtime::child::Entry;

/// Identifies the executable file this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl ImageId {
    /// This process's own image identity, read once and then remembered (a
    /// process's executable does not change; the fork server reads it before
    /// its first fork so that its children need not).
    pub(crate) fn current() -> Result<Self, String> {
        static ID: OnceLock<ImageId> = OnceLock::new();
        if let Some(id) = ID.get() {
            return Ok(*id);
        }
        // A failure is not remembered: the next call tries again.
        let id = Self::read().map_err(|e| e.to_string())?;
        Ok(*ID.get_or_init(|| id))
    }

    fn read() -> io::Result<Self> {
        let m = std::fs::metadata("/proc/self/exe")?;
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })
    }
}

/// How many bytes of code are compared before a jump.
pub(crate) const CODE_CHECK: usize = 16;

/// The function all offsets are taken from.
#[inline(never)]
fn anchor() -> u64 {
    // Something the optimiser cannot merge with another function.
    0x6d75_6c74_6970_726f
}

fn anchor_addr() -> usize {
    anchor as fn() -> u64 as usize
}

/// A function pointer as something that can cross to another process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EntryRef {
    offset: i64,
    code: [u8; CODE_CHECK],
}

fn code_at(addr: usize) -> [u8; CODE_CHECK] {
    let mut code = [0u8; CODE_CHECK];
    // SAFETY: `addr` is the address of a function of this image (ours, or
    // computed from an offset into the same image after the identity check),
    // and every function has at least CODE_CHECK readable bytes after its
    // start: code sections are mapped readable and functions are followed by
    // more code or section padding well before the end of the mapping.
    let src = unsafe { std::slice::from_raw_parts(addr as *const u8, CODE_CHECK) };
    code.copy_from_slice(src);
    code
}

impl EntryRef {
    /// Describes `entry` relative to this image.
    pub(crate) fn new(entry: Entry) -> Self {
        let addr = entry as usize;
        Self {
            offset: addr as i64 - anchor_addr() as i64,
            code: code_at(addr),
        }
    }

    /// Turns the description back into a function pointer, in a process that
    /// has checked it runs the same image ([`ImageId`]). `None` if the code
    /// found there is not the code the parent named.
    pub(crate) fn resolve(&self, same_image: bool) -> Option<Entry> {
        if !same_image {
            return None;
        }
        let addr = (anchor_addr() as i64).checked_add(self.offset)? as usize;
        if code_at(addr) != self.code {
            return None;
        }
        // SAFETY: the image is the parent's (checked by the caller through
        // ImageId), so anchor + offset is where the parent's `Entry` function
        // lies in this process, and its first bytes match. Function pointers
        // and usize have the same size on every Linux target.
        Some(unsafe { std::mem::transmute::<usize, Entry>(addr) })
    }
}

/// Produces a value of a zero-sized `Copy` type, such as a function item or
/// a closure that captures nothing. `None` for any other type.
pub(crate) fn conjure<F: Copy + 'static>() -> Option<F> {
    if std::mem::size_of::<F>() != 0 {
        return None;
    }
    // SAFETY: F is zero-sized, so a value has no bytes to initialise, and F
    // is Copy, so making another value of it is what copying one would do: a
    // value existed in the parent (it was passed to `Process::new`), and Copy
    // types carry no uniqueness invariant that a second copy could break.
    Some(unsafe { std::mem::zeroed::<F>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(
        _: &crate::runtime::child::ChildIo,
        _: Vec<u8>,
        _: Vec<std::os::fd::OwnedFd>,
    ) -> Result<(), crate::Error> {
        Ok(())
    }

    fn other(
        _: &crate::runtime::child::ChildIo,
        _: Vec<u8>,
        _: Vec<std::os::fd::OwnedFd>,
    ) -> Result<(), crate::Error> {
        Err(crate::Error::new(crate::ErrorKind::Io, "other"))
    }

    #[test]
    fn an_entry_resolves_to_itself_in_the_same_image() {
        let r = EntryRef::new(target);
        assert_eq!(
            r.resolve(true).map(|f| f as usize),
            Some(target as Entry as usize)
        );
        assert!(r.resolve(false).is_none(), "another image never resolves");
    }

    #[test]
    fn an_offset_to_other_code_is_refused() {
        let mut r = EntryRef::new(target);
        r.offset = EntryRef::new(other).offset;
        assert!(
            r.resolve(true).is_none(),
            "the code bytes differ, so the jump is refused"
        );
    }

    #[test]
    fn only_zero_sized_copy_types_can_be_conjured() {
        fn f() -> u8 {
            7
        }
        let g = conjure::<fn() -> u8>();
        assert!(g.is_none(), "a fn pointer has a size");
        fn conjure_like<T: Copy + 'static>(_: T) -> Option<T> {
            conjure::<T>()
        }
        assert_eq!(conjure_like(f).map(|h| h()), Some(7));
        let captured = 5u8;
        assert!(conjure_like(move || captured).is_none());
    }

    #[test]
    fn the_image_id_is_stable() {
        assert_eq!(ImageId::current().unwrap(), ImageId::current().unwrap());
    }
}

/// A constructor of a registered manager object, named across processes
/// like [`Entry`].
pub(crate) type Constructor = crate::manager::server::Constructor;

/// A [`Constructor`] as something that can cross to another process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConstructorRef(EntryRef);

impl ConstructorRef {
    /// Describes `f` relative to this image.
    pub(crate) fn new(f: Constructor) -> Self {
        let addr = f as usize;
        Self(EntryRef {
            offset: addr as i64 - anchor_addr() as i64,
            code: code_at(addr),
        })
    }

    /// The constructor again, in a process running the same image; `None`
    /// if the code there is not the code that was named.
    pub(crate) fn resolve(&self, same_image: bool) -> Option<Constructor> {
        if !same_image {
            return None;
        }
        let addr = (anchor_addr() as i64).checked_add(self.0.offset)? as usize;
        if code_at(addr) != self.0.code {
            return None;
        }
        // SAFETY: as in EntryRef::resolve; a ConstructorRef is only made from
        // a Constructor, so the function at that address has that type.
        Some(unsafe { std::mem::transmute::<usize, Constructor>(addr) })
    }
}

/// A pool's task function (decodes, runs, encodes), named across processes
/// like [`Entry`].
pub(crate) type TaskFn = crate::pool::worker::TaskFn;

/// A [`TaskFn`] as something that can cross to another process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskRef(EntryRef);

impl TaskRef {
    /// Describes `f` relative to this image.
    pub(crate) fn new(f: TaskFn) -> Self {
        let addr = f as usize;
        Self(EntryRef {
            offset: addr as i64 - anchor_addr() as i64,
            code: code_at(addr),
        })
    }

    /// The function again, in a process running the same image; `None` if
    /// the code there is not the code that was named.
    pub(crate) fn resolve(&self, same_image: bool) -> Option<TaskFn> {
        if !same_image {
            return None;
        }
        let addr = (anchor_addr() as i64).checked_add(self.0.offset)? as usize;
        if code_at(addr) != self.0.code {
            return None;
        }
        // SAFETY: as in EntryRef::resolve; a TaskRef is only made from a
        // TaskFn, so the function at that address has that type.
        Some(unsafe { std::mem::transmute::<usize, TaskFn>(addr) })
    }
}
