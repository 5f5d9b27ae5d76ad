//! The caller's side: [`Link`], the pool core's [`Remote`] over the
//! broker. `send` adds a chunk to the build's task stream at once (one
//! round trip, on the calling thread's connection); a reader thread, on a
//! connection of its own, blocks on the caller's reply stream, checks each
//! answer against the chunk it answers (every item once, nothing else),
//! drops duplicates (a chunk run twice after an agent was lost), and rings
//! the core's wake descriptor. The same thread keeps the caller's keys
//! alive (and the blobs of what is in flight: `blob.rs`), watches that
//! some agent runs this build, and, when the broker comes back having
//! lost some or all of its data, sends again what was in flight.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::streams::StreamReadReply;

use super::blob::{self, Blob, ItemBlobs, Stored, Uploads};
use super::broker::{self, Broker, Keys};
use super::options::ClusterOptions;
use super::wire::{self, Part, Reply, TaskEntry};
use crate::error::{Error, ErrorKind, Result};
use crate::pool::core::Chunk;
use crate::pool::core::remote::{Answer, FuncParts, JobLimits, Remote};
use crate::sys;
use crate::sys::epoll::Doorbell;

/// A chunk sent and not answered.
struct Sent {
    job: u64,
    first: u64,
    count: u32,
    entry: Arc<Vec<u8>>,
    /// The blobs its items name (kept alive, and stored again after a
    /// broker restart, while it is in flight).
    blobs: Vec<Arc<Blob>>,
    /// Its entry id in the task stream; `None` while it waits to be sent
    /// (the broker was unreachable, or came back without it).
    id: Option<String>,
    /// `send` is adding it (the reader thread leaves it alone).
    sending: bool,
}

#[derive(Default)]
struct State {
    sent: HashMap<u64, Sent>,
    answers: Vec<Answer>,
    failure: Option<(ErrorKind, String)>,
    in_flight: u64,
    /// Answers to chunks already answered (or forgotten).
    duplicates: u64,
    /// The blobs the broker holds for this caller.
    stored: Stored,
}

struct Shared {
    state: Mutex<State>,
    bell: Doorbell,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the reader thread needs to know.
#[derive(Clone)]
struct Where {
    url: String,
    keys: Keys,
    caller: String,
    options: ClusterOptions,
}

/// The caller's link to the broker: the pool core's [`Remote`].
pub(crate) struct Link {
    /// The connection `send` uses; `None` after it failed, until the next
    /// reconnect (tried at most every [`RECONNECT`]).
    conn: Option<redis::Connection>,
    last_connect: Instant,
    at: Where,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    next_seq: u64,
    max_chunks: usize,
    uploads: Uploads,
}

/// How often `send` tries to reconnect a lost connection (meanwhile the
/// reader thread sends what waits).
const RECONNECT: Duration = Duration::from_millis(500);

fn broker_err(at: &Where, what: &str, e: redis::RedisError) -> Error {
    Error::new(
        ErrorKind::Io,
        format!("cluster broker {}: {what}: {e}", broker::redact(&at.url)),
    )
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

impl Link {
    /// Connects to the broker at `url`, registers this caller and waits
    /// (up to `options.agent_wait`) for an agent of this build. Returns
    /// the link and the processes the live agents offer.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when the broker cannot be reached; `Timeout` when
    /// no agent of this build shows up in time.
    pub(crate) fn connect(url: &str, options: ClusterOptions) -> Result<(Link, usize)> {
        let build = broker::build_id()?;
        let keys = Keys::new(&build);
        let tag: String = sys::shm::random_tag()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let caller = format!("{}-{}-{tag}", sys::process::hostname(), std::process::id());
        let at = Where {
            url: url.to_owned(),
            keys,
            caller,
            options,
        };
        let mut conn = Broker::connect(url)?.into_connection();
        let keep_alive = |conn: &mut redis::Connection| -> redis::RedisResult<()> {
            redis::cmd("SET")
                .arg(at.keys.caller(&at.caller))
                .arg(1)
                .arg("PX")
                .arg(ms(at.options.caller_ttl))
                .query(conn)
        };
        keep_alive(&mut conn).map_err(|e| broker_err(&at, "SET", e))?;
        let start = Instant::now();
        let procs = loop {
            let now = broker::broker_ms(&mut conn).map_err(|e| broker_err(&at, "TIME", e))?;
            let (n, procs) = broker::live_agents(&mut conn, &at.keys, now)
                .map_err(|e| broker_err(&at, "HGETALL", e))?;
            if n > 0 {
                break procs.max(1);
            }
            if start.elapsed() >= at.options.agent_wait {
                let _: redis::RedisResult<()> = redis::cmd("DEL")
                    .arg(at.keys.caller(&at.caller))
                    .query(&mut conn);
                return Err(no_agent(&at, &build));
            }
            std::thread::sleep(Duration::from_millis(50)); // polling the broker, bounded by agent_wait
        };
        let bell = Doorbell::new().map_err(|e| Error::io("could not create an eventfd", e))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            bell,
            stop: AtomicBool::new(false),
        });
        let reader_conn = Broker::connect(url)?.into_connection();
        let (sh, w) = (shared.clone(), at.clone());
        let reader = std::thread::Builder::new()
            .name("multiproc-cluster".into())
            .spawn(move || read_loop(Some(reader_conn), &w, &sh, build))
            .map_err(|e| Error::io("could not start the cluster reader thread", e))?;
        let link = Link {
            conn: Some(conn),
            last_connect: Instant::now(),
            at,
            shared,
            reader: Some(reader),
            next_seq: 0,
            max_chunks: (procs * 4).max(8),
            uploads: Uploads::default(),
        };
        Ok((link, procs))
    }

    /// The connection for commands, reconnected if it was lost (at most
    /// every [`RECONNECT`]).
    fn conn(&mut self) -> Option<&mut redis::Connection> {
        if self.conn.is_none() && self.last_connect.elapsed() >= RECONNECT {
            self.last_connect = Instant::now();
            self.conn = match Broker::connect(&self.at.url) {
                Ok(b) => Some(b.into_connection()),
                Err(e) => {
                    log::debug!(target: "multiproc", "{e}");
                    None
                }
            };
        }
        self.conn.as_mut()
    }

    /// Runs `cmd`; a failure drops the connection (the next call
    /// reconnects).
    fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Option<T> {
        let r = cmd.query(self.conn()?);
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                log::debug!(target: "multiproc", "cluster broker: {e}");
                self.conn = None;
                None
            }
        }
    }

    fn del_entries(&mut self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let mut cmd = redis::cmd("XDEL");
        cmd.arg(self.at.keys.tasks()).arg(ids);
        let _: Option<()> = self.query(&cmd);
    }
}

fn no_agent(at: &Where, build: &str) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "no cluster agent runs this program (build {build}) at {}: waited {:?}; start agents of this same binary with multiproc::cluster::Worker (or MULTIPROC_WORKER=<url>)",
            broker::redact(&at.url),
            at.options.agent_wait
        ),
    )
}

impl Remote for Link {
    fn has_room(&self) -> bool {
        self.shared.lock().sent.len() < self.max_chunks
    }

    fn send(&mut self, chunk: Chunk, func: FuncParts<'_>, limits: JobLimits) -> Result<()> {
        // Sealed segments (large arguments, pool.put, SharedSlice) go as
        // blobs; any other descriptor cannot travel.
        let ttl = self.at.options.caller_ttl;
        let mut item_blobs = Vec::new();
        let mut held: Vec<Arc<Blob>> = Vec::new();
        let mut uploads = Vec::new();
        for (item, fds, shm) in chunk.fd_item_list() {
            let mut refs = Vec::with_capacity(fds.len());
            for fd in fds.iter() {
                let b = self.uploads.blob_of(fd.as_fd())?;
                refs.push(b.blob.at);
                held.push(b.blob.clone());
                uploads.push(b);
            }
            item_blobs.push(ItemBlobs { item, shm, refs });
        }
        if !uploads.is_empty() {
            // What the broker holds already is not sent again.
            let st = self.shared.lock();
            let mut seen = HashSet::new();
            uploads.retain(|u| {
                seen.insert(u.blob.at.hash) && !blob::fresh(&st.stored, &u.blob.at.hash, ttl)
            });
        }
        let items = chunk.items();
        let mut ends = Vec::with_capacity(items.len());
        let mut bytes = Vec::with_capacity(chunk.data.len());
        for item in &items {
            bytes.extend_from_slice(item);
            ends.push(bytes.len() as u32);
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let entry = TaskEntry {
            caller: self.at.caller.clone(),
            seq,
            job: chunk.job,
            what: func.what.to_owned(),
            first: chunk.first,
            func: postcard::to_allocvec(&func.task).unwrap_or_default(),
            captured: func.captured.map(<[u8]>::to_vec),
            items: bytes,
            ends,
            blobs: item_blobs,
            timeout_ns: limits
                .timeout
                .map(|d| d.as_nanos().min(u64::MAX as u128) as u64),
            retries: limits.retries,
            retry_panics: limits.retry_panics,
            max_losses: self.at.options.max_losses,
            reply_ttl_ms: ms(self.at.options.caller_ttl),
        };
        let entry = Arc::new(wire::encode(&entry)?);
        // Blobs first, in one transaction with the entry: an agent never
        // sees an entry whose blobs the broker refused.
        let mut pipe = redis::pipe();
        if !uploads.is_empty() {
            pipe.atomic();
        }
        for u in &mut uploads {
            let key = self.at.keys.blob(&self.at.caller, &u.blob.at.hex());
            pipe.cmd("SET")
                .arg(key)
                .arg(u.bytes()?)
                .arg("PX")
                .arg(ms(ttl))
                .ignore();
        }
        pipe.cmd("XADD")
            .arg(self.at.keys.tasks())
            .arg("*")
            .arg(wire::FIELD)
            .arg(entry.as_slice());
        let stored: Vec<[u8; 32]> = uploads.iter().map(|u| u.blob.at.hash).collect();
        drop(uploads);
        // Known before it is sent: its answer can come back before XADD's.
        {
            let mut st = self.shared.lock();
            for h in &stored {
                blob::note_stored(&mut st.stored, *h, ttl);
            }
            st.in_flight += chunk.count as u64;
            st.sent.insert(
                seq,
                Sent {
                    job: chunk.job,
                    first: chunk.first,
                    count: chunk.count,
                    entry,
                    blobs: held,
                    id: None,
                    sending: true,
                },
            );
        }
        // Unsent, the reader thread sends it when the broker is back.
        let mut id = None;
        if let Some(c) = self.conn() {
            match pipe.query::<(String,)>(c) {
                Ok((got,)) => id = Some(got),
                Err(e) if broker::connection_lost(&e) => {
                    log::debug!(target: "multiproc", "cluster broker: {e}");
                    self.conn = None;
                    // The reader sends it, blobs first; later chunks must
                    // not count on them meanwhile.
                    let mut st = self.shared.lock();
                    for h in &stored {
                        blob::doubt(&mut st.stored, h);
                    }
                }
                Err(e) => {
                    // Refused (out of memory, say): not sent, and not
                    // believed stored.
                    let mut st = self.shared.lock();
                    if let Some(s) = st.sent.remove(&seq) {
                        st.in_flight -= s.count as u64;
                    }
                    for h in &stored {
                        blob::doubt(&mut st.stored, h);
                    }
                    return Err(broker_err(&self.at, "XADD", e));
                }
            }
        }
        if let Some(s) = self.shared.lock().sent.get_mut(&seq) {
            s.id = id;
            s.sending = false;
        }
        Ok(())
    }

    fn take(&mut self, into: &mut Vec<Answer>) {
        // Cleared first: an answer pushed after the take rings again.
        self.shared.bell.clear();
        into.append(&mut self.shared.lock().answers);
    }

    fn wake(&self) -> BorrowedFd<'_> {
        self.shared.bell.as_fd()
    }

    fn in_flight(&self) -> u64 {
        self.shared.lock().in_flight
    }

    fn forget(&mut self, job: u64) {
        let ids: Vec<String> = {
            let mut st = self.shared.lock();
            let seqs: Vec<u64> = st
                .sent
                .iter()
                .filter(|(_, s)| s.job == job)
                .map(|(&k, _)| k)
                .collect();
            let mut ids = Vec::new();
            for k in seqs {
                let s = st.sent.remove(&k).expect("listed");
                st.in_flight -= s.count as u64;
                ids.extend(s.id);
            }
            ids
        };
        if ids.is_empty() {
            return;
        }
        // Entries no agent took yet go; agents running one stop it.
        self.del_entries(ids);
        let cancel = self.at.keys.cancel(&self.at.caller);
        let ttl = ms(self.at.options.caller_ttl);
        if let Some(c) = self.conn() {
            let _: redis::RedisResult<()> = redis::pipe()
                .cmd("SADD")
                .arg(&cancel)
                .arg(job)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&cancel)
                .arg(ttl)
                .ignore()
                .query(c);
        }
    }

    fn abandon(&mut self) -> Vec<(u64, u64)> {
        let (items, ids) = {
            let mut st = self.shared.lock();
            st.in_flight = 0;
            let mut items = Vec::new();
            let mut ids = Vec::new();
            for (_, s) in st.sent.drain() {
                items.extend((0..s.count as u64).map(|j| (s.job, s.first + j)));
                ids.extend(s.id);
            }
            st.answers.clear();
            (items, ids)
        };
        self.del_entries(ids);
        items
    }

    fn failure(&self) -> Option<Error> {
        let st = self.shared.lock();
        st.failure.as_ref().map(|(k, m)| Error::new(*k, m.clone()))
    }

    fn close(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
        let ids: Vec<String> = self
            .shared
            .lock()
            .sent
            .drain()
            .filter_map(|(_, s)| s.id)
            .collect();
        self.del_entries(ids);
        // The caller's key goes first: agents running its work stop.
        let mut del = redis::cmd("DEL");
        del.arg(self.at.keys.caller(&self.at.caller))
            .arg(self.at.keys.reply(&self.at.caller))
            .arg(self.at.keys.cancel(&self.at.caller));
        let _: Option<()> = self.query(&del);
        let blobs: Vec<String> = self
            .shared
            .lock()
            .stored
            .drain()
            .map(|(h, _)| self.at.keys.blob(&self.at.caller, &blob::hex(&h)))
            .collect();
        for some in blobs.chunks(256) {
            let mut del = redis::cmd("DEL");
            del.arg(some);
            let _: Option<()> = self.query(&del);
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.reader.is_some() {
            self.close();
        }
    }
}

/// Checks `reply` against the chunk it answers: every item once, within
/// the chunk. What is missing fails as a protocol error naming the agent.
fn answers_of(s: &Sent, reply: Reply, out: &mut Vec<Answer>) {
    let mut seen = vec![false; s.count as usize];
    let end = s.first + s.count as u64;
    let agent: String = reply.agent.chars().take(128).collect();
    for part in reply.parts {
        match part {
            Part::Ok {
                first,
                count,
                bytes,
            } => {
                let Some(last) = first.checked_add(count as u64) else {
                    continue;
                };
                if count == 0 || first < s.first || last > end {
                    continue;
                }
                let range = (first - s.first) as usize..(last - s.first) as usize;
                if seen[range.clone()].iter().any(|&b| b) {
                    continue;
                }
                seen[range].iter_mut().for_each(|b| *b = true);
                out.push(Answer::Ok {
                    job: s.job,
                    first,
                    count,
                    bytes,
                });
            }
            Part::Err {
                index,
                kind,
                message,
                panic,
            } => {
                if index < s.first || index >= end || seen[(index - s.first) as usize] {
                    continue;
                }
                seen[(index - s.first) as usize] = true;
                out.push(Answer::Err {
                    job: s.job,
                    index,
                    error: wire::error_of(kind, message, panic),
                });
            }
        }
    }
    for (j, _) in seen.iter().enumerate().filter(|(_, b)| !**b) {
        let index = s.first + j as u64;
        out.push(Answer::Err {
            job: s.job,
            index,
            error: Error::new(
                ErrorKind::Protocol,
                format!("cluster agent {agent:?} answered the chunk of task {index} without it"),
            ),
        });
    }
}

/// Keeps the blobs of what is in flight alive as long as it is, and
/// stores again those the broker lost.
fn refresh_blobs(c: &mut redis::Connection, at: &Where, sh: &Shared) -> redis::RedisResult<()> {
    let ttl = at.options.caller_ttl;
    let mut blobs: HashMap<[u8; 32], Arc<Blob>> = HashMap::new();
    for s in sh.lock().sent.values() {
        for b in &s.blobs {
            blobs.entry(b.at.hash).or_insert_with(|| b.clone());
        }
    }
    let blobs: Vec<Arc<Blob>> = blobs.into_values().collect();
    for some in blobs.chunks(256) {
        let mut pipe = redis::pipe();
        for b in some {
            pipe.cmd("PEXPIRE")
                .arg(at.keys.blob(&at.caller, &b.at.hex()))
                .arg(ms(ttl));
        }
        let kept: Vec<bool> = pipe.query(c)?;
        let gone: Vec<&Arc<Blob>> = some
            .iter()
            .zip(&kept)
            .filter(|(_, k)| !**k)
            .map(|(b, _)| b)
            .collect();
        store_blobs(c, at, &gone)?;
        let mut st = sh.lock();
        for b in some {
            blob::note_stored(&mut st.stored, b.at.hash, ttl);
        }
    }
    Ok(())
}

/// Sends again what waits to be sent (after a broker restart, or a send
/// that failed), each blob it names first, once.
fn resend(c: &mut redis::Connection, at: &Where, sh: &Shared) -> redis::RedisResult<()> {
    type Unsent = (u64, Arc<Vec<u8>>, Vec<Arc<Blob>>);
    let unsent: Vec<Unsent> = sh
        .lock()
        .sent
        .iter()
        .filter(|(_, s)| s.id.is_none() && !s.sending)
        .map(|(&k, s)| (k, s.entry.clone(), s.blobs.clone()))
        .collect();
    if !unsent.is_empty() {
        log::debug!(target: "multiproc", "cluster: sending {} chunks again", unsent.len());
    }
    let ttl = at.options.caller_ttl;
    for (k, entry, blobs) in unsent {
        let need: Vec<&Arc<Blob>> = {
            let st = sh.lock();
            let mut seen = HashSet::new();
            blobs
                .iter()
                .filter(|b| seen.insert(b.at.hash) && !blob::fresh(&st.stored, &b.at.hash, ttl))
                .collect()
        };
        store_blobs(c, at, &need)?;
        {
            let mut st = sh.lock();
            for b in &need {
                blob::note_stored(&mut st.stored, b.at.hash, ttl);
            }
        }
        let id: String = redis::cmd("XADD")
            .arg(at.keys.tasks())
            .arg("*")
            .arg(wire::FIELD)
            .arg(entry.as_slice())
            .query(c)?;
        if let Some(s) = sh.lock().sent.get_mut(&k) {
            s.id = Some(id);
        }
    }
    Ok(())
}

/// After the broker came back with this caller's keys: entries added in
/// its last moments (not yet in its append-only file) may be gone. An
/// agent deletes an entry in the same transaction that adds its answer,
/// so an entry missing once every answer was read was lost: it is marked
/// to be sent again. Returns whether to check again next round (an entry
/// was being sent meanwhile).
fn verify_sent(
    c: &mut redis::Connection,
    at: &Where,
    sh: &Shared,
    reply_key: &str,
    last: &mut String,
) -> redis::RedisResult<bool> {
    #[cfg(feature = "test-hooks")]
    VERIFIES.fetch_add(1, Ordering::Relaxed);
    let (ids, busy): (Vec<(u64, String)>, bool) = {
        let st = sh.lock();
        let ids = st
            .sent
            .iter()
            .filter(|(_, s)| !s.sending)
            .filter_map(|(&k, s)| Some((k, s.id.clone()?)))
            .collect();
        (ids, st.sent.values().any(|s| s.sending))
    };
    let mut missing = Vec::new();
    for some in ids.chunks(256) {
        let mut pipe = redis::pipe();
        for (_, id) in some {
            pipe.cmd("XRANGE").arg(at.keys.tasks()).arg(id).arg(id);
        }
        let found: Vec<Vec<redis::Value>> = pipe.query(c)?;
        missing.extend(
            some.iter()
                .zip(found)
                .filter(|(_, f)| f.is_empty())
                .map(|((k, _), _)| *k),
        );
    }
    // Every answer that came (not only a first batch), so that an answered
    // chunk is not taken for a lost one.
    while read_replies(c, reply_key, last, None, sh)? > 0 {}
    if !missing.is_empty() {
        let mut st = sh.lock();
        let mut again = 0;
        for k in missing {
            if let Some(s) = st.sent.get_mut(&k) {
                s.id = None;
                again += 1;
            }
        }
        log::warn!(target: "multiproc", "the cluster broker came back without {again} chunks: sending them again");
        #[cfg(feature = "test-hooks")]
        RESENT.fetch_add(again, Ordering::Relaxed);
    }
    Ok(busy)
}

/// Stores `blobs` (again).
fn store_blobs(
    c: &mut redis::Connection,
    at: &Where,
    blobs: &[&Arc<Blob>],
) -> redis::RedisResult<()> {
    for b in blobs {
        let key = at.keys.blob(&at.caller, &b.at.hex());
        let ttl = ms(at.options.caller_ttl);
        let stored = blob::with_bytes(b, |bytes| {
            redis::cmd("SET")
                .arg(&key)
                .arg(bytes)
                .arg("PX")
                .arg(ttl)
                .query::<()>(c)
        });
        match stored {
            Ok(r) => r?,
            // Its items fail on the agent, naming the blob.
            Err(e) => log::warn!(target: "multiproc", "cluster: {e}"),
        }
    }
    Ok(())
}

/// Reads the answers on `reply_key` after `last` (waiting up to `block`
/// ms for the first), hands them to the caller and deletes them.
fn read_replies(
    c: &mut redis::Connection,
    reply_key: &str,
    last: &mut String,
    block: Option<u64>,
    sh: &Shared,
) -> redis::RedisResult<usize> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(256);
    if let Some(ms) = block {
        cmd.arg("BLOCK").arg(ms);
    }
    let read: Option<StreamReadReply> = cmd.arg("STREAMS").arg(reply_key).arg(&*last).query(c)?;
    let Some(read) = read else {
        return Ok(0);
    };
    let mut ids = Vec::new();
    let mut answers = Vec::new();
    for key in read.keys {
        for e in key.ids {
            *last = e.id.clone();
            ids.push(e.id);
            let bytes = match e.map.get(wire::FIELD) {
                Some(redis::Value::BulkString(b)) => b.as_slice(),
                _ => &[],
            };
            let reply: Reply = match wire::decode(bytes, "reply") {
                Ok(r) => r,
                Err(e) => {
                    log::warn!(target: "multiproc", "dropped a cluster answer: {e}");
                    continue;
                }
            };
            let mut st = sh.lock();
            match st.sent.remove(&reply.seq) {
                Some(s) => {
                    st.in_flight -= s.count as u64;
                    drop(st);
                    // (The agent deleted the task entry.)
                    answers_of(&s, reply, &mut answers);
                }
                None => {
                    log::debug!(target: "multiproc", "cluster: dropped a second answer to chunk {}", reply.seq);
                    st.duplicates += 1;
                }
            }
        }
    }
    if !answers.is_empty() {
        sh.lock().answers.append(&mut answers);
        sh.bell.ring();
    }
    // After the caller was woken: not on its path.
    let n = ids.len();
    if !ids.is_empty() {
        redis::cmd("XDEL").arg(reply_key).arg(ids).query::<()>(c)?;
    }
    Ok(n)
}

#[cfg(feature = "test-hooks")]
static VERIFIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
#[cfg(feature = "test-hooks")]
static RESENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Test support: how many times this process's callers checked their
/// entries after a broker came back with their keys, and how many
/// entries they found lost and sent again.
#[cfg(feature = "test-hooks")]
pub(crate) fn verify_counts() -> (u64, u64) {
    (
        VERIFIES.load(Ordering::Relaxed),
        RESENT.load(Ordering::Relaxed),
    )
}

/// The reader thread: answers in, keys kept alive, agents watched, the
/// broker's loss borne for `broker_timeout`.
fn read_loop(mut conn: Option<redis::Connection>, at: &Where, sh: &Shared, build: String) {
    let reply_key = at.keys.reply(&at.caller);
    let caller_key = at.keys.caller(&at.caller);
    let refresh = (at.options.caller_ttl / 10).max(Duration::from_millis(100));
    let mut last = "0-0".to_string();
    let mut next_refresh = Instant::now();
    let mut lost_since: Option<Instant> = None;
    let mut no_agent_since: Option<Instant> = None;
    // Check that what was sent is still there (after a reconnect).
    let mut verify = false;
    let fail = |kind: ErrorKind, message: String| {
        let mut st = sh.lock();
        if st.failure.is_none() {
            st.failure = Some((kind, message));
        }
        drop(st);
        sh.bell.ring();
    };
    while !sh.stop.load(Ordering::SeqCst) {
        let Some(c) = conn.as_mut() else {
            let since = *lost_since.get_or_insert_with(Instant::now);
            match Broker::connect(&at.url) {
                Ok(b) => {
                    let mut c = b.into_connection();
                    // A broker that came back without this caller's key
                    // lost its data: everything in flight is sent again.
                    let known: bool = redis::cmd("EXISTS")
                        .arg(&caller_key)
                        .query(&mut c)
                        .unwrap_or(false);
                    verify = known;
                    // Its last moments, or all of its data, may be lost:
                    // blobs included.
                    let mut st = sh.lock();
                    blob::doubt_all(&mut st.stored);
                    if !known {
                        log::warn!(target: "multiproc", "the cluster broker came back without this caller's work: sending it again");
                        last = "0-0".into();
                        for s in st.sent.values_mut() {
                            s.id = None;
                        }
                    }
                    drop(st);
                    conn = Some(c);
                    lost_since = None;
                    next_refresh = Instant::now();
                }
                Err(e) => {
                    if since.elapsed() >= at.options.broker_timeout {
                        fail(
                            ErrorKind::Io,
                            format!(
                                "lost the cluster broker for {:?}: {e}",
                                at.options.broker_timeout
                            ),
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100)); // reconnect back-off
                }
            }
            continue;
        };
        let round = (|| -> redis::RedisResult<()> {
            if Instant::now() >= next_refresh {
                next_refresh = Instant::now() + refresh;
                let ttl = ms(at.options.caller_ttl);
                redis::pipe()
                    .cmd("SET")
                    .arg(&caller_key)
                    .arg(1)
                    .arg("PX")
                    .arg(ttl)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&reply_key)
                    .arg(ttl)
                    .ignore()
                    .query::<()>(c)?;
                refresh_blobs(c, at, sh)?;
                let now = broker::broker_ms(c)?;
                let (n, _) = broker::live_agents(c, &at.keys, now)?;
                let busy = sh.lock().in_flight > 0;
                if n > 0 || !busy {
                    no_agent_since = None;
                } else if no_agent_since.get_or_insert_with(Instant::now).elapsed()
                    >= at.options.agent_wait
                {
                    fail(ErrorKind::Timeout, no_agent(at, &build).to_string());
                }
            }
            resend(c, at, sh)?;
            read_replies(c, &reply_key, &mut last, Some(100), sh)?;
            if verify {
                verify = verify_sent(c, at, sh, &reply_key, &mut last)?;
            }
            Ok(())
        })();
        if let Err(e) = round {
            if broker::connection_lost(&e) {
                log::warn!(target: "multiproc", "lost the cluster broker: {e}; reconnecting");
                conn = None;
            } else {
                log::warn!(target: "multiproc", "cluster broker: {e}");
                std::thread::sleep(Duration::from_millis(100)); // a refused command, not a hot loop
            }
        }
    }
}
