//! The worker's side of a pool: the loop a worker process runs (the frames
//! it exchanges with the pool are in `frame.rs`).
//!
//! The worker reads every frame that is there in one read, runs them, and
//! writes results in batches: when its input is empty, or when a batch has
//! waited long enough (adaptive, so slow tasks report at once and tiny
//! ones share one write). Before each task it bumps a counter in a page it
//! shares with the pool ([`SharedPage`]): if it dies, the pool knows which
//! task it was running even if results were not written yet.

use std::os::fd::{AsFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::Fd;
use crate::error::PanicReport;
use crate::sys;
use crate::sys::image::FnRef;
use crate::sys::page::SharedPage;
use crate::target::Target;

use super::frame::{
    FAILED, FORGET, FUNC, HEADER, INIT_FAILED, MORE, RESULTS, RESULTS_FDS, RETIRE, SHM, STOP,
    TAG_ERROR, TAG_PANIC, TASK, TASK_FDS, TIMED, append, begin_frame, end_frame, forget_body,
    func_body, map_shm, task_body, task_fds_body,
};
use crate::frame::{self, Fill, RecvBuf};

/// Shared-page words: tasks started, start time of the latest (ns,
/// monotonic; only with a time limit), tasks finished.
pub(crate) const WORD_STARTED: usize = 0;
pub(crate) const WORD_START_NS: usize = 1;
pub(crate) const WORD_FINISHED: usize = 2;
/// Insights (`PoolBuilder::insights`; see `insights.rs`): when the worker
/// was ready (monotonic ns, after its initializer), how long the
/// initializer took, and the ns spent waiting for input, in task
/// functions, and decoding arguments and encoding results. The first two
/// are always written (once); the rest only with insights on.
pub(crate) const WORD_READY_NS: usize = 3;
pub(crate) const WORD_INIT_NS: usize = 4;
pub(crate) const WORD_WAIT_NS: usize = 5;
pub(crate) const WORD_WORK_NS: usize = 6;
pub(crate) const WORD_CODEC_NS: usize = 7;

/// Runs a chunk: decodes `count` items' arguments from the bytes, runs the
/// task on each, and reports through the [`Ctx`]. The [`Captured`] values
/// are those its FUNC frame brought (none for a plain function).
pub(crate) type TaskFn = fn(&mut Captured, &[u8], u32, &mut Ctx);

/// A [`TaskFn`] as it crosses to a worker.
pub(crate) type TaskRef = FnRef<TaskFn, sys::image::Tasks>;

/// The values a task function was given with [`crate::partial`], as its
/// FUNC frame brought them: decoded on first use and kept for the next
/// chunks, until the pool says to forget the function (FORGET).
pub(crate) struct Captured {
    bytes: Vec<u8>,
    value: Option<Box<dyn std::any::Any>>,
}

impl Captured {
    /// No captured values (a plain function, an initializer).
    pub(crate) fn none() -> Self {
        Self::new(Vec::new())
    }

    fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, value: None }
    }

    /// The values, decoded as `C` the first time.
    fn get<C: DeserializeOwned + 'static>(&mut self) -> Result<&C, String> {
        if self.value.is_none() {
            let c: C = postcard::from_bytes(&self.bytes).map_err(|e| {
                format!(
                    "could not decode the task's captured values of type {}: {e}",
                    std::any::type_name::<C>()
                )
            })?;
            self.value = Some(Box::new(c));
        }
        self.value
            .as_ref()
            .and_then(|v| v.downcast_ref::<C>())
            .ok_or_else(|| "the task's captured values are of another type".to_string())
    }
}

/// The [`TaskFn`] for target type `F` (zero-sized: a function item or a
/// closure capturing nothing). Monomorphised, so that decoding, the call
/// and encoding are one loop over the chunk. A registered entry point: a
/// [`TaskFn`], in `sys::image::Tasks`.
// Placement only; the section holds functions of this signature alone
// (`sys::image::Section`'s contract).
#[allow(unsafe_code)]
#[unsafe(link_section = "multiproc_task")]
pub(crate) fn task_entry<F: Target<M> + Copy, M>(
    _: &mut Captured,
    input: &[u8],
    count: u32,
    ctx: &mut Ctx,
) {
    let Some(f) = sys::image::conjure::<F>() else {
        ctx.fail_rest(
            count,
            "the task function captures state and cannot be rebuilt",
        );
        return;
    };
    let call = move |args: F::Args| f.call(args);
    if ctx.insights {
        run_items::<_, _, true>(input, count, ctx, call)
    } else {
        run_items::<_, _, false>(input, count, ctx, call)
    }
}

/// The [`TaskFn`] of a [`crate::Partial`]: `f(&captured, item)` for each
/// item, with the captured values decoded once per worker. A registered
/// entry point: a [`TaskFn`], in `sys::image::Tasks`.
// Placement only; the section holds functions of this signature alone
// (`sys::image::Section`'s contract).
#[allow(unsafe_code)]
#[unsafe(link_section = "multiproc_task")]
pub(crate) fn partial_entry<F, C, A, R>(
    captured: &mut Captured,
    input: &[u8],
    count: u32,
    ctx: &mut Ctx,
) where
    F: Fn(&C, A) -> R + Copy + 'static,
    C: DeserializeOwned + 'static,
    A: DeserializeOwned,
    R: Serialize,
{
    let Some(f) = sys::image::conjure::<F>() else {
        ctx.fail_rest(
            count,
            "the task function captures state and cannot be rebuilt",
        );
        return;
    };
    match captured.get::<C>() {
        Ok(c) if ctx.insights => {
            run_items::<_, _, true>(input, count, ctx, move |args: A| f(c, args))
        }
        Ok(c) => run_items::<_, _, false>(input, count, ctx, move |args: A| f(c, args)),
        Err(message) => ctx.fail_rest(count, &message),
    }
}

/// Decodes `count` items of type `A` from `input` and reports `call`'s
/// result (or panic) for each; `TIMED` (insights on) also adds the time
/// spent in `call` and around it to the context's counters.
#[inline(always)]
fn run_items<A: DeserializeOwned, R: Serialize, const TIMED: bool>(
    input: &[u8],
    count: u32,
    ctx: &mut Ctx,
    call: impl Fn(A) -> R,
) {
    // One deserializer for the chunk: the items lie back to back.
    let mut de = postcard::Deserializer::from_bytes(input);
    // Timed: two clock reads per item (around the call), and the chunk's
    // whole time; decoding and encoding are the rest.
    let chunk_start = if TIMED { sys::io::monotonic_ns() } else { 0 };
    let mut chunk_work = 0u64;
    for i in 0..count {
        let args = match A::deserialize(&mut de) {
            Ok(args) => args,
            Err(e) => {
                ctx.fail_rest(
                    count - i,
                    &format!(
                        "could not decode the task's arguments: {}",
                        crate::codec::why(&e)
                    ),
                );
                return;
            }
        };
        ctx.begin_item();
        let called = if TIMED { sys::io::monotonic_ns() } else { 0 };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| call(args)));
        if TIMED {
            // Into the context at once: a batch of results written during
            // the chunk publishes it.
            let work = sys::io::monotonic_ns().saturating_sub(called);
            chunk_work += work;
            ctx.work_ns += work;
        }
        match outcome {
            Ok(result) => {
                let mark = ctx.out.len();
                match append(&result, &mut ctx.out) {
                    Ok(()) if ctx.out.len() - mark > ctx.shm_above => ctx.ok_in_shm(mark),
                    Ok(()) => ctx.ok(),
                    Err(e) => {
                        ctx.out.truncate(mark);
                        if let Err(why) = ctx.ok_with_fds(&result) {
                            ctx.fail(&why.unwrap_or_else(|| result_failed(&result, e)));
                        }
                    }
                }
            }
            Err(payload) => ctx.panicked(payload),
        }
        ctx.item_done();
    }
    if TIMED {
        let all = sys::io::monotonic_ns().saturating_sub(chunk_start);
        ctx.codec_ns += all.saturating_sub(chunk_work);
    }
}

/// Why a task's result could not be encoded (postcard's error).
#[cold]
fn result_failed<T: Serialize>(_: &T, e: postcard::Error) -> String {
    format!(
        "could not encode the task's result of type {}: {e}",
        std::any::type_name::<T>()
    )
}

/// The descriptors a TASK_FDS frame announces: one message on the
/// descriptor socket, sent before the frame (so it is there now). Anything
/// else is an error for the item; descriptors that came are closed.
fn take_fds(fds_sock: std::os::fd::BorrowedFd<'_>, announced: u32) -> Result<Vec<OwnedFd>, String> {
    if announced as usize > sys::socket::MAX_FDS {
        return Err(format!(
            "could not decode the task's arguments: the pool announced {announced} descriptors, over the cap of {}",
            sys::socket::MAX_FDS
        ));
    }
    let mut fds = Vec::new();
    let mut byte = [0u8; 1];
    match sys::socket::recv_with(fds_sock, &mut byte, &mut fds, false) {
        Ok(sys::socket::Received::Bytes(_)) if fds.len() == announced as usize => Ok(fds),
        Ok(sys::socket::Received::Bytes(_)) => Err(format!(
            "could not decode the task's arguments: {}",
            crate::codec::fewer_fds_message(announced as usize, fds.len())
        )),
        _ => Err(format!(
            "could not decode the task's arguments: {}",
            crate::codec::fewer_fds_message(announced as usize, 0)
        )),
    }
}

/// Where a TASK or TASK_FDS frame's items are.
enum Input<'a> {
    /// In the frame.
    Plain(&'a [u8]),
    /// In the frame, with the descriptors inside them.
    WithFds(&'a [u8], Vec<OwnedFd>),
    /// In a sealed segment, mapped here (and its length).
    Mapped((sys::shm::SealedMapping, usize)),
    /// They cannot be had: the items fail with this.
    Failed(String),
}

/// What a worker process is given.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) sock: Fd,
    /// Where the descriptors of TASK_FDS frames come from, one message
    /// per frame, each sent just before its frame.
    pub(crate) fds_sock: Fd,
    pub(crate) page: Fd,
    pub(crate) init: Option<(TaskRef, Vec<u8>)>,
    /// The descriptors inside the initializer's arguments, by index.
    pub(crate) init_fds: Vec<Fd>,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) timed: bool,
    /// Time waits, tasks and encoding (`PoolBuilder::insights`).
    pub(crate) insights: bool,
    /// Results longer than this go back as shared memory.
    pub(crate) shm_above: u64,
}

/// Records panics instead of printing them: a task's panic is reported to
/// the pool as that task's error, as Python reports an exception.
fn quiet_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        PanicReport::record(info);
    }));
}

/// What a chunk reports through: the batch of results being built, the
/// shared page, and when to write the batch.
pub(crate) struct Ctx {
    out: Vec<u8>,
    /// Where the open RESULTS frame starts, and how many results it holds.
    frame: Option<(usize, u32)>,
    sock: Option<Rc<OwnedFd>>,
    /// Where the descriptors of RESULTS_FDS frames go (none for the
    /// initializer).
    fds_sock: Option<Rc<OwnedFd>>,
    /// Results whose encoding is longer go back as shared memory.
    shm_above: usize,
    page: Rc<SharedPage>,
    timed: bool,
    started: u64,
    last_flush: Instant,
    /// How many items between two looks at the clock: grows while items
    /// are tiny, drops to 1 when they are slow.
    check_every: u32,
    since_check: u32,
    /// The pool is gone (a write failed).
    broken: bool,
    /// The last failure, for the initializer.
    last_failure: Option<String>,
    /// Insights on: time tasks and their decoding and encoding.
    insights: bool,
    work_ns: u64,
    codec_ns: u64,
}

/// How long finished results may wait for company before they are written.
const BATCH: Duration = Duration::from_micros(200);

impl Ctx {
    fn new(sock: Option<Rc<OwnedFd>>, page: Rc<SharedPage>, timed: bool) -> Self {
        Self {
            out: Vec::with_capacity(64 * 1024),
            frame: None,
            sock,
            fds_sock: None,
            shm_above: usize::MAX,
            started: page.word(WORD_STARTED).load(Ordering::Relaxed),
            page,
            timed,
            last_flush: Instant::now(),
            check_every: 1,
            since_check: 0,
            broken: false,
            last_failure: None,
            insights: false,
            work_ns: 0,
            codec_ns: 0,
        }
    }

    /// Publishes the insight counters in the shared page.
    fn publish_insights(&self) {
        self.page
            .word(WORD_WORK_NS)
            .store(self.work_ns, Ordering::Relaxed);
        self.page
            .word(WORD_CODEC_NS)
            .store(self.codec_ns, Ordering::Relaxed);
    }

    #[inline]
    fn begin_item(&mut self) {
        self.started += 1;
        // The start time first: the pool reads the count, then the time,
        // then the count again.
        if self.timed {
            self.page
                .word(WORD_START_NS)
                .store(sys::io::monotonic_ns(), Ordering::Release);
        }
        self.page
            .word(WORD_STARTED)
            .store(self.started, Ordering::Release);
        if self.frame.is_none() {
            let at = begin_frame(&mut self.out, RESULTS);
            self.out.extend_from_slice(&[0; 4]);
            self.frame = Some((at, 0));
        }
    }

    /// The item's result was appended.
    #[inline]
    fn ok(&mut self) {
        if let Some((_, n)) = &mut self.frame {
            *n += 1;
        }
    }

    /// The item's result holds descriptors (a `SharedSlice`, a `Pipe`
    /// end): it gets a RESULTS_FDS frame of its own, its descriptors sent
    /// just before on the descriptor socket. `Err(None)` if it holds none
    /// (postcard's error stands), `Err(Some(why))` if they cannot go.
    #[cold]
    #[inline(never)]
    fn ok_with_fds<T: Serialize>(&mut self, result: &T) -> Result<(), Option<String>> {
        let encoded = crate::codec::encode(result)
            .map_err(|e| Some(format!("could not encode the task's result: {e}")))?;
        if encoded.fds.is_empty() {
            return Err(None);
        }
        match self.send_result_fds(&encoded.borrowed_fds()) {
            Ok(()) => {}
            Err(e) if self.broken => return Err(Some(format!("the pool is gone ({e})"))),
            Err(e) => {
                return Err(Some(format!(
                    "could not send the task's result's descriptors: {e}"
                )));
            }
        }
        self.results_fds_frame(encoded.fds.len() as u32, &encoded.bytes);
        Ok(())
    }

    /// The result just appended at `mark` is large: its bytes go back in a
    /// sealed segment (one copy), its descriptor on the descriptor socket
    /// and a RESULTS_FDS frame flagged SHM with the length. If no segment
    /// can be had or sent, the bytes stay in the batch.
    #[cold]
    #[inline(never)]
    fn ok_in_shm(&mut self, mark: usize) {
        let len = self.out.len() - mark;
        let sent = sys::shm::sealed_copy("multiproc-result", &self.out[mark..])
            .and_then(|fd| self.send_result_fds(&[fd.as_fd()]));
        if sent.is_err() {
            self.ok();
            return;
        }
        self.out.truncate(mark);
        self.results_fds_frame(1 | SHM, &(len as u64).to_le_bytes());
    }

    /// Sends a result's descriptors on the descriptor socket, just before
    /// its frame. A pool that is gone also marks the worker broken;
    /// another failure (ETOOMANYREFS: too many descriptors in flight,
    /// ENOBUFS) is only this result's.
    fn send_result_fds(&mut self, fds: &[std::os::fd::BorrowedFd<'_>]) -> std::io::Result<()> {
        let Some(sock) = &self.fds_sock else {
            return Err(std::io::Error::other(
                "descriptors cannot travel from the initializer",
            ));
        };
        let sent = sys::socket::send_all(sock.as_fd(), &[&[0]], fds);
        if let Err(e) = &sent {
            self.broken |= e.kind() == std::io::ErrorKind::BrokenPipe;
        }
        sent
    }

    /// Writes the RESULTS_FDS frame of a result whose descriptors were
    /// sent: `count` (with its flags), then `body`. At once: the pool takes
    /// the descriptors when it reads the frame, so a frame held back here
    /// (results are batched) would leave them in the socket, which fills
    /// after a few hundred and blocks this worker while the pool waits for
    /// the frames.
    fn results_fds_frame(&mut self, count: u32, body: &[u8]) {
        self.close_frame();
        let at = begin_frame(&mut self.out, RESULTS_FDS);
        self.out.extend_from_slice(&count.to_le_bytes());
        self.out.extend_from_slice(body);
        end_frame(&mut self.out, at);
        self.flush();
    }

    fn close_frame(&mut self) {
        if let Some((at, n)) = self.frame.take() {
            if n == 0 {
                self.out.truncate(at);
            } else {
                self.out[at + HEADER..at + HEADER + 4].copy_from_slice(&n.to_le_bytes());
                end_frame(&mut self.out, at);
            }
        }
    }

    fn failed_frame(&mut self, tag: u8, body: &[u8]) {
        self.close_frame();
        let at = begin_frame(&mut self.out, FAILED);
        self.out.push(tag);
        self.out.extend_from_slice(body);
        end_frame(&mut self.out, at);
    }

    /// The item failed with `message`.
    fn fail(&mut self, message: &str) {
        self.last_failure = Some(message.to_string());
        self.failed_frame(TAG_ERROR, message.as_bytes());
    }

    /// The initializer failed with `message` (for the worker state's
    /// initializer, `state.rs`).
    pub(crate) fn init_failed(&mut self, message: String) {
        self.last_failure = Some(message);
    }

    /// Whether something run through this context failed.
    pub(crate) fn has_failed(&self) -> bool {
        self.last_failure.is_some()
    }

    pub(crate) fn panicked(&mut self, payload: Box<dyn std::any::Any + Send>) {
        let report = PanicReport::take(&*payload);
        let at = report
            .location
            .as_deref()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        self.last_failure = Some(format!("panicked{at}: {}", report.message));
        let bytes = postcard::to_allocvec(&report).unwrap_or_default();
        self.failed_frame(TAG_PANIC, &bytes);
    }

    /// The next `n` items cannot run (their bytes cannot be read).
    fn fail_rest(&mut self, n: u32, message: &str) {
        for _ in 0..n {
            self.begin_item();
            self.fail(message);
            self.item_done();
        }
    }

    #[inline]
    fn item_done(&mut self) {
        self.page
            .word(WORD_FINISHED)
            .store(self.started, Ordering::Release);
        self.since_check += 1;
        if self.since_check >= self.check_every || self.timed {
            self.since_check = 0;
            if self.last_flush.elapsed() >= BATCH || self.timed {
                self.check_every = 1;
                self.flush();
            } else if self.check_every < 256 {
                self.check_every *= 2;
            }
        }
    }

    /// New input arrived after the batch was written: the next results
    /// start a batch of their own, timed from now, and the clock is read
    /// after the first item again. Without this, a run of tiny tasks left
    /// `check_every` high, and a quick task followed by a long one (in
    /// the next input) kept its result until the long one ended.
    fn new_input(&mut self) {
        self.check_every = 1;
        self.since_check = 0;
        self.last_flush = Instant::now();
    }

    /// Writes the batch (a RESULTS frame never outlives its chunk); with
    /// insights on, the counters are published first, so that a caller
    /// who has its results sees the time they took.
    fn flush(&mut self) {
        self.close_frame();
        if self.insights && !self.out.is_empty() {
            self.publish_insights();
        }
        if let Some(sock) = &self.sock
            && !self.out.is_empty()
        {
            if sys::io::send_all(sock.as_fd(), &self.out).is_err() {
                self.broken = true;
            }
            self.out.clear();
            self.last_flush = Instant::now();
        }
    }

    fn frame(&mut self, kind: u8, body: &[u8]) {
        self.close_frame();
        let at = begin_frame(&mut self.out, kind);
        self.out.extend_from_slice(body);
        end_frame(&mut self.out, at);
    }
}

/// The body of every pool worker process: the loop, then the worker
/// state's exit hook (`state_slot.rs`) when the loop ends by itself (stop,
/// `maxtasksperchild`, memory cap, the pool gone).
pub(crate) fn worker_main(args: WorkerArgs) {
    serve(args);
    super::state_slot::run_at_exit();
}

fn serve(mut args: WorkerArgs) {
    sys::signal::ignore_sigint();
    quiet_panic_hook();
    let sock = Rc::new(args.sock.into_owned());
    let Ok(page) = SharedPage::map(args.page.as_fd()).map(Rc::new) else {
        return;
    };
    drop(args.page);
    let sock_fd = sock.clone();
    let sock = sock_fd.as_fd();
    let fds_sock_fd = Rc::new(args.fds_sock.into_owned());
    let fds_sock = fds_sock_fd.as_fd();
    let init_started = sys::io::monotonic_ns();
    if let Some((init, bytes)) = &args.init {
        let mut scratch = Ctx::new(None, page.clone(), false);
        match init.resolve(true) {
            None => scratch.last_failure = Some("could not be found in the worker".into()),
            Some(f) => {
                let fds = std::mem::take(&mut args.init_fds);
                let fds = fds.into_iter().map(Fd::into_owned).collect();
                crate::codec::with_incoming(fds, || {
                    f(&mut Captured::none(), bytes, 1, &mut scratch)
                });
            }
        }
        if let Some(message) = scratch.last_failure {
            let mut ctx = Ctx::new(Some(sock_fd.clone()), page.clone(), false);
            ctx.frame(INIT_FAILED, format!("the initializer {message}").as_bytes());
            ctx.flush();
            return;
        }
        // The initializer is not a task: start counting from zero.
        for w in [WORD_STARTED, WORD_FINISHED] {
            page.word(w).store(0, Ordering::Release);
        }
    }
    let ready = sys::io::monotonic_ns();
    page.word(WORD_INIT_NS)
        .store(ready - init_started, Ordering::Relaxed);
    page.word(WORD_READY_NS).store(ready, Ordering::Release);
    let mut ctx = Ctx::new(Some(sock_fd.clone()), page.clone(), args.timed);
    ctx.insights = args.insights;
    ctx.fds_sock = Some(fds_sock_fd.clone());
    ctx.shm_above = usize::try_from(args.shm_above).unwrap_or(usize::MAX);
    let mut wait_ns = 0u64;
    let mut funcs: Vec<Option<(TaskFn, Captured)>> = Vec::new();
    let mut inbuf = frame::pool::buffer();
    let mut chunks = 0u64;
    let mut last_memory_check = Instant::now();
    loop {
        while let Ok(Some((kind, body))) = inbuf.next_frame() {
            match kind {
                FUNC => {
                    let Some((id, bytes)) = func_body(inbuf.slice(body)) else {
                        return;
                    };
                    // The function, then the values given with it.
                    let f = postcard::take_from_bytes::<TaskRef>(bytes)
                        .ok()
                        .and_then(|(r, rest)| Some((r.resolve(true)?, rest)))
                        .map(|(f, rest)| (f, Captured::new(rest.to_vec())));
                    let id = id as usize;
                    if funcs.len() <= id {
                        funcs.resize_with(id + 1, || None);
                    }
                    funcs[id] = f;
                }
                FORGET => {
                    let Some(id) = forget_body(inbuf.slice(body)) else {
                        return;
                    };
                    if let Some(slot) = funcs.get_mut(id as usize) {
                        *slot = None;
                    }
                }
                TASK | TASK_FDS => {
                    let (id, count, input) = if kind == TASK {
                        let Some((id, count, items)) = task_body(inbuf.slice(body)) else {
                            return;
                        };
                        (id, count, Input::Plain(items))
                    } else {
                        let Some((id, count, n, item)) = task_fds_body(inbuf.slice(body)) else {
                            return;
                        };
                        // One item per TASK_FDS frame; anything else is
                        // not from this crate's pool.
                        if count & !(TIMED | MORE) != 1 {
                            return;
                        }
                        let fds = take_fds(fds_sock, n & !SHM);
                        let input = match fds {
                            Err(message) => Input::Failed(message),
                            Ok(fds) if n & SHM != 0 => match map_shm(&fds, item) {
                                Ok(mapped) => Input::Mapped(mapped),
                                Err(why) => Input::Failed(format!(
                                    "could not decode the task's arguments: {why}"
                                )),
                            },
                            Ok(fds) => Input::WithFds(item, fds),
                        };
                        (id, count, input)
                    };
                    // Results that have waited long enough go out before
                    // the next chunk, which may run for long: otherwise a
                    // quick item's result, batched while items were tiny,
                    // would wait behind a slow item read in the same read.
                    if !ctx.out.is_empty() && ctx.last_flush.elapsed() >= BATCH {
                        ctx.flush();
                    }
                    // The call's own time limit: time these items too.
                    ctx.timed = args.timed || count & TIMED != 0;
                    let more = count & MORE != 0;
                    let count = count & !(TIMED | MORE);
                    match (funcs.get_mut(id as usize).and_then(Option::as_mut), input) {
                        (None, _) => ctx.fail_rest(
                            count,
                            "the worker could not find the task function (a different executable?)",
                        ),
                        (Some((f, captured)), Input::Plain(items)) => {
                            f(captured, items, count, &mut ctx)
                        }
                        (Some((f, captured)), Input::WithFds(items, fds)) => {
                            crate::codec::with_incoming(fds, || f(captured, items, count, &mut ctx))
                        }
                        (Some((f, captured)), Input::Mapped((map, len))) => {
                            // Unmapped as soon as the item is done.
                            f(captured, &map.bytes()[..len], count, &mut ctx)
                        }
                        (Some(_), Input::Failed(message)) => ctx.fail_rest(count, &message),
                    }
                    ctx.close_frame();
                    if ctx.broken {
                        return;
                    }
                    if more {
                        continue;
                    }
                    chunks += 1;
                    if args.max_tasks.is_some_and(|m| chunks >= m) {
                        ctx.flush();
                        return;
                    }
                    if let Some(cap) = args.max_memory
                        && last_memory_check.elapsed() >= Duration::from_millis(5)
                    {
                        last_memory_check = Instant::now();
                        if sys::io::resident_bytes().is_ok_and(|rss| rss > cap) {
                            ctx.frame(RETIRE, &[]);
                            ctx.flush();
                            return;
                        }
                    }
                }
                STOP => {
                    ctx.flush();
                    return;
                }
                _ => return,
            }
        }
        // Every complete frame is handled: report, then read more.
        ctx.flush();
        if ctx.broken {
            return;
        }
        inbuf.release();
        if ctx.insights {
            let before = sys::io::monotonic_ns();
            let more = read_more(sock, &mut inbuf);
            wait_ns += sys::io::monotonic_ns().saturating_sub(before);
            page.word(WORD_WAIT_NS).store(wait_ns, Ordering::Relaxed);
            if !more {
                return;
            }
        } else if !read_more(sock, &mut inbuf) {
            return;
        }
        ctx.new_input();
    }
}

/// Reads what the pool sent: spins briefly (waking a sleeping process costs
/// tens of microseconds on some machines), then blocks. False at end of
/// file or on error: the pool is gone.
fn read_more(sock: std::os::fd::BorrowedFd<'_>, inbuf: &mut RecvBuf<frame::pool::Pool>) -> bool {
    let spin_until = Instant::now() + Duration::from_micros(SPIN_US);
    let mut blocking = false;
    loop {
        match inbuf.fill_bytes(sock, blocking) {
            Ok(Fill::Data) => return true,
            Ok(Fill::WouldBlock) => {
                if !blocking && Instant::now() >= spin_until {
                    blocking = true;
                }
                std::hint::spin_loop();
            }
            Ok(Fill::Eof) | Err(_) => return false,
        }
    }
}

/// How long a worker spins for more input before it sleeps.
const SPIN_US: u64 = 50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_descriptors_must_be_the_ones_that_came() {
        let (ours, theirs) = sys::socket::stream_pair().unwrap();
        // Over the cap, or nothing there: errors, and nothing is read.
        assert!(
            take_fds(theirs.as_fd(), 10_000)
                .unwrap_err()
                .contains("cap")
        );
        assert!(
            take_fds(theirs.as_fd(), 1)
                .unwrap_err()
                .contains("descriptor")
        );
        // Two came where one was announced: an error, both closed.
        let (a, b) = sys::socket::stream_pair().unwrap();
        assert!(sys::socket::send_fds_nowait(ours.as_fd(), &[a.as_fd(), b.as_fd()]).unwrap());
        let err = take_fds(theirs.as_fd(), 1).unwrap_err();
        assert!(
            err.contains("announces 1 descriptor(s) but 2 arrived"),
            "{err}"
        );
        // The announced count: they arrive.
        assert!(sys::socket::send_fds_nowait(ours.as_fd(), &[a.as_fd()]).unwrap());
        assert_eq!(take_fds(theirs.as_fd(), 1).unwrap().len(), 1);
    }
}
