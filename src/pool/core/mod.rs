//! The pool's engine, run by whichever thread waits on the pool, or by the
//! background thread while none does: workers, the chunks sent to each,
//! results, deaths, time limits.
//!
//! Every blocking call of the pool drives [`Core::pump`]: send queued
//! chunks to workers that have room, read what workers wrote, deliver
//! results to the jobs they belong to, notice dead workers through their
//! pidfds, and sleep in one `poll(2)` over all of it when nothing is
//! ready. The background thread runs [`Core::background_round`] after its
//! `epoll_wait` on the same descriptors. See "Background progress" in
//! `README.md` beside this file.
//!
//! Here: the jobs, dispatch, the sockets' I/O and the poll loop.
//! `deaths.rs` starts and replaces workers, handles a worker's exit and
//! the time limits; `chunk.rs` is the encoded form of consecutive items.
//! Nothing here imports the typed front end: it calls the front end's
//! sinks through [`Sink`].

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::worker::TaskRef;
use crate::context::StartMethod;
use crate::error::{Error, ErrorKind, Result};
use crate::frame::{Fill, RecvBuf};
use crate::process::Process;
use crate::runtime::zygote::Zygote;
use crate::sys;
use crate::sys::epoll::Epoll;
use crate::sys::page::SharedPage;

use super::frame::{self, Failure};
use super::worker;

mod chunk;
mod deaths;
mod funcs;
mod insight;
// Only the cluster engine makes a remote today.
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) mod remote;
mod results;

pub(crate) use self::chunk::Chunk;

/// Work to run once the pool's lock is released (callbacks).
pub(crate) type Callback = Box<dyn FnOnce() + Send>;

/// Where the results of one job go. Implemented by the typed front-ends.
pub(crate) trait Sink: Send {
    /// Items `first..first + count` returned these postcard values, back
    /// to back. A value that cannot be decoded is that item's error (and
    /// the ones after it too: their bytes cannot be found).
    fn ok_batch(&mut self, first: u64, count: u32, bytes: &[u8]);
    /// Item `index` failed. Returns true if the job is finished by it (the
    /// rest of its items are then cancelled).
    fn err(&mut self, index: u64, error: Error) -> bool;
    /// Every item was answered and no more will come. Returns true if the
    /// job can be forgotten (its front-end holds the result elsewhere).
    fn complete(&mut self, _due: &mut Vec<Callback>) -> bool {
        false
    }
    /// Whether the job can be cancelled as a whole by `cancel_unstarted`
    /// (one result for the whole job, as an `AsyncResult`).
    fn cancellable(&self) -> bool {
        false
    }
}

struct Job {
    sink: Box<dyn Sink>,
    /// For error messages: `map(my_crate::square)`.
    pub(crate) what: String,
    /// Items submitted and not yet answered.
    outstanding: u64,
    /// No more items will be submitted.
    sealed: bool,
    /// Attempts after the first for an item whose worker died under it.
    retries: u32,
    /// Whether an item that panicked is run again too (within `retries`).
    retry_panics: bool,
    /// Items run again so far, by index: the attempts made.
    attempts: HashMap<u64, u32>,
    /// The call's own time limit per item (else the pool's).
    timeout: Option<Duration>,
    /// The id of its task function if it was given values (`partial`):
    /// forgotten when the job ends (`funcs.rs`).
    captured_func: Option<u32>,
}

/// What one call sets for itself, over the pool's settings.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PerCall {
    /// Attempts after the first (`Pool::retries`).
    pub(crate) retries: Option<u32>,
    /// The time limit per item (`Pool::task_timeout`).
    pub(crate) timeout: Option<Duration>,
    /// Whether a panic is retried too (`Chunked::retry_panics`).
    pub(crate) retry_panics: Option<bool>,
}

/// The initializer and its encoded arguments, with the descriptors inside
/// them (a `Queue`, `Lock`, pipe end...): every worker gets duplicates.
#[derive(Clone)]
pub(crate) struct InitCall {
    pub(crate) task: TaskRef,
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: std::sync::Arc<Vec<std::os::fd::OwnedFd>>,
}

/// The pool's settings, fixed at creation.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) method: Option<StartMethod>,
    pub(crate) init: Option<InitCall>,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) timeout: Option<Duration>,
    /// Attempts after the first for an item whose worker died under it.
    pub(crate) retries: u32,
    pub(crate) retry_panics: bool,
    pub(crate) max_memory: Option<u64>,
    pub(crate) progress: bool,
    /// Workers may start processes of their own (`PoolBuilder::nested`).
    pub(crate) nested: bool,
    /// Workers time their waits and tasks (`PoolBuilder::insights`).
    pub(crate) insights: bool,
    /// Arguments and results longer than this travel as shared memory
    /// (`PoolBuilder::shared_memory_above`).
    pub(crate) shm_above: usize,
    /// Called as calls advance (`PoolBuilder::on_progress`).
    pub(crate) on_progress: Option<crate::pool::progress::OnProgress>,
    pub(crate) setup: crate::runtime::config::WorkerSetup,
}

struct Worker {
    name: String,
    /// When it was asked for (monotonic ns), for its start-up time.
    spawned_ns: u64,
    process: Process<()>,
    sock: OwnedFd,
    /// Where the descriptors of task arguments go (`chunk.rs`).
    fds_sock: OwnedFd,
    /// Frames in `out` whose descriptors go first.
    fd_marks: chunk::FdMarks,
    page: SharedPage,
    /// What the worker sent and was not handled yet.
    inbuf: RecvBuf<crate::frame::pool::Pool>,
    out: Vec<u8>,
    out_start: usize,
    sent: VecDeque<Chunk>,
    front_answered: u32,
    /// Items sent and not answered.
    inflight: u64,
    /// Bytes of arguments in the chunks sent and not fully answered.
    inflight_bytes: usize,
    answered: u64,
    chunks_sent: u64,
    knows: Vec<bool>,
    /// Will leave by itself (memory cap, task quota) or was told to.
    leaving: bool,
    /// The background thread's wait set watches the socket for room.
    watch_out: bool,
    eof: bool,
    /// Killed for passing this time limit.
    timed_out: Option<Duration>,
    /// Killed because the item it ran was cancelled: whatever it ran is
    /// not that item's failure (see `handle_exit`).
    cancel_killed: bool,
    busy_since: Instant,
}

impl Worker {
    fn who(&self) -> String {
        format!("{} (pid {})", self.name, self.process.pid())
    }

    fn unanswered(&self) -> u64 {
        self.inflight
    }
}

/// Whether the pool takes new work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolState {
    Running,
    Closed,
    Terminated,
}

/// Counters a program can read.
#[derive(Default, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) done: u64,
    pub(crate) failed: u64,
    pub(crate) restarts: u64,
}

pub(crate) struct Core {
    pub(crate) config: Config,
    workers: Vec<Option<Worker>>,
    jobs: HashMap<u64, Job>,
    pending: VecDeque<Chunk>,
    funcs: funcs::Funcs,
    /// Captured functions of ended jobs, to forget (`funcs.rs`).
    forgotten: Vec<u32>,
    /// The counters of workers that left, summed (`insight.rs`).
    retired: Option<(u64, crate::pool::insights::WorkerInsights)>,
    pub(crate) state: PoolState,
    /// Why the pool stopped, when it did by itself.
    stopped: Option<(ErrorKind, String)>,
    next_job: u64,
    spawned: u64,
    pub(crate) counters: Counters,
    /// Jobs with their own time limit (some may be gone; pruned as
    /// limits are checked).
    timed_jobs: Vec<u64>,
    /// Cancelled jobs with a chunk still queued in a worker: that worker
    /// is killed when it starts one (`check_cancelled`).
    cancelled: Vec<u64>,
    pub(crate) due: Vec<Callback>,
    sigints: u64,
    /// Estimated time of one item, in nanoseconds (moving average).
    pub(crate) item_ns: f64,
    samples: u64,
    /// The background thread's wait set: every worker's socket (token
    /// `2 × slot`) and pidfd (`2 × slot + 1`).
    epoll: Arc<Epoll>,
    /// The background thread is the one running this round.
    background: bool,
    /// Under the fork start method: the forker that forks replacement
    /// workers (`runtime::zygote`), made before the first worker.
    zygote: Option<Arc<Zygote>>,
    /// Where the work runs instead of local workers (the cluster engine,
    /// `remote.rs`).
    remote: Option<Box<dyn remote::Remote>>,
}

/// The token of the background thread's doorbell in its wait set.
pub(crate) const DOORBELL: u64 = u64::MAX;

/// How long the pool's thread spins on the sockets before it sleeps.
const SPIN: Duration = Duration::from_micros(30);

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(what, e)
}

impl Core {
    pub(crate) fn new(config: Config) -> Result<Self> {
        let mut core = Core {
            workers: (0..config.processes).map(|_| None).collect(),
            config,
            jobs: HashMap::new(),
            pending: VecDeque::new(),
            funcs: funcs::Funcs::default(),
            forgotten: Vec::new(),
            retired: None,
            state: PoolState::Running,
            stopped: None,
            next_job: 0,
            spawned: 0,
            counters: Counters::default(),
            cancelled: Vec::new(),
            timed_jobs: Vec::new(),
            due: Vec::new(),
            sigints: sys::signal::sigint_count(),
            // Until measured, assume slow tasks: chunks of one, spread out.
            item_ns: 1e6,
            samples: 0,
            epoll: Arc::new(Epoll::new().map_err(io_err("could not create an epoll set"))?),
            background: false,
            zygote: None,
            remote: None,
        };
        if core.method() == StartMethod::Fork && !core.workers.is_empty() {
            core.zygote = Some(Zygote::fork(false)?);
        }
        for i in 0..core.workers.len() {
            let w = core.start_worker(i)?;
            core.place(i, w)?;
        }
        Ok(core)
    }

    /// The background thread's wait set.
    pub(crate) fn epoll(&self) -> Arc<Epoll> {
        self.epoll.clone()
    }

    /// Puts a new worker in slot `i`, watched by the background thread.
    fn place(&mut self, i: usize, w: Worker) -> Result<()> {
        let token = 2 * i as u64;
        self.epoll
            .add(w.sock.as_fd(), token, true, false)
            .and_then(|()| self.epoll.add(w.process.sentinel(), token + 1, true, false))
            .map_err(io_err("could not watch a pool worker"))?;
        self.workers[i] = Some(w);
        Ok(())
    }

    /// Takes the worker out of slot `i` (it is no longer watched).
    fn unplace(&mut self, i: usize) -> Option<Worker> {
        let w = self.workers[i].take()?;
        self.retire(&w);
        self.epoll.remove(w.sock.as_fd());
        self.epoll.remove(w.process.sentinel());
        Some(w)
    }

    /// One round of the background thread: handle the workers whose pidfd
    /// was ready, then the rest as [`pump`](Core::pump) without waiting.
    /// Returns how long the thread may sleep (`None`: until a descriptor
    /// is ready), the nearest time limit bounding it.
    pub(crate) fn background_round(&mut self, ready: &[u64]) -> Result<Option<Duration>> {
        self.background = true;
        let out = self.background_round_inner(ready);
        self.background = false;
        out
    }

    fn background_round_inner(&mut self, ready: &[u64]) -> Result<Option<Duration>> {
        for &token in ready {
            if token == DOORBELL || token % 2 == 0 {
                continue;
            }
            let i = (token / 2) as usize;
            // A driving thread may have handled that exit already and put
            // a new worker in the slot: only an exited one is handled.
            if self
                .workers
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|w| w.process.exitcode().is_some())
            {
                self.handle_exit(i)?;
            }
        }
        self.pump(Duration::ZERO)?;
        let epoll = &self.epoll;
        for (i, w) in self.workers.iter_mut().enumerate() {
            let Some(w) = w else { continue };
            let want = w.out_start < w.out.len() && !w.eof;
            if want != w.watch_out {
                w.watch_out = want;
                let _ = epoll.modify(w.sock.as_fd(), 2 * i as u64, true, want);
            }
        }
        Ok(self.check_time_limits())
    }

    /// Whether a submission left something the background thread must
    /// look at again although no descriptor it watches may become ready:
    /// bytes waiting for room in a socket, or a time limit to enforce.
    pub(crate) fn needs_background_recheck(&self) -> bool {
        self.config.timeout.is_some()
            || !self.cancelled.is_empty()
            || self
                .workers
                .iter()
                .flatten()
                .any(|w| w.out_start < w.out.len() && !w.watch_out)
    }

    /// Whether starting a worker must wait for a thread that drives the
    /// pool: under the fork start method, the background thread cannot
    /// fork (another thread of the program may hold a lock), so a dead
    /// worker's slot stays empty until a call waits on the pool.
    fn defer_start(&self) -> bool {
        self.background && self.method() == StartMethod::Fork && self.zygote.is_none()
    }

    fn method(&self) -> StartMethod {
        self.config
            .method
            .unwrap_or_else(crate::context::get_start_method)
    }

    /// The error new work gets when the pool does not take it.
    pub(crate) fn refuse(&self) -> Option<Error> {
        match (&self.stopped, self.state) {
            (Some((kind, msg)), _) => Some(Error::new(*kind, msg.clone())),
            (None, PoolState::Running) => None,
            (None, PoolState::Closed) => Some(Error::new(
                ErrorKind::PoolClosed,
                "the pool is closed: close() was called, so it takes no new work",
            )),
            (None, PoolState::Terminated) => Some(Error::new(
                ErrorKind::PoolClosed,
                "the pool was terminated, so it takes no new work",
            )),
        }
    }

    /// A new job; `per_call` overrides the pool's retry policy and time
    /// limit.
    pub(crate) fn new_job(&mut self, sink: Box<dyn Sink>, what: String, per_call: PerCall) -> u64 {
        self.next_job += 1;
        if per_call.timeout.is_some() {
            self.timed_jobs.push(self.next_job);
        }
        self.jobs.insert(
            self.next_job,
            Job {
                sink,
                what,
                outstanding: 0,
                sealed: false,
                retries: per_call.retries.unwrap_or(self.config.retries),
                retry_panics: per_call.retry_panics.unwrap_or(self.config.retry_panics),
                attempts: HashMap::new(),
                timeout: per_call.timeout,
                captured_func: None,
            },
        );
        self.next_job
    }

    /// Queues a chunk of job `chunk.job`.
    pub(crate) fn submit(&mut self, chunk: Chunk) {
        if chunk.count == 0 {
            return;
        }
        if let Some(job) = self.jobs.get_mut(&chunk.job) {
            job.outstanding += chunk.count as u64;
            self.pending.push_back(chunk);
        }
    }

    /// Says that job `id` gets no more items; completes it if all are in.
    pub(crate) fn seal(&mut self, id: u64) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.sealed = true;
        }
        self.maybe_complete(id);
    }

    /// Delivers an error for item `index` of job `id` without running it.
    pub(crate) fn fail_item(&mut self, id: u64, index: u64, error: Error) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.outstanding += 1;
        }
        self.deliver_err(id, index, error);
    }

    /// Forgets job `id`: its queued chunks are dropped, results still on
    /// their way are discarded.
    pub(crate) fn cancel(&mut self, id: u64) {
        self.remove_job(id);
        self.pending.retain(|c| c.job != id);
        if let Some(r) = self.remote.as_mut() {
            r.forget(id);
        }
    }

    /// Cancels job `id` for its handle: its queued chunks are dropped, a
    /// worker running one of its items is killed (and replaced, as after
    /// any death; what it had queued goes to the others), results still
    /// on their way are discarded, and the sink completes with `error`.
    /// Returns false if the job had already completed.
    pub(crate) fn cancel_job(&mut self, id: u64, error: Error) -> bool {
        let Some(mut job) = self.remove_job(id) else {
            return false;
        };
        self.pending.retain(|c| c.job != id);
        if let Some(r) = self.remote.as_mut() {
            r.forget(id);
        }
        for w in self.workers.iter_mut().flatten() {
            if w.cancel_killed || !w.sent.iter().any(|c| c.job == id) {
                continue;
            }
            if Self::running_job(w) == Some(id) {
                log::info!(target: "multiproc", "killing pool worker {}: its task was cancelled", w.who());
                w.cancel_killed = true;
                let _ = w.process.kill();
            } else if !self.cancelled.contains(&id) {
                // Queued in the worker behind other work: killed when it
                // gets there (it cannot be told to skip it).
                self.cancelled.push(id);
            }
        }
        job.sink.err(0, error);
        job.sink.complete(&mut self.due);
        true
    }

    /// Cancels every cancellable job none of whose items reached a worker
    /// (Python's `shutdown(cancel_futures=True)`); they complete with
    /// `error()`.
    pub(crate) fn cancel_unstarted(&mut self, error: impl Fn() -> Error) {
        let ids: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.sink.cancellable())
            .map(|(&id, _)| id)
            .filter(|&id| !self.job_sent(id))
            .collect();
        for id in ids {
            self.cancel_job(id, error());
        }
    }

    /// Sends `signal` to every worker (`Pool::terminate_workers`).
    pub(crate) fn signal_workers(&self, signal: crate::Signal) {
        for w in self.workers.iter().flatten() {
            let _ = w.process.send_signal(signal);
        }
    }

    /// The job of the item worker `w` runs now, if it runs one.
    fn running_job(w: &Worker) -> Option<u64> {
        let started = w.page.word(worker::WORD_STARTED).load(Ordering::Acquire);
        let finished = w.page.word(worker::WORD_FINISHED).load(Ordering::Acquire);
        if started <= finished || started <= w.answered {
            return None;
        }
        // Among the unanswered items (the front chunk's unanswered ones
        // first), the one it runs.
        let mut k = started - 1 - w.answered;
        let mut skip = w.front_answered as u64;
        for chunk in &w.sent {
            let left = (chunk.count as u64).saturating_sub(skip);
            skip = 0;
            if k < left {
                return Some(chunk.job);
            }
            k -= left;
        }
        None
    }

    /// Whether item `index` of job `id`, whose worker died under it, runs
    /// again; if not, how many attempts were made (1 without retries).
    fn retry(&mut self, id: u64, index: u64) -> std::result::Result<(), u32> {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Err(1);
        };
        let made = job.attempts.get(&index).copied().unwrap_or(0);
        if made < job.retries {
            job.attempts.insert(index, made + 1);
            return Ok(());
        }
        job.attempts.remove(&index);
        Err(made + 1)
    }

    /// Whether some item of job `id` was sent to a worker (Python's
    /// `running()`: it can no longer be dropped from the queue).
    pub(crate) fn job_sent(&self, id: u64) -> bool {
        if self.remote.is_some() {
            return self.jobs.contains_key(&id) && !self.pending.iter().any(|c| c.job == id);
        }
        self.jobs.contains_key(&id)
            && self
                .workers
                .iter()
                .flatten()
                .any(|w| w.sent.iter().any(|c| c.job == id))
    }

    fn maybe_complete(&mut self, id: u64) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.sealed && job.outstanding == 0 && job.sink.complete(&mut self.due) {
            self.remove_job(id);
        }
    }

    fn deliver_err(&mut self, id: u64, index: u64, error: Error) {
        self.counters.failed += 1;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.outstanding = job.outstanding.saturating_sub(1);
        if job.sink.err(index, error) {
            job.sealed = true;
            job.outstanding = 0;
            if job.sink.complete(&mut self.due) {
                self.cancel(id);
            }
            return;
        }
        self.maybe_complete(id);
    }

    /// How many items are queued or running.
    pub(crate) fn queued(&self) -> u64 {
        self.pending.iter().map(|c| c.count as u64).sum()
    }

    pub(crate) fn workers_alive(&self) -> usize {
        if self.remote.is_some() {
            return self.config.processes;
        }
        self.workers.iter().flatten().count()
    }

    pub(crate) fn running(&self) -> u64 {
        self.workers
            .iter()
            .flatten()
            .map(|w| {
                let started = w.page.word(worker::WORD_STARTED).load(Ordering::Acquire);
                let finished = w.page.word(worker::WORD_FINISHED).load(Ordering::Acquire);
                started.saturating_sub(finished)
            })
            .sum::<u64>()
            + self.remote_in_flight()
    }

    /// Whether nothing is queued or in a worker.
    pub(crate) fn idle(&self) -> bool {
        self.pending.is_empty()
            && self.workers.iter().flatten().all(|w| w.sent.is_empty())
            && self.remote_in_flight() == 0
    }

    /// Whether every worker has exited.
    pub(crate) fn all_exited(&self) -> bool {
        self.workers.iter().all(Option::is_none) && self.remote.is_none()
    }

    /// Hands queued chunks to workers with room.
    fn dispatch(&mut self) {
        if self.state == PoolState::Terminated {
            return;
        }
        if self.remote.is_some() {
            return self.dispatch_remote();
        }
        self.forget_ended();
        while let Some(chunk) = self.pending.front() {
            if !self.jobs.contains_key(&chunk.job) {
                self.pending.pop_front();
                continue;
            }
            let item_ns = self.item_ns;
            let items = chunk.count;
            let bytes = chunk.weight();
            let fd_items = chunk.fd_items();
            let quota = self.config.max_tasks;
            let best = self
                .workers
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.as_ref().map(|w| (i, w)))
                .filter(|(_, w)| {
                    !w.leaving
                        && !w.eof
                        && chunk::has_room(
                            item_ns,
                            w.sent.len(),
                            w.inflight,
                            w.inflight_bytes,
                            items,
                            bytes,
                        )
                        && (fd_items == 0 || chunk::fd_room(w.sent.iter(), fd_items))
                        && quota.is_none_or(|q| w.chunks_sent < q)
                })
                .min_by_key(|(_, w)| w.inflight)
                .map(|(i, _)| i);
            let Some(i) = best else { break };
            let chunk = self.pending.pop_front().expect("front exists");
            let timed = self.config.timeout.is_none()
                && self
                    .jobs
                    .get(&chunk.job)
                    .is_some_and(|j| j.timeout.is_some());
            let w = self.workers[i].as_mut().expect("chosen");
            self.funcs.tell(chunk.func, &mut w.knows, &mut w.out);
            let flag = if timed { frame::TIMED } else { 0 };
            chunk.write_frames(&mut w.out, &mut w.fd_marks, flag);
            if w.sent.is_empty() {
                w.busy_since = Instant::now();
            }
            w.chunks_sent += 1;
            w.inflight += chunk.count as u64;
            w.inflight_bytes += chunk.weight();
            if quota.is_some_and(|q| w.chunks_sent >= q) {
                w.leaving = true;
            }
            w.sent.push_back(chunk);
        }
    }

    /// Writes what is queued for each worker, without blocking.
    fn flush_writes(&mut self) -> bool {
        let mut progress = false;
        for w in self.workers.iter_mut().flatten() {
            while w.out_start < w.out.len() && !w.eof {
                let end =
                    match chunk::send_due_fds(&mut w.fd_marks, w.fds_sock.as_fd(), w.out_start) {
                        chunk::FdStep::Sent => {
                            progress = true;
                            continue;
                        }
                        chunk::FdStep::Full => break,
                        chunk::FdStep::Failed => {
                            w.eof = true;
                            continue;
                        }
                        chunk::FdStep::BytesUpTo(at) => at.unwrap_or(w.out.len()),
                    };
                match sys::io::send(w.sock.as_fd(), &w.out[w.out_start..end], true) {
                    Ok(0) => break,
                    Ok(n) => {
                        w.out_start += n;
                        progress = true;
                    }
                    Err(_) => {
                        // The worker is gone; its pidfd will say how.
                        w.eof = true;
                    }
                }
            }
            if w.out_start == w.out.len() {
                w.out.clear();
                w.out_start = 0;
            }
        }
        progress
    }

    /// Reads and handles what each worker wrote, without blocking.
    fn read_all(&mut self) -> Result<bool> {
        let mut progress = false;
        for i in 0..self.workers.len() {
            let Some(mut w) = self.workers[i].take() else {
                continue;
            };
            let got = self.read_worker(&mut w);
            self.workers[i] = Some(w);
            progress |= got?;
        }
        Ok(progress)
    }

    fn read_worker(&mut self, w: &mut Worker) -> Result<bool> {
        let mut progress = false;
        // A bounded number of reads, so that one busy worker cannot keep
        // the others (and dispatch) waiting.
        let mut reads = 0;
        while !w.eof && reads < 64 {
            reads += 1;
            match w.inbuf.fill_bytes(w.sock.as_fd(), false) {
                Ok(Fill::Data) => {
                    progress = true;
                    let handled = self.handle_frames(w);
                    w.inbuf.release();
                    handled?;
                }
                Ok(Fill::WouldBlock) => break,
                Ok(Fill::Eof) | Err(_) => {
                    w.eof = true;
                    progress = true;
                }
            }
        }
        Ok(progress)
    }

    fn handle_frames(&mut self, w: &mut Worker) -> Result<()> {
        while let Ok(Some((kind, body))) = w.inbuf.next_frame() {
            match kind {
                frame::RESULTS => {
                    if !self.handle_results(w, body) {
                        w.eof = true;
                        let _ = w.process.kill();
                        log::warn!(target: "multiproc", "{} sent more results than it was given tasks", w.who());
                        return Ok(());
                    }
                }
                frame::RESULTS_FDS => {
                    if !self.handle_results_fds(w, body) {
                        w.eof = true;
                        let _ = w.process.kill();
                        log::warn!(target: "multiproc", "{} sent more results than it was given tasks", w.who());
                        return Ok(());
                    }
                }
                frame::FAILED => self.handle_failed(w, body),
                frame::INIT_FAILED => {
                    let message = String::from_utf8_lossy(w.inbuf.slice(body)).into_owned();
                    let message = format!("{} could not start: {message}", w.who());
                    w.eof = true;
                    self.stop(ErrorKind::Panicked, message);
                    return Ok(());
                }
                frame::RETIRE => w.leaving = true,
                other => {
                    w.eof = true;
                    let _ = w.process.kill();
                    log::warn!(target: "multiproc", "{} sent an unknown frame kind {other}", w.who());
                }
            }
        }
        Ok(())
    }

    /// Marks the next `n` items of `w` answered.
    fn answered(&mut self, w: &mut Worker, n: u32) {
        w.front_answered += n;
        if w.sent.front().is_some_and(|c| w.front_answered == c.count) {
            if let Some(done) = w.sent.pop_front() {
                w.inflight_bytes -= done.weight();
            }
            w.front_answered = 0;
        }
        w.inflight -= n as u64;
        w.answered += n as u64;
        let now = Instant::now();
        let per_item = now.duration_since(w.busy_since).as_nanos() as f64 / n as f64;
        self.item_ns = if self.samples == 0 {
            per_item
        } else {
            0.7 * self.item_ns + 0.3 * per_item
        };
        self.samples += 1;
        w.busy_since = now;
    }

    /// A FAILED frame: the next item panicked or could not run.
    fn handle_failed(&mut self, w: &mut Worker, body: std::ops::Range<usize>) {
        let Some(chunk) = w.sent.front() else {
            return;
        };
        let id = chunk.job;
        let index = chunk.first + w.front_answered as u64;
        let what = self.what(id);
        let failure = frame::failed_body(w.inbuf.slice(body));
        let mut tries = String::new();
        if matches!(failure, Failure::Panic(_))
            && self.jobs.get(&id).is_some_and(|j| j.retry_panics)
        {
            match self.retry(id, index) {
                Ok(()) => {
                    // Run it again, first: this item's bytes alone.
                    let mut again = Chunk::new(id, chunk.func, index, usize::MAX);
                    let j = w.front_answered as usize;
                    again.push_item(chunk.items()[j], chunk.item_fds(j));
                    log::info!(target: "multiproc", "task {index} of {what} runs again: it panicked in {}", w.who());
                    self.answered(w, 1);
                    self.pending.push_front(again);
                    return;
                }
                Err(n) if n > 1 => tries = format!(" ({n} attempts made, each panicked)"),
                Err(_) => {}
            }
        }
        let e = match failure {
            Failure::Panic(report) => {
                let loc = report
                    .location
                    .as_deref()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                Error::new(
                    ErrorKind::Panicked,
                    format!(
                        "task {index} of {what} panicked{loc} in {}: {}{tries}",
                        w.who(),
                        report.message
                    ),
                )
                .with_panic(report)
            }
            Failure::Error(kind, message) => Error::new(
                kind,
                format!("task {index} of {what} failed in {}: {message}", w.who()),
            ),
        };
        self.answered(w, 1);
        self.deliver_err(id, index, e);
    }

    pub(crate) fn what(&self, id: u64) -> String {
        self.jobs
            .get(&id)
            .map(|j| j.what.clone())
            .unwrap_or_else(|| "a cancelled job".into())
    }

    /// Tells every worker to leave once it has answered what it holds.
    pub(crate) fn send_stop(&mut self) {
        // Everything was answered (`join` waits for that first): what a
        // remote left on the other side goes.
        self.abandon_remote();
        for w in self.workers.iter_mut().flatten() {
            if !w.leaving || w.sent.is_empty() {
                w.leaving = true;
                let at = frame::begin_frame(&mut w.out, frame::STOP);
                frame::end_frame(&mut w.out, at);
            }
        }
    }

    /// Sends what is queued to workers with room, without reading or
    /// waiting.
    pub(crate) fn kick(&mut self) {
        if self.stopped.is_none() && self.state != PoolState::Terminated {
            self.dispatch();
            self.flush_writes();
        }
    }

    /// One round of work: dispatch, write, read; if nothing happened, spin
    /// briefly, then sleep in `poll` for up to `wait` until a worker writes,
    /// can be written to, or exits (or SIGINT arrives, if the application
    /// handles it).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Interrupted`] after SIGINT (the pool is then
    /// terminated); the reason the pool stopped, if it did; `Io`.
    pub(crate) fn pump(&mut self, wait: Duration) -> Result<()> {
        if let Some((kind, msg)) = &self.stopped {
            return Err(Error::new(*kind, msg.clone()));
        }
        if self.state == PoolState::Terminated {
            return Err(self.refuse().expect("terminated"));
        }
        if self.remote.is_some() {
            return self.pump_remote(wait);
        }
        self.refill()?;
        self.dispatch();
        let mut progress = self.flush_writes();
        progress |= self.read_all()?;
        if progress || wait.is_zero() {
            self.check_time_limits();
            return self.after_round();
        }
        let spin_until = Instant::now() + SPIN.min(wait);
        while Instant::now() < spin_until {
            if self.read_all()? {
                return self.after_round();
            }
            std::hint::spin_loop();
        }
        let wake = sys::signal::watch_sigint().ok().flatten();
        let limit = self.check_time_limits();
        let wait = limit.map_or(wait, |l| wait.min(l + Duration::from_millis(1)));
        let mut fds = Vec::with_capacity(self.workers.len() * 2 + 1);
        let mut owners = Vec::with_capacity(self.workers.len() * 2);
        for (i, w) in self.workers.iter().enumerate() {
            let Some(w) = w else { continue };
            if !w.eof {
                fds.push((w.sock.as_fd(), true, w.out_start < w.out.len()));
                owners.push((i, false));
            }
            fds.push((w.process.sentinel(), true, false));
            owners.push((i, true));
        }
        if let Some(fd) = wake {
            fds.push((fd, true, false));
        }
        let ready = sys::io::poll(&fds, Some(wait)).map_err(io_err("poll failed"))?;
        drop(fds);
        if let Some(ready) = ready {
            let exited: Vec<usize> = owners
                .iter()
                .zip(&ready)
                .filter(|((_, pidfd), r)| *pidfd && r.read)
                .map(|((i, _), _)| *i)
                .collect();
            if wake.is_some() && ready.last().is_some_and(|r| r.read) {
                sys::signal::drain_wake();
            }
            self.flush_writes();
            self.read_all()?;
            for i in exited {
                self.handle_exit(i)?;
            }
        }
        self.check_time_limits();
        self.after_round()
    }

    fn after_round(&mut self) -> Result<()> {
        let count = sys::signal::sigint_count();
        if count != self.sigints {
            self.sigints = count;
            let message = "interrupted by SIGINT (Ctrl-C): the pool was terminated".to_string();
            self.stop(ErrorKind::Interrupted, message.clone());
            return Err(Error::new(ErrorKind::Interrupted, message));
        }
        if let Some((kind, msg)) = &self.stopped {
            return Err(Error::new(*kind, msg.clone()));
        }
        self.dispatch();
        self.flush_writes();
        Ok(())
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.workers.iter().any(Option::is_some) || self.remote.is_some() {
            self.shutdown(|| Error::new(ErrorKind::PoolClosed, "the pool was dropped"));
        }
    }
}
