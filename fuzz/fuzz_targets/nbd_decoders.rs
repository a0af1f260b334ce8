//! Fuzz target: NBD option header, INFO/GO and meta context payloads, request header.
//! The body lives in `uthin_nbd::fuzzing` (shared with crates/nbd/tests/decoder_smoke.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| uthin_nbd::fuzzing::decoders(data));
