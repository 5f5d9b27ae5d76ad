//! `Listener` and `Client` over Unix sockets and TCP, with the authkey
//! handshake of CPython's `multiprocessing.connection` (see `auth.rs`), so a
//! Rust listener accepts Python clients and a Rust client reaches a Python
//! listener for byte messages.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::auth;
use super::conn::Connection;
use super::handshake::Gate;
use crate::error::{Error, ErrorKind, Result};
use crate::tempdir::PrivateDir;
use std::os::fd::AsFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where a [`Listener`] listens: a Unix socket path or a TCP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Address {
    /// A Unix socket at this path (Python's `'AF_UNIX'` family).
    Unix(PathBuf),
    /// A TCP address (Python's `('host', port)`, family `'AF_INET'`).
    Tcp(SocketAddr),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Tcp(a) => write!(f, "{a}"),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Self {
        Address::Unix(p)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Self {
        Address::Unix(p.to_path_buf())
    }
}

impl FromStr for Address {
    type Err = Error;
    /// `host:port` is TCP; anything with a `/` is a Unix socket path.
    fn from_str(s: &str) -> Result<Self> {
        if s.contains('/') {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        s.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(Address::Tcp)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Io,
                    format!("{s:?} is neither host:port nor a socket path"),
                )
            })
    }
}

enum Inner {
    Unix(UnixListener),
    Tcp(TcpListener),
    /// Taken by `into_parts`.
    None,
}

/// Accepts connections at an address, checking each peer's authkey
/// (Python's `multiprocessing.connection.Listener`).
///
/// ```
/// use multiproc::{Client, Listener};
/// let listener = Listener::bind("127.0.0.1:0".parse::<multiproc::connection::Address>()?, Some(b"secret"))?;
/// let address = listener.address().clone();
/// let t = std::thread::spawn(move || {
///     let conn = Client::connect::<String>(&address, Some(b"secret")).unwrap();
///     conn.send(&"hi".to_string()).unwrap();
/// });
/// let conn = listener.accept::<String>()?;
/// assert_eq!(conn.recv()?, "hi");
/// t.join().unwrap();
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Listener {
    inner: Inner,
    address: Address,
    /// Whether dropping removes the Unix socket's path.
    owns_path: bool,
    /// The private directory of a [`bind_temp`](Self::bind_temp) socket,
    /// removed with the listener (or by whoever takes it).
    dir: Option<PrivateDir>,
    /// The handshakes in progress, with an authkey.
    gate: Option<Mutex<Gate>>,
    /// The message size limit of the connections accepted.
    max_message: AtomicUsize,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .finish()
    }
}

impl Listener {
    /// Listens at `address` (TCP port 0 picks a free port; see
    /// [`address`](Self::address)). With an `authkey`, every connection must
    /// pass the handshake; with `None`, none is done (as in Python).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the address cannot be bound (in use, a path that
    /// exists, no permission).
    pub fn bind(address: impl Into<Address>, authkey: Option<&[u8]>) -> Result<Listener> {
        let address = address.into();
        let (inner, address) = match &address {
            Address::Unix(path) => {
                let l = UnixListener::bind(path)
                    .map_err(|e| Error::io(format!("could not listen at {}", path.display()), e))?;
                (Inner::Unix(l), address)
            }
            Address::Tcp(a) => {
                let l = TcpListener::bind(a)
                    .map_err(|e| Error::io(format!("could not listen at {a}"), e))?;
                let actual = l
                    .local_addr()
                    .map_err(|e| Error::io("could not read the bound address", e))?;
                (Inner::Tcp(l), Address::Tcp(actual))
            }
        };
        Ok(Listener::assemble(
            inner,
            address,
            authkey.map(<[u8]>::to_vec),
        ))
    }

    fn assemble(inner: Inner, address: Address, authkey: Option<Vec<u8>>) -> Listener {
        let gate = authkey.map(|k| Mutex::new(Gate::new(k)));
        Listener {
            inner,
            address,
            owns_path: true,
            dir: None,
            gate,
            max_message: AtomicUsize::new(super::DEFAULT_MAX_MESSAGE_SIZE),
        }
    }

    /// The listening socket and its address, for handing the listener to
    /// another process; the path is no longer removed on drop.
    pub(crate) fn into_parts(mut self) -> (OwnedFd, Address) {
        self.owns_path = false;
        let address = self.address.clone();
        let inner = std::mem::replace(&mut self.inner, Inner::None);
        let fd = match inner {
            Inner::Unix(l) => OwnedFd::from(l),
            Inner::Tcp(l) => OwnedFd::from(l),
            Inner::None => unreachable!("a listener always has a socket until into_parts"),
        };
        (fd, address)
    }

    /// A listener around a socket from [`into_parts`](Self::into_parts); it
    /// removes the Unix socket's path when dropped.
    pub(crate) fn from_parts(fd: OwnedFd, address: Address, authkey: Option<Vec<u8>>) -> Self {
        let inner = match address {
            Address::Unix(_) => Inner::Unix(UnixListener::from(fd)),
            Address::Tcp(_) => Inner::Tcp(TcpListener::from(fd)),
        };
        Listener::assemble(inner, address, authkey)
    }

    /// Listens on a fresh Unix socket in a fresh private temporary
    /// directory (Python's `Listener()` with no address): mode 0700, a
    /// random name, never one that existed before; removed with the
    /// listener, at exit, and — after a SIGKILL — by the next multiproc
    /// program of this user that makes one.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the directory or the socket cannot be created.
    pub fn bind_temp(authkey: Option<&[u8]>) -> Result<Listener> {
        let dir = PrivateDir::new()
            .map_err(|e| Error::io("could not make a private directory for a socket", e))?;
        let mut listener = Listener::bind(dir.path().join("listener"), authkey)?;
        listener.dir = Some(dir);
        Ok(listener)
    }

    /// Takes the private directory of a [`bind_temp`](Self::bind_temp)
    /// listener: whoever holds it removes it (with the socket) on drop.
    pub(crate) fn take_dir(&mut self) -> Option<PrivateDir> {
        self.dir.take()
    }

    /// The address the listener is bound to (with the real port for TCP
    /// port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Sets how long a peer has to complete the handshake (5 s by
    /// default); one that takes longer is dropped. Every `timeout` is
    /// accepted: `Duration::MAX` gives peers as long as they take (at
    /// most 1 024 handshakes are in progress all the same). Never fails.
    pub fn set_handshake_timeout(&self, timeout: Duration) {
        if let Some(gate) = &self.gate {
            gate.lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_deadline(timeout);
        }
    }

    /// Sets the longest message the connections accepted from now on take
    /// ([`Connection::set_max_message_size`], which can change it per
    /// connection afterwards); [`DEFAULT_MAX_MESSAGE_SIZE`](super::DEFAULT_MAX_MESSAGE_SIZE)
    /// unless set. Never fails.
    pub fn set_max_message_size(&self, max: usize) {
        self.max_message.store(max, Ordering::Relaxed);
    }

    /// Waits for a connection, runs the authkey handshake (challenging the
    /// peer, then answering its challenge), and returns it.
    ///
    /// With an authkey, handshakes run side by side in this call: a peer
    /// that connects and says nothing (or too slowly: 5 s by default, see
    /// [`set_handshake_timeout`](Self::set_handshake_timeout)) never holds
    /// up the next client, takes no thread and is dropped at its deadline;
    /// at most 1 024 handshakes are in progress (a new one closes the
    /// oldest). Out of descriptors (`EMFILE`), the listener backs off
    /// instead of spinning. Descriptors a peer sends before it is
    /// authenticated are closed unread.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Authentication`] if a peer fails the handshake (a wrong
    /// key, or a message that is not one; the listener keeps working: call
    /// `accept` again); [`ErrorKind::Eof`] if a peer hung up during it
    /// (without an authkey); [`ErrorKind::Io`] if accepting fails.
    pub fn accept<T>(&self) -> Result<Connection<T>> {
        match self.accept_until(&|| false)? {
            Some(conn) => Ok(conn),
            None => Err(Error::new(ErrorKind::Io, "the listener was closed")),
        }
    }

    /// [`accept`](Self::accept) that also returns `Ok(None)` once `stop()`
    /// is true; it is asked whenever the listener wakes up, for one thing
    /// when a connection arrives.
    pub(crate) fn accept_until<T>(&self, stop: &dyn Fn() -> bool) -> Result<Option<Connection<T>>> {
        let Some(gate) = &self.gate else {
            if stop() {
                return Ok(None);
            }
            let (fd, unix) = self
                .accept_raw(true)
                .map_err(|e| Error::io("accept failed", e))?
                .ok_or_else(|| Error::new(ErrorKind::Io, "accept: no connection"))?;
            return Ok(Some(self.connection(fd, unix)));
        };
        let listen = match &self.inner {
            Inner::Unix(l) => l.as_fd(),
            Inner::Tcp(l) => l.as_fd(),
            Inner::None => return Err(Error::new(ErrorKind::Io, "the listener was closed")),
        };
        crate::sys::socket::set_nonblocking(listen, true)
            .map_err(|e| Error::io("could not make the listener non-blocking", e))?;
        let mut gate = gate.lock().unwrap_or_else(|p| p.into_inner());
        let mut accept_one = || self.accept_raw(false);
        let got = gate.accept(listen, &mut accept_one, stop)?;
        Ok(got.map(|(fd, unix)| self.connection(fd, unix)))
    }

    /// An accepted socket as a connection with this listener's limit.
    fn connection<T>(&self, fd: OwnedFd, unix: bool) -> Connection<T> {
        let conn = Connection::new(fd, unix, true, true);
        conn.set_max_message_size(self.max_message.load(Ordering::Relaxed));
        conn
    }

    /// One `accept`: blocking, or not (`Ok(None)` when nobody waits).
    fn accept_raw(&self, wait: bool) -> std::io::Result<Option<(OwnedFd, bool)>> {
        let got = match &self.inner {
            Inner::Unix(l) => l.accept().map(|(s, _)| (OwnedFd::from(s), true)),
            Inner::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                (OwnedFd::from(s), false)
            }),
            Inner::None => return Err(std::io::Error::other("the listener was closed")),
        };
        match got {
            Ok(got) => Ok(Some(got)),
            Err(e) if !wait && e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let (true, Address::Unix(path)) = (self.owns_path, &self.address) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Connects to a [`Listener`] (Python's `multiprocessing.connection.Client`).
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Connects to `address` and, with an `authkey`, runs the handshake
    /// (answering the listener's challenge, then challenging it). Waits as
    /// long as that takes: see [`connect_timeout`](Self::connect_timeout).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Authentication`] if the keys differ; [`ErrorKind::Eof`]
    /// if the listener hung up; [`ErrorKind::MessageTooLarge`] or
    /// [`ErrorKind::Protocol`] if a handshake message from the listener is
    /// over 256 bytes or not framed; [`ErrorKind::Io`] if connecting fails.
    pub fn connect<T>(address: &Address, authkey: Option<&[u8]>) -> Result<Connection<T>> {
        Client::connect_until(address, authkey, None)
    }

    /// [`connect`](Self::connect), with `timeout` for the connection and
    /// the handshake together. Every `timeout` is accepted:
    /// `Duration::MAX` waits as long as it takes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the time ran out (a listener that does
    /// not accept, or does not answer its handshake); otherwise as
    /// [`connect`](Self::connect).
    pub fn connect_timeout<T>(
        address: &Address,
        authkey: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Connection<T>> {
        Client::connect_until(address, authkey, crate::time::deadline_after(timeout))
    }

    /// [`connect`](Self::connect) that gives up at `deadline`, connection
    /// and handshake together.
    ///
    /// # Errors
    ///
    /// As [`connect_timeout`](Self::connect_timeout).
    pub fn connect_deadline<T>(
        address: &Address,
        authkey: Option<&[u8]>,
        deadline: Instant,
    ) -> Result<Connection<T>> {
        Client::connect_until(address, authkey, Some(deadline))
    }

    fn connect_until<T>(
        address: &Address,
        authkey: Option<&[u8]>,
        deadline: Option<Instant>,
    ) -> Result<Connection<T>> {
        let left = || match crate::time::remaining(deadline) {
            Some(d) if d.is_zero() => Err(timed_out(address)),
            other => Ok(other),
        };
        let (fd, unix): (OwnedFd, bool) = match address {
            Address::Unix(path) => (connect_unix(path, left()?, address)?, true),
            Address::Tcp(a) => {
                let s = match left()? {
                    None => TcpStream::connect(a),
                    Some(d) => TcpStream::connect_timeout(a, d),
                }
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                        timed_out(address)
                    }
                    _ => Error::io(format!("could not connect to {a}"), e),
                })?;
                let _ = s.set_nodelay(true);
                (s.into(), false)
            }
        };
        let conn = Connection::new(fd, unix, true, true);
        if let Some(key) = authkey {
            let timed = Timed {
                conn: &conn,
                deadline,
                address,
            };
            auth::answer_challenge(&timed, key)?;
            auth::deliver_challenge(&timed, key)?;
        }
        Ok(conn)
    }
}

fn timed_out(address: &Address) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("connecting to {address} (and its handshake) took longer than allowed"),
    )
}

/// Connects a Unix stream socket to `path`, waiting at most `timeout` for
/// a listener whose backlog is full (`SO_SNDTIMEO` bounds that wait).
fn connect_unix(path: &Path, timeout: Option<Duration>, address: &Address) -> Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType, sockopt};
    let fail = |e: std::io::Error| Error::io(format!("could not connect to {}", path.display()), e);
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| fail(e.into()))?;
    let addr = SocketAddrUnix::new(path).map_err(|e| fail(e.into()))?;
    if let Some(t) = timeout {
        sockopt::set_socket_timeout(&sock, sockopt::Timeout::Send, Some(t))
            .map_err(|e| fail(e.into()))?;
    }
    loop {
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) if timeout.is_some() => return Err(timed_out(address)),
            Err(e) => return Err(fail(e.into())),
        }
    }
    if timeout.is_some() {
        sockopt::set_socket_timeout(&sock, sockopt::Timeout::Send, None)
            .map_err(|e| fail(e.into()))?;
    }
    Ok(sock)
}

/// A connection's handshake messages, each received by a deadline.
struct Timed<'a, T> {
    conn: &'a Connection<T>,
    deadline: Option<Instant>,
    address: &'a Address,
}

impl<T> auth::Channel for Timed<'_, T> {
    fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        self.conn.send_bytes(buf)
    }
    fn recv_bytes_max(&self, max: usize) -> Result<Vec<u8>> {
        self.conn
            .recv_bytes_until(max, self.deadline)?
            .ok_or_else(|| timed_out(self.address))
    }
}
