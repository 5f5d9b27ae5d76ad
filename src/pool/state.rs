//! Per-worker state (mpire's `worker_state` and `worker_exit`):
//! [`PoolBuilder::worker_state`], [`StatePoolBuilder`], [`StatePool`].
//!
//! Nothing new crosses to a worker: the state's builder runs as the pool's
//! initializer ([`state_init`], a [`TaskFn`] named across `exec` like any
//! initializer), which first runs the user's own initializer, then builds
//! the state and keeps it in the worker (`state_slot.rs`). A task that
//! takes the state is a plain task ([`stateful`]) that borrows it there.
//! The exit hook is named by a [`FnRef`] in the initializer's arguments,
//! and its values come back through a [`Queue`] that travels with them.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, ErrorKind, PanicReport, Result};
use crate::queue::Queue;
use crate::sys::image::{FnRef, conjure};

use super::api::Pool;
use super::async_result::AsyncResult;
use super::builder::PoolBuilder;
use super::core::InitCall;
use super::state_slot;
use super::stream::IMap;
use super::worker::{Captured, Ctx, TaskFn, TaskRef};
use crate::task::assert_no_captures;

/// What a worker's exit hook sends back: its value, encoded, or why there
/// is none (the hook panicked, the value could not be encoded).
type ExitMsg = std::result::Result<Vec<u8>, String>;

/// The exit hook as it crosses to a worker: takes the state out of the
/// slot, runs the hook on it.
type ExitFn = fn(&()) -> ExitMsg;
/// How an exit hook travels to the workers.
type ExitRef = FnRef<ExitFn, crate::sys::image::ExitHooks>;

/// The initializer's arguments when the pool has a worker state.
#[derive(Serialize, Deserialize)]
#[serde(bound = "A: Serialize + DeserializeOwned")]
struct StateArgs<A> {
    /// The user's own initializer: its function, its encoded arguments,
    /// and how many descriptors of the table are its (the last ones).
    init: Option<(TaskRef, Vec<u8>, u32)>,
    build: A,
    exit: Option<(ExitRef, Queue<ExitMsg>)>,
}

/// Makes the pool's initializer once the exit hook is known.
type MakeInit = Box<dyn FnOnce(Option<(ExitRef, Queue<ExitMsg>)>) -> Result<InitCall> + Send>;

/// Options for a pool whose workers keep a state of type `S` (made by
/// [`PoolBuilder::worker_state`]); `E` is what the exit hook returns
/// ([`worker_exit`](StatePoolBuilder::worker_exit)), `()` without one.
#[must_use = "a StatePoolBuilder does nothing until build() is called"]
pub struct StatePoolBuilder<S, E = ()> {
    base: PoolBuilder,
    make: MakeInit,
    exit: Option<ExitRef>,
    _types: PhantomData<fn() -> (S, E)>,
}

impl<S, E> fmt::Debug for StatePoolBuilder<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatePoolBuilder")
            .field("base", &self.base)
            .field("state", &std::any::type_name::<S>())
            .field("exit", &self.exit.is_some())
            .finish()
    }
}

impl PoolBuilder {
    /// Gives every worker a state of its own (mpire's `worker_state`):
    /// `build(args)` runs once in each worker process when it starts,
    /// after the [`initializer`](PoolBuilder::initializer) if there is
    /// one, and the tasks of [`StatePool::map_with_state`] and the other
    /// `_with_state` calls get `&mut` to it. Several arguments: a tuple.
    ///
    /// Call it after the other options (it returns a
    /// [`StatePoolBuilder`], whose [`build`](StatePoolBuilder::build)
    /// makes a [`StatePool`]). A task that takes another type of state
    /// does not compile, and neither does a `_with_state` call on a plain
    /// [`Pool`].
    ///
    /// `args` travel as an initializer's do, so they may hold a
    /// [`Queue`], a lock, shared memory or a pipe end, under every start
    /// method. The state itself never leaves the worker: it need not be
    /// serde, `Send` or `Clone` (a database connection, a cache, a model).
    ///
    /// A worker replaced after [`maxtasksperchild`](PoolBuilder::maxtasksperchild)
    /// tasks, after passing [`max_memory_per_worker`](PoolBuilder::max_memory_per_worker),
    /// after dying or being killed (time limit, cancel) starts with a
    /// fresh state: `build` runs again in the new worker. A task that
    /// panics leaves its worker's state as the task left it, and the
    /// worker goes on with it; other workers' states are untouched.
    ///
    /// ```
    /// # multiproc::init();
    /// use multiproc::Pool;
    ///
    /// struct Cache { hits: u64 }
    ///
    /// fn make(start: u64) -> Cache { Cache { hits: start } }
    /// fn count(cache: &mut Cache, x: u64) -> u64 { cache.hits += 1; x * 10 }
    /// fn report(cache: &mut Cache) -> u64 { cache.hits }
    ///
    /// let pool = Pool::builder()
    ///     .processes(2)
    ///     .worker_state(make, 0)
    ///     .worker_exit(report)
    ///     .build()?;
    /// assert_eq!(pool.map_with_state(count, 0..4u64)?, [0, 10, 20, 30]);
    /// pool.close();
    /// pool.join()?;
    /// let hits: u64 = pool.worker_exit_results().into_iter().map(|r| r.unwrap()).sum();
    /// assert_eq!(hits, 4);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// A task that wants another state, or a `_with_state` call on a pool
    /// without state, is a compile-time error:
    ///
    /// ```compile_fail
    /// # multiproc::init();
    /// use multiproc::Pool;
    /// fn add(total: &mut u64, x: u64) -> u64 { *total += x; *total }
    /// fn make(_: ()) -> String { String::new() }
    /// let pool = Pool::builder().worker_state(make, ()).build().unwrap();
    /// let _ = pool.map_with_state(add, 0..3u64); // the state is a String, not a u64
    /// ```
    ///
    /// ```compile_fail
    /// # multiproc::init();
    /// use multiproc::Pool;
    /// fn add(total: &mut u64, x: u64) -> u64 { *total += x; *total }
    /// let pool = Pool::new(1).unwrap();
    /// let _ = pool.map_with_state(add, 0..3u64); // a plain Pool has no state
    /// ```
    ///
    /// # Errors
    ///
    /// [`StatePoolBuilder::build`] fails with
    /// [`ErrorKind::Encode`] if `args` cannot be encoded (a `build`
    /// that captures variables does not build). If `build` panics in a worker, the pool stops as after an
    /// initializer's panic: every task fails with its message.
    pub fn worker_state<B, A, S>(mut self, build: B, args: A) -> StatePoolBuilder<S>
    where
        B: Fn(A) -> S + Copy + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        S: 'static,
    {
        let _ = build;
        let user = self.init.take();
        assert_no_captures::<B>();
        let make: MakeInit = {
            let make: MakeInit = Box::new(move |exit| {
                let user = user.transpose()?;
                let args = StateArgs {
                    init: user
                        .as_ref()
                        .map(|c| (c.task, c.bytes.clone(), c.fds.len() as u32)),
                    build: args,
                    exit,
                };
                let encoded = codec::encode(&args)?;
                let mut fds = encoded.fds;
                if let Some(user) = &user {
                    for fd in user.fds.iter() {
                        fds.push(fd.try_clone().map_err(|e| {
                            Error::io("could not duplicate an initializer's descriptor", e)
                        })?);
                    }
                }
                let task: TaskFn = state_init::<B, A, S>;
                Ok(InitCall {
                    task: TaskRef::new(task),
                    bytes: encoded.bytes,
                    fds: Arc::new(fds),
                })
            });
            make
        };
        StatePoolBuilder {
            base: self,
            make,
            exit: None,
            _types: PhantomData,
        }
    }
}

impl<S: 'static> StatePoolBuilder<S> {
    /// Runs `hook(&mut state)` in each worker when it leaves by itself
    /// (mpire's `worker_exit`): at [`join`](Pool::join) after
    /// [`close`](Pool::close), and when it is replaced after
    /// `maxtasksperchild` tasks or its memory cap. Its value comes back to
    /// the pool: [`StatePool::worker_exit_results`]. The state is dropped
    /// after the hook (without a hook, when the worker leaves).
    ///
    /// A worker that dies (SIGKILL, a crash, killed for its time limit or
    /// by `cancel`) or is stopped by [`terminate`](Pool::terminate) (or
    /// dropping the pool) runs no hook: there is no value for it. A
    /// worker whose state could not be built has none either.
    ///
    /// # Errors
    ///
    /// A `hook` that captures variables does not build. A hook that
    /// panics, or whose value cannot be encoded, gives an error
    /// in [`worker_exit_results`](StatePool::worker_exit_results).
    pub fn worker_exit<H, E>(self, hook: H) -> StatePoolBuilder<S, E>
    where
        H: Fn(&mut S) -> E + Copy + 'static,
        E: Serialize + DeserializeOwned + 'static,
    {
        let _ = hook;
        assert_no_captures::<H>();
        let exit: ExitFn = exit_entry::<S, H, E>;
        let exit = FnRef::new(exit);
        StatePoolBuilder {
            base: self.base,
            make: self.make,
            exit: Some(exit),
            _types: PhantomData,
        }
    }
}

impl<S: 'static, E: DeserializeOwned> StatePoolBuilder<S, E> {
    /// Starts the workers; each builds its state.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`]; [`ErrorKind::Encode`] if the builder's arguments cannot be encoded;
    /// [`ErrorKind::Io`] if the exit values' queue cannot be made.
    pub fn build(mut self) -> Result<StatePool<S, E>> {
        let make = self.make;
        let (exit, exits) = match self.exit {
            Some(f) => {
                let q: Queue<ExitMsg> = Queue::new()?;
                (Some((f, q.clone())), Some(q))
            }
            None => (None, None),
        };
        self.base.init = Some(make(exit));
        Ok(StatePool {
            pool: self.base.build()?,
            exits,
            _types: PhantomData,
        })
    }
}

/// A [`Pool`] whose workers each keep a state of type `S` (see
/// [`PoolBuilder::worker_state`]); `E` is what their exit hook returns.
///
/// It dereferences to the [`Pool`], so every plain call (`map`,
/// `apply_async`, `close`, `join`...) works on it as well.
pub struct StatePool<S, E = ()> {
    pool: Pool,
    exits: Option<Queue<ExitMsg>>,
    _types: PhantomData<fn() -> (S, E)>,
}

impl<S, E> fmt::Debug for StatePool<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatePool")
            .field("pool", &self.pool)
            .field("state", &std::any::type_name::<S>())
            .finish()
    }
}

impl<S, E> Deref for StatePool<S, E> {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        &self.pool
    }
}

impl<S: 'static, E: DeserializeOwned> StatePool<S, E> {
    /// [`Pool::map`] of a task that takes its worker's state:
    /// `f(&mut state, item)` for every item, results in order.
    ///
    /// # Errors
    ///
    /// As [`Pool::map`] (an `f` that captures variables does not
    /// build).
    pub fn map_with_state<F, T, R, I>(&self, f: F, input: I) -> Result<Vec<R>>
    where
        F: Fn(&mut S, T) -> R + Copy + 'static,
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        let _ = f;
        assert_no_captures::<F>();
        self.pool.map(stateful::<F, S, T, R>, input)
    }

    /// [`Pool::apply`] of a task that takes its worker's state.
    ///
    /// # Errors
    ///
    /// As [`Pool::apply`].
    pub fn apply_with_state<F, T, R>(&self, f: F, arg: T) -> Result<R>
    where
        F: Fn(&mut S, T) -> R + Copy + 'static,
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let _ = f;
        assert_no_captures::<F>();
        self.pool.apply(stateful::<F, S, T, R>, arg)
    }

    /// [`Pool::apply_async`] of a task that takes its worker's state.
    ///
    /// # Errors
    ///
    /// As [`Pool::apply_async`].
    pub fn apply_async_with_state<F, T, R>(&self, f: F, arg: T) -> Result<AsyncResult<R>>
    where
        F: Fn(&mut S, T) -> R + Copy + 'static,
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let _ = f;
        assert_no_captures::<F>();
        self.pool.apply_async(stateful::<F, S, T, R>, arg)
    }

    /// [`Pool::map_async`] of a task that takes its worker's state.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_async`].
    pub fn map_async_with_state<F, T, R, I>(&self, f: F, input: I) -> Result<AsyncResult<Vec<R>>>
    where
        F: Fn(&mut S, T) -> R + Copy + 'static,
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        let _ = f;
        assert_no_captures::<F>();
        self.pool.map_async(stateful::<F, S, T, R>, input)
    }

    /// [`Pool::imap`] of a task that takes its worker's state.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap`].
    pub fn imap_with_state<F, T, R, I>(&self, f: F, input: I) -> Result<IMap<'_, I::IntoIter, R>>
    where
        F: Fn(&mut S, T) -> R + Copy + 'static,
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        let _ = f;
        assert_no_captures::<F>();
        self.pool.imap(stateful::<F, S, T, R>, input)
    }

    /// [`Pool::imap_unordered`] of a task that takes its worker's state.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap_unordered`].
    pub fn imap_unordered_with_state<F, T, R, I>(
        &self,
        f: F,
        input: I,
    ) -> Result<IMap<'_, I::IntoIter, R>>
    where
        F: Fn(&mut S, T) -> R + Copy + 'static,
        T: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = T>,
    {
        let _ = f;
        assert_no_captures::<F>();
        self.pool.imap_unordered(stateful::<F, S, T, R>, input)
    }

    /// The exit hook's values of the workers that have left since the last
    /// call, one per worker, in the order they left: after
    /// [`close`](Pool::close) and [`join`](Pool::join), every worker's,
    /// including those replaced earlier (`maxtasksperchild`, memory cap).
    /// A worker that was killed (SIGKILL, time limit, `cancel`,
    /// [`terminate`](Pool::terminate)) has none. Empty without a hook.
    ///
    /// # Errors
    ///
    /// Per worker: [`ErrorKind::Panicked`] if its hook panicked (or its
    /// value could not be encoded), [`ErrorKind::Decode`] if the value
    /// could not be decoded here.
    pub fn worker_exit_results(&self) -> Vec<Result<E>> {
        let Some(q) = &self.exits else {
            return Vec::new();
        };
        q.try_iter()
            .map(|msg| match msg {
                Ok(bytes) => postcard::from_bytes::<E>(&bytes).map_err(|e| {
                    Error::new(
                        ErrorKind::Decode,
                        format!(
                            "could not decode a worker exit value of type {}",
                            std::any::type_name::<E>()
                        ),
                    )
                    .with_source(e)
                }),
                Err(message) => Err(Error::new(ErrorKind::Panicked, message)),
            })
            .collect()
    }
}

/// The pool's initializer when it has a worker state (a [`TaskFn`], run
/// in the worker as any initializer): the user's initializer, then the
/// state, then the exit hook. A registered entry point: a [`TaskFn`], in
/// `sys::image::Tasks`.
// Placement only; the section holds functions of this signature alone
// (`sys::image::Section`'s contract).
#[allow(unsafe_code)]
#[unsafe(link_section = "multiproc_task")]
fn state_init<B, A, S>(_: &mut Captured, input: &[u8], _count: u32, ctx: &mut Ctx)
where
    B: Fn(A) -> S + Copy + 'static,
    A: Serialize + DeserializeOwned,
    S: 'static,
{
    let args: StateArgs<A> = match postcard::from_bytes(input) {
        Ok(args) => args,
        Err(e) => {
            ctx.init_failed(format!(
                "could not decode the worker state's arguments: {e}"
            ));
            return;
        }
    };
    if let Some((task, bytes, n)) = &args.init {
        // The user's descriptors are the last of the table.
        let fds = codec::take_incoming_tail(*n as usize);
        match task.resolve(true) {
            None => {
                ctx.init_failed("could not be found in the worker".into());
                return;
            }
            Some(f) => codec::with_incoming(fds, || f(&mut Captured::none(), bytes, 1, ctx)),
        }
        if ctx.has_failed() {
            return;
        }
    }
    let Some(build) = conjure::<B>() else {
        ctx.init_failed("(the worker state's builder) captures state".into());
        return;
    };
    let build_args = args.build;
    match std::panic::catch_unwind(AssertUnwindSafe(move || build(build_args))) {
        Ok(state) => state_slot::set_state(Box::new(state)),
        Err(payload) => {
            ctx.init_failed(format!(
                "(the worker state's builder) {}",
                panic_text(&*payload)
            ));
            return;
        }
    }
    if let Some((exit, queue)) = args.exit {
        let Some(exit) = exit.resolve(true) else {
            ctx.init_failed("(the worker exit hook) could not be found in the worker".into());
            return;
        };
        state_slot::set_at_exit(Box::new(move || {
            // Nobody to tell if the put fails: the value is lost, and
            // `worker_exit_results` has one fewer.
            let _ = queue.put(exit(&()));
        }));
    }
}

/// "panicked at file:line: message", from a caught panic.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let report = PanicReport::take(payload);
    let at = report
        .location
        .as_deref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default();
    format!("panicked{at}: {}", report.message)
}

/// Runs the exit hook `H` on the worker's state (an [`ExitFn`]). A
/// registered entry point, in `sys::image::ExitHooks`.
// Placement only; the section holds functions of this signature alone
// (`sys::image::Section`'s contract).
#[allow(unsafe_code)]
#[unsafe(link_section = "multiproc_exit")]
fn exit_entry<S, H, E>(_: &()) -> ExitMsg
where
    S: 'static,
    H: Fn(&mut S) -> E + Copy + 'static,
    E: Serialize,
{
    let hook = conjure::<H>().ok_or("the worker exit hook captures state")?;
    let mut state = state_slot::take_state::<S>().ok_or("the worker has no state")?;
    match std::panic::catch_unwind(AssertUnwindSafe(|| hook(&mut state))) {
        Ok(value) => postcard::to_allocvec(&value).map_err(|e| {
            format!(
                "could not encode the worker exit value of type {}: {e}",
                std::any::type_name::<E>()
            )
        }),
        Err(payload) => Err(format!("the worker exit hook {}", panic_text(&*payload))),
    }
}

/// A task that takes its worker's state: a plain task (a function item,
/// zero-sized), which borrows the state in the worker.
fn stateful<F, S, T, R>(arg: T) -> R
where
    F: Fn(&mut S, T) -> R + Copy + 'static,
    S: 'static,
{
    let f = conjure::<F>().expect("checked by the pool: the task captures nothing");
    state_slot::with_state::<S, R>(|state| f(state, arg))
}
