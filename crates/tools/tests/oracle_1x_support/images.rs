//! The metadata images the 1.x comparisons run on, each built with uthin's
//! `PoolMetadata` (the kernel's operations) in a file: an empty pool, plain
//! thin devices, snapshot chains sharing sub-trees (so dumps hold defs and
//! refs), a held metadata snapshot, the largest device id, data blocks
//! beyond 2^32, many devices (multi-level top-level trees), three-level
//! mapping trees with partly filled leaves, and NEEDS_CHECK set.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use uthin_block_io::FileDevice;
use uthin_thin::{DataBlock, DevId, OpenOptions, PoolMetadata, VirtBlock};

/// The largest thin device id (24 bits).
pub const MAX_DEV_ID: u64 = (1 << 24) - 1;

/// A built image and what the comparisons need to know about it.
pub struct Image {
    pub name: &'static str,
    pub path: PathBuf,
    /// Device ids in the live metadata.
    pub devs: Vec<u64>,
    /// Whether a metadata snapshot is held.
    pub held: bool,
    /// Pairs of devices worth a thin_delta.
    pub pairs: Vec<(u64, u64)>,
}

/// A pool being built.
pub struct Builder {
    name: &'static str,
    path: PathBuf,
    md: PoolMetadata,
    held: bool,
    pairs: Vec<(u64, u64)>,
}

impl Builder {
    /// A fresh pool of `meta_bytes` metadata and `data_blocks` data blocks
    /// (64 KiB) in `dir`/`name`.
    pub fn new(dir: &Path, name: &'static str, meta_bytes: u64, data_blocks: u64) -> Builder {
        let path = dir.join(name);
        let dev = Arc::new(FileDevice::create(&path, meta_bytes).expect("create image"));
        let mut md = PoolMetadata::open(dev, OpenOptions::new(128)).expect("format");
        md.resize_data_dev(data_blocks).expect("resize data");
        md.commit().expect("commit");
        Builder {
            name,
            path,
            md,
            held: false,
            pairs: Vec::new(),
        }
    }

    pub fn thin(&mut self, id: u64) -> &mut Self {
        self.md.create_thin(DevId(id)).expect("create_thin");
        self
    }

    pub fn snap(&mut self, id: u64, origin: u64) -> &mut Self {
        self.md
            .create_snap(DevId(id), DevId(origin))
            .expect("create_snap");
        self.pairs.push((origin, id));
        self
    }

    pub fn delete(&mut self, id: u64) -> &mut Self {
        self.md.delete_thin(DevId(id)).expect("delete");
        self.pairs.retain(|p| p.0 != id && p.1 != id);
        self
    }

    /// Maps each of `vs` in `id` to a newly allocated data block.
    pub fn write(&mut self, id: u64, vs: impl IntoIterator<Item = u64>) -> &mut Self {
        for v in vs {
            let b = self
                .md
                .alloc_data_block()
                .expect("alloc")
                .expect("data space");
            self.md
                .insert_block(DevId(id), VirtBlock(v), b)
                .expect("insert");
        }
        self
    }

    /// Maps `v` of `id` to data block `b`, taking a reference on it.
    pub fn map_to(&mut self, id: u64, v: u64, b: u64) -> &mut Self {
        self.md
            .inc_data_range(DataBlock(b), DataBlock(b + 1))
            .expect("inc");
        self.md
            .insert_block(DevId(id), VirtBlock(v), DataBlock(b))
            .expect("insert");
        self
    }

    pub fn discard(&mut self, id: u64, vs: impl IntoIterator<Item = u64>) -> &mut Self {
        for v in vs {
            self.md
                .remove_block(DevId(id), VirtBlock(v))
                .expect("remove");
        }
        self
    }

    pub fn transaction(&mut self, t: u64) -> &mut Self {
        let cur = self.md.transaction_id().expect("transaction");
        self.md.set_transaction_id(cur, t).expect("set transaction");
        self
    }

    pub fn commit(&mut self) -> &mut Self {
        self.md.commit().expect("commit");
        self
    }

    pub fn hold(&mut self) -> &mut Self {
        self.md
            .reserve_metadata_snap()
            .expect("reserve_metadata_snap");
        self.md.commit().expect("commit");
        self.held = true;
        self
    }

    pub fn needs_check(&mut self) -> &mut Self {
        self.md.set_needs_check().expect("needs_check");
        self
    }

    pub fn pair(&mut self, a: u64, b: u64) -> &mut Self {
        self.pairs.push((a, b));
        self
    }

    /// Commits, closes, and describes the image.
    pub fn finish(self) -> Image {
        let Builder {
            name,
            path,
            mut md,
            held,
            pairs,
        } = self;
        md.commit().expect("commit");
        let devs = md
            .device_ids()
            .expect("device ids")
            .into_iter()
            .map(|d| d.0)
            .collect();
        md.close().expect("close");
        Image {
            name,
            path,
            devs,
            held,
            pairs,
        }
    }
}

/// A pseudo-random permutation of `0..n` (n coprime with 7919).
fn scramble(i: u64, n: u64) -> u64 {
    (i * 7919 + 13) % n
}

/// Runs of 1..=40 blocks separated by gaps of 0..=5: `n` virtual blocks
/// from `first`.
fn runs(first: u64, n: u64, seed: u64) -> Vec<u64> {
    let mut v = Vec::with_capacity(n as usize);
    let (mut at, mut s) = (first, seed.wrapping_mul(2654435761) | 1);
    while (v.len() as u64) < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let len = 1 + s % 40;
        for _ in 0..len.min(n - v.len() as u64) {
            v.push(at);
            at += 1;
        }
        at += (s >> 8) % 6;
    }
    v
}

/// No devices at all.
pub fn empty(dir: &Path) -> Image {
    Builder::new(dir, "empty", 8 << 20, 1000).finish()
}

/// Plain thin devices: runs, sparse blocks, an empty device, two devices
/// written interleaved (single mappings), times and transactions apart.
pub fn thins(dir: &Path) -> Image {
    let mut b = Builder::new(dir, "thins", 16 << 20, 100_000);
    b.thin(0).thin(1).thin(2).thin(3);
    b.write(0, runs(0, 3000, 1));
    b.write(1, (0..800).map(|i| i * 7 + 3));
    b.commit().transaction(3);
    for i in 0..500 {
        b.write(0, [100_000 + i]).write(3, [i * 2]);
    }
    b.snap(4, 3).write(3, 0..10).transaction(9);
    b.pair(0, 1).pair(1, 3);
    b.finish()
}

/// Snapshot chains sharing sub-trees: a whole tree shared by an untouched
/// snapshot, a chain whose ends were rewritten (its middle leaves shared
/// by three devices), a deleted link, and rewrites in the middle.
fn snapshots_into(b: &mut Builder) {
    b.thin(1).write(1, 0..20_000).commit();
    b.snap(2, 1).commit();
    b.write(2, (0..50).chain(19_900..20_000)).commit();
    b.snap(3, 2).write(3, 5_000..5_100).commit();
    b.write(1, 10_000..10_010).commit();
    b.snap(4, 1).commit();
    b.snap(5, 3).write(5, [7, 70_000]).delete(3).commit();
    b.thin(6).write(6, runs(0, 1000, 6)).snap(7, 6).commit();
    b.discard(7, 100..200).commit();
    b.pair(1, 5).pair(2, 5).transaction(11);
}

pub fn snapshots(dir: &Path) -> Image {
    let mut b = Builder::new(dir, "snapshots", 32 << 20, 200_000);
    snapshots_into(&mut b);
    b.finish()
}

/// A held metadata snapshot, then the live metadata moves on: a new
/// device, rewrites, a deleted device.
pub fn held(dir: &Path) -> Image {
    let mut b = Builder::new(dir, "held", 32 << 20, 200_000);
    snapshots_into(&mut b);
    b.hold();
    b.thin(500).write(500, runs(0, 300, 500));
    b.write(1, 0..300).delete(4).commit();
    b.pair(1, 500);
    b.finish()
}

/// Device ids 0, 1, 2^24-2 (a snapshot) and 2^24-1.
pub fn max_dev_id(dir: &Path) -> Image {
    let mut b = Builder::new(dir, "max_dev_id", 16 << 20, 100_000);
    b.thin(0).thin(MAX_DEV_ID).thin(1);
    b.write(MAX_DEV_ID, runs(0, 2000, 3)).write(0, [5]);
    b.write(1, [u64::from(u32::MAX) + 5, (1 << 40) + 9]);
    b.snap(MAX_DEV_ID - 1, MAX_DEV_ID)
        .write(MAX_DEV_ID - 1, 0..20);
    b.pair(0, MAX_DEV_ID);
    b.finish()
}

/// A data device of 2^32 + 2^16 blocks with mappings beyond block 2^32
/// (about 1 GiB of data space map; sparse file).
pub fn big_data(dir: &Path) -> Image {
    let top = (1u64 << 32) + (1 << 16);
    let mut b = Builder::new(dir, "big_data", 1100 << 20, top);
    b.thin(1).thin(2);
    for i in 0..600 {
        b.map_to(1, i, (1u64 << 32) + i);
    }
    b.map_to(1, 1000, top - 1).map_to(1, 1001, (1 << 32) - 1);
    b.write(2, 0..100)
        .snap(3, 1)
        .map_to(3, 5, (1u64 << 32) + 10_000);
    b.pair(1, 3);
    b.finish()
}

/// 600 devices: multi-level details and top-level mapping trees.
pub fn many_devices(dir: &Path) -> Image {
    let mut b = Builder::new(dir, "many_devices", 32 << 20, 100_000);
    for id in 0..600u64 {
        let id = id * 3 + 1;
        b.thin(id).write(id, (0..id % 5).map(|v| v * 11));
    }
    for id in 0..40u64 {
        b.snap(5000 + id, id * 3 + 1);
    }
    b.commit().transaction(600);
    b.finish()
}

/// Three-level mapping trees: 150k mappings inserted out of order (partly
/// filled leaves), a snapshot rewritten at every 1000th block (most
/// leaves unshared, interior nodes rewritten), and a snapshot of it.
pub fn multi_level(dir: &Path) -> Image {
    let mut b = Builder::new(dir, "multi_level", 64 << 20, 400_000);
    b.thin(7)
        .write(7, (0..150_000).map(|i| scramble(i, 150_000)));
    b.commit();
    b.snap(8, 7).write(8, (0..150).map(|i| i * 1000)).commit();
    b.snap(9, 8).discard(9, 50_000..50_500).commit();
    b.pair(7, 9);
    b.finish()
}

/// thins() with NEEDS_CHECK set.
pub fn needs_check(dir: &Path) -> Image {
    let mut b = Builder::new(dir, "needs_check", 8 << 20, 10_000);
    b.thin(1).write(1, runs(0, 500, 9)).needs_check();
    b.finish()
}
