//! Shared pieces of the thin_repair tests: a pool built with `PoolMetadata`
//! (several devices, snapshots sharing sub-trees, three-level trees, stale
//! nodes left by earlier commits), an independent raw reader of metadata
//! images (to know which mapping lives in which leaf before damage), and
//! helpers to damage, repair and check.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use uthin_block_io::{BlockDevice, FileDevice};
use uthin_thin::{DevId, OpenOptions, PoolMetadata, VirtBlock};
use uthin_tools::repair::{self, Overrides, Recovered, RepairOptions};
use uthin_tools::report::Report;

pub const BLOCK: usize = 4096;
/// Metadata image size (64 MiB).
pub const META_BYTES: u64 = 64 << 20;
pub const DATA_BLOCKS: u64 = 1 << 20;
pub const TRANSACTION: u64 = 7;

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// A pseudo-random permutation step (no rand dependency).
fn scramble(i: u64, n: u64) -> u64 {
    (i * 7919 + 13) % n
}

fn write_range(md: &mut PoolMetadata, dev: u64, vblocks: impl Iterator<Item = u64>) {
    for v in vblocks {
        let b = md.alloc_data_block().unwrap().unwrap();
        md.insert_block(DevId(dev), VirtBlock(v), b).unwrap();
    }
}

fn build(path: &Path) {
    let dev = Arc::new(FileDevice::create(path, META_BYTES).unwrap());
    let mut md = PoolMetadata::open(dev, OpenOptions::new(128)).unwrap();
    md.resize_data_dev(DATA_BLOCKS).unwrap();
    // dev 1: 160k mappings inserted out of order (partly filled leaves,
    // three levels).
    md.create_thin(DevId(1)).unwrap();
    write_range(&mut md, 1, (0..160_000).map(|i| scramble(i, 160_000)));
    md.commit().unwrap();
    // dev 2: snapshot of 1; both then diverge at the ends of the key space,
    // so the middle of their trees stays shared.
    md.create_snap(DevId(2), DevId(1)).unwrap();
    md.commit().unwrap();
    write_range(&mut md, 2, (5_000..8_000).chain(170_000..173_000));
    md.commit().unwrap();
    write_range(&mut md, 1, 2_000..3_000);
    md.commit().unwrap();
    write_range(&mut md, 1, 160_000..160_300);
    md.commit().unwrap();
    // dev 3: 60k sparse mappings; dev 4 a snapshot of it; dev 5 small.
    md.create_thin(DevId(3)).unwrap();
    write_range(&mut md, 3, (0..60_000).map(|i| 3 * i));
    md.commit().unwrap();
    md.create_snap(DevId(4), DevId(3)).unwrap();
    md.commit().unwrap();
    md.create_thin(DevId(5)).unwrap();
    write_range(&mut md, 5, 0..150);
    md.commit().unwrap();
    write_range(&mut md, 5, 150..200);
    md.remove_range(DevId(3), VirtBlock(0), VirtBlock(30))
        .unwrap();
    md.set_transaction_id(0, TRANSACTION).unwrap();
    md.commit().unwrap();
}

/// The pristine image (built once per test binary).
pub fn pristine() -> &'static [u8] {
    static IMG: OnceLock<Vec<u8>> = OnceLock::new();
    IMG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta");
        build(&p);
        std::fs::read(&p).unwrap()
    })
}

/// A mapping as found in an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub data: u64,
    pub time: u32,
    pub leaf: u64,
}

/// One device of an image.
#[derive(Clone, Debug, Default)]
pub struct Dev {
    pub root: u64,
    /// (mapped_blocks, transaction_id, creation_time, snapshotted_time)
    pub details: (u64, u64, u32, u32),
    pub maps: BTreeMap<u64, Found>,
    /// Internal nodes of the device's tree, with their depth.
    pub internals: Vec<(u64, usize)>,
}

/// An image read without uthin's code.
#[derive(Debug, Default)]
pub struct Pool {
    pub time: u32,
    pub transaction: u64,
    pub nr_data_blocks: u64,
    pub mapping_root: u64,
    pub details_root: u64,
    pub devs: BTreeMap<u64, Dev>,
}

fn node(img: &[u8], b: u64) -> &[u8] {
    &img[b as usize * BLOCK..(b as usize + 1) * BLOCK]
}

/// Every (key, value) in the leaves of the tree at `root`; calls `on_node`
/// for each internal node with its depth.
fn walk(
    img: &[u8],
    root: u64,
    depth: usize,
    out: &mut Vec<(u64, Vec<u8>, u64)>,
    on_node: &mut dyn FnMut(u64, usize),
) {
    let n = node(img, root);
    let (flags, nr, max, vs) = (le32(n, 4), le32(n, 16), le32(n, 20), le32(n, 24));
    for i in 0..nr as usize {
        let k = le64(n, 32 + 8 * i);
        let vo = 32 + 8 * max as usize + vs as usize * i;
        let v = &n[vo..vo + vs as usize];
        if flags == 1 {
            on_node(root, depth);
            walk(img, le64(v, 0), depth + 1, out, on_node);
        } else {
            out.push((k, v.to_vec(), root));
        }
    }
}

/// Reads a whole (undamaged) image.
pub fn read_pool(img: &[u8]) -> Pool {
    let sb = node(img, 0);
    let mut p = Pool {
        time: le32(sb, 44),
        transaction: le64(sb, 48),
        nr_data_blocks: le64(sb, 64),
        mapping_root: le64(sb, 320),
        details_root: le64(sb, 328),
        ..Default::default()
    };
    let mut top = Vec::new();
    walk(img, p.mapping_root, 0, &mut top, &mut |_, _| {});
    let mut det = Vec::new();
    walk(img, p.details_root, 0, &mut det, &mut |_, _| {});
    for (id, v, _) in top {
        let root = le64(&v, 0);
        let mut d = Dev {
            root,
            ..Default::default()
        };
        let mut maps = Vec::new();
        let mut internals = Vec::new();
        walk(img, root, 0, &mut maps, &mut |b, depth| {
            if !internals.contains(&(b, depth)) {
                internals.push((b, depth));
            }
        });
        d.internals = internals;
        for (k, v, leaf) in maps {
            let v = le64(&v, 0);
            let (data, time) = (v >> 24, (v & 0xFF_FFFF) as u32);
            d.maps.insert(k, Found { data, time, leaf });
        }
        p.devs.insert(id, d);
    }
    for (id, v, _) in det {
        let d = p.devs.entry(id).or_default();
        d.details = (le64(&v, 0), le64(&v, 8), le32(&v, 16), le32(&v, 20));
    }
    p
}

/// Zeroes block `b`.
pub fn zero(img: &mut [u8], b: u64) {
    img[b as usize * BLOCK..(b as usize + 1) * BLOCK].fill(0);
}

/// Writes `img` to a fresh temporary file and returns (dir, path).
pub fn to_file(img: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("in");
    std::fs::write(&p, img).unwrap();
    (dir, p)
}

/// Recovers from `img`.
pub fn recover(img: &[u8], ov: Overrides) -> uthin_tools::Result<Recovered> {
    let (_d, p) = to_file(img);
    let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::open(&p, false).unwrap());
    repair::recover(
        dev,
        &RepairOptions {
            overrides: ov,
            ..Default::default()
        },
        &Report::silent(),
    )
}

/// Mappings of a recovered device: vblock -> (data, time).
pub fn recovered_maps(rec: &Recovered, id: u64) -> BTreeMap<u64, (u64, u32)> {
    let d = rec
        .devices
        .iter()
        .find(|d| d.id == id)
        .expect("device recovered");
    let mut m = BTreeMap::new();
    rec.for_each_mapping(d, &mut |v, b, t| {
        m.insert(v, (b, t));
        Ok(())
    })
    .unwrap();
    m
}

/// Repairs `img` into a fresh 64 MiB output; returns the output image.
pub fn repair_to_image(img: &[u8], ov: Overrides) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, input) = to_file(img);
    let out = dir.path().join("out");
    std::fs::File::create(&out)
        .unwrap()
        .set_len(META_BYTES)
        .unwrap();
    repair::repair(
        &input,
        &out,
        &RepairOptions {
            overrides: ov,
            ..Default::default()
        },
        &Report::silent(),
    )
    .unwrap();
    (dir, out)
}

/// Debian's thin_check -q on `path`; None if it is not installed.
pub fn debian_check(path: &Path) -> Option<bool> {
    let bin = ["/usr/sbin/thin_check", "/sbin/thin_check"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let st = std::process::Command::new(bin)
        .arg("-q")
        .arg(path)
        .status()
        .ok()?;
    Some(st.success())
}

/// Asserts every mapping of `orig` not in a leaf of `lost` is recovered with
/// the same data block and time; returns how many were expected.
pub fn assert_recovered(orig: &Pool, rec: &Recovered, lost: &[u64]) -> usize {
    let mut n = 0;
    for (&id, d) in &orig.devs {
        let got = recovered_maps(rec, id);
        for (&v, f) in &d.maps {
            if lost.contains(&f.leaf) {
                continue;
            }
            n += 1;
            assert_eq!(
                got.get(&v),
                Some(&(f.data, f.time)),
                "device {id} block {v} (leaf {})",
                f.leaf
            );
        }
    }
    n
}

/// Asserts nothing was made up: every recovered mapping is in `orig`.
pub fn assert_nothing_invented(orig: &Pool, rec: &Recovered) {
    for d in &rec.devices {
        let o = &orig.devs[&d.id];
        rec.for_each_mapping(d, &mut |v, b, t| {
            let f = o.maps.get(&v);
            assert_eq!(
                f.map(|f| (f.data, f.time)),
                Some((b, t)),
                "device {} block {v}",
                d.id
            );
            Ok(())
        })
        .unwrap();
    }
}
