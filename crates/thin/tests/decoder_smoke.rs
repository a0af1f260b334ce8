//! CI smoke run of the fuzz targets in `fuzz/`: proptest feeds the same
//! bodies (`uthin_thin::fuzzing`) arbitrary and near-valid bytes; none may
//! panic.  The real fuzzing runs with cargo-fuzz (see `fuzz/README.md`).
//!
//! Inputs are shaped so that a useful share of them gets past the checksum
//! (mode bit 0 re-seals) and past the node header checks (header fields are
//! drawn from small, plausible values), where the interesting decoding is.

use proptest::prelude::*;
use uthin_thin::fuzzing::{self, base_image, IMAGE_BLOCKS};

/// A 4096-byte block whose first 32 bytes are a node header drawn from
/// plausible values, then random body bytes.
fn node_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(1u32), Just(2u32), any::<u32>()],
        prop_oneof![0u32..8, 0u32..400, any::<u32>()],
        prop_oneof![
            Just(252u32),
            Just(126u32),
            Just(168u32),
            Just(336u32),
            0u32..600
        ],
        prop_oneof![
            Just(8u32),
            Just(4u32),
            Just(16u32),
            Just(24u32),
            any::<u32>()
        ],
        prop::collection::vec(any::<u8>(), 0..4064),
    )
        .prop_map(|(flags, nr, max, vs, body)| {
            let mut b = vec![0u8; 4096];
            b[4..8].copy_from_slice(&flags.to_le_bytes());
            b[16..20].copy_from_slice(&nr.to_le_bytes());
            b[20..24].copy_from_slice(&max.to_le_bytes());
            b[24..28].copy_from_slice(&vs.to_le_bytes());
            b[32..32 + body.len()].copy_from_slice(&body);
            b
        })
}

/// Mode byte, block, and parameter tail.
fn input(block: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        block,
        prop::collection::vec(any::<u8>(), 0..400),
    )
        .prop_map(|(m, b, t)| {
            let mut v = vec![m];
            v.extend_from_slice(&b);
            v.resize(1 + 4096, 0);
            v.extend_from_slice(&t);
            v
        })
}

/// A superblock: the base image's block 0 with a few bytes replaced.
fn superblock_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0usize..400, any::<u8>()), 0..8).prop_map(|edits| {
        let mut b = base_image()[..4096].to_vec();
        for (o, x) in edits {
            b[o] = x;
        }
        b
    })
}

/// Patches over the base image, biased towards headers and roots.
fn patches() -> impl Strategy<Value = Vec<u8>> {
    let patch = (
        0u8..IMAGE_BLOCKS as u8,
        prop_oneof![0u16..64, 0u16..400, 2048u16..2100, any::<u16>()],
        prop::collection::vec(any::<u8>(), 1..9),
    );
    (any::<u8>(), prop::collection::vec(patch, 1..6)).prop_map(|(mode, ps)| {
        let mut v = vec![mode];
        for (blk, off, bytes) in ps {
            v.push(blk);
            v.extend_from_slice(&off.to_le_bytes());
            v.push(bytes.len() as u8);
            v.extend_from_slice(&bytes);
        }
        v
    })
}

#[test]
fn base_image_walks_cleanly() {
    fuzzing::walk_image(base_image().to_vec(), true).expect("base image reads");
    assert_eq!(base_image().len() as u64, IMAGE_BLOCKS * 4096);
}

#[test]
fn empty_and_tiny_inputs() {
    for data in [&[][..], &[0], &[1], &[0xff; 3], &[7; 5000]] {
        fuzzing::superblock(data);
        fuzzing::btree_node(data);
        fuzzing::bitmap_index(data);
        fuzzing::metadata_image(data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn superblock_random(data in prop::collection::vec(any::<u8>(), 0..4200)) {
        fuzzing::superblock(&data);
    }

    #[test]
    fn superblock_near_valid(data in input(superblock_bytes())) {
        fuzzing::superblock(&data);
    }

    #[test]
    fn btree_node_near_valid(data in input(node_bytes())) {
        fuzzing::btree_node(&data);
    }

    #[test]
    fn bitmap_index_random(data in input(prop::collection::vec(any::<u8>(), 0..4096))) {
        fuzzing::bitmap_index(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn metadata_image_patched(data in patches()) {
        fuzzing::metadata_image(&data);
    }
}
