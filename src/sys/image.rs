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
//! **Registered entry points, never raw addresses.** The three checks above
//! catch mistakes (another build, a stale binary), not a peer that lies: a
//! process that starts this program with a crafted role and standard input,
//! or anything that writes to one of its sockets, could name any address.
//! So an address is only ever used if it is a *registered entry point of
//! the kind expected*: every function that may be named across processes
//! is placed by the compiler in a linker section of its kind
//! (`#[unsafe(link_section = "multiproc_task")]` on the pool's task
//! trampolines, `multiproc_entry` on a child's, `multiproc_ctor`,
//! `multiproc_exit`, `multiproc_preload`: a [`Section`] each), and
//! [`FnRef::resolve`] accepts an address only if it lies between the
//! section's bounds (the `__start_`/`__stop_` symbols the linker defines)
//! **and** is the first byte of a function, as the unwinder's table of
//! function starts (`.eh_frame_hdr`, [`is_function_start`]) says. A
//! section holds only functions of its kind's signature (each is a
//! monomorphisation of one or two generic trampolines that decode their
//! own arguments with the usual bounds), so the worst a lying peer can do
//! is run one of the program's own entry points with bytes it chose, which
//! every entry already treats as untrusted input. An executable without an
//! unwind table (built with `-C force-unwind-tables=no`) resolves nothing:
//! every start that needs a reference fails saying its function was not
//! found (SECURITY.md states this).
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
    // SAFETY: `addr` is the start of a function of this image (ours, or a
    // registered entry point, checked before this is called), and every
    // function has at least CODE_CHECK readable bytes after its start: code
    // sections are mapped readable and functions are followed by more code
    // or section padding well before the end of the mapping.
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

/// A linker section that holds the entry points of one kind, all of one
/// signature: where [`FnRef::resolve`] looks an address up.
///
/// # Safety
///
/// Every function the crate places in section [`NAME`](Self::NAME) (with
/// `#[unsafe(link_section = ...)]`) must have the signature of the
/// function pointer type its [`FnRef`]s resolve to, except the section's
/// [`floor`](Self::floor), which is never resolved.
pub(crate) unsafe trait Section {
    /// The section's name (a C identifier, so that the linker defines its
    /// bounds).
    const NAME: &'static str;
    /// The section's bounds in this process: `start..stop`.
    fn bounds() -> (usize, usize);
    /// The address of the function every section holds so that it exists
    /// (and its bounds are defined) even when nothing else was placed in
    /// it.
    fn floor() -> usize;
}

macro_rules! section {
    ($(#[$doc:meta])* $kind:ident, $name:literal, $start:ident, $stop:ident, $floor:ident, $n:literal) => {
        $(#[$doc])*
        pub(crate) struct $kind;

        /// Holds the section's place; never resolved. Each floor returns
        /// its own number, so that no two are merged into one.
        #[unsafe(link_section = $name)]
        #[inline(never)]
        fn $floor() -> u32 {
            std::hint::black_box($n)
        }

        unsafe extern "C" {
            static $start: u8;
            static $stop: u8;
        }

        // SAFETY: the crate places in this section only functions of the
        // signature named in the kind's documentation (checked at each
        // `link_section` site, which says which kind it is), and its floor.
        unsafe impl Section for $kind {
            const NAME: &'static str = $name;

            fn bounds() -> (usize, usize) {
                (&raw const $start as usize, &raw const $stop as usize)
            }

            fn floor() -> usize {
                $floor as fn() -> u32 as usize
            }
        }
    };
}

section!(
    /// A new process's entries (`runtime::protocol::Entry`).
    Entries, "multiproc_entry", __start_multiproc_entry, __stop_multiproc_entry, entry_floor, 1
);
section!(
    /// A pool's task functions (`pool::worker::TaskFn`).
    Tasks, "multiproc_task", __start_multiproc_task, __stop_multiproc_task, task_floor, 2
);
section!(
    /// A manager's constructors (`manager::server::Constructor`).
    Constructors, "multiproc_ctor", __start_multiproc_ctor, __stop_multiproc_ctor, ctor_floor, 3
);
section!(
    /// A stateful pool's worker-exit hooks (`pool::state`'s `ExitFn`).
    ExitHooks, "multiproc_exit", __start_multiproc_exit, __stop_multiproc_exit, exit_floor, 4
);
section!(
    /// The fork server's preload trampolines (`fn()`).
    Preloads, "multiproc_preload", __start_multiproc_preload, __stop_multiproc_preload, preload_floor, 5
);

/// Whether `addr` is the first byte of a function of this executable, by
/// the unwinder's table of function starts ([`super::unwind`]). `None` if
/// there is no such table (or not one in the layout Linux linkers write):
/// then nothing can be checked, and nothing is resolved.
pub(crate) fn is_function_start(addr: usize) -> Option<bool> {
    let table = super::unwind::function_starts()?;
    Some(table.binary_search(addr))
}

/// A function, named so that another process running the same image can
/// call it: its offset from an anchor function and its first bytes of
/// code. Made from a value of `F`, a registered entry point of section
/// `S`; turned back into an `F` only if the offset names a registered entry
/// point of `S` in this process, after the identity of the image and the
/// code bytes match.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct FnRef<F, S> {
    offset: i64,
    code: [u8; CODE_CHECK],
    #[serde(skip)]
    _f: PhantomData<(F, S)>,
}

impl<F, S> Clone for FnRef<F, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F, S> Copy for FnRef<F, S> {}

impl<F, S> PartialEq for FnRef<F, S> {
    fn eq(&self, other: &Self) -> bool {
        (self.offset, self.code) == (other.offset, other.code)
    }
}

impl<F, S> Eq for FnRef<F, S> {}

impl<F, S> std::fmt::Debug for FnRef<F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnRef")
            .field("offset", &self.offset)
            .finish()
    }
}

/// Whether `addr` is a registered entry point of section `S`: inside its
/// bounds, not its floor, and the start of a function.
fn registered<S: Section>(addr: usize) -> bool {
    let (start, stop) = S::bounds();
    (start..stop).contains(&addr) && addr != S::floor() && is_function_start(addr) == Some(true)
}

impl<F: FnPtr, S: Section> FnRef<F, S> {
    /// Describes `f`, a function this crate placed in section `S`,
    /// relative to this image. (A function outside the section is a bug
    /// of the crate: debug builds panic; otherwise no process resolves
    /// it, and the start or call that needed it fails saying it was not
    /// found.)
    pub(crate) fn new(f: F) -> Self {
        let addr = f.addr();
        debug_assert!(
            registered::<S>(addr),
            "a function outside section {}",
            S::NAME
        );
        Self {
            offset: addr as i64 - anchor_addr() as i64,
            code: code_at(addr),
            _f: PhantomData,
        }
    }

    /// Turns the description back into the function, in a process that has
    /// checked it runs the same image ([`ImageId`]). `None` if the offset
    /// does not name a registered entry point of `S` here, or the code
    /// found there is not the code that was named.
    pub(crate) fn resolve(&self, same_image: bool) -> Option<F> {
        if !same_image {
            return None;
        }
        let addr = usize::try_from((anchor_addr() as i64).checked_add(self.offset)?).ok()?;
        if !registered::<S>(addr) || code_at(addr) != self.code {
            return None;
        }
        const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>()) };
        // SAFETY: F is a function pointer type (FnPtr's contract). `addr`
        // is the first byte of a function in section S (checked just
        // above: its bounds, the unwinder's table of function starts), and
        // every function there but its floor (excluded) has F's signature
        // (Section's contract). A function pointer is its address, and the
        // sizes are equal (asserted above).
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

    section!(
        /// Functions of type `Entry`, for these tests.
        TestFns, "multiproc_test", __start_multiproc_test, __stop_multiproc_test, test_floor, 6
    );
    section!(
        /// Another kind, for these tests: also `Entry`, so that only the
        /// section tells them apart.
        OtherFns, "multiproc_test2", __start_multiproc_test2, __stop_multiproc_test2, test2_floor, 7
    );

    #[allow(unsafe_code)]
    #[unsafe(link_section = "multiproc_test")]
    #[inline(never)]
    fn target(bytes: &[u8]) -> usize {
        bytes.len()
    }

    #[allow(unsafe_code)]
    #[unsafe(link_section = "multiproc_test")]
    #[inline(never)]
    fn also_registered(bytes: &[u8]) -> usize {
        bytes.len() * 3
    }

    #[allow(unsafe_code)]
    #[unsafe(link_section = "multiproc_test2")]
    #[inline(never)]
    fn of_another_kind(bytes: &[u8]) -> usize {
        bytes.len() * 5
    }

    #[inline(never)]
    fn not_registered(bytes: &[u8]) -> usize {
        bytes.len() * 2 + 1
    }

    /// What a lying peer can send: any offset, with the code bytes found
    /// there (it has the same executable).
    fn forged(addr: usize) -> FnRef<Entry, TestFns> {
        FnRef {
            offset: addr as i64 - anchor_addr() as i64,
            code: code_at(addr),
            _f: PhantomData,
        }
    }

    #[test]
    fn an_entry_resolves_to_itself_in_the_same_image() {
        let r = FnRef::<Entry, TestFns>::new(target);
        let f = r.resolve(true).unwrap();
        assert_eq!(f as usize, target as Entry as usize);
        assert_eq!(f(b"abc"), 3);
        assert!(r.resolve(false).is_none(), "another image never resolves");
        let back: FnRef<Entry, TestFns> =
            postcard::from_bytes(&postcard::to_allocvec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let g = FnRef::<Entry, TestFns>::new(also_registered);
        assert_eq!(g.resolve(true).unwrap()(b"ab"), 6);
    }

    #[test]
    fn an_offset_to_other_code_is_refused() {
        let mut r = FnRef::<Entry, TestFns>::new(target);
        r.offset = FnRef::<Entry, TestFns>::new(also_registered).offset;
        assert!(
            r.resolve(true).is_none(),
            "the code bytes differ, so the jump is refused"
        );
    }

    #[test]
    fn only_registered_entry_points_of_the_expected_kind_resolve() {
        // Correct code bytes everywhere: only the registry refuses.
        let plain = not_registered as Entry as usize;
        assert_eq!(is_function_start(plain), Some(true));
        assert!(forged(plain).resolve(true).is_none(), "not in the section");
        let inside = target as Entry as usize + 1;
        assert!(
            forged(inside).resolve(true).is_none(),
            "inside a registered function"
        );
        assert!(
            forged(TestFns::floor()).resolve(true).is_none(),
            "the section's floor"
        );
        let other = of_another_kind as Entry as usize;
        assert!(
            forged(other).resolve(true).is_none(),
            "an entry point of another kind"
        );
        let as_other = FnRef::<Entry, OtherFns> {
            offset: forged(other).offset,
            code: code_at(other),
            _f: PhantomData,
        };
        assert_eq!(as_other.resolve(true).unwrap()(b"a"), 5, "in its own kind");
        assert_eq!(
            forged(target as Entry as usize).resolve(true).unwrap()(b"a"),
            1
        );
        // Offsets far outside the image: refused before any byte is read.
        for offset in [i64::MAX, i64::MIN, -(anchor_addr() as i64) - 1, 1 << 40] {
            let r = FnRef::<Entry, TestFns> {
                offset,
                code: [0; CODE_CHECK],
                _f: PhantomData,
            };
            assert!(r.resolve(true).is_none(), "offset {offset}");
        }
    }

    #[test]
    fn every_kind_of_the_crate_has_its_section() {
        fn check<S: Section>() {
            let (start, stop) = S::bounds();
            assert!(start < stop, "{} is empty", S::NAME);
            assert!((start..stop).contains(&S::floor()), "{}", S::NAME);
        }
        check::<Entries>();
        check::<Tasks>();
        check::<Constructors>();
        check::<ExitHooks>();
        check::<Preloads>();
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
