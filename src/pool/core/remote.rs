//! The core with its work run elsewhere: a [`Remote`] takes the queued
//! chunks instead of local workers, and hands back [`Answer`]s, which go
//! to the jobs' sinks by the same paths as a worker's results. The
//! cluster engine (`src/cluster/`) is the one `Remote`; the core never
//! names it (the front end's builder makes it and hands it over).
//!
//! Everything above the workers is unchanged: jobs, sinks, callbacks,
//! counters, cancel, `close`/`join`/`terminate`, the background thread
//! (it watches the remote's wake descriptor). What a remote does itself:
//! blame (its own local pools blame items exactly), retries (it is told
//! the job's policy), redelivery of work lost with a machine, and dropping
//! duplicate answers, so each item is answered once.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use super::{Chunk, Config, Core};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::worker::TaskRef;
use crate::sys;

/// The token of a remote's wake descriptor in the background thread's
/// wait set.
pub(crate) const REMOTE_WAKE: u64 = u64::MAX - 1;

/// What a job asks of whoever runs its items.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct JobLimits {
    /// The time limit per item, if any.
    pub(crate) timeout: Option<Duration>,
    /// Attempts after the first for an item whose worker died under it.
    pub(crate) retries: u32,
    /// Whether a panic is retried too.
    pub(crate) retry_panics: bool,
}

/// One chunk's task function, as it travels: its reference and, for a
/// `partial`, the values it was given.
pub(crate) struct FuncParts<'a> {
    pub(crate) task: TaskRef,
    pub(crate) captured: Option<&'a [u8]>,
    /// The call, for error messages: `map(my_crate::square)`.
    pub(crate) what: &'a str,
}

/// An answer from a remote, for items of one job.
pub(crate) enum Answer {
    /// Items `first..first + count` returned these postcard values, back
    /// to back.
    Ok {
        job: u64,
        first: u64,
        count: u32,
        bytes: Vec<u8>,
    },
    /// Item `index` failed; the error names it, the call and where it ran.
    Err { job: u64, index: u64, error: Error },
}

/// Runs chunks somewhere else. Every method returns at once.
pub(crate) trait Remote: Send {
    /// Whether it takes another chunk now (it bounds what is in flight).
    fn has_room(&self) -> bool;
    /// Takes `chunk` to run with `func` under `limits`.
    ///
    /// # Errors
    ///
    /// The chunk cannot be sent (too large, holds descriptors, the broker
    /// is unreachable): every item of it fails with the error.
    fn send(&mut self, chunk: Chunk, func: FuncParts<'_>, limits: JobLimits) -> Result<()>;
    /// The answers that arrived since the last call.
    fn take(&mut self, into: &mut Vec<Answer>);
    /// Readable while answers wait to be taken (or a failure to report).
    fn wake(&self) -> BorrowedFd<'_>;
    /// Items sent and not answered.
    fn in_flight(&self) -> u64;
    /// Job `job` ended or was cancelled: its answers still to come are
    /// dropped, and its work is stopped where that can be done.
    fn forget(&mut self, job: u64);
    /// The unanswered items (job, index), forgotten: the pool ends.
    fn abandon(&mut self) -> Vec<(u64, u64)>;
    /// Why it cannot go on (the broker was lost for too long, no machine
    /// runs this program), if it cannot.
    fn failure(&self) -> Option<Error>;
    /// Removes everything it left on the other side (the pool ended).
    fn close(&mut self);
}

impl Core {
    /// A core whose work runs on `remote`: no local workers. Large items
    /// still go into sealed segments (`shm_above`): the remote sends those
    /// as blobs.
    pub(crate) fn with_remote(mut config: Config, remote: Box<dyn Remote>) -> Result<Self> {
        let processes = config.processes;
        config.processes = 0;
        let mut core = Core::new(config)?;
        core.config.processes = processes;
        core.epoll
            .add(remote.wake(), REMOTE_WAKE, true, false)
            .map_err(|e| Error::io("could not watch the cluster link", e))?;
        core.remote = Some(remote);
        Ok(core)
    }

    /// Hands queued chunks to the remote while it has room.
    pub(super) fn dispatch_remote(&mut self) {
        self.forget_ended();
        loop {
            let Some(remote) = self.remote.as_mut() else {
                return;
            };
            if !remote.has_room() {
                return;
            }
            let Some(chunk) = self.pending.pop_front() else {
                return;
            };
            let Some(job) = self.jobs.get(&chunk.job) else {
                continue;
            };
            let limits = JobLimits {
                timeout: job.timeout.or(self.config.timeout),
                retries: job.retries,
                retry_panics: job.retry_panics,
            };
            let Some(mut func) = self.funcs.parts(chunk.func) else {
                continue;
            };
            func.what = &job.what;
            let (id, first, count) = (chunk.job, chunk.first, chunk.count);
            if let Err(e) = remote.send(chunk, func, limits) {
                for index in first..first + count as u64 {
                    self.deliver_err(id, index, Error::new(e.kind(), e.to_string()));
                }
            }
        }
    }

    /// Delivers what the remote answered; true if anything came.
    fn take_answers(&mut self) -> bool {
        let Some(remote) = self.remote.as_mut() else {
            return false;
        };
        let mut answers = Vec::new();
        remote.take(&mut answers);
        let any = !answers.is_empty();
        for a in answers {
            match a {
                Answer::Ok {
                    job,
                    first,
                    count,
                    bytes,
                } => {
                    if self.jobs.contains_key(&job) {
                        self.counters.done += count as u64;
                    }
                    let finished = self.jobs.get_mut(&job).is_some_and(|j| {
                        j.outstanding = j.outstanding.saturating_sub(count as u64);
                        j.sink.ok_batch(first, count, &bytes);
                        j.outstanding == 0 && j.sealed
                    });
                    if finished {
                        self.maybe_complete(job);
                    }
                }
                Answer::Err { job, index, error } => self.deliver_err(job, index, error),
            }
        }
        any
    }

    /// [`Core::pump`] for a core with a remote: send, take answers, and
    /// sleep until answers arrive (or SIGINT, or `wait`).
    pub(super) fn pump_remote(&mut self, wait: Duration) -> Result<()> {
        self.dispatch_remote();
        if !self.take_answers() && !wait.is_zero() {
            let wake = sys::signal::watch_sigint().ok().flatten();
            let ready = {
                let remote = self.remote.as_ref().expect("a remote core");
                let mut fds = vec![(remote.wake(), true, false)];
                if let Some(fd) = wake {
                    fds.push((fd, true, false));
                }
                sys::io::poll(&fds, Some(wait)).map_err(|e| Error::io("poll failed", e))?
            };
            if wake.is_some() && ready.is_some_and(|r| r.last().is_some_and(|r| r.read)) {
                sys::signal::drain_wake();
            }
            self.take_answers();
        }
        if let Some(e) = self.remote.as_ref().and_then(|r| r.failure()) {
            self.stop(e.kind(), e.to_string());
        }
        self.after_round()
    }

    /// Items the remote has and has not answered.
    pub(super) fn remote_in_flight(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| r.in_flight())
    }

    /// Takes the remote out and closes it; returns the items it held
    /// unanswered, for `shutdown` to fail with the rest.
    pub(super) fn abandon_remote(&mut self) -> Vec<(u64, u64)> {
        let Some(mut remote) = self.remote.take() else {
            return Vec::new();
        };
        self.epoll.remove(remote.wake().as_fd());
        let failed = remote.abandon();
        remote.close();
        failed
    }
}

/// The error for an item that cannot cross machines.
pub(crate) fn cannot_travel(why: &str) -> Error {
    Error::new(
        ErrorKind::Encode,
        format!("cannot send this task to the cluster: {why}"),
    )
}
