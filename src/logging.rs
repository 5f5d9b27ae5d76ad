//! Logging: `multiproc` reports process lifecycle events through the `log`
//! crate under the target `"multiproc"`, and [`log_to_stderr`] shows them
//! (and every other log record) on standard error, prefixed like Python's
//! `[INFO/Process-1 4242]`.

use std::io::Write;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU8, Ordering};

use log::{LevelFilter, Log, Metadata, Record};

static PREFIX: RwLock<Option<(String, i32)>> = RwLock::new(None);

/// The level given to [`log_to_stderr`], as [`level_to_u8`], or
/// [`NO_LEVEL`]: children started afterwards log at the same level.
static LEVEL: AtomicU8 = AtomicU8::new(NO_LEVEL);
const NO_LEVEL: u8 = u8::MAX;

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let pid = crate::sys::process::getpid();
        let name = {
            let guard = PREFIX.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some((name, owner)) if *owner == pid => name.clone(),
                _ => "MainProcess".to_string(),
            }
        };
        // One write per line, so lines from several processes do not mix.
        let line = format!("[{}/{} {}] {}\n", record.level(), name, pid, record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Shows log records at `level` and above on standard error, each line
/// prefixed with the level, the process name and its pid:
/// `[INFO/Process-1 4242] process exiting with exitcode 0`. Children started
/// afterwards do the same.
///
/// This installs a logger for the `log` crate if the program has none yet;
/// if another logger is installed, records go to it instead and only the
/// level is set.
pub fn log_to_stderr(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
    LEVEL.store(level_to_u8(level), Ordering::Release);
}

/// The level [`log_to_stderr`] was called with in this process (or
/// inherited from the parent), if it was.
pub(crate) fn level() -> Option<LevelFilter> {
    let v = LEVEL.load(Ordering::Acquire);
    (v != NO_LEVEL).then(|| level_from_u8(v))
}

pub(crate) fn set_process(name: &str, pid: i32) {
    *PREFIX.write().unwrap_or_else(|p| p.into_inner()) = Some((name.to_string(), pid));
}

pub(crate) fn level_to_u8(level: LevelFilter) -> u8 {
    level as usize as u8
}

pub(crate) fn level_from_u8(v: u8) -> LevelFilter {
    LevelFilter::iter()
        .find(|l| *l as usize == v as usize)
        .unwrap_or(LevelFilter::Off)
}
