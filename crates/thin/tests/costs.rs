//! Costs that must not grow (issue: "a lookup costs the same at depth 1 and
//! depth 1000"; "snapshot creation time at 10 and at 10 million mapped
//! blocks must be equal"), measured in metadata device I/O rather than
//! time, so the test is exact and immune to a busy machine:
//!
//! * a lookup with a cold cache reads as many metadata blocks in a snapshot
//!   at depth 1000 of a chain of snapshots as at depth 1;
//! * creating and committing a snapshot of a device with 50 000 mapped
//!   blocks (a three-level mapping tree) reads and writes as many metadata
//!   blocks as for a device with 10.

use std::sync::Arc;
use uthin_block_io::testing::{FaultyDevice, MemDevice};
use uthin_thin::{DevId, OpenOptions, PoolMetadata, VirtBlock};

const MIB: u64 = 1 << 20;

/// A committed pool on a memory device.
fn pool(bytes: u64, data_blocks: u64) -> (Arc<MemDevice>, PoolMetadata) {
    let dev = Arc::new(MemDevice::new(bytes));
    let mut md = PoolMetadata::open(dev.clone(), OpenOptions::new(128)).unwrap();
    md.resize_data_dev(data_blocks).unwrap();
    md.commit().unwrap();
    (dev, md)
}

/// Maps virtual blocks `vs` of `dev` to fresh data blocks.
fn map(md: &mut PoolMetadata, dev: u64, vs: impl IntoIterator<Item = u64>) {
    for v in vs {
        let b = md.alloc_data_block().unwrap().unwrap();
        md.insert_block(DevId(dev), VirtBlock(v), b).unwrap();
    }
}

/// Reopens a copy of `img` on a counting device with the smallest cache.
fn cold(img: Vec<u8>) -> (Arc<FaultyDevice<MemDevice>>, PoolMetadata) {
    let dev = Arc::new(FaultyDevice::new(MemDevice::from_bytes(img)));
    let mut opts = OpenOptions::new(128);
    opts.cache_blocks = 16;
    let md = PoolMetadata::open(dev.clone(), opts).unwrap();
    (dev, md)
}

/// Metadata reads of one cold lookup of `v` in `dev`.
fn lookup_reads(img: &[u8], dev: u64, v: u64) -> u64 {
    let (d, md) = cold(img.to_vec());
    let before = d.counts().0;
    assert!(md.find_block(DevId(dev), VirtBlock(v)).unwrap().is_some());
    d.counts().0 - before
}

#[test]
fn lookups_cost_the_same_at_depth_1_and_1000() {
    const DEPTH: u64 = 1000;
    let (dev, mut md) = pool(16 * MIB, 4000);
    // An origin with a two-level mapping tree (600 mappings, 3 leaves).
    md.create_thin(DevId(0)).unwrap();
    map(&mut md, 0, 0..600);
    md.commit().unwrap();
    // A chain of snapshots of snapshots, each writing one block of its own.
    for i in 1..=DEPTH {
        md.create_snap(DevId(i), DevId(i - 1)).unwrap();
        map(&mut md, i, [600 + i]);
        if i % 100 == 0 {
            md.commit().unwrap();
        }
    }
    md.commit().unwrap();
    md.close().unwrap();
    let img = dev.snapshot();
    for v in [0, 300, 599] {
        let at1 = lookup_reads(&img, 1, v);
        let at1000 = lookup_reads(&img, DEPTH, v);
        eprintln!("vblock {v}: {at1} reads at depth 1, {at1000} at depth {DEPTH}");
        assert!(at1 > 0);
        assert_eq!(at1, at1000, "vblock {v}: reads at depth 1 and {DEPTH}");
    }
}

/// (reads, writes) of `create_snap` and its commit, from a cold cache.
fn snapshot_io(img: Vec<u8>, origin: u64) -> (u64, u64) {
    let (d, mut md) = cold(img);
    let (r0, w0, _) = d.counts();
    md.create_snap(DevId(100), DevId(origin)).unwrap();
    md.commit().unwrap();
    let (r1, w1, _) = d.counts();
    (r1 - r0, w1 - w0)
}

#[test]
fn snapshot_cost_does_not_grow_with_mapped_blocks() {
    const BIG: u64 = 50_000;
    let (dev, mut md) = pool(64 * MIB, BIG + 100);
    md.create_thin(DevId(1)).unwrap();
    map(&mut md, 1, 0..10);
    md.create_thin(DevId(2)).unwrap();
    // Spread out, so the tree has three levels (root, internal, leaves).
    map(&mut md, 2, (0..BIG).map(|v| v * 3));
    md.commit().unwrap();
    md.close().unwrap();
    let img = dev.snapshot();
    let small = snapshot_io(img.clone(), 1);
    let big = snapshot_io(img, 2);
    eprintln!("create_snap + commit (reads, writes): 10 mapped {small:?}, {BIG} mapped {big:?}");
    assert_eq!(small, big, "metadata I/O of a snapshot: 10 vs {BIG} mapped");
}
