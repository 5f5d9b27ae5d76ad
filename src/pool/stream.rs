//! The lazy engine behind `map`, `imap` and `imap_unordered` ([`Stream`]):
//! it pulls input while fewer than a bound are in flight, and takes the
//! results from its [`StreamSink`], which the core fills through the
//! [`Sink`] trait ([`SharedSink`]); [`IMap`] is its iterator.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
#[cfg(feature = "async")]
use std::task::Poll;
use std::task::Waker;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

use super::core::{Chunk, PerCall, PoolState, Sink};
use super::frame::decode_batch;
use super::progress::Progress;
use super::shared::{Shared, describe};
use crate::task::Task;

#[derive(Clone, Copy, Debug)]
pub(super) enum Chunking {
    Fixed(usize),
    Adaptive,
}

/// How long an adaptive chunk should take to run.
const CHUNK_NS: f64 = 500_000.0;

/// The lazy engine behind `map`, `imap` and `imap_unordered`.
pub(super) struct Stream<'p, I: Iterator, R> {
    shared: &'p Arc<Shared>,
    /// The pool's worker count.
    processes: usize,
    job: u64,
    /// Where the core delivers this stream's results; the core holds the
    /// other handle (a [`SharedSink`]). Locked only under the core's lock.
    sink: Arc<Mutex<StreamSink<R>>>,
    func: u32,
    input: I,
    input_done: bool,
    finished: bool,
    submitted: u64,
    yielded: u64,
    chunking: Chunking,
    /// The caller's bound on items read ahead ([`Pool::window`](crate::Pool::window)).
    window: Option<u64>,
    local: VecDeque<Result<R>>,
    progress: Progress,
}

impl<'p, I, R> Stream<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    pub(super) fn new<F, M>(
        f: &F,
        shared: &'p Arc<Shared>,
        call: &str,
        input: I,
        ordered: bool,
        chunking: Chunking,
        per_call: PerCall,
    ) -> Result<Self>
    where
        F: Task<M, Output = R>,
    {
        let task = f.__pool_task()?;
        let (lo, hi) = input.size_hint();
        let total = (hi == Some(lo)).then_some(lo as u64);
        let mut core = shared.lock();
        if let Some(e) = core.refuse() {
            return Err(e);
        }
        let processes = core.config.processes;
        let sink = Arc::new(Mutex::new(StreamSink::<R>::new(ordered)));
        let job = core.new_job(
            Box::new(SharedSink(sink.clone())),
            describe::<F>(call),
            per_call,
        );
        let func = core.job_func(job, task.task, task.captured);
        let progress = Progress::new(core.config.progress, total, core.config.on_progress.clone());
        drop(core);
        Ok(Self {
            shared,
            processes,
            job,
            sink,
            func,
            input,
            input_done: false,
            finished: false,
            submitted: 0,
            yielded: 0,
            chunking,
            window: None,
            local: VecDeque::new(),
            progress,
        })
    }

    /// Sends more input while fewer than the bound are in flight.
    fn feed(&mut self) -> Result<()> {
        if self.input_done {
            return Ok(());
        }
        let workers = self.processes as u64;
        let (item_ns, shm_above) = {
            let core = self.shared.lock();
            (core.item_ns.max(1.0), core.config.shm_above)
        };
        let cs = match self.chunking {
            Chunking::Fixed(n) => n as u64,
            Chunking::Adaptive => (CHUNK_NS / item_ns).clamp(1.0, 16384.0) as u64,
        };
        // In flight: enough to keep every worker busy for a few
        // milliseconds, and several chunks each; never unbounded.
        let quick = ((5e6 / item_ns) as u64 * workers).min(8192);
        let bound = self
            .window
            .unwrap_or_else(|| (cs * workers * 8).max(quick).max(64));
        let mut chunks = Vec::new();
        let mut failed = Vec::new();
        let mut batched = 0u64;
        while self.submitted - self.yielded < bound {
            let mut chunk = Chunk::new(self.job, self.func, self.submitted, shm_above);
            while (chunk.count as u64) < cs && self.submitted - self.yielded < bound {
                let Some(args) = self.input.next() else {
                    self.input_done = true;
                    break;
                };
                let index = self.submitted;
                self.submitted += 1;
                if let Err(e) = chunk.push(&args) {
                    chunks.push(std::mem::replace(
                        &mut chunk,
                        Chunk::new(self.job, self.func, index + 1, shm_above),
                    ));
                    failed.push((index, e));
                }
            }
            batched += chunk.count as u64;
            chunks.push(chunk);
            if self.input_done {
                break;
            }
            // Big batches go out at once, so that the workers start while
            // the rest of the input is being encoded.
            if batched >= 4096 {
                self.submit(&mut chunks, &mut failed, true)?;
                batched = 0;
            }
        }
        if chunks.iter().all(|c| c.count == 0) && failed.is_empty() && !self.input_done {
            return Ok(());
        }
        self.submit(&mut chunks, &mut failed, false)
    }

    /// Sets the caller's read-ahead ([`Pool::window`](crate::Pool::window)).
    pub(super) fn with_window(mut self, window: Option<usize>) -> Self {
        self.window = window.map(|n| n as u64);
        self
    }

    /// Reads the window's worth of input and hands it to the workers now
    /// (an `imap` with a window, at its call): the background thread
    /// goes on with it.
    pub(super) fn start(&mut self) -> Result<()> {
        self.feed()?;
        self.shared.poke();
        Ok(())
    }

    /// Hands chunks (and items that could not be encoded) to the pool;
    /// `send` also writes them to the workers now.
    fn submit(
        &mut self,
        chunks: &mut Vec<Chunk>,
        failed: &mut Vec<(u64, Error)>,
        send: bool,
    ) -> Result<()> {
        let mut core = self.shared.lock();
        if let Some(e) = core
            .refuse()
            .filter(|_| core.state == PoolState::Terminated)
        {
            return Err(e);
        }
        for c in chunks.drain(..) {
            core.submit(c);
        }
        for (index, e) in failed.drain(..) {
            core.fail_item(self.job, index, e);
        }
        if self.input_done {
            core.seal(self.job);
        }
        if send {
            core.kick();
        }
        Ok(())
    }

    /// Ends the progress bar (its last line the pool's insights, when on)
    /// and calls the progress callback a last time.
    fn finish_progress(&mut self) {
        let shared = self.shared;
        self.progress.finish(|| {
            let core = shared.lock();
            core.config.insights.then(|| core.insights().summary())
        });
    }

    fn next_result(&mut self) -> Option<Result<R>> {
        self.next_result_until(None)
    }

    /// The next result, waiting until `deadline` (`None`: no limit); an
    /// error of kind `Timeout` if none came by then (the stream goes on).
    fn next_result_until(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.local.pop_front() {
                self.yielded += 1;
                if self.local.is_empty() || self.yielded.is_multiple_of(1024) {
                    self.progress.update(self.yielded);
                }
                return Some(r);
            }
            if self.finished || (self.input_done && self.yielded == self.submitted) {
                self.finish_progress();
                self.finished = true;
                return None;
            }
            if let Err(e) = self.feed() {
                self.finished = true;
                return Some(Err(e));
            }
            if self.input_done && self.yielded == self.submitted {
                continue;
            }
            let sink = &self.sink;
            let local = &mut self.local;
            let got = self.shared.drive(deadline, |_| {
                (lock_sink(sink).drain(local) > 0).then_some(())
            });
            match got {
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
                Ok(None) if self.local.is_empty() => {
                    return Some(Err(Error::new(
                        ErrorKind::Timeout,
                        "timed out waiting for the next result (the tasks go on)",
                    )));
                }
                Ok(_) => {}
            }
        }
    }
}

#[cfg(feature = "async")]
impl<I, R> Stream<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    /// The next result without waiting: the background thread does the
    /// pool's work and wakes `cx` when results reach the sink.
    fn poll_result(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Option<Result<R>>> {
        loop {
            if let Some(r) = self.local.pop_front() {
                self.yielded += 1;
                if self.local.is_empty() || self.yielded.is_multiple_of(1024) {
                    self.progress.update(self.yielded);
                }
                return Poll::Ready(Some(r));
            }
            if self.finished || (self.input_done && self.yielded == self.submitted) {
                self.finish_progress();
                self.finished = true;
                return Poll::Ready(None);
            }
            if let Err(e) = self.shared.ensure_background() {
                self.finished = true;
                return Poll::Ready(Some(Err(e)));
            }
            let before = self.submitted;
            if let Err(e) = self.feed() {
                self.finished = true;
                return Poll::Ready(Some(Err(e)));
            }
            if self.input_done && self.yielded == self.submitted {
                continue;
            }
            if self.submitted != before {
                // Hand the new chunks to the workers now; the background
                // thread sends what does not fit.
                self.shared.poke();
            }
            // Register before looking, under the sink's lock: a delivery
            // after the look finds the waker.
            let mut sink = lock_sink(&self.sink);
            if sink.drain(&mut self.local) > 0 {
                continue;
            }
            match &mut sink.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
    }
}

impl<I, R> Stream<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    /// `map`'s loop: every result in order into `out`, straight from the
    /// sink; stops at the first error.
    pub(super) fn collect_into(&mut self, out: &mut Vec<R>) -> Result<()> {
        loop {
            while let Some(r) = self.local.pop_front() {
                self.yielded += 1;
                out.push(r?);
            }
            if self.input_done && self.yielded == self.submitted {
                self.finish_progress();
                return Ok(());
            }
            self.feed()?;
            if self.input_done && self.yielded == self.submitted {
                continue;
            }
            let sink = &self.sink;
            let mut failure = None;
            let taken = self.shared.drive(None, |_| {
                let n = lock_sink(sink).drain_ok(out, &mut failure);
                (n > 0 || failure.is_some()).then_some(n)
            })?;
            self.yielded += taken.unwrap_or(0) as u64;
            self.progress.update(self.yielded);
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }
}

impl<I: Iterator, R> Drop for Stream<'_, I, R> {
    /// Cancels what was not delivered: chunks not sent are dropped, and a
    /// worker running (or about to run) one of its items is killed and
    /// replaced, as by [`AsyncResult::cancel`](crate::AsyncResult::cancel).
    /// Nothing happens for a stream that delivered everything.
    fn drop(&mut self) {
        let mut core = self.shared.lock();
        if self.finished || (self.input_done && self.yielded == self.submitted) {
            core.cancel(self.job);
        } else {
            core.cancel_job(
                self.job,
                Error::new(ErrorKind::Cancelled, "its imap was dropped"),
            );
        }
    }
}

/// Where a stream's results wait for the caller.
///
/// Ordered: successes are kept in runs of consecutive items (a worker's
/// batch is one run, and extends the run it continues), keyed by their
/// first index, so that results move in bulk and several workers' runs can
/// wait for an earlier one; failures are kept by index. Results are handed
/// out from `base` on, in order.
struct StreamSink<R> {
    ordered: bool,
    base: u64,
    runs: BTreeMap<u64, Vec<R>>,
    errors: BTreeMap<u64, Error>,
    unordered: VecDeque<Result<R>>,
    /// The task polling the stream as an async `Stream`, woken when
    /// results arrive.
    waker: Option<Waker>,
}

impl<R> StreamSink<R> {
    fn new(ordered: bool) -> Self {
        Self {
            ordered,
            base: 0,
            runs: BTreeMap::new(),
            errors: BTreeMap::new(),
            unordered: VecDeque::new(),
            waker: None,
        }
    }

    /// The run that item `first` continues, or a new one.
    fn run_at(&mut self, first: u64) -> &mut Vec<R> {
        let start = match self.runs.range(..first).next_back() {
            Some((&start, run)) if start + run.len() as u64 == first => start,
            _ => first,
        };
        self.runs.entry(start).or_default()
    }

    fn put(&mut self, index: u64, value: Result<R>) {
        if !self.ordered {
            self.unordered.push_back(value);
            return;
        }
        if index < self.base {
            return;
        }
        match value {
            Ok(v) => self.run_at(index).push(v),
            Err(e) => {
                self.errors.insert(index, e);
            }
        }
    }

    /// Moves the results ready in order into `out`, stopping at the first
    /// error (put in `failure`). Ordered sinks only.
    fn drain_ok(&mut self, out: &mut Vec<R>, failure: &mut Option<Error>) -> usize {
        let mut n = 0;
        loop {
            if let Some(mut run) = self.runs.remove(&self.base) {
                self.base += run.len() as u64;
                n += run.len();
                out.append(&mut run);
            } else if let Some(e) = self.errors.remove(&self.base) {
                self.base += 1;
                *failure = Some(e);
                return n;
            } else {
                return n;
            }
        }
    }

    fn drain(&mut self, out: &mut VecDeque<Result<R>>) -> usize {
        if !self.ordered {
            let n = self.unordered.len();
            out.extend(self.unordered.drain(..));
            return n;
        }
        let mut n = 0;
        loop {
            if let Some(run) = self.runs.remove(&self.base) {
                self.base += run.len() as u64;
                n += run.len();
                out.extend(run.into_iter().map(Ok));
            } else if let Some(e) = self.errors.remove(&self.base) {
                self.base += 1;
                n += 1;
                out.push_back(Err(e));
            } else {
                return n;
            }
        }
    }
}

impl<R: DeserializeOwned> StreamSink<R> {
    fn ok_batch(&mut self, first: u64, count: u32, bytes: &[u8]) {
        if !self.ordered || first < self.base {
            decode_batch(first, count, bytes, |i, v| self.put(i, v));
            return;
        }
        // Decode straight into the run these items continue, with one
        // deserializer for the whole batch.
        let run = self.run_at(first);
        run.reserve(count as usize);
        let mut de = postcard::Deserializer::from_bytes(bytes);
        let mut failed_at = None;
        for i in 0..count {
            match R::deserialize(&mut de) {
                Ok(v) => run.push(v),
                Err(_) => {
                    failed_at = Some(i);
                    break;
                }
            }
        }
        if let Some(i) = failed_at {
            // Find where item i starts again, and report it and the rest.
            let mut rest = bytes;
            for _ in 0..i {
                match postcard::take_from_bytes::<R>(rest) {
                    Ok((_, tail)) => rest = tail,
                    Err(_) => break,
                }
            }
            decode_batch(first + i as u64, count - i, rest, |i, v| self.put(i, v));
        }
    }

    fn err(&mut self, index: u64, error: Error) {
        self.put(index, Err(error));
    }
}

fn lock_sink<R>(sink: &Mutex<StreamSink<R>>) -> MutexGuard<'_, StreamSink<R>> {
    sink.lock().unwrap_or_else(|p| p.into_inner())
}

/// The core's handle on a stream's [`StreamSink`]: the core delivers
/// through the [`Sink`] trait, the stream drains the same sink, so the
/// core never has to hand a sink back.
struct SharedSink<R>(Arc<Mutex<StreamSink<R>>>);

impl<R: DeserializeOwned + Send + 'static> Sink for SharedSink<R> {
    fn ok_batch(&mut self, first: u64, count: u32, bytes: &[u8]) {
        let waker = {
            let mut sink = lock_sink(&self.0);
            sink.ok_batch(first, count, bytes);
            sink.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn err(&mut self, index: u64, error: Error) -> bool {
        let waker = {
            let mut sink = lock_sink(&self.0);
            sink.err(index, error);
            sink.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        false
    }
}

/// An iterator over the results of [`Pool::imap`](crate::Pool::imap) or
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered): one `Result` per
/// input item.
///
/// Dropping it before the end cancels what it has not delivered: tasks
/// not yet sent are dropped, and a worker running one of them is killed
/// and replaced (as [`AsyncResult::cancel`](crate::AsyncResult::cancel)
/// does), so a `break` out of a long `imap` frees the pool at once.
#[must_use = "an IMap sends work only while it is iterated"]
pub struct IMap<'p, I: Iterator, R> {
    pub(super) stream: Stream<'p, I, R>,
}

impl<I: Iterator, R> fmt::Debug for IMap<'_, I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMap")
            .field("sent", &self.stream.submitted)
            .field("yielded", &self.stream.yielded)
            .finish()
    }
}

impl<I, R> IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    /// The next result, waiting at most `timeout` (Python's
    /// `next(timeout)`): `None` once every result was yielded, as `next`.
    /// Any `Duration`, `Duration::MAX` included.
    ///
    /// # Errors
    ///
    /// `Some(Err(_))` of kind [`ErrorKind::Timeout`] if no result came in
    /// time: the tasks go on and the iteration can continue; otherwise
    /// the item's own failure, as from `next`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.stream
            .next_result_until(crate::time::deadline_after(timeout))
    }

    /// The next result, waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`next_timeout`](IMap::next_timeout).
    pub fn next_deadline(&mut self, deadline: Instant) -> Option<Result<R>> {
        self.stream.next_result_until(Some(deadline))
    }
}

impl<I, R> Iterator for IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.stream.next_result()
    }
}

#[cfg(feature = "async")]
impl<'p, I: Iterator, R> IMap<'p, I, R> {
    /// This `imap` as an async stream (feature `async`, any executor):
    /// `while let Some(r) = results.next().await`, with
    /// `futures::StreamExt` or any other `Stream` adapter. The pool's
    /// background thread sends the input and collects the results, and
    /// wakes the polling task. Results already taken by `next` are not
    /// seen again.
    pub fn into_stream(self) -> IMapStream<'p, I, R> {
        IMapStream {
            stream: self.stream,
        }
    }
}

/// [`IMap`] as an async stream ([`IMap::into_stream`], feature `async`):
/// one `Result` per input item, each item's failure its own, as from the
/// iterator.
///
/// Dropping it cancels what it has not delivered: tasks not yet sent are
/// dropped and a worker running one of them is killed and replaced.
#[cfg(feature = "async")]
#[must_use = "a stream sends work only while it is polled"]
pub struct IMapStream<'p, I: Iterator, R> {
    stream: Stream<'p, I, R>,
}

#[cfg(feature = "async")]
impl<I: Iterator, R> fmt::Debug for IMapStream<'_, I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMapStream")
            .field("sent", &self.stream.submitted)
            .field("yielded", &self.stream.yielded)
            .finish()
    }
}

#[cfg(feature = "async")]
impl<I, R> futures_core::Stream for IMapStream<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned + Send + 'static,
{
    type Item = Result<R>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<R>>> {
        self.get_mut().stream.poll_result(cx)
    }
}

/// Never pinned in place: polling takes no address of it.
#[cfg(feature = "async")]
impl<I: Iterator, R> Unpin for IMapStream<'_, I, R> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn runs_from_several_workers_come_out_in_order() {
        let mut s = StreamSink::<u8>::new(true);
        let mut out = Vec::new();
        let mut failure = None;
        s.ok_batch(4, 2, &[4, 5]); // a later worker's batch
        s.ok_batch(0, 2, &[0, 1]);
        s.ok_batch(2, 1, &[2]); // continues the first run
        assert_eq!(s.drain_ok(&mut out, &mut failure), 3);
        assert_eq!(out, [0, 1, 2]);
        s.err(3, Error::new(ErrorKind::Panicked, "boom"));
        s.ok_batch(6, 1, &[6]);
        assert_eq!(s.drain_ok(&mut out, &mut failure), 0);
        assert_eq!(failure.take().unwrap().kind(), ErrorKind::Panicked);
        assert_eq!(s.drain_ok(&mut out, &mut failure), 3);
        assert_eq!(out, [0, 1, 2, 4, 5, 6]);
        // Bytes that are not a u8 fail that item and the rest of the batch.
        let mut q = VecDeque::new();
        s.ok_batch(7, 2, &[]);
        assert_eq!(s.drain(&mut q), 2);
        assert!(
            q.iter()
                .all(|r| r.as_ref().unwrap_err().kind() == ErrorKind::Decode)
        );
    }

    #[test]
    fn an_ordered_sink_releases_results_in_order() {
        let mut s = StreamSink::<u8>::new(true);
        let mut out = VecDeque::new();
        s.ok_batch(1, 1, &[7]);
        assert_eq!(s.drain(&mut out), 0);
        s.err(0, Error::new(ErrorKind::Panicked, "boom"));
        assert_eq!(s.drain(&mut out), 2);
        assert!(out[0].is_err());
        assert_eq!(*out[1].as_ref().unwrap(), 7);
    }
}
