//! Processes: start a function in a child process, control it, get its
//! return value back.
//!
//! ```
//! use multiproc::Process;
//!
//! fn greet(name: String) -> usize {
//!     println!("hello {name} from {}", multiproc::current_process().name());
//!     name.len()
//! }
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! multiproc::init(); // first line of main
//! let p = Process::new(greet, "bob".to_string()).name("greeter").start()?;
//! assert_eq!(p.join()?, 3);
//! # Ok(()) }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::context::{StartMethod, get_start_method};
use crate::error::{Error, ErrorKind, PanicReport, Result};
use crate::runtime::child::{self, Boot, ChildInfo, ChildIo, Entry, ErrorReport};
use crate::runtime::{self, forkserver, launch};
use crate::sys;
use crate::sys::image::{EntryRef, ImageId};
use crate::target::Target;
use crate::wire;

/// A signal, such as the one that killed a child.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

impl Signal {
    /// Hangup.
    pub const HUP: Signal = Signal(libc::SIGHUP);
    /// Interrupt (Ctrl-C).
    pub const INT: Signal = Signal(libc::SIGINT);
    /// Abort, as `std::process::abort` raises.
    pub const ABRT: Signal = Signal(libc::SIGABRT);
    /// Kill: cannot be caught.
    pub const KILL: Signal = Signal(libc::SIGKILL);
    /// Segmentation fault.
    pub const SEGV: Signal = Signal(libc::SIGSEGV);
    /// Terminate: the polite request to end.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// User-defined signal 1.
    pub const USR1: Signal = Signal(libc::SIGUSR1);
    /// User-defined signal 2.
    pub const USR2: Signal = Signal(libc::SIGUSR2);

    /// The signal with this number.
    pub const fn from_raw(signal: i32) -> Signal {
        Signal(signal)
    }

    /// The signal's number.
    pub const fn as_raw(self) -> i32 {
        self.0
    }

    /// The conventional name (`"SIGKILL"`), if the signal has one.
    pub fn name(self) -> Option<&'static str> {
        sys::process::signal_name(self.0)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (signal {})", self.0),
            None => write!(f, "signal {}", self.0),
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Signal({})", self.0),
        }
    }
}

/// How a process ended: Python's `exitcode`, made explicit.
///
/// Python reports an exit code `n` as `n` and death by signal `N` as `-N`;
/// [`ExitStatus::python_exitcode`] gives that number when you need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// The process exited with this code (0 is success; 1 is what a child
    /// that panicked exits with, as Python's do after an exception).
    Exited(i32),
    /// The process was killed by this signal.
    Signaled(Signal),
}

impl ExitStatus {
    /// Whether the process exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The exit code, if the process exited.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(c) => Some(c),
            ExitStatus::Signaled(_) => None,
        }
    }

    /// The signal that killed the process, if one did.
    pub fn signal(self) -> Option<Signal> {
        match self {
            ExitStatus::Exited(_) => None,
            ExitStatus::Signaled(s) => Some(s),
        }
    }

    /// Python's `Process.exitcode`: the code, or minus the signal number.
    pub fn python_exitcode(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => -s.0,
        }
    }

    fn from_raw(raw: sys::process::RawStatus) -> Self {
        match raw {
            sys::process::RawStatus::Exited(c) => ExitStatus::Exited(c),
            sys::process::RawStatus::Signaled { signal, .. } => {
                ExitStatus::Signaled(Signal(signal))
            }
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by {s}"),
        }
    }
}

/// A process's name, pid and daemon flag: what [`current_process`],
/// [`parent_process`] and [`active_children`] return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    daemon: bool,
}

impl ProcessInfo {
    /// The name: `MainProcess`, `Process-N` by default, or the one given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is a daemon (terminated when its parent exits).
    pub fn daemon(&self) -> bool {
        self.daemon
    }
}

/// The process this code runs in: `MainProcess`, or the name its parent gave.
pub fn current_process() -> ProcessInfo {
    runtime::with_state(|s| ProcessInfo {
        name: s.me.name.clone(),
        pid: s.me.pid as u32,
        daemon: s.me.daemon,
    })
}

/// The process that started this one, or `None` in the main process.
pub fn parent_process() -> Option<ProcessInfo> {
    runtime::with_state(|s| {
        s.me.parent.as_ref().map(|(name, pid)| ProcessInfo {
            name: name.clone(),
            pid: *pid as u32,
            daemon: false,
        })
    })
}

/// The children of this process that are still running. As in Python, it
/// first reaps the children that have ended, including those whose
/// [`Process`] handle was dropped.
pub fn active_children() -> Vec<ProcessInfo> {
    runtime::reap_finished()
        .into_iter()
        .map(|c| ProcessInfo {
            name: c.name.clone(),
            pid: c.pid as u32,
            daemon: c.daemon,
        })
        .collect()
}

/// How many CPUs this process may use: the affinity mask and cgroup quota
/// taken into account (`std::thread::available_parallelism`). Pools use it
/// as their default size. At least 1.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Python's "subclass `Process` and override `run()`", in Rust: implement
/// `Run` for a serde type holding the process's data, then start it with
/// [`Process::from_run`].
///
/// ```
/// # multiproc::init();
/// use multiproc::{Process, Run};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Countdown { from: u32 }
///
/// impl Run for Countdown {
///     type Output = Vec<u32>;
///     fn run(self) -> Vec<u32> { (0..=self.from).rev().collect() }
/// }
///
/// let p = Process::from_run(Countdown { from: 3 }).name("countdown").start()?;
/// assert_eq!(p.join()?, vec![3, 2, 1, 0]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait Run: Serialize + DeserializeOwned + 'static {
    /// What `run` returns to the parent.
    type Output: Serialize + DeserializeOwned;
    /// The body of the process.
    fn run(self) -> Self::Output;
}

fn run_object<T: Run>(object: T) -> T::Output {
    object.run()
}

/// A process about to start: set its name, daemon flag and start method,
/// then call [`start`](ProcessBuilder::start).
///
/// Made by [`Process::new`], [`Process::from_run`], [`Process::fork`] or
/// [`Context::process`](crate::Context::process).
#[must_use = "a ProcessBuilder does nothing until start() is called"]
pub struct ProcessBuilder<F: Target<M>, M> {
    target: F,
    args: F::Args,
    name: Option<String>,
    daemon: Option<bool>,
    method: Option<StartMethod>,
    entry: Option<Entry>,
    allow_threads: bool,
    _marker: PhantomData<fn() -> M>,
}

impl<F: Target<M>, M> fmt::Debug for ProcessBuilder<F, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessBuilder")
            .field("target", &std::any::type_name::<F>())
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .finish()
    }
}

impl Process<()> {
    /// Prepares a process that will run `target(args)`.
    ///
    /// `target` is a function or a closure that captures nothing; `args` is
    /// its argument, a tuple for several, `()` for none (see [`Target`]). Both
    /// the arguments and the return value must be serde types; they travel
    /// with postcard, and any [`Fd`](crate::Fd) inside them travels as a
    /// descriptor.
    ///
    /// A closure that captures variables cannot be rebuilt in a new
    /// program, so [`start`](ProcessBuilder::start) refuses it under the
    /// spawn and forkserver start methods with
    /// [`ErrorKind::CapturingClosure`]; use [`Process::fork`] for those.
    #[allow(clippy::new_ret_no_self)] // like Command::new, it returns the builder
    pub fn new<F, M>(target: F, args: F::Args) -> ProcessBuilder<F, M>
    where
        F: Target<M> + Copy,
    {
        ProcessBuilder {
            target,
            args,
            name: None,
            daemon: None,
            method: None,
            entry: Some(child::trampoline::<F, M>),
            allow_threads: false,
            _marker: PhantomData,
        }
    }

    /// Prepares a process that runs `object.run()` (see [`Run`]).
    #[allow(clippy::type_complexity)] // an impl Trait cannot be named by an alias
    pub fn from_run<T: Run>(
        object: T,
    ) -> ProcessBuilder<
        impl Target<fn(T) -> T::Output, Args = T, Output = T::Output> + Copy,
        fn(T) -> T::Output,
    > {
        Process::new(run_object::<T>, object)
    }

    /// Prepares a process that runs a closure which may capture anything,
    /// with the fork start method: the child is a copy of this process, so
    /// the closure's captured values are simply there. The closure's return
    /// value comes back through [`Process::join`].
    ///
    /// This is Python's `os.fork()` with a body. `fork` is refused in a
    /// process with more than one thread (see
    /// [`ProcessBuilder::allow_fork_with_threads`]).
    pub fn fork<C, R>(closure: C) -> ProcessBuilder<C, fn() -> R>
    where
        C: FnOnce() -> R + 'static,
        R: Serialize + DeserializeOwned,
    {
        ProcessBuilder {
            target: closure,
            args: (),
            name: None,
            daemon: None,
            method: Some(StartMethod::Fork),
            entry: None,
            allow_threads: false,
            _marker: PhantomData,
        }
    }
}

impl<F: Target<M>, M> ProcessBuilder<F, M> {
    /// Names the process (default `Process-N`, or `Process-1:N` for the
    /// children of `Process-1`, as in Python).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Makes the process a daemon: it is terminated (SIGTERM) when its
    /// parent exits instead of being waited for, and it may not start
    /// children of its own. Default: the parent's own daemon flag.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// Chooses how the process starts (default: [`get_start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Lets the fork start method run even though this process has other
    /// threads.
    ///
    /// # Safety
    ///
    /// The child gets a copy of the calling thread only. Any lock another
    /// thread held at the moment of the fork (the memory allocator's,
    /// stdout's, a `Mutex` in your code) stays locked forever in the child,
    /// and the child deadlocks when it takes it. Call this only when you know
    /// no other thread can hold a lock the child will need, for example
    /// because they are all blocked in a known place. The child is also tied
    /// to the calling thread: it is killed when that thread exits.
    #[allow(unsafe_code)]
    pub unsafe fn allow_fork_with_threads(mut self) -> Self {
        self.allow_threads = true;
        self
    }

    /// Starts the process and returns its handle.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::NotInitialized`]: spawn or forkserver without
    ///   `multiproc::init()` at the start of `main`.
    /// - [`ErrorKind::CapturingClosure`]: a capturing closure with spawn or
    ///   forkserver.
    /// - [`ErrorKind::ForkWithThreads`]: fork in a multi-threaded process.
    /// - [`ErrorKind::DaemonChild`]: called in a daemon process.
    /// - [`ErrorKind::Encode`]: the arguments could not be encoded.
    /// - [`ErrorKind::Io`], [`ErrorKind::Bootstrap`]: the OS refused, or the
    ///   fork server could not start or fork.
    pub fn start(self) -> Result<Process<F::Output>> {
        let method = self.method.unwrap_or_else(get_start_method);
        if method != StartMethod::Fork {
            if self.entry.is_none() {
                return Err(Error::new(
                    ErrorKind::CapturingClosure,
                    format!(
                        "a closure given to Process::fork can only start with the fork start method, not {method}"
                    ),
                ));
            }
            if std::mem::size_of::<F>() != 0 {
                return Err(Error::new(
                    ErrorKind::CapturingClosure,
                    format!(
                        "the closure captures variables, and under the {method} start method the child is a new \
                         run of the program that has the closure's code but not its captured values: pass the \
                         values as arguments, or use Process::fork(closure) with the fork start method"
                    ),
                ));
            }
            if !runtime::initialized() {
                return Err(Error::new(
                    ErrorKind::NotInitialized,
                    format!(
                        "multiproc::init() was not called: the {method} start method runs this program again, and \
                         init() is where the new copy takes over. Add `multiproc::init();` as the first line of \
                         main (in test files: `multiproc::test_support!();`)"
                    ),
                ));
            }
        }
        runtime::register_exit_hook();
        let running = runtime::reap_finished();
        let _ = running;
        let info = runtime::with_state(|s| {
            if s.me.daemon {
                return Err(Error::new(
                    ErrorKind::DaemonChild,
                    format!(
                        "{} is a daemon process, and daemon processes may not have children",
                        s.me.name
                    ),
                ));
            }
            s.started += 1;
            let mut identity = s.me.identity.clone();
            identity.push(s.started);
            let default_name = || {
                let parts: Vec<String> = identity.iter().map(u32::to_string).collect();
                format!("Process-{}", parts.join(":"))
            };
            Ok(ChildInfo {
                name: self.name.clone().unwrap_or_else(default_name),
                identity: identity.clone(),
                daemon: self.daemon.unwrap_or(s.me.daemon),
                parent_pid: s.me.pid,
                parent_name: s.me.name.clone(),
                log_level: s.log_level.map(crate::logging::level_to_u8),
                authkey: s.me.authkey,
                start_method: method as u8,
            })
        })?;
        let started = match method {
            StartMethod::Fork => start_fork(self.target, self.args, &info, self.allow_threads)?,
            StartMethod::Spawn | StartMethod::Forkserver => {
                let entry = self.entry.expect("checked above");
                start_exec(method, entry, &self.args, &info)?
            }
        };
        let shared = Arc::new(ChildShared::new(info.name, info.daemon, started)?);
        log::info!(target: "multiproc", "started {} (pid {}) with {method}", shared.name, shared.pid);
        runtime::register(shared.clone());
        Ok(Process {
            shared,
            joined: false,
            _result: PhantomData,
        })
    }
}

/// What a start path hands over: the child's pid, our end of its socket,
/// and what was already read from it.
struct Started {
    pid: i32,
    sock: OwnedFd,
    reader: wire::Reader,
    hello: bool,
}

fn start_fork<F: Target<M>, M>(
    target: F,
    args: F::Args,
    info: &ChildInfo,
    allow_threads: bool,
) -> Result<Started> {
    if !allow_threads {
        let threads = sys::process::thread_count()
            .map_err(|e| Error::io("could not count this process's threads", e))?;
        let threads = threads.saturating_sub(launch::keeper_threads());
        if threads > 1 {
            return Err(Error::new(
                ErrorKind::ForkWithThreads,
                format!(
                    "fork refused: this process has {threads} threads, and a forked child gets a copy of only the \
                     calling one, so a lock another thread holds (the allocator's, stdout's, any Mutex) stays locked \
                     forever in the child. Use the forkserver (default) or spawn start method, start children before \
                     starting threads, or, if the other threads cannot hold such locks, opt in with \
                     `unsafe {{ builder.allow_fork_with_threads() }}`"
                ),
            ));
        }
    }
    let (ours, theirs) =
        sys::socket::stream_pair().map_err(|e| Error::io("could not create a socket pair", e))?;
    flush_stdio();
    let parent = sys::process::getpid();
    match sys::process::fork().map_err(|e| Error::io("fork failed", e))? {
        sys::process::Forked::Child => {
            drop(ours);
            // No HELLO: the parent knows the pid, and this copy of the
            // program is under multiproc's control from the first instruction.
            let io = ChildIo::new(theirs);
            if !sys::process::die_with_parent(parent) {
                sys::process::exit_now(1);
            }
            child::child_main(io, info, move |io| child::run_target(target, args, io))
        }
        sys::process::Forked::Parent(pid) => {
            drop(theirs);
            drop((target, args));
            Ok(Started {
                pid,
                sock: ours,
                reader: wire::Reader::new(child::MAX_FRAME),
                hello: true,
            })
        }
    }
}

fn flush_stdio() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

fn image_id() -> Result<ImageId> {
    ImageId::current().map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("could not identify this program's executable: {e}"),
        )
    })
}

fn start_exec<A: Serialize>(
    method: StartMethod,
    entry: Entry,
    args: &A,
    info: &ChildInfo,
) -> Result<Started> {
    let image = image_id()?;
    let (ours, theirs) =
        sys::socket::stream_pair().map_err(|e| Error::io("could not create a socket pair", e))?;
    // The child is asked for first: the arguments are encoded while the
    // fork server forks it (or the kernel executes it).
    let spawned_pid = match method {
        StartMethod::Spawn => {
            let ppid = sys::process::getpid();
            let pid = launch::on_lasting_thread(move || {
                launch::exec_self(format!("spawn:{ppid}"), theirs, false)
            })
            .and_then(|r| r)
            .map_err(|e| Error::io("could not execute this program again", e))?;
            Some(pid)
        }
        _ => {
            forkserver::request(theirs)?;
            None
        }
    };
    // The user's Serialize may panic: the child asked for must not outlive
    // the panic as a zombie.
    let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        codec::encode(args).and_then(|args| {
            let boot = Boot {
                image,
                entry: EntryRef::new(entry),
                info: info.clone(),
            };
            let boot = postcard::to_allocvec(&boot).map_err(|e| {
                Error::new(ErrorKind::Encode, "could not encode the start-up message")
                    .with_source(e)
            })?;
            Ok((boot, args))
        })
    }));
    let (boot, args) = match encoded {
        Ok(Ok(both)) => both,
        Ok(Err(e)) => {
            abandon(ours, spawned_pid);
            return Err(e);
        }
        Err(panic) => {
            abandon(ours, spawned_pid);
            std::panic::resume_unwind(panic);
        }
    };
    // A child that died early makes these fail with a broken pipe; join()
    // then reports how it died, which says more than the pipe does.
    let _ = wire::send(ours.as_fd(), child::BOOT, &boot, &[])
        .and_then(|()| wire::send(ours.as_fd(), child::ARGS, &args.bytes, &args.borrowed_fds()));
    drop(args);
    let mut reader = wire::Reader::new(child::MAX_FRAME);
    if let Some(pid) = spawned_pid {
        return Ok(Started {
            pid,
            sock: ours,
            reader,
            hello: false,
        });
    }
    // From the fork server, the child's pid comes in its HELLO.
    let frame = reader
        .recv(ours.as_fd(), None)
        .map_err(|e| Error::io("lost the new child during start-up", e))?;
    match frame {
        Some(f) if f.kind == child::HELLO && f.body.len() == 4 => {
            let pid = u32::from_le_bytes(f.body[..4].try_into().expect("4 bytes")) as i32;
            Ok(Started {
                pid,
                sock: ours,
                reader,
                hello: true,
            })
        }
        Some(f) if f.kind == child::ERROR => {
            let report: ErrorReport = postcard::from_bytes(&f.body).unwrap_or(ErrorReport {
                kind: 6,
                message: "the fork server failed".into(),
            });
            Err(Error::new(report.kind(), report.message))
        }
        _ => Err(Error::new(
            ErrorKind::Bootstrap,
            "the fork server's child died before it started",
        )),
    }
}

/// Gets rid of a child that was asked for but will not be told what to run
/// (its arguments could not be encoded): it is killed and reaped, so that no
/// zombie is left.
fn abandon(sock: OwnedFd, spawned_pid: Option<i32>) {
    let _ = sys::socket::shutdown_write(sock.as_fd());
    let pid = spawned_pid.or_else(|| {
        // The child's HELLO says its pid; then it waits for a BOOT that
        // will not come.
        let mut reader = wire::Reader::new(child::MAX_FRAME);
        loop {
            match reader.recv(sock.as_fd(), None) {
                Ok(Some(f)) if f.kind == child::HELLO && f.body.len() == 4 => {
                    break Some(u32::from_le_bytes(f.body[..4].try_into().expect("4 bytes")) as i32);
                }
                Ok(Some(_)) => {}
                _ => break None,
            }
        }
    });
    if let Some(pidfd) = pid.and_then(|pid| sys::process::pidfd(pid).ok()) {
        sys::process::kill_and_reap(pidfd.as_fd());
    }
}

/// What the child reported, first report wins.
enum Outcome {
    Value(wire::Frame),
    Panic(PanicReport),
    Failed(ErrorReport),
    Corrupt(String),
}

struct ChildState {
    /// Our end of the socket; `None` once the handle was dropped or all
    /// was read.
    sock: Option<Arc<OwnedFd>>,
    reader: wire::Reader,
    hello: bool,
    outcome: Option<Outcome>,
    status: Option<ExitStatus>,
}

/// One child, shared between its [`Process`] handle and the list of
/// children that `active_children()` and the exit hook walk.
pub(crate) struct ChildShared {
    pub(crate) name: String,
    pub(crate) pid: i32,
    pub(crate) daemon: bool,
    pidfd: OwnedFd,
    state: Mutex<ChildState>,
}

impl ChildShared {
    fn new(name: String, daemon: bool, started: Started) -> Result<Self> {
        let pidfd = sys::process::pidfd(started.pid)
            .map_err(|e| Error::io("could not open a pidfd for the child", e))?;
        sys::socket::set_nonblocking(started.sock.as_fd(), true)
            .map_err(|e| Error::io("socket setup failed", e))?;
        Ok(Self {
            name,
            pid: started.pid,
            daemon,
            pidfd,
            state: Mutex::new(ChildState {
                sock: Some(Arc::new(started.sock)),
                reader: started.reader,
                hello: started.hello,
                outcome: None,
                status: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ChildState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads whatever the child has sent so far, without blocking.
    fn pump(st: &mut ChildState) {
        let Some(sock) = st.sock.clone() else { return };
        loop {
            loop {
                match st.reader.next_frame() {
                    Ok(Some(frame)) => Self::take_frame(st, frame),
                    Ok(None) => break,
                    Err(e) => {
                        st.outcome.get_or_insert(Outcome::Corrupt(e.to_string()));
                        st.sock = None;
                        return;
                    }
                }
            }
            match st.reader.fill(sock.as_fd()) {
                Ok(wire::Fill::Data) => continue,
                Ok(wire::Fill::WouldBlock) => return,
                Ok(wire::Fill::Eof) | Err(_) => {
                    st.sock = None;
                    return;
                }
            }
        }
    }

    fn take_frame(st: &mut ChildState, frame: wire::Frame) {
        if st.outcome.is_some() {
            return;
        }
        match frame.kind {
            child::HELLO => st.hello = true,
            child::RESULT => st.outcome = Some(Outcome::Value(frame)),
            child::PANIC => {
                st.outcome = Some(match postcard::from_bytes(&frame.body) {
                    Ok(report) => Outcome::Panic(report),
                    Err(e) => Outcome::Corrupt(format!("unreadable panic report: {e}")),
                })
            }
            child::ERROR => {
                st.outcome = Some(match postcard::from_bytes(&frame.body) {
                    Ok(report) => Outcome::Failed(report),
                    Err(e) => Outcome::Corrupt(format!("unreadable error report: {e}")),
                })
            }
            other => st.outcome = Some(Outcome::Corrupt(format!("unexpected frame kind {other}"))),
        }
    }

    /// The exit status if the child has ended (reaping it), reading what it
    /// sent; `None` while it runs.
    pub(crate) fn poll(&self) -> Result<Option<ExitStatus>> {
        let mut st = self.lock();
        if st.status.is_some() {
            return Ok(st.status);
        }
        Self::pump(&mut st);
        let reaped = sys::process::try_reap(self.pidfd.as_fd())
            .map_err(|e| Error::io("waitid failed", e))?;
        if let Some(raw) = reaped {
            let status = ExitStatus::from_raw(raw);
            st.status = Some(status);
            // Everything the child wrote before it exited is in the socket.
            Self::pump(&mut st);
            st.sock = None;
            log::info!(target: "multiproc", "{} (pid {}) {status}", self.name, self.pid);
        }
        Ok(st.status)
    }

    /// Waits until the child ends or `deadline` passes (`Ok(None)`), reading
    /// what it sends meanwhile so that it never blocks on a full socket.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.poll()? {
                return Ok(Some(status));
            }
            // Once the child has reported, what is left is its exit: the
            // socket's end-of-file would only wake us once more.
            let sock = {
                let st = self.lock();
                st.sock.clone().filter(|_| st.outcome.is_none())
            };
            let mut fds: Vec<BorrowedFd<'_>> = vec![self.pidfd.as_fd()];
            if let Some(sock) = &sock {
                fds.push(sock.as_fd());
            }
            let ready = sys::socket::wait_readable(&fds, deadline)
                .map_err(|e| Error::io("poll failed", e))?;
            if !ready.iter().any(|r| *r) && deadline.is_some_and(|d| Instant::now() >= d) {
                return self.poll();
            }
        }
    }

    pub(crate) fn signal(&self, signal: i32) -> Result<()> {
        sys::process::send_signal(self.pidfd.as_fd(), signal).map_err(|e| {
            Error::io(
                format!("could not signal {} (pid {})", self.name, self.pid),
                e,
            )
        })
    }

    fn who(&self) -> String {
        format!("process '{}' (pid {})", self.name, self.pid)
    }

    /// The value the child returned, or why there is none. Call after the
    /// child ended.
    fn take_result<R: DeserializeOwned>(&self) -> Result<R> {
        let mut st = self.lock();
        let status = st.status;
        match st.outcome.take() {
            Some(Outcome::Value(frame)) => codec::decode(&frame.body, frame.fds).map_err(|e| {
                Error::new(
                    ErrorKind::Decode,
                    format!("the value {} returned could not be decoded", self.who()),
                )
                .with_source(e)
                .with_status(status)
            }),
            Some(Outcome::Panic(report)) => {
                let at = report
                    .location
                    .as_deref()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                Err(Error::new(
                    ErrorKind::Panicked,
                    format!("{} panicked{at}: {}", self.who(), report.message),
                )
                .with_status(status)
                .with_panic(report))
            }
            Some(Outcome::Failed(report)) => Err(Error::new(
                report.kind(),
                format!("{}: {}", self.who(), report.message),
            )
            .with_status(status)),
            Some(Outcome::Corrupt(why)) => Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "{} sent bytes that do not follow the protocol: {why}",
                    self.who()
                ),
            )
            .with_status(status)),
            None => {
                let hint = if st.hello {
                    String::new()
                } else {
                    " before multiproc took over (is multiproc::init() the first line of main?)"
                        .to_string()
                };
                match status {
                    Some(ExitStatus::Signaled(signal)) => Err(Error::new(
                        ErrorKind::Killed,
                        format!("{} was killed by {signal}{hint}", self.who()),
                    )
                    .with_status(status)),
                    Some(ExitStatus::Exited(code)) => Err(Error::new(
                        ErrorKind::Exited,
                        format!(
                            "{} exited with code {code} without returning a value{hint}",
                            self.who()
                        ),
                    )
                    .with_status(status)),
                    None => Err(Error::new(
                        ErrorKind::StillRunning,
                        format!("{} is still running", self.who()),
                    )),
                }
            }
        }
    }
}

/// A started child process. `R` is what its function returns.
///
/// Every method takes `&self` except [`join`](Process::join), so a handle
/// can be shared between threads (one waits, another terminates).
///
/// Dropping the handle does not stop the process: as in Python, it keeps
/// running, is reaped by the next [`active_children`] or process start,
/// and is joined when this program exits (or terminated, if a daemon). Its
/// return value is discarded.
#[must_use = "a process that is never joined runs detached until this program exits"]
pub struct Process<R> {
    shared: Arc<ChildShared>,
    joined: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.shared.name)
            .field("pid", &self.shared.pid)
            .field("daemon", &self.shared.daemon)
            .field("status", &self.shared.lock().status)
            .finish()
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// The process's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.shared.pid as u32
    }

    /// Whether the process is a daemon.
    pub fn daemon(&self) -> bool {
        self.shared.daemon
    }

    /// Whether the process is still running.
    pub fn is_alive(&self) -> bool {
        matches!(self.shared.poll(), Ok(None))
    }

    /// How the process ended, or `None` while it runs (Python's `exitcode`).
    /// Never blocks.
    pub fn exitcode(&self) -> Option<ExitStatus> {
        self.shared.poll().ok().flatten()
    }

    /// Waits for the process to end and returns the value its function
    /// returned.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Panicked`]: the function panicked; the error holds the
    ///   message and location.
    /// - [`ErrorKind::Killed`]: a signal killed it; the error names it.
    /// - [`ErrorKind::Exited`]: it exited without returning (for example
    ///   through `std::process::exit`); the error holds the code.
    /// - [`ErrorKind::Decode`]: the value could not be decoded as `R`.
    /// - [`ErrorKind::Bootstrap`]: the child could not run the function.
    /// - [`ErrorKind::Io`]: waiting failed.
    pub fn join(mut self) -> Result<R> {
        self.shared.wait(None)?;
        self.joined = true;
        runtime::unregister(&self.shared);
        self.shared.take_result()
    }

    /// Waits up to `timeout` for the process to end: Python's
    /// `join(timeout)`. Returns how it ended, or `None` if it still runs.
    /// The return value stays inside until [`join`](Process::join).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if waiting failed.
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        self.shared.wait(Some(Instant::now() + timeout))
    }

    /// Asks the process to end with SIGTERM. A process that has already
    /// ended is not an error.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the signal could not be sent.
    pub fn terminate(&self) -> Result<()> {
        self.send_signal(Signal::TERM)
    }

    /// Kills the process with SIGKILL. A process that has already ended is
    /// not an error.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the signal could not be sent.
    pub fn kill(&self) -> Result<()> {
        self.send_signal(Signal::KILL)
    }

    /// Sends SIGINT, as Ctrl-C would. A process that has already ended is
    /// not an error.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the signal could not be sent.
    pub fn interrupt(&self) -> Result<()> {
        self.send_signal(Signal::INT)
    }

    /// Sends any signal. Signals go through a pidfd, so they can never reach
    /// another process that reused the pid.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the signal could not be sent.
    pub fn send_signal(&self, signal: Signal) -> Result<()> {
        log::debug!(target: "multiproc", "sending {signal} to {} (pid {})", self.shared.name, self.shared.pid);
        self.shared.signal(signal.0)
    }

    /// A descriptor that becomes readable when the process ends (a pidfd):
    /// wait on it with `poll`, epoll or an async reactor, together with
    /// other descriptors.
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.shared.pidfd.as_fd()
    }

    /// Releases the handle of a process that has ended.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::StillRunning`] if the process is still running; it then
    /// goes on detached, as if the handle were dropped.
    pub fn close(self) -> Result<()> {
        match self.shared.poll()? {
            Some(_) => Ok(()),
            None => Err(Error::new(
                ErrorKind::StillRunning,
                format!(
                    "{} is still running and cannot be closed",
                    self.shared.who()
                ),
            )),
        }
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        if !self.joined {
            // Nobody will read the result: let the child's write fail
            // instead of blocking, so it can always exit.
            self.shared.lock().sock = None;
        }
    }
}
