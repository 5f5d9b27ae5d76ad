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

use serde::de::DeserializeOwned;
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
    /// The OS error of a descriptor that could not be duplicated while
    /// encoding (postcard's errors keep no message, so the cause is kept
    /// here and becomes the [`Error`]'s source).
    static DUP_FAILED: RefCell<Option<std::io::Error>> = const { RefCell::new(None) };
    /// Why the last decoding on this thread was refused (postcard keeps no
    /// message of serde's `custom` errors): set by [`refuse`].
    static REFUSED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A decoding error that says why: for `Deserialize` impls of multiproc's
/// types (a descriptor that is not what was announced, a length that does
/// not fit). postcard drops the message of `custom`, so it is kept here and
/// [`why`] gives it to the error that reaches the user.
pub(crate) fn refuse<E: serde::de::Error>(message: impl fmt::Display) -> E {
    let message = message.to_string();
    REFUSED.with(|r| *r.borrow_mut() = Some(message.clone()));
    E::custom(message)
}

/// What a failed decoding says: the message given to [`refuse`] during it,
/// else postcard's. Call once per failure (it takes the message).
pub(crate) fn why(e: &postcard::Error) -> String {
    REFUSED
        .with(|r| r.borrow_mut().take())
        .unwrap_or_else(|| e.to_string())
}

/// Makes `message` the reason of the next decoding failure on this thread
/// (for bytes that could not be had at all).
pub(crate) fn explain_next_failure(message: String) {
    REFUSED.with(|r| *r.borrow_mut() = Some(message));
}

/// Forgets a message [`refuse`] left from an earlier decoding.
pub(crate) fn forget_refusal() {
    REFUSED.with(|r| r.borrow_mut().take());
}

/// The error of a decoding of a `T` that failed.
fn decode_failed<T>(e: postcard::Error) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!(
            "could not decode a value of type {}: {}",
            std::any::type_name::<T>(),
            why(&e)
        ),
    )
}

/// The error of an encoding that failed: the OS error of a descriptor that
/// could not be duplicated (kind [`ErrorKind::Io`], "Too many open files"
/// at the descriptor limit) if that is why, else postcard's.
fn encode_failed(what: &str, e: postcard::Error) -> Error {
    match DUP_FAILED.with(|d| d.borrow_mut().take()) {
        Some(os) => Error::io(
            format!(
                "could not encode a value of type {what}: duplicating a descriptor inside it failed"
            ),
            os,
        ),
        None => Error::new(
            ErrorKind::Encode,
            format!("could not encode a value of type {what}"),
        )
        .with_source(e),
    }
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
    DUP_FAILED.with(|d| d.borrow_mut().take());
    let result = postcard::to_allocvec(value);
    let fds = OUTGOING
        .with(|o| std::mem::replace(&mut *o.borrow_mut(), previous))
        .unwrap_or_default();
    let bytes = result.map_err(|e| encode_failed(std::any::type_name::<T>(), e))?;
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

/// A destination that cannot carry descriptors, named in the error a value
/// holding one gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoFds {
    /// A queue's shared memory.
    Queue,
    /// A manager (it keeps values as bytes).
    Manager,
    /// A TCP connection.
    Tcp,
    /// The values given to a pool task with `partial`.
    PoolCaptured,
}

impl NoFds {
    fn place(self) -> &'static str {
        match self {
            NoFds::Queue => "through a queue's shared memory",
            NoFds::Manager => "to a manager, which keeps values as bytes",
            NoFds::Tcp => "over a TCP connection",
            NoFds::PoolCaptured => {
                "to pool workers in the values given with partial (give them to the pool's initializer, or in the arguments)"
            }
        }
    }
}

/// The one error for a value holding descriptors on its way to a
/// destination that cannot carry them.
pub(crate) fn fds_not_allowed(type_name: &str, to: NoFds) -> Error {
    Error::new(
        ErrorKind::Encode,
        format!(
            "a value of type {type_name} holds descriptors, which cannot travel {}; \
             send it through a Pipe or in a child's arguments",
            to.place()
        ),
    )
}

/// The one message for a message that announces more descriptors than
/// arrived with it (or a value that claims one the message lacks).
pub(crate) fn fewer_fds_message(announced: usize, arrived: usize) -> String {
    format!("the message announces {announced} descriptor(s) but {arrived} arrived with it")
}

/// The one error for a message that announces more descriptors than arrived
/// with it ([`ErrorKind::Decode`]: the value cannot be rebuilt).
pub(crate) fn fewer_fds(announced: usize, arrived: usize) -> Error {
    Error::new(ErrorKind::Decode, fewer_fds_message(announced, arrived))
}

/// The one entry for values without descriptors: appends `value`'s bytes to
/// `out` (its allocation reused; on error `out` is as it was). A value
/// holding an [`Fd`] fails with [`fds_not_allowed`] naming `to`; any other
/// failure is [`ErrorKind::Encode`] with postcard's error as its source.
pub(crate) fn append_plain<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    to: NoFds,
) -> Result<(), Error> {
    let mark = out.len();
    let previous = NO_FDS.replace(Some(false));
    let result = value.serialize(&mut postcard::Serializer {
        output: Append(out),
    });
    let refused = NO_FDS.replace(previous) == Some(true);
    result.map_err(|e| {
        out.truncate(mark);
        let what = std::any::type_name::<T>();
        if refused {
            fds_not_allowed(what, to)
        } else {
            Error::new(
                ErrorKind::Encode,
                format!("could not encode a value of type {what}"),
            )
            .with_source(e)
        }
    })
}

/// [`append_plain`] into a new vector.
pub(crate) fn encode_plain<T: Serialize + ?Sized>(value: &T, to: NoFds) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    append_plain(value, &mut out, to)?;
    Ok(out)
}

/// A postcard output that appends to a vector it borrows (also the pool's
/// frames: `pool::frame::append`).
pub(crate) struct Append<'a>(pub(crate) &'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();
    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // postcard writes every integer as a short slice (a varint); a
        // variable-length copy would be a call to memcpy per number, so
        // short ones are copied as 16 fixed bytes and the tail cut off.
        let n = data.len();
        if n <= 16 {
            let mut tmp = [0u8; 16];
            for (i, t) in tmp.iter_mut().enumerate() {
                *t = data.get(i).copied().unwrap_or(0);
            }
            let old = self.0.len();
            self.0.extend_from_slice(&tmp);
            self.0.truncate(old + n);
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Reused byte buffers (a queue's per-thread encode and decode buffers, a
/// pipe end's) are kept up to this size, so that small messages allocate
/// nothing but their value.
pub(crate) const KEEP_BUFFER: usize = 8 << 20;

/// A buffer grown past [`KEEP_BUFFER`] for a large message is kept while
/// its messages stay large, up to this size, and given back by the first
/// message that fits in `KEEP_BUFFER`: a stream of 16 MiB messages must
/// not pay 4 096 page faults for a fresh buffer on each one (that made a
/// queue's 16 MiB messages 10× slower than its 2 MiB ones). The price: a
/// buffer whose last message was large is held until the next one.
pub(crate) const KEEP_LARGE: usize = 64 << 20;

/// What [`trim_buffer`] is told when no message went through the buffer.
pub(crate) const NO_MESSAGE: usize = usize::MAX;

/// Gives `buf`'s memory back unless it is worth keeping, by the rule of
/// [`KEEP_LARGE`]; `used`: the size of the message it just held
/// ([`NO_MESSAGE`]: none, and it stays as it is unless past `KEEP_LARGE`).
pub(crate) fn trim_buffer(buf: &mut Vec<u8>, used: usize) {
    let cap = buf.capacity();
    if cap > KEEP_LARGE || (cap > KEEP_BUFFER && used <= KEEP_BUFFER) {
        *buf = Vec::new();
    }
}

/// Decodes a `T` from `bytes`, handing it the descriptors that came with them.
/// Descriptors the value does not claim are closed.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, Error> {
    let table = fds.into_iter().map(Some).collect();
    let previous = INCOMING.with(|i| i.borrow_mut().replace(table));
    forget_refusal();
    // Strict: bytes left over mean the sender encoded another type.
    let result = postcard::take_from_bytes(bytes).and_then(|(value, rest): (T, &[u8])| {
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(postcard::Error::DeserializeBadEncoding)
        }
    });
    INCOMING.with(|i| *i.borrow_mut() = previous);
    result.map_err(decode_failed::<T>)
}

/// Runs `f` with `fds` as the descriptors that [`Fd`]s deserialized
/// inside it take by index, as [`decode`] does for one value (a pool
/// initializer decodes its arguments this way); descriptors not taken are
/// closed when `f` returns.
pub(crate) fn with_incoming<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    let table = fds.into_iter().map(Some).collect();
    let previous = INCOMING.with(|i| i.borrow_mut().replace(table));
    struct Restore(Option<Vec<Option<OwnedFd>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            INCOMING.with(|i| *i.borrow_mut() = previous);
        }
    }
    let _restore = Restore(previous);
    f()
}

/// Takes the last `n` descriptors of the table [`with_incoming`] set (the
/// pool's worker-state initializer hands them to the user's initializer).
pub(crate) fn take_incoming_tail(n: usize) -> Vec<OwnedFd> {
    INCOMING.with(|i| match i.borrow_mut().as_mut() {
        Some(table) => {
            let at = table.len().saturating_sub(n);
            table.split_off(at).into_iter().flatten().collect()
        }
        None => Vec::new(),
    })
}

/// Decodes a `T` from `bytes` that carry no descriptors (a queue's
/// messages): a value that claims one fails to decode.
pub(crate) fn decode_plain<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    forget_refusal();
    postcard::take_from_bytes(bytes)
        .and_then(|(value, rest): (T, &[u8])| {
            if rest.is_empty() {
                Ok(value)
            } else {
                Err(postcard::Error::DeserializeBadEncoding)
            }
        })
        .map_err(decode_failed::<T>)
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

/// Serializes the pair (descriptor, length) that a shared segment travels
/// as (a `Region`, a `SharedSlice`): deserialize it as `(Fd, u64)`.
pub(crate) fn serialize_segment<S: Serializer>(
    fd: BorrowedFd<'_>,
    len: u64,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeTuple;
    struct AsFdValue<'a>(BorrowedFd<'a>);
    impl Serialize for AsFdValue<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize_fd(self.0, s)
        }
    }
    let mut t = s.serialize_tuple(2)?;
    t.serialize_element(&AsFdValue(fd))?;
    t.serialize_element(&len)?;
    t.end()
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
    let dup = sys::socket::dup(fd).map_err(|e| {
        let message = e.to_string();
        DUP_FAILED.with(|d| *d.borrow_mut() = Some(e));
        S::Error::custom(message)
    })?;
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
                refuse::<D::Error>(
                    "multiproc::Fd can only be deserialized by multiproc from a message",
                )
            })?;
            let arrived = table.len();
            table
                .get_mut(index)
                .and_then(Option::take)
                .map(Fd)
                .ok_or_else(|| refuse(fewer_fds_message(index + 1, arrived)))
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
    fn a_descriptor_where_none_can_go_is_one_error() {
        let (a, _b) = sys::socket::stream_pair().unwrap();
        let v = (1u8, Fd::new(a));
        let mut out = vec![9];
        let err = append_plain(&v, &mut out, NoFds::Queue).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Encode);
        assert!(err.to_string().contains("holds descriptors"), "{err}");
        assert_eq!(out, [9], "nothing of the failed value is left");
        let err = encode_plain(&v, NoFds::Manager).unwrap_err();
        assert!(err.to_string().contains("to a manager"), "{err}");
        // Without descriptors: the same bytes as the descriptor-carrying entry.
        append_plain(&(5u64, "x"), &mut out, NoFds::Tcp).unwrap();
        assert_eq!(out[1..], encode(&(5u64, "x")).unwrap().bytes);
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
