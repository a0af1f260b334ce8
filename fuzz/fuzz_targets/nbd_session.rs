//! Fuzz target: a whole NBD client byte stream (handshake, then requests)
//! served by a real connection over an in-memory stream; the replies must
//! be well formed.  The body lives in `uthin_nbd::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| uthin_nbd::fuzzing::session(data));
