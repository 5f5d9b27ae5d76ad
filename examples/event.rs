//! Seed 002's Event example (PyMOTW) in Rust: `cargo run --example event`.
//!
//! One child waits for the event with no limit, another with a timeout of
//! 2 s; the parent sets it after 3 s, so the second gives up first.

use std::time::Duration;

use multiproc::Process;
use multiproc::sync::Event;

fn wait_for_event(e: Event) {
    println!("wait_for_event: starting");
    e.wait();
    println!("wait_for_event: e.is_set()-> {}", e.is_set());
}

fn wait_for_event_timeout(e: Event, t: Duration) {
    println!("wait_for_event_timeout: starting");
    if let Err(err) = e.wait_timeout(t) {
        println!("wait_for_event_timeout: {err}"); // ErrorKind::Timeout
    }
    println!("wait_for_event_timeout: e.is_set()-> {}", e.is_set());
}

fn main() -> multiproc::Result<()> {
    multiproc::init();
    let e = Event::new()?;
    let w1 = Process::new(wait_for_event, e.clone())
        .name("block")
        .start()?;
    let w2 = Process::new(wait_for_event_timeout, (e.clone(), Duration::from_secs(2)))
        .name("nonblock")
        .start()?;
    println!("main: waiting before calling Event.set()");
    std::thread::sleep(Duration::from_secs(3));
    e.set();
    println!("main: event is set");
    w1.join()?;
    w2.join()?;
    Ok(())
}
