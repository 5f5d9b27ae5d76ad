//! Python's message framing as `crate::fuzzing` first reached it. The
//! decoder itself is the crate's one framing layer's
//! ([`crate::frame::python`]), which every connection and the manager read
//! through; this is only the name the fuzz entry calls.

use crate::frame::python::Python;
use crate::frame::{Format, FrameError, RecvBuf};

/// Reads the header at the start of `buf` as a connection would, refusing
/// bodies over `max` bytes: `Ok(None)` if more bytes are needed, else
/// (header length, body length).
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn decode_header(buf: &[u8], max: u64) -> Result<Option<(usize, usize)>, FrameError> {
    let Some(head) = Python::decode(buf)? else {
        return Ok(None);
    };
    let mut b = RecvBuf::<Python>::new(usize::try_from(max).unwrap_or(usize::MAX));
    b.feed(&buf[..head.header_len]);
    Ok(b.head()?.map(|(len, ())| (head.header_len, len)))
}
