//! The crate's error type.
//!
//! One [`Error`] for everything that is not a per-operation channel error.
//! [`Error::kind`] says what went wrong in a form a caller can `match` on;
//! the accessors give the details (the child's exit status, its panic
//! message and location), and [`std::error::Error::source`] the underlying
//! OS or codec error.

use std::fmt;
use std::io;

use crate::process::status::{ExitStatus, Signal};

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum ErrorKind {
    /// An operating-system call failed; [`std::error::Error::source`] is the
    /// [`io::Error`].
    Io,
    /// The child panicked. [`Error::panic_message`] and
    /// [`Error::panic_location`] say where and why.
    Panicked,
    /// The child was killed by a signal before it returned a value.
    /// [`Error::exit_status`] names the signal.
    Killed,
    /// The child exited (with [`Error::exit_status`]'s code) without
    /// returning a value, for example through `std::process::exit`.
    Exited,
    /// A value could not be encoded for sending to another process.
    Encode,
    /// Bytes from another process could not be decoded into the expected
    /// type (a different type on each side, or corrupt bytes).
    Decode,
    /// The child could not run the function it was sent (a different
    /// executable, or a failure while starting).
    Bootstrap,
    /// `multiproc::init()` was not called before a process was started with
    /// the spawn or forkserver start method.
    NotInitialized,
    /// The start method cannot run this target: a closure that captures
    /// state was given to `Process::new` under the spawn or forkserver
    /// start method (give it its values with `partial`). A pool task that
    /// captures does not build.
    CapturingClosure,
    /// `fork` was refused because the process has other threads.
    ForkWithThreads,
    /// A daemon process tried to start a child.
    DaemonChild,
    /// The start method was already set.
    ContextAlreadySet,
    /// The process is still running.
    StillRunning,
    /// A protocol violation: bytes on a connection that do not follow the
    /// protocol.
    Protocol,
    /// A time limit passed.
    Timeout,
    /// The other end of a connection is closed, or its process died
    /// (Python's `EOFError`).
    Eof,
    /// The peer failed the authentication handshake, or rejected ours
    /// (Python's `AuthenticationError`).
    Authentication,
    /// A message is longer than the receiver accepts.
    MessageTooLarge,
    /// A manager refused a request (no such object, an index out of range,
    /// a registered object's method failed); the message says which.
    Remote,
    /// A queue is full (Python's `queue.Full`).
    Full,
    /// A queue is empty (Python's `queue.Empty`).
    Empty,
    /// A queue was closed by this handle or shut down (Python 3.13's
    /// `queue.ShutDown`).
    Closed,
    /// `JoinableQueue::task_done` was called more times than messages were
    /// taken (Python's `ValueError`).
    TaskDone,
    /// The previous holder of a lock died while holding it, so the data the
    /// lock protects may be half-changed. See [`crate::sync::OwnerDied`].
    OwnerDied,
    /// A [`Barrier`](crate::sync::Barrier) is broken: it was aborted or
    /// reset, a waiter timed out, or its action panicked (Python's
    /// `BrokenBarrierError`).
    BrokenBarrier,
    /// A lock or semaphore was released more often than it was acquired, or
    /// by a thread that does not hold it (Python's `ValueError` /
    /// `RuntimeError` from `release()`).
    NotAcquired,
    /// An argument is out of range (a zero-sized segment, a bad name, zero
    /// barrier parties); the message says which.
    InvalidArgument,
    /// A pool worker died (killed by a signal, crashed, or exited) while it
    /// ran the task; [`Error::exit_status`] says how it ended.
    WorkerLost,
    /// SIGINT (Ctrl-C) arrived while the call waited, in a program that
    /// handles SIGINT itself; the pool was terminated.
    Interrupted,
    /// The pool was closed or terminated and takes no new work, or was
    /// terminated while the task waited.
    PoolClosed,
    /// A `try_` form could not go ahead now: the lock is held, no permit
    /// is free, the result is not there yet. (A `try_` receive from an
    /// empty queue or connection says [`Empty`](ErrorKind::Empty), a
    /// `try_` put on a full queue [`Full`](ErrorKind::Full), as in Python.)
    WouldBlock,
    /// The value was already taken out of this handle (a result handed
    /// out once, by an earlier `get`).
    AlreadyTaken,
    /// A pool task ran past its time limit
    /// ([`PoolBuilder::task_timeout`](crate::pool::PoolBuilder::task_timeout))
    /// and its worker was killed (pebble's `TimeoutError` on a task). Not
    /// to be confused with [`Timeout`](ErrorKind::Timeout): *this call's*
    /// wait ran out, and the task goes on.
    TimeLimit,
    /// The task was cancelled before it finished
    /// ([`AsyncResult::cancel`](crate::pool::AsyncResult::cancel), a
    /// dropped `map_async` handle, `Pool::shutdown` with `cancel_futures`);
    /// Python's `CancelledError`.
    Cancelled,
    /// A child could not be set up as its builder asked (environment,
    /// working directory, standard streams, resource limits, CPU affinity:
    /// [`ProcessBuilder::env`](crate::ProcessBuilder::env) and its
    /// neighbours) before its target ran; the message names the step and
    /// the OS's reason. The target did not run; the child exited with
    /// code 1.
    ChildSetup,
}

impl ErrorKind {
    /// Every kind, in declaration order: `ALL[k as usize] == k`. New kinds
    /// go at the end, so that a kind keeps its number on the wire.
    const ALL: [ErrorKind; 35] = [
        ErrorKind::Io,
        ErrorKind::Panicked,
        ErrorKind::Killed,
        ErrorKind::Exited,
        ErrorKind::Encode,
        ErrorKind::Decode,
        ErrorKind::Bootstrap,
        ErrorKind::NotInitialized,
        ErrorKind::CapturingClosure,
        ErrorKind::ForkWithThreads,
        ErrorKind::DaemonChild,
        ErrorKind::ContextAlreadySet,
        ErrorKind::StillRunning,
        ErrorKind::Protocol,
        ErrorKind::Timeout,
        ErrorKind::Eof,
        ErrorKind::Authentication,
        ErrorKind::MessageTooLarge,
        ErrorKind::Remote,
        ErrorKind::Full,
        ErrorKind::Empty,
        ErrorKind::Closed,
        ErrorKind::TaskDone,
        ErrorKind::OwnerDied,
        ErrorKind::BrokenBarrier,
        ErrorKind::NotAcquired,
        ErrorKind::InvalidArgument,
        ErrorKind::WorkerLost,
        ErrorKind::Interrupted,
        ErrorKind::PoolClosed,
        ErrorKind::WouldBlock,
        ErrorKind::AlreadyTaken,
        ErrorKind::TimeLimit,
        ErrorKind::Cancelled,
        ErrorKind::ChildSetup,
    ];

    /// The kind's number, as it travels between processes.
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// The kind with number `code`, if there is one (a newer peer may send
    /// a kind this build does not know).
    pub(crate) fn from_code(code: u8) -> Option<ErrorKind> {
        Self::ALL.get(code as usize).copied()
    }
}

/// The error type of `multiproc`.
///
/// Display reads as a sentence: `process 'greeter' (pid 4242) panicked at
/// src/main.rs:5:9: index out of bounds`.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    status: Option<ExitStatus>,
    panic: Option<PanicReport>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// A panic in a child, as it reported it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct PanicReport {
    pub(crate) message: String,
    pub(crate) location: Option<String>,
    /// The panicking thread's backtrace, when `RUST_BACKTRACE` or
    /// `RUST_LIB_BACKTRACE` asked the child for one; at most
    /// [`MAX_BACKTRACE`] bytes.
    pub(crate) backtrace: Option<String>,
}

/// The most of a backtrace that travels to the parent: a deep recursion's
/// backtrace runs to megabytes, and its first frames are the ones that
/// tell what happened.
pub(crate) const MAX_BACKTRACE: usize = 32 * 1024;

/// The backtrace of the calling thread if the environment asks for one
/// (std's rules: `RUST_LIB_BACKTRACE`, else `RUST_BACKTRACE`, not `0`),
/// cut to [`MAX_BACKTRACE`] bytes at a line's end.
fn capture_backtrace() -> Option<String> {
    let bt = std::backtrace::Backtrace::capture();
    if bt.status() != std::backtrace::BacktraceStatus::Captured {
        return None;
    }
    Some(cut_backtrace(bt.to_string()))
}

fn cut_backtrace(mut text: String) -> String {
    if text.len() <= MAX_BACKTRACE {
        return text;
    }
    let total = text.len();
    let mut at = MAX_BACKTRACE;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    if let Some(nl) = text[..at].rfind('\n') {
        at = nl + 1;
    }
    text.truncate(at);
    text.push_str(&format!(
        "... ({} more bytes of backtrace cut)\n",
        total - at
    ));
    text
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<PanicReport>> = const { std::cell::RefCell::new(None) };
}

impl PanicReport {
    /// What a panic hook sees, remembered for [`PanicReport::take`] on this
    /// thread, and returned.
    pub(crate) fn record(info: &std::panic::PanicHookInfo<'_>) -> PanicReport {
        let report = PanicReport {
            message: info.payload_as_str().unwrap_or("Box<dyn Any>").to_owned(),
            location: info.location().map(|l| l.to_string()),
            backtrace: capture_backtrace(),
        };
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(report.clone()));
        report
    }

    /// The panic this thread's hook last recorded, or else what the payload
    /// that `catch_unwind` returned says (without a location).
    pub(crate) fn take(payload: &(dyn std::any::Any + Send)) -> PanicReport {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| PanicReport {
                message: payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "Box<dyn Any>".into()),
                location: None,
                backtrace: None,
            })
    }
}

/// Shorthand for `Result<T, multiproc::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                status: None,
                panic: None,
                source: None,
            }),
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.inner.source = Some(Box::new(source));
        self
    }

    pub(crate) fn with_status(mut self, status: Option<ExitStatus>) -> Self {
        self.inner.status = status;
        self
    }

    pub(crate) fn with_panic(mut self, panic: PanicReport) -> Self {
        self.inner.panic = Some(panic);
        self
    }

    pub(crate) fn io(context: impl Into<String>, err: io::Error) -> Self {
        Self::new(ErrorKind::Io, context).with_source(err)
    }

    /// The panic report, for sending the error on (the cluster engine).
    #[cfg(feature = "cluster")]
    pub(crate) fn panic_report(&self) -> Option<PanicReport> {
        self.inner.panic.clone()
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// How the child process ended, when the error is about a child that
    /// ended.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.status
    }

    /// The signal that killed the child, if one did.
    pub fn signal(&self) -> Option<Signal> {
        self.inner.status.and_then(|s| s.signal())
    }

    /// The message the child panicked with.
    pub fn panic_message(&self) -> Option<&str> {
        self.inner.panic.as_ref().map(|p| p.message.as_str())
    }

    /// Where the child panicked: `file:line:column`.
    pub fn panic_location(&self) -> Option<&str> {
        self.inner
            .panic
            .as_ref()
            .and_then(|p| p.location.as_deref())
    }

    /// The backtrace of the child's panicking thread, as std prints it,
    /// when the child's environment asked for one (`RUST_BACKTRACE=1` or
    /// `full`, or `RUST_LIB_BACKTRACE`, as for std's own backtraces; a
    /// fork-server child sees the environment the fork server started
    /// with). At most 32 KiB: a longer one is cut after its first frames,
    /// and says so. `None` when none was asked for, or the error is not a
    /// panic. The alternate form of Display (`{:#}`) prints it after the
    /// message.
    pub fn panic_backtrace(&self) -> Option<&str> {
        self.inner
            .panic
            .as_ref()
            .and_then(|p| p.backtrace.as_deref())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)?;
        if let Some(source) = &self.inner.source {
            write!(f, ": {source}")?;
        }
        if f.alternate()
            && let Some(bt) = self.panic_backtrace()
        {
            write!(f, "\nchild's stack backtrace:\n{bt}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(status) = &self.inner.status {
            d.field("status", status);
        }
        if let Some(panic) = &self.inner.panic {
            d.field("panic", panic);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::other(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_keeps_its_number() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.code() as usize, i, "{k:?}");
            assert_eq!(ErrorKind::from_code(i as u8), Some(*k));
        }
        assert_eq!(ErrorKind::from_code(255), None);
    }

    #[test]
    fn a_long_backtrace_is_cut_at_a_line() {
        let line = "  12: some::function::name\n             at src/lib.rs:1:1\n";
        let long = line.repeat(2000);
        let cut = cut_backtrace(long.clone());
        assert!(cut.len() <= MAX_BACKTRACE + 64, "{}", cut.len());
        assert!(cut.ends_with("more bytes of backtrace cut)\n"), "{cut}");
        assert!(long.starts_with(cut.split("... (").next().unwrap()));
        assert_eq!(cut_backtrace("short\n".into()), "short\n");
    }
}
