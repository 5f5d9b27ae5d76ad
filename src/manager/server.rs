//! The manager server: holds the objects, answers requests.
//!
//! One thread accepts connections; one thread per client runs the authkey
//! handshake (so a client that stalls in it holds up no one) and then
//! serves its requests in order. Objects have a lock each, so slow
//! methods of one registered object do not hold up other objects; blocking
//! objects (queues, locks, ...) live in [`blocking`](super::blocking). A
//! client that dies mid-request only ends its own thread, and what its
//! connection held (locks, permits) is given back; a malformed request
//! gets an error reply, an oversized one ends that client's connection
//! (the stream cannot be resynchronised); both are logged, and the server
//! goes on.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use indexmap::{IndexMap, IndexSet};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::blocking::{Blocking, Ctx};
use super::protocol::{Bytes, ErrorReply, Kind, MAX_BATCH_DEPTH, Op, Reply, Request};
use super::wire::{SPIN, Wire};
use crate::connection::{Address, Connection, Listener};
use crate::error::ErrorKind;
use crate::sys::image::FnRef;

/// Makes a registered object from its encoded initial value.
pub(crate) type Constructor = fn(&[u8]) -> Result<Box<dyn ErasedObject>, String>;

/// A registered object, its type erased.
pub(crate) trait ErasedObject: Send {
    fn call(&mut self, request: &[u8]) -> Result<Bytes, String>;
}

/// An object whose methods run inside the manager's process, called through
/// an [`ObjectProxy`](super::ObjectProxy) (Python's `BaseManager.register`).
///
/// The object is created in the server from the value the client passes,
/// and every call sends a `Request` and returns a `Response`: an enum of
/// operations is the Rust way to say "these are its methods".
pub trait SharedObject: Serialize + DeserializeOwned + Send + 'static {
    /// The operations a client may ask for.
    type Request: Serialize + DeserializeOwned;
    /// What an operation returns.
    type Response: Serialize + DeserializeOwned;
    /// Runs one operation, in the manager's process, holding the object's
    /// lock: calls on one object never overlap.
    fn handle(&mut self, request: Self::Request) -> Self::Response;
}

impl<T: SharedObject> ErasedObject for T {
    fn call(&mut self, request: &[u8]) -> Result<Bytes, String> {
        let request: T::Request =
            postcard::from_bytes(request).map_err(|e| format!("undecodable request: {e}"))?;
        let response = std::panic::catch_unwind(AssertUnwindSafe(|| self.handle(request)))
            .map_err(|p| {
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panicked".into())
            })?;
        postcard::to_allocvec(&response).map_err(|e| e.to_string())
    }
}

/// How a constructor travels to the manager's process.
pub(crate) type ConstructorRef = FnRef<Constructor, crate::sys::image::Constructors>;

/// The [`Constructor`] for `T`. A registered entry point, in
/// `sys::image::Constructors`.
// Placement only; the section holds functions of this signature alone
// (`sys::image::Section`'s contract).
#[allow(unsafe_code)]
#[unsafe(link_section = "multiproc_ctor")]
pub(crate) fn construct<T: SharedObject>(init: &[u8]) -> Result<Box<dyn ErasedObject>, String> {
    postcard::from_bytes::<T>(init)
        .map(|t| Box::new(t) as Box<dyn ErasedObject>)
        .map_err(|e| format!("undecodable initial value: {e}"))
}

struct Dict {
    map: IndexMap<Bytes, (Bytes, u64)>,
    clock: u64,
}

enum Object {
    Dict(Dict),
    List { items: Vec<Bytes>, version: u64 },
    Set(IndexSet<Bytes>),
    Registered(Box<dyn ErasedObject>),
}

#[derive(Clone)]
enum Entry {
    Plain(Arc<Mutex<Object>>),
    Blocking(Arc<Blocking>),
}

/// The server's state.
pub(crate) struct Server {
    objects: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    next_conn: AtomicU64,
    registry: HashMap<String, Constructor>,
    stop: AtomicBool,
}

/// The largest request a server accepts (a bigger one is refused and its
/// connection closed, since the stream cannot be resynchronised).
pub(crate) const MAX_REQUEST: usize = 64 << 20;

fn wrong(op: &Op, kind: &str) -> Reply {
    Reply::Error(ErrorReply::WrongKind(format!(
        "{} does not apply to a {kind}",
        op.name()
    )))
}

impl Server {
    pub(crate) fn new(registry: HashMap<String, Constructor>) -> Self {
        Self {
            objects: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            registry,
            stop: AtomicBool::new(false),
        }
    }

    fn insert(&self, object: Object) -> Reply {
        self.insert_entry(Entry::Plain(Arc::new(Mutex::new(object))))
    }

    fn insert_entry(&self, entry: Entry) -> Reply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, entry);
        Reply::Created(id)
    }

    fn entry(&self, id: u64) -> Option<Entry> {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    pub(crate) fn handle(&self, request: Request, ctx: &mut Ctx<'_>, depth: usize) -> Reply {
        match request {
            Request::Create { kind, init } => {
                if let Some(b) = Blocking::new(kind) {
                    return self.insert_entry(Entry::Blocking(Arc::new(b)));
                }
                self.insert(Self::plain(kind, init))
            }
            Request::CreateRegistered { typeid, init } => match self.registry.get(&typeid) {
                None => Reply::Error(ErrorReply::UnknownType(typeid)),
                Some(construct) => match construct(&init) {
                    Ok(object) => self.insert(Object::Registered(object)),
                    Err(why) => Reply::Error(ErrorReply::Call(why)),
                },
            },
            Request::Op { id, op } => match self.entry(id) {
                None => Reply::Error(ErrorReply::NoSuchObject(id)),
                Some(Entry::Plain(object)) => {
                    apply(&mut object.lock().unwrap_or_else(|p| p.into_inner()), op)
                }
                Some(Entry::Blocking(object)) => {
                    ctx.object = id;
                    object.apply(op, ctx)
                }
            },
            Request::Batch(requests) => {
                if depth >= MAX_BATCH_DEPTH {
                    return Reply::Error(ErrorReply::WrongKind("batches nested too deeply".into()));
                }
                Reply::Replies(
                    requests
                        .into_iter()
                        .map(|r| self.handle(r, ctx, depth + 1))
                        .collect(),
                )
            }
            Request::Shutdown => {
                self.stop.store(true, Ordering::Release);
                let objects: Vec<Entry> = self
                    .objects
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .cloned()
                    .collect();
                for o in objects {
                    if let Entry::Blocking(b) = o {
                        b.wake_all();
                    }
                }
                Reply::Done
            }
        }
    }

    fn plain(kind: Kind, init: Vec<(Bytes, Bytes)>) -> Object {
        match kind {
            Kind::List => Object::List {
                items: init.into_iter().map(|(k, _)| k).collect(),
                version: 1,
            },
            Kind::Set => Object::Set(init.into_iter().map(|(k, _)| k).collect()),
            // Dict, Namespace, Value (one entry under the empty key); the
            // blocking kinds never get here.
            _ => {
                let mut d = Dict {
                    map: IndexMap::new(),
                    clock: 0,
                };
                for (k, v) in init {
                    d.clock += 1;
                    d.map.insert(k, (v, d.clock));
                }
                Object::Dict(d)
            }
        }
    }

    /// Serves connections from `listener` (which runs the handshakes, side
    /// by side in this thread: a peer costs a thread only once it is
    /// authenticated) until a client asks for shutdown, then returns. Client threads still serving live
    /// connections are left to end when their clients hang up (or with the
    /// process); blocked ones are woken and told the server is stopping.
    pub(crate) fn serve(self: Arc<Self>, listener: Listener) {
        let address = listener.address().clone();
        let stop = || self.stop.load(Ordering::Acquire);
        loop {
            match listener.accept_until::<()>(&stop) {
                Ok(None) => break,
                Ok(Some(conn)) => {
                    if stop() {
                        break;
                    }
                    let server = self.clone();
                    let address = address.clone();
                    let spawned = std::thread::Builder::new()
                        .name("multiproc-manager-client".into())
                        .spawn(move || server.serve_client(conn, &address));
                    if let Err(e) = spawned {
                        log::warn!(target: "multiproc", "manager: no thread for a client: {e}");
                    }
                }
                Err(e) => log::debug!(target: "multiproc", "manager: accept: {e}"),
            }
        }
    }

    fn serve_client(&self, conn: Connection<()>, address: &Address) {
        let Ok(mut wire) = Wire::from_connection(conn) else {
            return;
        };
        // Ready: the client sends nothing before this (see wire.rs).
        if wire.send(&[]).is_err() {
            return;
        }
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut held = Held {
            server: self,
            conn_id,
            ids: HashSet::new(),
        };
        self.serve_requests(&mut wire, conn_id, &mut held.ids, address);
        // `held` is dropped here, or while this thread unwinds.
    }

    fn serve_requests(
        &self,
        wire: &mut Wire,
        conn_id: u64,
        held: &mut HashSet<u64>,
        address: &Address,
    ) {
        loop {
            let bytes = match wire.recv(MAX_REQUEST, SPIN) {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Eof => return,
                Err(e) => {
                    log::warn!(target: "multiproc", "manager: dropping a client: {e}");
                    return;
                }
            };
            let mut asked_shutdown = false;
            // Strictly: bytes left over after the request are malformed too.
            let decoded = match postcard::take_from_bytes::<Request>(&bytes) {
                Ok((request, [])) => Ok(request),
                Ok((_, rest)) => Err(format!("{} bytes after the request", rest.len())),
                Err(e) => Err(e.to_string()),
            };
            let reply = match decoded {
                Ok(request) => {
                    asked_shutdown = asks_shutdown(&request);
                    let mut ctx = Ctx {
                        conn_id,
                        sock: wire.fd(),
                        stop: &self.stop,
                        object: 0,
                        held: &mut *held,
                    };
                    self.handle(request, &mut ctx, 0)
                }
                Err(e) => {
                    log::warn!(target: "multiproc", "manager: malformed request ({} bytes): {e}", bytes.len());
                    Reply::Error(ErrorReply::WrongKind(format!("malformed request: {e}")))
                }
            };
            let Ok(out) = postcard::to_allocvec(&reply) else {
                return;
            };
            if wire.send(&out).is_err() {
                return;
            }
            if asked_shutdown {
                // Wake the accept loop so that it sees the flag, and the
                // process ends. Only the client that asked, once its reply
                // is sent: a waiter woken by the shutdown must not end the
                // process before that reply is out.
                let _ = crate::connection::Client::connect::<()>(address, None);
                return;
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
        }
    }
}

/// What one connection holds (locks, permits), given back when its thread
/// stops serving it on every path: the client closed or misbehaved, or the
/// thread unwinds from a panic (the objects' mutexes are taken
/// poison-tolerant, so giving back never panics in turn).
struct Held<'a> {
    server: &'a Server,
    conn_id: u64,
    ids: HashSet<u64>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for id in self.ids.drain() {
            if let Some(Entry::Blocking(b)) = self.server.entry(id) {
                b.abandon(self.conn_id);
            }
        }
    }
}

/// Whether `request` is (or a batch holds) a shutdown.
fn asks_shutdown(request: &Request) -> bool {
    match request {
        Request::Shutdown => true,
        Request::Batch(requests) => requests.iter().any(asks_shutdown),
        _ => false,
    }
}

fn apply(object: &mut Object, op: Op) -> Reply {
    match object {
        Object::Dict(d) => dict_op(d, op),
        Object::List { items, version } => list_op(items, version, op),
        Object::Set(s) => set_op(s, op),
        Object::Registered(o) => match op {
            Op::Call(request) => match o.call(&request) {
                Ok(bytes) => Reply::Value(Some(bytes)),
                Err(why) => Reply::Error(ErrorReply::Call(why)),
            },
            op => wrong(&op, "registered object"),
        },
    }
}

fn dict_op(d: &mut Dict, op: Op) -> Reply {
    match op {
        Op::Get(k) => Reply::Value(d.map.get(&k).map(|(v, _)| v.clone())),
        Op::GetVersioned(k) => match d.map.get(&k) {
            Some((v, ver)) => Reply::Versioned(Some(v.clone()), *ver),
            None => Reply::Versioned(None, 0),
        },
        Op::Insert(k, v) => {
            d.clock += 1;
            d.map.insert(k, (v, d.clock));
            Reply::Done
        }
        Op::CompareAndSet {
            key,
            version,
            value,
        } => {
            let current = d.map.get(&key).map(|(_, ver)| *ver).unwrap_or(0);
            if current != version {
                return Reply::Bool(false);
            }
            d.clock += 1;
            d.map.insert(key, (value, d.clock));
            Reply::Bool(true)
        }
        Op::Remove(k) => Reply::Value(d.map.shift_remove(&k).map(|(v, _)| v)),
        Op::Contains(k) => Reply::Bool(d.map.contains_key(&k)),
        Op::Len => Reply::Len(d.map.len() as u64),
        Op::Keys => Reply::Items(d.map.keys().cloned().collect()),
        Op::Values => Reply::Items(d.map.values().map(|(v, _)| v.clone()).collect()),
        Op::Items => Reply::Pairs(
            d.map
                .iter()
                .map(|(k, (v, _))| (k.clone(), v.clone()))
                .collect(),
        ),
        Op::Update(pairs) => {
            for (k, v) in pairs {
                d.clock += 1;
                d.map.insert(k, (v, d.clock));
            }
            Reply::Done
        }
        Op::Clear => {
            d.map.clear();
            Reply::Done
        }
        op => wrong(&op, "dict"),
    }
}

fn list_op(items: &mut Vec<Bytes>, version: &mut u64, op: Op) -> Reply {
    let len = items.len() as u64;
    let mut changed = true;
    let reply = match op {
        Op::Push(v) => {
            items.push(v);
            Reply::Done
        }
        Op::Pop => {
            let v = items.pop();
            changed = v.is_some();
            Reply::Value(v)
        }
        Op::Index(i) => {
            changed = false;
            Reply::Value(usize::try_from(i).ok().and_then(|i| items.get(i)).cloned())
        }
        Op::SetIndex(i, v) => match usize::try_from(i).ok().and_then(|i| items.get_mut(i)) {
            Some(slot) => {
                *slot = v;
                Reply::Done
            }
            None => {
                changed = false;
                Reply::Error(ErrorReply::IndexOutOfRange { index: i, len })
            }
        },
        Op::Extend(vs) => {
            items.extend(vs);
            Reply::Done
        }
        Op::Reverse => {
            items.reverse();
            Reply::Done
        }
        Op::Len => {
            changed = false;
            Reply::Len(len)
        }
        Op::Snapshot => {
            changed = false;
            Reply::Snapshot(*version, items.clone())
        }
        Op::ReplaceIfVersion {
            version: expected,
            items: new,
        } => {
            if *version == expected {
                *items = new;
                Reply::Bool(true)
            } else {
                changed = false;
                Reply::Bool(false)
            }
        }
        Op::Clear => {
            items.clear();
            Reply::Done
        }
        op => {
            changed = false;
            wrong(&op, "list")
        }
    };
    if changed {
        *version += 1;
    }
    reply
}

fn set_op(s: &mut IndexSet<Bytes>, op: Op) -> Reply {
    match op {
        Op::Add(v) => Reply::Bool(s.insert(v)),
        Op::Discard(v) => Reply::Bool(s.shift_remove(&v)),
        Op::Contains(v) => Reply::Bool(s.contains(&v)),
        Op::Len => Reply::Len(s.len() as u64),
        Op::Snapshot => Reply::Snapshot(0, s.iter().cloned().collect()),
        Op::Clear => {
            s.clear();
            Reply::Done
        }
        op => wrong(&op, "set"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::time::Duration;

    use super::*;

    fn call(server: &Server, conn_id: u64, held: &mut HashSet<u64>, request: Request) -> Reply {
        let (sock, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let stop = AtomicBool::new(false);
        let mut ctx = Ctx {
            conn_id,
            sock: sock.as_fd(),
            stop: &stop,
            object: 0,
            held,
        };
        server.handle(request, &mut ctx, 0)
    }

    fn acquire(server: &Server, conn_id: u64, held: &mut HashSet<u64>, id: u64) -> Reply {
        let op = Op::Acquire {
            timeout: Some(Duration::ZERO),
        };
        call(server, conn_id, held, Request::Op { id, op })
    }

    #[test]
    fn what_a_connection_held_is_given_back_when_its_thread_unwinds() {
        let server = Server::new(HashMap::new());
        let mut none = HashSet::new();
        let create = Request::Create {
            kind: Kind::Lock,
            init: Vec::new(),
        };
        let Reply::Created(id) = call(&server, 0, &mut none, create) else {
            panic!("no lock");
        };
        // Connection 1 takes the lock, then its thread panics while it
        // holds it.
        let unwound = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut held = Held {
                server: &server,
                conn_id: 1,
                ids: HashSet::new(),
            };
            let reply = acquire(&server, 1, &mut held.ids, id);
            assert!(matches!(reply, Reply::Acquired(Some(false))), "{reply:?}");
            panic!("a bug in the middle of serving connection 1");
        }));
        assert!(unwound.is_err());
        // Connection 2 gets it, told that its owner died.
        let reply = acquire(&server, 2, &mut HashSet::new(), id);
        assert!(matches!(reply, Reply::Acquired(Some(true))), "{reply:?}");
    }
}
