//! The pool's frames (`crate::pool::frame` has their bodies): a 5-byte
//! header — body length (u32, little-endian) and a kind byte — followed by
//! the body. Descriptors never ride on this socket (the pool sends them on
//! a socket of their own), so the format claims none.

use super::buffer::{Format, FrameError, Head, RecvBuf};

/// Length (u32) and kind (u8).
pub(crate) const HEADER: usize = 5;

/// The most a read is offered once reads fill what they are offered:
/// about what a socket buffers, so that a run of frames is read, handled
/// and answered in one batch.
const ROOM: usize = 256 << 10;

/// How much storage a buffer keeps once empty: frames up to the default
/// shared-memory threshold (4 MiB) and beyond arrive without growing,
/// zeroing and freeing the same storage for each.
const KEEP: usize = 8 << 20;

/// The receive buffer of either side (a worker's, the pool's for each
/// worker). It accepts every header (the format announces at most
/// 4 GiB), so its frames are never an error.
pub(crate) fn buffer() -> RecvBuf<Pool> {
    RecvBuf::with_sizes(u32::MAX as usize, ROOM, KEEP)
}

/// The pool's format, for [`super::RecvBuf`]: the meta is the kind byte
/// (what each kind means is the reader's business).
pub(crate) struct Pool;

impl Format for Pool {
    type Meta = u8;
    const MAX_HEADER: usize = HEADER;

    #[inline]
    fn decode(b: &[u8]) -> Result<Option<Head<u8>>, FrameError> {
        let Some(&[a, b1, c, d, kind]) = b.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        Ok(Some(Head {
            header_len: HEADER,
            len: u32::from_le_bytes([a, b1, c, d]).into(),
            meta: kind,
        }))
    }
}

/// Appends a frame header for `kind`; returns where its length goes.
pub(crate) fn begin_frame(buf: &mut Vec<u8>, kind: u8) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0, kind]);
    at
}

/// Writes the length of the frame that began at `at` (from
/// [`begin_frame`] on this buffer).
pub(crate) fn end_frame(buf: &mut [u8], at: usize) {
    let len = buf.len().saturating_sub(at + HEADER) as u32;
    if let Some(field) = buf.get_mut(at..at + 4) {
        field.copy_from_slice(&len.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_complete_only_when_all_of_it_is_there() {
        let mut stream = Vec::new();
        let at = begin_frame(&mut stream, 7);
        stream.extend_from_slice(b"body");
        end_frame(&mut stream, at);
        let mut b = buffer();
        for &byte in &stream[..stream.len() - 1] {
            b.feed(&[byte]);
            assert!(b.next_frame().unwrap().is_none());
        }
        b.feed(&stream[stream.len() - 1..]);
        let (kind, body) = b.next_frame().unwrap().unwrap();
        assert_eq!((kind, b.slice(body)), (7, &b"body"[..]));
        assert!(b.next_frame().unwrap().is_none());
        // A header announcing 4 GiB is an incomplete frame, not an
        // allocation.
        let mut b = buffer();
        b.feed(&[0xff, 0xff, 0xff, 0xff, 1, 2]);
        assert!(b.next_frame().unwrap().is_none());
        assert!(b.storage() <= crate::frame::buffer::FIRST_ROOM);
    }
}
