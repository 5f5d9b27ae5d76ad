//! Python's `multiprocessing`, done properly in Rust.
//!
//! Run work in other processes — for crash isolation, hard time limits,
//! libraries that are not thread-safe, memory that must go back to the
//! system, or every core — with the API a Python user already knows, and
//! with errors that say what happened.
//!
//! # Tutorial
//!
//! ## Set-up: `init()` first
//!
//! Under the default start method a child is a fresh run of your program
//! that must turn into the child before your `main` does anything else. So
//! the first line of `main` is [`init()`]:
//!
//! ```
//! fn main() {
//!     multiproc::init();
//!     // ... the rest of the program
//! }
//! ```
//!
//! In a test file (which has no `main` of yours), put
//! [`multiproc::test_support!()`](test_support) at the top level instead;
//! it works under `cargo test` and `cargo nextest`.
//!
//! ## Starting a process and getting its result
//!
//! A [`Process`] runs a function with arguments in a child; [`Process::join`]
//! returns what the function returned. Arguments and results are serde
//! types. Several arguments are a tuple.
//!
//! ```
//! use multiproc::Process;
//!
//! fn area(w: u32, h: u32) -> u32 {
//!     w * h
//! }
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! multiproc::init();
//! let p = Process::new(area, (6, 7)).name("area").start()?;
//! println!("started {} with pid {}", p.name(), p.pid());
//! assert_eq!(p.join()?, 42);
//! # Ok(()) }
//! ```
//!
//! ## When a child fails, you are told how
//!
//! A panic comes back with its message and location; a signal is named.
//!
//! ```
//! use multiproc::{ErrorKind, Process};
//!
//! fn divide(a: u32, b: u32) -> u32 {
//!     a / b
//! }
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let err = Process::new(divide, (1, 0)).start()?.join().unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Panicked);
//! assert!(err.panic_message().unwrap().contains("divide by zero"));
//! println!("{err}"); // process 'Process-1' (pid 4242) panicked at src/main.rs:4:5: attempt to divide by zero
//! # Ok(()) }
//! ```
//!
//! ## Controlling a process
//!
//! ```
//! use std::time::Duration;
//! use multiproc::{ErrorKind, ExitStatus, Process, Signal};
//!
//! fn forever() {
//!     loop {
//!         std::thread::sleep(Duration::from_secs(1));
//!     }
//! }
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let p = Process::new(forever, ()).start()?;
//! let still_running = p.join_timeout(Duration::from_millis(10)).unwrap_err();
//! assert_eq!(still_running.kind(), ErrorKind::Timeout);
//! p.terminate()?;
//! assert_eq!(p.join_timeout(Duration::from_secs(10))?, ExitStatus::Signaled(Signal::TERM));
//! # Ok(()) }
//! ```
//!
//! ## Start methods
//!
//! [`StartMethod::Forkserver`] (the default), [`StartMethod::Spawn`] and
//! [`StartMethod::Fork`], as in Python; see [`context`]. Under spawn and
//! forkserver the child is a new run of the program: it has a function's
//! code but not a closure's captured variables. Give a function the values
//! it needs with [`partial`] (Python's `functools.partial`): they travel as
//! serde data, to a new process or to pool workers, under every start method.
//!
//! ```
//! use multiproc::{Pool, Process, partial};
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let (lo, hi) = (10u64, 20u64);
//! let clamp = partial(|&(lo, hi): &(u64, u64), x: u64| x.clamp(lo, hi), (lo, hi));
//! assert_eq!(Pool::new(2)?.map(clamp.clone(), [5, 15, 25])?, [10, 15, 20]);
//! assert_eq!(Process::new(clamp, 99).start()?.join()?, 20);
//! # Ok(()) }
//! ```
//!
//! A closure that captures variables does not build as a pool task. Under
//! `fork` a process can run one, because there the child is a copy of the
//! parent's memory — that is Python's `os.fork()`:
//!
//! ```
//! use multiproc::Process;
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let arr: Vec<u64> = (1..=10).collect();
//! let (left, right) = arr.split_at(arr.len() / 2);
//! let right = right.to_vec();
//! let child = Process::fork(move || right.iter().map(|x| x * x).collect::<Vec<u64>>()).start()?;
//! let mine: Vec<u64> = left.iter().map(|x| x * x).collect();
//! assert_eq!(mine, [1, 4, 9, 16, 25]);
//! assert_eq!(child.join()?, [36, 49, 64, 81, 100]);
//! # Ok(()) }
//! ```
//!
//! ## A pool of workers
//!
//! [`Pool`] is Python's `multiprocessing.Pool`: `map`, `imap`,
//! `imap_unordered`, `apply_async` and the rest (see [`pool`]). A worker
//! that dies fails only the task it was running, with an error that says
//! how it died; the others complete and the pool goes on.
//!
//! ```
//! use multiproc::{ErrorKind, Pool};
//!
//! fn square(x: u64) -> u64 {
//!     if x == 3 {
//!         std::process::abort(); // a crash in the middle of the work
//!     }
//!     x * x
//! }
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let pool = Pool::new(2)?;
//! let results: Vec<_> = pool.imap(square, 0..6)?.collect();
//! assert_eq!(results[3].as_ref().unwrap_err().kind(), ErrorKind::WorkerLost);
//! assert_eq!(*results[5].as_ref().unwrap(), 25);
//! assert_eq!(pool.map(square, [4, 5])?, [16, 25]); // the pool goes on
//! # Ok(()) }
//! ```
//!
//! ## Passing descriptors
//!
//! An [`Fd`] inside the arguments arrives in the child as its own
//! descriptor, under every start method; this is how queues, pipes and
//! locks travel to children.
//!
//! ## Queues
//!
//! [`Queue`] (and [`SimpleQueue`], [`JoinableQueue`]) carries serde values
//! between any number of producer and consumer processes through shared
//! memory. A put is in the queue when it returns, so a child that put data
//! exits at once; a producer or consumer killed in the middle of an
//! operation corrupts nothing. [`Queue::shutdown`] ends consumers that loop
//! on `get`.
//!
//! ```
//! use multiproc::{Process, Queue};
//!
//! fn squares(q: Queue<u64>, n: u64) {
//!     for i in 0..n {
//!         q.put(i * i).unwrap();
//!     }
//! }
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let q = Queue::new()?;
//! let child = Process::new(squares, (q.clone(), 4)).start()?;
//! child.join()?; // never waits for a reader
//! let got: Vec<u64> = q.try_iter().collect();
//! assert_eq!(got, [0, 1, 4, 9]);
//! # Ok(()) }
//! ```
//!
//! ## Locks and shared values
//!
//! [`sync`] has Python's `Lock`, `RLock`, `Semaphore`, `Condition`, `Event`
//! and `Barrier`; [`shared`] has `Value`, `Array`, `RawValue`, `RawArray`
//! and `SharedMemory`. All of them travel in a child's arguments. A process
//! killed while holding a lock does not deadlock the others: the next one
//! gets the lock with an [`OwnerDied`](sync::OwnerDied) it can repair from.
//!
//! ```
//! use multiproc::{Process, shared::Value};
//!
//! fn add(counter: Value<u64>) {
//!     for _ in 0..1000 {
//!         *counter.lock().unwrap() += 1;
//!     }
//! }
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let counter = Value::new(0u64)?;
//! let a = Process::new(add, counter.clone()).start()?;
//! let b = Process::new(add, counter.clone()).start()?;
//! a.join()?;
//! b.join()?;
//! assert_eq!(counter.get()?, 2000);
//! # Ok(()) }
//! ```
//!
//! ## Sharing big data
//!
//! Sending a large value to a worker copies it through a socket, as
//! Python's pickling does. To share it instead, put it in shared memory
//! once and send the handle: a descriptor travels, every process maps the
//! same pages, and resident memory grows only by the pages each one reads.
//!
//! | Python | multiproc |
//! |---|---|
//! | `Array('d', n)` (locked) | [`shared::Array`] |
//! | `shared_memory.SharedMemory` + `np.ndarray(buffer=shm.buf)` | [`shared::SharedVec`] built in place, then [`freeze`](shared::SharedVec::freeze) into a read-only [`shared::SharedSlice`] (with feature `ndarray`: [`view`](shared::SharedSlice::view) gives an `ArrayView`) |
//! | joblib's automatic memmapping of large arrays | a `SharedSlice` in the task arguments: no file, no copy |
//! | `ray.put(value)` | [`Pool::put`] → [`shared::Frozen`]: encoded once, decoded once per worker |
//! | `shared_memory.ShareableList` | [`shared::ShareableList`]: the same layout, so a Python program attaches it by name (and back) |
//!
//! A `SharedSlice` is sealed (`F_SEAL_WRITE`): no process can change its
//! bytes, which is what makes `&[T]` over shared memory sound; a received
//! descriptor without the seals is refused. It travels in task arguments
//! and results, process arguments and pipes (not through a `Queue`, whose
//! shared memory holds no descriptors).
//!
//! ```
//! use multiproc::Pool;
//! use multiproc::shared::{SharedSlice, SharedVec};
//!
//! fn row_max((rows, i): (SharedSlice<f64>, usize)) -> f64 {
//!     rows[i * 1000..(i + 1) * 1000].iter().cloned().fold(f64::MIN, f64::max)
//! }
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let mut v = SharedVec::<f64>::zeroed(100 * 1000)?; // built in place
//! for (i, x) in v.iter_mut().enumerate() {
//!     *x = (i % 1000) as f64;
//! }
//! let rows = v.freeze()?; // sealed: now any number of processes map it
//! let pool = Pool::new(2)?;
//! let maxima = pool.map(row_max, (0..100).map(|i| (rows.clone(), i)))?;
//! assert!(maxima.iter().all(|&m| m == 999.0));
//! # Ok(()) }
//! ```
//!
//! ## Sharing state through a manager
//!
//! A [`Manager`] serves dicts, lists, namespaces, queues and locks from a
//! process of its own; its proxies are cheap to clone and travel to
//! children (see [`manager`]).
//!
//! ```
//! use multiproc::{Manager, Process};
//! use multiproc::manager::DictProxy;
//!
//! fn square_into(i: u64, results: DictProxy<u64, u64>) {
//!     results.insert(i, i * i).unwrap();
//! }
//!
//! # fn main() -> Result<(), multiproc::Error> {
//! # multiproc::init();
//! let manager = Manager::new()?;
//! let results = manager.dict()?;
//! let children: Vec<_> = (0..4)
//!     .map(|i| Process::new(square_into, (i, results.clone())).start())
//!     .collect::<Result<_, _>>()?;
//! for c in children {
//!     c.join()?;
//! }
//! assert_eq!(results.get(&3)?, Some(9));
//! # Ok(()) }
//! ```
//!
//! ## Logging
//!
//! [`log_to_stderr`] shows the library's lifecycle events, prefixed with
//! the process name and pid, in children too.
//!
//! # Outcome rules
//!
//! Every public call of the crate reports what happened in the same way.
//! A module's docs never contradict these rules; where one seems to, the
//! rule is right and the module is a bug.
//!
//! **1. Waiting calls come in four forms with one `Ok`.** A call that may
//! wait to take or hand over something (acquire a lock or permit, get or
//! put on a queue, receive on a connection, take a result) has a blocking
//! form, a `try_` form (never waits), a `_timeout(Duration)` form and a
//! `_deadline(Instant)` form, and all four return the same `Ok` value. A
//! call that only waits for a state (a process's end, an event, a barrier,
//! a queue's `join`) has the blocking, `_timeout` and `_deadline` forms;
//! the state itself is a query that never waits ([`Process::exitcode`],
//! [`sync::Event::is_set`], [`AsyncResult::ready`]).
//!
//! **2. "Not now" and "timed out" are errors, with their own kinds.** What a
//! call could not do is an `Err`:
//!
//! | situation | kind |
//! |---|---|
//! | a `try_` form: the lock is held, no permit is free, the result is not there | [`ErrorKind::WouldBlock`] |
//! | a `try_` receive: the queue or connection has no message (Python's `queue.Empty`) | [`ErrorKind::Empty`] |
//! | a `try_` put: the queue holds `maxsize` messages (Python's `queue.Full`) | [`ErrorKind::Full`] |
//! | a `_timeout` or `_deadline` form: the time ran out | [`ErrorKind::Timeout`] |
//!
//! Every `Duration` is accepted, `Duration::MAX` included: a timeout too
//! long to represent waits as long as it takes. Readiness queries that
//! Python answers with a `bool` keep doing so: [`Connection::poll`] and
//! [`connection::wait`] (an empty list when the time ran out).
//!
//! **3. Errors that hand something back.** A failed put hands the value back
//! ([`queue::PutError`], for local and managed queues alike); a lock whose
//! previous holder died hands the guard back ([`sync::OwnerDied`],
//! [`sync::AcquireError`]). Each of these has a `kind()` and converts into
//! [`Error`] with `?`. Every other call returns [`Error`]; match on
//! [`Error::kind`].
//!
//! **4. A lock holder that dies.** When a process dies holding a lock — a
//! [`sync::Lock`], [`sync::RLock`] or [`sync::Condition`], the lock of a
//! [`shared::Value`] or [`shared::Array`], or a manager's lock, rlock,
//! condition or semaphore permit — the next process to acquire it gets it
//! *and* is told:
//!
//! - the blocking acquisition of a local lock returns
//!   [`sync::LockResult<G>`] `= Result<G, OwnerDied<G>>`;
//! - its `try_`, `_timeout` and `_deadline` forms, and every acquisition of
//!   a manager's lock (which can also fail to reach the server), return
//!   [`sync::AcquireResult<G>`] `= Result<G, AcquireError<G>>`, whose
//!   [`AcquireError::OwnerDied`](sync::AcquireError::OwnerDied) carries the
//!   same `OwnerDied<G>`.
//!
//! The indication is sticky, as std's lock poisoning is: every acquisition,
//! in any process, reports it until one holder calls
//! [`OwnerDied::into_guard`](sync::OwnerDied::into_guard), which says the
//! data has been repaired. Turning it into an [`Error`] with `?` gives
//! [`ErrorKind::OwnerDied`], releases the lock and leaves the indication
//! set for the next holder; calls that lock inside ([`shared::Value::get`],
//! [`shared::Array::set`]) report it that way. A local semaphore's permits
//! have no owner: a dead holder's permit is not given back (nor in
//! Python). A manager's semaphore knows which thread took a permit: it
//! gives a dead holder's permits back and reports it as for a lock.
//!
//! **5. Names.** Python's method names where Python has a method (`put`,
//! `get`, `join`, `acquire`, `qsize`, `apply_async`, `imap_unordered`,
//! `terminate`, `exitcode`); Rust's names where Python writes syntax or a
//! builtin (`len`, `is_empty`, `contains`, `insert`). Python's spellings of
//! the forms of rule 1 (`put_nowait`, `get_nowait`, `acquire(block=False)`,
//! `join(timeout)`) are search aliases of the Rust forms in these docs,
//! never a second method. One name for one thing across the crate: the
//! guard of a manager's lock is a [`manager::ProxyGuard`], not a second
//! `LockGuard`.
//!
//! **6. Counts** (semaphore values, barrier parties, how many waiters to
//! notify) are `u32`; sizes and lengths are `usize`.
//!
//! **7. The kind says what happened.** [`ErrorKind::Eof`]: the other side is
//! gone (closed, or its process died). [`ErrorKind::Closed`]: this handle
//! or this queue was closed or shut down. [`ErrorKind::Remote`]: a manager
//! refused a request, shutting down included. [`ErrorKind::InvalidArgument`]:
//! an argument out of range, an unknown name included.
//! [`ErrorKind::AlreadyTaken`]: a value handed out once was asked for again.
//! [`ErrorKind::Timeout`] only ever means that *this call's* wait ran out;
//! a pool task stopped at its time limit is [`ErrorKind::TimeLimit`].
//! [`ErrorKind::Protocol`]: bytes from another process that do not follow
//! the protocol. [`ErrorKind::Io`]: the operating system refused, with the
//! OS error as [`source`](std::error::Error::source).
//!
//! # What happens on exit
//!
//! As in Python, when the main function returns, daemon children are
//! terminated and the others are joined. Unlike Python, children also die
//! when their parent dies abruptly (SIGKILL included): no orphans.

#![deny(unsafe_code)]
#![allow(clippy::needless_doctest_main)] // the tutorial shows where init() goes
#![warn(missing_docs)]

#[cfg(feature = "async")]
mod aio;
#[cfg(feature = "cluster")]
pub mod cluster;
mod codec;
pub mod connection;
pub mod context;
mod error;
mod frame;
mod fuzzing;
pub mod logging;
pub mod manager;
pub mod pool;
mod process;
pub mod queue;
mod runtime;
pub mod shared;
mod shm;
pub mod sync;
mod sys;
mod target;
mod task;
mod tempdir;
mod time;
mod wire;

pub use codec::Fd;
pub use connection::{Client, Connection, Listener, pipe};
pub use context::{
    Context, Preload, StartMethod, force_start_method, get_all_start_methods, get_context,
    get_start_method, preload, set_forkserver_preload, set_start_method,
};
pub use error::{Error, ErrorKind, Result};
pub use logging::log_to_stderr;
pub use manager::Manager;
pub use pool::{AsyncResult, Pool, PoolBuilder, StatePool, StatePoolBuilder};
pub use process::{
    ExitStatus, Process, ProcessBuilder, ProcessInfo, Resource, Run, Signal, Stdio,
    active_children, cpu_count, current_process, parent_process,
};
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use target::Target;
pub use task::{Partial, Task, partial};

/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`); not
/// part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod __fuzz {
    pub use crate::fuzzing::decode_everything;
}

/// Prepares this program for `multiproc`. Call it as the first line of
/// `main`.
///
/// In your own process it only records that it ran (and arranges for
/// children to be joined at exit). In a process that `multiproc` started by
/// executing the program again (the spawn and forkserver start methods), it
/// never returns: that process becomes the child, runs the function it was
/// sent, and exits. That is why nothing may come before it: whatever does
/// would run again in every child.
///
/// With the `cluster` feature, a program started with
/// `MULTIPROC_WORKER=<broker URL>` in its environment becomes a cluster
/// agent here ([`cluster::Worker`], with `MULTIPROC_WORKER_PROCESSES`
/// processes if set): it serves callers of this same program until
/// SIGTERM, then exits (code 1, with the reason on stderr, if it could not
/// start).
///
/// Calling it more than once is harmless.
pub fn init() {
    shared::tracker::serve_if_asked();
    runtime::init();
    #[cfg(feature = "cluster")]
    if let Some(url) = std::env::var_os("MULTIPROC_WORKER") {
        let mut w = cluster::Worker::new(url.to_string_lossy());
        if let Some(n) = std::env::var("MULTIPROC_WORKER_PROCESSES")
            .ok()
            .and_then(|n| n.parse().ok())
        {
            w = w.processes(n);
        }
        match w.run() {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!("multiproc cluster agent: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// Makes a test binary usable with `multiproc`: put `multiproc::test_support!();`
/// at the top level of each integration-test file (or once in a crate's unit
/// tests).
///
/// A test binary's `main` belongs to the test harness, so [`init()`] cannot be
/// its first line. This macro runs `init()` from a constructor instead,
/// before the harness starts, so children (which run the test binary again)
/// become children before any test does. Works with `cargo test` and
/// `cargo nextest`.
#[macro_export]
macro_rules! test_support {
    () => {
        #[allow(unsafe_code)]
        #[used]
        #[unsafe(link_section = ".init_array")]
        static __MULTIPROC_TEST_SUPPORT: extern "C" fn() = {
            extern "C" fn __multiproc_test_support() {
                $crate::init()
            }
            __multiproc_test_support
        };
    };
}
