//! What travels through the broker: a chunk of tasks ([`TaskEntry`], one
//! stream entry of the program's task stream) and its answer ([`Reply`],
//! one entry of the caller's reply stream). Both are postcard values in
//! the entry's one field, [`FIELD`]. Decoding is bounded by the bytes that
//! arrived (postcard allocates no more than the input holds) and an entry
//! over [`MAX_ENTRY`] is refused before it is decoded.

use serde::{Deserialize, Serialize};

use super::blob::ItemBlobs;
use crate::error::{Error, ErrorKind, PanicReport};

/// The field of every entry the cluster writes.
pub(crate) const FIELD: &str = "d";

/// The largest entry the cluster writes or decodes (the broker's own
/// limit on a value is 512 MiB by default).
pub(crate) const MAX_ENTRY: usize = 256 << 20;

/// A chunk of one call, as an agent runs it.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct TaskEntry {
    /// The caller's id: its reply stream and liveness key are named by it.
    pub(crate) caller: String,
    /// The chunk's number in the caller (answers are matched by it).
    pub(crate) seq: u64,
    /// The caller's job id (the agent names cancellations by it).
    pub(crate) job: u64,
    /// For error messages: `map(my_crate::square)`.
    pub(crate) what: String,
    /// The index of the chunk's first item in its call.
    pub(crate) first: u64,
    /// The task function (`TaskRef`, postcard).
    pub(crate) func: Vec<u8>,
    /// A `partial`'s values, postcard.
    pub(crate) captured: Option<Vec<u8>>,
    /// The items' arguments, postcard values back to back.
    pub(crate) items: Vec<u8>,
    /// Where each item's bytes end in `items`.
    pub(crate) ends: Vec<u32>,
    /// The items whose descriptors travel as blobs (ascending items).
    pub(crate) blobs: Vec<ItemBlobs>,
    /// The per-item time limit, in nanoseconds.
    pub(crate) timeout_ns: Option<u64>,
    pub(crate) retries: u32,
    pub(crate) retry_panics: bool,
    /// After this many agents were lost running the chunk, its items fail
    /// with `WorkerLost`.
    pub(crate) max_losses: u32,
    /// The time to live the caller keeps on its reply stream (an agent
    /// that answers a caller gone meanwhile leaves nothing for longer).
    pub(crate) reply_ttl_ms: u64,
}

impl TaskEntry {
    /// The items' bytes, each checked to lie inside `items` and after the
    /// one before; `None` if the ends are not so.
    pub(crate) fn item_slices(&self) -> Option<Vec<&[u8]>> {
        let mut out = Vec::with_capacity(self.ends.len().min(self.items.len() + 1));
        let mut at = 0usize;
        for &end in &self.ends {
            let end = end as usize;
            if end < at || end > self.items.len() {
                return None;
            }
            out.push(&self.items[at..end]);
            at = end;
        }
        Some(out)
    }

    /// Whether `blobs` names each item at most once, in order, inside the
    /// chunk, with at most as many blobs as a message may carry
    /// descriptors (and one for an item whose bytes are its blob).
    pub(crate) fn blobs_valid(&self) -> bool {
        let mut last = None;
        self.blobs.iter().all(|b| {
            let j = b.item as usize;
            let ok = j < self.ends.len()
                && last.is_none_or(|l| l < j)
                && !b.refs.is_empty()
                && b.refs.len() <= crate::sys::socket::MAX_FDS
                && (!b.shm || b.refs.len() == 1);
            last = Some(j);
            ok
        })
    }
}

/// Decodes `data` as each kind of cluster entry, as agents and callers do
/// (for `crate::fuzzing`).
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn fuzz(data: &[u8]) {
    if let Ok(e) = decode::<TaskEntry>(data, "task") {
        let _ = e.item_slices();
        let _ = e.blobs_valid();
    }
    let _ = decode::<Reply>(data, "reply");
}

/// The answer for some items of one chunk.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Part {
    /// Items `first..first + count` returned these values back to back.
    Ok {
        first: u64,
        count: u32,
        bytes: Vec<u8>,
    },
    /// Item `index` failed.
    Err {
        index: u64,
        kind: u8,
        message: String,
        panic: Option<PanicReport>,
    },
}

impl Part {
    pub(crate) fn from_error(index: u64, e: &Error) -> Part {
        Part::Err {
            index,
            kind: e.kind().code(),
            message: e.to_string(),
            panic: e.panic_report(),
        }
    }
}

/// An agent's answer for one whole chunk.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Reply {
    pub(crate) seq: u64,
    /// The agent that ran it (for error messages and the node-loss count).
    pub(crate) agent: String,
    pub(crate) parts: Vec<Part>,
}

/// Rebuilds an error an agent reported.
pub(crate) fn error_of(kind: u8, message: String, panic: Option<PanicReport>) -> Error {
    let kind = ErrorKind::from_code(kind).unwrap_or(ErrorKind::Remote);
    let e = Error::new(kind, message);
    match panic {
        Some(p) => e.with_panic(p),
        None => e,
    }
}

/// Encodes `v` for an entry.
///
/// # Errors
///
/// [`ErrorKind::Encode`] when it cannot be encoded or passes [`MAX_ENTRY`].
pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    let bytes = postcard::to_allocvec(v).map_err(|e| {
        Error::new(
            ErrorKind::Encode,
            format!("cannot encode a cluster entry: {e}"),
        )
    })?;
    if bytes.len() > MAX_ENTRY {
        return Err(Error::new(
            ErrorKind::MessageTooLarge,
            format!(
                "a cluster entry of {} bytes passes the limit of {MAX_ENTRY} bytes: use smaller chunks (pool.chunksize)",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Decodes an entry's bytes.
///
/// # Errors
///
/// [`ErrorKind::Decode`] for bytes that are not a `T`, or too long.
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, Error> {
    if bytes.len() > MAX_ENTRY {
        return Err(Error::new(
            ErrorKind::Decode,
            format!("a cluster {what} of {} bytes is too long", bytes.len()),
        ));
    }
    postcard::from_bytes(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!("a malformed cluster {what}: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry of these items, ends and blobs (the rest plain).
    fn entry(items: Vec<u8>, ends: Vec<u32>, blobs: Vec<ItemBlobs>) -> TaskEntry {
        TaskEntry {
            caller: "c".into(),
            seq: 1,
            job: 1,
            what: "map(f)".into(),
            first: 0,
            func: vec![],
            captured: None,
            items,
            ends,
            blobs,
            timeout_ns: None,
            retries: 0,
            retry_panics: false,
            max_losses: 2,
            reply_ttl_ms: 1000,
        }
    }

    #[test]
    fn item_ends_outside_the_items_are_refused() {
        let mut e = entry(vec![1, 2, 3], vec![1, 3], vec![]);
        assert_eq!(e.item_slices().unwrap(), vec![&[1u8][..], &[2, 3][..]]);
        e.ends = vec![2, 1];
        assert!(e.item_slices().is_none());
        e.ends = vec![4];
        assert!(e.item_slices().is_none());
    }

    #[test]
    fn blobs_must_name_items_of_the_chunk_in_order() {
        use super::super::blob::BlobRef;
        let r = BlobRef {
            hash: [1; 32],
            len: 8,
        };
        let item = |item, shm, n| ItemBlobs {
            item,
            shm,
            refs: vec![r; n],
        };
        let mut e = entry(
            vec![0; 16],
            vec![8, 16],
            vec![item(0, true, 1), item(1, false, 3)],
        );
        assert!(e.blobs_valid());
        for bad in [
            vec![item(1, false, 1), item(0, false, 1)],
            vec![item(0, false, 1), item(0, false, 1)],
            vec![item(2, false, 1)],
            vec![item(0, false, 0)],
            vec![item(0, true, 2)],
            vec![item(0, false, 254)],
        ] {
            e.blobs = bad;
            assert!(!e.blobs_valid(), "{:?}", e.blobs);
        }
    }

    #[test]
    fn hostile_bytes_are_a_decode_error() {
        // A length prefix announcing 4 GiB of items in 10 bytes.
        let bytes = [1, b'c', 1, 1, 0, 0, 0xff, 0xff, 0xff, 0x0f];
        let e = decode::<TaskEntry>(&bytes, "task").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        let e = decode::<Reply>(&[0xff; 64], "reply").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
    }

    #[test]
    fn an_error_keeps_its_kind_and_panic() {
        let e = Error::new(ErrorKind::Panicked, "task 3 panicked").with_panic(PanicReport {
            message: "boom".into(),
            location: Some("src/x.rs:1:1".into()),
            backtrace: None,
        });
        let Part::Err {
            kind,
            message,
            panic,
            ..
        } = Part::from_error(3, &e)
        else {
            unreachable!()
        };
        let back = error_of(kind, message, panic);
        assert_eq!(back.kind(), ErrorKind::Panicked);
        assert_eq!(back.panic_message(), Some("boom"));
        assert_eq!(error_of(250, "x".into(), None).kind(), ErrorKind::Remote);
    }
}
