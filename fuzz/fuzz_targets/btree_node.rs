//! Fuzz target: The B-tree node validator, then node accessors, searches and edits.
//! The body lives in `uthin_thin::fuzzing` (shared with tests/decoder_smoke.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| uthin_thin::fuzzing::btree_node(data));
