//! Test pools for the ls, delta, rmap, trim and pack tests: metadata built
//! with uthin's `PoolMetadata` in a temporary file, a model of every
//! mapping read back through `PoolMetadata`, and Debian's 0.9.0 tools as
//! oracles where their output format is 1.x's.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use uthin_block_io::FileDevice;
use uthin_thin::{DataBlock, DevId, OpenOptions, PoolMetadata, VirtBlock};

/// Data block size of the test pools (64 KiB).
pub const BS: u32 = 128;

/// dev id -> (virtual block -> data block).
pub type Model = BTreeMap<u64, BTreeMap<u64, u64>>;

/// A pool being built.
pub struct Pool {
    pub dir: tempfile::TempDir,
    pub meta: PathBuf,
    pub md: PoolMetadata,
}

impl Pool {
    /// A fresh pool of `meta_mib` MiB of metadata and `data_blocks` blocks.
    pub fn new(meta_mib: u64, data_blocks: u64) -> Pool {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta");
        let dev = Arc::new(FileDevice::create(&meta, meta_mib << 20).unwrap());
        let mut md = PoolMetadata::open(dev, OpenOptions::new(BS)).unwrap();
        md.resize_data_dev(data_blocks).unwrap();
        md.commit().unwrap();
        Pool { dir, meta, md }
    }

    /// Creates thin device `id`.
    pub fn thin(&mut self, id: u64) -> &mut Self {
        self.md.create_thin(DevId(id)).unwrap();
        self
    }

    /// Creates `id` as a snapshot of `origin`.
    pub fn snap(&mut self, id: u64, origin: u64) -> &mut Self {
        self.md.create_snap(DevId(id), DevId(origin)).unwrap();
        self
    }

    /// Maps virtual blocks `vs` of `id` to newly allocated data blocks.
    pub fn write(&mut self, id: u64, vs: impl IntoIterator<Item = u64>) -> &mut Self {
        for v in vs {
            let b = self
                .md
                .alloc_data_block()
                .unwrap()
                .expect("free data block");
            self.md.insert_block(DevId(id), VirtBlock(v), b).unwrap();
        }
        self
    }

    /// Maps `v` of `id` to data block `b` (taking a reference on it).
    pub fn map_to(&mut self, id: u64, v: u64, b: u64) -> &mut Self {
        self.md
            .inc_data_range(DataBlock(b), DataBlock(b + 1))
            .unwrap();
        self.md
            .insert_block(DevId(id), VirtBlock(v), DataBlock(b))
            .unwrap();
        self
    }

    /// Unmaps `vs` of `id`.
    pub fn discard(&mut self, id: u64, vs: impl IntoIterator<Item = u64>) -> &mut Self {
        for v in vs {
            self.md.remove_block(DevId(id), VirtBlock(v)).unwrap();
        }
        self
    }

    pub fn commit(&mut self) -> &mut Self {
        self.md.commit().unwrap();
        self
    }

    /// Every mapping, read back through `PoolMetadata`.
    pub fn model(&self) -> Model {
        let mut m = Model::new();
        for id in self.md.device_ids().unwrap() {
            let e = m.entry(id.0).or_default();
            self.md
                .for_each_mapping(id, VirtBlock(0), VirtBlock(u64::MAX), &mut |v, bt| {
                    e.insert(v.0, bt.block.0);
                })
                .unwrap();
        }
        m
    }
}

/// Mappings of `m` whose data block is mapped more than once in the pool:
/// 1.x's "shared" for a pool whose trees only share what snapshots share.
pub fn shared_counts(m: &Model) -> BTreeMap<u64, u64> {
    let mut uses: BTreeMap<u64, u32> = BTreeMap::new();
    for d in m.values().flat_map(|dev| dev.values()) {
        *uses.entry(*d).or_default() += 1;
    }
    m.iter()
        .map(|(&id, dev)| (id, dev.values().filter(|d| uses[d] > 1).count() as u64))
        .collect()
}

/// Runs a tool from Debian's thin-provisioning-tools 0.9.0.
pub fn debian(tool: &str, args: &[&str]) -> std::process::Output {
    let path = ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{tool} is not installed: run scripts/install-test-deps.sh"));
    Command::new(path).args(args).output().unwrap()
}

/// Debian's stdout, asserting success.
pub fn debian_ok(tool: &str, args: &[&str]) -> String {
    let out = debian(tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A small deterministic generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
