//! Managers: a server process that holds shared objects — dicts, lists,
//! sets, namespaces and objects of your own types — which any process
//! reaches through proxies (Python's `multiprocessing.Manager`).
//!
//! ```
//! # multiproc::init();
//! use multiproc::{Manager, Process};
//! use multiproc::manager::DictProxy;
//!
//! fn work(i: u32, results: DictProxy<u32, String>) {
//!     results.insert(i, format!("done by {}", multiproc::current_process().name())).unwrap();
//! }
//!
//! let manager = Manager::new()?;
//! let results = manager.dict::<u32, String>()?;
//! let children: Vec<_> = (0..3)
//!     .map(|i| Process::new(work, (i, results.clone())).start())
//!     .collect::<Result<_, _>>()?;
//! for c in children {
//!     c.join()?;
//! }
//! assert_eq!(results.len()?, 3);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! Proxies are cheap to clone, passable to children under every start
//! method, and usable from several threads. Each operation is one round
//! trip to the server; `get_many`, `update` and `extend` do many in one.
//! Objects live until the manager shuts down.
//!
//! The manager also serves queues and synchronisation objects
//! ([`queue`](Manager::queue), [`lock`](Manager::lock),
//! [`condition`](Manager::condition), [`barrier`](Manager::barrier), ...),
//! whose blocking calls wait in the server. Each thread talks to the
//! server over its own connection, so a blocked thread holds up no other,
//! and the connection owns what it acquires: when a thread or process
//! ends holding a lock or permits, the server gives them back and every
//! later acquisition gets an [`OwnerDied`](crate::sync::OwnerDied) (inside
//! [`AcquireError::OwnerDied`](crate::sync::AcquireError::OwnerDied)) until
//! a holder acknowledges it with
//! [`into_guard`](crate::sync::OwnerDied::into_guard). These proxies
//! follow the crate's outcome rules as the local [`sync`](crate::sync)
//! objects do: four acquisition forms with one `Ok`, a [`ProxyGuard`],
//! and errors that say what happened.
//!
//! ```
//! # multiproc::init();
//! use multiproc::{Manager, Process};
//! use multiproc::manager::{LockProxy, ValueProxy};
//!
//! fn add(lock: LockProxy, total: ValueProxy<u64>) {
//!     let _guard = lock.acquire().unwrap();
//!     let n = total.get().unwrap();
//!     total.set(n + 1).unwrap();
//! }
//!
//! let manager = Manager::new()?;
//! let (lock, total) = (manager.lock()?, manager.value(0u64)?);
//! let children: Vec<_> = (0..3)
//!     .map(|_| Process::new(add, (lock.clone(), total.clone())).start())
//!     .collect::<Result<_, _>>()?;
//! for c in children {
//!     c.join()?;
//! }
//! assert_eq!(total.get()?, 3);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! The design (ownership, waiting, speed, limits) is in `README.md` beside
//! this file.

mod blocking;
mod link;
pub(crate) mod protocol;
mod proxy;
mod queue_proxy;
pub(crate) mod server;
mod sync_proxy;
mod wire;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use proxy::{DictProxy, ListProxy, Namespace, ObjectProxy, SetProxy, ValueProxy};
pub use queue_proxy::{JoinableQueueProxy, QueueProxy};
pub use server::SharedObject;
pub use sync_proxy::{
    BarrierProxy, ConditionProxy, EventProxy, LockProxy, ProxyGuard, RLockProxy, SemaphoreProxy,
};

use self::link::{Link, unexpected};
use self::protocol::{Kind, Reply, Request};
use crate::codec::Fd;
use crate::connection::{Address, Listener};
use crate::context::StartMethod;
use crate::error::{Error, ErrorKind, Result};
use crate::process::Process;
use crate::tempdir::PrivateDir;

/// A manager: owns a server process (made by [`Manager::new`] or
/// [`ManagerBuilder::start`]) or is connected to one elsewhere
/// ([`Manager::connect`]).
///
/// Dropping a manager that owns its server shuts the server down, like
/// [`shutdown`](Manager::shutdown); proxies then fail with
/// [`ErrorKind::Eof`].
pub struct Manager {
    link: Link,
    server: Option<Process<()>>,
    /// The private directory of the server's socket, if this manager made
    /// one; dropping it removes it and the socket.
    socket_dir: Option<PrivateDir>,
    /// The process that made this manager: only it shuts the server down
    /// on drop (a copy in a forked child does not).
    owner_pid: i32,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.link.address)
            .finish()
    }
}

/// Options for a manager: registered types, address, key, start method.
#[derive(Default)]
#[must_use = "a ManagerBuilder does nothing until start() or serve_forever()"]
pub struct ManagerBuilder {
    registry: Vec<(String, server::ConstructorRef)>,
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    method: Option<StartMethod>,
}

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field(
                "types",
                &self.registry.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .field("address", &self.address)
            .finish()
    }
}

/// The arguments of the server process.
type ServerArgs = (Fd, Address, Vec<u8>, Vec<(String, server::ConstructorRef)>);

fn run_server(args: ServerArgs) {
    let (fd, address, authkey, registry) = args;
    let registry: HashMap<String, server::Constructor> = registry
        .into_iter()
        // The server runs the image that sent these (it checked before
        // running this function), so the references resolve.
        .filter_map(|(typeid, r)| r.resolve(true).map(|c| (typeid, c)))
        .collect();
    // The listener runs the handshakes, side by side in the accepting
    // thread: an unauthenticated peer costs no thread.
    let listener = Listener::from_parts(fd.into_owned(), address, Some(authkey));
    Arc::new(server::Server::new(registry)).serve(listener);
}

impl ManagerBuilder {
    /// Lets the server make objects of type `T` under the name `typeid`
    /// (Python's `BaseManager.register(typeid, callable)`); clients make
    /// them with [`Manager::create`].
    pub fn register<T: SharedObject>(mut self, typeid: &str) -> Self {
        self.registry.push((
            typeid.to_string(),
            server::ConstructorRef::new(server::construct::<T>),
        ));
        self
    }

    /// Serves at this address instead of a private Unix socket (for
    /// clients on other machines, use a TCP address).
    pub fn address(mut self, address: impl Into<Address>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The key clients must prove they know (default: this process's
    /// authkey, which its children inherit).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.authkey = Some(key.to_vec());
        self
    }

    /// The start method of the server process.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    fn key(&self) -> Vec<u8> {
        self.authkey
            .clone()
            .unwrap_or_else(|| crate::runtime::authkey().to_vec())
    }

    /// Starts the server process and returns the manager.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the address cannot be bound; the errors of
    /// [`ProcessBuilder::start`](crate::ProcessBuilder::start).
    pub fn start(self) -> Result<Manager> {
        let authkey = self.key();
        let mut listener = match &self.address {
            Some(a) => Listener::bind(a.clone(), Some(&authkey))?,
            None => Listener::bind_temp(Some(&authkey))?,
        };
        let socket_dir = listener.take_dir();
        let (fd, address): (OwnedFd, Address) = listener.into_parts();
        let args: ServerArgs = (Fd::new(fd), address.clone(), authkey.clone(), self.registry);
        let mut p = Process::new(run_server, args)
            .name("SyncManager")
            .daemon(true);
        if let Some(m) = self.method {
            p = p.start_method(m);
        }
        let server = p.start()?;
        log::info!(target: "multiproc", "manager serving at {address} (pid {})", server.pid());
        Ok(Manager {
            link: Link { address, authkey },
            server: Some(server),
            socket_dir,
            owner_pid: crate::sys::process::cached_pid() as i32,
        })
    }

    /// Serves in this process until a client calls
    /// [`shutdown`](Manager::shutdown) (Python's
    /// `get_server().serve_forever()`). Needs an [`address`](Self::address).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if there is no address or it cannot be bound.
    pub fn serve_forever(self) -> Result<()> {
        let authkey = self.key();
        let Some(address) = self.address.clone() else {
            return Err(Error::new(ErrorKind::Io, "serve_forever needs an address"));
        };
        let listener = Listener::bind(address, Some(&authkey))?;
        let registry = self
            .registry
            .into_iter()
            .filter_map(|(t, r)| r.resolve(true).map(|c| (t, c)))
            .collect();
        Arc::new(server::Server::new(registry)).serve(listener);
        Ok(())
    }
}

impl Manager {
    /// Starts a manager server process with the default options (Python's
    /// `Manager()`).
    ///
    /// # Errors
    ///
    /// As [`ManagerBuilder::start`].
    pub fn new() -> Result<Manager> {
        Manager::builder().start()
    }

    /// A builder for the options.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Connects to a manager served elsewhere (Python's
    /// `BaseManager(address, authkey).connect()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Authentication`] for a wrong key; [`ErrorKind::Io`] if
    /// nothing listens there.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Manager> {
        let link = Link {
            address: address.clone(),
            authkey: authkey.to_vec(),
        };
        link.connection()?;
        Ok(Manager {
            link,
            server: None,
            socket_dir: None,
            owner_pid: crate::sys::process::cached_pid() as i32,
        })
    }

    /// The server process's pid, for a manager that started it.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(|p| p.pid())
    }

    /// Where the server listens.
    pub fn address(&self) -> &Address {
        &self.link.address
    }

    /// A new shared dict.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::new(
            self.link.clone(),
            self.link.create(Kind::Dict, Vec::new())?,
        ))
    }

    /// A new shared list.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        Ok(ListProxy::new(
            self.link.clone(),
            self.link.create(Kind::List, Vec::new())?,
        ))
    }

    /// A new shared list holding `items` (Python's `manager.list(range(5))`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if an item cannot be encoded; [`ErrorKind::Eof`]
    /// if the server is gone.
    pub fn list_from<T: Serialize>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>> {
        let init = items
            .into_iter()
            .map(|t| proxy::enc(&t).map(|b| (b, Vec::new())))
            .collect::<Result<_>>()?;
        Ok(ListProxy::new(
            self.link.clone(),
            self.link.create(Kind::List, init)?,
        ))
    }

    /// A new shared set.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn set<T>(&self) -> Result<SetProxy<T>> {
        Ok(SetProxy::new(
            self.link.clone(),
            self.link.create(Kind::Set, Vec::new())?,
        ))
    }

    /// A new namespace: named fields of any serde type.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn namespace(&self) -> Result<Namespace> {
        Ok(Namespace::new(
            self.link.clone(),
            self.link.create(Kind::Namespace, Vec::new())?,
        ))
    }

    /// A new shared value holding `init` (Python's `manager.Value(t, v)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if `init` cannot be encoded; [`ErrorKind::Eof`]
    /// if the server is gone.
    pub fn value<T: Serialize>(&self, init: T) -> Result<ValueProxy<T>> {
        let init = vec![(Vec::new(), proxy::enc(&init)?)];
        Ok(ValueProxy::new(
            self.link.clone(),
            self.link.create(Kind::Value, init)?,
        ))
    }

    fn make(&self, kind: Kind) -> Result<u64> {
        self.link.create(kind, Vec::new())
    }

    /// A new FIFO queue holding at most `maxsize` values (0: no limit;
    /// Python's `manager.Queue(maxsize)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn queue<T>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        let maxsize = maxsize as u64;
        let id = self.make(Kind::Queue {
            maxsize,
            joinable: false,
        })?;
        Ok(QueueProxy::new(self.link.clone(), id, maxsize))
    }

    /// A new joinable queue (Python's `manager.JoinableQueue(maxsize)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn joinable_queue<T>(&self, maxsize: usize) -> Result<JoinableQueueProxy<T>> {
        let maxsize = maxsize as u64;
        let id = self.make(Kind::Queue {
            maxsize,
            joinable: true,
        })?;
        Ok(JoinableQueueProxy::new(self.link.clone(), id, maxsize))
    }

    /// A new lock (Python's `manager.Lock()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn lock(&self) -> Result<LockProxy> {
        Ok(LockProxy::new(self.link.clone(), self.make(Kind::Lock)?))
    }

    /// A new reentrant lock (Python's `manager.RLock()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn rlock(&self) -> Result<RLockProxy> {
        Ok(RLockProxy::new(self.link.clone(), self.make(Kind::RLock)?))
    }

    /// A new semaphore with `value` permits (Python's
    /// `manager.Semaphore(value)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        let id = self.make(Kind::Semaphore {
            value,
            bounded: false,
        })?;
        Ok(SemaphoreProxy::new(self.link.clone(), id))
    }

    /// A new semaphore that refuses to be released above `value` (Python's
    /// `manager.BoundedSemaphore(value)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn bounded_semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        let id = self.make(Kind::Semaphore {
            value,
            bounded: true,
        })?;
        Ok(SemaphoreProxy::new(self.link.clone(), id))
    }

    /// A new condition variable with its own reentrant lock (Python's
    /// `manager.Condition()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn condition(&self) -> Result<ConditionProxy> {
        Ok(ConditionProxy::new(
            self.link.clone(),
            self.make(Kind::Condition)?,
        ))
    }

    /// A new event, not set (Python's `manager.Event()`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server is gone.
    pub fn event(&self) -> Result<EventProxy> {
        Ok(EventProxy::new(self.link.clone(), self.make(Kind::Event)?))
    }

    /// A new barrier for `parties` clients (Python's
    /// `manager.Barrier(parties)`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for zero parties; [`ErrorKind::Eof`]
    /// if the server is gone.
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy> {
        if parties == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a barrier needs at least one party",
            ));
        }
        let id = self.make(Kind::Barrier { parties })?;
        Ok(BarrierProxy::new(self.link.clone(), id))
    }

    /// A new object of a type registered as `typeid`, made from `init`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Remote`] if the server has no such type;
    /// [`ErrorKind::Eof`] if it is gone.
    pub fn create<T: SharedObject>(&self, typeid: &str, init: &T) -> Result<ObjectProxy<T>> {
        let reply = self.link.call(&Request::CreateRegistered {
            typeid: typeid.to_string(),
            init: proxy::enc(init)?,
        })?;
        match reply {
            Reply::Created(id) => Ok(ObjectProxy::new(self.link.clone(), id)),
            other => Err(unexpected(&other)),
        }
    }

    /// Stops the server (and, for a manager that owns it, waits for its
    /// process to end).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Eof`] if the server was already gone.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let said = self.link.call(&Request::Shutdown).map(|_| ());
        self.link.forget();
        if let Some(server) = self.server.take() {
            if let Err(e) = server.join_timeout(Duration::from_secs(5)) {
                if e.kind() != ErrorKind::Timeout {
                    return Err(e);
                }
                server.kill()?;
            }
            let _ = server.join_timeout(Duration::from_secs(5));
        }
        // The socket's private directory goes, socket included.
        drop(self.socket_dir.take());
        said
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.server.is_some() && self.owner_pid == crate::sys::process::cached_pid() as i32 {
            let _ = self.stop();
        }
    }
}
