//! Fuzz target: Bitmap and index validators, index entries, and ref counts from disk words.
//! The body lives in `uthin_thin::fuzzing` (shared with tests/decoder_smoke.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| uthin_thin::fuzzing::bitmap_index(data));
