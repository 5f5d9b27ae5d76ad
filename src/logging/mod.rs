//! Logging: `multiproc` reports process lifecycle events through the `log`
//! crate under the target `"multiproc"`, and [`log_to_stderr`] shows them
//! (and every other log record) on standard error, prefixed like Python's
//! `[INFO/Process-1 4242]`.
//!
//! # Records from children reach the parent's logger
//!
//! A child started while the parent's `log::max_level()` is above `Off`
//! (and [`forward_child_logs`] was not turned off) sends every record it
//! logs to its parent, under every start method and in pool workers alike.
//! The parent logs it again through its own logger (`log::logger()`), with
//! the child's level, target, module path, file and line, and the message
//! prefixed with the child's name and pid: `[PoolWorker-3 pid 4242] loaded`
//! (the stderr logger of [`log_to_stderr`] prints it as the child would:
//! `[INFO/PoolWorker-3 4242] loaded`). The child learns the parent's level
//! when it starts, so a record the parent would filter costs the child
//! nothing; records the parent's logger does not want (`enabled`) are
//! dropped there.
//!
//! Each record is one packet of at most 16 KiB (a longer message is cut and
//! ends in ` …[truncated]`), sent before the logging call returns: a record
//! logged just before the child panicked, aborted or was killed has already
//! reached the parent's kernel. A thread in the parent re-logs records as
//! they come; `join` (and anything else that learns a child ended, such as a
//! pool's join) re-logs every record still waiting before it returns, so the
//! records of an ended child are in the parent's logger once its `join` is
//! done. A child that logs faster than its parent's logger can write waits
//! for it: no record is dropped.
//!
//! With the feature `tracing`, a child's `tracing` events travel the same
//! way: in a child that forwards, a global `tracing` subscriber turns each
//! event into a record (the message, then the other fields as
//! `name=value`), so the parent's logger gets it; a parent that uses
//! `tracing` sees it through its subscriber's `log` bridge
//! (`tracing_log::LogTracer`, installed by `tracing_subscriber`'s
//! `init()`). Spans stay in the child.
//!
//! Under **fork** the child is a copy of the parent, logger included. If the
//! parent's logger was installed through multiproc ([`log_to_stderr`] or
//! [`set_logger`]), the child forwards its records like any other child. If
//! it was installed directly with `log::set_logger` (an `env_logger`, say),
//! the child keeps that copy of it, and its records go where that logger
//! writes, from the child, as in Python (whose forked children keep their
//! parent's handlers); `log` allows no second logger in a process.

mod packet;
#[cfg(feature = "tracing")]
mod tracing_bridge;

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{OnceLock, RwLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::sys;

#[cfg_attr(not(any(test, feature = "fuzzing")), allow(unused_imports))]
pub(crate) use packet::fuzz as fuzz_packet;
pub(crate) use packet::{MAX_PACKET, decode};

static PREFIX: RwLock<Option<(String, i32)>> = RwLock::new(None);

/// The level given to [`log_to_stderr`], as [`level_to_u8`], or
/// [`NO_LEVEL`]: children started afterwards log at the same level.
static LEVEL: AtomicU8 = AtomicU8::new(NO_LEVEL);
const NO_LEVEL: u8 = u8::MAX;

/// Whether children started from now on send their records here.
static FORWARD: AtomicBool = AtomicBool::new(true);
/// Whether `log`'s logger in this process is [`LOGGER`] (set when ours was
/// installed; a forked child inherits it with the memory).
static OURS: AtomicBool = AtomicBool::new(false);
/// The user's logger behind ours, from [`set_logger`].
static INNER: OnceLock<Box<dyn Log>> = OnceLock::new();

/// Where this process, a child, sends its records: its parent's collector.
struct Sink {
    /// The process the sink belongs to (a fork of it must not use it).
    pid: i32,
    fd: OwnedFd,
    name: String,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

thread_local! {
    /// The packet being encoded, kept between records.
    static PACKET: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// multiproc's logger: forwards to the parent in a child that forwards,
/// else hands records to the user's logger ([`set_logger`]), else writes
/// them on standard error.
struct Dispatch;

static LOGGER: Dispatch = Dispatch;

impl Dispatch {
    fn forward(&self, record: &Record<'_>) -> bool {
        let guard = SINK.read().unwrap_or_else(|p| p.into_inner());
        let Some(sink) = guard.as_ref().filter(|s| s.pid == sys::process::getpid()) else {
            return false;
        };
        let send = |buf: &mut Vec<u8>| {
            packet::encode(buf, record, &sink.name, sink.pid as u32);
            // A parent that is gone takes its children with it; until then a
            // failed send loses only this record.
            let _ = sys::socket::send_packet(sink.fd.as_fd(), buf, &[]);
        };
        // A Display impl that logs while it is formatted gets a buffer of
        // its own.
        PACKET.with(|b| match b.try_borrow_mut() {
            Ok(mut buf) => send(&mut buf),
            Err(_) => send(&mut Vec::new()),
        });
        true
    }
}

impl Log for Dispatch {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
            && INNER
                .get()
                .is_none_or(|inner| forwarding_here() || inner.enabled(metadata))
    }

    fn log(&self, record: &Record<'_>) {
        if record.level() > log::max_level() || self.forward(record) {
            return;
        }
        if let Some(inner) = INNER.get() {
            return inner.log(record);
        }
        let pid = sys::process::getpid();
        let name = {
            let guard = PREFIX.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some((name, owner)) if *owner == pid => name.clone(),
                _ => "MainProcess".to_string(),
            }
        };
        write_line(
            record.level(),
            &name,
            pid as u32,
            format_args!("{}", record.args()),
        );
    }

    fn flush(&self) {
        if let Some(inner) = INNER.get() {
            inner.flush();
        }
    }
}

fn write_line(level: Level, name: &str, pid: u32, message: std::fmt::Arguments<'_>) {
    // One write per line, so lines from several processes do not mix.
    let line = format!("[{level}/{name} {pid}] {message}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Sends `record` to the parent if this process forwards (the `tracing`
/// bridge's way in).
#[cfg(feature = "tracing")]
fn forward_record(record: &Record<'_>) {
    if record.level() <= log::max_level() {
        LOGGER.forward(record);
    }
}

fn forwarding_here() -> bool {
    SINK.read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|s| s.pid == sys::process::getpid())
}

fn install_ours() -> bool {
    if log::set_logger(&LOGGER).is_ok() {
        OURS.store(true, Ordering::Release);
    }
    OURS.load(Ordering::Acquire)
}

/// Shows log records at `level` and above on standard error, each line
/// prefixed with the level, the process name and its pid:
/// `[INFO/Process-1 4242] process exiting with exitcode 0`. Children started
/// afterwards send their records to this process, which shows them the
/// same way (see the [module docs](self)).
///
/// This installs a logger for the `log` crate if the program has none yet;
/// if another logger is installed, records go to it instead and only the
/// level is set.
pub fn log_to_stderr(level: LevelFilter) {
    install_ours();
    log::set_max_level(level);
    LEVEL.store(level_to_u8(level), Ordering::Release);
}

/// Python's `multiprocessing.get_logger()`: the target under which
/// multiproc logs its own events, `"multiproc"`. Filter on it in your
/// logger to see or hide them.
pub fn get_logger() -> &'static str {
    "multiproc"
}

/// Installs `logger` as the `log` crate's logger, through multiproc, and
/// sets the maximum level to `level`: records of this process go to
/// `logger`, and so do the records of its children, under every start
/// method including fork (a forked child inherits this logger but forwards
/// its records to the parent instead of writing them itself).
///
/// # Errors
///
/// The `log` crate's `SetLoggerError` if a logger was installed before (by
/// this function, [`log_to_stderr`] or `log::set_logger`); `logger` is then
/// dropped and nothing changes.
pub fn set_logger(logger: Box<dyn Log>, level: LevelFilter) -> Result<(), log::SetLoggerError> {
    if INNER.get().is_some() {
        // `log` refuses a second logger; ask it for the error value.
        return log::set_logger(&LOGGER);
    }
    log::set_logger(&LOGGER)?;
    OURS.store(true, Ordering::Release);
    let _ = INNER.set(logger);
    log::set_max_level(level);
    Ok(())
}

/// Whether children started from now on send their log records to this
/// process (`true`, the default) or keep them (`false`: a spawned or
/// fork-server child then has no logger unless [`log_to_stderr`] was
/// called, and shows records on its own standard error; a forked child
/// uses the logger it inherited). Children already running are not
/// affected.
pub fn forward_child_logs(on: bool) {
    FORWARD.store(on, Ordering::Release);
}

/// The level a child started now should forward at: `None` when children
/// should not forward (turned off, or the parent logs nothing).
pub(crate) fn forward_level() -> Option<LevelFilter> {
    let level = log::max_level();
    (FORWARD.load(Ordering::Acquire) && level != LevelFilter::Off).then_some(level)
}

/// In a child that forwards: a copy of its socket to the collector, for its
/// own children (they send to the same collector, naming themselves).
pub(crate) fn dup_sink() -> Option<OwnedFd> {
    let guard = SINK.read().unwrap_or_else(|p| p.into_inner());
    let sink = guard.as_ref().filter(|s| s.pid == sys::process::getpid())?;
    sys::socket::dup(sink.fd.as_fd()).ok()
}

/// Sets up logging in a new child `name`: forwarding to the parent on
/// `sink` at `forward` level when the parent asked for it, else what
/// [`log_to_stderr`] was set to in the parent (`stderr`).
pub(crate) fn start_child(
    name: &str,
    sink: Option<OwnedFd>,
    forward: Option<LevelFilter>,
    stderr: Option<LevelFilter>,
) {
    let pid = sys::process::getpid();
    *PREFIX.write().unwrap_or_else(|p| p.into_inner()) = Some((name.to_string(), pid));
    let mut guard = SINK.write().unwrap_or_else(|p| p.into_inner());
    // A sink inherited through fork is the parent's.
    *guard = None;
    if let (Some(fd), Some(level)) = (sink, forward) {
        // Under fork with a logger installed around multiproc, that logger
        // stays (see the module docs): no sink.
        if install_ours() {
            *guard = Some(Sink {
                pid,
                fd,
                name: name.to_string(),
            });
            drop(guard);
            log::set_max_level(level);
            #[cfg(feature = "tracing")]
            tracing_bridge::install(level);
            return;
        }
    }
    drop(guard);
    if let Some(level) = stderr {
        log_to_stderr(level);
    }
}

/// Logs `p`, a record from a child, through this process's logger; see
/// the module docs for the form.
pub(crate) fn emit_forwarded(p: &packet::Packet<'_>) {
    if p.level > log::max_level() {
        return;
    }
    let logger = log::logger();
    let metadata = Metadata::builder().level(p.level).target(p.target).build();
    if !logger.enabled(&metadata) {
        return;
    }
    if OURS.load(Ordering::Acquire) && INNER.get().is_none() && !forwarding_here() {
        return write_line(p.level, p.name, p.pid, format_args!("{}", p.message));
    }
    logger.log(
        &Record::builder()
            .metadata(metadata)
            .module_path(p.module_path)
            .file(p.file)
            .line(p.line)
            .args(format_args!("[{} pid {}] {}", p.name, p.pid, p.message))
            .build(),
    );
}

/// For tests of the collector: sends `bytes` as one packet to the parent's
/// collector, as a child's logger would, whatever they are.
///
/// # Errors
///
/// `NotConnected` when this process is not a child that forwards; the
/// socket's error when the send fails.
#[doc(hidden)]
pub fn __send_raw_packet(bytes: &[u8]) -> std::io::Result<()> {
    let guard = SINK.read().unwrap_or_else(|p| p.into_inner());
    let sink = guard
        .as_ref()
        .filter(|s| s.pid == sys::process::getpid())
        .ok_or(std::io::ErrorKind::NotConnected)?;
    sys::socket::send_packet(sink.fd.as_fd(), bytes, &[])
}

/// The level [`log_to_stderr`] was called with in this process (or
/// inherited from the parent), if it was.
pub(crate) fn level() -> Option<LevelFilter> {
    let v = LEVEL.load(Ordering::Acquire);
    (v != NO_LEVEL).then(|| level_from_u8(v))
}

pub(crate) fn level_to_u8(level: LevelFilter) -> u8 {
    level as usize as u8
}

pub(crate) fn level_from_u8(v: u8) -> LevelFilter {
    LevelFilter::iter()
        .find(|l| *l as usize == v as usize)
        .unwrap_or(LevelFilter::Off)
}
