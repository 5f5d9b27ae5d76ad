//! The agent: [`Worker`] takes chunks of its build's task stream (consumer
//! group `agents`), runs each on a local pool core of its own (so a
//! panic, a crashed worker or a time limit is blamed on its item exactly
//! as on one machine), answers to the caller's reply stream, then
//! acknowledges and deletes the entry.
//!
//! A fetch thread reads new entries (`XREADGROUP`, as many as there is
//! room for) and takes over entries whose agent stopped renewing them
//! (`XPENDING` … `IDLE lease`, then `XCLAIM` with the same minimum idle
//! time, so two agents never both take one). The main thread runs them,
//! renews the lease of every entry it holds (`XCLAIM … JUSTID`, which does
//! not count as a delivery) every third of a lease, stops the work of a
//! caller whose key is gone or who cancelled a job, and answers. The
//! blobs an entry names (large arguments, `pool.put` values) are fetched
//! once per agent and kept as sealed segments its workers map (`blob.rs`).

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::streams::{StreamClaimReply, StreamPendingCountReply, StreamReadReply};

use super::blob::{self, Miss};
use super::broker::{self, Broker, GROUP, Keys};
use super::wire::{self, Part, Reply, TaskEntry};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::core::{Callback, Chunk, Core, PerCall, Sink};
use crate::pool::worker::TaskRef;
use crate::sys;

/// A machine's agent: runs the chunks callers of this same program send
/// through the broker, on a local pool of `processes` workers.
///
/// ```no_run
/// fn main() -> multiproc::Result<()> {
///     multiproc::init();
///     // Until SIGTERM: then it finishes what it holds and leaves.
///     multiproc::cluster::Worker::new("redis://head:6379/").processes(16).run()
/// }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a Worker does nothing until run() is called"]
pub struct Worker {
    url: String,
    processes: Option<usize>,
    lease: Duration,
    name: Option<String>,
    build: Option<String>,
}

impl Worker {
    /// An agent for the broker at `url` (`redis://`, `rediss://`,
    /// `redis+unix://`; a password in the URL is never printed).
    pub fn new(url: impl Into<String>) -> Self {
        Worker {
            url: url.into(),
            processes: None,
            lease: Duration::from_secs(5),
            name: None,
            build: None,
        }
    }

    /// Its local pool's processes (default [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n.max(1));
        self
    }

    /// How long a chunk it holds stays its own without a renewal (default
    /// 5 s; renewed every third of it). Another agent takes the chunks of
    /// an agent silent for longer: the lease bounds how late a lost
    /// machine's work is noticed.
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d.clamp(Duration::from_millis(100), Duration::from_secs(3600));
        self
    }

    /// Its name in the consumer group and in error messages (default
    /// `host-pid`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Pretends to be another build (multiproc's own tests: an agent of a
    /// different build must take nothing).
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn __build_id(mut self, id: &str) -> Self {
        self.build = Some(id.to_owned());
        self
    }

    /// Runs until SIGTERM (if the program leaves SIGTERM at its default),
    /// then finishes the chunks it holds, answers them and returns.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the broker cannot be reached at the start;
    /// what [`Pool::builder().build()`](crate::pool::PoolBuilder::build)
    /// fails with for its local pool. A broker lost later is waited for.
    pub fn run(self) -> Result<()> {
        let _ = sys::signal::count_sigterm();
        let seen = sys::signal::sigterms();
        self.run_while(|| sys::signal::sigterms() == seen)
    }

    /// Runs while `keep()` returns true (asked a few times a second), then
    /// finishes what it holds and returns.
    ///
    /// # Errors
    ///
    /// As [`run`](Worker::run).
    pub fn run_while(self, keep: impl Fn() -> bool) -> Result<()> {
        Agent::start(self)?.serve(keep)
    }
}

/// What the local pool answered for one chunk.
#[derive(Default)]
struct Collected {
    parts: Vec<Part>,
    done: bool,
}

struct Collect(Arc<Mutex<Collected>>, String);

impl Sink for Collect {
    fn ok_batch(&mut self, first: u64, count: u32, bytes: &[u8]) {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        c.parts.push(Part::Ok {
            first,
            count,
            bytes: bytes.to_vec(),
        });
    }

    fn err(&mut self, index: u64, error: Error) -> bool {
        let e = Error::new(error.kind(), format!("{error} (cluster agent {})", self.1));
        let e = match error.panic_report() {
            Some(p) => e.with_panic(p),
            None => e,
        };
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        c.parts.push(Part::from_error(index, &e));
        false
    }

    fn complete(&mut self, _due: &mut Vec<Callback>) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).done = true;
        true
    }
}

/// An entry the fetch thread took.
struct Taken {
    id: String,
    bytes: Vec<u8>,
    /// Times delivered before (0 when new): each one an agent lost.
    losses: u64,
    /// The agent that had it before.
    previous: Option<String>,
    /// Since when it waits for the blobs it names (`Agent::waiting`).
    waiting_since: Option<Instant>,
}

/// A chunk running in the local pool.
struct Running {
    id: String,
    caller: String,
    caller_job: u64,
    seq: u64,
    /// The chunk's items: `first..first + count`.
    first: u64,
    count: u32,
    reply_ttl_ms: u64,
    parts: Arc<Mutex<Collected>>,
}

struct Agent {
    conn: Option<redis::Connection>,
    url: String,
    keys: Keys,
    name: String,
    processes: usize,
    lease: Duration,
    core: Core,
    /// By local job id.
    running: HashMap<u64, Running>,
    /// Answers not yet written (the broker was unreachable).
    unsent: Vec<(Running, Vec<Part>)>,
    held: Arc<AtomicUsize>,
    stop_fetch: Arc<AtomicBool>,
    fetch: Option<std::thread::JoinHandle<()>>,
    rx: mpsc::Receiver<Taken>,
    /// Callers seen alive, and when.
    alive: HashMap<String, Instant>,
    /// Argument blobs fetched (each once).
    blobs: blob::Cache,
    /// Entries taken whose blobs could not be fetched yet (the broker was
    /// unreachable, or does not hold them yet): tried again every
    /// [`RETRY_BLOBS`], their lease renewed meanwhile.
    waiting: Vec<Taken>,
    last_retry: Instant,
    last_connect: Instant,
}

/// How often entries waiting for their blobs are tried again.
const RETRY_BLOBS: Duration = Duration::from_millis(100);
/// How often the main connection is tried again after it was lost.
const RECONNECT: Duration = Duration::from_millis(200);

/// How long a caller seen alive is believed to be.
const ALIVE_FOR: Duration = Duration::from_millis(100);

impl Agent {
    fn start(w: Worker) -> Result<Agent> {
        let build = match w.build {
            Some(b) => b,
            None => broker::build_id()?,
        };
        let keys = Keys::new(&build);
        let name = w
            .name
            .unwrap_or_else(|| format!("{}-{}", sys::process::hostname(), std::process::id()));
        let processes = w.processes.unwrap_or_else(crate::cpu_count);
        let mut conn = Broker::connect(&w.url)?.into_connection();
        ensure_group(&mut conn, &keys);
        // Its local pool: a plain pool's settings (its engine, driven here).
        let core = Core::new(crate::Pool::builder().processes(processes).into_config()?)?;
        let held = Arc::new(AtomicUsize::new(0));
        let stop_fetch = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let fetch_conn = Broker::connect(&w.url)?.into_connection();
        let fetcher = Fetcher {
            url: w.url.clone(),
            keys: keys.clone(),
            name: name.clone(),
            lease: w.lease,
            room: processes * 2,
            held: held.clone(),
            stop: stop_fetch.clone(),
            tx,
        };
        let fetch = std::thread::Builder::new()
            .name("multiproc-agent-fetch".into())
            .spawn(move || fetcher.run(fetch_conn))
            .map_err(|e| Error::io("could not start the agent's fetch thread", e))?;
        let mut agent = Agent {
            conn: Some(conn),
            url: w.url,
            keys,
            name,
            processes,
            lease: w.lease,
            core,
            running: HashMap::new(),
            unsent: Vec::new(),
            held,
            stop_fetch,
            fetch: Some(fetch),
            rx,
            alive: HashMap::new(),
            blobs: blob::Cache::default(),
            waiting: Vec::new(),
            last_retry: Instant::now(),
            last_connect: Instant::now(),
        };
        agent.heartbeat();
        log::info!(target: "multiproc", "cluster agent {} serves build {build} with {processes} processes", agent.name);
        Ok(agent)
    }

    /// The main connection, reconnected if it was lost (at most every
    /// [`RECONNECT`]: a broker away must not make every pass of the loop a
    /// connect attempt).
    fn conn(&mut self) -> Option<&mut redis::Connection> {
        if self.conn.is_none()
            && self.last_connect.elapsed() >= RECONNECT
            && let Ok(b) = {
                self.last_connect = Instant::now();
                Broker::connect(&self.url)
            }
        {
            let mut c = b.into_connection();
            ensure_group(&mut c, &self.keys);
            self.conn = Some(c);
        }
        self.conn.as_mut()
    }

    /// Runs a query on the main connection; a lost connection is dropped
    /// (the next call reconnects).
    fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Option<T> {
        let c = self.conn()?;
        match cmd.query(c) {
            Ok(v) => Some(v),
            Err(e) => {
                if broker::connection_lost(&e) {
                    self.conn = None;
                }
                log::debug!(target: "multiproc", "cluster agent: {e}");
                None
            }
        }
    }

    fn heartbeat(&mut self) {
        let Some(c) = self.conn() else { return };
        let Ok(now) = broker::broker_ms(c) else {
            self.conn = None;
            return;
        };
        let value = format!("{now}:{}:{}", self.processes, self.lease.as_millis());
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.keys.agents()).arg(&self.name).arg(value);
        let _: Option<()> = self.query(&cmd);
    }

    fn serve(mut self, keep: impl Fn() -> bool) -> Result<()> {
        let beat = self.lease / 3;
        let watch = Duration::from_millis(100).min(beat);
        let mut next_beat = Instant::now() + beat;
        let mut next_watch = Instant::now() + watch;
        let mut draining = false;
        loop {
            if !draining && !keep() {
                draining = true;
                self.stop_fetch.store(true, Ordering::SeqCst);
                log::info!(target: "multiproc", "cluster agent {} drains: finishing {} chunks", self.name, self.running.len());
            }
            if draining
                && self.running.is_empty()
                && self.unsent.is_empty()
                && self.waiting.is_empty()
            {
                break;
            }
            if !self.waiting.is_empty() && self.last_retry.elapsed() >= RETRY_BLOBS {
                // Not on every pass: a broker away would make each retry
                // a connect attempt.
                self.last_retry = Instant::now();
                for t in std::mem::take(&mut self.waiting) {
                    self.take(t);
                }
            }
            let first = if self.running.is_empty() && !draining {
                self.rx.recv_timeout(Duration::from_millis(100)).ok()
            } else {
                self.rx.try_recv().ok()
            };
            if let Some(t) = first {
                self.take(t);
                while let Ok(t) = self.rx.try_recv() {
                    self.take(t);
                }
            }
            if !self.running.is_empty() {
                self.core.pump(Duration::from_millis(2))?;
            }
            self.answer_done();
            let now = Instant::now();
            if now >= next_watch {
                next_watch = now + watch;
                self.watch_callers();
            }
            if now >= next_beat {
                next_beat = now + beat;
                self.heartbeat();
                self.renew();
            }
            if draining
                && self.running.is_empty()
                && !(self.unsent.is_empty() && self.waiting.is_empty())
            {
                std::thread::sleep(Duration::from_millis(50)); // waiting for the broker
            }
        }
        Ok(())
    }

    /// Starts a chunk, or answers it at once when it cannot run.
    fn take(&mut self, t: Taken) {
        let entry: TaskEntry = match wire::decode(&t.bytes, "task") {
            Ok(e) => e,
            Err(e) => {
                log::warn!(target: "multiproc", "cluster agent {}: dropped entry {}: {e}", self.name, t.id);
                self.ack(&t.id);
                return;
            }
        };
        if !self.caller_alive(&entry.caller) {
            // Its caller is gone: nobody waits for the answer.
            self.ack(&t.id);
            return;
        }
        let run = Running {
            id: t.id.clone(),
            caller: entry.caller.clone(),
            caller_job: entry.job,
            seq: entry.seq,
            first: entry.first,
            count: entry.ends.len() as u32,
            reply_ttl_ms: entry.reply_ttl_ms,
            parts: Arc::default(),
        };
        let fail_all = |kind: ErrorKind, message: String| -> Vec<Part> {
            (0..entry.ends.len() as u64)
                .map(|j| Part::from_error(entry.first + j, &Error::new(kind, message.clone())))
                .collect()
        };
        if t.losses > entry.max_losses as u64 {
            let last = t.previous.unwrap_or_default();
            let parts = fail_all(
                ErrorKind::WorkerLost,
                format!(
                    "the tasks {}..{} of {} were lost with {} cluster agents, the last {last:?}",
                    entry.first,
                    entry.first + entry.ends.len() as u64,
                    entry.what,
                    t.losses
                ),
            );
            return self.reply(run, parts);
        }
        let Some(items) = entry.item_slices() else {
            let parts = fail_all(ErrorKind::Decode, "a malformed cluster chunk".into());
            return self.reply(run, parts);
        };
        // An item whose bytes are its blob holds the blob's length.
        let lengths_agree = entry.blobs.iter().filter(|b| b.shm).all(|b| {
            items.get(b.item as usize).is_some_and(|item| {
                item.len() == 8
                    && b.refs
                        .first()
                        .is_some_and(|r| **item == r.len.to_le_bytes()[..])
            })
        });
        if !lengths_agree {
            let parts = fail_all(
                ErrorKind::Decode,
                "a malformed cluster chunk (an item's length)".into(),
            );
            return self.reply(run, parts);
        }
        let fds = match self.fetch_blobs(&entry, &t.id) {
            Ok(fds) => fds,
            Err(Miss::Broker(e)) => {
                log::debug!(target: "multiproc", "cluster agent {}: cannot fetch blobs: {e}", self.name);
                self.conn = None;
                self.wait_for_blobs(t);
                return;
            }
            // Its caller stores it again if the broker lost it: waited
            // for as long as the caller's keys would outlive it.
            Err(Miss::Absent(e))
                if t.waiting_since
                    .is_none_or(|at| at.elapsed() < Duration::from_millis(entry.reply_ttl_ms)) =>
            {
                log::debug!(target: "multiproc", "cluster agent {}: {e}; waiting", self.name);
                self.wait_for_blobs(t);
                return;
            }
            Err(Miss::Absent(e) | Miss::Failed(e)) => {
                let parts = fail_all(e.kind(), format!("{}: {e}", entry.what));
                return self.reply(run, parts);
            }
        };
        let func = postcard::from_bytes::<TaskRef>(&entry.func)
            .ok()
            .and_then(|r| r.resolve(true));
        let Some(func) = func else {
            let parts = fail_all(
                ErrorKind::Bootstrap,
                format!(
                    "cluster agent {} does not find the task function of {}",
                    self.name, entry.what
                ),
            );
            return self.reply(run, parts);
        };
        let per_call = PerCall {
            retries: Some(entry.retries),
            timeout: entry.timeout_ns.map(Duration::from_nanos),
            retry_panics: Some(entry.retry_panics),
        };
        let sink = Collect(run.parts.clone(), self.name.clone());
        let job = self
            .core
            .new_job(Box::new(sink), entry.what.clone(), per_call);
        let f = self.core.job_func(job, func, entry.captured.clone());
        let mut chunk = Chunk::new(job, f, entry.first, usize::MAX);
        // `blobs_valid`: ascending items of this chunk.
        let mut blobs = entry.blobs.iter().zip(fds).peekable();
        for (j, item) in items.into_iter().enumerate() {
            match blobs.next_if(|(b, _)| b.item as usize == j) {
                Some((b, fds)) => chunk.push_received(item, fds, b.shm),
                None => chunk.push_item(item, None),
            }
        }
        self.core.submit(chunk);
        self.core.seal(job);
        self.running.insert(job, run);
    }

    /// Puts `t` aside until its blobs can be had (its lease renewed).
    fn wait_for_blobs(&mut self, mut t: Taken) {
        t.waiting_since.get_or_insert_with(Instant::now);
        self.waiting.push(t);
    }

    /// The descriptors of the items `entry.blobs` names, in its order: a
    /// descriptor of this agent's segment of each blob, fetched unless
    /// kept.
    /// Fetching large blobs takes a while: every tenth of a lease spent on
    /// it, the leases of what this agent holds (`id`, the entry being
    /// started, included) are renewed and its heartbeat written, so that
    /// no other agent takes them meanwhile.
    fn fetch_blobs(
        &mut self,
        entry: &TaskEntry,
        id: &str,
    ) -> std::result::Result<Vec<Vec<OwnedFd>>, Miss> {
        let mut renewed = Instant::now();
        let mut out: Vec<Vec<OwnedFd>> = Vec::with_capacity(entry.blobs.len());
        if !entry.blobs_valid() {
            return Err(Miss::Failed(Error::new(
                ErrorKind::Decode,
                "a malformed cluster chunk (its blobs)",
            )));
        }
        for b in &entry.blobs {
            let mut fds = Vec::with_capacity(b.refs.len());
            for r in &b.refs {
                let key = self.keys.blob(&entry.caller, &r.hex());
                if self.conn().is_none() {
                    return Err(Miss::Broker(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "no connection to the broker",
                    ))));
                }
                let conn = self.conn.as_mut().expect("connected");
                let fd = self.blobs.get(conn, &key, *r)?;
                let dup = sys::socket::dup(std::os::fd::AsFd::as_fd(&*fd)).map_err(|e| {
                    Miss::Failed(Error::io("cannot hold a cluster argument's segment", e))
                })?;
                fds.push(dup);
                if renewed.elapsed() >= self.lease / 10 {
                    self.renew_with(Some(id));
                    self.heartbeat();
                    renewed = Instant::now();
                }
            }
            out.push(fds);
        }
        Ok(out)
    }

    /// Whether `caller`'s key exists, asked at most every [`ALIVE_FOR`]
    /// per caller (not once per chunk: a round trip each).
    fn caller_alive(&mut self, caller: &str) -> bool {
        if let Some(at) = self.alive.get(caller)
            && at.elapsed() < ALIVE_FOR
        {
            return true;
        }
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.keys.caller(caller));
        match self.query::<bool>(&cmd) {
            Some(false) => {
                self.alive.remove(caller);
                false
            }
            // Unknown while the broker is away: run it (the answer waits).
            _ => {
                if self.alive.len() > 4096 {
                    self.alive.clear();
                }
                self.alive.insert(caller.to_owned(), Instant::now());
                true
            }
        }
    }

    /// Answers the chunks the local pool finished.
    fn answer_done(&mut self) {
        let done: Vec<u64> = self
            .running
            .iter()
            .filter(|(_, r)| r.parts.lock().unwrap_or_else(|p| p.into_inner()).done)
            .map(|(&k, _)| k)
            .collect();
        for k in done {
            let run = self.running.remove(&k).expect("listed");
            let parts =
                std::mem::take(&mut run.parts.lock().unwrap_or_else(|p| p.into_inner()).parts);
            self.reply(run, parts);
        }
        for (run, parts) in std::mem::take(&mut self.unsent) {
            self.reply(run, parts);
        }
    }

    /// Writes an answer, then acknowledges and deletes its entry; kept for
    /// later if the broker cannot be reached.
    fn reply(&mut self, run: Running, parts: Vec<Part>) {
        let reply = Reply {
            seq: run.seq,
            agent: self.name.clone(),
            parts,
        };
        let bytes = match wire::encode(&reply) {
            Ok(b) => b,
            Err(e) => {
                // Too large to answer: each item says so.
                let parts = (run.first..run.first + run.count as u64)
                    .map(|i| Part::from_error(i, &e))
                    .collect();
                wire::encode(&Reply {
                    seq: run.seq,
                    agent: self.name.clone(),
                    parts,
                })
                .unwrap_or_default()
            }
        };
        let reply_key = self.keys.reply(&run.caller);
        let tasks = self.keys.tasks();
        let Some(c) = self.conn() else {
            self.unsent.push((run, reply.parts));
            return;
        };
        // One round trip, one transaction: the answer is there exactly
        // when the entry is gone (a caller checking what a restarted
        // broker lost relies on it). A caller gone meanwhile finds
        // nothing: the reply stream expires with its own time to live.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(&reply_key)
            .arg("*")
            .arg(wire::FIELD)
            .arg(bytes)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&reply_key)
            .arg(run.reply_ttl_ms.max(1000))
            .ignore()
            .cmd("XACK")
            .arg(&tasks)
            .arg(GROUP)
            .arg(&run.id)
            .ignore()
            .cmd("XDEL")
            .arg(&tasks)
            .arg(&run.id)
            .ignore();
        match pipe.query::<()>(c) {
            Ok(()) => {
                self.held.fetch_sub(1, Ordering::SeqCst);
            }
            Err(e) => {
                log::warn!(target: "multiproc", "cluster agent {}: cannot answer: {e}", self.name);
                self.conn = None;
                self.unsent.push((run, reply.parts));
            }
        }
    }

    fn ack(&mut self, id: &str) {
        let tasks = self.keys.tasks();
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&tasks)
            .arg(GROUP)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&tasks)
            .arg(id)
            .ignore();
        if let Some(c) = self.conn() {
            let _: redis::RedisResult<()> = pipe.query(c);
        }
        self.held.fetch_sub(1, Ordering::SeqCst);
    }

    /// Renews the lease of every entry it holds.
    fn renew(&mut self) {
        self.renew_with(None);
    }

    /// [`renew`](Self::renew), and the entry `extra` being started.
    fn renew_with(&mut self, extra: Option<&str>) {
        let ids: Vec<String> = self
            .running
            .values()
            .map(|r| r.id.clone())
            .chain(self.waiting.iter().map(|t| t.id.clone()))
            .chain(extra.map(str::to_owned))
            .collect();
        if ids.is_empty() {
            return;
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(self.keys.tasks())
            .arg(GROUP)
            .arg(&self.name)
            .arg(0)
            .arg(ids)
            .arg("JUSTID");
        let _: Option<redis::Value> = self.query(&cmd);
    }

    /// Stops the work of callers that are gone or cancelled a job.
    fn watch_callers(&mut self) {
        let callers: HashSet<String> = self.running.values().map(|r| r.caller.clone()).collect();
        for caller in callers {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(self.keys.caller(&caller));
            let Some(alive) = self.query::<bool>(&exists) else {
                return;
            };
            let mut members = redis::cmd("SMEMBERS");
            members.arg(self.keys.cancel(&caller));
            let cancelled: HashSet<u64> = if alive {
                self.query::<Vec<u64>>(&members)
                    .unwrap_or_default()
                    .into_iter()
                    .collect()
            } else {
                HashSet::new()
            };
            let stop: Vec<u64> = self
                .running
                .iter()
                .filter(|(_, r)| {
                    r.caller == caller && (!alive || cancelled.contains(&r.caller_job))
                })
                .map(|(&k, _)| k)
                .collect();
            for k in stop {
                let run = self.running.remove(&k).expect("listed");
                log::info!(target: "multiproc", "cluster agent {}: stopping a chunk of {caller}: {}", self.name, if alive { "cancelled" } else { "its caller is gone" });
                self.core.cancel_job(
                    k,
                    Error::new(ErrorKind::Cancelled, "cancelled by its caller"),
                );
                self.ack(&run.id);
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop_fetch.store(true, Ordering::SeqCst);
        if let Some(t) = self.fetch.take() {
            let _ = t.join();
        }
        // Entries read but not started go back to the group for others.
        let tasks = self.keys.tasks();
        let agents = self.keys.agents();
        let name = self.name.clone();
        if let Some(c) = self.conn() {
            let _: redis::RedisResult<()> = redis::cmd("HDEL").arg(&agents).arg(&name).query(c);
            let pending: redis::RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
                .arg(&tasks)
                .arg(GROUP)
                .arg("-")
                .arg("+")
                .arg(1000)
                .arg(&name)
                .query(c);
            if pending.is_ok_and(|p| p.ids.is_empty()) {
                let _: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&tasks)
                    .arg(GROUP)
                    .arg(&name)
                    .query(c);
            }
        }
    }
}

/// Creates the build's task stream and group unless they exist (an agent
/// that finds them gone, after a broker restart, makes them again).
fn ensure_group(conn: &mut redis::Connection, keys: &Keys) {
    let _: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys.tasks())
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query(conn);
}

/// The fetch thread.
struct Fetcher {
    url: String,
    keys: Keys,
    name: String,
    lease: Duration,
    room: usize,
    held: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<Taken>,
}

impl Fetcher {
    fn run(self, conn: redis::Connection) {
        let mut conn = Some(conn);
        let mut next_claim = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let Some(c) = conn.as_mut() else {
                std::thread::sleep(Duration::from_millis(100)); // reconnect back-off
                conn = Broker::connect(&self.url).ok().map(Broker::into_connection);
                if let Some(c) = conn.as_mut() {
                    ensure_group(c, &self.keys);
                }
                continue;
            };
            let free = self.room.saturating_sub(self.held.load(Ordering::SeqCst));
            if free == 0 {
                std::thread::sleep(Duration::from_millis(1)); // the main thread frees room
                continue;
            }
            let mut round = || -> redis::RedisResult<()> {
                if Instant::now() >= next_claim {
                    next_claim = Instant::now() + (self.lease / 10).max(Duration::from_millis(50));
                    self.claim_stale(c, free)?;
                }
                let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.name)
                    .arg("COUNT")
                    .arg(free)
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(self.keys.tasks())
                    .arg(">")
                    .query(c)?;
                for key in read.map(|r| r.keys).unwrap_or_default() {
                    for e in key.ids {
                        self.hand(e.id, &e.map, 0, None);
                    }
                }
                Ok(())
            };
            if let Err(e) = round() {
                if e.code() == Some("NOGROUP") {
                    ensure_group(c, &self.keys);
                } else if broker::connection_lost(&e) {
                    conn = None;
                } else {
                    log::warn!(target: "multiproc", "cluster agent {}: {e}", self.name);
                    std::thread::sleep(Duration::from_millis(100)); // a refused command, not a hot loop
                }
            }
        }
    }

    fn hand(
        &self,
        id: String,
        map: &HashMap<String, redis::Value>,
        losses: u64,
        previous: Option<String>,
    ) {
        let bytes = match map.get(wire::FIELD) {
            Some(redis::Value::BulkString(b)) => b.clone(),
            _ => Vec::new(),
        };
        self.held.fetch_add(1, Ordering::SeqCst);
        let _ = self.tx.send(Taken {
            id,
            bytes,
            losses,
            previous,
            waiting_since: None,
        });
    }

    /// Takes over entries whose agent has not renewed them for a lease.
    fn claim_stale(&self, c: &mut redis::Connection, free: usize) -> redis::RedisResult<()> {
        let lease = self.lease.as_millis() as u64;
        let stale: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(self.keys.tasks())
            .arg(GROUP)
            .arg("IDLE")
            .arg(lease)
            .arg("-")
            .arg("+")
            .arg(free.min(64))
            .query(c)?;
        for p in stale.ids {
            if p.consumer == self.name {
                continue;
            }
            // Taken only if still idle that long: two agents never both do.
            let got: StreamClaimReply = redis::cmd("XCLAIM")
                .arg(self.keys.tasks())
                .arg(GROUP)
                .arg(&self.name)
                .arg(lease)
                .arg(&p.id)
                .query(c)?;
            for e in got.ids {
                log::info!(target: "multiproc", "cluster agent {} takes over {} from {} (silent for a lease)", self.name, e.id, p.consumer);
                self.hand(
                    e.id,
                    &e.map,
                    p.times_delivered as u64,
                    Some(p.consumer.clone()),
                );
            }
        }
        Ok(())
    }
}
