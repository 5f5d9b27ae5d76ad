//! Python's message framing, which `multiprocessing.connection` uses on
//! every socket and pipe: a 4-byte big-endian signed length, or `-1`
//! followed by an 8-byte big-endian length for messages of 2 GiB and more,
//! then the bytes.
//!
//! [`decode_header`] is a pure function over bytes, so it can be fuzzed
//! (`fuzz/fuzz_targets/frame.rs`) and tested with random input.

/// The largest body announced with the short header.
const SHORT_MAX: u64 = 0x7fff_ffff;

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

/// What a header says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// Not enough bytes yet to know.
    Incomplete,
    /// A body of `len` bytes follows a header of `header_len` bytes.
    Body { header_len: usize, len: u64 },
}

/// Why a header is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// A negative length other than the `-1` escape.
    Negative(i32),
    /// The body is longer than the receiver accepts.
    TooLarge { len: u64, max: u64 },
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Negative(n) => write!(f, "corrupt message header: length {n}"),
            HeaderError::TooLarge { len, max } => {
                write!(
                    f,
                    "a message of {len} bytes is over the limit of {max} bytes"
                )
            }
        }
    }
}

/// Reads a header at the start of `buf`, refusing bodies over `max` bytes
/// before anything is allocated for them.
pub(crate) fn decode_header(buf: &[u8], max: u64) -> Result<Header, HeaderError> {
    let Some(short) = buf.get(..4) else {
        return Ok(Header::Incomplete);
    };
    let n = i32::from_be_bytes(short.try_into().expect("4 bytes"));
    let (header_len, len) = match n {
        -1 => {
            let Some(long) = buf.get(4..12) else {
                return Ok(Header::Incomplete);
            };
            (12, u64::from_be_bytes(long.try_into().expect("8 bytes")))
        }
        n if n < 0 => return Err(HeaderError::Negative(n)),
        n => (4, n as u64),
    };
    if len > max {
        return Err(HeaderError::TooLarge { len, max });
    }
    Ok(Header::Body { header_len, len })
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
                decode_header(&h[..n], u64::MAX),
                Ok(Header::Body {
                    header_len: n,
                    len: len as u64
                })
            );
            for cut in 0..n {
                assert_eq!(decode_header(&h[..cut], u64::MAX), Ok(Header::Incomplete));
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
        assert_eq!(
            decode_header(&[255, 255, 255, 254], 10),
            Err(HeaderError::Negative(-2))
        );
        assert_eq!(
            decode_header(&[0, 0, 1, 0], 10),
            Err(HeaderError::TooLarge { len: 256, max: 10 })
        );
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let bytes = seed.to_le_bytes();
            let len = (seed >> 60) as usize % 13;
            let buf = [bytes, bytes].concat();
            let _ = decode_header(&buf[..len], 1 << 20);
        }
    }
}
