//! What a pipe's socket carries beside its rings (`crate::connection`'s
//! ring transport): doorbell bytes (`0`) between frames, and frames
//! `[1][seq u64][len u64][nfds u8][body]` (little-endian), numbered in the
//! rings' order, their descriptors attached to their first bytes.
//!
//! A doorbell byte reads as a frame of its own with an empty body, so the
//! one buffer skips it like any other frame.

use super::buffer::{Format, FrameError, Head};

/// On the socket between frames: a doorbell byte.
pub(crate) const DOORBELL: u8 = 0;
/// On the socket: the first byte of a frame.
pub(crate) const FRAME: u8 = 1;
/// A frame's header: kind, seq, len, descriptor count.
pub(crate) const HEADER: usize = 1 + 8 + 8 + 1;

/// What the socket holds at the front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Meta {
    /// A doorbell byte (no body).
    Doorbell,
    /// Frame `seq`, with `nfds` descriptors.
    Frame { seq: u64, nfds: u8 },
}

/// The pipe socket's format, for [`super::RecvBuf`].
pub(crate) struct PipeSocket;

/// The header of frame `seq` of `len` bytes with `nfds` descriptors.
pub(crate) fn encode_header(seq: u64, len: usize, nfds: u8) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[0] = FRAME;
    h[1..9].copy_from_slice(&seq.to_le_bytes());
    h[9..17].copy_from_slice(&(len as u64).to_le_bytes());
    h[17] = nfds;
    h
}

impl Format for PipeSocket {
    type Meta = Meta;
    const MAX_HEADER: usize = HEADER;

    fn decode(b: &[u8]) -> Result<Option<Head<Meta>>, FrameError> {
        match b.first() {
            None => Ok(None),
            Some(&DOORBELL) => Ok(Some(Head {
                header_len: 1,
                len: 0,
                meta: Meta::Doorbell,
            })),
            Some(&FRAME) => {
                let Some(h) = b.get(..HEADER) else {
                    return Ok(None);
                };
                Ok(Some(Head {
                    header_len: HEADER,
                    len: u64::from_le_bytes(h[9..17].try_into().expect("8 bytes")),
                    meta: Meta::Frame {
                        seq: u64::from_le_bytes(h[1..9].try_into().expect("8 bytes")),
                        nfds: h[17],
                    },
                }))
            }
            Some(b) => Err(FrameError::Malformed(format!(
                "a byte {b:#04x} on the pipe's socket is neither a doorbell nor a frame"
            ))),
        }
    }
}

/// Receives what `data` holds as a pipe's socket would be read, in pieces
/// of every size the first byte picks, under a few limits, skipping
/// doorbells and taking every frame with its descriptors (for
/// `crate::fuzzing`).
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn fuzz(data: &[u8]) {
    use super::RecvBuf;
    let piece = data.first().map_or(1, |&b| b as usize + 1);
    for max in [0, 16, 1 << 20, usize::MAX] {
        let mut b = RecvBuf::<PipeSocket>::new(max);
        for part in data.chunks(piece) {
            b.feed(part);
            while let Ok(Some((len, meta))) = b.ready() {
                if let Meta::Frame { nfds, .. } = meta {
                    let (fds, _) = b.take_frame_fds(nfds as usize);
                    assert!(fds.is_empty());
                }
                assert_eq!(b.take_body().len(), len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::RecvBuf;

    #[test]
    fn doorbells_frames_and_stray_bytes() {
        let mut stream = vec![DOORBELL, DOORBELL];
        stream.extend_from_slice(&encode_header(7, 3, 0));
        stream.extend_from_slice(b"abc");
        stream.push(DOORBELL);
        let mut b = RecvBuf::<PipeSocket>::new(10);
        b.feed(&stream);
        let mut got = Vec::new();
        while let Some((_, meta)) = b.ready().unwrap() {
            got.push((meta, b.take_body()));
        }
        assert_eq!(
            got,
            [
                (Meta::Doorbell, vec![]),
                (Meta::Doorbell, vec![]),
                (Meta::Frame { seq: 7, nfds: 0 }, b"abc".to_vec()),
                (Meta::Doorbell, vec![]),
            ]
        );
        // Over the limit, and a stray byte: errors, not panics.
        let mut b = RecvBuf::<PipeSocket>::new(2);
        b.feed(&encode_header(1, 3, 0));
        assert_eq!(b.ready(), Err(FrameError::TooLarge { len: 3, max: 2 }));
        let mut b = RecvBuf::<PipeSocket>::new(2);
        b.feed(&[0x55]);
        assert!(matches!(b.ready(), Err(FrameError::Malformed(_))));
        for len in [1u64 << 62, 1 << 63, u64::MAX] {
            let mut h = encode_header(1, 0, 0);
            h[9..17].copy_from_slice(&len.to_le_bytes());
            let mut b = RecvBuf::<PipeSocket>::new(1 << 20);
            b.feed(&h);
            assert!(matches!(b.ready(), Err(FrameError::TooLarge { .. })));
        }
    }
}
