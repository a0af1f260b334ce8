//! CI smoke run of the fuzz targets in `fuzz/`: proptest feeds the same
//! bodies (`uthin_nbd::fuzzing`) arbitrary bytes; none may panic.  The real
//! fuzzing runs with cargo-fuzz (see `fuzz/README.md`).

use proptest::prelude::*;
use uthin_nbd::fuzzing;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        fuzzing::decoders(&data);
    }

    /// Requests built from the input, each mode (structured, meta context,
    /// read-only, raw).
    #[test]
    fn sessions_never_panic(
        mode in any::<u8>(),
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut data = vec![mode];
        data.extend_from_slice(&body);
        fuzzing::session(&data);
    }
}

/// Requests aimed at the interesting sizes: zero, unaligned, at the end.
#[test]
fn sessions_with_chosen_requests() {
    for mode in [0u8, 2, 6, 14] {
        for kind in 0u8..9 {
            for flags in [0u8, 1, 2, 4, 8, 16, 0x1f] {
                for (off, len) in [
                    (0u32, 0u32),
                    (1, 4096),
                    (2047, 512),
                    (2048, 1),
                    (0, 1 << 20),
                ] {
                    let mut d = vec![mode, kind, flags];
                    d.extend_from_slice(&off.to_be_bytes());
                    d.extend_from_slice(&len.to_be_bytes());
                    d.extend_from_slice(&[0, 0, 0]);
                    fuzzing::session(&d);
                }
            }
        }
    }
}
