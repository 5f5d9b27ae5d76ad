//! Shared memory: anonymous segments (`memfd_create`), named POSIX segments
//! (`shm_open`), and mappings of either (`mmap(MAP_SHARED)`).
//!
//! Anonymous segments are the default everywhere in the crate: the segment
//! lives exactly as long as some process holds its descriptor or a mapping,
//! so a crash leaves nothing behind in `/dev/shm`. Named segments exist for
//! Python's `SharedMemory(name=...)`, which unrelated processes attach by
//! name; whoever creates one must unlink it.
//!
//! [`Mapping`] is the only handle to mapped memory. It hands out atomics
//! (the way processes synchronise) and copies bytes in and out; it never
//! gives out `&[u8]` or `&mut [u8]`, because another process may write the
//! same bytes at any time.
//!
//! References: [memfd_create(2)](https://man7.org/linux/man-pages/man2/memfd_create.2.html),
//! [shm_open(3)](https://man7.org/linux/man-pages/man3/shm_open.3.html),
//! [mmap(2)](https://man7.org/linux/man-pages/man2/mmap.2.html).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use rustix::fs::{MemfdFlags, Mode};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

/// A fresh anonymous segment of `len` bytes, all zero, close-on-exec.
/// `name` only shows in `/proc/PID/fd` and `/proc/PID/maps`.
pub(crate) fn memfd(name: &str, len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    Ok(fd)
}

/// A fresh anonymous segment of `len` bytes, all zero, close-on-exec, that
/// can later be sealed ([`seal_read_only`]).
pub(crate) fn sealable_memfd(name: &str, len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    Ok(fd)
}

/// The seals that make a segment's bytes fixed for good: nobody can write,
/// shrink or grow it, and no seal can be added or taken away.
fn read_only_seals() -> rustix::fs::SealFlags {
    use rustix::fs::SealFlags;
    SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL
}

/// Seals the segment behind `fd` read-only
/// ([memfd_create(2)](https://man7.org/linux/man-pages/man2/memfd_create.2.html),
/// "File sealing"). Fails with `EBUSY` while any process still maps it
/// writable (a child forked while it was), `EPERM` if it was made without
/// [`sealable_memfd`] or is already sealed.
pub(crate) fn seal_read_only(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::fcntl_add_seals(fd, read_only_seals())?;
    Ok(())
}

/// A new anonymous segment holding a copy of `bytes`, sealed read-only:
/// one copy, its pages reserved first (a full `/dev/shm` or memory cgroup
/// is `ENOSPC` here, never a SIGBUS). `name` labels it in `/proc/PID/fd`.
pub(crate) fn sealed_copy(name: &str, bytes: &[u8]) -> io::Result<OwnedFd> {
    // write(2), not a mapping: the kernel allocates and fills the pages in
    // one pass, with no page faults (a full segment is ENOSPC from write).
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    let mut rest = if bytes.is_empty() { &[0u8][..] } else { bytes };
    while !rest.is_empty() {
        match rustix::io::write(&fd, rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => rest = &rest[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    seal_read_only(fd.as_fd())?;
    Ok(fd)
}

/// 16 random bytes (`getrandom(2)`), to tell apart segments whose inode
/// numbers may repeat (kernels before 5.9 number memfd inodes with a 32-bit
/// counter that wraps). Falls back to the clock and pid if the kernel's
/// pool is not ready.
pub(crate) fn random_tag() -> [u8; 16] {
    let mut tag = [0u8; 16];
    if rustix::rand::getrandom(&mut tag, rustix::rand::GetRandomFlags::empty()).is_err() {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        tag[..8].copy_from_slice(&(now.tv_nsec as u64 ^ (now.tv_sec as u64) << 30).to_le_bytes());
        tag[8..12].copy_from_slice(
            &rustix::process::getpid()
                .as_raw_nonzero()
                .get()
                .to_le_bytes(),
        );
    }
    tag
}

/// Whether the segment behind `fd` is sealed read-only: its bytes can never
/// change and it can never shrink (it may still grow, which no mapping of
/// a fixed length sees). False for anything that is not such a memfd.
pub(crate) fn is_sealed_read_only(fd: BorrowedFd<'_>) -> bool {
    let need = rustix::fs::SealFlags::WRITE | rustix::fs::SealFlags::SHRINK;
    rustix::fs::fcntl_get_seals(fd).is_ok_and(|s| s.contains(need))
}

/// Which segment `fd` is, across descriptors and processes (device and
/// inode number): two descriptors of one segment give the same pair.
pub(crate) fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// The size in bytes of the segment (or file) behind `fd`.
pub(crate) fn size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let st = rustix::fs::fstat(fd)?;
    usize::try_from(st.st_size).map_err(|_| io::Error::other("segment size out of range"))
}

/// Gives the memory behind bytes `offset..offset + len` of the segment
/// back to the system; they read as zero afterwards
/// ([fallocate(2)](https://man7.org/linux/man-pages/man2/fallocate.2.html)
/// with `FALLOC_FL_PUNCH_HOLE`). The size does not change.
pub(crate) fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    use rustix::fs::FallocateFlags;
    rustix::fs::fallocate(
        fd,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    )?;
    Ok(())
}

/// Gives bytes `offset..offset + len` of the segment their pages now
/// ([fallocate(2)](https://man7.org/linux/man-pages/man2/fallocate.2.html),
/// mode 0), so that a full `/dev/shm` or memory cgroup is an `ENOSPC` here
/// rather than a SIGBUS at the first write to a page that cannot be had.
/// This is what PostgreSQL does for its shared memory.
pub(crate) fn reserve(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    loop {
        match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), offset, len) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            // A file system without fallocate: nothing to reserve with.
            Err(rustix::io::Errno::OPNOTSUPP) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The directory behind POSIX shared-memory names on Linux.
const SHM_DIR: &str = "/dev/shm";

/// Opens `/dev/shm` + `name` with `flags` the way `shm_open` would, but
/// never following a symbolic link (`O_NOFOLLOW`), never becoming a
/// controlling terminal and never blocking on a FIFO; then checks that it
/// is a regular file owned by this process's effective user. Another user's
/// symlink, FIFO or file planted at the name is refused (`ELOOP`,
/// `PermissionDenied`), not opened.
fn open_checked(name: &str, flags: rustix::fs::OFlags, mode: Mode) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a shared-memory name has one leading '/' and no other",
        ));
    }
    let path = format!("{SHM_DIR}/{bare}");
    let fd = rustix::fs::open(
        path.as_str(),
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        mode,
    )?;
    let st = rustix::fs::fstat(&fd)?;
    let is_file =
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile;
    if !is_file {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{path} is not a regular file"),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{path} belongs to uid {}, not to this process's uid {me}",
                st.st_uid
            ),
        ));
    }
    // Blocking again: the descriptor is only ever mapped, but keep the
    // flags as shm_open leaves them.
    rustix::fs::fcntl_setfl(&fd, rustix::fs::fcntl_getfl(&fd)? - OFlags::NONBLOCK)?;
    Ok(fd)
}

/// Creates the named segment `name` (of the form `/something`) with `len`
/// zero bytes whose pages are reserved ([`reserve`]), readable and writable
/// by this user only. Fails with `AlreadyExists` if the name is taken (a
/// symlink at the name included), with `StorageFull` (ENOSPC) if
/// `/dev/shm` has no room for `len` bytes.
pub(crate) fn create_named(name: &str, len: usize) -> io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    let fd = open_checked(
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
        Mode::RUSR | Mode::WUSR,
    )?;
    let sized = rustix::fs::ftruncate(&fd, len as u64)
        .map_err(io::Error::from)
        .and_then(|()| reserve(fd.as_fd(), 0, len as u64));
    if let Err(e) = sized {
        let _ = shm::unlink(name);
        return Err(e);
    }
    Ok(fd)
}

/// Opens the existing named segment `name` for reading and writing. Fails
/// with `NotFound` if there is none, with `ELOOP` (an `io::Error` whose raw
/// OS error is 40) if the name is a symbolic link, and `PermissionDenied`
/// if it is not a regular file of this user.
pub(crate) fn open_named(name: &str) -> io::Result<OwnedFd> {
    open_checked(name, rustix::fs::OFlags::RDWR, Mode::empty())
}

/// Removes the name `name`; mappings and descriptors stay valid.
pub(crate) fn unlink_named(name: &str) -> io::Result<()> {
    Ok(shm::unlink(name)?)
}

/// A shared, read-write mapping of a whole segment. Unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes anyway;
// every access goes through atomics or explicit copies, which are sound from
// any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above: `&Mapping` only allows atomic accesses and copies.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of the segment behind `fd`, which must be
    /// at least that long (checked: a shorter segment is `InvalidData`
    /// rather than a SIGBUS later). `len` must not be 0.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        Self::at(fd, 0, len)
    }

    /// Maps bytes `offset..offset + len` of the segment behind `fd`, checked
    /// as in [`new`](Self::new); `offset` must be a multiple of the page
    /// size.
    pub(crate) fn at(fd: BorrowedFd<'_>, offset: usize, len: usize) -> io::Result<Self> {
        let ptr = map_checked(
            fd,
            size(fd)?,
            offset,
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
        )?;
        Ok(Self { ptr, len })
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first byte. Writing through it is only sound under a protocol
    /// that excludes concurrent access to the same bytes.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    #[inline(always)]
    fn check(&self, offset: usize, size: usize, align: usize) {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len),
            "shared-memory access at {offset}+{size} outside a mapping of {} bytes",
            self.len
        );
        // mmap returns page-aligned addresses, so the offset alone decides
        // alignment (and a constant offset makes this check free).
        assert!(
            offset.is_multiple_of(align),
            "misaligned shared-memory access at {offset}"
        );
    }

    /// The 32-bit atomic at `offset`. Panics if it lies outside the mapping
    /// or is misaligned (a bug in the caller's layout, not bad input).
    #[inline]
    pub(crate) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        // SAFETY: in bounds and aligned (checked); the memory lives as long
        // as `self`; AtomicU32 has the size and alignment of u32 and every
        // bit pattern is valid; all processes access these bytes atomically.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// The 64-bit atomic at `offset`; panics as [`atomic_u32`](Self::atomic_u32).
    #[inline]
    pub(crate) fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        // SAFETY: as in atomic_u32.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    /// Copies `src` into the mapping at `offset`. Panics if out of bounds.
    /// The bytes are not synchronised: publish them with a release store to
    /// an atomic afterwards.
    #[inline]
    pub(crate) fn write(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len(), 1);
        // SAFETY: the destination is in bounds (checked) and cannot overlap
        // `src`, which is a Rust slice outside the mapping or, if inside,
        // only ever reached through copies like this one.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        }
    }

    /// Copies bytes at `offset` out into `dst`. Panics if out of bounds.
    /// Read them after an acquire load of the atomic that published them.
    #[inline]
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len(), 1);
        // SAFETY: the source is in bounds (checked); `dst` is an exclusive
        // Rust slice and cannot overlap the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned, and no reference
        // into the mapping outlives `self` (atomics are borrowed from it).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A segment that only this process holds, mapped writable, that grows
/// in place and ends sealed read-only ([`seal`](Self::seal)): the storage
/// of a `SharedVec`. Its descriptor never leaves it, so no other process
/// can map it — except a child forked while it exists, which inherits the
/// mapping; [`bytes`](Self::bytes) and [`bytes_mut`](Self::bytes_mut) give
/// nothing there (`None`), so no two processes ever reach the bytes, and
/// they can be lent as Rust slices.
#[derive(Debug)]
pub(crate) struct SoleSegment {
    fd: OwnedFd,
    /// The whole segment, mapped; `None` while it is 0 bytes long.
    map: Option<Mapping>,
    /// The process that made it.
    owner: u32,
}

impl SoleSegment {
    /// An empty segment labelled `name`.
    pub(crate) fn new(name: &str) -> io::Result<Self> {
        Ok(Self {
            fd: sealable_memfd(name, 0)?,
            map: None,
            owner: super::process::cached_pid(),
        })
    }

    /// Its length in bytes (a multiple of the page size).
    pub(crate) fn len(&self) -> usize {
        self.map.as_ref().map_or(0, Mapping::len)
    }

    /// The process that made it.
    pub(crate) fn owner(&self) -> u32 {
        self.owner
    }

    /// Whether this process made it (false in a forked child).
    #[inline]
    pub(crate) fn is_mine(&self) -> bool {
        self.owner == super::process::cached_pid()
    }

    /// Lengthens it to `bytes` (a multiple of the page size, more than its
    /// length): the new pages reserved (a full `/dev/shm` or memory cgroup
    /// is an error here, not a SIGBUS later) and the whole segment mapped
    /// again; the bytes stay where they are in the segment (no copy). On
    /// failure it is as before.
    pub(crate) fn grow(&mut self, bytes: usize) -> io::Result<()> {
        let old = self.len();
        let grown = || -> io::Result<Mapping> {
            rustix::fs::ftruncate(&self.fd, bytes as u64)?;
            reserve(self.fd.as_fd(), old as u64, (bytes - old) as u64)?;
            Mapping::new(self.fd.as_fd(), bytes)
        };
        match grown() {
            Ok(map) => {
                self.map = Some(map);
                Ok(())
            }
            Err(e) => {
                // Back to the old size; the pages past it are given back.
                let _ = rustix::fs::ftruncate(&self.fd, old as u64);
                Err(e)
            }
        }
    }

    /// Its bytes, in the process that made it; `None` in a forked child.
    #[inline]
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match &self.map {
            _ if !self.is_mine() => None,
            // SAFETY: the mapping is `len` bytes for as long as `self`; no
            // other process reaches them (see the type's docs) and `&self`
            // excludes `&mut` in this one.
            Some(map) => Some(unsafe { std::slice::from_raw_parts(map.as_ptr(), map.len()) }),
            None => Some(&[]),
        }
    }

    /// Its bytes, writable, in the process that made it; `None` in a
    /// forked child.
    #[inline]
    pub(crate) fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        match &self.map {
            _ if !self.is_mine() => None,
            // SAFETY: as in `bytes`, and `&mut self` makes the borrow
            // exclusive.
            Some(map) => Some(unsafe { std::slice::from_raw_parts_mut(map.as_ptr(), map.len()) }),
            None => Some(&mut []),
        }
    }

    /// Cuts it to `keep` bytes (a multiple of the page size, at least one
    /// page), seals it read-only and gives its descriptor, for a
    /// [`SealedMapping`]: no copy, unless a child forked while it existed
    /// still maps it writable (the seal is then refused, `EBUSY`), when a
    /// fresh sealed segment gets a copy (by the kernel: `copy_file_range`).
    pub(crate) fn seal(self, name: &str, keep: usize) -> io::Result<OwnedFd> {
        let had = self.len();
        let SoleSegment { fd, map, .. } = self;
        // The writable mapping must go before the segment can be sealed.
        drop(map);
        rustix::fs::ftruncate(&fd, keep as u64)?;
        if had < keep {
            // An empty segment's one page: receivers refuse segments with
            // holes.
            reserve(fd.as_fd(), had as u64, (keep - had) as u64)?;
        }
        match seal_read_only(fd.as_fd()) {
            Ok(()) => Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let to = sealable_memfd(name, keep)?;
                let (mut from_at, mut to_at) = (0u64, 0u64);
                while (to_at as usize) < keep {
                    let left = keep - to_at as usize;
                    match rustix::fs::copy_file_range(
                        &fd,
                        Some(&mut from_at),
                        &to,
                        Some(&mut to_at),
                        left,
                    ) {
                        Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                        Ok(_) => {}
                        Err(rustix::io::Errno::INTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                seal_read_only(to.as_fd())?;
                Ok(to)
            }
            Err(e) => Err(e),
        }
    }
}

/// Maps bytes `offset..offset + len` (not 0) of the segment behind `fd`,
/// which is `have` bytes long: a shorter one than the range is
/// `InvalidData` rather than a SIGBUS later.
fn map_checked(
    fd: BorrowedFd<'_>,
    have: usize,
    offset: usize,
    len: usize,
    prot: ProtFlags,
    flags: MapFlags,
) -> io::Result<NonNull<u8>> {
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot map 0 bytes",
        ));
    }
    let end = offset.saturating_add(len);
    if have < end {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the segment has {have} bytes, {end} were expected"),
        ));
    }
    // SAFETY: a fresh mapping at an address the kernel picks cannot overlap
    // any Rust object; the segment is at least `offset + len` long, so
    // every mapped page is backed.
    let ptr =
        unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset as u64)? };
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))
}

/// A read-only mapping of a segment sealed read-only: its bytes can never
/// change while it exists, in any process, so it hands them out as `&[u8]`.
/// Unmapped on drop.
///
/// The mapping is `MAP_PRIVATE`: a read-only private mapping of a file
/// reads its page-cache pages, so it is the same memory as every other
/// process's (no copy) — and kernels before 6.7 refuse `MAP_SHARED` of a
/// segment sealed against writes even read-only (`EPERM`).
#[derive(Debug)]
pub(crate) struct SealedMapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the bytes are immutable (sealed) for the mapping's whole life, so
// sharing or moving the handle between threads is sound.
unsafe impl Send for SealedMapping {}
// SAFETY: as above: only shared reads of bytes nobody can write.
unsafe impl Sync for SealedMapping {}

impl SealedMapping {
    /// Maps the first `len` bytes (not 0) of the segment behind `fd`, which
    /// must be sealed read-only ([`is_sealed_read_only`]; anything else,
    /// including a plain file or pipe, is `InvalidData`), at least `len`
    /// long (else `InvalidData`: the seals keep it from shrinking, so no
    /// access can be a SIGBUS later) and have its pages: a sparse segment
    /// (holes, which cost its sender nothing and this process a fresh page
    /// each on reading) is `InvalidData`, so that a peer cannot make this
    /// process allocate memory it did not pay for.
    /// `populate`: map every page now (`MAP_POPULATE`), for a reader of
    /// all of it; else pages are mapped as they are read.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize, populate: bool) -> io::Result<Self> {
        if !is_sealed_read_only(fd) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the descriptor received is not a segment sealed read-only",
            ));
        }
        let st = rustix::fs::fstat(fd)?;
        let have = usize::try_from(st.st_size).unwrap_or(0);
        // Every page of the segment, not only of the part mapped: a hole
        // anywhere means its sender did not fill it.
        let pages = (st.st_blocks as u64).saturating_mul(512);
        if pages < have as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the segment of {have} bytes holds only {pages} bytes of pages (it has holes)"
                ),
            ));
        }
        let flags = if populate {
            MapFlags::PRIVATE | MapFlags::POPULATE
        } else {
            MapFlags::PRIVATE
        };
        // Sealed against shrinking: the pages stay backed.
        let ptr = map_checked(fd, have, 0, len, ProtFlags::READ, flags)?;
        Ok(Self { ptr, len })
    }

    /// The mapped bytes; the first is page-aligned.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes from `ptr` are mapped for as long as `self`
        // lives; the segment is sealed against writes and shrinking, so no
        // process can change them or take their pages away while the slice
        // is borrowed.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for SealedMapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned, and no slice into
        // the mapping outlives `self` (they borrow it).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A mapping of the part of a segment that starts at a fixed offset and
/// only grows: the byte ring of a queue, whose segment is sized for the
/// largest ring it may become but whose mapping covers only what is in use,
/// so that a process under an address-space limit (`RLIMIT_AS`) can hold
/// many queues.
///
/// Growing maps the segment again, larger, at a new address and keeps the
/// old mappings until the handle is dropped: a thread may still be copying
/// through the previous one. Capacities double, so everything kept is less
/// than twice the largest mapping.
#[derive(Debug)]
pub(crate) struct GrowingMapping {
    offset: usize,
    /// The largest mapping so far; points into one of `all`.
    current: std::sync::atomic::AtomicPtr<Mapping>,
    // Boxed so that `current` stays valid when the Vec reallocates.
    #[allow(clippy::vec_box)]
    all: std::sync::Mutex<Vec<Box<Mapping>>>,
}

impl GrowingMapping {
    /// Maps `len` bytes at `offset` of the segment behind `fd`. The
    /// caller keeps the descriptor and passes it again to grow (a queue
    /// costs one descriptor, not two).
    pub(crate) fn new(fd: BorrowedFd<'_>, offset: usize, len: usize) -> io::Result<Self> {
        let mut first = Box::new(Mapping::at(fd, offset, len)?);
        let current = std::sync::atomic::AtomicPtr::new(&mut *first as *mut Mapping);
        Ok(Self {
            offset,
            current,
            all: std::sync::Mutex::new(vec![first]),
        })
    }

    /// The largest mapping so far.
    #[inline]
    pub(crate) fn get(&self) -> &Mapping {
        // SAFETY: `current` always points at a boxed Mapping owned by
        // `all`, which only ever grows and is dropped with `self`; a Box's
        // contents never move.
        unsafe { &*self.current.load(std::sync::atomic::Ordering::Acquire) }
    }

    /// A mapping of at least `len` bytes: the current one if it is large
    /// enough, otherwise a new one of `len` bytes of the segment behind
    /// `fd` (the one given to [`new`](Self::new)).
    #[inline]
    pub(crate) fn at_least(&self, fd: BorrowedFd<'_>, len: usize) -> io::Result<&Mapping> {
        let map = self.get();
        if map.len() >= len {
            return Ok(map);
        }
        self.grow(fd, len)
    }

    #[cold]
    fn grow(&self, fd: BorrowedFd<'_>, len: usize) -> io::Result<&Mapping> {
        let mut all = self.all.lock().unwrap_or_else(|p| p.into_inner());
        let map = self.get();
        if map.len() >= len {
            return Ok(map);
        }
        let mut bigger = Box::new(Mapping::at(fd, self.offset, len)?);
        self.current.store(
            &mut *bigger as *mut Mapping,
            std::sync::atomic::Ordering::Release,
        );
        all.push(bigger);
        drop(all);
        Ok(self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::atomic::Ordering;

    #[test]
    fn two_mappings_of_one_segment_share_bytes_and_atomics() {
        let fd = memfd("test", 4096).unwrap();
        let a = Mapping::new(fd.as_fd(), 4096).unwrap();
        let b = Mapping::new(fd.as_fd(), 4096).unwrap();
        a.atomic_u32(0).store(7, Ordering::Release);
        assert_eq!(b.atomic_u32(0).load(Ordering::Acquire), 7);
        a.write(100, b"hello");
        let mut out = [0u8; 5];
        b.read(100, &mut out);
        assert_eq!(&out, b"hello");
        assert_eq!(
            b.atomic_u64(8).load(Ordering::Relaxed),
            0,
            "fresh memory is zero"
        );
    }

    #[test]
    fn a_short_segment_is_refused_not_a_sigbus() {
        let fd = memfd("short", 100).unwrap();
        let err = Mapping::new(fd.as_fd(), 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            Mapping::new(fd.as_fd(), 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    #[should_panic(expected = "outside a mapping")]
    fn out_of_bounds_access_panics() {
        let fd = memfd("oob", 64).unwrap();
        let m = Mapping::new(fd.as_fd(), 64).unwrap();
        m.write(60, b"12345");
    }

    #[test]
    fn a_growing_mapping_sees_what_the_whole_segment_holds() {
        let fd = memfd("grow", 4096 * 8).unwrap();
        let whole = Mapping::new(fd.as_fd(), 4096 * 8).unwrap();
        let part = GrowingMapping::new(fd.as_fd(), 4096, 4096).unwrap();
        whole.write(4096 + 10, b"abc");
        let mut out = [0u8; 3];
        part.get().read(10, &mut out);
        assert_eq!(&out, b"abc");
        let old = part.get() as *const Mapping;
        whole.write(4096 * 5, b"xyz");
        let big = part.at_least(fd.as_fd(), 4096 * 7).unwrap();
        assert!(big.len() >= 4096 * 7);
        big.read(4096 * 4, &mut out);
        assert_eq!(&out, b"xyz");
        // SAFETY: the old mapping is kept alive by `part`.
        let old = unsafe { &*old };
        old.read(10, &mut out);
        assert_eq!(&out, b"abc", "the old mapping stays usable");
        assert!(
            part.at_least(fd.as_fd(), 4096 * 8).is_err(),
            "past the segment's end"
        );
    }

    #[test]
    fn named_segments_never_follow_a_symlink() {
        let target = format!("/dev/shm/multiproc-test-target-{}", std::process::id());
        let link = format!("multiproc-test-link-{}", std::process::id());
        std::fs::write(&target, b"secret").unwrap();
        std::os::unix::fs::symlink(&target, format!("/dev/shm/{link}")).unwrap();
        let opened = open_named(&format!("/{link}"));
        let created = create_named(&format!("/{link}"), 64);
        let _ = std::fs::remove_file(format!("/dev/shm/{link}"));
        let contents = std::fs::read(&target).unwrap();
        let _ = std::fs::remove_file(&target);
        assert_eq!(opened.unwrap_err().raw_os_error(), Some(libc::ELOOP));
        assert!(created.is_err());
        assert_eq!(contents, b"secret");
    }

    #[test]
    fn named_segments_are_exclusive_and_unlinkable() {
        let name = format!("/multiproc-test-{}", std::process::id());
        let fd = create_named(&name, 64).unwrap();
        assert_eq!(
            create_named(&name, 64).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        let other = open_named(&name).unwrap();
        assert_eq!(size(other.as_fd()).unwrap(), 64);
        unlink_named(&name).unwrap();
        assert_eq!(
            open_named(&name).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        drop(fd);
    }
}
