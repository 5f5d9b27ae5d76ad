//! [`SharedMemory`]: a block of bytes shared by processes — anonymous
//! (memfd, the default) or named (POSIX `shm_open`, attachable by name
//! from an unrelated process).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::shm::region::Region;
use crate::sys::shm;

/// A block of shared memory: Python's
/// `multiprocessing.shared_memory.SharedMemory`.
///
/// - [`SharedMemory::new`]: an *anonymous* segment. It has no name, so
///   nothing can leak: it disappears with the last process that holds it,
///   however that process ends. Pass it to children in their arguments
///   (it travels as a descriptor, under every start method).
/// - [`SharedMemory::create`] / [`SharedMemory::attach`]: a *named*
///   segment in `/dev/shm`, which any process of the same user can attach
///   by name. The creating handle owns the name and removes it when
///   dropped (or on [`unlink`](Self::unlink)), unless told to
///   [`keep`](Self::keep) it; attaching handles never remove it.
///
/// # Bytes, not `&mut [u8]`
///
/// Other processes may write the same bytes at any moment, so there is no
/// safe `&[u8]`/`&mut [u8]` view (it would promise that nobody else
/// changes them). Access is by copy ([`read`](Self::read),
/// [`write`](Self::write), [`to_vec`](Self::to_vec)), by atomics
/// ([`atomic_u32`](Self::atomic_u32), [`atomic_u64`](Self::atomic_u64)),
/// or, for code that brings its own synchronisation, through the raw
/// [`as_ptr`](Self::as_ptr).
///
/// # Cleaning up named segments: Python's way and ours
///
/// Python registers every segment a process creates *or attaches* with a
/// "resource tracker" process, which unlinks what is still registered when
/// the program ends, warning about "leaked shared_memory objects". Because
/// attaching also registered (before 3.13's `track=False`), the tracker of
/// a process that merely attached could unlink a segment that its creator
/// and others were still using. Here:
///
/// - only the creating handle unlinks, on drop (or `unlink`); attaching
///   registers nothing, so a reader never pulls a segment from under others;
/// - unlinking removes the *name* only: processes that have the segment
///   mapped keep using it, and it is freed when the last one lets go;
/// - a creator that dies without unlinking (SIGKILL, `mem::forget`, exit
///   without drop) is covered by a tracker process, as in Python: once
///   every process of the creator's family is gone, the tracker unlinks the
///   names it created — but only when no live process maps or holds the
///   segment; while one does, it says so on stderr and waits. The tracker
///   is the program run again, so it needs `multiproc::init()` as the first
///   line of `main` (or `test_support!()`); without it, a killed creator
///   leaves its named segments behind. [`keep`](Self::keep) tells the
///   tracker to leave the segment alone.
///
/// ```
/// # multiproc::init();
/// use multiproc::shared::SharedMemory;
/// let name = format!("doc-example-{}", std::process::id());
/// let owner = SharedMemory::create(&name, 64)?;
/// owner.write(0, b"hello")?;
/// let other = SharedMemory::attach(&name)?; // as an unrelated process would
/// let mut buf = [0u8; 5];
/// other.read(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// assert_eq!(other.size(), 64);
/// drop(owner); // unlinks the name; `other` still works
/// other.write(5, b"!")?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
pub struct SharedMemory {
    region: Region,
    /// The name without its leading `/`, for named segments.
    name: Option<String>,
    /// Whether this handle removes the name when dropped. Never travels:
    /// a received handle does not own the name.
    #[serde(skip)]
    owner: bool,
}

impl Clone for SharedMemory {
    /// Another handle to the same memory, which does not own the name.
    fn clone(&self) -> Self {
        Self {
            region: self.region.clone(),
            name: self.name.clone(),
            owner: false,
        }
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size())
            .field("owner", &self.owner)
            .finish()
    }
}

fn size_error(size: usize) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("a shared-memory segment needs a positive size, not {size}"),
    )
}

/// `name` without a leading `/`, checked to be a valid POSIX shm name.
fn check_name(name: &str) -> Result<&str> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty()
        || bare.len() > 250
        || bare.contains(|c: char| c == '/' || c.is_control())
        || bare == "."
        || bare == ".."
    {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{name:?} is not a shared-memory name: it must be 1 to 250 bytes, with no '/' (but an optional leading one) and no control character (NUL, newline, ...)"
            ),
        ));
    }
    Ok(bare)
}

impl SharedMemory {
    /// A new anonymous segment of `size` zero bytes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if `size` is 0; [`ErrorKind::Io`] if
    /// the kernel refuses the segment.
    pub fn new(size: usize) -> Result<Self> {
        if size == 0 {
            return Err(size_error(size));
        }
        Ok(Self {
            region: Region::new("multiproc-shared-memory", size)?,
            name: None,
            owner: false,
        })
    }

    /// Creates the named segment `name` (`"/name"` or `"name"`) with `size`
    /// zero bytes, readable and writable by this user. This handle owns the
    /// name: dropping it unlinks it, unless [`keep`](Self::keep) was called.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a bad name or a size of 0;
    /// [`ErrorKind::Io`] if the name is taken (the source is an
    /// [`std::io::Error`] of kind `AlreadyExists`, Python's
    /// `FileExistsError`) or the kernel refuses.
    pub fn create(name: &str, size: usize) -> Result<Self> {
        let bare = check_name(name)?;
        if size == 0 {
            return Err(size_error(size));
        }
        let path = format!("/{bare}");
        let fd = shm::create_named(&path, size)
            .map_err(|e| Error::io(format!("could not create shared memory {path:?}"), e))?;
        let region = match Region::from_fd(fd, size) {
            Ok(r) => r,
            Err(e) => {
                let _ = shm::unlink_named(&path);
                return Err(e);
            }
        };
        super::tracker::register(bare);
        Ok(Self {
            region,
            name: Some(bare.to_string()),
            owner: true,
        })
    }

    /// Attaches the existing named segment `name`, whatever process made
    /// it. The handle does not own the name.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a bad name; [`ErrorKind::Io`] if
    /// there is no such segment (source of kind `NotFound`, Python's
    /// `FileNotFoundError`), it is empty, or it cannot be mapped.
    pub fn attach(name: &str) -> Result<Self> {
        let bare = check_name(name)?;
        let path = format!("/{bare}");
        let fd = shm::open_named(&path)
            .map_err(|e| Error::io(format!("could not attach shared memory {path:?}"), e))?;
        let size = shm::size(std::os::fd::AsFd::as_fd(&fd))
            .map_err(|e| Error::io(format!("could not size shared memory {path:?}"), e))?;
        if size == 0 {
            return Err(Error::new(
                ErrorKind::Io,
                format!("shared memory {path:?} is empty (its creator may not have sized it yet)"),
            ));
        }
        Ok(Self {
            region: Region::from_fd(fd, size)?,
            name: Some(bare.to_string()),
            owner: false,
        })
    }

    /// The segment's name (without a leading `/`), or `None` if it is
    /// anonymous.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The size in bytes.
    pub fn size(&self) -> usize {
        self.region.len()
    }

    /// Makes the creating handle leave the name in place when dropped, so
    /// the segment outlives this process; someone must
    /// [`unlink`](Self::unlink) it later.
    pub fn keep(&mut self) {
        if let (true, Some(name)) = (self.owner, &self.name) {
            super::tracker::unregister(name);
        }
        self.owner = false;
    }

    /// Removes the name now (Python's `unlink()`): nobody can attach any
    /// more, and the memory is freed once every process has dropped its
    /// handle. Those that have it keep using it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for an anonymous segment;
    /// [`ErrorKind::Io`] if the name is already gone (kind `NotFound`).
    pub fn unlink(&mut self) -> Result<()> {
        let Some(name) = &self.name else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "an anonymous segment has no name to unlink",
            ));
        };
        let path = format!("/{name}");
        let result = shm::unlink_named(&path)
            .map_err(|e| Error::io(format!("could not unlink shared memory {path:?}"), e));
        if self.owner {
            super::tracker::unregister(name);
            self.owner = false;
        }
        result
    }

    /// Unmaps this handle's view (Python's `close()`); the owner also
    /// unlinks the name, as on drop.
    pub fn close(self) {}

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.size()) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "bytes {offset}..{offset}+{len} lie outside the {} bytes of shared memory",
                    self.size()
                ),
            ));
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes from `offset` into `buf`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the range lies outside the segment.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        self.region.map().read(offset, buf);
        Ok(())
    }

    /// Copies `data` into the segment at `offset`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the range lies outside the segment.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check(offset, data.len())?;
        self.region.map().write(offset, data);
        Ok(())
    }

    /// A copy of the whole segment (Python's `bytes(shm.buf)`).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.size()];
        self.region.map().read(0, &mut v);
        v
    }

    fn check_atomic(&self, offset: usize, size: usize) -> Result<()> {
        self.check(offset, size)?;
        if !(self.region.map().as_ptr() as usize + offset).is_multiple_of(size) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("offset {offset} is not aligned for a {}-byte atomic", size),
            ));
        }
        Ok(())
    }

    /// The 32-bit atomic at `offset`, shared with every process that maps
    /// the segment.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if it lies outside or is misaligned.
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
        self.check_atomic(offset, 4)?;
        Ok(self.region.u32_at(offset))
    }

    /// The 64-bit atomic at `offset`.
    ///
    /// # Errors
    ///
    /// As [`atomic_u32`](Self::atomic_u32).
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        self.check_atomic(offset, 8)?;
        Ok(self.region.u64_at(offset))
    }

    /// The first byte of this process's mapping (`size()` bytes long, valid
    /// while this handle lives). Reading or writing through it is up to you
    /// to synchronise with the other processes.
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.map().as_ptr()
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        if let (true, Some(name)) = (self.owner, &self.name) {
            let _ = shm::unlink_named(&format!("/{name}"));
            super::tracker::unregister(name);
        }
    }
}
