//! Everything that decodes bytes from another process, in one function, so
//! the fuzz target (`fuzz/fuzz_targets/frame.rs`) and the random-input unit
//! test below exercise the same code. The property: any input gives a value
//! or an error, never a panic or an allocation sized by a header.

use crate::frame::Format;
use crate::frame::python::Python;
use crate::runtime::protocol::{Boot, ErrorReport};

/// Runs every decoder over `data`.
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub fn decode_everything(data: &[u8]) {
    // Python's framing's header, at every offset.
    for start in 0..data.len().min(64) {
        let _ = Python::decode(&data[start..]);
    }
    // The crate's own frames.
    let mut reader = crate::wire::Reader::new(1 << 20);
    reader.feed(data);
    while let Ok(Some(_)) = reader.next_frame() {}
    // Typed payloads: a value, a start-up message, an error report.
    let _ = crate::codec::decode::<(u64, String, Vec<Option<i32>>)>(data, Vec::new());
    let _ = crate::codec::decode::<crate::Fd>(data, Vec::new());
    let _ = postcard::from_bytes::<Boot>(data);
    let _ = postcard::from_bytes::<ErrorReport>(data);
    // A manager's requests (from clients) and replies (from the server).
    let _ = postcard::from_bytes::<crate::manager::protocol::Request>(data);
    let _ = postcard::from_bytes::<crate::manager::protocol::Reply>(data);
    // A pool worker's frames, results and failure reports.
    crate::pool::frame::fuzz(data);
    // A Listener/Client connection's and the manager's receive buffer
    // (Python's framing), fed in pieces, under several limits.
    crate::frame::python::fuzz(data);
    // What a pipe's socket carries beside its rings.
    crate::frame::pipe::fuzz(data);
    // A child's log record, as the parent's collector reads it.
    crate::logging::fuzz_packet(data);
    // A queue whose shared memory another process scribbled over.
    crate::shm::ring::fuzz(data);
    // A shared slice or a `Frozen` value whose descriptors did not come,
    // and the bytes of a sealed segment decoded as a `Frozen` value.
    let _ = crate::codec::decode::<crate::shared::SharedSlice<u64>>(data, Vec::new());
    let _ = crate::codec::decode::<crate::shared::Frozen<Vec<u8>>>(data, Vec::new());
    crate::shared::frozen::fuzz(data);
    // A ShareableList's segment written by another program (Python's
    // layout): its header, then each item.
    crate::shared::shareable_list::fuzz(data);
    // A cluster task entry (from the broker, to an agent) and an answer
    // (to a caller).
    #[cfg(feature = "cluster")]
    crate::cluster::wire::fuzz(data);
}

#[cfg(test)]
mod tests {
    /// Inputs the fuzz target found, each a panic once; replayed here.
    const FOUND: &[&[u8]] = &[
        // A queue tail near 2^64: `tail + record` overflowed in put.
        &[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 61, 0, 0, 255, 255, 37, 255, 255, 255, 255, 255, 255, 255,
            255, 255,
        ],
    ];

    #[test]
    fn inputs_the_fuzzer_found_never_panic() {
        for input in FOUND {
            super::decode_everything(input);
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut seed = 0x243f_6a88_85a3_08d3u64;
        let mut data = Vec::new();
        // MULTIPROC_FUZZ_ROUNDS=1000000 for a long run.
        let rounds = std::env::var("MULTIPROC_FUZZ_ROUNDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000);
        for round in 0..rounds {
            data.clear();
            for _ in 0..(round % 97) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.push(seed as u8);
            }
            super::decode_everything(&data);
        }
    }
}
