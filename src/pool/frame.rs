//! The frames a pool and its workers exchange over their socket, and the
//! decoders of what a worker sends (every one of them is also run by
//! `crate::fuzzing::decode_everything`).
//!
//! A frame is a 5-byte header — body length (u32, little-endian) and a kind
//! byte, cut by `crate::frame::pool` — and the body. From the pool:
//!
//! | kind | body |
//! |------|------|
//! | FUNC | function id (u32), a postcard `TaskRef`, then the postcard values it was given with `partial` (nothing for a plain function): "id N is this function" |
//! | FORGET | function id (u32): "id N is gone" (its job ended; the id may be given again) |
//! | TASK | function id (u32), item count (u32; its top bit, `TIMED`, asks the worker to time each item), then the items' postcard arguments back to back (postcard values delimit themselves) |
//! | TASK_FDS | function id (u32), item count (u32, always 1, with the flags), descriptor count (u32, at most `sys::socket::MAX_FDS`), the item's postcard arguments; the descriptors came first on the worker's descriptor socket. With the `SHM` flag in the descriptor count: one descriptor, a sealed segment holding the arguments' bytes, whose length (u64) follows |
//! | STOP | empty: leave once everything before it is answered |
//!
//! A chunk whose items carry descriptors is sent as several frames (a
//! TASK_FDS for each such item, TASK frames between them); all but its
//! last have the `MORE` flag in their count, so that the worker counts the
//! chunk once (`maxtasksperchild`).
//!
//! From the worker:
//!
//! | kind | body |
//! |------|------|
//! | RESULTS | a count (u32), then that many postcard results back to back: the next items of the current chunk, never past its end |
//! | FAILED | the next item failed: a tag (PANIC, ERROR) and a postcard `PanicReport` or a UTF-8 message |
//! | INIT_FAILED | UTF-8 message: the initializer panicked; the worker leaves |
//! | RETIRE | empty: the worker passed its memory cap and leaves without starting the tasks it still holds |
//! | RESULTS_FDS | a descriptor count (u32, at most `sys::socket::MAX_FDS`), then one postcard result that holds that many descriptors (a `SharedSlice`, a `Pipe` end): the next item of the current chunk; the descriptors came first on the worker's descriptor socket. With the `SHM` flag in the count: one descriptor, a sealed segment holding the result's bytes, whose length (u64) follows |
//!
//! Parsing never reads past what has arrived and never allocates by a
//! length found in the bytes: a header that announces more than is there
//! is an incomplete frame (the one receive buffer, `crate::frame::RecvBuf`,
//! grows with what arrives), a body too short for its fields is `None`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::{Error, ErrorKind, PanicReport, Result};

// The header (length and kind) is the framing layer's.
pub(crate) use crate::frame::pool::{HEADER, begin_frame, end_frame};

// Kinds, pool to worker.
pub(crate) const FUNC: u8 = 1;
pub(crate) const TASK: u8 = 2;
/// In a TASK's item count: time every item of this chunk (the call has
/// its own time limit), whatever the pool's setting. Counts stay below it
/// ([`MAX_CHUNK_ITEMS`]).
pub(crate) const TIMED: u32 = 1 << 31;
/// In a TASK or TASK_FDS item count: more frames of this chunk follow.
pub(crate) const MORE: u32 = 1 << 30;
/// The most items in one chunk (below the flags).
pub(crate) const MAX_CHUNK_ITEMS: usize = (1 << 30) - 1;
pub(crate) const STOP: u8 = 3;
pub(crate) const TASK_FDS: u8 = 4;
pub(crate) const FORGET: u8 = 5;

// Kinds, worker to pool.
pub(crate) const RESULTS: u8 = 1;
pub(crate) const INIT_FAILED: u8 = 2;
pub(crate) const RETIRE: u8 = 3;
pub(crate) const FAILED: u8 = 4;
pub(crate) const RESULTS_FDS: u8 = 5;

/// In a TASK_FDS or RESULTS_FDS descriptor count: the item's arguments
/// (the result) are the contents of the one descriptor, a sealed
/// shared-memory segment, and the frame's bytes are their length (u64):
/// how large values travel (`PoolBuilder::shared_memory_above`).
pub(crate) const SHM: u32 = 1 << 31;

/// The length (u64) in the bytes of a frame flagged [`SHM`].
pub(crate) fn shm_len(bytes: &[u8]) -> Option<usize> {
    let len = u64::from_le_bytes(bytes.try_into().ok()?);
    usize::try_from(len).ok()
}

/// Maps the sealed segment of a frame flagged [`SHM`] (its one descriptor,
/// and the length in its bytes), on either side; the mapping and the
/// length of the value's bytes in it. The error says what was wrong.
pub(crate) fn map_shm(
    fds: &[std::os::fd::OwnedFd],
    bytes: &[u8],
) -> std::result::Result<(crate::sys::shm::SealedMapping, usize), String> {
    use std::os::fd::AsFd;
    let (Some(len), [fd]) = (shm_len(bytes), fds) else {
        return Err("it came without its one shared-memory segment and length".into());
    };
    crate::sys::shm::SealedMapping::new(fd.as_fd(), len.max(1), true)
        .map(|map| (map, len))
        .map_err(|e| format!("its shared memory ({len} bytes) could not be mapped: {e}"))
}

// The first byte of a FAILED body.
pub(crate) const TAG_PANIC: u8 = 1;
pub(crate) const TAG_ERROR: u8 = 2;

/// The little-endian u32 at `at`, if the buffer holds it.
pub(crate) fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// A RESULTS body: the count and the values' bytes.
pub(crate) fn results_body(body: &[u8]) -> Option<(u32, &[u8])> {
    Some((read_u32(body, 0)?, body.get(4..)?))
}

/// A RESULTS_FDS body: the descriptor count and the result's bytes.
pub(crate) fn results_fds_body(body: &[u8]) -> Option<(u32, &[u8])> {
    Some((read_u32(body, 0)?, body.get(4..)?))
}

/// A TASK body: function id, item count, the items' bytes.
pub(crate) fn task_body(body: &[u8]) -> Option<(u32, u32, &[u8])> {
    Some((read_u32(body, 0)?, read_u32(body, 4)?, body.get(8..)?))
}

/// A TASK_FDS body: function id, item count (with flags), descriptor
/// count, the item's bytes.
pub(crate) fn task_fds_body(body: &[u8]) -> Option<(u32, u32, u32, &[u8])> {
    Some((
        read_u32(body, 0)?,
        read_u32(body, 4)?,
        read_u32(body, 8)?,
        body.get(12..)?,
    ))
}

/// A FUNC body: function id and the postcard `TaskRef`'s bytes (with the
/// captured values' after them).
pub(crate) fn func_body(body: &[u8]) -> Option<(u32, &[u8])> {
    Some((read_u32(body, 0)?, body.get(4..)?))
}

/// A FORGET body: the function id.
pub(crate) fn forget_body(body: &[u8]) -> Option<u32> {
    read_u32(body, 0)
}

/// What a FAILED body says.
pub(crate) enum Failure {
    /// The task panicked.
    Panic(PanicReport),
    /// The item could not run: its arguments or result did not travel, or
    /// the function was not found.
    Error(ErrorKind, String),
}

/// Decodes a FAILED body. Never fails: unreadable bytes are reported as
/// such.
pub(crate) fn failed_body(body: &[u8]) -> Failure {
    let tag = body.first().copied().unwrap_or(TAG_ERROR);
    let bytes = body.get(1..).unwrap_or_default();
    if tag == TAG_PANIC {
        return Failure::Panic(postcard::from_bytes(bytes).unwrap_or_else(|_| PanicReport {
            message: "(unreadable panic report)".into(),
            location: None,
            backtrace: None,
        }));
    }
    let message = String::from_utf8_lossy(bytes).into_owned();
    let kind = if message.contains("encode") {
        ErrorKind::Encode
    } else if message.contains("decode") {
        ErrorKind::Decode
    } else {
        ErrorKind::Bootstrap
    };
    Failure::Error(kind, message)
}

/// Decodes `count` values of type `R` lying back to back in `bytes`, for
/// items `first..`, handing each to `put`. A value that cannot be decoded
/// fails, and so do the ones after it (their bytes cannot be found).
/// `count` must be bounded by the caller (by the items it sent).
pub(crate) fn decode_batch<R: DeserializeOwned>(
    first: u64,
    count: u32,
    mut bytes: &[u8],
    mut put: impl FnMut(u64, Result<R>),
) {
    for i in 0..count as u64 {
        match postcard::take_from_bytes::<R>(bytes) {
            Ok((v, rest)) => {
                bytes = rest;
                put(first.saturating_add(i), Ok(v));
            }
            Err(e) => {
                let e = codec::why(&e);
                for j in i..count as u64 {
                    let index = first.saturating_add(j);
                    put(
                        index,
                        Err(Error::new(
                            ErrorKind::Decode,
                            format!(
                                "the result of task {index} could not be decoded as {}: {e}",
                                std::any::type_name::<R>()
                            ),
                        )),
                    );
                }
                return;
            }
        }
    }
}

/// Appends `value`'s postcard encoding to `out` (on error, `out` may hold
/// part of it: the caller truncates).
#[inline(always)]
pub(crate) fn append<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> postcard::Result<()> {
    value.serialize(&mut postcard::Serializer {
        output: codec::Append(out),
    })
}

/// Runs every decoder of this file over `data` (for `crate::fuzzing`).
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn fuzz(data: &[u8]) {
    let mut frames = crate::frame::RecvBuf::<crate::frame::pool::Pool>::new(1 << 20);
    frames.feed(data);
    while let Ok(Some((kind, body))) = frames.next_frame() {
        let body = frames.slice(body);
        let _ = task_body(body);
        let _ = task_fds_body(body);
        let _ = func_body(body);
        let _ = forget_body(body);
        let _ = failed_body(body);
        if kind == RESULTS
            && let Some((count, bytes)) = results_body(body)
        {
            // The pool bounds the count by the items it sent.
            let count = count.min(64);
            decode_batch::<(u64, String, Option<i32>)>(0, count, bytes, |_, _| {});
            decode_batch::<Vec<u8>>(u64::MAX - 1, count, bytes, |_, _| {});
        }
        if kind == RESULTS_FDS
            && let Some((_, bytes)) = results_fds_body(body)
        {
            // With no descriptor arrived, as from a worker that sent none:
            // a result that claims one is that item's error.
            codec::with_incoming(Vec::new(), || {
                decode_batch::<crate::shared::SharedSlice<u64>>(0, 1, bytes, |_, _| {});
                decode_batch::<(crate::Fd, Vec<u8>)>(0, 1, bytes, |_, _| {});
            });
        }
    }
    let _ = results_body(data);
    let _ = failed_body(data);
    let _ = shm_len(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_results_frame_holds_its_values() {
        let mut buf = Vec::new();
        let at = begin_frame(&mut buf, RESULTS);
        buf.extend_from_slice(&2u32.to_le_bytes());
        buf.extend_from_slice(&[7, 8]);
        end_frame(&mut buf, at);
        let mut frames = crate::frame::RecvBuf::<crate::frame::pool::Pool>::new(1 << 20);
        frames.feed(&buf);
        let (kind, body) = frames.next_frame().unwrap().unwrap();
        assert_eq!(kind, RESULTS);
        let (count, values) = results_body(frames.slice(body)).unwrap();
        let mut got = Vec::new();
        decode_batch::<u8>(10, count, values, |i, v| got.push((i, v.unwrap())));
        assert_eq!(got, [(10, 7), (11, 8)]);
        assert!(task_body(&[1, 0, 0, 0, 2, 0, 0]).is_none());
        assert!(task_fds_body(&[1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]).is_none());
        assert_eq!(
            task_fds_body(&[1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 9]),
            Some((1, 1, 2, &[9u8][..]))
        );
    }

    #[test]
    fn a_failure_says_what_failed() {
        let report = PanicReport {
            message: "boom".into(),
            location: Some("here".into()),
            backtrace: None,
        };
        let mut body = vec![TAG_PANIC];
        body.extend(postcard::to_allocvec(&report).unwrap());
        assert!(matches!(failed_body(&body), Failure::Panic(r) if r.message == "boom"));
        let mut body = vec![TAG_ERROR];
        body.extend_from_slice(b"could not decode the task's arguments");
        assert!(matches!(
            failed_body(&body),
            Failure::Error(ErrorKind::Decode, _)
        ));
        assert!(matches!(
            failed_body(&[TAG_PANIC, 0xff]),
            Failure::Panic(r) if r.message.contains("unreadable")
        ));
        assert!(matches!(failed_body(&[]), Failure::Error(..)));
    }
}
