//! What clients and the manager server say to each other: one [`Request`]
//! per message, one [`Reply`] back. Keys and values travel as the
//! postcard bytes of the client's types; the server compares bytes and never
//! needs to know the types, except for registered objects, whose methods
//! it runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The kinds of object a manager holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Set,
    Namespace,
    /// A dict with one entry under the empty key.
    Value,
    Queue {
        /// 0: unbounded.
        maxsize: u64,
        joinable: bool,
    },
    Lock,
    RLock,
    Semaphore {
        value: u32,
        bounded: bool,
    },
    Condition,
    Event,
    Barrier {
        parties: u32,
    },
}

pub(crate) type Bytes = Vec<u8>;

/// The deepest nesting of batches (and of their replies) there is.
pub(crate) const MAX_BATCH_DEPTH: usize = 4;

thread_local! {
    /// How many batches the decoder of this thread is inside.
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Decodes the elements of a batch (or of its replies), refusing one nested
/// deeper than [`MAX_BATCH_DEPTH`] before recursing into it: derived
/// decoders recurse once per level, and a hostile peer's few bytes a level
/// would otherwise overflow the stack of the thread decoding them.
fn nested_at_most<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Level;
    impl Drop for Level {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    let depth = DEPTH.with(|d| {
        d.set(d.get() + 1);
        d.get()
    });
    let _level = Level;
    if depth > MAX_BATCH_DEPTH {
        return Err(serde::de::Error::custom(format!(
            "batches nested more than {MAX_BATCH_DEPTH} deep"
        )));
    }
    Vec::<T>::deserialize(deserializer)
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Makes an object; `init` is its starting content (items for a list or
    /// set, pairs for a dict or namespace).
    Create {
        kind: Kind,
        init: Vec<(Bytes, Bytes)>,
    },
    /// Makes an object of a registered type from its encoded initial value.
    CreateRegistered {
        typeid: String,
        init: Bytes,
    },
    Op {
        id: u64,
        op: Op,
    },
    /// Several requests in one round trip; the reply is `Replies`. Nested
    /// at most [`MAX_BATCH_DEPTH`] deep (decoding refuses deeper ones
    /// before it recurses into them).
    Batch(#[serde(deserialize_with = "nested_at_most")] Vec<Request>),
    /// Stops the server.
    Shutdown,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    // dict and namespace
    Get(Bytes),
    /// The value and its version, for read-modify-write.
    GetVersioned(Bytes),
    Insert(Bytes, Bytes),
    /// Inserts only if the entry's version is still `version` (0: absent).
    CompareAndSet {
        key: Bytes,
        version: u64,
        value: Bytes,
    },
    Remove(Bytes),
    Contains(Bytes),
    Len,
    Keys,
    Values,
    Items,
    Update(Vec<(Bytes, Bytes)>),
    Clear,
    // list
    Push(Bytes),
    Pop,
    Index(u64),
    SetIndex(u64, Bytes),
    Extend(Vec<Bytes>),
    Reverse,
    /// The whole list with the list's version.
    Snapshot,
    /// Replaces the whole list if its version is still `version`.
    ReplaceIfVersion {
        version: u64,
        items: Vec<Bytes>,
    },
    // set
    Add(Bytes),
    Discard(Bytes),
    // registered objects
    Call(Bytes),
    // Blocking objects. `timeout`: `None` waits as long as it takes,
    // `Some(ZERO)` does not wait; one too long to represent as an instant
    // in the server waits as long as it takes too.
    /// Lock, RLock, Semaphore, Condition: reply `Acquired`.
    Acquire {
        timeout: Option<Duration>,
    },
    Release,
    /// Lock, RLock, Semaphore, Condition: clears the owner-died indication
    /// (`OwnerDied::into_guard`); the client must hold the lock (or a
    /// permit). Reply `Done`.
    Acknowledge,
    /// Lock, RLock, Condition: whether someone holds it.
    Locked,
    /// Semaphore: its value.
    GetValue,
    /// Event: reply `Bool` (set or not); Condition: reply `Waited`;
    /// Barrier: reply `Len` (the arrival index).
    Wait {
        timeout: Option<Duration>,
    },
    Notify(u32),
    NotifyAll,
    /// Event.
    SetFlag,
    ClearFlag,
    IsSet,
    /// Queue: reply `Bool` (false: full).
    Put {
        item: Bytes,
        timeout: Option<Duration>,
    },
    /// Queue: reply `Value` (None: empty).
    Take {
        timeout: Option<Duration>,
    },
    TaskDone,
    /// JoinableQueue: reply `Bool` (false: timed out).
    JoinTasks {
        timeout: Option<Duration>,
    },
    /// Barrier.
    Reset,
    Abort,
    /// Barrier: reply `Barrier`.
    BarrierState,
}

impl Op {
    /// The operation's name, for error messages. Its payload may be big,
    /// so formatting stops at the first bracket.
    pub(crate) fn name(&self) -> String {
        struct UpToBracket(String);
        impl std::fmt::Write for UpToBracket {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                match s.find(['(', ' ', '{']) {
                    Some(i) => {
                        self.0.push_str(&s[..i]);
                        Err(std::fmt::Error)
                    }
                    None => {
                        self.0.push_str(s);
                        Ok(())
                    }
                }
            }
        }
        let mut name = UpToBracket(String::new());
        let _ = std::fmt::write(&mut name, format_args!("{self:?}"));
        name.0
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Created(u64),
    Done,
    Value(Option<Bytes>),
    Versioned(Option<Bytes>, u64),
    Bool(bool),
    Len(u64),
    Items(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
    Snapshot(u64, Vec<Bytes>),
    Replies(#[serde(deserialize_with = "nested_at_most")] Vec<Reply>),
    /// `None`: not acquired (timed out, or a `try_` form); `Some(owner_died)`:
    /// acquired, and whether the owner-died indication is set (a client
    /// died holding it, and nobody has acknowledged that since).
    Acquired(Option<bool>),
    /// Condition wait: whether notified (false: timed out), and whether the
    /// owner-died indication of the lock, taken back, is set.
    Waited {
        notified: bool,
        owner_died: bool,
    },
    Barrier {
        parties: u32,
        waiting: u32,
        broken: bool,
    },
    /// The request failed; the message says why. The server goes on.
    Error(ErrorReply),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ErrorReply {
    /// No object with that id.
    NoSuchObject(u64),
    /// The operation does not apply to that kind of object.
    WrongKind(String),
    /// A list index out of range.
    IndexOutOfRange { index: u64, len: u64 },
    /// A type that was not registered with the server.
    UnknownType(String),
    /// A registered object's method failed (panicked or got bytes it could
    /// not decode).
    Call(String),
    /// A release (or wait, notify, `task_done`) without the matching
    /// acquisition: a lock this client does not hold, a bounded semaphore
    /// at its bound, too many `task_done`s; the message says which.
    NotAcquired(String),
    /// The barrier is broken (aborted, reset while waiting, a waiter timed
    /// out or died).
    BrokenBarrier,
    /// This client's barrier wait timed out (which broke the barrier).
    BarrierTimeout,
    /// The server is shutting down.
    ShuttingDown,
}

impl ErrorReply {
    /// The error a client gets for this reply.
    pub(crate) fn into_error(self) -> crate::Error {
        let kind = match &self {
            ErrorReply::NotAcquired(_) => crate::ErrorKind::NotAcquired,
            ErrorReply::BrokenBarrier => crate::ErrorKind::BrokenBarrier,
            ErrorReply::BarrierTimeout => crate::ErrorKind::Timeout,
            _ => crate::ErrorKind::Remote,
        };
        crate::Error::new(kind, self.to_string())
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorReply::NoSuchObject(id) => write!(f, "the manager has no object {id}"),
            ErrorReply::WrongKind(why) => write!(f, "{why}"),
            ErrorReply::IndexOutOfRange { index, len } => {
                write!(f, "list index {index} out of range for a list of {len}")
            }
            ErrorReply::UnknownType(t) => write!(f, "the manager has no registered type {t:?}"),
            ErrorReply::Call(why) => write!(f, "the shared object's method failed: {why}"),
            ErrorReply::NotAcquired(why) => write!(f, "{why}"),
            ErrorReply::BrokenBarrier => write!(f, "the barrier is broken"),
            ErrorReply::BarrierTimeout => {
                write!(f, "the barrier wait timed out; the barrier is now broken")
            }
            ErrorReply::ShuttingDown => write!(f, "the manager is shutting down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_op_is_named_without_its_payload() {
        assert_eq!(Op::Len.name(), "Len");
        assert_eq!(Op::Push(vec![7; 1 << 20]).name(), "Push");
        assert_eq!(
            Op::Put {
                item: vec![1],
                timeout: None
            }
            .name(),
            "Put"
        );
    }

    /// A request of nested one-element batches, `depth` deep, around a
    /// shutdown: the bytes a hostile client needs for deep recursion.
    fn nested(depth: usize) -> Vec<u8> {
        let mut bytes = [3u8, 1].repeat(depth); // Batch, one element
        bytes.push(4); // Shutdown
        bytes
    }

    #[test]
    fn deeply_nested_batches_are_refused_without_recursing_into_them() {
        // Run where the stack is as small as a server thread's could be:
        // decoding must stop at the depth limit, not at a stack overflow.
        let refused = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| postcard::from_bytes::<Request>(&nested(1_000_000)).is_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(refused);
        // What the server accepts still decodes.
        let ok = postcard::from_bytes::<Request>(&nested(MAX_BATCH_DEPTH)).unwrap();
        assert!(matches!(ok, Request::Batch(_)));
        let bytes = postcard::to_allocvec(&Reply::Replies(vec![Reply::Done])).unwrap();
        assert!(postcard::from_bytes::<Reply>(&bytes).is_ok());
        // Replies nest as deep as requests may.
        let mut deep = [9u8, 1].repeat(1_000_000); // Replies, one element
        deep.push(1); // Done
        let refused = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || postcard::from_bytes::<Reply>(&deep).is_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(refused);
    }
}
