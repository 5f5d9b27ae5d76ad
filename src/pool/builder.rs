//! [`PoolBuilder`]: the pool's options, and starting the engine with them.

use std::fmt;
use std::time::Duration;

use crate::codec;
use crate::context::StartMethod;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::config::{EnvOp, Resource, Stdio, WorkerSetup, WorkerStream};
use crate::target::Target;

use super::api::Pool;
use super::core::{Config, Core, InitCall};
use super::progress::OnProgress;
use super::shared::{Shared, task_fn};
use super::worker;
use crate::task::assert_no_captures;

/// Encoded arguments and results longer than this travel as shared memory
/// ([`PoolBuilder::shared_memory_above`]).
pub(crate) const DEFAULT_SHM_ABOVE: usize = 4 << 20;

/// Options for a [`Pool`]: made by [`Pool::builder`], ended by
/// [`build`](PoolBuilder::build).
#[must_use = "a PoolBuilder does nothing until build() is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    method: Option<StartMethod>,
    pub(super) init: Option<Result<InitCall>>,
    max_tasks: Option<u64>,
    timeout: Option<Duration>,
    retries: u32,
    retry_panics: bool,
    max_memory: Option<u64>,
    progress: bool,
    nested: bool,
    insights: bool,
    shm_above: usize,
    on_progress: Option<OnProgress>,
    /// The workers' stdout and stderr, opened in `build`.
    streams: [Option<Stdio>; 2],
    setup: WorkerSetup,
    /// The broker's URL and options of a cluster pool.
    #[cfg(feature = "cluster")]
    cluster: Option<(String, crate::cluster::ClusterOptions)>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("method", &self.method)
            .field("max_tasks", &self.max_tasks)
            .field("timeout", &self.timeout)
            .field("max_memory", &self.max_memory)
            .finish()
    }
}

impl PoolBuilder {
    /// How many worker processes (default [`cpu_count()`](crate::cpu_count),
    /// which respects the affinity mask and cgroup quota).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Times each worker's waits, tasks and encoding (mpire's
    /// `enable_insights`), for [`Pool::insights`] and the progress bar's
    /// last line. Costs two clock reads per task and per read of input
    /// (about 20 ns per task here: `multiproc-bench pool_map_state`), so it
    /// is off by default; start-up, initializer and task counts are known
    /// either way.
    ///
    /// ```
    /// # multiproc::init();
    /// use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::builder().processes(2).insights(true).build()?;
    /// pool.map(square, 0..1000)?;
    /// let insights = pool.insights();
    /// assert_eq!(insights.total().tasks, 1000);
    /// println!("{insights}");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn insights(mut self, on: bool) -> Self {
        self.insights = on;
        self
    }

    /// Task arguments and results whose encoding is longer than `bytes`
    /// travel as shared memory instead of through the worker's socket
    /// (default 4 MiB, chosen by measurement: `multiproc-bench
    /// pool_argsize pool_resultsize` with `MULTIPROC_BENCH_SHM_ABOVE`; on
    /// a 2-core VM the socket is as fast at 2 MiB and faster below, shared
    /// memory 1.1–1.6× faster at 16 MiB; `usize::MAX` turns it off). The
    /// sender copies the bytes once into a sealed segment and sends its
    /// descriptor; the receiver maps it and decodes from it; the segment
    /// is gone once both are done with it (the pool keeps it until the
    /// item is answered, to send again after a death). Transparent for
    /// every task and start method. Where no shared memory can be had (a
    /// full `/dev/shm`, the descriptor limit), the bytes take the socket.
    ///
    /// To avoid even that copy, put the data in a
    /// [`SharedSlice`](crate::shared::SharedSlice) or
    /// [`Pool::put`](crate::Pool::put) it.
    pub fn shared_memory_above(mut self, bytes: usize) -> Self {
        self.shm_above = bytes;
        self
    }

    /// Calls `f` as `map` and `imap` calls advance (beside the progress
    /// bar, which it does not need): with the items delivered so far, the
    /// total when known and the time since the call began, at most every
    /// 100 ms and once when the call ends (`finished`). It runs in the
    /// thread that consumes the results; a panic in it is that thread's.
    pub fn on_progress(
        mut self,
        f: impl Fn(&super::ProgressUpdate) + Send + Sync + 'static,
    ) -> Self {
        self.on_progress = Some(std::sync::Arc::new(f));
        self
    }

    /// Lets the workers start processes and pools of their own (default:
    /// they may not, as in Python, where "daemonic processes are not
    /// allowed to have children": [`ErrorKind::DaemonChild`]).
    ///
    /// A worker's children are daemons: a pool or process a task starts
    /// and drops is ended with it; one left running is terminated when the
    /// worker leaves (`close` + `join`, `maxtasksperchild`), and killed by
    /// the kernel if the worker dies or is terminated (its death is their
    /// parent-death signal), so nothing a worker started outlives it. They
    /// may not have children of their own unless they ask the same way.
    ///
    /// ```
    /// # multiproc::init();
    /// use multiproc::Pool;
    /// fn double(x: u64) -> u64 { x * 2 }
    /// fn inner_sum(n: u64) -> u64 {
    ///     let inner = Pool::new(2).unwrap();
    ///     inner.map(double, 0..n).unwrap().iter().sum()
    /// }
    /// let pool = Pool::builder().processes(2).nested(true).build()?;
    /// assert_eq!(pool.map(inner_sum, [3, 4])?, [6, 12]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn nested(mut self, yes: bool) -> Self {
        self.nested = yes;
        self
    }

    /// How the workers start (default: [`get_start_method`](crate::get_start_method)).
    /// With fork, the pool can replace a worker only while this process
    /// has no other threads.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Runs `f(args)` in every worker when it starts (Python's `initializer`
    /// and `initargs`). If it panics, the pool stops: every task fails with
    /// the initializer's panic message, instead of Python's endless restarts.
    ///
    /// The arguments may hold what carries descriptors — a
    /// [`Queue`](crate::Queue), [`Lock`](crate::sync::Lock) and the other
    /// primitives, [`Value`](crate::shared::Value)/[`Array`](crate::shared::Array),
    /// [`SharedMemory`](crate::shared::SharedMemory), a pipe end
    /// ([`Connection`](crate::Connection)) — under every start method:
    /// each worker (replacements too) gets its own handles on the same
    /// objects, as Python's `Pool(initializer=f, initargs=(queue,))`. The
    /// initializer usually keeps them in a `static` for the tasks:
    ///
    /// ```no_run
    /// use std::sync::OnceLock;
    /// use multiproc::{Pool, Queue};
    ///
    /// static RESULTS: OnceLock<Queue<u64>> = OnceLock::new();
    ///
    /// fn keep(q: Queue<u64>) {
    ///     let _ = RESULTS.set(q);
    /// }
    ///
    /// fn work(x: u64) {
    ///     RESULTS.get().expect("set by the initializer").put(x * x).unwrap();
    /// }
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// multiproc::init();
    /// let q = Queue::new()?;
    /// let pool = Pool::builder().processes(2).initializer(keep, q.clone()).build()?;
    /// pool.map(work, 0..10u64)?;
    /// let mut squares: Vec<u64> = (0..10).map(|_| q.get()).collect::<Result<_, _>>()?;
    /// squares.sort();
    /// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
    /// # Ok(()) }
    /// ```
    ///
    /// Task arguments may hold them too (see the [module
    /// docs](crate::pool)); results cannot (they fail with
    /// [`ErrorKind::Encode`]).
    ///
    /// # Errors
    ///
    /// [`build`](PoolBuilder::build) fails with [`ErrorKind::Encode`] if
    /// the arguments cannot be encoded (or hold more than 253
    /// descriptors), [`ErrorKind::Io`] if a descriptor cannot be
    /// duplicated (at `RLIMIT_NOFILE`).
    pub fn initializer<F, M>(mut self, _f: F, args: F::Args) -> Self
    where
        F: Target<M> + Copy,
    {
        assert_no_captures::<F>();
        self.init = Some(codec::encode(&args).map(|encoded| InitCall {
            task: worker::TaskRef::new(task_fn::<F, M>()),
            bytes: encoded.bytes,
            fds: std::sync::Arc::new(encoded.fds),
        }));
        self
    }

    /// Replaces each worker after it has run `n` tasks (Python's
    /// `maxtasksperchild`; as there, a chunk of a `map` counts as one task).
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.max_tasks = Some(n.max(1));
        self
    }

    /// A time limit for every task: a task still running after `limit` is
    /// stopped by killing its worker, fails with [`ErrorKind::TimeLimit`], and
    /// the worker is replaced. The limit is per item, also inside chunks.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Runs a task again, up to `n` more times, when its worker died while
    /// running it ([`ErrorKind::WorkerLost`]) or it ran past the time limit
    /// ([`ErrorKind::TimeLimit`]); a task's own panic is retried only
    /// with [`retry_panics`](PoolBuilder::retry_panics). The final error
    /// names the attempts made. Default 0; a call can set its own
    /// ([`Pool::retries`]).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Whether [`retries`](PoolBuilder::retries) also cover a task's own
    /// panic ([`ErrorKind::Panicked`]). Default false: a panic is usually
    /// a bug that fails again. A call can set its own
    /// ([`Chunked::retry_panics`](crate::pool::Chunked::retry_panics)).
    pub fn retry_panics(mut self, yes: bool) -> Self {
        self.retry_panics = yes;
        self
    }

    /// Recycles a worker, between tasks, once its resident memory passes
    /// `bytes` (checked at most every 5 ms). The tasks it held are given to
    /// other workers; none fails.
    pub fn max_memory_per_worker(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// Sets `key` to `value` in every worker's environment, before the
    /// initializer runs (as [`ProcessBuilder::env`](crate::ProcessBuilder::env)).
    /// A worker that cannot apply its options (this one,
    /// [`worker_current_dir`](PoolBuilder::worker_current_dir),
    /// [`worker_rlimit`](PoolBuilder::worker_rlimit),
    /// [`cpu_ids`](PoolBuilder::cpu_ids)) would fail again in every
    /// replacement, so the pool stops, as for a failing initializer: every
    /// task not yet answered, and every later call, fails with
    /// [`ErrorKind::ChildSetup`] naming the step and the OS's reason.
    pub fn worker_env(
        mut self,
        key: impl Into<std::ffi::OsString>,
        value: impl Into<std::ffi::OsString>,
    ) -> Self {
        self.setup.env.push(EnvOp::Set(key.into(), value.into()));
        self
    }

    /// Runs every worker in `dir` (as
    /// [`ProcessBuilder::current_dir`](crate::ProcessBuilder::current_dir));
    /// a directory that does not exist stops the pool with
    /// [`ErrorKind::ChildSetup`] (see [`worker_env`](PoolBuilder::worker_env)).
    pub fn worker_current_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.setup.cwd = Some(dir.into());
        self
    }

    /// Limits `resource` in every worker (as
    /// [`ProcessBuilder::rlimit`](crate::ProcessBuilder::rlimit)): a cap
    /// on a worker's address space (`Resource::AddressSpace`) makes a task
    /// that allocates too much fail alone instead of taking the machine.
    pub fn worker_rlimit(mut self, resource: Resource, soft: u64, hard: u64) -> Self {
        self.setup.rlimits.push((resource, soft, hard));
        self
    }

    /// Pins the workers to CPUs (mpire's `cpu_ids`): one set, which every
    /// worker shares, or one set per worker (`processes` of them; worker
    /// slot *i* gets set *i*, and its replacements after it). Each set is
    /// applied as [`ProcessBuilder::cpu_affinity`](crate::ProcessBuilder::cpu_affinity).
    /// [`build`](PoolBuilder::build) fails with
    /// [`ErrorKind::InvalidArgument`] for another number of sets, or for a
    /// set the kernel cannot hold.
    pub fn cpu_ids<S: IntoIterator<Item = usize>>(
        mut self,
        sets: impl IntoIterator<Item = S>,
    ) -> Self {
        self.setup.cpu_ids = sets.into_iter().map(|s| s.into_iter().collect()).collect();
        self
    }

    /// Where every worker's standard output goes (as
    /// [`ProcessBuilder::stdout`](crate::ProcessBuilder::stdout)): a file
    /// or descriptor is opened once, at [`build`](PoolBuilder::build), and
    /// shared by all workers and their replacements (one offset, so none
    /// overwrites another's lines and a replacement truncates nothing).
    ///
    /// # Errors
    ///
    /// [`build`](PoolBuilder::build) fails with [`ErrorKind::Io`] naming a
    /// file that cannot be created, and with
    /// [`ErrorKind::InvalidArgument`] for [`Stdio::Capture`] (capture is
    /// per process: give a file).
    pub fn worker_stdout(mut self, to: Stdio) -> Self {
        self.streams[0] = Some(to);
        self
    }

    /// Where every worker's standard error goes; as
    /// [`worker_stdout`](PoolBuilder::worker_stdout).
    pub fn worker_stderr(mut self, to: Stdio) -> Self {
        self.streams[1] = Some(to);
        self
    }

    /// Draws a progress bar (count, rate, ETA) on stderr for `map` and
    /// `imap` calls that last more than half a second, when stderr is a
    /// terminal. Needs the `progress` feature (on by default); without it
    /// this does nothing.
    pub fn progress_bar(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Runs the pool's work on the machines of a cluster instead of local
    /// workers: agents of this same program ([`crate::cluster::Worker`])
    /// take it from the Redis (or Valkey) broker at `url`. Every method of
    /// the pool works as on one machine; `processes` (default: what the
    /// live agents offer) sizes the chunks. Needs the `cluster` feature.
    ///
    /// Tasks run at least once: the work of a lost agent runs again
    /// elsewhere, so **a task's side effects may happen twice**; each
    /// result reaches the caller once. An initializer, `maxtasksperchild`,
    /// a memory cap, a start method and worker streams are not carried to
    /// the agents: `build` refuses them with [`ErrorKind::InvalidArgument`]
    /// (set them on the agents' side); the other worker options
    /// (`worker_env` and its neighbours) are not carried either. `build`
    /// fails with [`ErrorKind::Timeout`] when no agent of this build shows
    /// up within [`ClusterOptions::agent_wait`](crate::cluster::ClusterOptions::agent_wait),
    /// and with [`ErrorKind::Io`] when the broker cannot be reached.
    /// Sealed shared memory crosses machines as a blob named by its
    /// SHA-256, stored once and fetched once per agent: an argument over
    /// [`shared_memory_above`](Self::shared_memory_above), a
    /// [`Frozen`](crate::shared::Frozen) from [`Pool::put`](crate::Pool::put),
    /// a [`SharedSlice`](crate::shared::SharedSlice). Other descriptors (a
    /// `Queue`, lock, pipe end, `Value`) cannot: every item of the chunk
    /// holding one fails with [`ErrorKind::Encode`] (use `chunksize(1)` to
    /// confine it to that item).
    ///
    /// ```no_run
    /// # fn square(x: u64) -> u64 { x * x }
    /// # fn main() -> multiproc::Result<()> {
    /// use multiproc::Pool;
    /// let pool = Pool::builder().cluster("redis://head:6379/").build()?;
    /// let squares = pool.map(square, 0..1_000u64)?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cluster")]
    pub fn cluster(self, url: impl Into<String>) -> Self {
        self.cluster_with(url, crate::cluster::ClusterOptions::default())
    }

    /// [`cluster`](PoolBuilder::cluster) with options: how long to wait
    /// for an agent or a lost broker, how many lost agents a chunk
    /// survives, how long the caller's keys outlive it.
    #[cfg(feature = "cluster")]
    pub fn cluster_with(
        mut self,
        url: impl Into<String>,
        options: crate::cluster::ClusterOptions,
    ) -> Self {
        self.cluster = Some((url.into(), options));
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::InvalidArgument`]: 0 processes; [`cpu_ids`](PoolBuilder::cpu_ids)
    ///   with neither 1 nor `processes` sets, or a set that cannot be;
    ///   a [`worker_rlimit`](PoolBuilder::worker_rlimit) whose soft limit
    ///   is above its hard one.
    /// - [`ErrorKind::Encode`]: an initializer's arguments that cannot
    ///   travel (an initializer that captures variables does not build).
    /// - Whatever [`ProcessBuilder::start`](crate::ProcessBuilder::start)
    ///   fails with (for example [`ErrorKind::NotInitialized`] without
    ///   `multiproc::init()`).
    pub fn build(self) -> Result<Pool> {
        #[cfg(feature = "cluster")]
        if self.cluster.is_some() {
            return self.build_cluster();
        }
        let config = self.into_config()?;
        let processes = config.processes;
        let core = Core::new(config)?;
        Ok(Pool {
            shared: Shared::new(core)?,
            processes,
        })
    }
}

impl PoolBuilder {
    /// The engine's settings, checked, with the workers' streams opened:
    /// what `build` starts a local engine with (and a cluster agent its
    /// local pool).
    ///
    /// # Errors
    ///
    /// As [`build`](PoolBuilder::build), before any worker starts.
    pub(crate) fn into_config(self) -> Result<Config> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a pool needs at least one process",
            ));
        }
        let n_sets = self.setup.cpu_ids.len();
        if n_sets > 1 && n_sets != processes {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "cpu_ids has {n_sets} CPU sets for {processes} workers: give one set for all, or one per worker"
                ),
            ));
        }
        let init = self.init.transpose()?;
        let mut setup = self.setup;
        let [out, err] = self.streams;
        for (i, (s, name)) in [(out, "stdout"), (err, "stderr")].into_iter().enumerate() {
            if let Some(s) = s {
                setup.streams[i] = WorkerStream::open(s, name)?;
            }
        }
        Ok(Config {
            processes,
            method: self.method,
            init,
            max_tasks: self.max_tasks,
            timeout: self.timeout,
            retries: self.retries,
            retry_panics: self.retry_panics,
            max_memory: self.max_memory,
            progress: self.progress,
            nested: self.nested,
            insights: self.insights,
            shm_above: self.shm_above,
            on_progress: self.on_progress,
            setup,
        })
    }

    /// `build` for a cluster pool: the core with the broker link as its
    /// remote.
    #[cfg(feature = "cluster")]
    fn build_cluster(mut self) -> Result<Pool> {
        let (url, options) = self.cluster.take().expect("a cluster pool");
        let unsupported = [
            (self.init.is_some(), "an initializer"),
            (self.max_tasks.is_some(), "maxtasksperchild"),
            (self.max_memory.is_some(), "max_memory_per_worker"),
            (self.method.is_some(), "a start method"),
            (
                self.streams.iter().any(Option::is_some),
                "worker_stdout/worker_stderr",
            ),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(set, _)| *set) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "a cluster pool does not carry {what} to its agents: set it on the agents' side"
                ),
            ));
        }
        let explicit = self.processes;
        let mut config = self.into_config()?;
        let (link, offered) = crate::cluster::link::Link::connect(&url, options)?;
        let processes = explicit.unwrap_or(offered).max(1);
        config.processes = processes;
        let core = Core::with_remote(config, Box::new(link))?;
        Ok(Pool {
            shared: Shared::new(core)?,
            processes,
        })
    }
}

impl Pool {
    /// A builder for the options: process count, initializer,
    /// `maxtasksperchild`, start method, time limit, memory cap, progress.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            method: None,
            init: None,
            max_tasks: None,
            timeout: None,
            retries: 0,
            retry_panics: false,
            max_memory: None,
            progress: false,
            nested: false,
            insights: false,
            shm_above: DEFAULT_SHM_ABOVE,
            on_progress: None,
            streams: [None, None],
            setup: WorkerSetup::default(),
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }
}
