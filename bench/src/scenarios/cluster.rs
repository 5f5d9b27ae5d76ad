//! The cluster engine (issue 17) beside Dask distributed and RQ:
//! `cluster_round_trip`, `cluster_map` and `cluster_agent_killed`.
//!
//! Each run happens in a fresh copy of this binary (`__cluster_run NAME
//! VARIANT ITERS`), in a process group of its own that the harness kills
//! when it exits or times out: a cluster pool has threads of its own, and
//! the harness must stay single-threaded for the fork start method. The
//! copy starts a private redis-server on a Unix socket in a temporary
//! directory (`--port 0 --save '' --appendonly no`) and 2 local agents,
//! which are this same binary again (`__cluster_agent`: an agent takes only
//! tasks of the very same executable), each in a process group of its own
//! (so that `cluster_agent_killed` can SIGKILL one with its workers). The
//! server and the agents die with the copy (`PR_SET_PDEATHSIG`, set by
//! themselves before they run) and are stopped, waited for and their
//! directory removed when it ends. Every wait is bounded: an error, never
//! a hang.
//!
//! Without redis-server the runners skip (a note, not an error).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::Pool;
use multiproc::cluster::{Broker, ClusterOptions, Worker};
use rustix::process::{Pid, Signal};

use crate::external::{self, ExternalError};
use crate::report::median;

/// The argument that makes this binary run one cluster scenario's run.
pub const RUN_ARG: &str = "__cluster_run";
/// The argument that makes this binary a cluster agent.
pub const AGENT_ARG: &str = "__cluster_agent";
/// The argument that makes this binary exec redis-server, dying with its
/// parent.
pub const REDIS_ARG: &str = "__cluster_redis";

/// Longest any single wait of a run may take (a map, a start-up).
const BOUND: Duration = Duration::from_secs(30);

/// Longest the victim of `cluster_agent_killed` sleeps if nothing stops it.
const VICTIM_SLEEP: Duration = Duration::from_secs(30);

/// Items of the map of `cluster_agent_killed`.
const KILLED_ITEMS: u64 = 200;

/// Timed maps per run of `cluster_map` (the run's value is their median).
const MAPS_PER_RUN: usize = 5;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn square(x: u64) -> u64 {
    x * x
}

/// Iterations of `cluster_round_trip`: round trips per run.
pub fn round_trip_iters(_: &str, quick: bool) -> usize {
    if quick { 20 } else { 500 }
}

/// Iterations of `cluster_map`: the items of a map.
pub fn map_iters(_: &str, quick: bool) -> usize {
    if quick { 2_000 } else { 100_000 }
}

/// Iterations of `cluster_agent_killed`: kill cycles per run; 0 (skipped)
/// for the default 5 s lease under `--quick`.
pub fn killed_iters(variant: &str, quick: bool) -> usize {
    match (quick, variant) {
        (true, "lease_1s") => 1,
        (true, _) => 0,
        (false, _) => 3,
    }
}

/// `cluster_round_trip`: µs per `apply` of a trivial task, one at a time,
/// over 2 agents of 1 process (median of ITERS after 20 untimed).
pub fn round_trip(variant: &str, iters: usize) -> Result<f64, ExternalError> {
    in_copy("round_trip", variant, iters)
}

/// `cluster_map`: items per second of `map` of u64 -> u64 over ITERS
/// small ints, default (auto) chunking, 2 agents of 1 or 2 processes
/// (variant `2x1`, `2x2`); the median of 5 maps after one untimed.
pub fn map(variant: &str, iters: usize) -> Result<f64, ExternalError> {
    in_copy("map", variant, iters)
}

/// `cluster_agent_killed`: ms from SIGKILL of the process group of the
/// agent running item 0 (it sleeps) of a `map` of 200 items until the map
/// returns every result, the lost chunk run by the other agent once the
/// lease (variant `lease_1s`, `lease_5s`: the default) has passed.
pub fn agent_killed(variant: &str, iters: usize) -> Result<f64, ExternalError> {
    if iters == 0 {
        return Err(ExternalError::Missing(
            "--quick runs only the 1 s lease (the 5 s one takes 5 s a cycle)".into(),
        ));
    }
    in_copy("agent_killed", variant, iters)
}

/// Is redis-server there? `Err` says why not.
fn redis_server() -> Result<(), ExternalError> {
    match Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(ExternalError::Missing(format!(
            "`redis-server --version` failed ({s}): the cluster scenarios need it"
        ))),
        Err(e) => Err(ExternalError::Missing(format!(
            "redis-server not found ({e}; apt-get install redis-server): the cluster scenarios need a broker"
        ))),
    }
}

/// Runs `RUN_ARG NAME VARIANT ITERS` in a fresh copy of this binary (its
/// own process group, bounded) and reads its single number.
fn in_copy(name: &str, variant: &str, iters: usize) -> Result<f64, ExternalError> {
    redis_server()?;
    let exe = std::env::current_exe().map_err(|e| ExternalError::Failed(e.to_string()))?;
    let mut cmd = Command::new(exe);
    cmd.arg(RUN_ARG);
    external::start(cmd, &[name, variant, &iters.to_string()])
        .map_err(ExternalError::Failed)?
        .wait()
}

/// What the copy runs: `NAME VARIANT ITERS`; prints the run's value.
pub fn run_main(args: &[String]) -> Result<(), String> {
    let [name, variant, iters] = args else {
        return Err(format!("usage: {RUN_ARG} NAME VARIANT ITERS"));
    };
    let iters: usize = iters.parse().map_err(err)?;
    let value = match name.as_str() {
        "round_trip" => run_round_trip(iters)?,
        "map" => run_map(variant, iters)?,
        "agent_killed" => run_agent_killed(variant, iters)?,
        other => return Err(format!("no cluster scenario {other:?}")),
    };
    println!("{value:.3}");
    Ok(())
}

/// Sets `PR_SET_PDEATHSIG(SIGKILL)` and checks that the parent is still
/// the one that started this process (else it died before the call).
fn die_with_parent(parent: &str) -> Result<(), String> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
    let now = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    if now.to_string() != parent {
        return Err(format!("the parent ({parent}) is gone"));
    }
    Ok(())
}

/// `AGENT_ARG URL NAME PROCESSES LEASE_MS PARENT`: an agent until SIGTERM
/// (or its parent's death).
pub fn agent_main(args: &[String]) -> Result<(), String> {
    let [url, name, processes, lease_ms, parent] = args else {
        return Err(format!(
            "usage: {AGENT_ARG} URL NAME PROCESSES LEASE_MS PARENT"
        ));
    };
    die_with_parent(parent)?;
    Worker::new(url)
        .name(name)
        .processes(processes.parse().map_err(err)?)
        .lease(Duration::from_millis(lease_ms.parse().map_err(err)?))
        .run()
        .map_err(err)
}

/// `REDIS_ARG PARENT ARGS...`: execs `redis-server ARGS...`, which keeps
/// the death signal.
pub fn redis_main(args: &[String]) -> Result<(), String> {
    let Some((parent, rest)) = args.split_first() else {
        return Err(format!("usage: {REDIS_ARG} PARENT ARGS..."));
    };
    die_with_parent(parent)?;
    let e = Command::new("redis-server").args(rest).exec();
    Err(format!("cannot exec redis-server: {e}"))
}

/// An agent process, leader of its own process group.
struct Agent {
    child: Child,
    /// SIGKILLed (with its group) and waited for.
    killed: bool,
}

/// A private redis-server and local agents; all stopped and the directory
/// removed on drop.
struct Local {
    dir: PathBuf,
    url: String,
    server: Child,
    agents: Vec<Agent>,
    processes: usize,
    lease: Duration,
    /// Agents started so far (their names are `agent-N`).
    started: usize,
}

impl Local {
    /// A server and `agents` agents of `processes` processes each, every
    /// agent registered.
    fn start(agents: usize, processes: usize, lease: Duration) -> Result<Local, String> {
        let dir =
            std::env::temp_dir().join(format!("multiproc-bench-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let sock = dir.join("r.sock");
        let spawned = Command::new(std::env::current_exe().map_err(err)?)
            .arg(REDIS_ARG)
            .arg(std::process::id().to_string())
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&sock)
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        let server = match spawned {
            Ok(server) => server,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("starting redis-server: {e}"));
            }
        };
        let mut local = Local {
            url: format!("redis+unix://{}", sock.display()),
            dir,
            server,
            agents: Vec::new(),
            processes,
            lease,
            started: 0,
        };
        let t0 = Instant::now();
        // Polls the server's start-up (another program), bounded.
        while Broker::connect(&local.url).is_err() {
            if let Ok(Some(status)) = local.server.try_wait() {
                return Err(format!("redis-server exited at start ({status})"));
            }
            if t0.elapsed() > BOUND {
                return Err(format!("redis-server did not answer within {BOUND:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for _ in 0..agents {
            local.add_agent()?;
        }
        Ok(local)
    }

    /// Starts one more agent and waits (bounded) until it is registered.
    fn add_agent(&mut self) -> Result<(), String> {
        let name = format!("agent-{}", self.started);
        self.started += 1;
        let child = Command::new(std::env::current_exe().map_err(err)?)
            .args([
                AGENT_ARG,
                &self.url,
                &name,
                &self.processes.to_string(),
                &self.lease.as_millis().to_string(),
                &std::process::id().to_string(),
            ])
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting an agent: {e}"))?;
        self.agents.push(Agent {
            child,
            killed: false,
        });
        let key = format!("mp:{}:agents", multiproc::cluster::build_id().map_err(err)?);
        let mut conn = redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection())
            .map_err(err)?;
        let t0 = Instant::now();
        // Polls the broker for the agent's registration (another
        // process's start-up), bounded.
        loop {
            let there: bool = redis::cmd("HEXISTS")
                .arg(&key)
                .arg(&name)
                .query(&mut conn)
                .map_err(err)?;
            if there {
                return Ok(());
            }
            let agent = self.agents.last_mut().expect("just pushed");
            if let Ok(Some(status)) = agent.child.try_wait() {
                agent.killed = true;
                return Err(format!("agent {name} exited at start ({status})"));
            }
            if t0.elapsed() > BOUND {
                return Err(format!("agent {name} did not register within {BOUND:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A cluster pool over the agents, checked to have all their processes.
    fn pool(&self) -> Result<Pool, String> {
        let pool = Pool::builder()
            .cluster_with(&self.url, ClusterOptions::default().agent_wait(BOUND))
            .build()
            .map_err(err)?;
        let live = self.agents.iter().filter(|a| !a.killed).count();
        if pool.processes() != live * self.processes {
            return Err(format!(
                "the pool has {} processes, the {live} agents {}",
                pool.processes(),
                live * self.processes
            ));
        }
        Ok(pool)
    }

    /// SIGKILL to the process group `group` (an agent and its workers),
    /// then waits for the agent; its index.
    fn kill_group(&mut self, group: i32) -> Result<usize, String> {
        let i = self
            .agents
            .iter()
            .position(|a| !a.killed && a.child.id() as i32 == group)
            .ok_or_else(|| format!("process group {group} is no agent's"))?;
        let pid = Pid::from_raw(group).ok_or("pid 0")?;
        rustix::process::kill_process_group(pid, Signal::KILL)
            .map_err(|e| format!("killpg {group}: {e}"))?;
        let agent = &mut self.agents[i];
        agent.child.wait().map_err(err)?;
        agent.killed = true;
        Ok(i)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // SIGTERM: an agent finishes what it holds (nothing by now) and
        // leaves; then SIGKILL to whatever of its group remains.
        for a in self.agents.iter_mut().filter(|a| !a.killed) {
            if let Some(pid) = Pid::from_raw(a.child.id() as i32) {
                let _ = rustix::process::kill_process(pid, Signal::TERM);
            }
        }
        for a in self.agents.iter_mut().filter(|a| !a.killed) {
            let deadline = Instant::now() + Duration::from_secs(5);
            // Polls the agent's exit, bounded.
            while matches!(a.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Some(pid) = Pid::from_raw(a.child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, Signal::KILL);
            }
            let _ = a.child.wait();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_round_trip(iters: usize) -> Result<f64, String> {
    let local = Local::start(2, 1, Duration::from_secs(5))?;
    let pool = local.pool()?;
    let apply = |i: u64| -> Result<(), String> {
        let r = pool.apply_async(square, i).map_err(err)?;
        match r.get_timeout(BOUND).map_err(err)? {
            v if v == i * i => Ok(()),
            v => Err(format!("square({i}) gave {v}")),
        }
    };
    for i in 0..20 {
        apply(i)?;
    }
    let mut times = Vec::with_capacity(iters);
    for i in 0..iters as u64 {
        let t0 = Instant::now();
        apply(i)?;
        times.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    pool.close();
    pool.join().map_err(err)?;
    Ok(median(&mut times))
}

fn run_map(variant: &str, items: usize) -> Result<f64, String> {
    let processes = match variant {
        "2x1" => 1,
        "2x2" => 2,
        other => return Err(format!("cluster_map has no variant {other:?}")),
    };
    let local = Local::start(2, processes, Duration::from_secs(5))?;
    let pool = local.pool()?;
    let items = items as u64;
    let map = |n: u64| -> Result<(), String> {
        let out = pool
            .map_async(square, 0..n)
            .map_err(err)?
            .get_timeout(BOUND)
            .map_err(err)?;
        if out.len() as u64 != n || out.last() != Some(&((n - 1) * (n - 1))) {
            return Err(format!("the map of {n} items gave {} results", out.len()));
        }
        Ok(())
    };
    map(items.min(10_000))?;
    let mut rates = Vec::with_capacity(MAPS_PER_RUN);
    for _ in 0..MAPS_PER_RUN {
        let t0 = Instant::now();
        map(items)?;
        rates.push(items as f64 / t0.elapsed().as_secs_f64());
    }
    pool.close();
    pool.join().map_err(err)?;
    Ok(median(&mut rates))
}

/// The victim: at its first delivery it writes its pid to `path`
/// (atomically, by a rename) and sleeps until its agent is killed; when
/// the lost chunk runs again elsewhere it returns at once.
fn victim(path: &str) {
    let first = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(format!("{path}.claim"))
        .is_ok();
    if !first {
        return;
    }
    let tmp = format!("{path}.tmp");
    if std::fs::write(&tmp, std::process::id().to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
    std::thread::sleep(VICTIM_SLEEP);
}

/// Item 0 is the victim; every item returns its number.
fn victim_or_echo(item: (u64, String)) -> u64 {
    if item.0 == 0 {
        victim(&item.1);
    }
    item.0
}

/// Waits (bounded) for the victim's file: the pid of the worker running it.
fn wait_victim(path: &Path) -> Result<i32, String> {
    let t0 = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return Ok(pid);
        }
        if t0.elapsed() > BOUND {
            return Err(format!("the victim task did not start within {BOUND:?}"));
        }
        // Polls a file another process writes, bounded.
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn run_agent_killed(variant: &str, cycles: usize) -> Result<f64, String> {
    let lease = match variant {
        "lease_1s" => Duration::from_secs(1),
        "lease_5s" => Duration::from_secs(5),
        other => return Err(format!("cluster_agent_killed has no variant {other:?}")),
    };
    let mut local = Local::start(2, 2, lease)?;
    let pool = local.pool()?;
    let mut times = Vec::with_capacity(cycles);
    for cycle in 0..cycles {
        let path = local.dir.join(format!("victim-{cycle}"));
        let arg = path.display().to_string();
        let items: Vec<(u64, String)> = (0..KILLED_ITEMS).map(|i| (i, arg.clone())).collect();
        let r = pool.map_async(victim_or_echo, items).map_err(err)?;
        let pid = wait_victim(&path)?;
        let group = rustix::process::getpgid(Pid::from_raw(pid))
            .map_err(|e| format!("getpgid({pid}): {e}"))?;
        let t0 = Instant::now();
        local.kill_group(group.as_raw_nonzero().get())?;
        let out = r.get_timeout(lease + BOUND).map_err(err)?;
        let took = t0.elapsed();
        if out.len() as u64 != KILLED_ITEMS || out.iter().enumerate().any(|(i, &v)| v != i as u64) {
            return Err(format!(
                "the map gave {} results, not 0..{KILLED_ITEMS}",
                out.len()
            ));
        }
        times.push(took.as_secs_f64() * 1e3);
        // A fresh agent for the next cycle (untimed).
        local.add_agent()?;
    }
    pool.close();
    pool.join().map_err(err)?;
    drop(pool);
    drop(local);
    Ok(median(&mut times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_runs_only_the_short_lease_and_short_sizes() {
        assert_eq!(killed_iters("lease_1s", true), 1);
        assert_eq!(killed_iters("lease_5s", true), 0);
        assert_eq!(killed_iters("lease_5s", false), 3);
        assert!(map_iters("2x1", true) <= 2_000);
        assert_eq!(map_iters("2x1", false), 100_000);
        assert!(matches!(
            agent_killed("lease_5s", 0),
            Err(ExternalError::Missing(_))
        ));
    }
}
