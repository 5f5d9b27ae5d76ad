//! What every multi-process test file shares: the watchdog.
//!
//! Use it from a test file with `mod common;` and `let _w = common::watchdog("name");`
//! at the top of each test.

use std::sync::mpsc;
use std::time::Duration;

/// How long one test may run before the watchdog aborts the test binary.
pub const LIMIT: Duration = Duration::from_secs(120);

/// Aborts the whole test binary if a test runs past [`LIMIT`], so a hang
/// fails instead of stalling CI; children die with it (they follow their
/// parent). Dropping the guard disarms it.
pub struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

/// Arms a watchdog for the test `name`.
pub fn watchdog(name: &'static str) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(LIMIT) {
            eprintln!("watchdog: {name} hung for {LIMIT:?}; aborting");
            std::process::abort();
        }
    });
    Watchdog(tx)
}
