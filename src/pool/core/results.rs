//! Results from a worker: RESULTS frames (a batch of encoded results) and
//! RESULTS_FDS frames (one result that holds descriptors, which came first
//! on the worker's descriptor socket, or, flagged SHM, one large result in
//! a sealed segment), handed to their job's sink.

use std::os::fd::{AsFd, OwnedFd};

use super::{Core, Worker};
use crate::pool::frame;
use crate::sys;

/// Where the results' bytes are.
enum Bytes {
    /// In the worker's read buffer.
    InBuf(std::ops::Range<usize>),
    /// In a sealed segment mapped here (unmapped once decoded), and their
    /// length.
    Mapped((sys::shm::SealedMapping, usize)),
}

impl Core {
    /// A RESULTS frame: the next `n` items of the front chunk succeeded.
    /// False if the worker answered more than it was given.
    #[inline]
    pub(super) fn handle_results(&mut self, w: &mut Worker, body: std::ops::Range<usize>) -> bool {
        let Some((n, _)) = frame::results_body(w.inbuf.slice(body.clone())) else {
            return false;
        };
        self.deliver(w, n, Bytes::InBuf(body.start + 4..body.end), None)
    }

    /// A RESULTS_FDS frame: the next item succeeded with a result that
    /// holds descriptors, which came first on the descriptor socket (one
    /// message; whatever arrived is given to the decoder, which fails the
    /// item if it finds fewer than it needs).
    #[cold]
    pub(super) fn handle_results_fds(
        &mut self,
        w: &mut Worker,
        body: std::ops::Range<usize>,
    ) -> bool {
        let Some((n, rest)) = frame::results_fds_body(w.inbuf.slice(body.clone())) else {
            return false;
        };
        let mut fds = Vec::new();
        let mut byte = [0u8; 1];
        let _ = sys::socket::recv_with(w.fds_sock.as_fd(), &mut byte, &mut fds, false);
        if n & frame::SHM == 0 {
            return self.deliver(w, 1, Bytes::InBuf(body.start + 4..body.end), Some(fds));
        }
        // A large result: its bytes are the one segment's. A segment that
        // is missing, unsealed or short leaves the item with no bytes,
        // which fails its decoding with the reason.
        match frame::map_shm(&fds, rest) {
            Ok(mapped) => self.deliver(w, 1, Bytes::Mapped(mapped), None),
            Err(why) => {
                crate::codec::explain_next_failure(format!("the result: {why}"));
                let ok = self.deliver(w, 1, Bytes::InBuf(body.end..body.end), None);
                // Not left for an unrelated failure if nothing decoded.
                crate::codec::forget_refusal();
                ok
            }
        }
    }

    /// The next `n` items of `w`'s front chunk returned these bytes (and,
    /// for one result that holds them, these descriptors).
    fn deliver(&mut self, w: &mut Worker, n: u32, bytes: Bytes, fds: Option<Vec<OwnedFd>>) -> bool {
        let bytes = match &bytes {
            Bytes::InBuf(range) => w.inbuf.slice(range.clone()),
            Bytes::Mapped((map, len)) => &map.bytes()[..*len],
        };
        let Some(chunk) = w.sent.front() else {
            return false;
        };
        if n == 0 || n > chunk.count - w.front_answered {
            return false;
        }
        let id = chunk.job;
        let first = chunk.first + w.front_answered as u64;
        let finished = self.jobs.get_mut(&id).is_some_and(|job| {
            job.outstanding -= n as u64;
            match fds {
                None => job.sink.ok_batch(first, n, bytes),
                Some(fds) => {
                    crate::codec::with_incoming(fds, || job.sink.ok_batch(first, n, bytes))
                }
            }
            job.outstanding == 0 && job.sealed
        });
        if finished {
            self.maybe_complete(id);
        }
        self.counters.done += n as u64;
        self.answered(w, n);
        true
    }
}
