//! The worker's side of a pool: the loop a worker process runs, and the
//! frames it exchanges with the pool.
//!
//! A frame is a 5-byte header — body length (u32, little-endian) and a kind
//! byte — and the body. From the pool:
//!
//! | kind | body |
//! |------|------|
//! | FUNC | function id (u32) and a postcard [`TaskRef`]: "id N is this function" |
//! | TASK | function id (u32), item count (u32), then per item its length (u32) and its postcard arguments |
//! | STOP | empty: leave once everything before it is answered |
//!
//! From the worker:
//!
//! | kind | body |
//! |------|------|
//! | RESULTS | per item, in the order received: a tag (OK, PANIC, ERROR), a length (u32), the bytes (postcard value, postcard `PanicReport`, or a UTF-8 message) |
//! | INIT_FAILED | UTF-8 message: the initializer panicked; the worker leaves |
//! | RETIRE | empty: the worker passed its memory cap and leaves without starting the tasks it still holds |
//!
//! The worker reads every frame that is there in one read, runs them, and
//! writes results in batches: when its input is empty, or when a batch has
//! waited long enough (adaptive, so slow tasks report at once and tiny
//! ones share one write). Before each task it bumps a counter in a page it
//! shares with the pool ([`SharedPage`]): if it dies, the pool knows which
//! task it was running even if results were not written yet.

use std::cell::RefCell;
use std::os::fd::AsFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::codec::Fd;
use crate::error::PanicReport;
use crate::sys;
use crate::sys::image::TaskRef;
use crate::sys::page::SharedPage;
use crate::target::Target;

pub(crate) const HEADER: usize = 5;

pub(crate) const FUNC: u8 = 1;
pub(crate) const TASK: u8 = 2;
pub(crate) const STOP: u8 = 3;

pub(crate) const RESULTS: u8 = 1;
pub(crate) const INIT_FAILED: u8 = 2;
pub(crate) const RETIRE: u8 = 3;

pub(crate) const TAG_OK: u8 = 0;
pub(crate) const TAG_PANIC: u8 = 1;
pub(crate) const TAG_ERROR: u8 = 2;

/// Shared-page words: tasks started, start time of the latest (ns,
/// monotonic; only with a time limit), tasks finished.
pub(crate) const WORD_STARTED: usize = 0;
pub(crate) const WORD_START_NS: usize = 1;
pub(crate) const WORD_FINISHED: usize = 2;

/// Decodes a task's arguments, runs it, appends its encoded result.
/// `Err` is a message: the arguments or result could not be decoded or
/// encoded.
pub(crate) type TaskFn = fn(&[u8], &mut Vec<u8>) -> Result<(), String>;

/// The [`TaskFn`] for target type `F` (zero-sized: a function item or a
/// closure capturing nothing).
pub(crate) fn task_entry<F: Target<M> + Copy, M>(
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let f = sys::image::conjure::<F>()
        .ok_or_else(|| "the task function captures state and cannot be rebuilt".to_string())?;
    let args: F::Args = match postcard::take_from_bytes(input) {
        Ok((args, [])) => args,
        Ok(_) => return Err("the task's arguments have bytes left over (a type mismatch)".into()),
        Err(e) => return Err(format!("could not decode the task's arguments: {e}")),
    };
    let result = f.call(args);
    match append(&result, out) {
        Ok(()) => Ok(()),
        Err(e) => Err(format!(
            "could not encode the task's result of type {}: {e}",
            std::any::type_name::<F::Output>()
        )),
    }
}

/// A postcard output that appends to a vector it borrows.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();
    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends `value`'s postcard encoding to `out` (on error, `out` may hold
/// part of it: the caller truncates).
#[inline]
pub(crate) fn append<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> postcard::Result<()> {
    postcard::serialize_with_flavor(value, Append(out))
}

/// What a worker process is given.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) sock: Fd,
    pub(crate) page: Fd,
    pub(crate) init: Option<(TaskRef, Vec<u8>)>,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) timed: bool,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<PanicReport>> = const { RefCell::new(None) };
}

/// Records panics instead of printing them: a task's panic is reported to
/// the pool as that task's error, as Python reports an exception.
fn quiet_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let report = PanicReport {
            message: info.payload_as_str().unwrap_or("Box<dyn Any>").to_owned(),
            location: info.location().map(|l| l.to_string()),
        };
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(report));
    }));
}

fn take_panic(payload: Box<dyn std::any::Any + Send>) -> PanicReport {
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| PanicReport {
            message: payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "Box<dyn Any>".into()),
            location: None,
        })
}

/// Appends a frame header; returns where its length goes.
pub(crate) fn begin_frame(buf: &mut Vec<u8>, kind: u8) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0, kind]);
    at
}

/// Writes the length of the frame that began at `at`.
pub(crate) fn end_frame(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at - HEADER) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// The next complete frame in `buf`: (kind, body range, total length).
pub(crate) fn parse_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if buf.len() < HEADER {
        return None;
    }
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    let total = HEADER + len;
    (buf.len() >= total).then(|| (buf[4], HEADER..total, total))
}

pub(crate) fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// The worker's batch of results being built.
struct Out {
    buf: Vec<u8>,
    frame: Option<usize>,
    last_flush: Instant,
}

impl Out {
    fn item(&mut self, tag: u8) -> usize {
        if self.frame.is_none() {
            self.frame = Some(begin_frame(&mut self.buf, RESULTS));
        }
        self.buf.push(tag);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        at
    }

    fn end_item(&mut self, at: usize) {
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    fn flush(&mut self, sock: std::os::fd::BorrowedFd<'_>) -> bool {
        if let Some(at) = self.frame.take() {
            end_frame(&mut self.buf, at);
        }
        if !self.buf.is_empty() {
            let ok = sys::io::send_all(sock, &self.buf).is_ok();
            self.buf.clear();
            self.last_flush = Instant::now();
            return ok;
        }
        true
    }
}

/// The body of every pool worker process.
pub(crate) fn worker_main(args: WorkerArgs) {
    sys::signal::ignore_sigint();
    quiet_panic_hook();
    let sock = args.sock.into_owned();
    let Ok(page) = SharedPage::map(args.page.as_fd()) else {
        return;
    };
    drop(args.page);
    let sock = sock.as_fd();
    let mut out = Out {
        buf: Vec::with_capacity(64 * 1024),
        frame: None,
        last_flush: Instant::now(),
    };
    if let Some((init, bytes)) = &args.init {
        let failure = match init.resolve(true) {
            None => Some("the initializer could not be found in the worker".to_string()),
            Some(f) => {
                let mut scratch = Vec::new();
                match std::panic::catch_unwind(AssertUnwindSafe(|| f(bytes, &mut scratch))) {
                    Ok(Ok(())) => None,
                    Ok(Err(message)) => Some(message),
                    Err(payload) => {
                        let r = take_panic(payload);
                        let at = r.location.map(|l| format!(" at {l}")).unwrap_or_default();
                        Some(format!("the initializer panicked{at}: {}", r.message))
                    }
                }
            }
        };
        if let Some(message) = failure {
            let at = begin_frame(&mut out.buf, INIT_FAILED);
            out.buf.extend_from_slice(message.as_bytes());
            end_frame(&mut out.buf, at);
            out.flush(sock);
            return;
        }
    }

    let mut funcs: Vec<Option<sys::image::TaskFn>> = Vec::new();
    let mut inbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut start = 0usize;
    let mut started = 0u64;
    let mut chunks = 0u64;
    let mut last_memory_check = Instant::now();
    // How many tasks between two looks at the clock: grows while tasks are
    // tiny, drops to 1 when they are slow.
    let mut check_every = 1u32;
    let mut since_check = 0u32;
    const BATCH: Duration = Duration::from_micros(200);
    loop {
        while let Some((kind, body, total)) = parse_frame(&inbuf[start..]) {
            let body = start + body.start..start + body.end;
            start += total;
            match kind {
                FUNC => {
                    let Some(id) = read_u32(&inbuf, body.start) else {
                        return;
                    };
                    let f = postcard::from_bytes::<TaskRef>(&inbuf[body.start + 4..body.end])
                        .ok()
                        .and_then(|r| r.resolve(true));
                    let id = id as usize;
                    if funcs.len() <= id {
                        funcs.resize(id + 1, None);
                    }
                    funcs[id] = f;
                }
                TASK => {
                    let (Some(id), Some(count)) = (
                        read_u32(&inbuf, body.start),
                        read_u32(&inbuf, body.start + 4),
                    ) else {
                        return;
                    };
                    let f = funcs.get(id as usize).copied().flatten();
                    let mut at = body.start + 8;
                    for _ in 0..count {
                        let Some(len) = read_u32(&inbuf, at) else {
                            return;
                        };
                        let item = at + 4..at + 4 + len as usize;
                        if item.end > body.end {
                            return;
                        }
                        at = item.end;
                        started += 1;
                        // The start time first: the pool reads the count,
                        // then the time, then the count again.
                        if args.timed {
                            page.word(WORD_START_NS)
                                .store(sys::io::monotonic_ns(), Ordering::Release);
                        }
                        page.word(WORD_STARTED).store(started, Ordering::Release);
                        let Some(f) = f else {
                            let pos = out.item(TAG_ERROR);
                            out.buf.extend_from_slice(
                                b"the worker could not find the task function (a different executable?)",
                            );
                            out.end_item(pos);
                            page.word(WORD_FINISHED).store(started, Ordering::Release);
                            continue;
                        };
                        let pos = out.item(TAG_OK);
                        let input = &inbuf[item];
                        let outcome =
                            std::panic::catch_unwind(AssertUnwindSafe(|| f(input, &mut out.buf)));
                        match outcome {
                            Ok(Ok(())) => {}
                            Ok(Err(message)) => {
                                out.buf.truncate(pos + 4);
                                out.buf[pos - 1] = TAG_ERROR;
                                out.buf.extend_from_slice(message.as_bytes());
                            }
                            Err(payload) => {
                                out.buf.truncate(pos + 4);
                                out.buf[pos - 1] = TAG_PANIC;
                                let report = take_panic(payload);
                                let bytes = postcard::to_allocvec(&report).unwrap_or_default();
                                out.buf.extend_from_slice(&bytes);
                            }
                        }
                        out.end_item(pos);
                        page.word(WORD_FINISHED).store(started, Ordering::Release);
                        since_check += 1;
                        if since_check >= check_every || args.timed {
                            since_check = 0;
                            let waited = out.last_flush.elapsed();
                            if waited >= BATCH || args.timed {
                                check_every = 1;
                                if !out.flush(sock) {
                                    return;
                                }
                            } else if check_every < 256 {
                                check_every *= 2;
                            }
                        }
                    }
                    chunks += 1;
                    if args.max_tasks.is_some_and(|m| chunks >= m) {
                        out.flush(sock);
                        return;
                    }
                    if let Some(cap) = args.max_memory
                        && last_memory_check.elapsed() >= Duration::from_millis(5)
                    {
                        last_memory_check = Instant::now();
                        if sys::io::resident_bytes().is_ok_and(|rss| rss > cap) {
                            let at = begin_frame(&mut out.buf, RETIRE);
                            end_frame(&mut out.buf, at);
                            out.flush(sock);
                            return;
                        }
                    }
                }
                STOP => {
                    out.flush(sock);
                    return;
                }
                _ => return,
            }
        }
        // Every complete frame is handled: report, then read more.
        if !out.flush(sock) {
            return;
        }
        if start == inbuf.len() {
            inbuf.clear();
            start = 0;
        } else if start > 0 {
            inbuf.drain(..start);
            start = 0;
        }
        if !read_more(sock, &mut inbuf) {
            return;
        }
    }
}

/// Reads what the pool sent: spins briefly (waking a sleeping process costs
/// tens of microseconds on some machines), then blocks. False at end of
/// file or on error: the pool is gone.
fn read_more(sock: std::os::fd::BorrowedFd<'_>, inbuf: &mut Vec<u8>) -> bool {
    let old = inbuf.len();
    let want = 64 * 1024;
    inbuf.resize(old + want, 0);
    let spin_until = Instant::now() + Duration::from_micros(SPIN_US);
    let mut blocking = false;
    loop {
        match sys::io::recv(sock, &mut inbuf[old..], !blocking) {
            Ok(sys::io::Read::Bytes(n)) => {
                inbuf.truncate(old + n);
                return true;
            }
            Ok(sys::io::Read::WouldBlock) => {
                if !blocking && Instant::now() >= spin_until {
                    blocking = true;
                }
                std::hint::spin_loop();
            }
            Ok(sys::io::Read::Eof) | Err(_) => {
                inbuf.truncate(old);
                return false;
            }
        }
    }
}

/// How long a worker spins for more input before it sleeps.
const SPIN_US: u64 = 50;
