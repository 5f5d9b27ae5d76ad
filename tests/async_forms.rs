//! The `async` forms (feature `async`) under tokio and smol: each awaits
//! something another process does, and a dropped future leaves the object
//! usable by a sync caller.
#![cfg(feature = "async")]

use std::time::Duration;

use multiproc::connection::{self, Connection};
use multiproc::queue::Queue;
use multiproc::sync::{Event, Lock};
use multiproc::{ErrorKind, Process};

multiproc::test_support!();

mod common;
use common::watchdog;

/// Generous: only a hang would reach it.
const LONG: Duration = Duration::from_secs(30);

fn square(x: u64) -> u64 {
    x * x
}

fn fill(q: Queue<u32>, n: u32) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

fn set_it(ev: Event) {
    ev.set();
}

/// Holds `lock` from `held` being set until `release` is.
fn hold(lock: Lock, held: Event, release: Event) {
    let guard = lock.acquire().unwrap();
    held.set();
    release.wait_timeout(LONG).unwrap();
    drop(guard);
}

fn drain(q: Queue<u32>, n: u32) -> Vec<u32> {
    (0..n).map(|_| q.get_timeout(LONG).unwrap()).collect()
}

fn put_one(q: Queue<u32>, value: u32) {
    q.put(value).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_joins_a_child() {
    let _w = watchdog("tokio join");
    let p = Process::new(square, 12).start().unwrap();
    assert_eq!(p.join_async().await.unwrap(), 144);
}

#[test]
fn smol_joins_a_child() {
    let _w = watchdog("smol join");
    let p = Process::new(square, 7).start().unwrap();
    assert_eq!(smol::block_on(p.join_async()).unwrap(), 49);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_drains_a_queue_filled_by_a_child() {
    let _w = watchdog("tokio queue");
    let q: Queue<u32> = Queue::with_maxsize(4).unwrap();
    let child = Process::new(fill, (q.clone(), 100)).start().unwrap();
    // The child outruns a maxsize of 4 only while we get: the gets await.
    let mut got = Vec::new();
    for _ in 0..100 {
        got.push(q.get_async().await.unwrap());
    }
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    child.join_async().await.unwrap();
}

#[test]
fn smol_puts_into_a_bounded_queue_a_child_drains() {
    let _w = watchdog("smol put");
    let q: Queue<u32> = Queue::with_maxsize(2).unwrap();
    let got = smol::block_on(async {
        let child = Process::new(drain, (q.clone(), 50)).start().unwrap();
        // A maxsize of 2: the puts await the child's gets.
        for i in 0..50 {
            q.put_async(i).await.unwrap();
        }
        child.join_async().await.unwrap()
    });
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    assert!(q.empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_acquires_a_lock_another_process_releases() {
    let _w = watchdog("tokio lock");
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let release = Event::new().unwrap();
    let child = Process::new(hold, (lock.clone(), held.clone(), release.clone()))
        .start()
        .unwrap();
    held.wait_async().await;
    assert!(lock.is_locked());
    // The first poll of acquire_async finds the lock held; then it is let go.
    let (guard, ()) = tokio::join!(lock.acquire_async(), async { release.set() });
    let guard = guard.unwrap();
    assert_eq!(lock.holder(), Some(std::process::id()));
    drop(guard);
    child.join_async().await.unwrap();
    assert!(!lock.is_locked());
}

#[test]
fn smol_waits_for_an_event_a_child_sets() {
    let _w = watchdog("smol event");
    let ev = Event::new().unwrap();
    smol::block_on(async {
        let child = Process::new(set_it, ev.clone()).start().unwrap();
        ev.wait_async().await;
        child.join_async().await.unwrap();
    });
    assert!(ev.is_set());
}

#[test]
fn a_dropped_acquire_leaves_the_lock_to_sync_callers() {
    let _w = watchdog("dropped acquire");
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    let release = Event::new().unwrap();
    let child = Process::new(hold, (lock.clone(), held.clone(), release.clone()))
        .start()
        .unwrap();
    held.wait_timeout(LONG).unwrap();
    smol::block_on(async {
        let mut fut = Box::pin(lock.acquire_async());
        assert!(smol::future::poll_once(&mut fut).await.is_none());
        drop(fut);
    });
    release.set();
    let guard = lock.acquire_timeout(LONG).unwrap();
    drop(guard);
    child.join().unwrap();
    assert!(!lock.is_locked());
}

#[test]
fn a_dropped_get_takes_nothing() {
    let _w = watchdog("dropped get");
    let q: Queue<u32> = Queue::new().unwrap();
    smol::block_on(async {
        let mut fut = Box::pin(q.get_async());
        assert!(smol::future::poll_once(&mut fut).await.is_none());
        drop(fut);
    });
    let child = Process::new(put_one, (q.clone(), 5)).start().unwrap();
    child.join().unwrap();
    assert_eq!(q.get_timeout(LONG).unwrap(), 5);
    assert!(q.try_get().is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn a_get_future_dropped_by_a_tokio_timeout_takes_nothing() {
    let _w = watchdog("tokio timeout get");
    let q: Queue<u32> = Queue::new().unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(1), q.get_async())
            .await
            .is_err()
    );
    q.put(3).unwrap();
    assert_eq!(q.get_async().await.unwrap(), 3);
}

// ---- Connection::recv_async, recv_bytes_async ------------------------------

fn send_count(conn: Connection<u32>, n: u32) {
    for i in 0..n {
        conn.send(&i).unwrap();
    }
}

/// The bytes of message `i` of `len` bytes: a pattern a torn or shifted
/// message would break.
fn pattern(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (i * 31 + j * 7 + j / 4096) as u8)
        .collect()
}

fn send_sized(conn: Connection, sizes: Vec<usize>) {
    // Bodies over 2 MiB on the socket (a pipe's ring takes up to 64 MiB):
    // the async receive must read them in pieces.
    connection::__set_inline_max(2 << 20);
    for (i, &len) in sizes.iter().enumerate() {
        conn.send_bytes(&pattern(i, len)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_receives_many_values_from_a_child_then_eof() {
    let _w = watchdog("tokio recv_async");
    let (ours, theirs) = connection::pipe::<u32>().unwrap();
    let child = Process::new(send_count, (theirs, 20_000)).start().unwrap();
    for i in 0..20_000 {
        assert_eq!(ours.recv_async().await.unwrap(), i);
    }
    child.join_async().await.unwrap();
    // The peer process exited: end of file, as `recv` says it.
    let err = ours.recv_async().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Eof, "{err}");
    assert_eq!(ours.recv().unwrap_err().kind(), ErrorKind::Eof);
    assert_eq!(
        ours.recv_bytes_async().await.unwrap_err().kind(),
        ErrorKind::Eof
    );
}

#[test]
fn smol_receives_many_messages_from_a_child_then_eof() {
    let _w = watchdog("smol recv_async");
    let (ours, theirs) = connection::pipe_oneway::<u32>().unwrap();
    smol::block_on(async {
        let child = Process::new(send_count, (theirs, 5_000)).start().unwrap();
        for i in 0..5_000u32 {
            assert_eq!(ours.recv_async().await.unwrap(), i);
        }
        child.join_async().await.unwrap();
        let err = ours.recv_async().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Eof, "{err}");
    });
    assert_eq!(ours.recv().unwrap_err().kind(), ErrorKind::Eof);
}

/// Messages over 2 MiB (as the sender sets its ring's limit:
/// `__set_inline_max`) travel on the socket in pieces; the
/// async receive reads them as they come, between small ones, on a
/// current-thread runtime (a receive that blocked mid-message could not
/// let the timer task run).
#[tokio::test(flavor = "current_thread")]
async fn large_messages_arrive_whole() {
    let _w = watchdog("large recv_bytes_async");
    let sizes = vec![10, 12 << 20, 0, 3 << 20, 100_000, 9 << 20, 1];
    let (ours, theirs) = connection::pipe::<Vec<u8>>().unwrap();
    let child = Process::new(send_sized, (theirs.cast(), sizes.clone()))
        .start()
        .unwrap();
    for (i, &len) in sizes.iter().enumerate() {
        let got = ours.recv_bytes_async().await.unwrap();
        assert_eq!(got.len(), len, "message {i}");
        assert!(got == pattern(i, len), "message {i} is torn");
    }
    child.join_async().await.unwrap();
    assert_eq!(
        ours.recv_bytes_async().await.unwrap_err().kind(),
        ErrorKind::Eof
    );
}

/// The same under smol, typed: values of several MiB.
#[test]
fn smol_receives_large_values_from_a_child() {
    let _w = watchdog("smol large recv_async");
    let sizes = vec![5 << 20, 7, 4 << 20];
    let (ours, theirs) = connection::pipe::<Vec<u8>>().unwrap();
    smol::block_on(async {
        let child = Process::new(send_values, (theirs, sizes.clone()))
            .start()
            .unwrap();
        for (i, &len) in sizes.iter().enumerate() {
            let got = ours.recv_async().await.unwrap();
            assert!(got == pattern(i, len), "value {i}");
        }
        child.join_async().await.unwrap();
        assert_eq!(ours.recv_async().await.unwrap_err().kind(), ErrorKind::Eof);
    });
}

fn send_values(conn: Connection<Vec<u8>>, sizes: Vec<usize>) {
    for (i, &len) in sizes.iter().enumerate() {
        conn.send(&pattern(i, len)).unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_recv_future_dropped_by_a_tokio_timeout_receives_nothing() {
    let _w = watchdog("tokio timeout recv");
    let (a, b) = connection::pipe::<u32>().unwrap();
    for _ in 0..3 {
        let idle = tokio::time::timeout(Duration::from_millis(5), b.recv_async()).await;
        assert!(idle.is_err(), "an idle pipe gave {idle:?}");
    }
    a.send(&11).unwrap();
    assert_eq!(b.recv_async().await.unwrap(), 11);
    // Dropped again, then a sync receive gets the next message.
    assert!(
        tokio::time::timeout(Duration::from_millis(5), b.recv_bytes_async())
            .await
            .is_err()
    );
    a.send(&12).unwrap();
    assert_eq!(b.recv_timeout(LONG).unwrap(), 12);
    assert_eq!(b.try_recv().unwrap_err().kind(), ErrorKind::Empty);
}

/// A message from another process after the future timed out: the next
/// receive gets it, and the one after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_recv_loses_nothing_a_child_sends() {
    let _w = watchdog("tokio timeout recv child");
    let (ours, theirs) = connection::pipe::<u32>().unwrap();
    let go = Event::new().unwrap();
    let child = Process::new(send_after, (theirs, go.clone()))
        .start()
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(20), ours.recv_async())
            .await
            .is_err()
    );
    go.set();
    assert_eq!(ours.recv_async().await.unwrap(), 1);
    assert_eq!(ours.recv().unwrap(), 2);
    child.join_async().await.unwrap();
    assert_eq!(ours.recv_async().await.unwrap_err().kind(), ErrorKind::Eof);
}

fn send_after(conn: Connection<u32>, go: Event) {
    go.wait_timeout(LONG).unwrap();
    conn.send(&1).unwrap();
    conn.send(&2).unwrap();
}

/// A future dropped while a large message is arriving (its first piece
/// read, the rest still coming): the next sync receive gets it whole.
#[test]
fn a_future_dropped_mid_message_leaves_it_whole() {
    let _w = watchdog("dropped mid-message");
    let (a, b) = connection::pipe::<Vec<u8>>().unwrap();
    let big = pattern(3, 12 << 20);
    let writer = {
        let big = big.clone();
        std::thread::spawn(move || {
            // On the socket, in pieces (this process's ring limit, set
            // for every test of this binary: only the path changes).
            connection::__set_inline_max(2 << 20);
            a.send_bytes(&big).unwrap();
            a.send_bytes(b"after").unwrap();
            a
        })
    };
    // The ring's record of the message is there once `poll` says so; its
    // 12 MiB cannot all be in the socket yet.
    assert!(b.poll(Some(LONG)).unwrap());
    smol::block_on(async {
        let mut fut = Box::pin(b.recv_bytes_async());
        let first = smol::future::poll_once(&mut fut).await;
        drop(fut);
        if let Some(got) = first {
            assert!(got.unwrap() == big);
            return;
        }
        assert!(b.recv_bytes().unwrap() == big);
    });
    assert_eq!(b.recv_bytes().unwrap(), b"after");
    drop(writer.join().unwrap());
    assert_eq!(b.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
}

// ---- recv_async over Listener / Client -------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_listener_and_client_talk_both_ways_with_an_authkey() {
    let _w = watchdog("tokio listener recv_async");
    let key = b"secret key";
    let listener = multiproc::Listener::bind_temp(Some(key)).unwrap();
    let address = listener.address().clone();
    let client = tokio::task::spawn_blocking(move || {
        multiproc::Client::connect::<String>(&address, Some(key)).unwrap()
    });
    let server: Connection<String> = listener.accept().unwrap();
    let client = client.await.unwrap();
    for i in 0..50 {
        client.send(&format!("ping {i}")).unwrap();
        assert_eq!(server.recv_async().await.unwrap(), format!("ping {i}"));
        server.send(&format!("pong {i}")).unwrap();
        assert_eq!(client.recv_async().await.unwrap(), format!("pong {i}"));
    }
    drop(client);
    assert_eq!(
        server.recv_async().await.unwrap_err().kind(),
        ErrorKind::Eof
    );
}

/// A message that arrives in two parts, with the first receive dropped
/// between them: the first poll takes what had arrived into the
/// connection, and the next receive finishes the message.
#[test]
fn a_message_torn_across_a_dropped_receive_is_finished_by_the_next() {
    use std::future::Future;
    use std::io::Write;
    let _w = watchdog("torn recv_bytes_async");
    let listener = multiproc::Listener::bind_temp(None).unwrap();
    let multiproc::connection::Address::Unix(path) = listener.address().clone() else {
        unreachable!("bind_temp binds a Unix socket");
    };
    let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let server: Connection = listener.accept().unwrap();
    let message = pattern(3, 40_000);
    // Python's framing: a big-endian length, then the bytes.
    let mut frame = (message.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&message);
    raw.write_all(&frame[..20_000]).unwrap();
    {
        let receive = server.recv_bytes_async();
        let mut receive = std::pin::pin!(receive);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            receive.as_mut().poll(&mut cx).is_pending(),
            "half a message is not a message"
        );
        assert_eq!(
            rustix::io::ioctl_fionread(&server).unwrap(),
            0,
            "the first try took what had arrived"
        );
    }
    raw.write_all(&frame[20_000..]).unwrap();
    let got = smol::block_on(server.recv_bytes_async()).unwrap();
    assert_eq!(got, message);
    drop(raw);
    let end = smol::block_on(server.recv_bytes_async()).unwrap_err();
    assert_eq!(end.kind(), ErrorKind::Eof);
}
