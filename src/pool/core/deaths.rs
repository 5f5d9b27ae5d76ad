//! Workers' lives: starting one, replacing one that exited, what a death
//! means for the items it held (the one it was running fails, the rest go
//! again), time limits (killing a worker whose item ran too long), and the
//! pool's own end (`stop`, `shutdown`). See "A dead worker never hangs the
//! pool" and "Time limits and memory caps" in `src/pool/README.md`.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::codec::Fd;
use crate::error::{Error, ErrorKind, Result};
use crate::pool::worker::{self, WorkerArgs};
use crate::process::{ExitStatus, Process};
use crate::sys;
use crate::sys::page::SharedPage;

use super::{Chunk, Core, PoolState, Worker, io_err};

impl Core {
    pub(super) fn start_worker(&mut self, slot: usize) -> Result<Worker> {
        let (ours, theirs) =
            sys::socket::stream_pair().map_err(io_err("could not create a socket pair"))?;
        // Descriptors inside task arguments: one message per TASK_FDS
        // frame, written just before the frame's first byte.
        let (fds_ours, fds_theirs) =
            sys::socket::stream_pair().map_err(io_err("could not create a socket pair"))?;
        let _ = sys::socket::set_send_buffer(fds_ours.as_fd(), 4 << 20);
        // Large arguments and results cross in fewer fill-and-wait rounds
        // (each costs a wake-up on the other core); best effort.
        for s in [&ours, &theirs] {
            let _ = sys::socket::set_send_buffer(s.as_fd(), 4 << 20);
        }
        let (page, page_fd) =
            SharedPage::create().map_err(io_err("could not create a worker's shared page"))?;
        let (init, init_fds) = match &self.config.init {
            None => (None, Vec::new()),
            Some(call) => {
                let fds = call
                    .fds
                    .iter()
                    .map(|fd| sys::socket::dup(fd.as_fd()).map(Fd::new))
                    .collect::<std::io::Result<Vec<Fd>>>()
                    .map_err(io_err(
                        "could not duplicate a descriptor of the initializer's arguments",
                    ))?;
                (Some((call.task, call.bytes.clone())), fds)
            }
        };
        let args = WorkerArgs {
            sock: Fd::new(theirs),
            fds_sock: Fd::new(fds_theirs),
            page: Fd::new(page_fd),
            init,
            init_fds,
            max_tasks: self.config.max_tasks,
            max_memory: self.config.max_memory,
            timed: self.config.timeout.is_some(),
            insights: self.config.insights,
            shm_above: self.config.shm_above as u64,
        };
        // The first workers are forked here; replacements (under the fork
        // start method) by the forker, since this process may have threads
        // by now.
        let replacement = self.spawned >= self.workers.len() as u64;
        self.spawned += 1;
        let name = crate::runtime::state::next_pool_worker_name();
        let mut builder = Process::new(worker::worker_main, args)
            .name(name.clone())
            .daemon(true)
            .allow_children(self.config.nested)
            .configured(self.config.setup.config(slot));
        let [out, err] = &self.config.setup.streams;
        if let Some(s) = out {
            builder = builder.stdout(s.for_worker()?);
        }
        if let Some(s) = err {
            builder = builder.stderr(s.for_worker()?);
        }
        if let Some(m) = self.config.method {
            builder = builder.start_method(m);
        }
        if let Some(z) = self.zygote.as_ref().filter(|_| replacement) {
            builder = builder.forked_by(z.clone());
        }
        let spawned_ns = crate::sys::io::monotonic_ns();
        let process = builder.start()?;
        log::debug!(target: "multiproc", "pool started {name} (pid {})", process.pid());
        Ok(Worker {
            name,
            spawned_ns,
            process,
            sock: ours,
            fds_sock: fds_ours,
            fd_marks: Default::default(),
            page,
            inbuf: crate::frame::pool::buffer(),
            out: Vec::new(),
            out_start: 0,
            sent: VecDeque::new(),
            front_answered: 0,
            inflight: 0,
            inflight_bytes: 0,
            answered: 0,
            chunks_sent: 0,
            knows: Vec::new(),
            leaving: false,
            watch_out: false,
            eof: false,
            timed_out: None,
            cancel_killed: false,
            busy_since: Instant::now(),
        })
    }

    /// Starts workers for empty slots while the pool has a use for them.
    pub(super) fn refill(&mut self) -> Result<()> {
        if self.state == PoolState::Terminated || (self.state == PoolState::Closed && self.idle()) {
            return Ok(());
        }
        if self.defer_start() {
            return Ok(());
        }
        for i in 0..self.workers.len() {
            if self.workers[i].is_none() {
                let w = self.start_worker(i)?;
                self.counters.restarts += 1;
                self.place(i, w)?;
            }
        }
        Ok(())
    }

    /// A worker has exited (its pidfd is readable): collect its last
    /// results, fail the task it was running, queue again the ones it never
    /// started, and leave its slot empty for a replacement.
    pub(super) fn handle_exit(&mut self, i: usize) -> Result<()> {
        // A worker that could not apply the pool's worker options would
        // fail again in every replacement: the pool stops instead, as for
        // a failing initializer.
        let setup_failed = self.workers[i]
            .as_ref()
            .filter(|w| w.process.exitcode().is_some())
            .and_then(|w| w.process.setup_failure());
        if let Some(e) = setup_failed {
            self.stop(
                ErrorKind::ChildSetup,
                format!("a worker could not be set up, so the pool stopped: {e}"),
            );
            return Ok(());
        }
        let Some(mut w) = self.unplace(i) else {
            return Ok(());
        };
        // Everything it wrote before it exited is in the socket.
        w.eof = false;
        let _ = self.read_worker(&mut w);
        let status = match w.process.exitcode() {
            Some(s) => s,
            None => {
                let _ = w.process.kill();
                match w.process.join_timeout(Duration::from_secs(10)) {
                    Err(e) if e.kind() == ErrorKind::Timeout => {
                        ExitStatus::Signaled(crate::Signal::KILL)
                    }
                    status => status?,
                }
            }
        };
        let started = w.page.word(worker::WORD_STARTED).load(Ordering::Acquire);
        let finished = w.page.word(worker::WORD_FINISHED).load(Ordering::Acquire);
        // Among the unanswered items, the one it was running when it died.
        let running =
            (started > finished && started > w.answered).then(|| started - 1 - w.answered);
        // Killed for a cancelled item: the item it ran when it died is
        // either that one (its job is gone, so nothing is delivered) or
        // one it started just before the kill, which goes again.
        let running = running.filter(|_| !w.cancel_killed);
        let clean = status.success() && running.is_none();
        if !clean || w.unanswered() > 0 {
            log::info!(target: "multiproc", "pool worker {} {status}; {} unanswered tasks", w.who(), w.unanswered());
        }
        let mut requeue: Vec<Chunk> = Vec::new();
        let mut k = 0u64;
        let skip = w.front_answered as usize;
        let sent = std::mem::take(&mut w.sent);
        w.inflight_bytes = 0;
        for (n, chunk) in sent.into_iter().enumerate() {
            let items = chunk.items();
            let mut again: Option<Chunk> = None;
            for (j, &item) in items.iter().enumerate() {
                if n == 0 && j < skip {
                    continue;
                }
                let index = chunk.first + j as u64;
                let died_under = running == Some(k) && !clean;
                let mut attempts = 1;
                let retried = died_under
                    && match self.retry(chunk.job, index) {
                        Ok(()) => true,
                        Err(n) => {
                            attempts = n;
                            false
                        }
                    };
                if retried {
                    log::info!(target: "multiproc", "task {index} of {} runs again: {} {status} under it", self.what(chunk.job), w.who());
                }
                if died_under && !retried {
                    let what = self.what(chunk.job);
                    let tries = if attempts > 1 {
                        format!(" ({attempts} attempts made, each ended so)")
                    } else {
                        String::new()
                    };
                    let e = if let Some(limit) = w.timed_out {
                        Error::new(
                            ErrorKind::TimeLimit,
                            format!(
                                "task {index} of {what} ran past its time limit of {limit:?} in {}, which was killed and replaced{tries}",
                                w.who()
                            ),
                        )
                    } else {
                        let how = match status {
                            ExitStatus::Signaled(s) => format!("was killed by {s}"),
                            ExitStatus::Exited(c) => format!("exited with code {c}"),
                        };
                        Error::new(
                            ErrorKind::WorkerLost,
                            format!(
                                "task {index} of {what} was running in {}, which {how}; the worker was replaced{tries}",
                                w.who()
                            ),
                        )
                    }
                    .with_status(Some(status));
                    if let Some(c) = again.take() {
                        requeue.push(c);
                    }
                    self.deliver_err(chunk.job, index, e);
                } else {
                    again
                        .get_or_insert_with(|| Chunk::new(chunk.job, chunk.func, index, usize::MAX))
                        .push_item(item, chunk.item_fds(j));
                }
                k += 1;
            }
            if let Some(c) = again {
                requeue.push(c);
            }
        }
        for c in requeue.into_iter().rev() {
            if self.jobs.contains_key(&c.job) {
                self.pending.push_front(c);
            }
        }
        drop(w);
        if self.state != PoolState::Terminated
            && (self.state == PoolState::Running || !self.idle())
            && !self.defer_start()
        {
            self.counters.restarts += 1;
            match self.start_worker(i).and_then(|nw| self.place(i, nw)) {
                Ok(()) => {}
                Err(e) => {
                    if self.all_exited() {
                        self.stop(
                            e.kind(),
                            format!("the pool could not replace a worker that exited, and has none left: {e}"),
                        );
                        return Err(e);
                    }
                    log::warn!(target: "multiproc", "could not replace a pool worker: {e}");
                }
            }
        }
        Ok(())
    }

    /// Kills the workers whose running task passed the time limit.
    /// Returns how long until the next task could pass it.
    /// Kills a worker that started an item of a cancelled job, and
    /// forgets the cancelled jobs no worker holds any more. Then the time
    /// limits. Returns how long until either needs a look again.
    pub(super) fn check_time_limits(&mut self) -> Option<Duration> {
        let cancel = self.check_cancelled();
        let limits = self.check_item_limits();
        match (cancel, limits) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check_cancelled(&mut self) -> Option<Duration> {
        if self.cancelled.is_empty() {
            return None;
        }
        let mut cancelled = std::mem::take(&mut self.cancelled);
        for w in self.workers.iter_mut().flatten() {
            if !w.cancel_killed && Self::running_job(w).is_some_and(|j| cancelled.contains(&j)) {
                log::info!(target: "multiproc", "killing pool worker {}: it started a cancelled task", w.who());
                w.cancel_killed = true;
                let _ = w.process.kill();
            }
        }
        let workers = &self.workers;
        cancelled.retain(|id| {
            workers
                .iter()
                .flatten()
                .any(|w| !w.cancel_killed && w.sent.iter().any(|c| c.job == *id))
        });
        self.cancelled = cancelled;
        (!self.cancelled.is_empty()).then_some(Duration::from_millis(1))
    }

    fn check_item_limits(&mut self) -> Option<Duration> {
        let jobs = &self.jobs;
        self.timed_jobs.retain(|id| jobs.contains_key(id));
        if self.config.timeout.is_none() && self.timed_jobs.is_empty() {
            return None;
        }
        let now = sys::io::monotonic_ns();
        let mut next: Option<Duration> = None;
        for w in self.workers.iter_mut().flatten() {
            if w.timed_out.is_some() || w.sent.is_empty() {
                continue;
            }
            // The limit of the job whose item runs: its own, or the pool's.
            let own = if self.timed_jobs.is_empty() {
                None
            } else {
                Self::running_job(w)
                    .and_then(|j| jobs.get(&j))
                    .and_then(|j| j.timeout)
            };
            let Some(limit) = own.or(self.config.timeout) else {
                continue;
            };
            let limit_ns = limit.as_nanos().min(u64::MAX as u128) as u64;
            let started = w.page.word(worker::WORD_STARTED).load(Ordering::Acquire);
            let since = w.page.word(worker::WORD_START_NS).load(Ordering::Acquire);
            let finished = w.page.word(worker::WORD_FINISHED).load(Ordering::Acquire);
            if started == finished
                || started != w.page.word(worker::WORD_STARTED).load(Ordering::Acquire)
            {
                next = Some(next.map_or(limit, |n| n.min(limit)));
                continue;
            }
            let ran = now.saturating_sub(since);
            if ran >= limit_ns {
                log::info!(target: "multiproc", "killing pool worker {}: its task ran past {limit:?}", w.who());
                w.timed_out = Some(limit);
                let _ = w.process.kill();
            } else {
                let left = Duration::from_nanos(limit_ns - ran);
                next = Some(next.map_or(left, |n| n.min(left)));
            }
        }
        next.or(self.config.timeout)
    }

    /// Stops the pool by itself (initializer failure, interrupt): kills the
    /// workers and fails every task that was not answered with `kind`.
    pub(crate) fn stop(&mut self, kind: ErrorKind, message: String) {
        if self.stopped.is_none() {
            self.stopped = Some((kind, message.clone()));
        }
        self.shutdown(|| Error::new(kind, message.clone()));
    }

    /// Kills every worker, waits for them, and fails every unanswered task
    /// with `error()`.
    pub(crate) fn shutdown(&mut self, error: impl Fn() -> Error) {
        self.state = PoolState::Terminated;
        for w in self.workers.iter().flatten() {
            let _ = w.process.kill();
        }
        let mut failed = self.abandon_remote();
        for i in 0..self.workers.len() {
            if let Some(w) = self.unplace(i) {
                let _ = w.process.join_timeout(Duration::from_secs(10));
                let skip = w.front_answered as u64;
                for (n, c) in w.sent.iter().enumerate() {
                    let from = if n == 0 { skip } else { 0 };
                    failed.extend((from..c.count as u64).map(|j| (c.job, c.first + j)));
                }
            }
        }
        for c in std::mem::take(&mut self.pending) {
            failed.extend((0..c.count as u64).map(|j| (c.job, c.first + j)));
        }
        // Tasks cut short by the pool's end are not counted as failed.
        let counted = self.counters.failed;
        for (job, index) in failed {
            self.deliver_err(job, index, error());
        }
        self.counters.failed = counted;
    }
}
