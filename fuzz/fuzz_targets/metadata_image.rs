//! Fuzz target: Patches over a valid 64-block pool image, opened read-only and walked
//! (and optionally changed read-write).
//! The body lives in `uthin_thin::fuzzing` (shared with tests/decoder_smoke.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| uthin_thin::fuzzing::metadata_image(data));
