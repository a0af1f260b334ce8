//! Fuzz target: The superblock validator, decode/encode, probe and open of a one-block device.
//! The body lives in `uthin_thin::fuzzing` (shared with tests/decoder_smoke.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| uthin_thin::fuzzing::superblock(data));
