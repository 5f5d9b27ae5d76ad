//! The cluster engine: the Pool over Redis Streams with local agents.
//!
//! Every test runs in a process of its own (the `isolated` harness, a
//! watchdog each) with its own redis-server on a Unix socket (`--port 0`)
//! in a fresh temp dir, and its own agents: this same binary started as
//! `cluster agent URL NAME`, each in a process group of its own (a test
//! SIGKILLs a whole agent, its local workers with it). Servers and agents
//! die with the test process (`PR_SET_PDEATHSIG`) and are killed and
//! waited for at the end. A test that needs the broker fails, not skips,
//! when redis-server cannot be started (`.ci/run` installs it).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::cluster::{Broker, ClusterOptions, Worker};
use multiproc::shared::{Frozen, SharedSlice, SharedVec, Value};
use multiproc::{ErrorKind, Pool, Queue, StartMethod, partial};
use serde_bytes::ByteBuf;

mod isolated;

const TESTS: isolated::Tests = &[
    (
        "connects_to_a_live_broker",
        connects_to_a_live_broker,
        false,
    ),
    (
        "unreachable_url_is_a_clear_error",
        unreachable_url_is_a_clear_error,
        false,
    ),
    (
        "the_pool_api_over_two_agents",
        the_pool_api_over_two_agents,
        false,
    ),
    (
        "an_agent_killed_mid_map_is_rerun_elsewhere",
        an_agent_killed_mid_map_is_rerun_elsewhere,
        false,
    ),
    (
        "a_long_task_on_a_live_agent_is_not_stolen",
        a_long_task_on_a_live_agent_is_not_stolen,
        false,
    ),
    (
        "past_max_losses_a_chunk_fails_naming_the_agent",
        past_max_losses_a_chunk_fails_naming_the_agent,
        false,
    ),
    (
        "no_agent_of_this_build_is_a_clear_error",
        no_agent_of_this_build_is_a_clear_error,
        false,
    ),
    (
        "an_agent_sigtermed_mid_map_drains",
        an_agent_sigtermed_mid_map_drains,
        false,
    ),
    (
        "terminate_mid_map_leaves_no_keys",
        terminate_mid_map_leaves_no_keys,
        false,
    ),
    (
        "a_dead_callers_keys_expire",
        a_dead_callers_keys_expire,
        false,
    ),
    (
        "an_agent_added_mid_map_gets_work",
        an_agent_added_mid_map_gets_work,
        false,
    ),
    (
        "a_broker_restart_without_persistence_loses_nothing",
        a_broker_restart_without_persistence_loses_nothing,
        false,
    ),
    (
        "a_hundred_thousand_small_tasks",
        a_hundred_thousand_small_tasks,
        false,
    ),
    (
        "a_put_value_is_fetched_once_per_agent",
        a_put_value_is_fetched_once_per_agent,
        false,
    ),
    (
        "a_large_argument_repeated_is_stored_once",
        a_large_argument_repeated_is_stored_once,
        false,
    ),
    (
        "sealed_memory_crosses_machines_a_queue_does_not",
        sealed_memory_crosses_machines_a_queue_does_not,
        false,
    ),
    (
        "a_broker_restart_with_persistence_loses_nothing",
        a_broker_restart_with_persistence_loses_nothing,
        false,
    ),
    (
        "a_broker_back_from_an_older_snapshot_loses_nothing",
        a_broker_back_from_an_older_snapshot_loses_nothing,
        false,
    ),
    (
        "the_executor_api_over_the_cluster",
        the_executor_api_over_the_cluster,
        false,
    ),
    (
        "a_tls_broker_with_a_password",
        a_tls_broker_with_a_password,
        false,
    ),
];

/// `CLUSTER_TEST_LOG=1`: the engine's log records on stderr (debugging).
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        eprintln!("[{} {}] {}", std::process::id(), r.level(), r.args());
    }
    fn flush(&self) {}
}

fn main() {
    if std::env::var_os("CLUSTER_TEST_LOG").is_some() {
        log::set_logger(&StderrLog).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    }
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("agent") => return agent_main(&args[2..]),
        Some("redis") => return redis_main(&args[2..]),
        Some("caller") => return caller_main(&args[2..]),
        Some("tls-caller") => return tls_caller_main(&args[2..]),
        _ => {}
    }
    isolated::main("cluster", TESTS);
}

/// Dies with the test process that started it.
fn die_with_parent() {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .expect("prctl");
}

/// `cluster agent URL NAME [other-build]`: an agent until SIGTERM.
fn agent_main(args: &[String]) {
    die_with_parent();
    multiproc::init();
    let mut w = Worker::new(&args[0])
        .processes(2)
        .lease(Duration::from_millis(600))
        .name(&args[1]);
    if args.get(2).map(String::as_str) == Some("other-build") {
        w = w.__build_id("0000000000000000");
    }
    w.run().expect("the agent runs");
}

/// `cluster redis ARGS...`: redis-server, dying with the test process.
fn redis_main(args: &[String]) {
    die_with_parent();
    let e = Command::new("redis-server").args(args).exec();
    eprintln!("cannot start redis-server: {e} (apt-get install redis-server)");
    std::process::exit(127);
}

/// `cluster caller URL`: starts slow work on the cluster and stays until
/// killed.
fn caller_main(args: &[String]) {
    die_with_parent();
    multiproc::init();
    let pool = Pool::builder()
        .cluster_with(
            &args[0],
            ClusterOptions::default().caller_ttl(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let _r = pool.map_async(sleep_ms, vec![400u64; 40]).unwrap();
    println!("started");
    std::thread::sleep(Duration::from_secs(60)); // killed long before
}

/// `cluster tls-caller URL`: maps over the cluster at URL (a `rediss://`
/// broker whose CA `SSL_CERT_FILE` names), then checks that a wrong
/// password is a clear error that does not show it; prints `ok`.
fn tls_caller_main(args: &[String]) {
    die_with_parent();
    multiproc::init();
    let url = &args[0];
    let pool = Pool::builder()
        .cluster_with(url, fast_options())
        .build()
        .unwrap();
    let got = pool.map(square, 0..100u64).unwrap();
    assert_eq!(got, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    drop(pool);
    let wrong = url.replace(PASSWORD, "not-the-password");
    let e = Broker::connect(&wrong).unwrap_err();
    assert!(!e.to_string().contains("not-the-password"), "{e}");
    println!("ok");
}

// ---------------------------------------------------------------- tasks

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn scaled(k: &u64, x: u64) -> u64 {
    k * x
}

fn panics_on_7(x: u64) -> u64 {
    assert!(x != 7, "seven is refused");
    x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Sleeps, and says which process ran it.
fn slow_square(x: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(20));
    (x * x, std::process::id())
}

/// Appends a line to `path` (a count of runs), then sleeps `ms`.
fn record_then_sleep(path: &String, ms: u64) -> u64 {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(b"ran\n").unwrap(); // one write(2): lines do not mix
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Panics the first time it runs for `x` (a marker file in `dir` says it
/// ran), returns `x` the next.
fn fails_once(dir: &String, x: u64) -> u64 {
    let marker = std::path::Path::new(dir).join(x.to_string());
    if std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
        .is_ok()
    {
        panic!("the first run of {x}");
    }
    x
}

/// Appends `x` to the file `path` (a record of runs), sleeps 20 ms and
/// returns `x * x`.
fn record_square(path: &String, x: u64) -> u64 {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    // One write(2) (O_APPEND): lines of concurrent workers do not mix.
    f.write_all(format!("{x}\n").as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    x * x
}

fn sum_bytes((data, i): (ByteBuf, u64)) -> u64 {
    data.iter().map(|&b| b as u64).sum::<u64>() + i
}

fn sum_frozen((data, i): (Frozen<ByteBuf>, u64)) -> (u64, u32) {
    (
        data.iter().map(|&b| b as u64).sum::<u64>() + i,
        std::process::id(),
    )
}

fn sum_slice(s: SharedSlice<u64>) -> u64 {
    s.iter().sum()
}

fn value_arg(v: Value<u64>) -> u64 {
    v.get().unwrap()
}

fn queue_arg(q: Queue<u8>) -> bool {
    q.empty()
}

/// 8 MiB of bytes and their sum.
fn eight_mib() -> (ByteBuf, u64) {
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let sum = data.iter().map(|&b| b as u64).sum();
    (ByteBuf::from(data), sum)
}

// ---------------------------------------------------------------- harness

/// A private redis-server; killed and its directory removed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
    url: String,
    /// `appendonly yes` (what it held survives a restart).
    persistent: bool,
    /// More arguments for redis-server (TLS, a password).
    extra: Vec<String>,
    /// The URL the test itself uses (the Unix socket, with the password).
    admin: String,
    /// The environment of the agents it starts.
    env: Vec<(String, PathBuf)>,
}

/// The password of [`Server::start_tls`].
const PASSWORD: &str = "s3cret-pw";

static SERVERS: AtomicU64 = AtomicU64::new(0);

impl Server {
    fn start() -> Server {
        Self::start_with(false)
    }

    /// A server with an append-only file (fsync'ed every second, as
    /// deployments run it).
    fn start_persistent() -> Server {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Server {
        Self::start_full(persistent, |_| (Vec::new(), None, Vec::new()))
    }

    /// A server that speaks TLS on a TCP port of 127.0.0.1 (a certificate
    /// for `localhost` signed by a CA made here) and wants a password;
    /// `url` is its `rediss://` URL, and the agents trust the CA
    /// (`SSL_CERT_FILE`). The Unix socket stays, for the test itself.
    fn start_tls() -> Server {
        Self::start_full(false, |dir| {
            use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
            let ca_key = KeyPair::generate().unwrap();
            let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca.distinguished_name
                .push(DnType::CommonName, "multiproc test CA");
            let ca = ca.self_signed(&ca_key).unwrap();
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec!["localhost".to_string()])
                .unwrap()
                .signed_by(&key, &ca, &ca_key)
                .unwrap();
            let write = |name: &str, text: String| {
                let path = dir.join(name);
                std::fs::write(&path, text).unwrap();
                path.display().to_string()
            };
            let ca_file = write("ca.pem", ca.pem());
            let cert_file = write("server.pem", cert.pem());
            let key_file = write("server.key", key.serialize_pem());
            // A free port: taken, then given back to redis-server.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let extra = [
                "--bind",
                "127.0.0.1",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &cert_file,
                "--tls-key-file",
                &key_file,
                "--tls-ca-cert-file",
                &ca_file,
                "--tls-auth-clients",
                "no",
                "--requirepass",
                PASSWORD,
            ]
            .map(String::from)
            .to_vec();
            let url = format!("rediss://:{PASSWORD}@localhost:{port}/");
            (
                extra,
                Some(url),
                vec![("SSL_CERT_FILE".to_string(), dir.join("ca.pem"))],
            )
        })
    }

    /// `setup(dir)` gives more redis-server arguments, the URL for pools
    /// and agents (else the Unix socket's) and the agents' environment.
    fn start_full(
        persistent: bool,
        setup: impl FnOnce(&PathBuf) -> (Vec<String>, Option<String>, Vec<(String, PathBuf)>),
    ) -> Server {
        let dir = std::env::temp_dir().join(format!(
            "multiproc-cluster-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("redis.sock");
        let (extra, url, env) = setup(&dir);
        let admin = if extra.iter().any(|a| a == "--requirepass") {
            format!("redis+unix://{}?pass={PASSWORD}", sock.display())
        } else {
            format!("redis+unix://{}", sock.display())
        };
        let child = Self::spawn(&dir, &sock, persistent, &extra);
        let mut server = Server {
            child,
            dir,
            sock,
            url: url.unwrap_or_else(|| admin.clone()),
            persistent,
            extra,
            admin,
            env,
        };
        server.wait_ready();
        server
    }

    fn spawn(dir: &PathBuf, sock: &PathBuf, persistent: bool, extra: &[String]) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .arg("redis")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                if persistent { "yes" } else { "no" },
                "--unixsocket",
            ])
            .arg(sock)
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if Broker::connect(&self.admin).is_ok() {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "redis-server exited at start ({st}): is it installed? (apt-get install redis-server)"
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer in 10 s"
            );
            std::thread::sleep(Duration::from_millis(10)); // polling a start-up, not synchronisation
        }
    }

    /// Kills the server (SIGKILL: nothing saved) and starts a fresh one on
    /// the same socket.
    fn restart_empty(&mut self) {
        assert!(!self.persistent);
        self.restart();
    }

    /// Kills the server (SIGKILL) and starts it again on the same socket
    /// and directory: empty, or with what its append-only file holds.
    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::fs::remove_file(&self.sock).ok();
        self.child = Self::spawn(&self.dir, &self.sock, self.persistent, &self.extra);
        self.wait_ready();
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(self.admin.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn dbsize(&self) -> u64 {
        Broker::connect(&self.admin).unwrap().dbsize().unwrap()
    }

    /// Waits (bounded) until `f` holds, polling the broker.
    fn until(&self, what: &str, mut f: impl FnMut(&Server) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f(self) {
            assert!(Instant::now() < deadline, "waited 20 s for {what}");
            std::thread::sleep(Duration::from_millis(20)); // polling the broker
        }
    }

    /// Starts an agent of this build (or another) and waits until it is
    /// registered.
    fn agent(&self, name: &str, other_build: bool) -> Agent {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["agent", &self.url, name]);
        if other_build {
            cmd.arg("other-build");
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = cmd.process_group(0).spawn().expect("start an agent");
        let build = if other_build {
            "0000000000000000".to_string()
        } else {
            multiproc::cluster::build_id().unwrap()
        };
        let key = format!("mp:{build}:agents");
        self.until("the agent to register", |s| {
            redis::cmd("HEXISTS")
                .arg(&key)
                .arg(name)
                .query::<bool>(&mut s.conn())
                .unwrap()
        });
        Agent { child }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// An agent process (its own process group); SIGKILLed with its group on
/// drop.
struct Agent {
    child: Child,
}

impl Agent {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn kill_group(&mut self) {
        let pg = rustix::process::Pid::from_raw(self.pid()).unwrap();
        let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }

    /// SIGTERM; returns how it exited.
    fn term_and_wait(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.pid()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill_group();
    }
}

fn fast_options() -> ClusterOptions {
    ClusterOptions::default()
        .agent_wait(Duration::from_secs(5))
        .caller_ttl(Duration::from_secs(2))
}

fn cluster_pool(server: &Server) -> Pool {
    Pool::builder()
        .cluster_with(&server.url, fast_options())
        .build()
        .unwrap()
}

// ---------------------------------------------------------------- tests

fn connects_to_a_live_broker(_: StartMethod) {
    let server = Server::start();
    let mut b = Broker::connect(&server.url).unwrap();
    assert_eq!(b.dbsize().unwrap(), 0);
}

fn unreachable_url_is_a_clear_error(_: StartMethod) {
    let dir = std::env::temp_dir().join(format!("multiproc-cluster-none-{}", std::process::id()));
    let url = format!("redis+unix://{}/absent.sock", dir.display());
    let e = Broker::connect(&url).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(e.to_string().contains("cannot connect"), "{e}");
    // A TCP port nobody listens on, with a password that must not show.
    let e = Broker::connect("redis://user:hunter2@127.0.0.1:1/").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = Pool::builder()
        .cluster("redis://user:hunter2@127.0.0.1:1/")
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = Broker::connect("notaurl").unwrap_err();
    assert!(e.to_string().contains("bad URL"), "{e}");
}

fn the_pool_api_over_two_agents(_: StartMethod) {
    let server = Server::start();
    let _a = server.agent("a", false);
    let _b = server.agent("b", false);
    let before = server.dbsize();
    let pool = cluster_pool(&server);
    assert_eq!(pool.processes(), 4, "what the two agents offer");

    let xs: Vec<u64> = (0..1000).collect();
    let want: Vec<u64> = xs.iter().map(|x| x * x).collect();
    assert_eq!(pool.map(square, xs.clone()).unwrap(), want);
    assert_eq!(pool.chunksize(7).map(square, xs.clone()).unwrap(), want);
    let got: Vec<u64> = pool
        .imap(square, xs.clone())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, want);
    let mut got: Vec<u64> = pool
        .imap_unordered(square, xs.clone())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, want);
    // One at a time: each answer may come back before its send returns.
    for i in 0..200u64 {
        assert_eq!(pool.apply(square, i).unwrap(), i * i);
    }
    assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]).unwrap(), vec![3, 7]);
    assert_eq!(
        pool.map(partial(scaled, 3u64), vec![1, 2]).unwrap(),
        vec![3, 6]
    );

    // apply_async with a callback; map_async.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let r = pool
        .apply_async_with(square, 9, move |v: &u64| s.lock().unwrap().push(*v), |_| {})
        .unwrap();
    assert_eq!(r.get().unwrap(), 81);
    let m = pool.map_async(square, vec![2u64, 3]).unwrap();
    assert_eq!(m.get().unwrap(), vec![4, 9]);

    // A panic is blamed on its item, with its message, as on one machine.
    let e = pool.map(panics_on_7, 0..20u64).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Panicked);
    assert!(e.to_string().contains("task 7"), "{e}");
    assert_eq!(e.panic_message(), Some("seven is refused"));
    assert!(e.to_string().contains("cluster agent"), "{e}");
    let each: Vec<_> = pool.imap(panics_on_7, 5..9u64).unwrap().collect();
    assert_eq!(each[0].as_ref().unwrap(), &5);
    assert_eq!(each[2].as_ref().unwrap_err().kind(), ErrorKind::Panicked);
    assert_eq!(each[3].as_ref().unwrap(), &8);

    // A per-call time limit is enforced by the agent's local pool.
    let e = pool
        .task_timeout(Duration::from_millis(200))
        .apply_async(sleep_ms, 5_000)
        .unwrap()
        .get()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimeLimit, "{e}");

    pool.close();
    pool.join().unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), &[81]);
    assert!(pool.stats().tasks_done >= 4000, "{:?}", pool.stats());
    server.until("the caller's keys to go", |s| s.dbsize() == before);
}

fn an_agent_killed_mid_map_is_rerun_elsewhere(_: StartMethod) {
    let server = Server::start();
    let mut a = server.agent("a", false);
    let _b = server.agent("b", false);
    let runs = server.dir.join("runs").display().to_string();
    let pool = cluster_pool(&server);
    let mut results = pool
        .chunksize(2)
        .imap(partial(record_square, runs.clone()), 0..200u64)
        .unwrap();
    let mut got = Vec::new();
    for r in &mut results {
        got.push(r.unwrap());
        if got.len() == 10 {
            a.kill_group();
        }
    }
    drop(results);
    let want: Vec<u64> = (0..200u64).map(|x| x * x).collect();
    assert_eq!(got, want, "each result once, in order");
    // Every item ran, some twice: the killed agent's chunks ran again.
    let ran: Vec<u64> = std::fs::read_to_string(&runs)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let distinct: std::collections::HashSet<u64> = ran.iter().copied().collect();
    assert_eq!(distinct.len(), 200);
    let redelivered = ran.len() - 200;
    assert!(
        redelivered > 0,
        "the killed agent was running chunks: they ran again"
    );
    eprintln!("{redelivered} items ran twice");
    pool.close();
    pool.join().unwrap();
}

fn a_long_task_on_a_live_agent_is_not_stolen(_: StartMethod) {
    let server = Server::start();
    let _a = server.agent("a", false);
    let _b = server.agent("b", false);
    let log = server.dir.join("runs.log").display().to_string();
    let pool = cluster_pool(&server);
    // 2 s: more than three leases of 600 ms.
    let r = pool
        .apply(partial(record_then_sleep, log.clone()), 2000)
        .unwrap();
    assert_eq!(r, 2000);
    let runs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(runs.lines().count(), 1, "ran once: {runs:?}");
}

fn past_max_losses_a_chunk_fails_naming_the_agent(_: StartMethod) {
    let server = Server::start();
    let mut a = server.agent("lost-one", false);
    let pool = Pool::builder()
        .cluster_with(&server.url, fast_options().max_losses(0))
        .build()
        .unwrap();
    let r = pool.apply_async(sleep_ms, 10_000).unwrap();
    let tasks = format!("mp:{}:tasks", multiproc::cluster::build_id().unwrap());
    server.until("agent lost-one to hold the task", |s| {
        let p: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&tasks)
            .arg("agents")
            .arg("-")
            .arg("+")
            .arg(10)
            .query(&mut s.conn())
            .unwrap();
        p.ids.len() == 1
    });
    let _b = server.agent("b", false);
    a.kill_group();
    let e = r.get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}");
    assert!(e.to_string().contains("lost-one"), "{e}");
}

fn no_agent_of_this_build_is_a_clear_error(_: StartMethod) {
    let server = Server::start();
    // An agent of another build is there, and takes nothing.
    let _other = server.agent("other", true);
    let e = Pool::builder()
        .cluster_with(
            &server.url,
            ClusterOptions::default().agent_wait(Duration::from_millis(300)),
        )
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(
        e.to_string().contains("no cluster agent runs this program"),
        "{e}"
    );
    // Once an agent of this build joins, the work is done by it alone.
    let _a = server.agent("a", false);
    let pool = cluster_pool(&server);
    let got = pool.map(slow_square, 0..20u64).unwrap();
    assert_eq!(got.len(), 20);
    let other_key = "mp:0000000000000000:tasks";
    let len: u64 = redis::cmd("XLEN")
        .arg(other_key)
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(len, 0, "nothing went to the other build");
}

fn an_agent_sigtermed_mid_map_drains(_: StartMethod) {
    let server = Server::start();
    let mut a = server.agent("a", false);
    let _b = server.agent("b", false);
    let pool = cluster_pool(&server);
    let mut it = pool.chunksize(2).imap(slow_square, 0..100u64).unwrap();
    let first = it.next().unwrap().unwrap();
    let status = a.term_and_wait();
    assert!(status.success(), "a drained agent exits cleanly: {status}");
    let mut got = vec![first.0];
    got.extend(it.map(|r| r.unwrap().0));
    assert_eq!(got, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

fn terminate_mid_map_leaves_no_keys(_: StartMethod) {
    let server = Server::start();
    let _a = server.agent("a", false);
    let before = server.dbsize();
    let pool = cluster_pool(&server);
    let r = pool.map_async(sleep_ms, vec![300u64; 40]).unwrap();
    server.until("work to start", |s| s.dbsize() > before);
    pool.terminate();
    assert_eq!(r.get().unwrap_err().kind(), ErrorKind::PoolClosed);
    drop(pool);
    // The agent stops the work and acknowledges it: the stream empties.
    server.until("the caller's keys and entries to go", |s| {
        let len: u64 = redis::cmd("XLEN")
            .arg(format!(
                "mp:{}:tasks",
                multiproc::cluster::build_id().unwrap()
            ))
            .query(&mut s.conn())
            .unwrap();
        s.dbsize() == before && len == 0
    });
}

fn a_dead_callers_keys_expire(_: StartMethod) {
    let server = Server::start();
    let _a = server.agent("a", false);
    let before = server.dbsize();
    let mut caller = Command::new(std::env::current_exe().unwrap())
        .args(["caller", &server.url])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(caller.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "started");
    caller.kill().unwrap();
    caller.wait().unwrap();
    server.until("the dead caller's keys to expire", |s| s.dbsize() == before);
}

fn an_agent_added_mid_map_gets_work(_: StartMethod) {
    let server = Server::start();
    let a = server.agent("a", false);
    let pool = cluster_pool(&server);
    let mut it = pool.chunksize(1).imap(slow_square, 0..300u64).unwrap();
    let mut pids = std::collections::HashSet::new();
    let mut b = None;
    let mut n = 0;
    for r in &mut it {
        let (_, pid) = r.unwrap();
        pids.insert(pid);
        n += 1;
        if n == 5 {
            b = Some(server.agent("b", false));
        }
    }
    assert_eq!(n, 300);
    assert!(pids.len() > 2, "workers of both agents ran tasks: {pids:?}");
    drop((a, b));
}

fn a_broker_restart_without_persistence_loses_nothing(_: StartMethod) {
    let mut server = Server::start();
    let _a = server.agent("a", false);
    let pool = cluster_pool(&server);
    let mut it = pool.chunksize(2).imap(slow_square, 0..100u64).unwrap();
    let mut got = vec![it.next().unwrap().unwrap().0];
    server.restart_empty();
    got.extend(it.map(|r| r.unwrap().0));
    assert_eq!(got, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

fn a_hundred_thousand_small_tasks(_: StartMethod) {
    let server = Server::start();
    let _a = server.agent("a", false);
    let _b = server.agent("b", false);
    let pool = cluster_pool(&server);
    let got = pool.map(square, 0..100_000u64).unwrap();
    assert_eq!(got.len(), 100_000);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, v)| *v == (i as u64) * (i as u64))
    );
}

/// The first number after `tag` in the broker's `INFO section`.
fn stat(server: &Server, section: &str, tag: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut server.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(tag))
        .map_or(0, |rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap()
        })
}

/// How many times the broker ran `command`.
fn calls(server: &Server, command: &str) -> u64 {
    stat(server, "commandstats", &format!("cmdstat_{command}:calls="))
}

fn a_put_value_is_fetched_once_per_agent(_: StartMethod) {
    let server = Server::start();
    let _a = server.agent("a", false);
    let _b = server.agent("b", false);
    let before = server.dbsize();
    let pool = cluster_pool(&server);
    let (data, sum) = eight_mib();
    let shared = pool.put(data).unwrap();
    let got = pool
        .chunksize(1)
        .map(sum_frozen, (0..100u64).map(|i| (shared.clone(), i)))
        .unwrap();
    assert_eq!(
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..100u64).map(|i| sum + i).collect::<Vec<_>>()
    );
    let workers: std::collections::HashSet<u32> = got.iter().map(|r| r.1).collect();
    assert!(
        workers.len() > 2,
        "both agents' workers ran tasks: {workers:?}"
    );
    // Fetched by each agent once, not by each task or worker.
    let gets = calls(&server, "get");
    assert!((1..=2).contains(&gets), "{gets} GETs for 2 agents");
    pool.close();
    pool.join().unwrap();
    drop(pool);
    assert_eq!(server.dbsize(), before, "the blob went with the pool");
}

fn a_large_argument_repeated_is_stored_once(_: StartMethod) {
    let server = Server::start();
    let _a = server.agent("a", false);
    let pool = Pool::builder()
        .cluster_with(
            &server.url,
            fast_options().caller_ttl(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    let (data, sum) = eight_mib();
    let before = stat(&server, "stats", "total_net_input_bytes:");
    // Each item is its own segment (a large argument), with the same bytes.
    let got = pool
        .chunksize(1)
        .map(sum_bytes, std::iter::repeat_n((data, 1), 12))
        .unwrap();
    assert_eq!(got, vec![sum + 1; 12]);
    assert_eq!(calls(&server, "get"), 1, "the agent fetched it once");
    let sent = stat(&server, "stats", "total_net_input_bytes:") - before;
    assert!(
        sent < 12 << 20,
        "{sent} bytes reached the broker for 12 items of the same 8 MiB"
    );
}

fn sealed_memory_crosses_machines_a_queue_does_not(_: StartMethod) {
    let server = Server::start();
    let _a = server.agent("a", false);
    let pool = cluster_pool(&server);
    let mut v = SharedVec::<u64>::new().unwrap();
    v.extend_from_slice(&(1..=1000u64).collect::<Vec<_>>())
        .unwrap();
    let slice = v.freeze().unwrap();
    assert_eq!(pool.apply(sum_slice, slice).unwrap(), 500_500);
    // Not sealed: refused before anything is sent.
    let open = Value::new(7u64).unwrap();
    let e = pool.apply(value_arg, open).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Encode, "{e}");
    let q = Queue::<u8>::new().unwrap();
    let e = pool.apply(queue_arg, q).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Encode, "{e}");
    assert!(e.to_string().contains("cannot cross machines"), "{e}");
}

fn a_broker_restart_with_persistence_loses_nothing(_: StartMethod) {
    let mut server = Server::start_persistent();
    let _a = server.agent("a", false);
    let _b = server.agent("b", false);
    let pool = cluster_pool(&server);
    let mut it = pool.chunksize(2).imap(slow_square, 0..100u64).unwrap();
    let mut got = vec![it.next().unwrap().unwrap().0];
    // SIGKILL: what the append-only file holds survives (up to the last
    // second of writes may not: the caller checks what it sent).
    server.restart();
    got.extend(it.map(|r| r.unwrap().0));
    assert_eq!(got, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
}

fn a_tls_broker_with_a_password(_: StartMethod) {
    let server = Server::start_tls();
    assert!(server.url.starts_with("rediss://"));
    // Without its CA the broker is not trusted: a clear error, and the
    // password is not shown.
    let e = Broker::connect(&server.url).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(!e.to_string().contains(PASSWORD), "{e}");
    let _a = server.agent("a", false);
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["tls-caller", &server.url])
        .envs(server.env.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the TLS caller failed: {}",
        out.status
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

fn the_executor_api_over_the_cluster(_: StartMethod) {
    use multiproc::pool::{ReturnWhen, as_completed, wait};
    let server = Server::start();
    let _a = server.agent("a", false);
    let _b = server.agent("b", false);
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = progress.clone();
    let pool = Pool::builder()
        .cluster_with(&server.url, fast_options())
        .on_progress(move |u| seen.lock().unwrap().push((u.done, u.finished)))
        .build()
        .unwrap();
    // Futures: as_completed gives each once, wait says all are done.
    let futures: Vec<_> = (0..20u64)
        .map(|x| pool.apply_async(sleep_ms, (20 - x) * 5).unwrap())
        .collect();
    let mut order: Vec<usize> = as_completed(&futures, Some(Duration::from_secs(60)))
        .map(|r| r.unwrap().0)
        .collect();
    order.sort();
    assert_eq!(order, (0..20).collect::<Vec<_>>());
    let done = wait(&futures, None, ReturnWhen::AllCompleted).unwrap();
    assert_eq!(done.done.len(), 20);
    assert!(done.not_done.is_empty());
    for (x, f) in futures.into_iter().enumerate() {
        assert_eq!(f.get().unwrap(), (20 - x as u64) * 5);
    }
    // Cancel a running task: Cancelled, and the pool goes on.
    let long = pool.apply_async(sleep_ms, 60_000).unwrap();
    assert!(long.cancel());
    assert!(long.cancelled());
    assert_eq!(long.get().unwrap_err().kind(), ErrorKind::Cancelled);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    // Retries, here of panics: each item panics once, then succeeds.
    let marks = server.dir.join("marks");
    std::fs::create_dir(&marks).unwrap();
    let marks = marks.display().to_string();
    let got = pool
        .chunksize(1)
        .retries(1)
        .retry_panics(true)
        .map(partial(fails_once, marks.clone()), 0..6u64)
        .unwrap();
    assert_eq!(got, (0..6u64).collect::<Vec<_>>());
    // Without retries the panic is the item's error.
    let e = pool.map(partial(fails_once, marks), 6..7u64).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
    // The progress callback saw a map through to its end.
    progress.lock().unwrap().clear();
    assert_eq!(pool.map(square, 0..100u64).unwrap().len(), 100);
    let seen = progress.lock().unwrap().clone();
    assert_eq!(seen.last(), Some(&(100, true)), "{seen:?}");
}

/// The broker comes back with the caller's keys but without its last
/// writes (a snapshot taken mid-imap, as an append-only file fsync'ed every
/// second can lose its last second): the caller finds the entries it sent
/// since, gone, and sends them again.
fn a_broker_back_from_an_older_snapshot_loses_nothing(_: StartMethod) {
    let mut server = Server::start();
    let _a = server.agent("a", false);
    let _b = server.agent("b", false);
    let pool = cluster_pool(&server);
    let mut it = pool.chunksize(2).imap(slow_square, 0..200u64).unwrap();
    let mut got = vec![it.next().unwrap().unwrap().0];
    let _: () = redis::cmd("SAVE").query(&mut server.conn()).unwrap();
    // More chunks are sent (and answered) after the snapshot.
    for _ in 0..20 {
        got.push(it.next().unwrap().unwrap().0);
    }
    let (verifies, resent) = multiproc::cluster::__verify_counts();
    server.restart(); // loads the snapshot
    got.extend(it.map(|r| r.unwrap().0));
    assert_eq!(got, (0..200u64).map(|x| x * x).collect::<Vec<_>>());
    let (verifies_after, resent_after) = multiproc::cluster::__verify_counts();
    assert!(verifies_after > verifies, "the caller checked its entries");
    assert!(
        resent_after > resent,
        "entries sent after the snapshot were found gone and sent again"
    );
}
