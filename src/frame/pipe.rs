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
