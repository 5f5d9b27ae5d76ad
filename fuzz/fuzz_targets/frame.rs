//! Fuzzes the decoders that read bytes from another process: Python's
//! message framing and the crate's own frames. Run with
//! `cargo +nightly fuzz run frame` from this folder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiproc::__fuzz::decode_everything(data);
});
