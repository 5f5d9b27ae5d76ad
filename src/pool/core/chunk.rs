//! [`Chunk`]: consecutive items of one job, encoded, as they are queued,
//! sent, and (after a worker's death) sent again; and how a chunk is
//! written as frames (one TASK frame, or, when some of its items carry
//! descriptors, a TASK_FDS frame for each of those and TASK frames for the
//! runs between them: see "Descriptors in tasks" in `src/pool/README.md`).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::codec;
use crate::error::Result;

use crate::pool::frame;

/// The descriptors of one item, shared by its chunk (kept until the item
/// is answered, to send again after a death) and the write queue of the
/// worker it was sent to.
pub(crate) type ItemFds = Arc<Vec<OwnedFd>>;

/// Where, in a worker's write buffer, a frame starts whose descriptors must
/// go on the worker's descriptor socket before its first byte does.
pub(crate) type FdMarks = VecDeque<(usize, ItemFds)>;

/// Consecutive items of one job, encoded: their postcard arguments back
/// to back, and where each ends (kept here, not sent: postcard values
/// delimit themselves).
pub(crate) struct Chunk {
    pub(crate) job: u64,
    pub(crate) func: u32,
    pub(crate) first: u64,
    pub(crate) count: u32,
    pub(crate) data: Vec<u8>,
    ends: Vec<u32>,
    /// The items that carry descriptors (index in the chunk, ascending),
    /// with them; the indices in an item's bytes are into its own table.
    /// `true`: the item's bytes are in its one descriptor, a sealed
    /// segment, and its bytes here are their length (u64).
    fds: Vec<(u32, ItemFds, Option<Arc<LiveSegment>>)>,
    /// Items whose encoding is longer travel in shared memory.
    shm_above: usize,
    /// The bytes of its items that are in shared memory.
    shm_bytes: usize,
}

/// Task segments alive in this process (made by a chunk, not yet dropped
/// by every chunk that holds them). Past [`MAX_LIVE_SEGMENTS`], items take
/// the socket: a `map_async` of thousands of large items must not take
/// thousands of descriptors (the process's limit is often 1 024).
static LIVE_SEGMENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const MAX_LIVE_SEGMENTS: usize = 128;

/// One task segment counted in [`LIVE_SEGMENTS`] while some chunk (the
/// first, or one sent again after a death) holds it.
pub(crate) struct LiveSegment(());

impl LiveSegment {
    fn new() -> Arc<Self> {
        LIVE_SEGMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Arc::new(LiveSegment(()))
    }
}

impl Drop for LiveSegment {
    fn drop(&mut self) {
        LIVE_SEGMENTS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An item's descriptors, and, if they are its bytes (a sealed segment),
/// its count in [`LIVE_SEGMENTS`].
pub(crate) type ItemExtra = (ItemFds, Option<Arc<LiveSegment>>);

impl Chunk {
    /// An empty chunk whose items of more than `shm_above` encoded bytes
    /// travel in shared memory (`usize::MAX`: never).
    pub(crate) fn new(job: u64, func: u32, first: u64, shm_above: usize) -> Self {
        Self {
            job,
            func,
            first,
            count: 0,
            data: Vec::new(),
            ends: Vec::new(),
            fds: Vec::new(),
            shm_above,
            shm_bytes: 0,
        }
    }

    /// Its arguments' size, in the socket or in shared memory: what the
    /// in-flight bound counts.
    pub(crate) fn weight(&self) -> usize {
        self.data.len() + self.shm_bytes
    }

    /// Appends one item's encoded arguments. Arguments holding descriptors
    /// (a `Queue`, `Lock`, pipe end...) fail the plain encoding; they are
    /// encoded again with duplicates of their descriptors, which travel
    /// with the item.
    #[inline]
    pub(crate) fn push<T: serde::Serialize>(&mut self, args: &T) -> Result<()> {
        let at = self.data.len();
        match frame::append(args, &mut self.data) {
            Ok(()) => {
                if self.data.len() - at <= self.shm_above || !self.move_to_shm(at) {
                    self.ends.push(self.data.len() as u32);
                    self.count += 1;
                }
                Ok(())
            }
            Err(_) => {
                self.data.truncate(at);
                self.push_with_fds(args)
            }
        }
    }

    /// The item just appended at `at` is large: its bytes go into a sealed
    /// segment (one copy) that the worker maps, instead of through the
    /// socket, and the item is pushed. False if no segment can be had (too
    /// many alive, a full memory cgroup, the descriptor limit): the bytes
    /// stay, for the socket.
    #[cold]
    #[inline(never)]
    fn move_to_shm(&mut self, at: usize) -> bool {
        use std::sync::atomic::Ordering;
        let len = self.data.len() - at;
        if LIVE_SEGMENTS.load(Ordering::Relaxed) >= MAX_LIVE_SEGMENTS {
            return false;
        }
        match crate::sys::shm::sealed_copy("multiproc-task", &self.data[at..]) {
            Ok(fd) => {
                self.data.truncate(at);
                self.push_item(
                    &(len as u64).to_le_bytes(),
                    Some((Arc::new(vec![fd]), Some(LiveSegment::new()))),
                );
                true
            }
            Err(e) => {
                log::debug!(target: "multiproc", "a task's {len} bytes take the socket: no shared memory ({e})");
                false
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn push_with_fds<T: serde::Serialize>(&mut self, args: &T) -> Result<()> {
        // Its error names the type, and the OS error of a descriptor that
        // could not be duplicated, or the descriptor count over the cap.
        let encoded = codec::encode(args)?;
        let fds = (!encoded.fds.is_empty()).then(|| (Arc::new(encoded.fds), None));
        self.push_item(&encoded.bytes, fds);
        Ok(())
    }

    /// Appends one item's bytes and descriptors (sent again after a death
    /// or a panic).
    pub(crate) fn push_item(&mut self, item: &[u8], fds: Option<ItemExtra>) {
        if let Some((fds, live)) = fds {
            if live.is_some() {
                self.shm_bytes = self
                    .shm_bytes
                    .saturating_add(frame::shm_len(item).unwrap_or(0));
            }
            self.fds.push((self.count, fds, live));
        }
        self.data.extend_from_slice(item);
        self.ends.push(self.data.len() as u32);
        self.count += 1;
    }

    /// The descriptors of item `j`, if it carries some.
    pub(super) fn item_fds(&self, j: usize) -> Option<ItemExtra> {
        if self.fds.is_empty() {
            return None;
        }
        let j = j as u32;
        self.fds
            .binary_search_by_key(&j, |(k, _, _)| *k)
            .ok()
            .map(|at| (self.fds[at].1.clone(), self.fds[at].2.clone()))
    }

    /// The items that carry descriptors: their index in the chunk, the
    /// descriptors, and whether these are the item's bytes (one sealed
    /// segment, the item's bytes here being its length).
    #[cfg(feature = "cluster")]
    pub(crate) fn fd_item_list(&self) -> impl Iterator<Item = (u32, &ItemFds, bool)> {
        self.fds
            .iter()
            .map(|(k, fds, live)| (*k, fds, live.is_some()))
    }

    /// Pushes an item received from another machine: its bytes and, if
    /// any, its descriptors (`shm`: they are its bytes, as
    /// [`fd_item_list`](Self::fd_item_list) says).
    #[cfg(feature = "cluster")]
    pub(crate) fn push_received(&mut self, item: &[u8], fds: Vec<OwnedFd>, shm: bool) {
        if fds.is_empty() {
            return self.push_item(item, None);
        }
        let live = shm.then(LiveSegment::new);
        self.push_item(item, Some((Arc::new(fds), live)));
    }

    /// How many of the items carry descriptors.
    pub(crate) fn fd_items(&self) -> usize {
        self.fds.len()
    }

    /// The items as byte slices.
    pub(crate) fn items(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let item = &self.data[start..end as usize];
                start = end as usize;
                item
            })
            .collect()
    }

    /// Appends the chunk's frames to a worker's write buffer `out`; the
    /// frames whose descriptors must go first are marked in `marks`.
    /// `flag` is [`frame::TIMED`] or 0.
    #[inline]
    pub(super) fn write_frames(&self, out: &mut Vec<u8>, marks: &mut FdMarks, flag: u32) {
        if self.fds.is_empty() {
            task_frame(out, self.func, self.count | flag, &self.data);
            return;
        }
        self.write_split(out, marks, flag);
    }

    #[cold]
    fn write_split(&self, out: &mut Vec<u8>, marks: &mut FdMarks, flag: u32) {
        let items = self.items();
        let mut run_start = 0usize;
        let mut byte_start = 0usize;
        let last = self.count as usize;
        // Each item with descriptors is a frame of its own; the plain
        // items between them go as TASK frames. All but the chunk's last
        // frame say MORE: the worker counts the chunk once.
        let mut frames: Vec<(usize, usize, Option<ItemExtra>)> = Vec::new();
        for (k, fds, shm) in &self.fds {
            let k = *k as usize;
            if k > run_start {
                frames.push((run_start, k, None));
            }
            frames.push((k, k + 1, Some((fds.clone(), shm.clone()))));
            run_start = k + 1;
        }
        if run_start < last {
            frames.push((run_start, last, None));
        }
        let n = frames.len();
        for (f, (from, to, fds)) in frames.into_iter().enumerate() {
            let more = if f + 1 < n { frame::MORE } else { 0 };
            let len: usize = items[from..to].iter().map(|i| i.len()).sum();
            let bytes = &self.data[byte_start..byte_start + len];
            byte_start += len;
            match fds {
                None => task_frame(out, self.func, (to - from) as u32 | flag | more, bytes),
                Some((fds, shm)) => {
                    marks.push_back((out.len(), fds.clone()));
                    let at = frame::begin_frame(out, frame::TASK_FDS);
                    out.extend_from_slice(&self.func.to_le_bytes());
                    out.extend_from_slice(&(1 | flag | more).to_le_bytes());
                    let n = fds.len() as u32 | if shm.is_some() { frame::SHM } else { 0 };
                    out.extend_from_slice(&n.to_le_bytes());
                    out.extend_from_slice(bytes);
                    frame::end_frame(out, at);
                }
            }
        }
    }
}

/// A TASK frame: function id, the item count with its flags, the items.
#[inline]
fn task_frame(out: &mut Vec<u8>, func: u32, count: u32, items: &[u8]) {
    let at = frame::begin_frame(out, frame::TASK);
    out.extend_from_slice(&func.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(items);
    frame::end_frame(out, at);
}

/// Sends one item's descriptors on a worker's descriptor socket, without
/// blocking: false if it has no room now.
#[cold]
fn send_fds(sock: std::os::fd::BorrowedFd<'_>, fds: &ItemFds) -> std::io::Result<bool> {
    use std::os::fd::AsFd;
    let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
    crate::sys::socket::send_fds_nowait(sock, &borrowed)
}

/// What a worker's writer does next (`send_due_fds`).
pub(super) enum FdStep {
    /// The descriptors due before the next byte went out.
    Sent,
    /// They are due but the descriptor socket is full: wait.
    Full,
    /// The descriptor socket failed: the worker is gone.
    Failed,
    /// None are due: write the frame bytes up to this offset (all if `None`).
    BytesUpTo(Option<usize>),
}

/// Sends the descriptors of the frame that starts at `out_start` in a
/// worker's write queue, if one does: they go before its bytes, so the
/// worker finds them when it reads the frame.
pub(super) fn send_due_fds(
    marks: &mut FdMarks,
    sock: std::os::fd::BorrowedFd<'_>,
    out_start: usize,
) -> FdStep {
    match marks.front() {
        Some((at, fds)) if *at <= out_start => match send_fds(sock, fds) {
            Ok(true) => {
                marks.pop_front();
                FdStep::Sent
            }
            Ok(false) => FdStep::Full,
            Err(_) => FdStep::Failed,
        },
        Some((at, _)) => FdStep::BytesUpTo(Some(*at)),
        None => FdStep::BytesUpTo(None),
    }
}

/// The most items with descriptors in flight to one worker (beyond one
/// chunk): their messages wait in its descriptor socket, which must not
/// fill (a full one holds the frames behind them back).
const MAX_FD_ITEMS_INFLIGHT: usize = 64;

/// Whether a worker that holds the chunks `sent` may take one more with
/// `fd_items` items that carry descriptors.
#[cold]
pub(super) fn fd_room<'a>(mut sent: impl Iterator<Item = &'a Chunk>, fd_items: usize) -> bool {
    let mut inflight = 0;
    let mut any = false;
    for c in sent.by_ref() {
        any = true;
        inflight += c.fd_items();
    }
    !any || inflight + fd_items <= MAX_FD_ITEMS_INFLIGHT
}

/// The most argument bytes in flight to one worker (beyond two chunks).
const MAX_INFLIGHT_BYTES: usize = 4 << 20;

/// Whether a worker may take one more chunk of `items` items. Two
/// chunks always (the next one waits in the worker while it runs the
/// first); more while chunks are quick, so that many tasks are in flight
/// and the worker never sleeps between them (waking a process costs tens
/// of microseconds on some machines); never more when chunks are slow,
/// so that the other workers are not left idle.
/// Large arguments are also bounded by bytes: a few MiB in flight keep
/// the socket full, and more would only be memory the kernel and the
/// allocator have to find (fresh pages) for data that waits.
/// `sent` is the worker's chunks in flight, `inflight` their items and
/// `inflight_bytes` their argument bytes.
pub(super) fn has_room(
    item_ns: f64,
    sent: usize,
    inflight: u64,
    inflight_bytes: usize,
    items: u32,
    bytes: usize,
) -> bool {
    if sent < 2 {
        return true;
    }
    let slow = item_ns * items as f64 > 2e6;
    !slow
        && sent < 1024
        && inflight + items as u64 <= 8192
        && inflight_bytes + bytes <= MAX_INFLIGHT_BYTES
}
