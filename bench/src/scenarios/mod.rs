//! The scenario table: every benchmark the harness knows, by a fixed name.
//!
//! A scenario is a name, its variants, a unit, how many iterations one run
//! does, and one [`Entry`] per implementation that has it. Adding a scenario
//! is adding one element to [`SCENARIOS`] (plus its native run functions in a
//! module here, and its Python script or C program if peers have it).
//!
//! Every runner, native or external, does `iters` iterations of the
//! scenario's operation and returns one value in the scenario's unit; the
//! harness repeats that several times and reports the median.

mod cluster;
mod idle_rss;
pub mod logs;
mod manager_dict;
mod pipe;
mod pool;
mod pool_executor;
mod pool_faults;
pub mod process_start;
mod queue;
mod shared_data;
mod sync;

/// An implementation a scenario can be measured with; also the table's
/// column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Impl {
    /// This crate.
    Multiproc,
    /// CPython's `multiprocessing`, via a script in `bench/python`.
    Python,
    /// `concurrent.futures.ProcessPoolExecutor` (standard library).
    Futures,
    /// The `mpire` package (`WorkerPool`), from the harness's virtualenv.
    Mpire,
    /// The `loky` package (`get_reusable_executor`).
    Loky,
    /// The `pebble` package (`ProcessPool`, tasks with a timeout).
    Pebble,
    /// The `joblib` package (`Parallel`, its loky backend).
    Joblib,
    /// Dask distributed (`LocalCluster`, `Client`): the cluster scenarios.
    Dask,
    /// RQ (Redis Queue): the cluster scenarios.
    Rq,
    /// The `procspawn` crate.
    Procspawn,
    /// The `rayon` crate: the in-process limit.
    Rayon,
    /// The hardware/OS limit: a small C program in `bench/c`.
    Limit,
}

impl Impl {
    /// All implementations, in column order.
    pub const ALL: [Impl; 12] = [
        Impl::Multiproc,
        Impl::Python,
        Impl::Futures,
        Impl::Mpire,
        Impl::Loky,
        Impl::Pebble,
        Impl::Joblib,
        Impl::Dask,
        Impl::Rq,
        Impl::Procspawn,
        Impl::Rayon,
        Impl::Limit,
    ];

    /// The name used in the table header and the JSON `impl` field.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Multiproc => "multiproc",
            Impl::Python => "python",
            Impl::Futures => "futures",
            Impl::Mpire => "mpire",
            Impl::Loky => "loky",
            Impl::Pebble => "pebble",
            Impl::Joblib => "joblib",
            Impl::Dask => "dask",
            Impl::Rq => "rq",
            Impl::Procspawn => "procspawn",
            Impl::Rayon => "rayon",
            Impl::Limit => "limit",
        }
    }

    /// Is it something a user would pick instead of multiproc? `rayon`
    /// (threads in one process) and `limit` (C doing only the system
    /// calls) are bounds, not peers: the headline leaves them out.
    pub fn is_peer(self) -> bool {
        !matches!(self, Impl::Multiproc | Impl::Rayon | Impl::Limit)
    }
}

/// How one implementation runs a scenario once.
#[derive(Clone, Copy, Debug)]
pub enum Runner {
    /// A function in this binary: `(variant, iters)` to the run's value.
    Native(fn(&str, usize) -> Result<f64, String>),
    /// A function in this binary that may find a tool it needs missing
    /// (the cluster scenarios without redis-server): an
    /// [`ExternalError::Missing`](crate::external::ExternalError) skips it
    /// with a note instead of failing the run.
    MaySkip(fn(&str, usize) -> Result<f64, crate::external::ExternalError>),
    /// A script in `bench/python`, run as `python3 SCRIPT VARIANT ITERS`;
    /// it prints the run's value as a single number on stdout.
    Python(&'static str),
    /// A pool script in `bench/python`, run once per configuration as
    /// `python SCRIPT VARIANT ITERS CONFIG` (`peers.py` says what a CONFIG
    /// is: a peer and its start method); the cell keeps each
    /// configuration's runs and shows the best one. `module` is the
    /// add-on package it needs (run with the harness's virtualenv; the
    /// peer is skipped if it is not there), `None` for the standard
    /// library (run with `python3`).
    PythonBest {
        /// The script.
        script: &'static str,
        /// The configurations, each run in every run of the cell.
        configs: &'static [&'static str],
        /// The add-on package needed, if any.
        module: Option<&'static str>,
    },
    /// A C source in `bench/c`, compiled with `cc` and run as
    /// `PROGRAM VARIANT ITERS`; same output convention as the scripts.
    C(&'static str),
}

/// One implementation of a scenario.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Whose implementation this is.
    pub imp: Impl,
    /// The variants it covers; empty means all of the scenario's.
    pub variants: &'static [&'static str],
    /// How to run it.
    pub runner: Runner,
}

impl Entry {
    /// An entry for every variant of its scenario.
    pub const fn all(imp: Impl, runner: Runner) -> Entry {
        Entry {
            imp,
            variants: &[],
            runner,
        }
    }

    /// An entry for some variants only.
    pub const fn only(imp: Impl, variants: &'static [&'static str], runner: Runner) -> Entry {
        Entry {
            imp,
            variants,
            runner,
        }
    }

    /// Python's `multiprocessing` at its best: `script` under fork and
    /// under forkserver, the faster shown.
    pub const fn python_best(script: &'static str) -> Entry {
        Entry::all(
            Impl::Python,
            Runner::PythonBest {
                script,
                configs: MP_BEST,
                module: None,
            },
        )
    }

    /// An add-on peer (or `concurrent.futures`) on every variant: `script`
    /// with each of `configs` (`peers.py`), the best shown.
    pub const fn peer(imp: Impl, script: &'static str, configs: &'static [&'static str]) -> Entry {
        Entry::all(
            imp,
            Runner::PythonBest {
                script,
                configs,
                module: addon_module(imp),
            },
        )
    }

    /// Does this entry cover `variant`?
    pub fn covers(&self, variant: &str) -> bool {
        self.variants.is_empty() || self.variants.contains(&variant)
    }
}

/// Python's best start method is one of these for a warmed-up pool.
const MP_BEST: &[&str] = &["multiprocessing/fork", "multiprocessing/forkserver"];

/// The package an add-on peer needs from the virtualenv (`None`: the
/// standard library has it).
const fn addon_module(imp: Impl) -> Option<&'static str> {
    match imp {
        Impl::Mpire => Some("mpire"),
        Impl::Loky => Some("loky"),
        Impl::Pebble => Some("pebble"),
        Impl::Joblib => Some("joblib"),
        Impl::Dask => Some("distributed"),
        Impl::Rq => Some("rq"),
        _ => None,
    }
}

/// mpire with and without `worker_state`.
const MPIRE: &[&str] = &["mpire", "mpire+state"];

/// A benchmark scenario.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Fixed name, stable over time so results can be compared.
    pub name: &'static str,
    /// Variants (start methods, sizes); `["-"]` if none.
    pub variants: &'static [&'static str],
    /// Unit of every value: `ns`, `us`, `ms`, `us_per_task`, `msgs_per_s`,
    /// `ops_per_s`, `GB_per_s`, `MiB`.
    pub unit: &'static str,
    /// Iterations per run for a variant; the bool is `--quick`.
    pub iters: fn(&str, bool) -> usize,
    /// The implementations that have it.
    pub entries: &'static [Entry],
    /// `Some(feature)` while the feature has not landed in multiproc: the
    /// scenario is listed but skipped.
    pub pending: Option<&'static str>,
}

impl Scenario {
    /// A scenario whose multiproc feature does not exist yet (none today:
    /// kept for the next scenario added before its feature).
    #[allow(dead_code)]
    const fn pending(name: &'static str, feature: &'static str) -> Scenario {
        Scenario {
            name,
            variants: &["-"],
            unit: "-",
            iters: |_, _| 0,
            entries: &[],
            pending: Some(feature),
        }
    }

    /// The entry of `imp` for `variant`, if it has one.
    pub fn entry(&self, imp: Impl, variant: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.imp == imp && e.covers(variant))
    }
}

/// Every scenario, in the order they run and print.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "process_start",
        variants: &["fork", "spawn", "forkserver"],
        unit: "us",
        iters: process_start::iters,
        entries: &[
            Entry {
                imp: Impl::Multiproc,
                variants: &[],
                runner: Runner::Native(process_start::multiproc),
            },
            Entry {
                imp: Impl::Python,
                variants: &[],
                runner: Runner::Python("process_start.py"),
            },
            Entry {
                imp: Impl::Procspawn,
                variants: &["spawn"],
                runner: Runner::Native(process_start::procspawn),
            },
            Entry {
                imp: Impl::Limit,
                variants: &["fork", "forkserver"],
                runner: Runner::C("fork_exit.c"),
            },
            Entry {
                imp: Impl::Limit,
                variants: &["spawn"],
                runner: Runner::C("posix_spawn_true.c"),
            },
        ],
        pending: None,
    },
    Scenario {
        name: "log_forward",
        variants: &["fork", "forkserver"],
        unit: "us",
        iters: logs::iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(logs::forward)),
            Entry::all(Impl::Python, Runner::Python("log_forward.py")),
        ],
        pending: None,
    },
    Scenario {
        name: "process_start_preload",
        variants: &["cold", "preloaded"],
        unit: "us",
        iters: process_start::preload_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(process_start::preload)),
            Entry::all(Impl::Python, Runner::Python("process_start_preload.py")),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_start",
        variants: &["fork", "spawn", "forkserver"],
        unit: "ms",
        iters: pool::start_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(pool::start)),
            Entry::all(Impl::Python, Runner::Python("pool_start.py")),
            Entry::peer(Impl::Futures, "pool_start.py", &["futures"]),
            Entry::peer(Impl::Mpire, "pool_start.py", &["mpire"]),
            // loky refuses fork; joblib starts with loky's own method (a
            // fork + exec: the spawn row).
            Entry::only(
                Impl::Loky,
                &["spawn", "forkserver"],
                Runner::PythonBest {
                    script: "pool_start.py",
                    configs: &["loky"],
                    module: Some("loky"),
                },
            ),
            Entry::peer(Impl::Pebble, "pool_start.py", &["pebble"]),
            Entry::only(
                Impl::Joblib,
                &["spawn"],
                Runner::PythonBest {
                    script: "pool_start.py",
                    configs: &["joblib"],
                    module: Some("joblib"),
                },
            ),
            Entry::only(
                Impl::Procspawn,
                &["spawn"],
                Runner::Native(pool::start_procspawn),
            ),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_map_chunk1",
        variants: &["forkserver"],
        unit: "us_per_task",
        iters: pool::chunk1_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(pool::map_chunk1)),
            Entry::python_best("pool_map_chunk1.py"),
            Entry::peer(Impl::Futures, "pool_map_chunk1.py", &["futures"]),
            Entry::peer(Impl::Mpire, "pool_map_chunk1.py", MPIRE),
            Entry::peer(Impl::Loky, "pool_map_chunk1.py", &["loky"]),
            Entry::peer(Impl::Pebble, "pool_map_chunk1.py", &["pebble"]),
            Entry::peer(Impl::Joblib, "pool_map_chunk1.py", &["joblib"]),
            Entry::all(Impl::Rayon, Runner::Native(pool::map_chunk1_rayon)),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_map_auto",
        variants: &["forkserver"],
        unit: "us_per_task",
        iters: pool::auto_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(pool::map_auto)),
            Entry::python_best("pool_map_auto.py"),
            Entry::peer(Impl::Futures, "pool_map_auto.py", &["futures"]),
            Entry::peer(Impl::Mpire, "pool_map_auto.py", MPIRE),
            Entry::peer(Impl::Loky, "pool_map_auto.py", &["loky"]),
            Entry::peer(Impl::Pebble, "pool_map_auto.py", &["pebble"]),
            Entry::peer(Impl::Joblib, "pool_map_auto.py", &["joblib"]),
            Entry::all(Impl::Rayon, Runner::Native(pool::map_auto_rayon)),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_map_state",
        variants: &["plain", "state", "partial", "insights"],
        unit: "us_per_task",
        iters: pool::auto_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(pool::map_state)),
            Entry::only(
                Impl::Mpire,
                &["plain"],
                Runner::PythonBest {
                    script: "pool_map_auto.py",
                    configs: &["mpire"],
                    module: Some("mpire"),
                },
            ),
            Entry::only(
                Impl::Mpire,
                &["state"],
                Runner::PythonBest {
                    script: "pool_map_auto.py",
                    configs: &["mpire+state"],
                    module: Some("mpire"),
                },
            ),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_apply_async",
        variants: &["forkserver"],
        unit: "us_per_task",
        iters: pool::chunk1_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(pool::apply_async)),
            Entry::python_best("pool_apply_async.py"),
            Entry::peer(Impl::Futures, "pool_apply_async.py", &["futures"]),
            Entry::peer(Impl::Mpire, "pool_apply_async.py", MPIRE),
            Entry::peer(Impl::Loky, "pool_apply_async.py", &["loky"]),
            Entry::peer(Impl::Pebble, "pool_apply_async.py", &["pebble"]),
            Entry::all(Impl::Procspawn, Runner::Native(pool::apply_async_procspawn)),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_map_async_busy",
        variants: &["forkserver"],
        unit: "ms",
        iters: pool_executor::busy_iters,
        entries: &[
            Entry::all(
                Impl::Multiproc,
                Runner::Native(pool_executor::map_async_busy),
            ),
            Entry::python_best("pool_map_async_busy.py"),
            Entry::peer(Impl::Futures, "pool_map_async_busy.py", &["futures"]),
            Entry::peer(Impl::Pebble, "pool_map_async_busy.py", &["pebble"]),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_as_completed",
        variants: &["forkserver"],
        unit: "us_per_task",
        iters: pool_executor::as_completed_iters,
        entries: &[
            Entry::all(
                Impl::Multiproc,
                Runner::Native(pool_executor::as_completed_overhead),
            ),
            Entry::python_best("pool_as_completed.py"),
            Entry::peer(
                Impl::Futures,
                "pool_as_completed.py",
                &["futures/fork", "futures/forkserver"],
            ),
            Entry::peer(Impl::Pebble, "pool_as_completed.py", &["pebble"]),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_await_latency",
        variants: &["forkserver"],
        unit: "us",
        iters: pool_executor::await_iters,
        entries: &[
            Entry::all(
                Impl::Multiproc,
                Runner::Native(pool_executor::await_latency),
            ),
            Entry::python_best("pool_await_latency.py"),
            Entry::peer(Impl::Futures, "pool_await_latency.py", &["futures"]),
            Entry::peer(Impl::Pebble, "pool_await_latency.py", &["pebble"]),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_await_handover",
        variants: &["forkserver"],
        unit: "us",
        iters: pool_executor::await_iters,
        entries: &[Entry::all(
            Impl::Multiproc,
            Runner::Native(pool_executor::await_handover),
        )],
        pending: None,
    },
    Scenario {
        name: "pool_cancel_replace",
        variants: &["forkserver"],
        unit: "ms",
        iters: pool_faults::cancel_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(pool_faults::cancel_replace)),
            Entry::peer(Impl::Pebble, "pool_cancel_replace.py", &["pebble"]),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_worker_killed",
        variants: &["forkserver"],
        unit: "ms",
        iters: pool_faults::killed_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(pool_faults::worker_killed)),
            Entry::python_best("pool_worker_killed.py"),
            Entry::peer(Impl::Futures, "pool_worker_killed.py", &["futures"]),
            Entry::peer(Impl::Mpire, "pool_worker_killed.py", &["mpire"]),
            Entry::peer(Impl::Loky, "pool_worker_killed.py", &["loky"]),
            Entry::peer(Impl::Pebble, "pool_worker_killed.py", &["pebble"]),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_time_limit",
        variants: &["forkserver"],
        unit: "ms",
        iters: pool_faults::limit_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(pool_faults::time_limit)),
            Entry::python_best("pool_time_limit.py"),
            Entry::peer(Impl::Mpire, "pool_time_limit.py", &["mpire"]),
            Entry::peer(Impl::Pebble, "pool_time_limit.py", &["pebble"]),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_array",
        variants: &["1gib"],
        unit: "ms",
        iters: shared_data::array_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(shared_data::array)),
            Entry::python_best("pool_array.py"),
            Entry::peer(Impl::Joblib, "pool_array.py", &["joblib"]),
        ],
        pending: None,
    },
    Scenario {
        name: "pool_imap_unordered",
        variants: &["forkserver"],
        unit: "us_per_task",
        iters: pool::chunk1_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(pool::imap_unordered)),
            Entry::python_best("pool_imap_unordered.py"),
            Entry::peer(Impl::Futures, "pool_imap_unordered.py", &["futures"]),
            Entry::peer(Impl::Mpire, "pool_imap_unordered.py", MPIRE),
            Entry::peer(Impl::Loky, "pool_imap_unordered.py", &["loky"]),
            Entry::peer(Impl::Pebble, "pool_imap_unordered.py", &["pebble"]),
            Entry::peer(Impl::Joblib, "pool_imap_unordered.py", &["joblib"]),
        ],
        pending: None,
    },
    Scenario {
        name: "cluster_round_trip",
        variants: &["-"],
        unit: "us",
        iters: cluster::round_trip_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::MaySkip(cluster::round_trip)),
            Entry::peer(Impl::Dask, "cluster_round_trip.py", &["dask/1"]),
            Entry::peer(Impl::Rq, "cluster_round_trip.py", &["rq+simple", "rq"]),
        ],
        pending: None,
    },
    Scenario {
        name: "cluster_map",
        variants: &["2x1", "2x2"],
        unit: "items_per_s",
        iters: cluster::map_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::MaySkip(cluster::map)),
            Entry::only(
                Impl::Dask,
                &["2x1"],
                Runner::PythonBest {
                    script: "cluster_map.py",
                    configs: &["dask/1", "dask/1+bag"],
                    module: Some("distributed"),
                },
            ),
            Entry::only(
                Impl::Dask,
                &["2x2"],
                Runner::PythonBest {
                    script: "cluster_map.py",
                    configs: &["dask/2", "dask/2+bag"],
                    module: Some("distributed"),
                },
            ),
            Entry::only(
                Impl::Rq,
                &["2x1"],
                Runner::PythonBest {
                    script: "cluster_map.py",
                    configs: &["rq+simple", "rq"],
                    module: Some("rq"),
                },
            ),
        ],
        pending: None,
    },
    Scenario {
        name: "cluster_agent_killed",
        variants: &["lease_1s", "lease_5s"],
        unit: "ms",
        iters: cluster::killed_iters,
        entries: &[Entry::all(
            Impl::Multiproc,
            Runner::MaySkip(cluster::agent_killed),
        )],
        pending: None,
    },
    Scenario {
        name: "queue_small",
        variants: &["fork", "spawn", "forkserver"],
        unit: "msgs_per_s",
        iters: queue::iters_small,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(queue::multiproc_small)),
            Entry::all(Impl::Python, Runner::Python("queue_small.py")),
            Entry::all(Impl::Rayon, Runner::Native(queue::crossbeam_small)),
        ],
        pending: None,
    },
    Scenario {
        name: "queue_1mib",
        variants: &["fork", "spawn", "forkserver"],
        unit: "GB_per_s",
        iters: queue::iters_1mib,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(queue::multiproc_1mib)),
            Entry::all(Impl::Python, Runner::Python("queue_1mib.py")),
            Entry::all(Impl::Rayon, Runner::Native(queue::crossbeam_1mib)),
        ],
        pending: None,
    },
    Scenario {
        name: "pipe_small",
        variants: &["-"],
        unit: "msgs_per_s",
        iters: pipe::small_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(pipe::small)),
            Entry::all(Impl::Python, Runner::Python("pipe_small.py")),
            Entry::all(Impl::Limit, Runner::C("socketpair_small.c")),
        ],
        pending: None,
    },
    Scenario {
        name: "pipe_1mib",
        // `memcpy` is a limit-only row: copying 1 MiB once in one process.
        variants: &["-", "memcpy"],
        unit: "GB_per_s",
        iters: pipe::mib_iters,
        entries: &[
            Entry::only(Impl::Multiproc, &["-"], Runner::Native(pipe::bytes)),
            Entry::only(Impl::Python, &["-"], Runner::Python("pipe_bytes.py")),
            Entry::only(Impl::Limit, &["-"], Runner::C("socketpair_stream.c")),
            Entry::only(Impl::Limit, &["memcpy"], Runner::C("memcpy.c")),
        ],
        pending: None,
    },
    Scenario {
        name: "pipe_pingpong",
        variants: &["-"],
        unit: "us",
        iters: pipe::pingpong_iters,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(pipe::pingpong)),
            Entry::all(Impl::Python, Runner::Python("pipe_pingpong.py")),
            Entry::all(Impl::Limit, Runner::C("socketpair_pingpong.c")),
        ],
        pending: None,
    },
    Scenario {
        name: "lock_uncontended",
        variants: &["-"],
        unit: "ns",
        iters: sync::iters_lock,
        entries: &[
            Entry {
                imp: Impl::Multiproc,
                variants: &[],
                runner: Runner::Native(sync::lock_uncontended),
            },
            Entry {
                imp: Impl::Python,
                variants: &[],
                runner: Runner::Python("lock_uncontended.py"),
            },
        ],
        pending: None,
    },
    Scenario {
        name: "lock_contended",
        variants: &["-"],
        unit: "ops_per_s",
        iters: sync::iters_contended,
        entries: &[
            Entry {
                imp: Impl::Multiproc,
                variants: &[],
                runner: Runner::Native(sync::lock_contended),
            },
            Entry {
                imp: Impl::Python,
                variants: &[],
                runner: Runner::Python("lock_contended.py"),
            },
        ],
        pending: None,
    },
    Scenario {
        name: "value_incr",
        variants: &["-"],
        unit: "ops_per_s",
        iters: sync::iters_contended,
        entries: &[
            Entry {
                imp: Impl::Multiproc,
                variants: &[],
                runner: Runner::Native(sync::value_incr),
            },
            Entry {
                imp: Impl::Python,
                variants: &[],
                runner: Runner::Python("value_incr.py"),
            },
        ],
        pending: None,
    },
    Scenario {
        name: "shm_create",
        variants: &["named", "anonymous"],
        unit: "us",
        iters: sync::iters_shm,
        entries: &[
            Entry {
                imp: Impl::Multiproc,
                variants: &[],
                runner: Runner::Native(sync::shm_create),
            },
            Entry {
                imp: Impl::Python,
                variants: &["named"],
                runner: Runner::Python("shm_create.py"),
            },
        ],
        pending: None,
    },
    Scenario {
        name: "queue_create",
        variants: &["-"],
        unit: "us",
        iters: sync::iters_shm,
        entries: &[
            Entry::all(Impl::Multiproc, Runner::Native(queue::create)),
            Entry::all(Impl::Python, Runner::Python("queue_create.py")),
        ],
        pending: None,
    },
    Scenario {
        name: "manager_dict",
        variants: &["op_from_child", "batched", "start"],
        unit: "us",
        iters: manager_dict::iters,
        entries: &[
            Entry {
                imp: Impl::Multiproc,
                variants: &[],
                runner: Runner::Native(manager_dict::multiproc),
            },
            Entry {
                imp: Impl::Python,
                variants: &[],
                runner: Runner::Python("manager_dict.py"),
            },
        ],
        pending: None,
    },
];

/// What a reader of a scenario's row must know: peers that lack the
/// operation, and what a `hung` cell means. Printed under the tables when
/// the scenario runs.
pub const NOTES: &[(&str, &str)] = &[
    (
        "pool_as_completed",
        "multiprocessing.Pool has no as_completed: its column is the usual idiom, \
         apply_async(callback=queue.put) drained from a queue.SimpleQueue",
    ),
    (
        "pool_cancel_replace",
        "only pebble can stop a running task: multiprocessing.Pool has no cancel, \
         and ProcessPoolExecutor's, loky's and mpire's cancel() cannot stop a running task",
    ),
    (
        "pool_worker_killed",
        "`hung`: the peer never reported the lost task; it was stopped after the bound \
         (MULTIPROC_BENCH_HANG_AFTER seconds, 5, --quick 2: above mpire's 1.2 s) and its whole process group killed",
    ),
    (
        "pool_time_limit",
        "multiprocessing.Pool has no per-task limit: AsyncResult.get(timeout) raises at the limit \
         but the task goes on and its worker stays busy, so the next task on its 1-worker pool \
         never runs (`hung`)",
    ),
    (
        "cluster_round_trip",
        "Dask's client batches what it sends to the scheduler for up to 10 ms \
         (BatchedSend(interval=\"10ms\") in distributed/client.py, not configurable): \
         most of its round trip",
    ),
    (
        "cluster_map",
        "Dask's client.map maps min(N, 20 000) items and RQ min(N, 2 000) (a task or job \
         per item; 100 000 would take minutes a run): their rate, not the whole map. \
         dask+bag is the whole map batched by hand (dask.bag, 4 partitions per thread). \
         RQ has no 2x2 (a worker runs one job at a time)",
    ),
    (
        "cluster_agent_killed",
        "multiproc only; goal: the kill to the map's end within lease + 1 s \
         (2000 ms for lease_1s, 6000 ms for lease_5s)",
    ),
];

/// Looks a scenario up by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// A sweep: one parameter of a measurement taking several values (message
/// size, number of workers, start method), printed as its own table with a
/// row per value and a column per implementation, and, if `chart` is set
/// and the values are numbers, drawn as one panel of the PNG chart with a
/// curve per implementation.
///
/// It reuses [`Scenario`]: the parameter's values are the variants, passed
/// to the runners as `VARIANT` like any other (so `bench/python/X.py 4096
/// ITERS` for a size of 4096 bytes), and its name is the sweep's name.
#[derive(Clone, Copy, Debug)]
pub struct Sweep {
    /// Name, values, unit, iterations and implementations.
    pub scenario: Scenario,
    /// The values under `--quick` (a few of `scenario.variants`).
    pub quick: &'static [&'static str],
    /// The table's and the chart panel's title.
    pub title: &'static str,
    /// What the parameter is (`bytes`, `workers`, `start method`).
    pub param: &'static str,
    /// Draw it in the chart (numeric values only; both axes logarithmic).
    pub chart: bool,
}

impl Sweep {
    /// The values to measure.
    pub fn values(&self, quick: bool) -> &'static [&'static str] {
        if quick {
            self.quick
        } else {
            self.scenario.variants
        }
    }
}

/// Message sizes for the size sweeps, 8 B to 16 MiB by factors of 8 (and 1 MiB).
pub const SIZES: &[&str] = &[
    "8", "64", "512", "4096", "32768", "262144", "1048576", "2097152", "16777216",
];

/// What a fresh copy of this binary runs for one scenario: its arguments
/// after the selecting one; it prints the run's value.
pub type FreshMain = fn(&[String]) -> Result<(), String>;

/// The scenarios that run in a fresh copy of this binary (their own fork
/// server, their own logger): the argument that selects one, and what the
/// copy then runs instead of the harness (it prints the run's value).
pub const FRESH_COPY: &[(&str, FreshMain)] = &[
    (logs::FORWARD_ARG, logs::forward_main),
    (process_start::PRELOAD_ARG, process_start::preload_main),
    (cluster::RUN_ARG, cluster::run_main),
    (cluster::AGENT_ARG, cluster::agent_main),
    (cluster::REDIS_ARG, cluster::redis_main),
];

/// Runs this binary again as `ARG VARIANT ITERS` (see [`FRESH_COPY`]) and
/// parses the single number it prints.
pub fn in_fresh_copy(arg: &str, variant: &str, iters: usize) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args([arg, variant, &iters.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run this binary again for {arg}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{arg} failed ({}): {text}", out.status));
    }
    text.trim()
        .parse()
        .map_err(|_| format!("{arg} printed {text:?}, not a single number"))
}

/// The sizes under `--quick`.
pub const QUICK_SIZES: &[&str] = &["8", "4096", "1048576"];

/// Every sweep, in the order they run and print. To add a curve, add an
/// element here (with `chart: true` for a numeric parameter): it gets its
/// table, its JSON lines and its chart panel.
pub const SWEEPS: &[Sweep] = &[
    // The idle-memory sweeps first: after the byte sweeps the harness has
    // more memory of its own, which a forked child's RSS counts.
    Sweep {
        scenario: Scenario {
            name: "idle_rss",
            variants: &["fork", "spawn", "forkserver"],
            unit: "MiB",
            iters: idle_rss::iters,
            entries: &[
                Entry::all(Impl::Multiproc, Runner::Native(idle_rss::multiproc_rss)),
                Entry::all(Impl::Python, Runner::Python("idle_rss.py")),
                Entry::all(Impl::Limit, Runner::C("idle_rss.c")),
            ],
            pending: None,
        },
        quick: &["fork", "spawn", "forkserver"],
        title: "Resident memory (VmRSS) of an idle child",
        param: "start method",
        chart: false,
    },
    Sweep {
        scenario: Scenario {
            name: "idle_uss",
            variants: &["fork", "spawn", "forkserver"],
            unit: "MiB",
            iters: idle_rss::iters,
            entries: &[
                Entry::all(Impl::Multiproc, Runner::Native(idle_rss::multiproc_uss)),
                Entry::all(Impl::Python, Runner::Python("idle_uss.py")),
                Entry::all(Impl::Limit, Runner::C("idle_uss.c")),
            ],
            pending: None,
        },
        quick: &["fork", "spawn", "forkserver"],
        title: "Private memory (USS: Private_Clean + Private_Dirty) of an idle child",
        param: "start method",
        chart: false,
    },
    Sweep {
        scenario: Scenario {
            name: "pipe_size",
            variants: SIZES,
            unit: "GB_per_s",
            iters: pipe::sweep_iters,
            entries: &[
                Entry::all(Impl::Multiproc, Runner::Native(pipe::bytes)),
                Entry::all(Impl::Python, Runner::Python("pipe_bytes.py")),
                Entry::all(Impl::Limit, Runner::C("socketpair_stream.c")),
            ],
            pending: None,
        },
        quick: QUICK_SIZES,
        title: "Pipe throughput vs message size (send_bytes, parent to child)",
        param: "bytes",
        chart: true,
    },
    Sweep {
        scenario: Scenario {
            name: "queue_size",
            variants: SIZES,
            unit: "GB_per_s",
            iters: queue::size_iters,
            entries: &[
                Entry::all(Impl::Multiproc, Runner::Native(queue::multiproc_sized)),
                Entry::all(Impl::Python, Runner::Python("queue_bytes.py")),
            ],
            pending: None,
        },
        quick: QUICK_SIZES,
        title: "Queue throughput vs message size (put in the parent, get in a child)",
        param: "bytes",
        chart: true,
    },
    Sweep {
        scenario: Scenario {
            name: "pool_workers",
            variants: &["1", "2", "4", "8"],
            unit: "us_per_task",
            iters: pool::workers_iters,
            entries: &[
                Entry::all(Impl::Multiproc, Runner::Native(pool::workers)),
                Entry::python_best("pool_workers.py"),
            ],
            pending: None,
        },
        quick: &["1", "8"],
        title: "Pool per-task cost vs workers (map, chunksize 1, 2 cores)",
        param: "workers",
        chart: true,
    },
    Sweep {
        scenario: Scenario {
            name: "pool_argsize",
            variants: SIZES,
            unit: "us_per_task",
            iters: pool::argsize_iters,
            entries: &[
                Entry::all(Impl::Multiproc, Runner::Native(pool::argsize)),
                Entry::python_best("pool_argsize.py"),
                Entry::peer(Impl::Futures, "pool_argsize.py", &["futures"]),
                Entry::peer(Impl::Mpire, "pool_argsize.py", &["mpire"]),
                Entry::peer(Impl::Loky, "pool_argsize.py", &["loky"]),
                Entry::peer(Impl::Pebble, "pool_argsize.py", &["pebble"]),
                Entry::peer(Impl::Joblib, "pool_argsize.py", &["joblib"]),
            ],
            pending: None,
        },
        quick: QUICK_SIZES,
        title: "Pool per-task cost vs argument size (map, chunksize 1, 2 workers)",
        param: "bytes",
        chart: true,
    },
    Sweep {
        scenario: Scenario {
            name: "pool_argsize_shared",
            variants: SIZES,
            unit: "us_per_task",
            iters: pool::argsize_iters,
            entries: &[
                Entry::all(Impl::Multiproc, Runner::Native(shared_data::argsize_shared)),
                Entry::python_best("pool_argsize.py"),
            ],
            pending: None,
        },
        quick: QUICK_SIZES,
        title: "Pool per-task cost vs argument size, the argument in shared memory (a SharedSlice made once; Python: bytes)",
        param: "bytes",
        chart: true,
    },
    Sweep {
        scenario: Scenario {
            name: "pool_resultsize",
            variants: SIZES,
            unit: "us_per_task",
            iters: pool::argsize_iters,
            entries: &[
                Entry::all(Impl::Multiproc, Runner::Native(shared_data::resultsize)),
                Entry::python_best("pool_resultsize.py"),
                Entry::peer(Impl::Futures, "pool_resultsize.py", &["futures"]),
                Entry::peer(Impl::Mpire, "pool_resultsize.py", &["mpire"]),
                Entry::peer(Impl::Loky, "pool_resultsize.py", &["loky"]),
            ],
            pending: None,
        },
        quick: QUICK_SIZES,
        title: "Pool per-task cost vs result size (map, chunksize 1, 2 workers)",
        param: "bytes",
        chart: true,
    },
];

/// Looks a sweep up by name.
pub fn find_sweep(name: &str) -> Option<&'static Sweep> {
    SWEEPS.iter().find(|s| s.scenario.name == name)
}
