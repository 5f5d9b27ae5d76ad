//! Large data without copies: `SharedVec` → `SharedSlice` (sealed shared
//! memory) and `Frozen` (`pool.put`), under each start method: workers map
//! the very pages the caller built, a `Frozen` is decoded once per worker,
//! hostile descriptors are refused, memory goes back when the last holder
//! drops it (a SIGKILLed holder included), a forked child cannot touch the
//! builder's pages, ndarray views work on both sides.
//!
//! The harness is `tests/isolated` (a process per test and start method,
//! a watchdog each, no child or zombie left behind).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use multiproc::shared::{Frozen, SharedSlice, SharedVec};
use multiproc::sync::Event;
use multiproc::{ErrorKind, Fd, Pool, StartMethod};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod isolated;

const TESTS: isolated::Tests = &[
    (
        "workers_map_the_pages_the_caller_built",
        workers_map_the_pages_the_caller_built,
        true,
    ),
    (
        "a_frozen_value_is_decoded_once_per_worker",
        a_frozen_value_is_decoded_once_per_worker,
        true,
    ),
    (
        "memory_goes_back_when_the_last_holder_drops_it",
        memory_goes_back_when_the_last_holder_drops_it,
        true,
    ),
    (
        "a_holder_killed_mid_task_leaks_nothing",
        a_holder_killed_mid_task_leaks_nothing,
        true,
    ),
    (
        "slices_travel_in_results_and_pipes",
        slices_travel_in_results_and_pipes,
        true,
    ),
    (
        "unsealed_short_or_foreign_descriptors_are_refused",
        unsealed_short_or_foreign_descriptors_are_refused,
        false,
    ),
    (
        "a_forked_child_cannot_touch_the_builders_pages",
        a_forked_child_cannot_touch_the_builders_pages,
        false,
    ),
    (
        "ndarray_views_on_both_sides",
        ndarray_views_on_both_sides,
        true,
    ),
    ("bad_arguments_are_errors", bad_arguments_are_errors, false),
    (
        "large_arguments_and_results_travel_as_shared_memory",
        large_arguments_and_results_travel_as_shared_memory,
        true,
    ),
    (
        "borrowed_receives_lend_the_bytes",
        borrowed_receives_lend_the_bytes,
        true,
    ),
    (
        "a_large_item_survives_its_workers_death",
        a_large_item_survives_its_workers_death,
        true,
    ),
];

fn main() {
    isolated::main("shared_data", TESTS);
}

fn pool(method: StartMethod) -> Pool {
    Pool::builder()
        .processes(2)
        .start_method(method)
        .build()
        .unwrap()
}

/// The inodes of this process's mappings of multiproc's shared slices
/// (from /proc/self/maps), one per mapping.
fn slice_mappings() -> Vec<u64> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("multiproc-slice"))
        .map(|l| l.split_whitespace().nth(4).unwrap().parse().unwrap())
        .collect()
}

/// How many descriptors of multiproc's shared slices this process holds.
fn slice_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().contains("multiproc-slice"))
        .count()
}

const COLS: usize = 1024;

/// (worker pid, the inodes of the slice mappings it holds, the row's sum).
fn row_sum((rows, i): (SharedSlice<f64>, usize)) -> (u32, Vec<u64>, f64) {
    let sum = rows[i * COLS..(i + 1) * COLS].iter().sum();
    (std::process::id(), slice_mappings(), sum)
}

fn workers_map_the_pages_the_caller_built(method: StartMethod) {
    let pool = pool(method);
    let rows = 256;
    // Built in place: no Vec<f64> anywhere.
    let mut v = SharedVec::<f64>::zeroed(rows * COLS).unwrap();
    for (i, x) in v.iter_mut().enumerate() {
        *x = i as f64;
    }
    let built = slice_mappings();
    let slice = v.freeze().unwrap();
    let mine = slice_mappings();
    assert_eq!(mine.len(), 1, "{mine:?}");
    // Frozen in place: the same segment, now sealed.
    assert_eq!(built, mine);
    let out = pool
        .chunksize(1)
        .map(row_sum, (0..rows).map(|i| (slice.clone(), i)))
        .unwrap();
    let mut pids = BTreeMap::new();
    for (i, (pid, inodes, sum)) in out.into_iter().enumerate() {
        let first = (i * COLS) as f64;
        let expected = COLS as f64 * first + (COLS * (COLS - 1) / 2) as f64;
        assert_eq!(sum, expected, "row {i}");
        // The worker maps the caller's segment itself: the same inode.
        assert!(inodes.contains(&mine[0]), "{inodes:?} vs {mine:?}");
        pids.insert(pid, ());
    }
    assert!(!pids.is_empty());
    pool.close();
    pool.join().unwrap();
}

/// How many `Counted` values this process has decoded.
static DECODES: AtomicU64 = AtomicU64::new(0);

/// A big value that counts its decodings.
struct Counted(Vec<u64>);

impl Serialize for Counted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DECODES.fetch_add(1, Ordering::SeqCst);
        Vec::deserialize(d).map(Counted)
    }
}

/// (worker pid, decodes so far there, the value at `i`).
fn counted_at((c, i): (Frozen<Counted>, usize)) -> (u32, u64, u64) {
    (std::process::id(), DECODES.load(Ordering::SeqCst), c.0[i])
}

fn a_frozen_value_is_decoded_once_per_worker(method: StartMethod) {
    let pool = pool(method);
    let table = pool
        .put(Counted((0..100_000).map(|x| x * 3).collect()))
        .unwrap();
    assert!(table.encoded_len() > 100_000);
    // The caller keeps its own value: no decode here.
    assert_eq!(table.0[7], 21);
    assert_eq!(DECODES.load(Ordering::SeqCst), 0);
    let out = pool
        .chunksize(1)
        .map(counted_at, (0..200).map(|i| (table.clone(), i * 10)))
        .unwrap();
    let mut most = BTreeMap::new();
    for (i, &(pid, decodes, value)) in out.iter().enumerate() {
        assert_eq!(value, (i * 30) as u64);
        let m = most.entry(pid).or_insert(0);
        *m = decodes.max(*m);
    }
    assert!(
        most.values().all(|&d| d == 1),
        "decodes per worker: {most:?}"
    );
    // A second value is decoded again, once.
    let other = pool.put(Counted(vec![5; 10])).unwrap();
    let out = pool
        .chunksize(1)
        .map(counted_at, (0..50).map(|_| (other.clone(), 9)))
        .unwrap();
    assert!(out.iter().all(|&(_, d, v)| v == 5 && d == 2), "{out:?}");
    pool.close();
    pool.join().unwrap();
}

/// The number of slice descriptors and mappings this worker holds.
fn held(_: u32) -> (u32, usize, usize) {
    (std::process::id(), slice_fds(), slice_mappings().len())
}

fn first_of(s: SharedSlice<u8>) -> u8 {
    s[0]
}

fn len_of(f: Frozen<Vec<u8>>) -> usize {
    f.len()
}

fn memory_goes_back_when_the_last_holder_drops_it(method: StartMethod) {
    let pool = pool(method);
    let slice = SharedSlice::from_slice(&[9u8; 1 << 20]).unwrap();
    assert_eq!(slice_fds(), 1);
    let out = pool
        .chunksize(1)
        .map(first_of, (0..40).map(|_| slice.clone()))
        .unwrap();
    assert!(out.iter().all(|&b| b == 9));
    drop(slice);
    // Nothing of it left here (the pool keeps no copy of the arguments)...
    assert_eq!(slice_fds(), 0);
    assert!(slice_mappings().is_empty());
    // ... nor in any worker, once its task's arguments are dropped.
    for (pid, fds, maps) in pool.chunksize(1).map(held, 0..20).unwrap() {
        assert_eq!((fds, maps), (0, 0), "worker {pid}");
    }
    // A worker keeps the last few Frozen values it decoded, not more.
    let puts: Vec<_> = (0..7u8).map(|i| pool.put(vec![i; 5000]).unwrap()).collect();
    for f in &puts {
        let lens = pool
            .chunksize(1)
            .map(len_of, (0..4).map(|_| f.clone()))
            .unwrap();
        assert!(lens.iter().all(|&n| n == 5000));
    }
    drop(puts);
    assert_eq!(slice_fds(), 0);
    for (pid, fds, maps) in pool.chunksize(1).map(held, 0..20).unwrap() {
        assert!(
            fds <= 4 && maps <= 4,
            "worker {pid}: {fds} fds, {maps} maps"
        );
    }
    pool.close();
    pool.join().unwrap();
}

fn hold_and_die(s: SharedSlice<u8>) -> u8 {
    if s[0] == 1 {
        // Killed while it holds the mapping and the descriptor.
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
            .unwrap();
    }
    s[0]
}

fn a_holder_killed_mid_task_leaks_nothing(method: StartMethod) {
    let pool = pool(method);
    let dying = SharedSlice::from_slice(&[1u8; 1 << 16]).unwrap();
    let fine = SharedSlice::from_slice(&[2u8; 1 << 16]).unwrap();
    let err = pool
        .chunksize(1)
        .map(hold_and_die, [fine.clone(), dying.clone(), fine.clone()])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost, "{err}");
    drop((dying, fine));
    assert_eq!(slice_fds(), 0, "the pool kept a descriptor of a lost task");
    assert!(slice_mappings().is_empty());
    // The replacement and the survivor hold nothing either.
    for (pid, fds, maps) in pool.chunksize(1).map(held, 0..20).unwrap() {
        assert_eq!((fds, maps), (0, 0), "worker {pid}");
    }
    pool.close();
    pool.join().unwrap();
}

/// A worker builds a slice and hands it back as its result.
fn squares(n: usize) -> SharedSlice<u64> {
    let mut v = SharedVec::with_capacity(n).unwrap();
    for i in 0..n as u64 {
        v.push(i * i).unwrap();
    }
    v.freeze().unwrap()
}

fn slices_travel_in_results_and_pipes(method: StartMethod) {
    let pool = pool(method);
    let back = pool.map(squares, [10usize, 100_000]).unwrap();
    assert_eq!(back[0][3], 9);
    assert_eq!(back[1][99_999], 99_999 * 99_999);
    // Through a pipe, to a child started with the method under test.
    let (here, there) = multiproc::connection::pipe::<SharedSlice<u64>>().unwrap();
    let child = multiproc::get_context(method)
        .process(echo_sum, there)
        .start()
        .unwrap();
    here.send(&back[1]).unwrap();
    let sums = here.recv().unwrap();
    assert_eq!(sums[0], back[1].iter().sum::<u64>());
    child.join().unwrap();
    pool.close();
    pool.join().unwrap();
}

/// Receives a slice, sends back a one-element slice of its sum.
fn echo_sum(conn: multiproc::connection::Connection<SharedSlice<u64>>) {
    let s = conn.recv().unwrap();
    let sum = SharedSlice::from_slice(&[s.iter().sum::<u64>()]).unwrap();
    conn.send(&sum).unwrap();
}

/// What a hostile sender puts where a `SharedSlice` is expected.
#[derive(Serialize, Deserialize)]
struct Forged(Fd, u64);

fn unsealed_short_or_foreign_descriptors_are_refused(_: StartMethod) {
    let (tx, rx) = multiproc::connection::pipe::<Forged>().unwrap();
    let rx = rx.cast::<SharedSlice<u8>>();
    let refused = |forged: Forged| {
        tx.send(&forged).unwrap();
        let err = rx.recv().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
        err.to_string()
    };
    // A memfd that was never sealed: the sender could write under us.
    let open = rustix::fs::memfd_create("open", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&open, 4096).unwrap();
    let msg = refused(Forged(Fd::new(open), 16));
    assert!(msg.contains("not a segment sealed read-only"), "{msg}");
    // Sealed against growing only: it could still be written or shrunk.
    let half = rustix::fs::memfd_create(
        "half",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    rustix::fs::ftruncate(&half, 4096).unwrap();
    rustix::fs::fcntl_add_seals(&half, rustix::fs::SealFlags::GROW).unwrap();
    refused(Forged(Fd::new(half), 16));
    // Sealed, but shorter than the length announced (no SIGBUS later).
    let short = rustix::fs::memfd_create(
        "short",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    // Its one page written: not refused for holes.
    rustix::io::write(&short, &[1u8; 4096]).unwrap();
    rustix::fs::fcntl_add_seals(
        &short,
        rustix::fs::SealFlags::WRITE | rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW,
    )
    .unwrap();
    let short2 = rustix::io::dup(&short).unwrap();
    let msg = refused(Forged(Fd::new(short), 1 << 40));
    assert!(msg.contains("the segment has 4096 bytes"), "{msg}");
    refused(Forged(Fd::new(short2), u64::MAX));
    // Sealed and long enough, but sparse: 1 GiB that cost its sender
    // nothing would cost the reader a page per page read.
    let sparse = rustix::fs::memfd_create(
        "sparse",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    rustix::fs::ftruncate(&sparse, 1 << 30).unwrap();
    rustix::fs::fcntl_add_seals(
        &sparse,
        rustix::fs::SealFlags::WRITE | rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW,
    )
    .unwrap();
    let msg = refused(Forged(Fd::new(sparse), 1 << 30));
    assert!(msg.contains("holes"), "{msg}");
    // Not shared memory at all.
    let (r, _w) = std::io::pipe().unwrap();
    refused(Forged(Fd::new(r.into()), 1));
    // The connection goes on: a real slice still arrives.
    let (tx2, rx2) = multiproc::connection::pipe::<SharedSlice<u8>>().unwrap();
    tx2.send(&SharedSlice::from_slice(b"fine").unwrap())
        .unwrap();
    assert_eq!(&rx2.recv().unwrap()[..], b"fine");
    drop(tx);
    assert_eq!(slice_fds(), 0);
}

/// The builder a forked child inherits a copy of.
static INHERITED: Mutex<Option<SharedVec<u64>>> = Mutex::new(None);

fn touch_inherited(go: Event) {
    go.wait();
    let guard = INHERITED.lock().unwrap();
    let v = guard.as_ref().expect("the fork copies the parent's static");
    // Panics: the pages are the parent's.
    println!("{}", v[0]);
}

fn a_forked_child_cannot_touch_the_builders_pages(_: StartMethod) {
    let v = SharedVec::from_slice(&[7u64; 1000]).unwrap();
    *INHERITED.lock().unwrap() = Some(v);
    let go = Event::new().unwrap();
    let child = multiproc::get_context(StartMethod::Fork)
        .process(touch_inherited, go.clone())
        .start()
        .unwrap();
    let v = INHERITED.lock().unwrap().take().unwrap();
    let built = slice_mappings();
    // The child maps the pages writable until it exits, so the seal cannot
    // be had: freeze copies once (another segment), sealed all the same.
    let s = v.freeze().unwrap();
    let now = slice_mappings();
    assert_eq!((built.len(), now.len()), (1, 1));
    assert_ne!(
        built, now,
        "no copy was made while a child mapped the pages"
    );
    assert_eq!(s.len(), 1000);
    assert!(s.iter().all(|&x| x == 7));
    go.set();
    let err = child.join().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
    let msg = err.panic_message().unwrap_or_default().to_string();
    assert!(msg.contains("belongs to process"), "{msg}");
    // What reached the pool is sealed: a worker maps it read-only.
    let pool = pool(StartMethod::Forkserver);
    assert_eq!(pool.apply(sum_u64, s.clone()).unwrap(), 7000);
    pool.close();
    pool.join().unwrap();
}

fn sum_u64(s: SharedSlice<u64>) -> u64 {
    s.iter().sum()
}

/// The column sums of a `rows` × `cols` array.
fn column_sums((a, rows, cols): (SharedSlice<f64>, usize, usize)) -> Vec<f64> {
    let view = a.view((rows, cols)).unwrap();
    view.sum_axis(ndarray::Axis(0)).to_vec()
}

fn ndarray_views_on_both_sides(method: StartMethod) {
    let (rows, cols) = (300, 4);
    let mut v = SharedVec::<f64>::zeroed(rows * cols).unwrap();
    {
        let mut a = v.view_mut((rows, cols)).unwrap();
        for ((r, c), x) in a.indexed_iter_mut() {
            *x = (r * 10 + c) as f64;
        }
    }
    let a = v.freeze().unwrap();
    let pool = pool(method);
    let sums = pool.apply(column_sums, (a.clone(), rows, cols)).unwrap();
    let expected: Vec<f64> = (0..cols)
        .map(|c| (0..rows).map(|r| (r * 10 + c) as f64).sum())
        .collect();
    assert_eq!(sums, expected);
    // A shape that does not hold the elements is an error, not a panic.
    let err = a.view((rows, cols + 1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    pool.close();
    pool.join().unwrap();
}

fn bad_arguments_are_errors(_: StartMethod) {
    let err = SharedVec::<()>::new().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = SharedVec::<u64>::with_capacity(usize::MAX).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let mut v = SharedVec::<u64>::zeroed(3).unwrap();
    assert_eq!(
        v.reserve(usize::MAX).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    // Unchanged by the refused growth.
    v.push(4).unwrap();
    assert_eq!(&v[..], &[0, 0, 0, 4]);
    // An empty vector freezes to an empty slice that travels.
    let empty = SharedVec::<u64>::new().unwrap().freeze().unwrap();
    assert!(empty.is_empty());
    let pool = pool(StartMethod::Forkserver);
    assert_eq!(pool.apply(sum_u64, empty).unwrap(), 0);
    // A descriptor inside a Frozen value is refused with a clear error.
    let (r, _w) = std::io::pipe().unwrap();
    let err = pool.put(Fd::new(r.into())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode, "{err}");
    // A queue cannot carry descriptors: the put says so.
    let q = multiproc::Queue::<SharedSlice<u8>>::new().unwrap();
    let err = q.put(SharedSlice::from_slice(b"x").unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Encode, "{err}");
    pool.close();
    pool.join().unwrap();
}

/// Whether this process maps or holds a segment labelled `label` now.
fn holds(label: &str) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let fds = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|l| l.to_string_lossy().contains(label));
    fds || maps.contains(label)
}

/// Echoes a byte string `times` as long; says whether the arguments came
/// in shared memory (mapped while the task runs).
fn stretch((b, times): (serde_bytes::ByteBuf, usize)) -> (bool, serde_bytes::ByteBuf) {
    let out = b.repeat(times);
    (holds("multiproc-task"), serde_bytes::ByteBuf::from(out))
}

/// Which segments this worker holds after its tasks.
fn leftovers(_: u32) -> (bool, bool) {
    (holds("multiproc-task"), holds("multiproc-result"))
}

fn large_arguments_and_results_travel_as_shared_memory(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .shared_memory_above(64 << 10)
        .build()
        .unwrap();
    let big = serde_bytes::ByteBuf::from((0..1_000_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    let small = serde_bytes::ByteBuf::from(vec![3u8; 100]);
    // Large and small items mixed in chunks; results large and small.
    let items: Vec<_> = (0..24)
        .map(|i| match i % 3 {
            0 => (big.clone(), 1),
            1 => (small.clone(), 2),
            _ => (small.clone(), 5000),
        })
        .collect();
    let out = pool.chunksize(4).map(stretch, items.clone()).unwrap();
    for (i, ((b, times), (mapped, got))) in items.iter().zip(&out).enumerate() {
        assert_eq!(got.len(), b.len() * times, "item {i}");
        assert_eq!(&got[..b.len()], &b[..], "item {i}");
        assert_eq!(
            *mapped,
            b.len() > 64 << 10,
            "item {i}: arguments in shared memory"
        );
    }
    // Every form of call takes the same path.
    let r = pool
        .apply_async(stretch, (big.clone(), 2))
        .unwrap()
        .get()
        .unwrap();
    assert!(r.0 && r.1.len() == 2_000_000);
    let lazy: Vec<_> = pool
        .imap_unordered(stretch, vec![(big.clone(), 1); 6])
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(lazy.iter().all(|(m, b)| *m && b[..] == big[..]));
    // Many large items at once (more than the process keeps segments
    // for: the rest take the socket), all answered.
    let many = pool
        .map_async(
            stretch,
            vec![(serde_bytes::ByteBuf::from(vec![9u8; 100_000]), 1); 300],
        )
        .unwrap()
        .get()
        .unwrap();
    assert!(many.iter().all(|(_, b)| b.len() == 100_000 && b[0] == 9));
    // Nothing is left on either side once the items are answered.
    assert!(!holds("multiproc-task") && !holds("multiproc-result"));
    for (task, result) in pool.chunksize(1).map(leftovers, 0..10).unwrap() {
        assert!(!task && !result, "a worker kept a segment");
    }
    pool.close();
    pool.join().unwrap();
    // Turned off: everything takes the socket.
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .shared_memory_above(usize::MAX)
        .build()
        .unwrap();
    let (mapped, got) = pool.apply(stretch, (big.clone(), 3)).unwrap();
    assert!(!mapped);
    assert_eq!(got.len(), 3_000_000);
    pool.close();
    pool.join().unwrap();
}

/// Dies the first time it runs (a marker file says whether it did).
fn die_once((b, marker): (serde_bytes::ByteBuf, String)) -> usize {
    if std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
        .is_ok()
    {
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)
            .unwrap();
    }
    b.len()
}

fn a_large_item_survives_its_workers_death(method: StartMethod) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .shared_memory_above(64 << 10)
        .retries(1)
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("multiproc-shared-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("died").to_string_lossy().into_owned();
    let big = serde_bytes::ByteBuf::from(vec![1u8; 300_000]);
    // Sent again after the death: the pool kept the segment for it.
    assert_eq!(pool.apply(die_once, (big, marker)).unwrap(), 300_000);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!holds("multiproc-task"));
    for (task, result) in pool.chunksize(1).map(leftovers, 0..10).unwrap() {
        assert!(!task && !result, "a worker kept a segment");
    }
    pool.close();
    pool.join().unwrap();
}

/// Sends messages of these sizes (byte `i` is `i as u8`), then closes.
fn send_sizes(conn: multiproc::connection::Connection<()>) {
    // Bodies over 2 MiB on the socket (the ring takes up to 64 MiB).
    multiproc::connection::__set_inline_max(2 << 20);
    for n in [10usize, 100_000, 3 << 20, 0, 64] {
        let msg: Vec<u8> = (0..n).map(|i| i as u8).collect();
        conn.send_bytes(&msg).unwrap();
    }
}

fn borrowed_receives_lend_the_bytes(method: StartMethod) {
    let (here, there) = multiproc::connection::pipe::<()>().unwrap();
    let child = multiproc::get_context(method)
        .process(send_sizes, there)
        .start()
        .unwrap();
    let check = |bytes: &[u8]| {
        assert!(bytes.iter().enumerate().all(|(i, &b)| b == i as u8));
        bytes.len()
    };
    assert_eq!(here.recv_bytes_with(check).unwrap(), 10);
    assert_eq!(here.recv_bytes_with(check).unwrap(), 100_000);
    // Over the sender's 2 MiB: the socket's message, lent as well.
    assert_eq!(here.recv_bytes_with(check).unwrap(), 3 << 20);
    // `f` may use the connection: no lock is held while it runs.
    let (outer, inner) = here
        .recv_bytes_with(|outer| (outer.len(), here.recv_bytes().unwrap().len()))
        .unwrap();
    assert_eq!((outer, inner), (0, 64));
    child.join().unwrap();
    // The other end is gone: an error, and `f` is not called.
    let err = here.recv_bytes_with(|_| panic!("called")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Eof, "{err}");
}
