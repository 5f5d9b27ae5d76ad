//! The manager's blocking objects, server side: queues, locks, semaphores,
//! conditions, events and barriers, in plain Rust (a `Mutex` and a
//! `Condvar` each) inside the server process.
//!
//! Every client connection has its own server thread, so a request that
//! waits (an `acquire`, a `get` on an empty queue) parks that thread on
//! the object's condition variable and holds up nobody else. Waits run in
//! slices of [`SLICE`]: between slices the thread checks whether its client
//! hung up (a client waiting for a reply sends nothing, so a readable
//! socket means end of file) and whether the server is stopping, so a dead
//! waiter never holds a thread, a permit or a barrier slot for long.
//!
//! Ownership is per connection (one per client thread): the server
//! remembers which connection holds which lock or permits, and when a
//! connection closes it gives back what it held and marks the object, so
//! that acquirers learn that an owner died (the `EOWNERDEAD` of a robust
//! pthread mutex). The mark is sticky, as std's lock poisoning is: every
//! acquisition reports it until a holder acknowledges it
//! (`Op::Acknowledge`, sent by `OwnerDied::into_guard`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::protocol::{Bytes, ErrorReply, Kind, Op, Reply};

/// What a request runs with: who asks, on which connection, and the
/// blocking objects that connection may hold something of.
pub(crate) struct Ctx<'a> {
    pub(crate) conn_id: u64,
    pub(crate) sock: BorrowedFd<'a>,
    pub(crate) stop: &'a AtomicBool,
    /// The object the current operation is on.
    pub(crate) object: u64,
    pub(crate) held: &'a mut HashSet<u64>,
}

impl Ctx<'_> {
    /// Whether the server is stopping (a waiting request then gives up).
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether the client hung up: a client waiting for its reply sends
    /// nothing, so anything readable means end of file.
    pub(crate) fn hung_up(&self) -> bool {
        crate::sys::socket::wait_readable(&[self.sock], Some(Instant::now())).map_or(true, |r| r[0])
    }
}

/// How long a waiting server thread sleeps before checking on its client.
const SLICE: Duration = Duration::from_millis(100);

/// A blocking object: its state behind a mutex, and one condition variable
/// that is notified on every change.
pub(crate) struct Blocking {
    state: Mutex<State>,
    cv: Condvar,
}

/// Who holds a lock: the connection and how many times (RLock, Condition).
type Holder = Option<(u64, u64)>;

enum State {
    Queue {
        items: VecDeque<Bytes>,
        maxsize: u64,
        joinable: bool,
        unfinished: u64,
        /// Joinable queues: the items each connection took and has not
        /// called `task_done` for, oldest first; put back at the front of
        /// the queue if that connection closes.
        taken: HashMap<u64, VecDeque<Bytes>>,
    },
    Lock {
        holder: Holder,
        reentrant: bool,
        owner_died: bool,
    },
    Semaphore {
        value: u32,
        bound: Option<u32>,
        /// Permits each connection acquired and did not release.
        holdings: HashMap<u64, u64>,
        /// Permits were given back for a dead client, unacknowledged.
        owner_died: bool,
    },
    Condition {
        holder: Holder,
        owner_died: bool,
        next_ticket: u64,
        waiting: VecDeque<u64>,
        notified: HashSet<u64>,
    },
    Event(bool),
    Barrier {
        parties: u32,
        count: u32,
        generation: u64,
        /// The generation that `reset` ended while some were waiting.
        reset_generation: Option<u64>,
        broken: bool,
    },
}

/// Why a wait ended.
#[derive(PartialEq, Eq)]
enum Waited {
    Ready,
    TimedOut,
    /// The client hung up or the server is stopping.
    Abandoned,
}

fn refused(why: impl Into<String>) -> Reply {
    Reply::Error(ErrorReply::NotAcquired(why.into()))
}

fn wrong(op: &Op) -> Reply {
    Reply::Error(ErrorReply::WrongKind(format!(
        "{} does not apply to this kind of object",
        op.name()
    )))
}

impl Blocking {
    /// The object for `kind`, if it is a blocking kind.
    pub(crate) fn new(kind: Kind) -> Option<Blocking> {
        let state = match kind {
            Kind::Queue { maxsize, joinable } => State::Queue {
                items: VecDeque::new(),
                maxsize,
                joinable,
                unfinished: 0,
                taken: HashMap::new(),
            },
            Kind::Lock | Kind::RLock => State::Lock {
                holder: None,
                reentrant: kind == Kind::RLock,
                owner_died: false,
            },
            Kind::Semaphore { value, bounded } => State::Semaphore {
                value,
                bound: bounded.then_some(value),
                holdings: HashMap::new(),
                owner_died: false,
            },
            Kind::Condition => State::Condition {
                holder: None,
                owner_died: false,
                next_ticket: 0,
                waiting: VecDeque::new(),
                notified: HashSet::new(),
            },
            Kind::Event => State::Event(false),
            Kind::Barrier { parties } => State::Barrier {
                parties: parties.max(1),
                count: 0,
                generation: 0,
                reset_generation: None,
                broken: false,
            },
            Kind::Dict | Kind::List | Kind::Set | Kind::Namespace | Kind::Value => return None,
        };
        Some(Blocking {
            state: Mutex::new(state),
            cv: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `ready` holds, the deadline passes, or the client or
    /// server goes away. `ready` is checked first, so a zero timeout is a
    /// non-blocking attempt; a timeout too long to represent as an instant
    /// (`Duration::MAX`) waits as long as it takes.
    fn wait<'a>(
        &'a self,
        mut g: MutexGuard<'a, State>,
        timeout: Option<Duration>,
        ctx: &Ctx<'_>,
        mut ready: impl FnMut(&mut State) -> bool,
    ) -> (MutexGuard<'a, State>, Waited) {
        let deadline = timeout.and_then(crate::time::deadline_after);
        loop {
            if ready(&mut g) {
                return (g, Waited::Ready);
            }
            let slice = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return (g, Waited::TimedOut);
                    }
                    (d - now).min(SLICE)
                }
                None => SLICE,
            };
            let (g2, result) = self
                .cv
                .wait_timeout(g, slice)
                .unwrap_or_else(|p| p.into_inner());
            g = g2;
            if ctx.stopping() || (result.timed_out() && ctx.hung_up()) {
                return (g, Waited::Abandoned);
            }
        }
    }

    /// Wakes every waiter (the server is stopping).
    pub(crate) fn wake_all(&self) {
        let _g = self.lock();
        self.cv.notify_all();
    }

    /// Gives back what connection `conn` held: it closed.
    pub(crate) fn abandon(&self, conn: u64) {
        let mut g = self.lock();
        match &mut *g {
            State::Lock {
                holder, owner_died, ..
            }
            | State::Condition {
                holder, owner_died, ..
            } => {
                if holder.is_some_and(|(c, _)| c == conn) {
                    *holder = None;
                    *owner_died = true;
                }
            }
            State::Semaphore {
                value,
                bound,
                holdings,
                owner_died,
            } => {
                if let Some(n) = holdings.remove(&conn) {
                    let room = bound.unwrap_or(u32::MAX).saturating_sub(*value);
                    *value += u32::try_from(n).unwrap_or(u32::MAX).min(room);
                    *owner_died = true;
                }
            }
            State::Queue { items, taken, .. } => {
                // Its unfinished tasks go back to the front, in order, for
                // another consumer: `join` still completes.
                let Some(mine) = taken.remove(&conn) else {
                    return;
                };
                for item in mine.into_iter().rev() {
                    items.push_front(item);
                }
            }
            State::Event(_) | State::Barrier { .. } => return,
        }
        self.cv.notify_all();
    }

    /// Runs one operation for the client of `ctx`.
    pub(crate) fn apply(&self, op: Op, ctx: &mut Ctx<'_>) -> Reply {
        match op {
            Op::Notify(n) => return self.notify(Some(n), ctx),
            Op::NotifyAll => return self.notify(None, ctx),
            _ => {}
        }
        let g = self.lock();
        let (g, reply, changed) = match op {
            Op::Acquire { timeout } => self.acquire(g, timeout, ctx),
            Op::Release => self.release(g, ctx),
            Op::Acknowledge => {
                let mut g = g;
                let reply = acknowledge(&mut g, ctx.conn_id);
                (g, reply, false)
            }
            Op::Wait { timeout } => self.wait_op(g, timeout, ctx),
            Op::Put { item, timeout } => self.put(g, item, timeout, ctx),
            Op::Take { timeout } => self.take(g, timeout, ctx),
            Op::TaskDone => {
                let mut g = g;
                let reply = task_done(&mut g, ctx.conn_id);
                let changed = matches!(reply, Reply::Done);
                (g, reply, changed)
            }
            Op::JoinTasks { timeout } => {
                if !matches!(&*g, State::Queue { joinable: true, .. }) {
                    return wrong(&Op::JoinTasks { timeout });
                }
                let (g, w) = self.wait(g, timeout, ctx, |s| {
                    matches!(s, State::Queue { unfinished: 0, .. })
                });
                let reply = match w {
                    Waited::Abandoned => Reply::Error(ErrorReply::ShuttingDown),
                    w => Reply::Bool(w == Waited::Ready),
                };
                (g, reply, false)
            }
            op => {
                let mut g = g;
                let (reply, changed) = instant(&mut g, op);
                (g, reply, changed)
            }
        };
        if changed {
            self.cv.notify_all();
        }
        drop(g);
        reply
    }

    fn acquire<'a>(
        &'a self,
        g: MutexGuard<'a, State>,
        timeout: Option<Duration>,
        ctx: &mut Ctx<'_>,
    ) -> (MutexGuard<'a, State>, Reply, bool) {
        let me = ctx.conn_id;
        match &*g {
            State::Lock { .. } | State::Condition { .. } | State::Semaphore { .. } => {}
            _ => return (g, wrong(&Op::Acquire { timeout }), false),
        }
        let (mut g, w) = self.wait(g, timeout, ctx, |s| match s {
            State::Lock {
                holder, reentrant, ..
            } => match holder {
                None => true,
                Some((c, _)) => *reentrant && *c == me,
            },
            State::Condition { holder, .. } => holder.is_none_or(|(c, _)| c == me),
            State::Semaphore { value, .. } => *value > 0,
            _ => false,
        });
        match w {
            Waited::TimedOut => return (g, Reply::Acquired(None), false),
            Waited::Abandoned => return (g, Reply::Error(ErrorReply::ShuttingDown), false),
            Waited::Ready => {}
        }
        ctx.held.insert(ctx.object);
        let died = match &mut *g {
            State::Lock {
                holder, owner_died, ..
            }
            | State::Condition {
                holder, owner_died, ..
            } => {
                match holder {
                    Some((_, n)) => *n += 1,
                    None => *holder = Some((me, 1)),
                }
                *owner_died
            }
            State::Semaphore {
                value,
                holdings,
                owner_died,
                ..
            } => {
                *value -= 1;
                *holdings.entry(me).or_insert(0) += 1;
                *owner_died
            }
            _ => unreachable!("checked above"),
        };
        (g, Reply::Acquired(Some(died)), false)
    }

    fn release<'a>(
        &'a self,
        mut g: MutexGuard<'a, State>,
        ctx: &Ctx<'_>,
    ) -> (MutexGuard<'a, State>, Reply, bool) {
        let me = ctx.conn_id;
        let reply = match &mut *g {
            State::Lock {
                holder, reentrant, ..
            } => match holder {
                None => refused("release of an unlocked lock"),
                Some((c, _)) if *reentrant && *c != me => {
                    refused("release of an RLock held by another client")
                }
                Some((_, n)) => {
                    *n -= 1;
                    if *n == 0 {
                        *holder = None;
                    }
                    Reply::Done
                }
            },
            State::Condition { holder, .. } => match holder {
                Some((c, n)) if *c == me => {
                    *n -= 1;
                    if *n == 0 {
                        *holder = None;
                    }
                    Reply::Done
                }
                _ => refused("release of a condition's lock this client does not hold"),
            },
            State::Semaphore {
                value,
                bound,
                holdings,
                ..
            } => {
                if bound.is_some_and(|b| *value >= b) {
                    refused(format!(
                        "BoundedSemaphore released too many times: its value {value} + 1 would pass its bound {}",
                        bound.unwrap_or(u32::MAX)
                    ))
                } else if *value == u32::MAX {
                    refused(format!(
                        "semaphore released too many times: its value {value} + 1 would overflow"
                    ))
                } else {
                    *value += 1;
                    // Mine first; else (a permit handed over) anyone's.
                    let who = if holdings.contains_key(&me) {
                        Some(me)
                    } else {
                        holdings.keys().next().copied()
                    };
                    if let Some(who) = who {
                        let n = holdings.get_mut(&who).expect("a key just seen");
                        *n -= 1;
                        if *n == 0 {
                            holdings.remove(&who);
                        }
                    }
                    Reply::Done
                }
            }
            _ => return (g, wrong(&Op::Release), false),
        };
        let changed = matches!(reply, Reply::Done);
        (g, reply, changed)
    }

    fn wait_op<'a>(
        &'a self,
        g: MutexGuard<'a, State>,
        timeout: Option<Duration>,
        ctx: &mut Ctx<'_>,
    ) -> (MutexGuard<'a, State>, Reply, bool) {
        match &*g {
            State::Event(_) => {
                let (g, w) = self.wait(g, timeout, ctx, |s| matches!(s, State::Event(true)));
                let reply = match w {
                    Waited::Abandoned => Reply::Error(ErrorReply::ShuttingDown),
                    w => Reply::Bool(w == Waited::Ready),
                };
                (g, reply, false)
            }
            State::Condition { .. } => self.condition_wait(g, timeout, ctx),
            State::Barrier { .. } => self.barrier_wait(g, timeout, ctx),
            _ => (g, wrong(&Op::Wait { timeout }), false),
        }
    }

    fn condition_wait<'a>(
        &'a self,
        mut g: MutexGuard<'a, State>,
        timeout: Option<Duration>,
        ctx: &mut Ctx<'_>,
    ) -> (MutexGuard<'a, State>, Reply, bool) {
        let me = ctx.conn_id;
        let State::Condition {
            holder,
            next_ticket,
            waiting,
            ..
        } = &mut *g
        else {
            unreachable!("checked by the caller")
        };
        let Some((owner, count)) = *holder else {
            return (
                g,
                refused("wait on a condition whose lock is not held"),
                false,
            );
        };
        if owner != me {
            return (
                g,
                refused("wait on a condition whose lock another client holds"),
                false,
            );
        }
        // Let go of the lock and queue up.
        *holder = None;
        let ticket = *next_ticket;
        *next_ticket += 1;
        waiting.push_back(ticket);
        self.cv.notify_all();
        let (mut g, w) = self.wait(g, timeout, ctx, |s| match s {
            State::Condition { notified, .. } => notified.contains(&ticket),
            _ => false,
        });
        let State::Condition {
            waiting, notified, ..
        } = &mut *g
        else {
            unreachable!("the kind never changes")
        };
        let was_notified = notified.remove(&ticket);
        if !was_notified {
            waiting.retain(|t| *t != ticket);
        }
        if w == Waited::Abandoned {
            return (g, Reply::Error(ErrorReply::ShuttingDown), true);
        }
        // Take the lock back, however long that takes.
        let (mut g, w) = self.wait(g, None, ctx, |s| match s {
            State::Condition { holder, .. } => holder.is_none(),
            _ => false,
        });
        if w == Waited::Abandoned {
            return (g, Reply::Error(ErrorReply::ShuttingDown), true);
        }
        let State::Condition {
            holder, owner_died, ..
        } = &mut *g
        else {
            unreachable!("the kind never changes")
        };
        *holder = Some((me, count));
        let died = *owner_died;
        (
            g,
            Reply::Waited {
                notified: was_notified,
                owner_died: died,
            },
            true,
        )
    }

    fn barrier_wait<'a>(
        &'a self,
        mut g: MutexGuard<'a, State>,
        timeout: Option<Duration>,
        ctx: &mut Ctx<'_>,
    ) -> (MutexGuard<'a, State>, Reply, bool) {
        let State::Barrier {
            parties,
            count,
            generation,
            broken,
            ..
        } = &mut *g
        else {
            unreachable!("checked by the caller")
        };
        if *broken {
            return (g, Reply::Error(ErrorReply::BrokenBarrier), false);
        }
        let index = *count;
        *count += 1;
        if *count == *parties {
            *count = 0;
            *generation += 1;
            return (g, Reply::Len(u64::from(index)), true);
        }
        let mine = *generation;
        let (mut g, w) = self.wait(g, timeout, ctx, |s| match s {
            State::Barrier {
                generation, broken, ..
            } => *generation != mine || *broken,
            _ => false,
        });
        let State::Barrier {
            count,
            generation,
            reset_generation,
            broken,
            ..
        } = &mut *g
        else {
            unreachable!("the kind never changes")
        };
        if *generation != mine {
            let reply = if *reset_generation == Some(mine) {
                Reply::Error(ErrorReply::BrokenBarrier)
            } else {
                Reply::Len(u64::from(index))
            };
            return (g, reply, false);
        }
        // Broken, timed out, or our client left: the barrier breaks for
        // everyone (as Python's does on a timeout).
        *broken = true;
        *count -= 1;
        let reply = match w {
            Waited::Abandoned => Reply::Error(ErrorReply::ShuttingDown),
            Waited::TimedOut => Reply::Error(ErrorReply::BarrierTimeout),
            Waited::Ready => Reply::Error(ErrorReply::BrokenBarrier),
        };
        (g, reply, true)
    }

    fn put<'a>(
        &'a self,
        g: MutexGuard<'a, State>,
        item: Bytes,
        timeout: Option<Duration>,
        ctx: &Ctx<'_>,
    ) -> (MutexGuard<'a, State>, Reply, bool) {
        if !matches!(&*g, State::Queue { .. }) {
            return (g, wrong(&Op::Take { timeout }), false);
        }
        let (mut g, w) = self.wait(g, timeout, ctx, |s| match s {
            State::Queue { items, maxsize, .. } => *maxsize == 0 || (items.len() as u64) < *maxsize,
            _ => false,
        });
        match w {
            Waited::TimedOut => (g, Reply::Bool(false), false),
            Waited::Abandoned => (g, Reply::Error(ErrorReply::ShuttingDown), false),
            Waited::Ready => {
                if let State::Queue {
                    items, unfinished, ..
                } = &mut *g
                {
                    items.push_back(item);
                    *unfinished += 1;
                }
                (g, Reply::Bool(true), true)
            }
        }
    }

    fn take<'a>(
        &'a self,
        g: MutexGuard<'a, State>,
        timeout: Option<Duration>,
        ctx: &mut Ctx<'_>,
    ) -> (MutexGuard<'a, State>, Reply, bool) {
        if !matches!(&*g, State::Queue { .. }) {
            return (g, wrong(&Op::Take { timeout }), false);
        }
        let (mut g, w) = self.wait(g, timeout, ctx, |s| match s {
            State::Queue { items, .. } => !items.is_empty(),
            _ => false,
        });
        match w {
            Waited::TimedOut => (g, Reply::Value(None), false),
            Waited::Abandoned => (g, Reply::Error(ErrorReply::ShuttingDown), false),
            Waited::Ready => {
                let item = match &mut *g {
                    State::Queue {
                        items,
                        joinable,
                        taken,
                        ..
                    } => {
                        let item = items.pop_front();
                        if let (true, Some(item)) = (*joinable, &item) {
                            taken
                                .entry(ctx.conn_id)
                                .or_default()
                                .push_back(item.clone());
                            ctx.held.insert(ctx.object);
                        }
                        item
                    }
                    _ => None,
                };
                (g, Reply::Value(item), true)
            }
        }
    }
}

/// A joinable queue's `task_done` from connection `me`: the oldest item it
/// took is done (or, when it took none — a task handed to another thread —
/// some other connection's oldest).
fn task_done(state: &mut State, me: u64) -> Reply {
    let State::Queue {
        joinable: true,
        unfinished,
        taken,
        ..
    } = state
    else {
        return wrong(&Op::TaskDone);
    };
    if *unfinished == 0 {
        return refused("task_done() called too many times");
    }
    *unfinished -= 1;
    let who = if taken.contains_key(&me) {
        Some(me)
    } else {
        taken.keys().next().copied()
    };
    if let Some(who) = who {
        let list = taken.get_mut(&who).expect("a key just seen");
        list.pop_front();
        if list.is_empty() {
            taken.remove(&who);
        }
    }
    Reply::Done
}

/// `OwnerDied::into_guard` from connection `me`, which must hold the lock
/// (or a permit): the data is repaired, the owner-died indication goes.
fn acknowledge(state: &mut State, me: u64) -> Reply {
    match state {
        State::Lock {
            holder, owner_died, ..
        }
        | State::Condition {
            holder, owner_died, ..
        } => {
            if holder.is_none_or(|(c, _)| c != me) {
                return refused("acknowledging a dead owner of a lock this client does not hold");
            }
            *owner_died = false;
            Reply::Done
        }
        State::Semaphore {
            holdings,
            owner_died,
            ..
        } => {
            if !holdings.contains_key(&me) {
                return refused(
                    "acknowledging a dead owner of a semaphore this client holds no permit of",
                );
            }
            *owner_died = false;
            Reply::Done
        }
        _ => wrong(&Op::Acknowledge),
    }
}

/// The operations that never wait. Returns the reply and whether the
/// state changed (so waiters must be woken).
fn instant(state: &mut State, op: Op) -> (Reply, bool) {
    match (state, op) {
        (State::Lock { holder, .. } | State::Condition { holder, .. }, Op::Locked) => {
            (Reply::Bool(holder.is_some()), false)
        }
        (State::Semaphore { value, .. }, Op::GetValue) => (Reply::Len(u64::from(*value)), false),
        (State::Event(flag), Op::SetFlag) => {
            *flag = true;
            (Reply::Done, true)
        }
        (State::Event(flag), Op::ClearFlag) => {
            *flag = false;
            (Reply::Done, false)
        }
        (State::Event(flag), Op::IsSet) => (Reply::Bool(*flag), false),
        (State::Queue { items, .. }, Op::Len) => (Reply::Len(items.len() as u64), false),
        (
            State::Barrier {
                count,
                generation,
                reset_generation,
                broken,
                ..
            },
            Op::Reset,
        ) => {
            if *count > 0 {
                *reset_generation = Some(*generation);
                *generation += 1;
                *count = 0;
            }
            *broken = false;
            (Reply::Done, true)
        }
        (State::Barrier { broken, .. }, Op::Abort) => {
            *broken = true;
            (Reply::Done, true)
        }
        (
            State::Barrier {
                parties,
                count,
                broken,
                ..
            },
            Op::BarrierState,
        ) => (
            Reply::Barrier {
                parties: *parties,
                waiting: *count,
                broken: *broken,
            },
            false,
        ),
        (_, op) => (wrong(&op), false),
    }
}

impl Blocking {
    /// Condition notify: the caller must hold the lock.
    fn notify(&self, n: Option<u32>, ctx: &Ctx<'_>) -> Reply {
        let mut g = self.lock();
        let State::Condition {
            holder,
            waiting,
            notified,
            ..
        } = &mut *g
        else {
            return wrong(&Op::NotifyAll);
        };
        if holder.is_none_or(|(c, _)| c != ctx.conn_id) {
            return refused("notify on a condition whose lock this client does not hold");
        }
        let n = n.map_or(waiting.len(), |n| {
            usize::try_from(n).map_or(waiting.len(), |n| n.min(waiting.len()))
        });
        notified.extend(waiting.drain(..n));
        self.cv.notify_all();
        Reply::Done
    }
}
