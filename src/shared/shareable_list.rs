//! [`ShareableList`]: Python's `multiprocessing.shared_memory.ShareableList`
//! in CPython 3.11's binary layout, over a named [`SharedMemory`], so that
//! Python programs attach what Rust made and the other way round.
//!
//! The layout (native byte order, as Python's `struct` without a prefix):
//!
//! - 8 bytes: the item count `n` (`i64`);
//! - `(n + 1) × 8` bytes: each item's offset into the data area (`i64`,
//!   the first 0, the last the data area's size);
//! - the data area: one slot per item, 8 bytes for an int, float, bool or
//!   None, and for str/bytes the encoded length rounded up to the next
//!   multiple of 8 (always at least one NUL more), fixed at creation;
//! - `n × 8` bytes: each item's `struct` format, NUL-padded: `q`, `d`,
//!   `xxxxxxx?` (bool), `xxxxxx?x` (None), `<slot>s` (str and bytes);
//! - `n` bytes: each item's "back-transform" code: 0 for int, float and
//!   bool, 1 for str, 2 for bytes, 3 for None.
//!
//! Everything in the segment is read as untrusted: another program may
//! have written anything there.

use std::fmt;

use super::memory::SharedMemory;
use crate::error::{Error, ErrorKind, Result};

/// Python's `_alignment`: the size of a fixed-size slot, and what str and
/// bytes slots are rounded to.
const ALIGN: usize = 8;
/// The bytes of one item's format string.
const FORMAT_LEN: usize = 8;
/// Bytes an item needs at the least: its offset, a slot, a format, a code.
const MIN_ITEM_BYTES: usize = 8 + ALIGN + FORMAT_LEN + 1;

const FMT_INT: &[u8] = b"q";
const FMT_FLOAT: &[u8] = b"d";
const FMT_BOOL: &[u8] = b"xxxxxxx?";
const FMT_NONE: &[u8] = b"xxxxxx?x";

const CODE_PLAIN: u8 = 0;
const CODE_STR: u8 = 1;
const CODE_BYTES: u8 = 2;
const CODE_NONE: u8 = 3;

/// One item of a [`ShareableList`]: the scalar types Python's
/// `ShareableList` stores.
#[derive(Clone, Debug, PartialEq)]
pub enum ListItem {
    /// A Python `int` in the range of an `i64` (format `q`).
    Int(i64),
    /// A Python `float` (format `d`).
    Float(f64),
    /// A Python `bool` (format `xxxxxxx?`).
    Bool(bool),
    /// Python's `None` (format `xxxxxx?x`).
    None,
    /// A Python `str`, stored as UTF-8. Trailing NULs do not survive the
    /// trip: Python strips them when reading, and so does this crate.
    Str(String),
    /// A Python `bytes`. Trailing NULs are stripped when read, as in Python.
    Bytes(Vec<u8>),
}

impl ListItem {
    /// The integer, if this is an [`Int`](Self::Int).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The float, if this is a [`Float`](Self::Float).
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The boolean, if this is a [`Bool`](Self::Bool).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The string, if this is a [`Str`](Self::Str).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is a [`Bytes`](Self::Bytes).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Whether this is [`None`](Self::None).
    pub fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    /// Python's `==` between two items: numbers compare by value across
    /// int, float and bool (`1 == 1.0 == True`), str and bytes never equal
    /// each other, NaN equals nothing.
    fn python_eq(&self, other: &Self) -> bool {
        match (self.number(), other.number()) {
            (Some(a), Some(b)) => a.eq(b),
            (None, None) => match (self, other) {
                (Self::None, Self::None) => true,
                (Self::Str(a), Self::Str(b)) => a == b,
                (Self::Bytes(a), Self::Bytes(b)) => a == b,
                _ => false,
            },
            _ => false,
        }
    }

    fn number(&self) -> Option<Number> {
        match self {
            Self::Int(i) => Some(Number::Int(*i)),
            Self::Bool(b) => Some(Number::Int(i64::from(*b))),
            Self::Float(f) => Some(Number::Float(*f)),
            _ => None,
        }
    }
}

#[derive(Clone, Copy)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// Exact comparison, as Python compares an int with a float.
    fn eq(self, other: Self) -> bool {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => a == b,
            (Self::Float(a), Self::Float(b)) => a == b,
            (Self::Int(i), Self::Float(f)) | (Self::Float(f), Self::Int(i)) => {
                // -2^63 <= f < 2^63, integral: then `as` is exact.
                const TWO_63: f64 = 9_223_372_036_854_775_808.0;
                f.trunc() == f && (-TWO_63..TWO_63).contains(&f) && f as i64 == i
            }
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for ListItem {
            fn from(v: $t) -> Self {
                Self::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i64, i32, i16, i8, u32, u16, u8);

impl From<f64> for ListItem {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<f32> for ListItem {
    fn from(v: f32) -> Self {
        Self::Float(f64::from(v))
    }
}

impl From<bool> for ListItem {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<()> for ListItem {
    /// `()` is Python's `None`.
    fn from((): ()) -> Self {
        Self::None
    }
}

impl From<&str> for ListItem {
    fn from(v: &str) -> Self {
        Self::Str(v.to_string())
    }
}

impl From<String> for ListItem {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}

impl From<&[u8]> for ListItem {
    fn from(v: &[u8]) -> Self {
        Self::Bytes(v.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for ListItem {
    fn from(v: &[u8; N]) -> Self {
        Self::Bytes(v.to_vec())
    }
}

impl From<Vec<u8>> for ListItem {
    fn from(v: Vec<u8>) -> Self {
        Self::Bytes(v)
    }
}

impl<T: Into<ListItem>> From<Option<T>> for ListItem {
    /// `None` is Python's `None`, `Some(v)` is `v`.
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::None, Into::into)
    }
}

fn decode_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Decode, message)
}

/// Bytes a layout is read from: a segment, or (for the fuzzer and the
/// tests) a slice.
trait Source {
    fn size(&self) -> usize;
    /// Copies `buf.len()` bytes at `offset`; a [`ErrorKind::Decode`] error
    /// if they lie outside.
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()>;
}

impl Source for SharedMemory {
    fn size(&self) -> usize {
        SharedMemory::size(self)
    }

    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.read(offset, buf)
            .map_err(|e| decode_error(format!("a ShareableList points outside its segment: {e}")))
    }
}

impl Source for [u8] {
    fn size(&self) -> usize {
        self.len()
    }

    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let bytes = offset
            .checked_add(buf.len())
            .and_then(|end| self.get(offset..end))
            .ok_or_else(|| decode_error("a ShareableList points outside its bytes"))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// What an item's format string says.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Int,
    Float,
    Bool,
    None,
    /// `<n>s`: `n` bytes, a str or bytes.
    Chars(usize),
}

impl Format {
    /// Parses the 8 format bytes of an item (NUL-padded, as Python's `8s`).
    fn parse(raw: &[u8; FORMAT_LEN]) -> Result<Format> {
        let end = raw.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let text = &raw[..end];
        Ok(match text {
            FMT_INT => Format::Int,
            FMT_FLOAT => Format::Float,
            FMT_BOOL => Format::Bool,
            FMT_NONE => Format::None,
            [digits @ .., b's'] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
                // At most 7 digits: no overflow.
                Format::Chars(
                    digits
                        .iter()
                        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')),
                )
            }
            _ => {
                return Err(decode_error(format!(
                    "a ShareableList item has the format {:?}, not one Python writes (q, d, xxxxxxx?, xxxxxx?x, <n>s)",
                    String::from_utf8_lossy(text)
                )));
            }
        })
    }
}

/// An item encoded for its slot: the format string, the code, the bytes.
struct Encoded {
    format: [u8; FORMAT_LEN],
    code: u8,
    value: Vec<u8>,
}

/// Encodes `item` for a slot of `slot` bytes, as Python's `__setitem__`
/// packs it.
fn encode(item: &ListItem, slot: usize) -> Result<Encoded> {
    let fixed = |fmt: &[u8], code, value: [u8; 8]| {
        let mut format = [0u8; FORMAT_LEN];
        format[..fmt.len()].copy_from_slice(fmt);
        Encoded {
            format,
            code,
            value: value.to_vec(),
        }
    };
    let (bytes, code) = match item {
        ListItem::Int(i) => return Ok(fixed(FMT_INT, CODE_PLAIN, i.to_ne_bytes())),
        ListItem::Float(f) => return Ok(fixed(FMT_FLOAT, CODE_PLAIN, f.to_ne_bytes())),
        ListItem::Bool(b) => {
            let mut v = [0u8; 8];
            v[7] = u8::from(*b);
            return Ok(fixed(FMT_BOOL, CODE_PLAIN, v));
        }
        ListItem::None => return Ok(fixed(FMT_NONE, CODE_NONE, [0; 8])),
        ListItem::Str(s) => (s.as_bytes(), CODE_STR),
        ListItem::Bytes(b) => (b.as_slice(), CODE_BYTES),
    };
    if bytes.len() > slot {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "a {}-byte {} exceeds the {slot} bytes its ShareableList slot holds (Python's ValueError)",
                bytes.len(),
                if code == CODE_STR { "str" } else { "bytes" }
            ),
        ));
    }
    let text = format!("{slot}s");
    let mut format = [0u8; FORMAT_LEN];
    format
        .get_mut(..text.len())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("a ShareableList slot of {slot} bytes needs a format longer than 8 bytes"),
            )
        })?
        .copy_from_slice(text.as_bytes());
    let mut value = vec![0u8; slot];
    value[..bytes.len()].copy_from_slice(bytes);
    Ok(Encoded {
        format,
        code,
        value,
    })
}

/// Where the items of a list lie, checked against its segment's size.
#[derive(Clone)]
struct Layout {
    /// `len + 1` offsets into the data area, each slot a positive multiple
    /// of [`ALIGN`].
    offsets: Vec<usize>,
}

impl Layout {
    /// The layout for `items` at creation, and the segment's size: Python's
    /// for ASCII text; a str slot is sized by its UTF-8 bytes, where
    /// CPython 3.11 counts characters (and so cuts non-ASCII strings).
    fn for_items(items: &[ListItem]) -> Result<(Layout, usize)> {
        let too_big = || {
            Error::new(
                ErrorKind::InvalidArgument,
                "a ShareableList of these items would not fit in memory",
            )
        };
        let mut offsets = Vec::with_capacity(items.len() + 1);
        offsets.push(0usize);
        let mut end = 0usize;
        for item in items {
            let slot = match item {
                ListItem::Str(s) => ALIGN * (s.len() / ALIGN + 1),
                ListItem::Bytes(b) => ALIGN * (b.len() / ALIGN + 1),
                _ => ALIGN,
            };
            end = end.checked_add(slot).ok_or_else(too_big)?;
            offsets.push(end);
        }
        let layout = Layout { offsets };
        let size = layout.end().ok_or_else(too_big)?;
        Ok((layout, size))
    }

    /// Reads and checks the header of `src`.
    fn read<S: Source + ?Sized>(src: &S) -> Result<Layout> {
        let size = src.size();
        if size < 16 {
            return Err(decode_error(format!(
                "a ShareableList needs at least 16 bytes (its item count and first offset); this segment has {size}"
            )));
        }
        let mut word = [0u8; 8];
        src.read_at(0, &mut word)?;
        let count = i64::from_ne_bytes(word);
        let most = (size - 16) / MIN_ITEM_BYTES;
        let len = usize::try_from(count)
            .ok()
            .filter(|&n| n <= most)
            .ok_or_else(|| {
                decode_error(format!(
                    "a ShareableList claims {count} items, but its {size} bytes hold at most {most}"
                ))
            })?;
        // (len + 1) * 8 <= size: bounded by the segment.
        let mut raw = vec![0u8; (len + 1) * 8];
        src.read_at(8, &mut raw)?;
        let mut offsets = Vec::with_capacity(len + 1);
        for (i, chunk) in raw.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let offset = i64::from_ne_bytes(word);
            let offset = usize::try_from(offset)
                .ok()
                .filter(|&o| o <= size)
                .ok_or_else(|| {
                    decode_error(format!(
                        "a ShareableList's offset {i} is {offset}, outside its {size} bytes"
                    ))
                })?;
            let previous = offsets.last().copied();
            match previous {
                None if offset != 0 => {
                    return Err(decode_error(format!(
                        "a ShareableList's first offset is {offset}, not 0"
                    )));
                }
                Some(p) if offset <= p || !(offset - p).is_multiple_of(ALIGN) => {
                    return Err(decode_error(format!(
                        "a ShareableList's item {} has offsets {p}..{offset}: not a positive multiple of {ALIGN} bytes",
                        i - 1
                    )));
                }
                _ => {}
            }
            offsets.push(offset);
        }
        let layout = Layout { offsets };
        match layout.end() {
            Some(end) if end <= size => Ok(layout),
            _ => Err(decode_error(format!(
                "a ShareableList of {len} items with {} bytes of data needs more than its {size} bytes",
                layout.offsets[len]
            ))),
        }
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Where the data area starts: after the count and the offsets.
    fn data_start(&self) -> usize {
        (self.len() + 2) * 8
    }

    fn formats_at(&self) -> usize {
        self.data_start() + self.offsets[self.len()]
    }

    fn codes_at(&self) -> usize {
        self.formats_at() + self.len() * FORMAT_LEN
    }

    /// The bytes the layout spans, `None` on overflow.
    fn end(&self) -> Option<usize> {
        let len = self.len();
        (len.checked_add(2)?.checked_mul(8)?)
            .checked_add(self.offsets[len])?
            .checked_add(len.checked_mul(FORMAT_LEN + 1)?)
    }

    fn check_index(&self, index: usize) -> Result<()> {
        if index >= self.len() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "index {index} is out of range for a ShareableList of {} items (Python's IndexError)",
                    self.len()
                ),
            ));
        }
        Ok(())
    }

    /// Item `index`'s slot: its offset in the segment and its size.
    fn slot(&self, index: usize) -> (usize, usize) {
        let start = self.offsets[index];
        (self.data_start() + start, self.offsets[index + 1] - start)
    }

    fn format<S: Source + ?Sized>(&self, src: &S, index: usize) -> Result<Format> {
        let mut raw = [0u8; FORMAT_LEN];
        src.read_at(self.formats_at() + index * FORMAT_LEN, &mut raw)?;
        Format::parse(&raw)
    }

    /// Reads item `index` of `src`.
    fn get<S: Source + ?Sized>(&self, src: &S, index: usize) -> Result<ListItem> {
        self.check_index(index)?;
        let format = self.format(src, index)?;
        let mut code = [0u8; 1];
        src.read_at(self.codes_at() + index, &mut code)?;
        let (at, slot) = self.slot(index);
        let mut word = [0u8; 8];
        let item = match (format, code[0]) {
            (Format::Int, CODE_PLAIN) => {
                src.read_at(at, &mut word)?;
                ListItem::Int(i64::from_ne_bytes(word))
            }
            (Format::Float, CODE_PLAIN) => {
                src.read_at(at, &mut word)?;
                ListItem::Float(f64::from_ne_bytes(word))
            }
            (Format::Bool, CODE_PLAIN) => {
                src.read_at(at, &mut word)?;
                ListItem::Bool(word[7] != 0)
            }
            (Format::None, CODE_NONE) => ListItem::None,
            (Format::Chars(n), CODE_STR | CODE_BYTES) if n <= slot => {
                let mut bytes = vec![0u8; n];
                src.read_at(at, &mut bytes)?;
                let kept = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                bytes.truncate(kept);
                if code[0] == CODE_BYTES {
                    ListItem::Bytes(bytes)
                } else {
                    ListItem::Str(String::from_utf8(bytes).map_err(|e| {
                        decode_error(format!(
                            "ShareableList item {index} is a str that is not UTF-8: {e}"
                        ))
                    })?)
                }
            }
            (Format::Chars(n), CODE_STR | CODE_BYTES) => {
                return Err(decode_error(format!(
                    "ShareableList item {index} has the format {n}s, longer than its {slot}-byte slot"
                )));
            }
            (format, code) => {
                return Err(decode_error(format!(
                    "ShareableList item {index} has the format {format:?} with the back-transform code {}, a pair Python never writes",
                    code as i8
                )));
            }
        };
        Ok(item)
    }
}

/// A fixed-length list of scalars in a named shared-memory segment:
/// Python's `multiprocessing.shared_memory.ShareableList`, in CPython
/// 3.11's exact layout, so that a Python program attaches it with
/// `ShareableList(name=...)` and a Rust program attaches Python's.
///
/// Items are [`ListItem`]s: `i64` ints, `f64` floats, bools, None, str and
/// bytes. The length never changes. A str or bytes item gets a slot of its
/// length rounded up to the next multiple of 8 when the list is created;
/// [`set`](Self::set) may put any item in any slot (changing its type, as
/// in Python) as long as a str or bytes fits the slot. Trailing NULs of str
/// and bytes items are stripped when read, as in Python.
///
/// # Concurrency
///
/// Each [`get`](Self::get) and [`set`](Self::set) copies a few separate
/// pieces (the format, the type code, the value), with no lock: as in
/// Python, processes that write an item while others read or write it must
/// share a lock of their own ([`crate::sync::Lock`], or Python's
/// `multiprocessing.Lock` between Python processes). A read that races a
/// write sees the old item, the new one, or a mix — in which case it
/// returns an [`ErrorKind::Decode`] error or a wrong value, never
/// undefined behaviour.
///
/// # Untrusted bytes
///
/// Anything in the segment may have been written by any program:
/// [`attach`](Self::attach) checks the header (count, offsets) against the
/// segment's size, and each [`get`](Self::get) checks the item's format
/// and code, returning [`ErrorKind::Decode`] errors for what Python would
/// not have written. Nothing is allocated beyond the segment's size.
///
/// # The segment's life
///
/// The segment is named (in `/dev/shm`) and, as in Python, stays until it
/// is unlinked. The handle that *created* it follows the crate's rule for
/// named [`SharedMemory`]: it unlinks the name when dropped (or on
/// [`unlink`](Self::unlink)), unless [`keep`](Self::keep) was called; a
/// creator killed before it could is covered by the crate's tracker (which
/// needs `multiproc::init()`), as described on [`SharedMemory`]. Attached
/// handles never unlink on drop. Unlinking removes the name only: processes
/// that have the list keep using it.
///
/// Python before 3.13 registers every segment it *attaches* with its
/// resource tracker, which unlinks it when that Python program ends (with a
/// "leaked shared_memory" warning); a Python program that attaches a list
/// made here and should leave it in place calls
/// `multiprocessing.resource_tracker.unregister(sl.shm._name, "shared_memory")`.
///
/// ```
/// # multiproc::init();
/// use multiproc::ErrorKind;
/// use multiproc::shared::{ListItem, ShareableList};
///
/// // Python: ShareableList(["howdy", b"HoWdY", -273.154, 100, None, True, 42])
/// let items: [ListItem; 7] = [
///     "howdy".into(),
///     b"HoWdY".into(),
///     (-273.154).into(),
///     100.into(),
///     ().into(),
///     true.into(),
///     42.into(),
/// ];
/// let list = ShareableList::create(None, &items)?;
/// assert!(list.name().starts_with("psm_"));
///
/// // Another process (Rust, or Python's `ShareableList(name=...)`)
/// // attaches by name.
/// let other = ShareableList::attach(list.name())?;
/// assert_eq!(other.get(0)?, ListItem::from("howdy"));
/// other.set(2, "dry ice")?; // a str in a float's 8 bytes: it fits
/// assert_eq!(list.get(2)?.as_str(), Some("dry ice"));
/// let too_long = list.set(0, "more than 8 bytes").unwrap_err();
/// assert_eq!(too_long.kind(), ErrorKind::InvalidArgument);
///
/// assert_eq!(list.count(&1.into())?, 1); // Python's `==`: `true` equals 1
/// assert_eq!(list.index(&42.into())?, Some(6));
/// assert_eq!(list.format()?, "8s8s8sqxxxxxx?xxxxxxxx?q");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct ShareableList {
    shm: SharedMemory,
    layout: Layout,
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.name())
            .field("len", &self.len())
            .finish()
    }
}

/// The kind of the `std::io::Error` under `e`, if there is one.
fn io_kind(e: &Error) -> Option<std::io::ErrorKind> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
}

impl ShareableList {
    /// Creates a list of `items` in a new named segment, `name` or, for
    /// `None`, a random name `psm_` + 8 hex digits as Python makes. This
    /// handle owns the name (see the type's docs).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a bad name, or a str or bytes
    /// item of more than 9,999,991 bytes (its format would pass 8 bytes;
    /// Python fails too); [`ErrorKind::Io`] if the name is taken (source of
    /// kind `AlreadyExists`) or the kernel refuses the segment. Nothing is
    /// left behind on failure.
    pub fn create(name: Option<&str>, items: &[ListItem]) -> Result<Self> {
        let (layout, size) = Layout::for_items(items)?;
        let mut segment = vec![0u8; size];
        segment[..8].copy_from_slice(&(items.len() as i64).to_ne_bytes());
        for (i, offset) in layout.offsets.iter().enumerate() {
            segment[8 + i * 8..16 + i * 8].copy_from_slice(&(*offset as i64).to_ne_bytes());
        }
        for (i, item) in items.iter().enumerate() {
            let (at, slot) = layout.slot(i);
            let e = encode(item, slot)?;
            segment[at..at + e.value.len()].copy_from_slice(&e.value);
            let f = layout.formats_at() + i * FORMAT_LEN;
            segment[f..f + FORMAT_LEN].copy_from_slice(&e.format);
            segment[layout.codes_at() + i] = e.code;
        }
        let shm = match name {
            Some(name) => SharedMemory::create(name, size)?,
            None => Self::create_random(size)?,
        };
        shm.write(0, &segment)?;
        Ok(Self { shm, layout })
    }

    fn create_random(size: usize) -> Result<SharedMemory> {
        let mut attempt = 0;
        loop {
            let tag = crate::sys::shm::random_tag();
            let name: String = tag[..4].iter().map(|b| format!("{b:02x}")).collect();
            match SharedMemory::create(&format!("psm_{name}"), size) {
                Err(e)
                    if attempt < 16 && io_kind(&e) == Some(std::io::ErrorKind::AlreadyExists) =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Attaches the list in the named segment `name` (`"name"` or
    /// `"/name"`), made by this crate or by Python. The handle does not own
    /// the name.
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::attach`] ([`ErrorKind::InvalidArgument`] for a
    /// bad name, [`ErrorKind::Io`] if there is no such segment);
    /// [`ErrorKind::Decode`] if the segment does not hold a list's header:
    /// a count or offsets that do not fit its size.
    pub fn attach(name: &str) -> Result<Self> {
        let shm = SharedMemory::attach(name)?;
        let layout = Layout::read(&shm)?;
        Ok(Self { shm, layout })
    }

    /// The number of items, fixed at creation.
    pub fn len(&self) -> usize {
        self.layout.len()
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of item `index`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if `index >= len()` (Python's
    /// `IndexError`); [`ErrorKind::Decode`] if the item's bytes are not one
    /// Python writes (an unknown format or code, a str that is not UTF-8).
    pub fn get(&self, index: usize) -> Result<ListItem> {
        self.layout.get(&self.shm, index)
    }

    /// Replaces item `index` with `item`, of any type: a str or bytes must
    /// fit the slot's size (fixed at creation), any other item always fits.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if `index >= len()` (Python's
    /// `IndexError`) or a str or bytes is longer than the slot (Python's
    /// `ValueError`); the item is unchanged then.
    pub fn set(&self, index: usize, item: impl Into<ListItem>) -> Result<()> {
        self.layout.check_index(index)?;
        let (at, slot) = self.layout.slot(index);
        let e = encode(&item.into(), slot)?;
        // Python's order: the format and code, then the value.
        self.shm
            .write(self.layout.formats_at() + index * FORMAT_LEN, &e.format)?;
        self.shm.write(self.layout.codes_at() + index, &[e.code])?;
        self.shm.write(at, &e.value)
    }

    /// The items in order, each read when the iterator reaches it (and
    /// each a `Result`, as from [`get`](Self::get)).
    pub fn iter(&self) -> impl Iterator<Item = Result<ListItem>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// A copy of every item (Python's `list(sl)`).
    ///
    /// # Errors
    ///
    /// The first [`get`](Self::get) error ([`ErrorKind::Decode`]).
    pub fn to_vec(&self) -> Result<Vec<ListItem>> {
        self.iter().collect()
    }

    /// How many items equal `item`, by Python's `==`: numbers by value
    /// across int, float and bool (`1 == 1.0 == True`), NaN equal to
    /// nothing.
    ///
    /// # Errors
    ///
    /// The first [`get`](Self::get) error ([`ErrorKind::Decode`]).
    pub fn count(&self, item: &ListItem) -> Result<usize> {
        let mut n = 0;
        for x in self.iter() {
            n += usize::from(x?.python_eq(item));
        }
        Ok(n)
    }

    /// The index of the first item equal to `item` (by Python's `==`, as
    /// in [`count`](Self::count)), `None` if there is none (where Python
    /// raises `ValueError`).
    ///
    /// # Errors
    ///
    /// The first [`get`](Self::get) error before a match
    /// ([`ErrorKind::Decode`]).
    pub fn index(&self, item: &ListItem) -> Result<Option<usize>> {
        for (i, x) in self.iter().enumerate() {
            if x?.python_eq(item) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The `struct` formats of every item, joined (Python's `sl.format`):
    /// `"q8sd"` for an int, a short str and a float.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`] for an item whose format Python would not
    /// write.
    pub fn format(&self) -> Result<String> {
        let mut out = String::new();
        for i in 0..self.len() {
            match self.layout.format(&self.shm, i)? {
                Format::Int => out.push('q'),
                Format::Float => out.push('d'),
                Format::Bool => out.push_str("xxxxxxx?"),
                Format::None => out.push_str("xxxxxx?x"),
                Format::Chars(n) => out.push_str(&format!("{n}s")),
            }
        }
        Ok(out)
    }

    /// The segment's name, without a leading `/` (Python's `sl.shm.name`).
    pub fn name(&self) -> &str {
        self.shm.name().unwrap_or_default()
    }

    /// The segment under the list (Python's `sl.shm`): its bytes are the
    /// layout described in this module's source.
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// Makes the creating handle leave the segment in place when dropped
    /// ([`SharedMemory::keep`]); someone must [`unlink`](Self::unlink) it
    /// later. Does nothing on an attached handle.
    pub fn keep(&mut self) {
        self.shm.keep();
    }

    /// Removes the segment's name now (Python's `sl.shm.unlink()`): nobody
    /// can attach any more; handles that have the list keep using it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the name is already gone (source of kind
    /// `NotFound`).
    pub fn unlink(&mut self) -> Result<()> {
        self.shm.unlink()
    }
}

/// The decoder over arbitrary bytes, for `crate::fuzzing`: `data` as a
/// whole segment, then its tail behind a well-formed header of up to 3
/// fixed-size items, so that formats and codes get exercised too.
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn fuzz(data: &[u8]) {
    fn decode_all(bytes: &[u8]) {
        if let Ok(layout) = Layout::read(bytes) {
            for i in 0..=layout.len() {
                let _ = layout.get(bytes, i);
            }
        }
    }
    decode_all(data);
    if let Some((&first, rest)) = data.split_first() {
        let n = usize::from(first % 4);
        let mut segment = (n as i64).to_ne_bytes().to_vec();
        for i in 0..=n {
            segment.extend_from_slice(&((i * ALIGN) as i64).to_ne_bytes());
        }
        segment.extend_from_slice(rest);
        decode_all(&segment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes(ShareableList([-2, 2.5, True, None, 'hé', b'by\x00',
    /// 'abcdefgh', False]).shm.buf)` from CPython 3.11 on x86-64.
    const PYTHON_3_11: [u8; 224] = [
        8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0,
        0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 48, 0, 0,
        0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 72, 0, 0, 0, 0, 0, 0, 0, 254, 255, 255, 255, 255,
        255, 255, 255, 0, 0, 0, 0, 0, 0, 4, 64, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
        104, 195, 169, 0, 0, 0, 0, 0, 98, 121, 0, 0, 0, 0, 0, 0, 97, 98, 99, 100, 101, 102, 103,
        104, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 113, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0,
        0, 0, 0, 0, 0, 120, 120, 120, 120, 120, 120, 120, 63, 120, 120, 120, 120, 120, 120, 63,
        120, 56, 115, 0, 0, 0, 0, 0, 0, 56, 115, 0, 0, 0, 0, 0, 0, 49, 54, 115, 0, 0, 0, 0, 0, 120,
        120, 120, 120, 120, 120, 120, 63, 0, 0, 0, 3, 1, 2, 1, 0,
    ];

    fn python_items() -> Vec<ListItem> {
        vec![
            (-2).into(),
            2.5.into(),
            true.into(),
            ().into(),
            "hé".into(),
            b"by\x00".into(),
            "abcdefgh".into(),
            false.into(),
        ]
    }

    fn decode_kind(r: Result<impl fmt::Debug>) -> ErrorKind {
        r.expect_err("a Decode error").kind()
    }

    #[test]
    fn creation_writes_python_3_11s_bytes_and_reads_them_back() {
        let mut list = ShareableList::create(None, &python_items()).unwrap();
        assert_eq!(list.shm().to_vec(), PYTHON_3_11);
        assert_eq!(list.format().unwrap(), "qdxxxxxxx?xxxxxx?x8s8s16sxxxxxxx?");
        // The bytes' trailing NUL is stripped on the way back, as in Python.
        let mut expected = python_items();
        expected[5] = b"by".into();
        assert_eq!(list.to_vec().unwrap(), expected);
        // Python's bytes, decoded here.
        let layout = Layout::read(&PYTHON_3_11[..]).unwrap();
        let from_python: Vec<_> = (0..8)
            .map(|i| layout.get(&PYTHON_3_11[..], i).unwrap())
            .collect();
        assert_eq!(from_python, expected);
        list.unlink().unwrap();
    }

    #[test]
    fn every_type_goes_into_every_slot_and_round_trips() {
        let list = ShareableList::create(None, &[0.into(), "a longer string".into()]).unwrap();
        let other = ShareableList::attach(list.name()).unwrap();
        let items: [ListItem; 9] = [
            i64::MIN.into(),
            i64::MAX.into(),
            f64::INFINITY.into(),
            (-0.5f32).into(),
            true.into(),
            false.into(),
            ().into(),
            "é\0x".into(),
            vec![0u8, 255, 0, 1].into(),
        ];
        for slot in 0..2 {
            for item in &items {
                list.set(slot, item.clone()).unwrap();
                assert_eq!(&other.get(slot).unwrap(), item, "slot {slot}");
            }
        }
        // A str fills its slot exactly, and then shorter ones replace it whole.
        list.set(1, "0123456789abcdef").unwrap();
        assert_eq!(other.get(1).unwrap().as_str(), Some("0123456789abcdef"));
        list.set(1, b"xy").unwrap();
        assert_eq!(other.get(1).unwrap().as_bytes(), Some(&b"xy"[..]));
        assert_eq!(
            other.format().unwrap(),
            "xxxxxx?x16s".replace("xxxxxx?x", "8s")
        );
        // Trailing NULs go, as in Python; NaN comes back as NaN.
        list.set(0, "ab\0\0").unwrap();
        assert_eq!(other.get(0).unwrap(), "ab".into());
        list.set(0, f64::NAN).unwrap();
        assert!(other.get(0).unwrap().as_float().unwrap().is_nan());
        assert_eq!(other.len(), 2);
        assert!(!other.is_empty());
    }

    #[test]
    fn an_empty_list_is_sixteen_bytes() {
        let list = ShareableList::create(None, &[]).unwrap();
        assert_eq!(list.shm().to_vec(), [0; 16]);
        assert!(ShareableList::attach(list.name()).unwrap().is_empty());
        assert_eq!(list.to_vec().unwrap(), []);
    }

    #[test]
    fn a_str_or_bytes_longer_than_its_slot_is_refused() {
        let list = ShareableList::create(None, &["1234567".into(), 5.into()]).unwrap();
        for too_long in [
            ListItem::from("123456789"),
            vec![1u8; 9].into(),
            "ééééé".into(),
        ] {
            for slot in 0..2 {
                let e = list.set(slot, too_long.clone()).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
                assert!(e.to_string().contains("exceeds the 8 bytes"), "{e}");
            }
        }
        assert_eq!(list.to_vec().unwrap(), ["1234567".into(), 5.into()]);
        // Up to the slot's size fits, even into an int's slot.
        list.set(1, "8 bytes!").unwrap();
        assert_eq!(list.get(1).unwrap(), "8 bytes!".into());
        // A str whose format would pass 8 bytes (Python's assertion) is refused.
        let e = ShareableList::create(None, &["x".repeat(10_000_000).into()]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }

    #[test]
    fn indexes_past_the_end_are_errors() {
        let list = ShareableList::create(None, &[1.into(), 2.into()]).unwrap();
        for i in [2, usize::MAX] {
            assert_eq!(list.get(i).unwrap_err().kind(), ErrorKind::InvalidArgument);
            assert_eq!(
                list.set(i, 0).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
        assert_eq!(list.to_vec().unwrap(), [1.into(), 2.into()]);
    }

    #[test]
    fn count_and_index_compare_as_python_does() {
        let list = ShareableList::create(
            Some(&format!("multiproc-unit-slist-{}", std::process::id())),
            &[
                1.into(),
                1.0.into(),
                true.into(),
                "1".into(),
                b"1".into(),
                ().into(),
                f64::NAN.into(),
                (1i64 << 53).into(),
            ],
        )
        .unwrap();
        assert_eq!(list.count(&1.into()).unwrap(), 3);
        assert_eq!(list.count(&true.into()).unwrap(), 3);
        assert_eq!(list.count(&"1".into()).unwrap(), 1);
        assert_eq!(list.count(&().into()).unwrap(), 1);
        assert_eq!(list.count(&f64::NAN.into()).unwrap(), 0);
        assert_eq!(list.index(&b"1".into()).unwrap(), Some(4));
        assert_eq!(list.index(&1.0.into()).unwrap(), Some(0));
        assert_eq!(
            list.index(&9_007_199_254_740_992.0.into()).unwrap(),
            Some(7)
        );
        assert_eq!(list.index(&2.into()).unwrap(), None);
        assert_eq!(list.index(&9.223_372_036_854_776e18.into()).unwrap(), None);
    }

    #[test]
    fn names_random_given_taken_and_unlinked() {
        let list = ShareableList::create(None, &[1.into()]).unwrap();
        let name = list.name().to_string();
        assert!(name.starts_with("psm_") && name.len() == 12, "{name}");
        let e = ShareableList::create(Some(&name), &[]).unwrap_err();
        assert_eq!(io_kind(&e), Some(std::io::ErrorKind::AlreadyExists));
        // An attached handle dropped leaves the name; the creator's drop removes it.
        drop(ShareableList::attach(&format!("/{name}")).unwrap());
        drop(list);
        let e = ShareableList::attach(&name).unwrap_err();
        assert_eq!(io_kind(&e), Some(std::io::ErrorKind::NotFound));
        assert_eq!(
            ShareableList::create(Some("a/b"), &[]).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    /// A copy of Python's bytes with `f` applied.
    fn python_with(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = PYTHON_3_11.to_vec();
        f(&mut v);
        v
    }

    fn put_i64(v: &mut [u8], at: usize, x: i64) {
        v[at..at + 8].copy_from_slice(&x.to_ne_bytes());
    }

    #[test]
    fn hostile_headers_are_decode_errors() {
        let headers: Vec<(&str, Vec<u8>)> = vec![
            ("too short", vec![0; 15]),
            ("negative count", python_with(|v| put_i64(v, 0, -1))),
            ("huge count", python_with(|v| put_i64(v, 0, i64::MAX))),
            ("count past the size", python_with(|v| put_i64(v, 0, 9))),
            ("first offset not 0", python_with(|v| put_i64(v, 8, 8))),
            ("offsets going back", python_with(|v| put_i64(v, 24, 0))),
            ("a slot of 4 bytes", python_with(|v| put_i64(v, 24, 12))),
            (
                "an offset past the end",
                python_with(|v| put_i64(v, 72, 1 << 40)),
            ),
            ("an offset of -8", python_with(|v| put_i64(v, 72, -8))),
            ("the data past the end", python_with(|v| v.truncate(223))),
        ];
        for (what, bytes) in headers {
            let e = Layout::read(&bytes[..])
                .err()
                .unwrap_or_else(|| panic!("{what}"));
            assert_eq!(e.kind(), ErrorKind::Decode, "{what}: {e}");
        }
        // The same through a real segment, attached by name.
        let name = format!("multiproc-unit-slist-hostile-{}", std::process::id());
        let shm = SharedMemory::create(&name, 64).unwrap();
        put_i64_shm(&shm, 0, 1 << 60);
        assert_eq!(decode_kind(ShareableList::attach(&name)), ErrorKind::Decode);
    }

    fn put_i64_shm(shm: &SharedMemory, at: usize, x: i64) {
        shm.write(at, &x.to_ne_bytes()).unwrap();
    }

    #[test]
    fn hostile_items_are_decode_errors() {
        // Formats at 152 + 8 i, codes at 216 + i.
        let items: Vec<(&str, usize, Vec<u8>)> = vec![
            ("an unknown format", 0, python_with(|v| v[152] = b'Q')),
            ("format not UTF-8", 0, python_with(|v| v[152] = 0xff)),
            ("a format of NULs", 0, python_with(|v| v[152] = 0)),
            (
                "'s' alone",
                4,
                python_with(|v| v[184..186].copy_from_slice(b"s\0")),
            ),
            (
                "16s in 8 bytes",
                4,
                python_with(|v| v[184..187].copy_from_slice(b"16s")),
            ),
            (
                "9999999s",
                4,
                python_with(|v| v[184..192].copy_from_slice(b"9999999s")),
            ),
            ("a str with code 0", 4, python_with(|v| v[220] = 0)),
            ("an int with code 1", 0, python_with(|v| v[216] = 1)),
            ("None with code 0", 3, python_with(|v| v[219] = 0)),
            ("an unknown code", 0, python_with(|v| v[216] = 0xff)),
            ("a str not UTF-8", 4, python_with(|v| v[80 + 32] = 0xc3)),
        ];
        for (what, index, bytes) in items {
            let layout = Layout::read(&bytes[..]).unwrap();
            let e = layout
                .get(&bytes[..], index)
                .err()
                .unwrap_or_else(|| panic!("{what}"));
            assert_eq!(e.kind(), ErrorKind::Decode, "{what}: {e}");
            // The other items still read.
            assert!(layout.get(&bytes[..], (index + 1) % 8).is_ok(), "{what}");
        }
        // Through a list whose segment another program scribbled over: the
        // item is a Decode error until it is set again.
        let list = ShareableList::create(None, &python_items()).unwrap();
        list.shm().write(184, b"zz").unwrap();
        assert_eq!(decode_kind(list.get(4)), ErrorKind::Decode);
        assert_eq!(decode_kind(list.to_vec()), ErrorKind::Decode);
        assert_eq!(decode_kind(list.format()), ErrorKind::Decode);
        list.set(4, "fixed").unwrap();
        assert_eq!(list.get(4).unwrap(), "fixed".into());
    }

    #[test]
    fn the_fuzz_entry_never_panics_on_python_bytes_cut_anywhere() {
        for end in 0..=PYTHON_3_11.len() {
            fuzz(&PYTHON_3_11[..end]);
            fuzz(&PYTHON_3_11[end..]);
        }
    }
}
