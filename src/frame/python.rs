//! Python's message framing, which `multiprocessing.connection` uses on
//! every socket and pipe: a 4-byte big-endian signed length, or `-1`
//! followed by an 8-byte big-endian length for messages of 2 GiB and more,
//! then the bytes. The manager's wire uses it too.
//!
//! [`Python::decode`] is a pure function over bytes, so it can be fuzzed
//! (`fuzz/fuzz_targets/frame.rs`) and tested with random input; the size
//! check is the buffer's ([`super::RecvBuf`]).

use super::buffer::{Format, FrameError, Head, RecvBuf};

/// The largest body announced with the short header.
const SHORT_MAX: u64 = 0x7fff_ffff;

/// Python's framing, as a [`Format`] for [`super::RecvBuf`].
pub(crate) struct Python;

/// The header for a body of `len` bytes, and how many of its bytes count.
pub(crate) fn encode_header(len: usize) -> ([u8; 12], usize) {
    let mut h = [0u8; 12];
    if len as u64 > SHORT_MAX {
        h[..4].copy_from_slice(&(-1i32).to_be_bytes());
        h[4..].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 12)
    } else {
        h[..4].copy_from_slice(&(len as i32).to_be_bytes());
        (h, 4)
    }
}

impl Format for Python {
    type Meta = ();
    const MAX_HEADER: usize = 12;

    fn decode(buf: &[u8]) -> Result<Option<Head<()>>, FrameError> {
        let Some(short) = buf.get(..4) else {
            return Ok(None);
        };
        let n = i32::from_be_bytes(short.try_into().expect("4 bytes"));
        let (header_len, len) = match n {
            -1 => {
                let Some(long) = buf.get(4..12) else {
                    return Ok(None);
                };
                (12, u64::from_be_bytes(long.try_into().expect("8 bytes")))
            }
            n if n < 0 => return Err(FrameError::Malformed(format!("length {n}"))),
            n => (4, n as u64),
        };
        Ok(Some(Head {
            header_len,
            len,
            meta: (),
        }))
    }
}

/// Receives what `data` holds as a connection would, in pieces of every
/// size the first byte picks, under a few limits, taking every frame and
/// its descriptors (for `crate::fuzzing`).
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn fuzz(data: &[u8]) {
    let piece = data.first().map_or(1, |&b| b as usize + 1);
    for max in [0, 16, 1 << 20, usize::MAX] {
        let mut b = RecvBuf::<Python>::new(max);
        for part in data.chunks(piece) {
            b.feed(part);
            while let Ok(Some((len, ()))) = b.ready() {
                let count = b.body().first().copied().unwrap_or(0) as usize;
                let (fds, _) = b.take_frame_fds(count);
                assert!(fds.is_empty());
                assert_eq!(b.take_body().len(), len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        for len in [
            0usize,
            1,
            255,
            65_536,
            SHORT_MAX as usize,
            SHORT_MAX as usize + 1,
            1 << 40,
        ] {
            let (h, n) = encode_header(len);
            assert_eq!(
                Python::decode(&h[..n]),
                Ok(Some(Head {
                    header_len: n,
                    len: len as u64,
                    meta: ()
                }))
            );
            for cut in 0..n {
                assert_eq!(Python::decode(&h[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn python_bytes_are_what_python_sends() {
        // struct.pack("!i", 5) and struct.pack("!i", -1) + struct.pack("!Q", 2**31)
        assert_eq!(&encode_header(5).0[..4], &[0, 0, 0, 5]);
        let (h, n) = encode_header(1 << 31);
        assert_eq!(&h[..n], &[255, 255, 255, 255, 0, 0, 0, 0, 128, 0, 0, 0]);
    }

    #[test]
    fn bad_headers_are_errors_not_panics() {
        assert!(matches!(
            Python::decode(&[255, 255, 255, 254]),
            Err(FrameError::Malformed(_))
        ));
        let mut b = RecvBuf::<Python>::new(10);
        b.feed(&[0, 0, 1, 0]);
        assert_eq!(
            b.ready().unwrap_err(),
            FrameError::TooLarge { len: 256, max: 10 }
        );
        // The lengths that broke receivers before: refused from the header.
        for len in [1u64 << 62, 1 << 63, u64::MAX, 20 << 30] {
            let mut b = RecvBuf::<Python>::new(64 << 20);
            let mut h = (-1i32).to_be_bytes().to_vec();
            h.extend_from_slice(&len.to_be_bytes());
            b.feed(&h);
            assert_eq!(
                b.ready().unwrap_err(),
                FrameError::TooLarge { len, max: 64 << 20 }
            );
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let bytes = seed.to_le_bytes();
            let len = (seed >> 60) as usize % 13;
            let buf = [bytes, bytes].concat();
            let _ = Python::decode(&buf[..len]);
        }
    }
}
