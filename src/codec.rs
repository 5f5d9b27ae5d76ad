//! How values cross between processes: serde with postcard, plus a side
//! table for file descriptors.
//!
//! A value is encoded to bytes with postcard. Any [`Fd`] inside it is not
//! written as a number (a descriptor number means nothing in another
//! process): encoding puts a duplicate of the descriptor into a side table
//! and writes its index; the table travels beside the bytes as `SCM_RIGHTS`,
//! and the receiver's kernel installs fresh descriptors that decoding takes
//! back out by index. This is how a `Queue`, `Pipe` or `Lock` handle, which
//! holds descriptors, can sit inside a child's arguments as in Python.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind};
use crate::sys;

thread_local! {
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
    /// While encoding for a destination that cannot carry descriptors:
    /// `Some(found)`, `found` set once an [`Fd`] was refused.
    static NO_FDS: Cell<Option<bool>> = const { Cell::new(None) };
}

/// An encoded value: its bytes and the descriptors that travel with them.
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Encoded {
    pub(crate) fn borrowed_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.fds.iter().map(|fd| fd.as_fd()).collect()
    }
}

/// Encodes `value`, collecting duplicates of the descriptors inside it.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, Error> {
    let previous = OUTGOING.with(|o| o.borrow_mut().replace(Vec::new()));
    let result = postcard::to_allocvec(value);
    let fds = OUTGOING
        .with(|o| std::mem::replace(&mut *o.borrow_mut(), previous))
        .unwrap_or_default();
    let bytes = result.map_err(|e| {
        Error::new(
            ErrorKind::Encode,
            format!(
                "could not encode a value of type {}",
                std::any::type_name::<T>()
            ),
        )
        .with_source(e)
    })?;
    if fds.len() > sys::socket::MAX_FDS {
        return Err(Error::new(
            ErrorKind::Encode,
            format!(
                "a value of type {} holds {} descriptors; at most {} can travel in one message",
                std::any::type_name::<T>(),
                fds.len(),
                sys::socket::MAX_FDS
            ),
        ));
    }
    Ok(Encoded { bytes, fds })
}

/// Encodes `value` into `buf` (cleared first, its allocation reused), for
/// a destination that cannot carry descriptors (a queue's shared memory):
/// a value holding an [`Fd`] fails with [`ErrorKind::Encode`] saying so.
/// For hot paths that keep one buffer per thread.
pub(crate) fn encode_plain_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), Error> {
    buf.clear();
    let previous = NO_FDS.replace(Some(false));
    let result = postcard::to_extend(value, std::mem::take(buf));
    let refused = NO_FDS.replace(previous) == Some(true);
    *buf = result.map_err(|e| {
        let what = std::any::type_name::<T>();
        if refused {
            Error::new(
                ErrorKind::Encode,
                format!(
                    "a value of type {what} holds descriptors, which cannot travel through a \
                     queue's shared memory; send it in a child's arguments or through a Pipe"
                ),
            )
        } else {
            Error::new(
                ErrorKind::Encode,
                format!("could not encode a value of type {what}"),
            )
            .with_source(e)
        }
    })?;
    Ok(())
}

/// Decodes a `T` from `bytes`, handing it the descriptors that came with them.
/// Descriptors the value does not claim are closed.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, Error> {
    let table = fds.into_iter().map(Some).collect();
    let previous = INCOMING.with(|i| i.borrow_mut().replace(table));
    // Strict: bytes left over mean the sender encoded another type.
    let result = postcard::take_from_bytes(bytes).and_then(|(value, rest): (T, &[u8])| {
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(postcard::Error::DeserializeBadEncoding)
        }
    });
    INCOMING.with(|i| *i.borrow_mut() = previous);
    result.map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!(
                "could not decode a value of type {}",
                std::any::type_name::<T>()
            ),
        )
        .with_source(e)
    })
}

/// Decodes a `T` from `bytes` that carry no descriptors (a queue's
/// messages): a value that claims one fails to decode.
pub(crate) fn decode_plain<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    postcard::take_from_bytes(bytes)
        .and_then(|(value, rest): (T, &[u8])| {
            if rest.is_empty() {
                Ok(value)
            } else {
                Err(postcard::Error::DeserializeBadEncoding)
            }
        })
        .map_err(|e| {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "could not decode a value of type {}",
                    std::any::type_name::<T>()
                ),
            )
            .with_source(e)
        })
}

/// A file descriptor that can travel to another process inside a value.
///
/// Put an `Fd` in a child's arguments (or its return value) and the other
/// process receives its own descriptor for the same open file, socket or
/// pipe, under every start method. The sender keeps its own.
///
/// An `Fd` can only be serialized by `multiproc` itself while sending to
/// another process; serializing it with another serde format fails with an
/// error that says so.
///
/// ```
/// use std::io::{Read, Write};
/// # multiproc::init();
/// let (mut reader, writer) = std::io::pipe()?;
/// let fd = multiproc::Fd::new(writer.into());
/// fn write_hello(fd: multiproc::Fd) {
///     let mut w = std::fs::File::from(fd.into_owned());
///     w.write_all(b"hello").unwrap();
/// }
/// let child = multiproc::Process::new(write_hello, fd).start()?;
/// child.join()?;
/// let mut text = String::new();
/// reader.read_to_string(&mut text)?;
/// assert_eq!(text, "hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Fd(OwnedFd);

impl Fd {
    /// Wraps an owned descriptor.
    pub fn new(fd: OwnedFd) -> Self {
        Self(fd)
    }

    /// Gives the descriptor back.
    pub fn into_owned(self) -> OwnedFd {
        self.0
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Self {
        Self(fd)
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.0.as_raw_fd()).finish()
    }
}

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_fd(self.0.as_fd(), serializer)
    }
}

/// Serializes a duplicate of `fd` the way [`Fd`] does, for types that hold
/// a descriptor without being an `Fd` (deserialize it as an `Fd`).
pub(crate) fn serialize_fd<S: Serializer>(
    fd: BorrowedFd<'_>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if NO_FDS.get().is_some() {
        NO_FDS.set(Some(true));
        return Err(S::Error::custom("a descriptor cannot travel here"));
    }
    let dup = sys::socket::dup(fd).map_err(S::Error::custom)?;
    let index = OUTGOING.with(|o| {
        o.borrow_mut().as_mut().map(|table| {
            table.push(dup);
            table.len() - 1
        })
    });
    match index {
        Some(index) => serializer.serialize_u32(index as u32),
        None => Err(S::Error::custom(
            "multiproc::Fd can only be serialized by multiproc while sending it to another process",
        )),
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(deserializer)? as usize;
        INCOMING.with(|i| {
            let mut table = i.borrow_mut();
            let table = table.as_mut().ok_or_else(|| {
                D::Error::custom(
                    "multiproc::Fd can only be deserialized by multiproc from a message",
                )
            })?;
            table
                .get_mut(index)
                .and_then(Option::take)
                .map(Fd)
                .ok_or_else(|| {
                    D::Error::custom(format!("descriptor {index} is missing from the message"))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = (1u32, String::from("two"), vec![3.0f64; 3]);
        let e = encode(&v).unwrap();
        assert!(e.fds.is_empty());
        let back: (u32, String, Vec<f64>) = decode(&e.bytes, Vec::new()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn descriptors_travel_beside_the_bytes() {
        let (a, _b) = sys::socket::stream_pair().unwrap();
        let raw = a.as_raw_fd();
        let e = encode(&(7u8, Fd::new(a))).unwrap();
        assert_eq!(e.fds.len(), 1);
        assert_ne!(e.fds[0].as_raw_fd(), raw, "the table holds a duplicate");
        let Encoded { bytes, fds } = e;
        let (n, fd): (u8, Fd) = decode(&bytes, fds).unwrap();
        assert_eq!(n, 7);
        assert!(fd.as_raw_fd() >= 0);
    }

    #[test]
    fn a_missing_descriptor_is_a_decode_error() {
        let (a, _b) = sys::socket::stream_pair().unwrap();
        let e = encode(&Fd::new(a)).unwrap();
        let err = decode::<Fd>(&e.bytes, Vec::new()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
    }

    #[test]
    fn wrong_type_or_truncated_bytes_are_decode_errors() {
        let e = encode(&String::from("hello")).unwrap();
        assert_eq!(
            decode::<Vec<u64>>(&e.bytes[..3], Vec::new())
                .unwrap_err()
                .kind(),
            ErrorKind::Decode
        );
        assert_eq!(
            decode::<String>(&[200], Vec::new()).unwrap_err().kind(),
            ErrorKind::Decode
        );
    }
}
