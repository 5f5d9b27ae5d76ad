//! Queues between processes, under every start method: exact delivery with
//! many producers and consumers, bounded puts, producers and consumers
//! SIGKILLed mid-operation, exiting with data in the queue, JoinableQueue,
//! bad input, large messages.
//!
//! The harness (a process per test, a watchdog each) is `tests/isolated`.

use std::time::Duration;

use multiproc::queue::{GetError, JoinableQueue, PutError, Queue, SimpleQueue};
use multiproc::{ErrorKind, Fd, Process, Signal, StartMethod};

mod isolated;

/// Every test, and whether it runs under each start method (`true`) or
/// once (under the default, forkserver).
const TESTS: isolated::Tests = &[
    ("mpmc_exact_delivery", mpmc_exact_delivery, true),
    (
        "bounded_mpmc_exact_delivery",
        bounded_mpmc_exact_delivery,
        true,
    ),
    (
        "bounded_put_full_timeout_and_value_back",
        bounded_put,
        false,
    ),
    (
        "producer_killed_mid_put_never_corrupts",
        producer_killed,
        true,
    ),
    (
        "consumer_killed_mid_get_loses_at_most_one",
        consumer_killed,
        true,
    ),
    (
        "producer_killed_at_each_worst_moment",
        producer_stalled,
        true,
    ),
    (
        "consumer_killed_at_each_worst_moment",
        consumer_stalled,
        true,
    ),
    (
        "a_child_with_data_in_the_queue_exits",
        exits_with_data,
        true,
    ),
    ("joinable_task_done_and_join", joinable, true),
    ("wrong_type_and_bad_values_are_errors", wrong_type, false),
    ("large_messages_1mib_and_16mib", large_messages, true),
    ("shutdown_wakes_blocked_consumers", shutdown_wakes, true),
    ("close_is_per_process", close_is_per_process, false),
    (
        "simple_queue_and_inheritance_under_fork",
        simple_queue,
        false,
    ),
];

fn main() {
    isolated::main("queue", TESTS);
}

// ---- exact delivery ------------------------------------------------------

type Msg = Option<(u32, u64)>;

fn produce(q: Queue<Msg>, id: u32, n: u64) {
    for seq in 0..n {
        q.put(Some((id, seq))).unwrap();
    }
}

/// Gets until a `None`; returns (count, sum of seqs, whether each
/// producer's messages arrived in order).
fn consume(q: Queue<Msg>, producers: u32) -> (u64, u64, bool) {
    let mut last = vec![None::<u64>; producers as usize];
    let (mut count, mut sum, mut ordered) = (0, 0, true);
    while let Some((id, seq)) = q.get().unwrap() {
        let prev = &mut last[id as usize];
        ordered &= prev.is_none_or(|p| p < seq);
        *prev = Some(seq);
        count += 1;
        sum += seq;
    }
    (count, sum, ordered)
}

fn exact_delivery(q: Queue<Msg>) {
    const PRODUCERS: u32 = 3;
    const CONSUMERS: usize = 2;
    const N: u64 = 20_000;
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            Process::new(consume, (q.clone(), PRODUCERS))
                .start()
                .unwrap()
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| Process::new(produce, (q.clone(), id, N)).start().unwrap())
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    for _ in 0..CONSUMERS {
        q.put(None).unwrap();
    }
    let (mut count, mut sum) = (0, 0);
    for c in consumers {
        let (n, s, ordered) = c.join().unwrap();
        assert!(ordered, "one producer's messages arrived out of order");
        count += n;
        sum += s;
    }
    assert_eq!(count, u64::from(PRODUCERS) * N);
    assert_eq!(sum, u64::from(PRODUCERS) * N * (N - 1) / 2);
    assert_eq!(q.qsize(), 0);
    assert!(q.empty());
}

fn mpmc_exact_delivery(_: StartMethod) {
    exact_delivery(Queue::new().unwrap());
}

fn bounded_mpmc_exact_delivery(_: StartMethod) {
    // Producers block on the bound and are woken by consumers in other
    // processes, and the other way round.
    exact_delivery(Queue::with_maxsize(16).unwrap());
}

// ---- bounded puts --------------------------------------------------------

fn get_one(q: Queue<String>) -> String {
    q.get().unwrap()
}

fn bounded_put(_: StartMethod) {
    let q = Queue::<String>::with_maxsize(2).unwrap();
    assert_eq!(q.maxsize(), Some(2));
    q.put("a".into()).unwrap();
    q.try_put("b".into()).unwrap();
    assert!(q.full());
    assert_eq!(q.qsize(), 2);
    match q.try_put("c".into()) {
        Err(PutError::Full(v)) => assert_eq!(v, "c", "the value comes back"),
        other => panic!("{other:?}"),
    }
    match q.put_timeout("d".into(), Duration::from_millis(20)) {
        Err(e @ PutError::Timeout(_)) => {
            assert_eq!(e.kind(), ErrorKind::Timeout);
            assert_eq!(e.into_inner(), "d");
        }
        other => panic!("{other:?}"),
    }
    let err: multiproc::Error = q.try_put("e".into()).unwrap_err().into();
    assert_eq!(err.kind(), ErrorKind::Full);
    // A get in another process makes room for a blocked put.
    let child = Process::new(get_one, q.clone()).start().unwrap();
    q.put("f".into()).unwrap();
    assert_eq!(child.join().unwrap(), "a");
    assert_eq!(q.get().unwrap(), "b");
    assert_eq!(q.get().unwrap(), "f");
    assert!(matches!(q.try_get(), Err(GetError::Empty)));
    assert!(matches!(
        q.get_timeout(Duration::from_millis(10)),
        Err(GetError::Timeout)
    ));
    let err: multiproc::Error = q.try_get().unwrap_err().into();
    assert_eq!(err.kind(), ErrorKind::Empty);
}

// ---- crashes -------------------------------------------------------------

/// Message `seq`: its length and contents follow from `seq`, so a torn or
/// mixed-up message is detected. Every seventh is large (a long copy,
/// and growth of the ring). Strings, because they encode with one copy.
fn payload(seq: u64) -> String {
    let len = if seq % 7 == 3 {
        1 << 20
    } else {
        100 + (seq as usize * 37) % 5000
    };
    char::from(b'a' + (seq % 26) as u8).to_string().repeat(len)
}

type Numbered = (u64, String);

fn check(msg: &Numbered) {
    assert!(msg.1 == payload(msg.0), "message {} is torn", msg.0);
}

fn put_forever(q: Queue<Numbered>) {
    for seq in 0.. {
        q.put((seq, payload(seq))).unwrap();
    }
}

fn producer_killed(_: StartMethod) {
    for round in 0..8u64 {
        let q = Queue::<Numbered>::new().unwrap();
        let child = Process::new(put_forever, q.clone()).start().unwrap();
        // Kill it at some moment of a tight loop of puts (a different one
        // each round): about a third of its time is spent copying into
        // the ring under the producers' lock, some of it growing the ring.
        while q.qsize() < 5 + round as usize * 11 {
            std::hint::spin_loop();
        }
        child.kill().unwrap();
        assert_eq!(child.join().unwrap_err().signal(), Some(Signal::KILL));
        // Everything it published is whole and in order; then nothing.
        let mut next = 0;
        while let Ok(m) = q.try_get() {
            check(&m);
            assert_eq!(m.0, next);
            next += 1;
        }
        assert!(next >= 5 + round * 11);
        assert!(q.empty());
        assert_eq!(q.qsize(), 0);
        // And the queue still works (taking over the lock if the producer
        // died holding it).
        q.put((next, payload(next))).unwrap();
        let m = q.get().unwrap();
        check(&m);
        assert_eq!(m.0, next);
    }
}

/// Puts messages 0, 1, 2, then starts putting message 3 (1 MiB: the ring
/// must grow) and stops forever at `stage`, holding the producers' lock,
/// after saying so on `notice`.
fn put_and_stall(q: Queue<Numbered>, notice: Queue<()>, stage: String) {
    for seq in 0..3 {
        q.put((seq, payload(seq))).unwrap();
    }
    q.__stall(Some((3, payload(3))), &stage, || notice.put(()).unwrap())
        .unwrap();
}

fn producer_stalled(_: StartMethod) {
    for stage in ["put-grow", "put-record", "put-published"] {
        let q = Queue::<Numbered>::new().unwrap();
        let notice = Queue::<()>::new().unwrap();
        let child = Process::new(put_and_stall, (q.clone(), notice.clone(), stage.into()))
            .start()
            .unwrap();
        notice.get().unwrap();
        child.kill().unwrap();
        assert_eq!(child.join().unwrap_err().signal(), Some(Signal::KILL));
        // What was published is whole; message 3 is there only if its
        // publication (one store) happened.
        let published = if stage == "put-published" { 4 } else { 3 };
        for seq in 0..published {
            let m = q.get().unwrap();
            check(&m);
            assert_eq!(m.0, seq, "{stage}");
        }
        assert!(matches!(q.try_get(), Err(GetError::Empty)), "{stage}");
        // The next put takes the dead producer's lock over, repairs the
        // count, and works, big messages (growth) included.
        q.put((10, payload(10))).unwrap();
        q.put((17, payload(17))).unwrap(); // 1 MiB
        assert_eq!(q.qsize(), 2, "{stage}: the count is repaired");
        for seq in [10, 17] {
            let m = q.get().unwrap();
            check(&m);
            assert_eq!(m.0, seq);
        }
        assert!(q.empty() && q.qsize() == 0);
    }
}

/// Starts a get and stops forever at `stage`, holding the consumers'
/// lock, after saying so on `notice`.
fn get_and_stall(q: Queue<Numbered>, notice: Queue<()>, stage: String) {
    q.__stall(None, &stage, || notice.put(()).unwrap()).unwrap();
}

fn consumer_stalled(_: StartMethod) {
    for stage in ["get-record", "get-retired"] {
        let q = Queue::<Numbered>::new().unwrap();
        let notice = Queue::<()>::new().unwrap();
        for seq in 0..4 {
            q.put((seq, payload(seq))).unwrap();
        }
        let child = Process::new(get_and_stall, (q.clone(), notice.clone(), stage.into()))
            .start()
            .unwrap();
        notice.get().unwrap();
        child.kill().unwrap();
        assert_eq!(child.join().unwrap_err().signal(), Some(Signal::KILL));
        // Killed mid-copy, it took nothing; killed after retiring message
        // 0, it took that one (and only that one).
        let first = if stage == "get-record" { 0 } else { 1 };
        let m = q.get().unwrap();
        check(&m);
        assert_eq!(m.0, first, "{stage}");
        assert_eq!(
            q.qsize() as u64,
            3 - first,
            "{stage}: the count is repaired"
        );
        for seq in first + 1..4 {
            let m = q.get().unwrap();
            check(&m);
            assert_eq!(m.0, seq);
        }
        assert!(q.empty() && q.qsize() == 0);
    }
}

fn get_and_report(q: Queue<Numbered>, seen: Queue<u64>) {
    loop {
        let m = q.get().unwrap();
        seen.put(m.0).unwrap();
    }
}

fn consumer_killed(_: StartMethod) {
    const N: u64 = 600;
    for round in 0..4u64 {
        let q = Queue::<Numbered>::new().unwrap();
        let seen = Queue::<u64>::new().unwrap();
        for seq in 0..N {
            q.put((seq, payload(seq))).unwrap();
        }
        let child = Process::new(get_and_report, (q.clone(), seen.clone()))
            .start()
            .unwrap();
        let mut reported = 0;
        while reported < 10 + round * 50 {
            assert_eq!(seen.get().unwrap(), reported);
            reported += 1;
        }
        child.kill().unwrap();
        assert_eq!(child.join().unwrap_err().signal(), Some(Signal::KILL));
        while let Ok(s) = seen.try_get() {
            assert_eq!(s, reported);
            reported += 1;
        }
        // The child took `reported` messages and said so; it may have taken
        // one more and died before saying so. Everything else is still
        // there, whole and in order.
        let first = q.get().unwrap();
        check(&first);
        assert!(
            first.0 == reported || first.0 == reported + 1,
            "reported {reported}, next in the queue {}",
            first.0
        );
        let mut next = first.0 + 1;
        assert_eq!(q.qsize() as u64, N - next);
        while let Ok(m) = q.try_get() {
            check(&m);
            assert_eq!(m.0, next);
            next += 1;
        }
        assert_eq!(next, N);
    }
}

// ---- exiting with data in the queue ---------------------------------------

fn fill(q: Queue<Vec<u8>>, n: u64) {
    for i in 0..n {
        q.put(vec![(i % 256) as u8; 1024]).unwrap();
    }
}

fn exits_with_data(_: StartMethod) {
    // Python's pain point: this child would never exit (its feeder thread
    // waits for a reader) and join would hang.
    let q = Queue::<Vec<u8>>::new().unwrap();
    let child = Process::new(fill, (q.clone(), 10_000)).start().unwrap();
    child.join().unwrap();
    assert_eq!(q.qsize(), 10_000);
    for i in 0..10_000u64 {
        assert_eq!(q.get().unwrap(), vec![(i % 256) as u8; 1024]);
    }
}

// ---- JoinableQueue -------------------------------------------------------

fn worker(q: JoinableQueue<u64>) -> u64 {
    let mut sum = 0;
    while let Ok(x) = q.get() {
        sum += x;
        q.task_done().unwrap();
    }
    sum
}

fn joinable(_: StartMethod) {
    let q = JoinableQueue::<u64>::new().unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| Process::new(worker, q.clone()).start().unwrap())
        .collect();
    for i in 1..=1000 {
        q.put(i).unwrap();
    }
    q.join();
    assert_eq!(q.unfinished_tasks(), 0);
    assert!(q.empty());
    q.join_timeout(Duration::from_millis(1)).unwrap();
    // Stop the workers: gets fail once the queue is shut down and empty.
    q.shutdown();
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(total, 500_500);
    // More task_done calls than messages taken: an error, as in Python.
    assert_eq!(q.task_done().unwrap_err().kind(), ErrorKind::TaskDone);
    // A message nobody finishes: join_timeout says how many are left.
    let q = JoinableQueue::<u64>::new().unwrap();
    q.put(1).unwrap();
    let err = q.join_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(q.get().unwrap(), 1);
    q.task_done().unwrap();
    q.join();
}

// ---- bad input -----------------------------------------------------------

fn put_other_types(q: Queue<(u64, u64)>, raw: Queue<Vec<u8>>) {
    q.put((u64::MAX, 5)).unwrap();
    raw.put(vec![0xff]).unwrap(); // one byte, not UTF-8
}

fn wrong_type(_: StartMethod) {
    let q = Queue::<String>::new().unwrap();
    // The child sees the same queue with other types.
    let as_pair: Queue<(u64, u64)> = retype(&q);
    let as_bytes: Queue<Vec<u8>> = retype(&q);
    Process::new(put_other_types, (as_pair, as_bytes))
        .start()
        .unwrap()
        .join()
        .unwrap();
    q.put("fine".into()).unwrap();
    for _ in 0..2 {
        match q.get() {
            Err(GetError::Failed(e)) => {
                assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
                assert!(e.to_string().contains("String"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
    // The bad messages are gone; the queue goes on.
    assert_eq!(q.get().unwrap(), "fine");
    // Descriptors cannot travel through shared memory: refused, value back.
    let fds = Queue::<Fd>::new().unwrap();
    let (r, _w) = std::io::pipe().unwrap();
    match fds.put(Fd::new(r.into())) {
        Err(PutError::Failed(fd, e)) => {
            assert_eq!(e.kind(), ErrorKind::Encode);
            assert!(e.to_string().contains("descriptors"), "{e}");
            drop(fd);
        }
        other => panic!("{other:?}"),
    }
    assert!(fds.empty());
}

/// The same queue seen with another message type, the way a child that
/// declares another type sees it.
fn retype<A, B>(q: &Queue<A>) -> Queue<B> {
    // Through a pipe: the handle is only shared memory, whatever the type
    // says.
    let (a, b) = multiproc::connection::pipe::<Queue<A>>().unwrap();
    a.send(q).unwrap();
    b.cast::<Queue<B>>().recv().unwrap()
}

// ---- large messages ------------------------------------------------------

fn echo(q: Queue<Vec<u8>>, back: Queue<Vec<u8>>) {
    while let Ok(m) = q.get() {
        back.put(m).unwrap();
    }
}

fn large_messages(_: StartMethod) {
    let q = Queue::<Vec<u8>>::new().unwrap();
    let back = Queue::<Vec<u8>>::new().unwrap();
    let child = Process::new(echo, (q.clone(), back.clone()))
        .start()
        .unwrap();
    for size in [1 << 20, 16 << 20, 1 << 20, 3] {
        let msg: Vec<u8> = (0..size).map(|i: usize| (i * 7 % 253) as u8).collect();
        q.put(msg.clone()).unwrap();
        assert!(back.get().unwrap() == msg, "a {size}-byte message changed");
    }
    q.shutdown();
    child.join().unwrap();
}

// ---- shutdown and close --------------------------------------------------

fn blocked_get(q: Queue<u32>) -> String {
    match q.get() {
        Err(e) => format!("{:?}", e.kind()),
        Ok(v) => format!("got {v}"),
    }
}

fn shutdown_wakes(_: StartMethod) {
    let q = Queue::<u32>::new().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| Process::new(blocked_get, q.clone()).start().unwrap())
        .collect();
    q.put(7).unwrap();
    q.shutdown();
    assert!(q.is_shut_down());
    let mut results: Vec<String> = children.into_iter().map(|c| c.join().unwrap()).collect();
    results.sort();
    // One child may have got the 7; a blocked get returns Closed.
    assert!(
        results == ["Closed", "Closed"] || results == ["Closed", "got 7"],
        "{results:?}"
    );
    match q.put(8) {
        Err(PutError::Closed(8)) => {}
        other => panic!("{other:?}"),
    }
    if results.contains(&"Closed".to_string()) && !results.contains(&"got 7".to_string()) {
        assert_eq!(q.get().unwrap(), 7, "what was left is still delivered");
    }
    assert!(matches!(q.get(), Err(GetError::Closed)));
}

fn put_after_parent_closed(q: Queue<u32>) {
    q.put(2).unwrap();
}

fn close_is_per_process(_: StartMethod) {
    let q = Queue::<u32>::new().unwrap();
    let clone = q.clone();
    q.close();
    assert!(clone.is_closed(), "clones in this process share close()");
    assert!(matches!(clone.put(1), Err(PutError::Closed(1))));
    // Another process's handle is its own (as in Python).
    Process::new(put_after_parent_closed, q.clone())
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(q.get().unwrap(), 2, "gets still work on a closed handle");
}

fn simple_put(q: SimpleQueue<String>) {
    q.put(format!("hello from {}", std::process::id())).unwrap();
}

fn simple_queue(_: StartMethod) {
    let q = SimpleQueue::<String>::new().unwrap();
    assert!(q.empty());
    let child = Process::new(simple_put, q.clone()).start().unwrap();
    let pid = child.pid();
    child.join().unwrap();
    assert_eq!(q.get().unwrap(), format!("hello from {pid}"));
    // Under fork a captured handle is simply inherited.
    let q2 = q.clone();
    let forked = Process::fork(move || q2.put("inherited".to_string()).unwrap())
        .start()
        .unwrap();
    forked.join().unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), "inherited");
    assert!(matches!(q.try_get(), Err(GetError::Empty)));
}
