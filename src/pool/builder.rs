//! [`PoolBuilder`]: the pool's options, and starting the engine with them.

use std::fmt;
use std::time::Duration;

use crate::codec;
use crate::context::StartMethod;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::config::{EnvOp, Resource, WorkerSetup};
use crate::target::Target;

use super::api::Pool;
use super::core::{Config, Core, InitCall};
use super::shared::{Shared, check_target, task_fn};
use super::worker;

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
    setup: WorkerSetup,
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
        self.init = Some(check_target::<F>().and_then(|()| {
            let encoded = codec::encode(&args)?;
            Ok(InitCall {
                task: worker::TaskRef::new(task_fn::<F, M>()),
                bytes: encoded.bytes,
                fds: std::sync::Arc::new(encoded.fds),
            })
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

    /// Draws a progress bar (count, rate, ETA) on stderr for `map` and
    /// `imap` calls that last more than half a second, when stderr is a
    /// terminal. Needs the `progress` feature (on by default); without it
    /// this does nothing.
    pub fn progress_bar(mut self, on: bool) -> Self {
        self.progress = on;
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
    /// - [`ErrorKind::CapturingClosure`], [`ErrorKind::Encode`]: an
    ///   initializer that cannot travel.
    /// - Whatever [`ProcessBuilder::start`](crate::ProcessBuilder::start)
    ///   fails with (for example [`ErrorKind::NotInitialized`] without
    ///   `multiproc::init()`).
    pub fn build(self) -> Result<Pool> {
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
        let core = Core::new(Config {
            processes,
            method: self.method,
            init,
            max_tasks: self.max_tasks,
            timeout: self.timeout,
            retries: self.retries,
            retry_panics: self.retry_panics,
            max_memory: self.max_memory,
            progress: self.progress,
            setup: self.setup,
        })?;
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
            setup: WorkerSetup::default(),
        }
    }
}
