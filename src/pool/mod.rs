//! Process pools: Python's `multiprocessing.Pool`, which never hangs when a
//! worker dies.
//!
//! ```
//! # multiproc::init();
//! use multiproc::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//! fn add(a: u64, b: u64) -> u64 {
//!     a + b
//! }
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
//! let r = pool.apply_async(add, (1, 2))?; // several arguments: a tuple
//! assert_eq!(r.get()?, 3);
//! let mut sum = 0;
//! for item in pool.imap_unordered(square, 0..100)? {
//!     sum += item?;
//! }
//! assert_eq!(sum, 328_350);
//! pool.close();
//! pool.join()?;
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # How it works
//!
//! Each worker is a [`Process`](crate::Process) running a loop, with its
//! own socket pair to the pool. Tasks travel in chunks: consecutive items
//! of one call, encoded with postcard. The task function is named to each
//! worker once (like `Process` names a function across `exec`), then by a
//! small id. Several chunks are in flight per worker, so a worker never
//! waits for the pool between chunks, and it answers in batches.
//!
//! The pool knows which items it sent to which worker, in order, and each
//! worker counts the items it starts in a page of memory shared with the
//! pool. When a worker dies, the item it was running fails with an error
//! that names the item and how the worker died ([`ErrorKind::WorkerLost`](crate::ErrorKind::WorkerLost),
//! or [`ErrorKind::TimeLimit`](crate::ErrorKind::TimeLimit) when the pool killed it for passing its time
//! limit); the items it had not started go to the other workers, and a new
//! worker takes its place.
//!
//! Work goes on while nobody waits: a call that waits (`map`, `get`,
//! `join`, an `imap` iterator's `next`) does the pool's work itself —
//! sending chunks, reading results, noticing dead workers — in one
//! `poll(2)` over the workers' sockets and pidfds; after `apply_async` or
//! `map_async` returns, the pool's background thread does it,
//! and runs callbacks within about a millisecond of their result. Details
//! and measurements are in `src/pool/README.md`.
//!
//! # Queues, locks and pipe ends in tasks
//!
//! Task arguments (every form: `apply_async`, `map`, `imap`, `starmap`)
//! and the initializer's arguments may hold what carries descriptors — a
//! [`Queue`](crate::Queue), a [`Lock`](crate::sync::Lock) or another
//! primitive, a [`Value`](crate::shared::Value), a
//! [`SharedMemory`](crate::shared::SharedMemory), a pipe end, an
//! [`Fd`](crate::Fd) — under every start method, as Python's
//! `pool.apply_async(f, (queue,))`. The worker gets its own handle on the
//! same object; an item that runs again after its worker died gets one
//! again. Results cannot hold descriptors: such a result is an
//! [`ErrorKind::Encode`](crate::ErrorKind::Encode) error for that item,
//! and the pool goes on.
//!
//! ```
//! # multiproc::init();
//! use multiproc::{Pool, Queue};
//!
//! fn report(q: Queue<u64>, x: u64) -> u64 {
//!     q.put(x * 10).unwrap();
//!     x
//! }
//!
//! let pool = Pool::new(2)?;
//! let q = Queue::new()?;
//! let items: Vec<_> = (0..4).map(|x| (q.clone(), x)).collect();
//! assert_eq!(pool.starmap(report, items)?, [0, 1, 2, 3]);
//! let mut got: Vec<u64> = (0..4).map(|_| q.get().unwrap()).collect();
//! got.sort();
//! assert_eq!(got, [0, 10, 20, 30]);
//! # pool.close(); pool.join()?;
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # Python's names
//!
//! | Python | multiproc |
//! |---|---|
//! | `Pool(processes, initializer, initargs, maxtasksperchild)` | [`Pool::new(n)`](Pool::new), [`Pool::builder()`] |
//! | `apply(f, args)`, `apply_async(f, args, callback, error_callback)` | [`Pool::apply`], [`Pool::apply_async`], [`Pool::apply_async_with`] |
//! | `map`, `map_async`, `starmap`, `starmap_async` | [`Pool::map`], [`Pool::map_async`], [`Pool::starmap`], [`Pool::starmap_async`] (a multi-argument function takes tuples) |
//! | `imap`, `imap_unordered` | [`Pool::imap`], [`Pool::imap_unordered`]: iterators of `Result` |
//! | `chunksize=n` | [`Pool::chunksize(n)`](Pool::chunksize)`.map(..)` |
//! | `AsyncResult.get(timeout)`, `wait`, `ready`, `successful` | [`AsyncResult`] |
//! | `close`, `terminate`, `join`, `with Pool() as p:` | same; dropping the pool terminates it |
//! | `Future.cancel`, `cancelled`, `running`, `done`, `add_done_callback` | [`AsyncResult::cancel`] (a running task's worker is killed and replaced), [`AsyncResult::cancelled`], [`AsyncResult::running`], [`AsyncResult::done`], [`AsyncResult::add_done_callback`] |
//! | `concurrent.futures.as_completed`, `wait(return_when=...)` | [`as_completed`], [`wait`] with [`ReturnWhen`] |
//! | mpire's `enable_insights=True`, `get_insights()`, `print_insights()` | [`PoolBuilder::insights`], [`Pool::insights`] ([`Insights`]: a table when printed) |
//! | mpire's `worker_state`, `worker_exit` | [`PoolBuilder::worker_state`], [`StatePoolBuilder::worker_exit`], [`StatePool::map_with_state`], [`StatePool::worker_exit_results`] |
//! | `Executor.shutdown(wait, cancel_futures)`, `terminate_workers()`, `kill_workers()` | [`Pool::shutdown`], [`Pool::terminate_workers`], [`Pool::kill_workers`] |

mod api;
mod async_result;
mod builder;
pub(crate) mod core;
pub(crate) mod frame;
mod futures;
mod insights;
mod progress;
mod shared;
mod state;
pub(crate) mod state_slot;
mod stream;
mod watch;
pub(crate) mod worker;

pub use self::api::{Chunked, Pool, PoolStats};
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub use self::async_result::__last_wake_ns;
pub use self::async_result::{AsyncResult, Awaiting};
pub use self::builder::PoolBuilder;
pub use self::futures::{AsCompleted, Done, ReturnWhen, as_completed, wait};
pub use self::insights::{Insights, WorkerInsights};
pub use self::progress::ProgressUpdate;
pub use self::state::{StatePool, StatePoolBuilder};
pub use self::stream::IMap;
#[cfg(feature = "async")]
pub use self::stream::IMapStream;

// The pool and its results can move between threads and be shared.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<AsyncResult<u64>>();
};
