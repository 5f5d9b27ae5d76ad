//! A tour of multiproc: run it with `cargo run --release --example tour`.
//!
//! Each section shows one thing a Python `multiprocessing` user knows, the
//! Rust way. Later parts of the library add their own sections.

use std::time::{Duration, Instant};

use multiproc::{ErrorKind, ExitStatus, Process, Signal, StartMethod};

fn square(x: u64) -> u64 {
    x * x
}

fn greet(name: String, times: u32) -> String {
    let me = multiproc::current_process();
    let parent = multiproc::parent_process().map(|p| p.pid()).unwrap_or(0);
    format!(
        "{} x{times} from {} (pid {}, parent {parent})",
        name,
        me.name(),
        me.pid()
    )
}

fn divide(a: u32, b: u32) -> u32 {
    a / b
}

fn describe() -> String {
    println!("hello from a child with its own environment");
    format!(
        "MODE={} in {}",
        std::env::var("MODE").unwrap_or_default(),
        std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    )
}

fn sleep_forever() {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn shout(conn: multiproc::Connection<String>) -> usize {
    let mut n = 0;
    while let Ok(s) = conn.recv() {
        conn.send(&s.to_uppercase()).unwrap();
        n += 1;
    }
    n
}

fn call_listener(address: String) {
    let address = address.parse().unwrap();
    let conn = multiproc::Client::connect::<String>(&address, Some(b"key")).unwrap();
    conn.send(&format!(
        "hello from {}",
        multiproc::current_process().name()
    ))
    .unwrap();
}

fn produce(q: multiproc::Queue<(u32, u64)>, id: u32, n: u64) {
    for i in 0..n {
        q.put((id, i)).unwrap();
    }
}

fn consume(q: multiproc::JoinableQueue<(u32, u64)>) -> u64 {
    let mut sum = 0;
    while let Ok((_, i)) = q.get() {
        sum += i;
        q.task_done().unwrap();
    }
    sum
}

/// Queues: many producers and consumers in any processes; a child with
/// data in a queue exits at once; bounded puts hand the value back.
fn queues() -> Result<(), multiproc::Error> {
    use multiproc::queue::{JoinableQueue, PutError};
    section("Queue: producers and consumers in any processes, through shared memory");
    let q = JoinableQueue::<(u32, u64)>::new()?;
    let consumers: Vec<_> = (0..2)
        .map(|_| Process::new(consume, q.clone()).start())
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    let producers: Vec<_> = (0..2)
        .map(|id| Process::new(produce, ((*q).clone(), id, 100_000)).start())
        .collect::<Result<_, _>>()?;
    for p in producers {
        p.join()?; // returns at once: what they put is in the queue, no feeder thread
    }
    q.join(); // every message taken and task_done()
    println!(
        "200000 messages through 2 producers and 2 consumers in {:?}",
        t.elapsed()
    );
    q.shutdown(); // consumers' get() now fails: their loops end
    let sum: u64 = consumers
        .into_iter()
        .map(|c| c.join())
        .sum::<Result<u64, _>>()?;
    println!(
        "consumers' sum {sum} (expected {})",
        2 * (99_999u64 * 100_000 / 2)
    );

    let bounded = multiproc::Queue::<String>::with_maxsize(1)?;
    bounded
        .put("first".into())
        .map_err(multiproc::Error::from)?;
    if let Err(PutError::Full(v)) = bounded.try_put("second".into()) {
        println!("try_put on a full queue handed back {v:?}");
    }
    let err = bounded
        .put_timeout("third".into(), Duration::from_millis(10))
        .unwrap_err();
    println!("put_timeout: {err} (kind {:?})", err.kind());
    Ok(())
}

fn add_many(counter: multiproc::shared::Value<u64>, n: u64) {
    for _ in 0..n {
        *counter.lock().unwrap() += 1;
    }
}

fn hold_and_die(lock: multiproc::sync::Lock, holding: multiproc::sync::Event) {
    let _held = lock.acquire().unwrap();
    holding.set();
    loop {
        std::thread::park();
    }
}

/// Locks and shared memory: a Value four processes increment, and a lock
/// whose holder is killed.
fn sync_and_shared() -> Result<(), multiproc::Error> {
    use multiproc::shared::{SharedMemory, Value};
    use multiproc::sync::{Event, Lock};

    section("Value with its own lock: 4 processes x 100 000 increments");
    let counter = Value::new(0u64)?;
    let t = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| Process::new(add_many, (counter.clone(), 100_000)).start())
        .collect::<Result<_, _>>()?;
    for w in workers {
        w.join()?;
    }
    println!("counter = {} in {:?}", counter.get()?, t.elapsed());

    section("Lock: a holder killed with SIGKILL does not hang the others");
    let lock = Lock::new()?;
    let holding = Event::new()?;
    let victim = Process::new(hold_and_die, (lock.clone(), holding.clone())).start()?;
    holding.wait();
    victim.kill()?;
    let _ = victim.join();
    let t = Instant::now();
    match lock.acquire() {
        Err(died) => {
            println!(
                "got the lock {:?} after the holder's death, with: {died}",
                t.elapsed()
            );
            drop(died.into_guard()); // repaired
        }
        Ok(_) => println!("got the lock (no death noticed)"),
    }

    section("SharedMemory: named, attached by name, unlinked by its owner");
    let name = format!("multiproc-tour-{}", std::process::id());
    let owner = SharedMemory::create(&name, 4096)?;
    owner.write(0, b"hello")?;
    let reader = SharedMemory::attach(&name)?;
    let mut buf = [0u8; 5];
    reader.read(0, &mut buf)?;
    println!("attached {name:?}: {:?}", String::from_utf8_lossy(&buf));
    drop(owner); // the creator unlinks the name; the reader keeps its mapping
    println!(
        "after the owner's drop, /dev/shm/{name} exists: {}",
        std::path::Path::new(&format!("/dev/shm/{name}")).exists()
    );
    Ok(())
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn die_on_13(x: u64) -> u64 {
    if x == 13 {
        std::process::abort(); // a crash in the middle of a map
    }
    x * 2
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Pool: map, apply_async, imap over an endless input, a worker that
/// dies, a time limit, counters.
fn pool_section() -> Result<(), multiproc::Error> {
    use multiproc::Pool;
    section("Pool: map, apply_async, imap over an endless input, close + join");
    let pool = Pool::new(multiproc::cpu_count())?;
    let t0 = Instant::now();
    let squares = pool.map(square, 0..1_000_000u64)?;
    println!(
        "map(square, 0..1_000_000): {} results in {:?}, last {}",
        squares.len(),
        t0.elapsed(),
        squares[999_999]
    );
    let r = pool.apply_async(add, (1, 2))?; // several arguments: a tuple
    println!("apply_async(add, (1, 2)).get() = {}", r.get()?);
    let first: Vec<u64> = pool
        .imap(square, 0u64..)? // an endless input streams through
        .take(5)
        .collect::<Result<_, _>>()?;
    println!("imap over 0.. (endless), first five: {first:?}");

    section("functools.partial: a function with values, sent to each worker once per call");
    let (offset, scale) = (100u64, 3u64);
    let affine = multiproc::partial(|&(o, s): &(u64, u64), x: u64| o + s * x, (offset, scale));
    println!(
        "map(partial(o + s * x, (100, 3)), 0..5) = {:?}",
        pool.map(affine, 0..5u64)?
    );

    section("Pool: a worker that dies fails one task; the pool goes on");
    let results: Vec<_> = pool.chunksize(1).imap(die_on_13, 0..20u64)?.collect();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    println!("{} of 20 failed: {}", failed.len(), failed[0]);
    println!("and the pool still works: {:?}", pool.map(square, 1..4u64)?);
    println!("counters: {:?}", pool.stats());

    section("Pool: a per-task time limit");
    let limited = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(200))
        .build()?;
    match limited.apply(nap, 10_000) {
        Err(e) => println!("{e}"),
        Ok(_) => println!("(unexpected) the task finished"),
    }
    pool.close();
    pool.join()?;
    Ok(())
}

/// Sums one 8 KiB row of the shared array; says how much memory the worker holds.
fn row_sum((a, row): (multiproc::shared::SharedSlice<f64>, usize)) -> (f64, u64) {
    let sum = a[row * 1024..(row + 1) * 1024].iter().sum();
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0);
    (sum, rss)
}

/// Looks a word up in a table the pool put in shared memory once.
fn lookup((table, word): (multiproc::shared::Frozen<Vec<String>>, usize)) -> String {
    table[word].clone()
}

fn big_data() -> Result<(), multiproc::Error> {
    use multiproc::Pool;
    use multiproc::shared::SharedVec;
    section("Sharing big data: a 256 MiB array reaches the workers without a copy");
    let mut v = SharedVec::<f64>::zeroed(32 << 20)?; // built in place, in shared memory
    v.fill(0.5);
    let array = v.freeze()?; // sealed read-only: every process maps the same pages
    let pool = Pool::new(2)?;
    let t = Instant::now();
    let out = pool.map(row_sum, (0..4).map(|r| (array.clone(), r * 1000)))?;
    println!(
        "4 rows summed to {:?} in {:.2} ms; the workers hold {:?} KiB each (the array is 262 144 KiB)",
        out.iter().map(|o| o.0).collect::<Vec<_>>(),
        t.elapsed().as_secs_f64() * 1e3,
        out.iter().map(|o| o.1).collect::<Vec<_>>()
    );
    let table = pool.put((0..10_000).map(|i| format!("word-{i}")).collect::<Vec<_>>())?;
    let words = pool.map(lookup, [(table.clone(), 7), (table.clone(), 9_999)])?;
    println!(
        "pool.put (ray.put): {} bytes encoded once, decoded once per worker: {words:?}",
        table.encoded_len()
    );
    pool.close();
    pool.join()
}

fn tally(word: String, counts: multiproc::manager::DictProxy<String, u64>) {
    counts.modify(word, |n| n.unwrap_or(0) + 1).unwrap();
}

/// Manager: shared dict, list, Namespace and locks, served by a process.
fn tour_manager() -> Result<(), multiproc::Error> {
    section("Manager: a dict, a list and a Namespace served by a process");
    let t0 = Instant::now();
    let manager = multiproc::Manager::new()?;
    let counts = manager.dict::<String, u64>()?;
    println!("Manager::new() and a dict in {:?}", t0.elapsed());
    let words = ["a", "b", "a", "c", "a"];
    let children: Vec<_> = words
        .iter()
        .map(|w| Process::new(tally, (w.to_string(), counts.clone())).start())
        .collect::<Result<_, _>>()?;
    for c in children {
        c.join()?;
    }
    println!("counted by 5 children, atomically: {:?}", counts.items()?);
    let log = manager.list_from(["started".to_string()])?;
    log.push("done".into())?;
    let ns = manager.namespace()?;
    ns.set("answer", 42)?;
    println!(
        "list {:?}, ns.answer = {:?}",
        log.to_vec()?,
        ns.get::<i32>("answer")?
    );
    let lock = manager.lock()?;
    {
        let _guard = lock.acquire()?;
        println!("holding a manager lock: locked() = {}", lock.locked()?);
    }
    let t0 = Instant::now();
    for i in 0..1000u64 {
        counts.insert(format!("k{i}"), i)?;
    }
    println!("1000 single inserts: {:?}", t0.elapsed());
    let t0 = Instant::now();
    counts.update((0..1000u64).map(|i| (format!("k{i}"), i + 1)))?;
    println!("the same 1000 in one update(): {:?}", t0.elapsed());
    manager.shutdown()
}

fn section(title: &str) {
    println!("\n== {title}");
}

fn main() -> Result<(), multiproc::Error> {
    multiproc::init(); // always the first line of main

    section("the machine");
    println!(
        "cpu_count() = {} (affinity and cgroup aware); this is {} (pid {})",
        multiproc::cpu_count(),
        multiproc::current_process().name(),
        std::process::id()
    );

    section("Process: a function in a child, its return value back");
    let p = Process::new(greet, ("hello".to_string(), 2))
        .name("greeter")
        .start()?;
    println!(
        "started {} (pid {}), alive: {}",
        p.name(),
        p.pid(),
        p.is_alive()
    );
    println!("join() -> {:?}", p.join()?);

    section("start methods: forkserver (default), spawn, fork");
    for method in multiproc::get_all_start_methods() {
        let t = Instant::now();
        let n = 20;
        for i in 0..n {
            let r = multiproc::get_context(method)
                .process(square, i)
                .start()?
                .join()?;
            assert_eq!(r, i * i);
        }
        println!(
            "{method:>10}: start + join {:>8.0} µs each",
            t.elapsed().as_micros() as f64 / n as f64
        );
    }

    section("os.fork: a closure that captures, with the fork start method");
    let arr: Vec<u64> = (1..=10).collect();
    let (left, right) = arr.split_at(arr.len() / 2);
    let right = right.to_vec();
    let child = Process::fork(move || right.iter().map(|x| x * x).collect::<Vec<_>>()).start()?;
    println!(
        "parent squares {:?}",
        left.iter().map(|x| x * x).collect::<Vec<_>>()
    );
    println!("child squares  {:?}", child.join()?);

    section("errors say what happened");
    let err = Process::new(divide, (1, 0))
        .name("divider")
        .start()?
        .join()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    println!("{err}");
    let p = Process::new(sleep_forever, ()).start()?;
    p.kill()?;
    println!("{}", p.join().unwrap_err());

    section("terminate, join with a timeout, exit status");
    let p = Process::new(sleep_forever, ()).daemon(true).start()?;
    let still_running = p.join_timeout(Duration::from_millis(50)).unwrap_err();
    assert_eq!(still_running.kind(), ErrorKind::Timeout);
    println!("join_timeout(50 ms) -> {still_running}");
    p.terminate()?;
    let status = p.join_timeout(Duration::from_secs(5))?;
    assert_eq!(status, ExitStatus::Signaled(Signal::TERM));
    println!(
        "after terminate(): {status} (Python's exitcode: {})",
        status.python_exitcode()
    );

    section("a child set up as asked: environment, directory, captured output, limits");
    let p = Process::new(describe, ())
        .env("MODE", "batch")
        .current_dir("/")
        .stdout(multiproc::Stdio::capture())
        .rlimit(multiproc::Resource::Core, 0, 0)
        .start()?;
    p.join_timeout(Duration::from_secs(60))?;
    print!(
        "captured: {}",
        String::from_utf8_lossy(&p.captured_stdout()?)
    );
    println!("returned: {}", p.join()?);
    let err = Process::new(describe, ())
        .current_dir("/no/such/dir")
        .start()?
        .join()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ChildSetup);
    println!("{err}");

    section("fork is refused when threads exist");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || rx.recv());
    let err = Process::new(square, 2)
        .start_method(StartMethod::Fork)
        .start()
        .unwrap_err();
    println!("{err}");
    tx.send(()).ok();
    let _ = t.join();

    section("Pipe: two ends that talk; end of file when the other side goes");
    let (parent_end, child_end) = multiproc::pipe::<String>()?;
    let echo = Process::new(shout, child_end).start()?;
    for word in ["one", "two"] {
        parent_end.send(&word.to_string())?;
        println!("sent {word:?}, got back {:?}", parent_end.recv()?);
    }
    drop(parent_end); // the child's recv() now fails with Eof and its loop ends
    println!("the child answered {} messages", echo.join()?);

    queues()?;

    section("Listener and Client: authenticated, and Python speaks the same protocol");
    let address: multiproc::connection::Address = "127.0.0.1:0".parse()?;
    let listener = multiproc::Listener::bind(address, Some(b"key"))?;
    let address = listener.address().clone();
    let client = Process::new(call_listener, address.to_string()).start()?;
    let conn = listener.accept::<String>()?;
    println!("listener at {address} got {:?}", conn.recv()?);
    client.join()?;

    sync_and_shared()?;
    pool_section()?;
    big_data()?;
    tour_manager()?;

    println!(
        "\nactive_children() at the end: {:?}",
        multiproc::active_children()
    );
    Ok(())
}
