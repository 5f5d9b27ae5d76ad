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
use std::marker::PhantomData;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

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

/// A function pointer type: what a [`FnRef`] can name.
///
/// Implemented here, and only here, for function pointers of the shapes
/// the crate sends across processes (any argument and return types,
/// borrowed arguments with any lifetime). The trait is `unsafe` and private
/// to the crate: [`FnRef::resolve`] relies on every implementor being a
/// plain function pointer, which `as usize` turns into its address and
/// back.
///
/// # Safety
///
/// `Self` must be a function pointer type (`fn(..) -> ..`), and `addr`
/// must return its address.
pub(crate) unsafe trait FnPtr: Copy + 'static {
    /// The function's address.
    fn addr(self) -> usize;
}

// The shapes are those of a fork server's preload function (`fn()`), a
// manager's constructor (`fn(&[u8]) -> ..`), a
// child's entry (`fn(&ChildIo, Vec<u8>, Vec<OwnedFd>) -> ..`) and a pool's
// task (`fn(&mut Captured, &[u8], u32, &mut Ctx)`).
//
// SAFETY: a function pointer type, whose address `as usize` gives.
unsafe impl<R: 'static> FnPtr for fn() -> R {
    fn addr(self) -> usize {
        self as usize
    }
}

// SAFETY: a function pointer type, whose address `as usize` gives.
unsafe impl<A: ?Sized + 'static, R: 'static> FnPtr for fn(&A) -> R {
    fn addr(self) -> usize {
        self as usize
    }
}

// SAFETY: a function pointer type, whose address `as usize` gives.
unsafe impl<A: ?Sized + 'static, B: 'static, C: 'static, R: 'static> FnPtr
    for fn(&A, Vec<B>, Vec<C>) -> R
{
    fn addr(self) -> usize {
        self as usize
    }
}

// SAFETY: a function pointer type, whose address `as usize` gives.
unsafe impl<A: ?Sized + 'static, C: ?Sized + 'static, R: 'static> FnPtr
    for fn(&mut A, &[u8], u32, &mut C) -> R
{
    fn addr(self) -> usize {
        self as usize
    }
}

/// A function, named so that another process running the same image can
/// call it: its offset from an anchor function and its first bytes of
/// code. Made from a value of `F`; turned back into an `F` only after the
/// identity of the image and the code bytes match.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct FnRef<F> {
    offset: i64,
    code: [u8; CODE_CHECK],
    #[serde(skip)]
    _f: PhantomData<F>,
}

impl<F> Clone for FnRef<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for FnRef<F> {}

impl<F> PartialEq for FnRef<F> {
    fn eq(&self, other: &Self) -> bool {
        (self.offset, self.code) == (other.offset, other.code)
    }
}

impl<F> Eq for FnRef<F> {}

impl<F> std::fmt::Debug for FnRef<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnRef")
            .field("offset", &self.offset)
            .finish()
    }
}

impl<F: FnPtr> FnRef<F> {
    /// Describes `f` relative to this image.
    pub(crate) fn new(f: F) -> Self {
        let addr = f.addr();
        Self {
            offset: addr as i64 - anchor_addr() as i64,
            code: code_at(addr),
            _f: PhantomData,
        }
    }

    /// Turns the description back into the function, in a process that has
    /// checked it runs the same image ([`ImageId`]). `None` if the code
    /// found there is not the code that was named.
    pub(crate) fn resolve(&self, same_image: bool) -> Option<F> {
        if !same_image {
            return None;
        }
        let addr = (anchor_addr() as i64).checked_add(self.offset)? as usize;
        if code_at(addr) != self.code {
            return None;
        }
        const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>()) };
        // SAFETY: F is a function pointer type (FnPtr's contract). The image
        // is the one the FnRef was made in (checked by the caller through
        // ImageId), so anchor + offset is where that process's F value
        // pointed: the same function at the same place in this process,
        // whose first bytes match. A function pointer is its address, and
        // the sizes are equal (asserted above).
        Some(unsafe { std::mem::transmute_copy::<usize, F>(&addr) })
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

    type Entry = fn(&[u8]) -> usize;

    fn target(bytes: &[u8]) -> usize {
        bytes.len()
    }

    fn other(bytes: &[u8]) -> usize {
        bytes.len() * 2 + 1
    }

    #[test]
    fn an_entry_resolves_to_itself_in_the_same_image() {
        let r = FnRef::<Entry>::new(target);
        let f = r.resolve(true).unwrap();
        assert_eq!(f as usize, target as Entry as usize);
        assert_eq!(f(b"abc"), 3);
        assert!(r.resolve(false).is_none(), "another image never resolves");
        let back: FnRef<Entry> = postcard::from_bytes(&postcard::to_allocvec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn an_offset_to_other_code_is_refused() {
        let mut r = FnRef::<Entry>::new(target);
        r.offset = FnRef::<Entry>::new(other).offset;
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
