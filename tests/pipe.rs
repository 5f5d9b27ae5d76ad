//! Pipes through shared memory, under every start method: a writer
//! SIGKILLed in a tight send loop, end of file while the reader spins and
//! while it sleeps, `wait` woken by a ring message, a pipe end sent
//! through a pipe, and many small messages both ways at once.
//!
//! The harness (a process per test, a watchdog each) is `tests/isolated`.

use std::time::Duration;

use multiproc::connection::{self, Connection};
use multiproc::{ErrorKind, Process, Signal, StartMethod};

mod isolated;

/// Every test, and whether it runs under each start method (`true`) or
/// once (under the default, forkserver).
const TESTS: isolated::Tests = &[
    (
        "writer_killed_in_a_send_loop_gives_whole_messages_then_eof",
        writer_killed,
        true,
    ),
    ("eof_while_the_reader_spins", eof_while_spinning, true),
    ("eof_while_the_reader_sleeps", eof_while_sleeping, true),
    ("wait_wakes_for_a_ring_message", wait_wakes, true),
    ("a_pipe_end_travels_through_a_pipe", end_through_pipe, true),
    ("duplex_exact_counts", duplex_exact_counts, true),
    (
        "a_writer_far_ahead_waits_and_sees_a_dead_reader",
        backpressure,
        true,
    ),
    (
        "a_pipe_reserves_little_address_space",
        little_address_space,
        false,
    ),
    (
        "large_messages_arrive_whole_by_every_receive",
        large_messages,
        false,
    ),
    (
        "concurrent_writers_of_large_messages",
        concurrent_large_writers,
        false,
    ),
];

/// The sizes `large_messages` sends: through the ring (up to 64 MiB)
/// and past it (the socket).
const LARGE: [usize; 4] = [3 << 20, 16 << 20, 64 << 20, (64 << 20) + 1];

fn large_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8).collect()
}

/// Sends each of `LARGE` four times (one per receive form below), then
/// a `ByteBuf` of each.
fn send_large(conn: Connection, typed: Connection<serde_bytes::ByteBuf>) {
    for len in LARGE {
        let body = large_body(len);
        for _ in 0..4 {
            conn.send_bytes(&body).unwrap();
        }
        typed.send(&serde_bytes::ByteBuf::from(body)).unwrap();
    }
}

fn large_messages(_: StartMethod) {
    let (ours, theirs) = connection::pipe::<Vec<u8>>().unwrap();
    let (typed, typed_theirs) = connection::pipe::<serde_bytes::ByteBuf>().unwrap();
    let child = Process::new(send_large, (theirs, typed_theirs))
        .start()
        .unwrap();
    for len in LARGE {
        let want = large_body(len);
        assert!(ours.recv_bytes().unwrap() == want, "recv_bytes of {len}");
        assert!(
            ours.recv_bytes_with(|b| b == want.as_slice()).unwrap(),
            "recv_bytes_with of {len}"
        );
        // Too small a buffer: refused, and the message stays queued.
        let mut small = vec![0u8; 1024];
        let e = ours.recv_bytes_into(&mut small).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooLarge, "{e}");
        assert!(
            ours.recv_bytes().unwrap() == want,
            "the refused {len} again"
        );
        let mut exact = vec![0u8; len];
        assert_eq!(ours.recv_bytes_into(&mut exact).unwrap(), len);
        assert!(exact == want, "recv_bytes_into of {len}");
        assert!(typed.recv().unwrap().into_vec() == want, "recv of {len}");
    }
    child.join().unwrap();
}

/// Three threads at once, each sending three 40 MiB messages of its own
/// bytes.
fn send_large_from_three_threads(conn: Connection) {
    std::thread::scope(|s| {
        for id in 1..=3u8 {
            let conn = &conn;
            s.spawn(move || {
                for _ in 0..3 {
                    conn.send_bytes(&vec![id; 40 << 20]).unwrap();
                }
            });
        }
    });
}

/// Three writers of 40 MiB messages at once: the ring holds up to 8 MiB
/// unread plus a message per writer (and a writer that finds it full to
/// its 256 MiB sends on the socket); every message arrives whole.
fn concurrent_large_writers(_: StartMethod) {
    let (ours, theirs) = connection::pipe::<Vec<u8>>().unwrap();
    let child = Process::new(send_large_from_three_threads, theirs)
        .start()
        .unwrap();
    let mut per_writer = [0; 4];
    for _ in 0..9 {
        let (len, id, whole) = ours
            .recv_bytes_with(|b| (b.len(), b[0], b.iter().all(|&x| x == b[0])))
            .unwrap();
        assert_eq!(len, 40 << 20);
        assert!(whole, "a message of writer {id} is mixed");
        per_writer[id as usize] += 1;
    }
    assert_eq!(per_writer, [0, 3, 3, 3]);
    child.join().unwrap();
}

/// This process's virtual size in bytes.
fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize");
    kib << 10
}

/// A duplex pipe maps two rings in each process that holds its ends; they
/// must not reserve a queue's 16 GiB each (64 such pipes would take 2 TiB
/// of address space, `ulimit -v` counts it, and a few thousand exhaust a
/// process's 128 TiB).
fn little_address_space(_: StartMethod) {
    let before = vm_size();
    let pipes: Vec<_> = (0..64)
        .map(|_| connection::pipe::<u64>().unwrap())
        .collect();
    let grown = vm_size() - before;
    assert!(
        grown < 64 << 30,
        "64 duplex pipes reserved {} GiB",
        grown >> 30
    );
    // And they work.
    let (a, b) = &pipes[63];
    a.send(&7).unwrap();
    assert_eq!(b.recv().unwrap(), 7);
}

fn main() {
    isolated::main("pipe", TESTS);
}

/// Waits until thread `tid` of this process is asleep in the kernel (state
/// `S`): a receiver past its spinning, in `poll`.
fn until_asleep(tid: &str) {
    loop {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
            .expect("the thread's stat");
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        if state == Some("S") {
            return;
        }
        std::thread::yield_now();
    }
}

/// This thread's id, for [`until_asleep`].
fn my_tid() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name()
        .expect("a tid")
        .to_string_lossy()
        .into_owned()
}

// ---- a writer killed in a tight send loop ---------------------------------

/// Message `seq`: its number, and a body whose size and bytes follow from
/// it; every 300th is larger than the writer lets the ring take inline (it
/// travels on the socket: `__set_inline_max`), so some kills land in the
/// middle of one.
fn body(seq: u64) -> Vec<u8> {
    let len = if seq % 300 == 299 {
        3 << 20
    } else {
        (seq % 200) as usize
    };
    vec![seq as u8; len]
}

fn send_forever(conn: Connection<(u64, Vec<u8>)>) {
    connection::__set_inline_max(2 << 20);
    let mut seq = 0;
    loop {
        conn.send(&(seq, body(seq))).unwrap();
        seq += 1;
    }
}

fn writer_killed(_: StartMethod) {
    for round in 0..6u64 {
        let (ours, theirs) = connection::pipe::<(u64, Vec<u8>)>().unwrap();
        let child = Process::new(send_forever, theirs).start().unwrap();
        // Kill it at some moment of its loop (a different one each round).
        let wanted = 1 + round * 97;
        let mut next = 0u64;
        while next < wanted {
            let (seq, b) = ours.recv().unwrap();
            assert_eq!((seq, b), (next, body(next)));
            next += 1;
        }
        child.kill().unwrap();
        assert_eq!(child.join().unwrap_err().signal(), Some(Signal::KILL));
        // Everything it sent is whole and in order; then end of file.
        let err = loop {
            match ours.recv() {
                Ok((seq, b)) => {
                    assert_eq!(seq, next, "round {round}");
                    assert!(b == body(seq), "message {seq} is torn");
                    next += 1;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::Eof, "round {round}: {err}");
        assert_eq!(ours.recv().unwrap_err().kind(), ErrorKind::Eof);
    }
}

// ---- end of file -----------------------------------------------------------

fn wait_then_leave(conn: Connection<u8>) {
    let _ = conn.recv();
}

/// The child leaves right after it is told to, while the parent is in
/// `recv`: mostly while it still spins.
fn eof_while_spinning(_: StartMethod) {
    for _ in 0..20 {
        let (ours, theirs) = connection::pipe::<u8>().unwrap();
        let child = Process::new(wait_then_leave, theirs).start().unwrap();
        ours.send(&1).unwrap();
        assert_eq!(ours.recv().unwrap_err().kind(), ErrorKind::Eof);
        child.join().unwrap();
    }
}

fn park_forever(conn: Connection<u8>) {
    conn.send(&7).unwrap();
    loop {
        std::thread::park();
    }
}

/// The reader is asleep in `poll` when its peer dies (SIGKILL) or closes.
fn eof_while_sleeping(method: StartMethod) {
    let (ours, theirs) = connection::pipe::<u8>().unwrap();
    let child = Process::new(park_forever, theirs).start().unwrap();
    assert_eq!(ours.recv().unwrap(), 7);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        tx.send(my_tid()).unwrap();
        ours.recv()
    });
    until_asleep(&rx.recv().unwrap());
    child.kill().unwrap();
    let err = reader.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Eof, "{method:?}: {err}");
    assert_eq!(child.join().unwrap_err().signal(), Some(Signal::KILL));
    // And a clean close, in one process.
    let (a, b) = connection::pipe::<u8>().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        tx.send(my_tid()).unwrap();
        (b.recv(), b.recv())
    });
    until_asleep(&rx.recv().unwrap());
    a.send(&3).unwrap();
    drop(a);
    let (first, second) = reader.join().unwrap();
    assert_eq!(first.unwrap(), 3);
    assert_eq!(second.unwrap_err().kind(), ErrorKind::Eof);
}

// ---- wait ------------------------------------------------------------------

/// Answers `n + 1` to each `n` until `u32::MAX` (not end of file: under
/// fork the child holds a copy of the parent's end too).
fn answer_each(conn: Connection<u32>) {
    loop {
        let n = conn.recv().unwrap();
        if n == u32::MAX {
            return;
        }
        conn.send(&(n + 1)).unwrap();
    }
}

fn wait_wakes(_: StartMethod) {
    let (ours, theirs) = connection::pipe::<u32>().unwrap();
    let (idle, _idle_other) = connection::pipe::<u32>().unwrap();
    let child = Process::new(answer_each, theirs).start().unwrap();
    for n in 0..200u32 {
        ours.send(&n).unwrap();
        // Whether the answer is there before wait or comes while it sleeps.
        let ready = connection::wait(&[&idle, &ours, &child], None).unwrap();
        assert_eq!(ready, vec![1], "round {n}");
        assert_eq!(ours.recv().unwrap(), n + 1);
        // A stale doorbell does not make wait report a message.
        assert!(
            connection::wait(&[&ours], Some(Duration::ZERO))
                .unwrap()
                .is_empty()
        );
    }
    // wait asleep in poll, woken by a message into the ring.
    let (a, b) = connection::pipe::<u32>().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        tx.send(my_tid()).unwrap();
        let ready = connection::wait(&[&b], None).unwrap();
        (ready, b.recv().unwrap())
    });
    until_asleep(&rx.recv().unwrap());
    a.send(&42).unwrap();
    assert_eq!(waiter.join().unwrap(), (vec![0], 42));
    ours.send(&u32::MAX).unwrap();
    child.join().unwrap();
}

// ---- a pipe end in a message -------------------------------------------------

fn use_the_end(carrier: Connection<Connection<u64>>) -> u64 {
    let end = carrier.recv().unwrap();
    let mut sum = 0;
    while let Ok(n) = end.recv() {
        sum += n;
        end.send(&(n * 2)).unwrap();
    }
    sum
}

fn end_through_pipe(_: StartMethod) {
    let (carrier, carrier_child) = connection::pipe::<Connection<u64>>().unwrap();
    let child = Process::new(use_the_end, carrier_child).start().unwrap();
    let (ours, theirs) = connection::pipe::<u64>().unwrap();
    // Some messages wait in the ring before the end travels.
    for n in 1..=10 {
        ours.send(&n).unwrap();
    }
    carrier.send(&theirs).unwrap();
    drop(theirs);
    for n in 1..=10 {
        assert_eq!(ours.recv().unwrap(), n * 2);
    }
    for n in 11..=1000 {
        ours.send(&n).unwrap();
        assert_eq!(ours.recv().unwrap(), n * 2);
    }
    drop(ours);
    assert_eq!(child.join().unwrap(), 1000 * 1001 / 2);
}

// ---- both ways at once -------------------------------------------------------

const DUPLEX_N: u64 = 200_000;

/// Sends `0..n` on one thread while receiving `0..n` on another; returns
/// how many arrived in order.
fn both_ways(conn: &Connection<u64>, n: u64) -> u64 {
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..n {
                conn.send(&i).unwrap();
            }
        });
        let mut got = 0;
        for i in 0..n {
            assert_eq!(conn.recv().unwrap(), i);
            got += 1;
        }
        got
    })
}

fn duplex_child(conn: Connection<u64>) -> u64 {
    both_ways(&conn, DUPLEX_N)
}

fn duplex_exact_counts(_: StartMethod) {
    let (ours, theirs) = connection::pipe::<u64>().unwrap();
    let child = Process::new(duplex_child, theirs).start().unwrap();
    assert_eq!(both_ways(&ours, DUPLEX_N), DUPLEX_N);
    assert_eq!(child.join().unwrap(), DUPLEX_N);
    assert_eq!(ours.recv().unwrap_err().kind(), ErrorKind::Eof);
}

// ---- backpressure --------------------------------------------------------------

fn park_reading_nothing(conn: Connection<Vec<u8>>) {
    conn.send_bytes(b"ready").unwrap();
    loop {
        std::thread::park();
    }
}

/// A writer that runs far ahead of its reader waits (the ring stays
/// small), gets everything through once the reader reads, and gets `Eof`
/// instead of waiting forever when the reader dies.
fn backpressure(method: StartMethod) {
    const MSG: usize = 1 << 20;
    const N: usize = 40; // far more than the ring holds unread
    let (a, b) = connection::pipe::<Vec<u8>>().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        tx.send(my_tid()).unwrap();
        for i in 0..N {
            a.send_bytes(&vec![i as u8; MSG]).unwrap();
        }
    });
    until_asleep(&rx.recv().unwrap());
    for i in 0..N {
        let got = b.recv_bytes().unwrap();
        assert!(got.len() == MSG && got.iter().all(|&x| x == i as u8), "{i}");
    }
    writer.join().unwrap();

    let (ours, theirs) = connection::pipe::<Vec<u8>>().unwrap();
    let child = Process::new(park_reading_nothing, theirs).start().unwrap();
    assert_eq!(ours.recv_bytes().unwrap(), b"ready");
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        tx.send(my_tid()).unwrap();
        loop {
            if let Err(e) = ours.send_bytes(&vec![1u8; MSG]) {
                return e;
            }
        }
    });
    until_asleep(&rx.recv().unwrap());
    child.kill().unwrap();
    let err = writer.join().unwrap();
    assert_eq!(err.kind(), ErrorKind::Eof, "{method:?}: {err}");
    assert_eq!(child.join().unwrap_err().signal(), Some(Signal::KILL));
}
