//! The cluster engine's broker connection (issue 17's first slice). Each
//! test starts its own redis-server on a Unix socket (`--port 0`) in a
//! fresh temp dir, killed and removed at the end.

#![cfg(feature = "cluster")]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::ErrorKind;
use multiproc::cluster::Broker;

/// A private redis-server; killed and its directory removed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Server {
    /// `None` (with a message) only when redis-server is not installed.
    fn start() -> Option<Server> {
        let dir = std::env::temp_dir().join(format!(
            "multiproc-cluster-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("redis.sock");
        let child = match Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
            ])
            .arg(&sock)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::remove_dir_all(&dir).ok();
                eprintln!("SKIPPED: redis-server not found (apt-get install redis-server)");
                return None;
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let url = format!("redis+unix://{}", sock.display());
        let mut server = Server { child, dir, url };
        // Wait for the server to answer: bounded, each try a real PING.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if Broker::connect(&server.url).is_ok() {
                return Some(server);
            }
            if let Ok(Some(st)) = server.child.try_wait() {
                panic!("redis-server exited at start: {st}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer in 10 s"
            );
            std::thread::sleep(Duration::from_millis(10)); // polling, not synchronisation
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

#[test]
fn connects_to_a_live_broker() {
    let _w = common::watchdog("connects_to_a_live_broker");
    let Some(server) = Server::start() else {
        return;
    };
    let mut b = Broker::connect(&server.url).unwrap();
    assert_eq!(b.dbsize().unwrap(), 0);
}

#[test]
fn unreachable_url_is_a_clear_error_not_a_hang() {
    let _w = common::watchdog("unreachable_url_is_a_clear_error_not_a_hang");
    let dir = std::env::temp_dir().join(format!("multiproc-cluster-none-{}", std::process::id()));
    let url = format!("redis+unix://{}/absent.sock", dir.display());
    let e = Broker::connect(&url).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains("cannot connect"), "{e}");
    // A TCP port nobody listens on, with a password that must not show.
    let e = Broker::connect("redis://user:hunter2@127.0.0.1:1/").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = Broker::connect("notaurl").unwrap_err();
    assert!(e.to_string().contains("bad URL"), "{e}");
}
