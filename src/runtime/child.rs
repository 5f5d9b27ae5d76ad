//! The child's side: receiving what to run, running it, reporting back.
//!
//! Parent and child talk over one Unix stream socket in [`wire`] frames:
//!
//! | frame  | from   | body |
//! |--------|--------|------|
//! | HELLO  | child  | its pid (u32, little-endian): the child is under `multiproc`'s control (not sent under fork: the parent knows the pid) |
//! | BOOT   | parent | [`Boot`]: image identity, which function, who the child is (spawn and forkserver only) |
//! | ARGS   | parent | the encoded arguments, with their descriptors (spawn and forkserver only) |
//! | RESULT | child  | the encoded return value, with its descriptors |
//! | PANIC  | child  | [`PanicReport`]: message and location |
//! | ERROR  | child or fork server | [`ErrorReport`]: the child could not run the function |
//!
//! The exit status does not travel on the socket: every child is a real
//! child of the process that started it, which reaps it through a pidfd.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, ErrorKind, PanicReport};
use crate::sys;
use crate::sys::image::{EntryRef, ImageId};
use crate::target::Target;
use crate::wire;

pub(crate) const HELLO: u8 = 1;
pub(crate) const RESULT: u8 = 2;
pub(crate) const PANIC: u8 = 3;
pub(crate) const ERROR: u8 = 4;
pub(crate) const BOOT: u8 = 10;
pub(crate) const ARGS: u8 = 11;

/// The largest frame a child accepts from its parent, and the parent from
/// its child: far more than memory, so in practice a corrupt length.
pub(crate) const MAX_FRAME: u64 = 1 << 40;

/// A function the child can be told to run: decodes the arguments, runs
/// the target, sends the result.
pub(crate) type Entry = fn(&ChildIo, Vec<u8>, Vec<OwnedFd>) -> Result<(), Error>;

/// Who the child is, as the parent tells it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ChildInfo {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent_pid: i32,
    pub(crate) parent_name: String,
    pub(crate) log_level: Option<u8>,
    pub(crate) authkey: [u8; 32],
    pub(crate) start_method: u8,
}

/// The first frame a spawned or fork-server child receives.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Boot {
    pub(crate) image: ImageId,
    pub(crate) entry: EntryRef,
    pub(crate) info: ChildInfo,
}

/// Why a child could not run its function.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ErrorReport {
    pub(crate) kind: u8,
    pub(crate) message: String,
}

const KINDS: [ErrorKind; 30] = [
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
];

impl ErrorReport {
    pub(crate) fn from_error(e: &Error) -> Self {
        Self {
            kind: KINDS.iter().position(|k| *k == e.kind()).unwrap_or(0) as u8,
            message: e.to_string(),
        }
    }

    pub(crate) fn kind(&self) -> ErrorKind {
        KINDS
            .get(self.kind as usize)
            .copied()
            .unwrap_or(ErrorKind::Bootstrap)
    }
}

/// The child's end of the socket to its parent.
pub(crate) struct ChildIo {
    sock: OwnedFd,
}

impl ChildIo {
    pub(crate) fn new(sock: OwnedFd) -> Self {
        Self { sock }
    }

    fn send(
        &self,
        kind: u8,
        body: &[u8],
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> std::io::Result<()> {
        wire::send(self.sock.as_fd(), kind, body, fds)
    }

    fn hello(&self) {
        let _ = self.send(HELLO, &(sys::process::getpid() as u32).to_le_bytes(), &[]);
    }

    fn send_value<T: Serialize>(&self, kind: u8, value: &T) {
        if let Ok(bytes) = postcard::to_allocvec(value) {
            let _ = self.send(kind, &bytes, &[]);
        }
    }

    pub(crate) fn send_error(&self, e: &Error) {
        self.send_value(ERROR, &ErrorReport::from_error(e));
    }
}

/// Sends an error report to whoever waits on `sock` (the fork server uses
/// this when it cannot fork).
pub(crate) fn report_error(sock: OwnedFd, e: &Error) {
    ChildIo { sock }.send_error(e);
}

/// Runs `f(args)` and sends what it returns.
pub(crate) fn run_target<F: Target<M>, M>(f: F, args: F::Args, io: &ChildIo) -> Result<(), Error> {
    let out = f.call(args);
    let encoded = codec::encode(&out)?;
    match io.send(RESULT, &encoded.bytes, &encoded.borrowed_fds()) {
        // The parent dropped its handle: nobody wants the value.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("could not send the result to the parent", e)),
        Ok(()) => Ok(()),
    }
}

/// The [`Entry`] for target type `F`: makes an `F` (it is zero-sized),
/// decodes its arguments and runs it.
pub(crate) fn trampoline<F: Target<M> + Copy, M>(
    io: &ChildIo,
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
) -> Result<(), Error> {
    let f = sys::image::conjure::<F>().ok_or_else(|| {
        Error::new(
            ErrorKind::CapturingClosure,
            "the target captures state and cannot be rebuilt in a new process",
        )
    })?;
    let args = codec::decode::<F::Args>(&bytes, fds)?;
    run_target(f, args, io)
}

/// The life of a spawned or fork-server child, from its socket to its exit.
pub(crate) fn serve(sock: OwnedFd, parent: i32) -> ! {
    if !sys::process::die_with_parent(parent) {
        sys::process::exit_now(1);
    }
    let io = ChildIo::new(sock);
    io.hello();
    let mut reader = wire::Reader::new(MAX_FRAME);
    let mut next = |kind: u8| match reader.recv(io.sock.as_fd(), None) {
        Ok(Some(frame)) if frame.kind == kind => Some(frame),
        _ => None,
    };
    // No BOOT means the parent gave up on us: leave quietly.
    let Some(boot) = next(BOOT) else {
        sys::process::exit_now(1)
    };
    let Some(args) = next(ARGS) else {
        sys::process::exit_now(1)
    };
    let boot: Boot = match postcard::from_bytes(&boot.body) {
        Ok(b) => b,
        Err(e) => {
            io.send_error(
                &Error::new(
                    ErrorKind::Bootstrap,
                    "the child could not read its start-up message",
                )
                .with_source(e),
            );
            sys::process::exit_now(1);
        }
    };
    let same_image = ImageId::current().is_ok_and(|id| id == boot.image);
    let Some(entry) = boot.entry.resolve(same_image) else {
        io.send_error(&Error::new(
            ErrorKind::Bootstrap,
            "the child runs a different executable than its parent (was the program rebuilt or replaced?), \
             so it cannot find the function to run",
        ));
        sys::process::exit_now(1);
    };
    child_main(io, &boot.info, move |io| entry(io, args.body, args.fds))
}

/// The socket the panic hook reports on when panics abort: this child's
/// (set again in each child; a grandchild forked from a child must not
/// report on its parent's socket).
static ABORT_REPORT: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Does, once, what every child would otherwise do first: registering the
/// exit hook, the panic hook, the codec's thread-local state, reading the
/// image identity, setting up stdout. The fork server calls this before its
/// first fork, so that its children inherit all of it instead of each
/// paying for it in page faults.
pub(crate) fn prepare_image() {
    crate::runtime::register_exit_hook();
    install_panic_hook_once();
    let _ = ImageId::current();
    if let Ok(e) = codec::encode(&()) {
        let _ = codec::decode::<()>(&e.bytes, e.fds);
    }
    let _ = std::io::stdout().flush();
}

fn install_panic_hook(io: &ChildIo) {
    if cfg!(panic = "abort") {
        let fd = sys::socket::dup(io.sock.as_fd()).ok();
        *ABORT_REPORT.lock().unwrap_or_else(|p| p.into_inner()) = fd;
    }
    install_panic_hook_once();
}

/// Installs the hook that records a panic's location (and, when panics
/// abort, reports it on [`ABORT_REPORT`]), once per program image: a child
/// forked from a process that has it keeps it.
fn install_panic_hook_once() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(install_panic_hook_now);
}

fn install_panic_hook_now() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let report = PanicReport::record(info);
        {
            let fd = ABORT_REPORT.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(fd) = fd.as_ref() {
                // The process is about to abort: this is the only chance.
                if let Ok(bytes) = postcard::to_allocvec(&report) {
                    let _ = wire::send(fd.as_fd(), PANIC, &bytes, &[]);
                }
            }
        }
        previous(info);
    }));
}

/// Runs `body` as the child described by `info`, reports how it went, joins
/// the child's own children, and exits: 0 on success, 1 on a panic or error.
pub(crate) fn child_main(
    io: ChildIo,
    info: &ChildInfo,
    body: impl FnOnce(&ChildIo) -> Result<(), Error>,
) -> ! {
    crate::runtime::become_child(info);
    install_panic_hook(&io);
    log::info!(target: "multiproc", "child process calling the target");
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| body(&io)));
    let code = match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            io.send_error(&e);
            1
        }
        Err(payload) => {
            io.send_value(PANIC, &PanicReport::take(&*payload));
            1
        }
    };
    log::info!(target: "multiproc", "process exiting with exitcode {code}");
    crate::runtime::finish_children();
    // Rust's stderr is unbuffered; stdout may hold a partial line. The
    // socket is closed by the exit itself.
    let _ = std::io::stdout().flush();
    std::mem::forget(io);
    sys::process::exit_now(code)
}
