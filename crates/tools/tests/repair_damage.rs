//! thin_repair on damaged metadata: every mapping that lived in an undamaged
//! leaf comes back with its data block and time, nothing is invented, and
//! the output passes Debian's thin_check.

mod repair_support;

use repair_support::*;
use uthin_tools::repair::Overrides;

#[test]
fn pristine_image_shape() {
    let p = read_pool(pristine());
    assert_eq!(p.devs.len(), 5);
    for d in p.devs.values() {
        assert_eq!(d.details.0, d.maps.len() as u64);
    }
    let depth = p.devs[&1].internals.iter().map(|x| x.1).max().unwrap();
    assert!(depth >= 1, "dev 1 needs a three-level tree");
    assert_ne!(debian_check(&to_file(pristine()).1), Some(false));
}

#[test]
fn undamaged_round_trip() {
    let orig = read_pool(pristine());
    let rec = recover(pristine(), Overrides::default()).unwrap();
    let n = assert_recovered(&orig, &rec, &[]);
    assert_eq!(n, orig.devs.values().map(|d| d.maps.len()).sum::<usize>());
    assert_nothing_invented(&orig, &rec);
    assert_eq!(rec.transaction_id, TRANSACTION);
    assert_eq!(rec.time, orig.time);
    for d in &rec.devices {
        let o = orig.devs[&d.id].details;
        let r = &d.details;
        assert_eq!(
            (
                r.mapped_blocks,
                r.transaction_id,
                r.creation_time,
                r.snapshotted_time
            ),
            o
        );
    }
}

/// Every space-map block: bitmaps, the metadata index, and the nodes of the
/// ref-count and data index trees.
fn space_map_blocks(img: &[u8]) -> Vec<u64> {
    use uthin_pdata::checksum::{classify, BlockKind};
    (1..(img.len() / BLOCK) as u64)
        .filter(|&b| {
            let d: &[u8; BLOCK] = img[b as usize * BLOCK..][..BLOCK].try_into().unwrap();
            let vs = u32::from_le_bytes(d[24..28].try_into().unwrap());
            match classify(d) {
                Some(BlockKind::Bitmap | BlockKind::Index) => true,
                Some(BlockKind::Node) => d[4] == 2 && (vs == 4 || vs == 16),
                _ => false,
            }
        })
        .collect()
}

fn total(p: &Pool) -> usize {
    p.devs.values().map(|d| d.maps.len()).sum()
}

#[test]
fn flipped_superblock_needs_block_size_then_recovers_everything() {
    let orig = read_pool(pristine());
    let mut img = pristine().to_vec();
    img[40] ^= 0xff;
    img[333] ^= 0x10;
    let e = recover(&img, Overrides::default())
        .err()
        .expect("no block size");
    assert!(e.to_string().contains("data block size"), "{e}");
    let ov = Overrides {
        data_block_size: Some(128),
        ..Default::default()
    };
    let rec = recover(&img, ov).unwrap();
    assert_eq!(assert_recovered(&orig, &rec, &[]), total(&orig));
    assert_nothing_invented(&orig, &rec);
    // No superblock: one past the highest device transaction id, the newest
    // time found, one past the highest mapped data block.
    assert_eq!(rec.transaction_id, 1);
    assert_eq!(rec.time, orig.time);
    let ov = Overrides {
        data_block_size: Some(128),
        transaction_id: Some(TRANSACTION),
        nr_data_blocks: Some(DATA_BLOCKS),
    };
    let rec = recover(&img, ov).unwrap();
    assert_eq!(
        (rec.transaction_id, rec.nr_data_blocks),
        (TRANSACTION, DATA_BLOCKS)
    );
}

#[test]
fn zeroed_top_level_root() {
    let orig = read_pool(pristine());
    let mut img = pristine().to_vec();
    zero(&mut img, orig.mapping_root);
    let rec = recover(&img, Overrides::default()).unwrap();
    assert_eq!(assert_recovered(&orig, &rec, &[]), total(&orig));
    assert_nothing_invented(&orig, &rec);
    assert_eq!(rec.transaction_id, TRANSACTION);
}

#[test]
fn zeroed_details_leaf() {
    let orig = read_pool(pristine());
    let mut img = pristine().to_vec();
    zero(&mut img, orig.details_root);
    let rec = recover(&img, Overrides::default()).unwrap();
    assert_eq!(assert_recovered(&orig, &rec, &[]), total(&orig));
    assert_nothing_invented(&orig, &rec);
    for d in &rec.devices {
        let o = orig.devs[&d.id].details;
        let newest = orig.devs[&d.id]
            .maps
            .values()
            .map(|f| f.time)
            .max()
            .unwrap_or(0);
        assert_eq!(d.details.mapped_blocks, o.0);
        // Lost details: every mapping must count as possibly shared.
        assert!(d.details.snapshotted_time > newest);
        assert!(rec.time >= d.details.snapshotted_time);
    }
}

/// Internal nodes below the root of `dev`'s tree: (shared with `other`, own).
fn inner_nodes(p: &Pool, dev: u64, other: u64) -> (u64, u64) {
    let inner = |d: u64| -> Vec<u64> {
        p.devs[&d]
            .internals
            .iter()
            .filter(|x| x.1 > 0)
            .map(|x| x.0)
            .collect()
    };
    let (mine, theirs) = (inner(dev), inner(other));
    let shared = *mine
        .iter()
        .find(|b| theirs.contains(b))
        .expect("a shared node");
    let own = *mine
        .iter()
        .find(|b| !theirs.contains(b))
        .expect("an own node");
    (shared, own)
}

#[test]
fn zeroed_internal_nodes() {
    let orig = read_pool(pristine());
    let (shared, own) = inner_nodes(&orig, 1, 2);
    for b in [shared, own] {
        let mut img = pristine().to_vec();
        zero(&mut img, b);
        let rec = recover(&img, Overrides::default()).unwrap();
        assert_eq!(assert_recovered(&orig, &rec, &[]), total(&orig), "node {b}");
        assert_nothing_invented(&orig, &rec);
    }
}

#[test]
fn zeroed_leaves() {
    let orig = read_pool(pristine());
    let mut leaves: Vec<u64> = orig
        .devs
        .values()
        .flat_map(|d| d.maps.values().map(|f| f.leaf))
        .collect();
    leaves.sort_unstable();
    leaves.dedup();
    let lost: Vec<u64> = leaves.iter().step_by(leaves.len() / 9).copied().collect();
    let mut img = pristine().to_vec();
    for &b in &lost {
        zero(&mut img, b);
    }
    let rec = recover(&img, Overrides::default()).unwrap();
    let n = assert_recovered(&orig, &rec, &lost);
    assert!(n < total(&orig));
    assert_nothing_invented(&orig, &rec);
}

#[test]
fn broken_space_maps() {
    let orig = read_pool(pristine());
    let mut img = pristine().to_vec();
    let sm = space_map_blocks(&img);
    assert!(sm.len() >= 6, "{sm:?}");
    for b in sm {
        zero(&mut img, b);
    }
    let rec = recover(&img, Overrides::default()).unwrap();
    assert_eq!(assert_recovered(&orig, &rec, &[]), total(&orig));
    assert_nothing_invented(&orig, &rec);
    assert_eq!(rec.nr_data_blocks, DATA_BLOCKS);
}

#[test]
fn broken_space_maps_and_internal_nodes() {
    let orig = read_pool(pristine());
    let (shared, own) = inner_nodes(&orig, 1, 2);
    let mut img = pristine().to_vec();
    for b in space_map_blocks(&img).into_iter().chain([shared, own]) {
        zero(&mut img, b);
    }
    let rec = recover(&img, Overrides::default()).unwrap();
    assert_eq!(assert_recovered(&orig, &rec, &[]), total(&orig));
    assert_nothing_invented(&orig, &rec);
}

#[test]
fn zeroed_device_root() {
    // dev 3's root is its own (a removal copied it); its leaves are shared
    // with the snapshot dev 4 but for the first.
    let orig = read_pool(pristine());
    let root = orig.devs[&3].root;
    assert_ne!(root, orig.devs[&4].root);
    let mut img = pristine().to_vec();
    zero(&mut img, root);
    let rec = recover(&img, Overrides::default()).unwrap();
    assert_eq!(assert_recovered(&orig, &rec, &[]), total(&orig));
    assert_nothing_invented(&orig, &rec);
}

#[test]
fn no_superblock_no_roots_rolls_back_to_the_previous_commit() {
    // With the superblock and both roots of the last commit gone, the newest
    // consistent pair of trees is the previous commit's (as in 1.x): dev 3
    // still has blocks 0..30, dev 5 lacks its last 50 mappings.
    let orig = read_pool(pristine());
    let mut img = pristine().to_vec();
    for b in [0, orig.mapping_root, orig.details_root] {
        zero(&mut img, b);
    }
    let ov = Overrides {
        data_block_size: Some(128),
        ..Default::default()
    };
    let rec = recover(&img, ov).unwrap();
    let ids: Vec<u64> = rec.devices.iter().map(|d| d.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    for id in [1, 2, 4] {
        let got = recovered_maps(&rec, id);
        let want: Vec<_> = orig.devs[&id]
            .maps
            .iter()
            .map(|(v, f)| (*v, (f.data, f.time)))
            .collect();
        assert_eq!(got.into_iter().collect::<Vec<_>>(), want, "device {id}");
    }
    assert_eq!(recovered_maps(&rec, 3).len(), 60_000);
    assert_eq!(recovered_maps(&rec, 5).len(), 150);
}

#[test]
fn held_metadata_snapshot_nodes_stay_out() {
    // The held metadata snapshot keeps old leaves for the range the live
    // tree rewrote; when the live internal node over that range is lost,
    // its own leaves come back, not the snapshot's.
    use std::sync::Arc;
    use uthin_block_io::FileDevice;
    use uthin_thin::{DevId, OpenOptions, PoolMetadata, VirtBlock};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("meta");
    {
        let dev = Arc::new(FileDevice::create(&p, 16 << 20).unwrap());
        let mut md = PoolMetadata::open(dev, OpenOptions::new(128)).unwrap();
        md.resize_data_dev(200_000).unwrap();
        md.create_thin(DevId(7)).unwrap();
        let write = |md: &mut PoolMetadata, vs: Vec<u64>| {
            for v in vs {
                let b = md.alloc_data_block().unwrap().unwrap();
                md.insert_block(DevId(7), VirtBlock(v), b).unwrap();
            }
        };
        write(
            &mut md,
            (0..80_000).map(|i| (i * 7919 + 13) % 80_000).collect(),
        );
        md.commit().unwrap();
        md.reserve_metadata_snap().unwrap();
        write(&mut md, (0..3_000).collect());
        md.commit().unwrap();
    }
    let img = std::fs::read(&p).unwrap();
    let orig = read_pool(&img);
    let dev = &orig.devs[&7];
    let first = dev.internals.iter().find(|x| x.1 == 1).unwrap().0;
    let mut bad = img.clone();
    zero(&mut bad, first);
    let rec = recover(&bad, Overrides::default()).unwrap();
    assert_eq!(assert_recovered(&orig, &rec, &[]), 80_000);
    assert_nothing_invented(&orig, &rec);
}

#[test]
fn random_damage() {
    // Zero 40 random blocks among those in use, the superblock and the two
    // roots aside (losing those is tested above): every mapping of an
    // undamaged leaf comes back, nothing is invented.
    let orig = read_pool(pristine());
    let keep = [0, orig.mapping_root, orig.details_root];
    let used = (pristine().len() / BLOCK) as u64;
    let used = (1..used)
        .filter(|b| !keep.contains(b))
        .filter(|&b| {
            pristine()[b as usize * BLOCK..][..BLOCK]
                .iter()
                .any(|&x| x != 0)
        })
        .collect::<Vec<u64>>();
    for seed in 1..=4u64 {
        let mut img = pristine().to_vec();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut lost = Vec::new();
        for _ in 0..40 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = used[(x % used.len() as u64) as usize];
            zero(&mut img, b);
            lost.push(b);
        }
        let rec = recover(&img, Overrides::default()).unwrap();
        assert_recovered(&orig, &rec, &lost);
        assert_nothing_invented(&orig, &rec);
    }
}
