//! Log records from children reach the parent's logger with the child's
//! name and pid, under each start method (the `tests/isolated` harness: a
//! process and a watchdog per test and start method).

use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use multiproc::pool::Pool;
use multiproc::{Process, StartMethod};

mod isolated;

const TESTS: isolated::Tests = &[
    (
        "child_record_has_name_and_pid",
        child_record_has_name_and_pid,
        true,
    ),
    ("pool_workers_records", pool_workers_records, true),
    (
        "records_before_a_crash_survive",
        records_before_a_crash_survive,
        true,
    ),
    (
        "low_level_filters_in_the_child",
        low_level_filters_in_the_child,
        true,
    ),
    (
        "hostile_packet_spares_the_collector",
        hostile_packet_spares_the_collector,
        true,
    ),
    (
        "tracing_events_arrive_as_records",
        tracing_events_arrive_as_records,
        true,
    ),
];

fn main() {
    isolated::main("logs", TESTS);
}

/// What the parent's logger saw: level, target, line, message.
type Seen = (Level, String, Option<u32>, String);

static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

struct TestLogger;

impl Log for TestLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &Record<'_>) {
        SEEN.lock().unwrap().push((
            record.level(),
            record.target().to_string(),
            record.line(),
            record.args().to_string(),
        ));
    }
    fn flush(&self) {}
}

fn install(level: LevelFilter) {
    multiproc::logging::set_logger(Box::new(TestLogger), level).unwrap();
}

fn seen(message: &str) -> Vec<Seen> {
    SEEN.lock()
        .unwrap()
        .iter()
        .filter(|r| r.3.ends_with(message))
        .cloned()
        .collect()
}

fn hello() -> u32 {
    log::warn!(target: "app::child", "hello from the child");
    std::process::id()
}

fn child_record_has_name_and_pid(method: StartMethod) {
    install(LevelFilter::Info);
    let p = Process::new(hello, ())
        .name("talker")
        .start_method(method)
        .start()
        .unwrap();
    let pid = p.join().unwrap();
    let got = seen("hello from the child");
    assert_eq!(got.len(), 1, "{:?}", SEEN.lock().unwrap());
    let (level, target, line, message) = &got[0];
    assert_eq!(*level, Level::Warn);
    assert_eq!(target, "app::child");
    assert!(line.is_some());
    assert_eq!(message, &format!("[talker pid {pid}] hello from the child"));
}

fn work(x: u64) -> u64 {
    log::info!("task {x} done");
    x
}

fn pool_workers_records(method: StartMethod) {
    install(LevelFilter::Info);
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap();
    assert_eq!(pool.map(work, 0..10u64).unwrap().len(), 10);
    pool.close();
    pool.join().unwrap();
    for x in 0..10u64 {
        let got = seen(&format!("task {x} done"));
        assert_eq!(got.len(), 1, "task {x}: {:?}", SEEN.lock().unwrap());
        assert!(got[0].3.starts_with("[PoolWorker-"), "{:?}", got[0]);
        assert!(got[0].3.contains(" pid "), "{:?}", got[0]);
    }
}

fn log_then_panic() {
    log::error!("about to panic");
    panic!("boom");
}

fn log_then_abort() {
    log::error!("about to abort");
    std::process::abort();
}

fn log_then_sigkill() {
    log::error!("about to be killed");
    #[allow(unsafe_code)]
    // SAFETY: raising a signal at ourselves; SIGKILL ends the process.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
}

fn records_before_a_crash_survive(method: StartMethod) {
    install(LevelFilter::Info);
    macro_rules! check {
        ($f:ident, $message:literal, $name:literal) => {
            let p = Process::new($f, ())
                .name($name)
                .start_method(method)
                .start()
                .unwrap();
            assert!(p.join().is_err(), "{} failed", $name);
            let got = seen($message);
            assert_eq!(got.len(), 1, "{}: {:?}", $name, SEEN.lock().unwrap());
            assert!(
                got[0].3.starts_with(concat!("[", $name, " pid ")),
                "{:?}",
                got[0]
            );
        };
    }
    check!(log_then_panic, "about to panic", "panicker");
    check!(log_then_abort, "about to abort", "aborter");
    check!(log_then_sigkill, "about to be killed", "killed");
}

fn level_in_child() -> String {
    log::info!("filtered out");
    log::warn!("let through");
    log::max_level().to_string()
}

fn low_level_filters_in_the_child(method: StartMethod) {
    install(LevelFilter::Warn);
    let p = Process::new(level_in_child, ())
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), "WARN");
    assert!(seen("filtered out").is_empty());
    assert_eq!(seen("let through").len(), 1);
}

fn send_hostile() -> bool {
    let mut sent = true;
    for bytes in [
        &[][..],
        &[0xA7],
        &[0xA7, 3, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 0, 0, 0, 0],
        &[
            0xA7, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFE,
        ],
        &[0u8; 16 * 1024 + 100],
    ] {
        sent &= multiproc::logging::__send_raw_packet(bytes).is_ok();
    }
    log::warn!("still heard");
    sent
}

fn hostile_packet_spares_the_collector(method: StartMethod) {
    install(LevelFilter::Info);
    let p = Process::new(send_hostile, ())
        .start_method(method)
        .start()
        .unwrap();
    // The oversized packet is refused by the kernel or the decoder.
    let _ = p.join().unwrap();
    assert_eq!(seen("still heard").len(), 1, "{:?}", SEEN.lock().unwrap());
    // The collector still works for the next child.
    let p = Process::new(hello, ())
        .start_method(method)
        .start()
        .unwrap();
    p.join().unwrap();
    assert_eq!(seen("hello from the child").len(), 1);
}

/// A child's `tracing` events, with fields, one filtered out, one just
/// before an abort.
fn traced(x: u64) -> u64 {
    tracing::warn!(target: "app::traced", item = x, "traced item");
    tracing::debug!("below the parent's level");
    tracing::error!(code = 7, "going down");
    std::process::abort();
}

fn tracing_events_arrive_as_records(method: StartMethod) {
    install(LevelFilter::Info);
    let p = Process::new(traced, 5)
        .name("tracer")
        .start_method(method)
        .start()
        .unwrap();
    let pid = p.pid();
    assert!(p.join().is_err(), "the child aborted");
    let got = seen("traced item item=5");
    assert_eq!(got.len(), 1, "{:?}", SEEN.lock().unwrap());
    let (level, target, line, message) = &got[0];
    assert_eq!(*level, Level::Warn);
    assert_eq!(target, "app::traced");
    assert!(line.is_some());
    assert_eq!(message, &format!("[tracer pid {pid}] traced item item=5"));
    assert_eq!(
        seen("going down code=7").len(),
        1,
        "the last event before the abort"
    );
    assert!(seen("below the parent's level").is_empty());
}
