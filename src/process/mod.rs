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

pub(crate) mod status;

use std::ffi::OsString;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::config::{ChildConfig, EnvOp, Setup};
use crate::runtime::handle::ChildShared;
use crate::runtime::method::StartMethod;
use crate::runtime::protocol::Entry;
use crate::runtime::zygote::Zygote;
use crate::runtime::{self, start};
use crate::sys;
use crate::target::Target;
use crate::task::Task;

pub use self::status::{ExitStatus, Signal};
pub use crate::runtime::config::{Resource, Stdio};

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
    allow_children: bool,
    method: Option<StartMethod>,
    entry: Option<Entry>,
    /// A new program's arguments, from the target and `args`.
    encode: fn(&F, &F::Args) -> Result<codec::Encoded>,
    travels: bool,
    allow_threads: bool,
    zygote: Option<Arc<Zygote>>,
    setup: Setup,
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
    /// [`ErrorKind::CapturingClosure`]; give it its values with
    /// [`partial`](crate::partial) instead (they travel with the
    /// arguments, under every start method), or use [`Process::fork`].
    ///
    /// ```
    /// # multiproc::init();
    /// use multiproc::{Process, partial};
    /// let greeting = String::from("hello");
    /// let child = Process::new(partial(|g: &String, n: u32| format!("{g} {n}"), greeting), 7)
    ///     .start_method(multiproc::StartMethod::Spawn)
    ///     .start()?;
    /// assert_eq!(child.join()?, "hello 7");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[allow(clippy::new_ret_no_self)] // like Command::new, it returns the builder
    pub fn new<F, M>(target: F, args: F::Args) -> ProcessBuilder<F, M>
    where
        F: Task<M>,
    {
        ProcessBuilder {
            target,
            args,
            name: None,
            daemon: None,
            allow_children: false,
            method: None,
            entry: Some(F::__entry()),
            encode: F::__encode,
            travels: F::__travels(),
            allow_threads: false,
            zygote: None,
            setup: Setup::default(),
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
            allow_children: false,
            method: Some(StartMethod::Fork),
            entry: None,
            encode: |_, args| codec::encode(args),
            travels: false,
            allow_threads: false,
            zygote: None,
            setup: Setup::default(),
            _marker: PhantomData,
        }
    }
}

impl<F: Target<M>, M> ProcessBuilder<F, M> {
    /// Names the process (default `Process-N`, or `Process-1:N` for the
    /// children of `Process-1`, as in Python).
    ///
    /// The child shows the name in `ps` and `top`: as its command name
    /// (`comm`, the first 15 bytes) and in its argv title, `app: name`
    /// (written over the child's argument strings, so `std::env::args()`
    /// in the child returns the title). Pool workers show as
    /// `PoolWorker-N`, the fork server as `fork-server`. Setting them is
    /// best effort and never fails the start.
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

    /// Lets a daemon process start children of its own (default: it may
    /// not, as in Python: [`ErrorKind::DaemonChild`]). Its children are
    /// daemons too unless made otherwise; they are terminated when it
    /// leaves, and killed by the kernel if it dies (they have its death as
    /// their parent-death signal), so a daemon's tree never outlives it.
    /// No effect on a process that is not a daemon.
    pub fn allow_children(mut self, allow: bool) -> Self {
        self.allow_children = allow;
        self
    }

    /// Chooses how the process starts (default:
    /// [`get_start_method`](crate::get_start_method)).
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

    /// Sets `key` to `value` in the child's environment.
    ///
    /// Environment changes, like the working directory, the streams, the
    /// limits and the affinity below, are made in the child before its
    /// target runs, in the order given, under every start method (under
    /// spawn, after `multiproc::init()`: code that runs before `init()`
    /// sees the parent's environment). The parent's own environment is
    /// not touched. A change the child cannot make fails the child with
    /// [`ErrorKind::ChildSetup`](crate::ErrorKind::ChildSetup), returned by
    /// [`join`](Process::join), and the target does not run.
    ///
    /// A name that is empty or holds `=` or NUL, or a value with NUL,
    /// fails [`start`](ProcessBuilder::start) with
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument).
    ///
    /// ```
    /// # multiproc::init();
    /// use multiproc::{Process, Resource, Stdio};
    ///
    /// fn report() -> (String, String) {
    ///     println!("working");
    ///     let dir = std::env::current_dir().unwrap().display().to_string();
    ///     (std::env::var("MODE").unwrap_or_default(), dir)
    /// }
    ///
    /// let p = Process::new(report, ())
    ///     .env("MODE", "batch")
    ///     .current_dir("/")
    ///     .stdout(Stdio::capture())
    ///     .rlimit(Resource::Core, 0, 0) // no core dumps
    ///     .start()?;
    /// p.join_timeout(std::time::Duration::from_secs(60))?;
    /// assert_eq!(p.captured_stdout()?, b"working\n");
    /// assert_eq!(p.join()?, ("batch".to_string(), "/".to_string()));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.setup
            .config
            .env
            .push(EnvOp::Set(key.into(), value.into()));
        self
    }

    /// Removes `key` from the child's environment (see
    /// [`env`](ProcessBuilder::env)).
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.setup.config.env.push(EnvOp::Remove(key.into()));
        self
    }

    /// Clears the child's environment: only what [`env`](ProcessBuilder::env)
    /// sets after this call is there.
    pub fn env_clear(mut self) -> Self {
        self.setup.config.env.push(EnvOp::Clear);
        self
    }

    /// Runs the child in `dir` (a relative path is taken from this
    /// process's working directory when `start` is called, whatever the
    /// start method). A directory that does not exist fails the child with
    /// [`ErrorKind::ChildSetup`](crate::ErrorKind::ChildSetup).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.setup.config.cwd = Some(dir.into());
        self
    }

    /// Where the child's standard output goes (default: where this
    /// process's goes; under forkserver, where the fork server's goes,
    /// which is this process's when the server started). A file is
    /// created by [`start`](ProcessBuilder::start), whose error names it
    /// if it cannot be.
    pub fn stdout(mut self, to: Stdio) -> Self {
        self.setup.stdout = Some(to);
        self
    }

    /// Where the child's standard error goes; as
    /// [`stdout`](ProcessBuilder::stdout).
    pub fn stderr(mut self, to: Stdio) -> Self {
        self.setup.stderr = Some(to);
        self
    }

    /// Limits `resource` in the child to `soft` (what it may use) and
    /// `hard` (how far it may raise `soft`); `u64::MAX` is unlimited
    /// (`setrlimit(2)`). A soft limit above the hard one fails
    /// [`start`](ProcessBuilder::start) with
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument); a
    /// limit the child may not set (a hard limit above its current one,
    /// without privilege) fails the child with
    /// [`ErrorKind::ChildSetup`](crate::ErrorKind::ChildSetup).
    pub fn rlimit(mut self, resource: Resource, soft: u64, hard: u64) -> Self {
        self.setup.config.rlimits.push((resource, soft, hard));
        self
    }

    /// Lets the child run only on the CPUs numbered in `cpus`
    /// (`sched_setaffinity(2)`; mpire's `cpu_ids`). An empty set, or a
    /// number the kernel's set cannot hold, fails
    /// [`start`](ProcessBuilder::start) with
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument); a
    /// set with no CPU the child may use fails the child with
    /// [`ErrorKind::ChildSetup`](crate::ErrorKind::ChildSetup).
    pub fn cpu_affinity(mut self, cpus: impl IntoIterator<Item = usize>) -> Self {
        self.setup.config.cpus = Some(cpus.into_iter().collect());
        self
    }

    /// Replaces what the child applies before its target (a pool's
    /// worker options).
    pub(crate) fn configured(mut self, config: ChildConfig) -> Self {
        self.setup.config = config;
        self
    }

    /// Under the fork start method, has `zygote` fork the child (a pool's
    /// replacement workers: see `runtime::zygote`).
    pub(crate) fn forked_by(mut self, zygote: Arc<Zygote>) -> Self {
        self.zygote = Some(zygote);
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
    /// - [`ErrorKind::InvalidArgument`]: a resource limit or CPU set that
    ///   cannot be (see [`rlimit`](ProcessBuilder::rlimit),
    ///   [`cpu_affinity`](ProcessBuilder::cpu_affinity)); [`ErrorKind::Io`]
    ///   naming the path: a file for [`stdout`](ProcessBuilder::stdout) or
    ///   [`stderr`](ProcessBuilder::stderr) that cannot be created.
    /// - [`ErrorKind::Io`], [`ErrorKind::Bootstrap`]: the OS refused, or the
    ///   fork server could not start or fork.
    pub fn start(mut self) -> Result<Process<F::Output>> {
        let captured = self.setup.make_captures()?;
        let shared = start::start(
            self.target,
            self.args,
            self.encode,
            start::Options {
                name: self.name,
                daemon: self.daemon,
                allow_children: self.allow_children,
                method: self.method,
                entry: self.entry,
                travels: self.travels,
                allow_threads: self.allow_threads,
                zygote: self.zygote,
                setup: self.setup,
            },
        )?;
        Ok(Process {
            shared,
            joined: false,
            captured,
            _result: PhantomData,
        })
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
    /// The parent's copies of the in-memory files of a captured stdout
    /// and stderr.
    captured: [Option<OwnedFd>; 2],
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.shared.name)
            .field("pid", &self.shared.pid)
            .field("daemon", &self.shared.daemon)
            .field("status", &self.shared.known_status())
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

    /// Awaits the end of the process and returns the value its function
    /// returned: the `async` form of [`join`](Process::join), for any
    /// runtime (feature `async`). The wait (on the process's pidfd) runs
    /// on a pool thread of the [`blocking`](https://docs.rs/blocking)
    /// crate, 50 ms at a time.
    ///
    /// **Cancel-safe** in the sense that dropping the future is dropping
    /// the handle (see [`Process`]: the child goes on and is reaped at
    /// exit); its pool thread is free again within 50 ms.
    ///
    /// # Errors
    ///
    /// As [`join`](Process::join).
    #[cfg(feature = "async")]
    pub async fn join_async(self) -> Result<R> {
        while self.exitcode().is_none() {
            let shared = Arc::clone(&self.shared);
            crate::aio::wait_slice(move |deadline| shared.wait(Some(deadline))).await?;
        }
        self.join()
    }

    /// Waits at most `timeout` for the process to end (Python's
    /// `join(timeout)`) and returns how it ended. The return value stays
    /// inside until [`join`](Process::join). `Duration::MAX` waits as long
    /// as it takes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the process is still running (the handle
    /// stays usable: join again, terminate, kill); [`ErrorKind::Io`] if
    /// waiting failed.
    pub fn join_timeout(&self, timeout: Duration) -> Result<ExitStatus> {
        self.wait_until(crate::time::deadline_after(timeout))
    }

    /// Like [`join_timeout`](Process::join_timeout), waiting until
    /// `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`join_timeout`](Process::join_timeout).
    pub fn join_deadline(&self, deadline: Instant) -> Result<ExitStatus> {
        self.wait_until(Some(deadline))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<ExitStatus> {
        match self.shared.wait(deadline)? {
            Some(status) => Ok(status),
            None => Err(Error::new(
                ErrorKind::Timeout,
                format!("{} is still running", self.shared.who()),
            )),
        }
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
        self.shared.signal(signal.as_raw())
    }

    /// A descriptor that becomes readable when the process ends (a pidfd):
    /// wait on it with `poll`, epoll or an async reactor, together with
    /// other descriptors.
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.shared.sentinel()
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

impl<R> Process<R> {
    /// What the child has written so far to its standard output, when it
    /// was captured ([`Stdio::capture`]); all of it once the child has
    /// ended. Can be called any number of times, while the child runs or
    /// after [`join_timeout`](Process::join_timeout).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] when the child's standard output was
    /// not captured; [`ErrorKind::Io`] if the in-memory file cannot be read.
    pub fn captured_stdout(&self) -> Result<Vec<u8>> {
        self.captured(0, "stdout")
    }

    /// As [`captured_stdout`](Process::captured_stdout), for standard error.
    ///
    /// # Errors
    ///
    /// As [`captured_stdout`](Process::captured_stdout).
    pub fn captured_stderr(&self) -> Result<Vec<u8>> {
        self.captured(1, "stderr")
    }

    /// The [`ErrorKind::ChildSetup`] error the child ended with, if it
    /// could not be set up (call once it has ended; takes its outcome).
    pub(crate) fn setup_failure(&self) -> Option<Error> {
        match self.shared.take_result::<()>() {
            Err(e) if e.kind() == ErrorKind::ChildSetup => Some(e),
            _ => None,
        }
    }

    fn captured(&self, i: usize, name: &str) -> Result<Vec<u8>> {
        let fd = self.captured[i].as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "{}'s {name} was not captured (ProcessBuilder::{name}(Stdio::capture()))",
                    self.shared.name
                ),
            )
        })?;
        sys::setup::read_all_at(fd.as_fd()).map_err(|e| {
            Error::io(
                format!("could not read {}'s captured {name}", self.shared.name),
                e,
            )
        })
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        if !self.joined {
            self.shared.discard_result();
        }
    }
}
