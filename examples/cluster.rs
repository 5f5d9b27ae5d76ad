//! The same Pool across machines: `cargo run --release --features cluster --example cluster`.
//!
//! With `MULTIPROC_CLUSTER=redis://head:6379/` it is a caller of that
//! broker (start agents on the other machines with
//! `MULTIPROC_WORKER=redis://head:6379/ ./cluster`). Without it, it starts
//! a private redis-server (it must be installed: `apt-get install
//! redis-server`) and two local agents of its own, so it runs anywhere.
//! It prints the round trip of one small task, the throughput of 100 000
//! tiny tasks, and shows the work of an agent killed mid-map finishing
//! elsewhere.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(10));
    x * x
}

/// A local redis-server and agents, killed at the end.
struct Local {
    dir: std::path::PathBuf,
    server: Child,
    /// The agents, and whether each was killed.
    agents: Vec<(Child, bool)>,
}

impl Local {
    fn start() -> (Local, String) {
        let dir =
            std::env::temp_dir().join(format!("multiproc-example-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("redis.sock");
        let server = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no", "--unixsocket"])
            .arg(&sock)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server), or set MULTIPROC_CLUSTER");
        let url = format!("redis+unix://{}", sock.display());
        let deadline = Instant::now() + Duration::from_secs(10);
        while multiproc::cluster::Broker::connect(&url).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut local = Local {
            dir,
            server,
            agents: Vec::new(),
        };
        for _ in 0..2 {
            let agent = Command::new(std::env::current_exe().unwrap())
                .env("MULTIPROC_WORKER", &url)
                .env("MULTIPROC_WORKER_PROCESSES", "2")
                .process_group(0)
                .spawn()
                .unwrap();
            local.agents.push((agent, false));
        }
        (local, url)
    }

    /// SIGKILL to an agent's whole process group (its workers too).
    fn kill_agent(&mut self, i: usize) {
        let (agent, killed) = &mut self.agents[i];
        let pid = agent.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = agent.wait();
        *killed = true;
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        for (a, killed) in &mut self.agents {
            if !*killed {
                let _ = Command::new("kill")
                    .args(["-TERM", &a.id().to_string()])
                    .status();
                let _ = a.wait();
            }
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn main() -> multiproc::Result<()> {
    if std::env::var_os("CLUSTER_LOG").is_some() {
        multiproc::log_to_stderr(log::LevelFilter::Debug);
    }
    multiproc::init(); // an agent when MULTIPROC_WORKER is set
    let (mut local, url) = match std::env::var("MULTIPROC_CLUSTER") {
        Ok(url) => (None, url),
        Err(_) => {
            let (l, url) = Local::start();
            (Some(l), url)
        }
    };
    let mut builder = Pool::builder().cluster(&url);
    if local.is_some() {
        builder = builder.processes(4); // two agents of two (the second may still be starting)
    }
    let pool = builder.build()?;
    println!("cluster pool with {} processes", pool.processes());

    let mut trips: Vec<Duration> = (0..200)
        .map(|i| {
            let t = Instant::now();
            assert_eq!(pool.apply(square, i).unwrap(), i * i);
            t.elapsed()
        })
        .collect();
    trips.sort();
    println!(
        "one small task, round trip: median {:?}",
        trips[trips.len() / 2]
    );

    let t = Instant::now();
    let squares = pool.map(square, 0..100_000u64)?;
    let took = t.elapsed();
    assert_eq!(squares[99_999], 99_999 * 99_999);
    println!(
        "100 000 tiny tasks: {:?} ({:.2} M items/s)",
        took,
        100_000.0 / took.as_secs_f64() / 1e6
    );

    if let Some(local) = local.as_mut() {
        let t = Instant::now();
        let mut it = pool.chunksize(4).imap(slow_square, 0..400u64)?;
        let mut n = 0;
        for r in &mut it {
            assert_eq!(r?, n * n);
            n += 1;
            if n == 40 {
                local.kill_agent(0);
                println!("killed agent 0 (its process group) after 40 results");
            }
        }
        println!(
            "all 400 results, each once, in {:?}: the lost agent's chunks ran on the other",
            t.elapsed()
        );
    }
    pool.close();
    pool.join()?;
    Ok(())
}
