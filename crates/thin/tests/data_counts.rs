//! Data block count queries and range increments (FORMAT.md §5.3): the
//! calls the pool engine's discard passdown builds on.
//!
//! `inc_data_range` / `dec_data_range` over a range crossing a bitmap
//! boundary, counts of 2 (shared) and 3 (the ref-count tree) that survive a
//! commit and a reopen, refusals that change nothing (a range past the end,
//! a decrement of a free block), and the space maps back to empty after the
//! decrements, as Debian's thin_check sees them.

mod common;

use common::{assert_thin_check, write_image};
use std::sync::Arc;
use uthin_block_io::testing::MemDevice;
use uthin_thin::{DataBlock, Error, OpenOptions, PoolMetadata};

const NR_DATA: u64 = 40_000;
/// The first data block of the second bitmap (16320 entries per bitmap).
const BOUNDARY: u64 = 16_320;

fn counts(md: &PoolMetadata, r: std::ops::Range<u64>) -> Vec<u32> {
    r.map(|b| md.data_block_count(DataBlock(b)).unwrap())
        .collect()
}

/// What the counts of `BOUNDARY - 10 .. BOUNDARY + 10` are after the three
/// increments below: 1, then 2 from -5, 3 from -2 to +2, 2 to +5, 1.
fn expected() -> Vec<u32> {
    (BOUNDARY - 10..BOUNDARY + 10)
        .map(|b| match b {
            b if (BOUNDARY - 2..BOUNDARY + 2).contains(&b) => 3,
            b if (BOUNDARY - 5..BOUNDARY + 5).contains(&b) => 2,
            _ => 1,
        })
        .collect()
}

fn range(a: u64, b: u64) -> (DataBlock, DataBlock) {
    (DataBlock(a), DataBlock(b))
}

#[test]
fn range_increments_and_shared_queries() {
    let dev = Arc::new(MemDevice::new(8 << 20));
    let mut md = PoolMetadata::open(dev.clone(), OpenOptions::new(128)).unwrap();
    md.resize_data_dev(NR_DATA).unwrap();
    md.commit().unwrap();
    let span = BOUNDARY - 10..BOUNDARY + 10;

    for (a, b) in [
        range(BOUNDARY - 10, BOUNDARY + 10),
        range(BOUNDARY - 5, BOUNDARY + 5),
        range(BOUNDARY - 2, BOUNDARY + 2),
    ] {
        md.inc_data_range(a, b).unwrap();
    }
    assert_eq!(counts(&md, span.clone()), expected());
    assert_eq!(counts(&md, BOUNDARY - 11..BOUNDARY - 10), vec![0]);
    assert_eq!(counts(&md, BOUNDARY + 10..BOUNDARY + 11), vec![0]);
    for b in span.clone() {
        let c = md.data_block_count(DataBlock(b)).unwrap();
        assert_eq!(md.data_block_is_shared(DataBlock(b)).unwrap(), c > 1, "{b}");
    }
    assert_eq!(md.free_data_blocks().unwrap(), NR_DATA - 20);
    // Incremented blocks are in use: the allocator skips them.
    let got = md.alloc_data_block().unwrap().unwrap();
    assert!(!span.contains(&got.0), "allocated {got}, which is in use");
    md.dec_data_range(got, DataBlock(got.0 + 1)).unwrap(); // give it back

    // Refusals change nothing and leave the transaction usable.
    let refused = [
        // Past the end of the data space.
        (true, range(NR_DATA - 1, NR_DATA + 1)),
        // Backwards.
        (true, range(5, 4)),
        // Decrementing a range that holds a free block.
        (false, range(BOUNDARY - 12, BOUNDARY - 9)),
    ];
    for (inc, (a, b)) in refused {
        let r = if inc {
            md.inc_data_range(a, b)
        } else {
            md.dec_data_range(a, b)
        };
        assert!(matches!(r, Err(Error::Invalid(_))), "{a}..{b}: {r:?}");
        assert!(!md.needs_abort(), "{a}..{b}: a refusal poisoned the pool");
    }
    assert_eq!(counts(&md, span.clone()), expected());
    assert_eq!(md.data_block_count(DataBlock(NR_DATA - 1)).unwrap(), 0);

    // The counts (3 lives in the ref-count tree) survive a commit and a
    // reopen.
    md.commit().unwrap();
    let reopened = PoolMetadata::open(
        Arc::new(MemDevice::from_bytes(dev.snapshot())),
        OpenOptions::new(128),
    )
    .unwrap();
    assert_eq!(counts(&reopened, span.clone()), expected());
    assert_eq!(reopened.free_data_blocks().unwrap(), NR_DATA - 20);
    drop(reopened);

    // Back down to nothing: the space maps are those of an empty pool.
    for (a, b) in [
        range(BOUNDARY - 2, BOUNDARY + 2),
        range(BOUNDARY - 5, BOUNDARY + 5),
        range(BOUNDARY - 10, BOUNDARY + 10),
    ] {
        md.dec_data_range(a, b).unwrap();
    }
    assert_eq!(counts(&md, span.clone()), vec![0; 20]);
    assert_eq!(md.free_data_blocks().unwrap(), NR_DATA);
    md.commit().unwrap();
    assert_eq!(md.allocatable_data_blocks().unwrap(), NR_DATA);
    md.close().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    write_image(&path, &dev.snapshot());
    assert_thin_check(&path);
}
