//! The control wire's frames (`crate::wire`: a parent and its children,
//! the fork server): a 16-byte header — body length (u64, little-endian),
//! a kind byte, the number of descriptors attached, six zero bytes —
//! followed by the body. The descriptors ride as `SCM_RIGHTS` on the
//! header's bytes.

use super::buffer::{Format, FrameError, Head};
use crate::sys::socket::MAX_FDS;

/// The header's length.
pub(crate) const HEADER: usize = 16;

/// What a control header says besides the length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) kind: u8,
    pub(crate) nfds: u8,
}

/// The control wire's format, for [`super::RecvBuf`].
pub(crate) struct Control;

/// The header of a frame of `kind` with a body of `len` bytes and `nfds`
/// descriptors (at most [`MAX_FDS`]: the caller checks).
pub(crate) fn encode_header(kind: u8, len: usize, nfds: u8) -> [u8; HEADER] {
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(&(len as u64).to_le_bytes());
    header[8] = kind;
    header[9] = nfds;
    header
}

impl Format for Control {
    type Meta = Meta;
    const MAX_HEADER: usize = HEADER;

    fn decode(b: &[u8]) -> Result<Option<Head<Meta>>, FrameError> {
        let Some(h) = b.get(..HEADER) else {
            return Ok(None);
        };
        let len = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
        let meta = Meta {
            kind: h[8],
            nfds: h[9],
        };
        if h[10..].iter().any(|&b| b != 0) || meta.nfds as usize > MAX_FDS {
            return Err(FrameError::Malformed(
                "reserved bytes set or too many descriptors".into(),
            ));
        }
        Ok(Some(Head {
            header_len: HEADER,
            len,
            meta,
        }))
    }
}
