//! thin_repair's written output: Debian's thin_check accepts it, and read
//! back independently it holds the recovered devices, details and mappings
//! (times included), with leaves a snapshot shares still shared.

mod repair_support;

use repair_support::*;
use uthin_tools::repair::Overrides;

/// Repairs `img`, checks the output with Debian's thin_check and returns it
/// read back.
fn repaired(img: &[u8], ov: Overrides) -> Pool {
    let (_dir, out) = repair_to_image(img, ov);
    assert_ne!(
        debian_check(&out),
        Some(false),
        "Debian thin_check rejects the output"
    );
    read_pool(&std::fs::read(&out).unwrap())
}

fn assert_same_mappings(want: &Pool, got: &Pool, lost: &[u64]) {
    for (id, d) in &want.devs {
        let g = &got.devs[id];
        for (v, f) in &d.maps {
            if lost.contains(&f.leaf) {
                continue;
            }
            let h = g.maps.get(v).map(|h| (h.data, h.time));
            assert_eq!(h, Some((f.data, f.time)), "device {id} block {v}");
        }
        assert_eq!(
            g.details.0,
            g.maps.len() as u64,
            "device {id} mapped_blocks"
        );
    }
}

#[test]
fn undamaged_output_keeps_everything() {
    let orig = read_pool(pristine());
    let got = repaired(pristine(), Overrides::default());
    assert_eq!(
        (got.time, got.transaction, got.nr_data_blocks),
        (orig.time, orig.transaction, orig.nr_data_blocks)
    );
    assert_eq!(got.devs.len(), orig.devs.len());
    assert_same_mappings(&orig, &got, &[]);
    for (id, d) in &orig.devs {
        assert_eq!(got.devs[id].details, d.details, "device {id}");
    }
    // The snapshot still shares leaves with its origin.
    let leaves = |p: &Pool, id: u64| -> std::collections::BTreeSet<u64> {
        p.devs[&id].maps.values().map(|f| f.leaf).collect()
    };
    assert!(leaves(&got, 1).intersection(&leaves(&got, 2)).count() > 100);
}

#[test]
fn flipped_superblock_with_overrides() {
    let orig = read_pool(pristine());
    let mut img = pristine().to_vec();
    img[0] ^= 1;
    let got = repaired(
        &img,
        Overrides {
            data_block_size: Some(128),
            transaction_id: Some(TRANSACTION),
            nr_data_blocks: Some(DATA_BLOCKS),
        },
    );
    assert_eq!(
        (got.transaction, got.nr_data_blocks),
        (TRANSACTION, DATA_BLOCKS)
    );
    assert_same_mappings(&orig, &got, &[]);
}

#[test]
fn damaged_roots_leaves_and_space_maps() {
    let orig = read_pool(pristine());
    let mut img = pristine().to_vec();
    let leaf = orig.devs[&1].maps[&50_000].leaf;
    let inner = orig.devs[&2].internals.iter().find(|x| x.1 == 1).unwrap().0;
    for b in [orig.mapping_root, orig.details_root, leaf, inner] {
        zero(&mut img, b);
    }
    let got = repaired(&img, Overrides::default());
    assert_same_mappings(&orig, &got, &[leaf]);
}
