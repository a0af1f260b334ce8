//! Shared support for the thin_check tests: pools built with uthin's
//! `PoolMetadata`, raw block surgery to damage them, uthin's checker, and
//! Debian's thin_check 0.9.0 as an oracle.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use uthin_block_io::FileDevice;
use uthin_pdata::checksum::{self, BlockKind};
use uthin_pdata::types::{le32, le64, put32, put64};
use uthin_thin::{DevId, OpenOptions, PoolMetadata, VirtBlock};
use uthin_tools::check::{check_path, CheckOptions, CheckOutcome};
use uthin_tools::report::Report;

pub const BS: usize = 4096;

/// How to build a pool.
#[derive(Clone, Debug)]
pub struct Spec {
    pub devices: u64,
    /// Mappings per device (virtual blocks 0..n, some in runs, some sparse).
    pub mappings: u64,
    /// Snapshots of device 0, each then overwritten at a few blocks.
    pub snapshots: u64,
    /// Take a metadata snapshot, then change the live metadata.
    pub held_snap: bool,
    pub meta_bytes: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            devices: 3,
            mappings: 2000,
            snapshots: 1,
            held_snap: false,
            meta_bytes: 16 << 20,
        }
    }
}

fn map(md: &mut PoolMetadata, dev: u64, v: u64) {
    let b = md.alloc_data_block().unwrap().expect("data space");
    md.insert_block(DevId(dev), VirtBlock(v), b).unwrap();
}

/// Builds a pool in `dir`/`name` and returns its path.
pub fn build(dir: &Path, name: &str, spec: &Spec) -> PathBuf {
    let path = dir.join(name);
    let dev = Arc::new(FileDevice::create(&path, spec.meta_bytes).unwrap());
    let mut md = PoolMetadata::open(dev, OpenOptions::new(128)).unwrap();
    md.resize_data_dev(spec.devices * spec.mappings * 2 + 100_000)
        .unwrap();
    for d in 0..spec.devices {
        md.create_thin(DevId(d)).unwrap();
        for v in 0..spec.mappings {
            // Mostly consecutive, with a sparse tail.
            let vb = if v % 10 == 9 { 1_000_000 + v * 7 } else { v };
            map(&mut md, d, vb);
        }
    }
    md.commit().unwrap();
    for s in 0..spec.snapshots {
        let id = 1000 + s;
        md.create_snap(DevId(id), DevId(0)).unwrap();
        for v in (0..spec.mappings.min(600)).step_by(97) {
            map(&mut md, id, v + s);
        }
        md.commit().unwrap();
    }
    if spec.held_snap {
        md.reserve_metadata_snap().unwrap();
        md.commit().unwrap();
        for v in 0..50 {
            map(&mut md, 0, v * 13);
        }
        md.create_thin(DevId(500)).unwrap();
        map(&mut md, 500, 1);
        md.commit().unwrap();
    }
    md.close().unwrap();
    path
}

/// A small default pool.
pub fn small(dir: &Path, name: &str) -> PathBuf {
    build(dir, name, &Spec::default())
}

pub fn read(path: &Path, b: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; BS];
    f.read_exact_at(&mut buf, b * BS as u64).unwrap();
    buf
}

pub fn write(path: &Path, b: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, b * BS as u64).unwrap();
}

/// Applies `f` to block `b`, then re-seals it as `kind` (None: leave the
/// checksum as it is, so the damage shows as a checksum error).
pub fn patch(path: &Path, b: u64, kind: Option<BlockKind>, f: impl FnOnce(&mut [u8])) {
    let mut d = read(path, b);
    f(&mut d);
    if let Some(k) = kind {
        let arr: &mut [u8; BS] = (&mut d[..]).try_into().unwrap();
        checksum::seal(k, arr);
    }
    write(path, b, &d);
}

/// Superblock fields.
pub struct Sb {
    pub flags: u32,
    pub held: u64,
    pub data_sm: [u64; 4],
    pub meta_sm: [u64; 4],
    pub mapping: u64,
    pub details: u64,
}

pub fn sb_at(path: &Path, b: u64) -> Sb {
    let d = read(path, b);
    let sm = |o: usize| {
        [
            le64(&d, o),
            le64(&d, o + 8),
            le64(&d, o + 16),
            le64(&d, o + 24),
        ]
    };
    Sb {
        flags: le32(&d, 4),
        held: le64(&d, 56),
        data_sm: sm(64),
        meta_sm: sm(192),
        mapping: le64(&d, 320),
        details: le64(&d, 328),
    }
}

pub fn sb(path: &Path) -> Sb {
    sb_at(path, 0)
}

/// A node's (is_leaf, keys, values as u64 (first 8 bytes of each value)).
pub fn node(path: &Path, b: u64) -> (bool, Vec<u64>, Vec<u64>) {
    let d = read(path, b);
    let nr = le32(&d, 16) as usize;
    let max = le32(&d, 20) as usize;
    let vs = le32(&d, 24) as usize;
    let keys = (0..nr).map(|i| le64(&d, 32 + 8 * i)).collect();
    let vals = (0..nr).map(|i| le64(&d, 32 + 8 * max + vs * i)).collect();
    (le32(&d, 4) == 2, keys, vals)
}

/// Looks `key` up in the (single-level) tree at `root`.
pub fn lookup(path: &Path, root: u64, key: u64) -> Option<u64> {
    let (leaf, keys, vals) = node(path, root);
    let i = keys.iter().rposition(|&k| k <= key)?;
    if leaf {
        (keys[i] == key).then(|| vals[i])
    } else {
        lookup(path, vals[i], key)
    }
}

/// The mapping-tree root of device `dev`.
pub fn dev_root(path: &Path, dev: u64) -> u64 {
    lookup(path, sb(path).mapping, dev).expect("device")
}

/// The path of blocks from `root` to its leftmost leaf.
pub fn leftmost(path: &Path, root: u64) -> Vec<u64> {
    let mut p = vec![root];
    loop {
        let (leaf, _, vals) = node(path, *p.last().unwrap());
        if leaf {
            return p;
        }
        p.push(vals[0]);
    }
}

/// Sets the 2-bit bitmap entry of `block` in the space map whose bitmap for
/// that block is at `bitmap_loc` (first entry `base`).
pub fn set_bitmap_entry(path: &Path, bitmap_loc: u64, base: u64, block: u64, v: u64) {
    patch(path, bitmap_loc, Some(BlockKind::Bitmap), |d| {
        let e = block - base;
        let o = 16 + 8 * (e / 32) as usize;
        let p = 2 * (e % 32);
        let mut w = le64(d, o);
        w &= !(3u64 << p);
        w |= (((v >> 1) & 1) << p) | ((v & 1) << (p + 1));
        put64(d, o, w);
    });
}

/// The 2-bit bitmap entry of `block` (bitmap at `bitmap_loc`, first entry `base`).
pub fn bitmap_entry(path: &Path, bitmap_loc: u64, base: u64, block: u64) -> u64 {
    let d = read(path, bitmap_loc);
    let e = block - base;
    let w = le64(&d, 16 + 8 * (e / 32) as usize);
    let p = 2 * (e % 32);
    (((w >> p) & 1) << 1) | ((w >> (p + 1)) & 1)
}

/// Location of metadata bitmap 0.
pub fn meta_bitmap0(path: &Path) -> u64 {
    le64(&read(path, sb(path).meta_sm[2]), 16)
}

/// Location of data bitmap 0 (index tree assumed a single leaf).
pub fn data_bitmap0(path: &Path) -> u64 {
    let (_, _, vals) = node(path, sb(path).data_sm[2]);
    vals[0]
}

/// A metadata block that is free in the space map (count 0).
pub fn free_meta_block(path: &Path) -> u64 {
    let bm = meta_bitmap0(path);
    (100..16000)
        .find(|&b| bitmap_entry(path, bm, 0, b) == 0)
        .unwrap()
}

/// Sets the superblock's flags (re-sealed).
pub fn set_flags(path: &Path, flags: u32) {
    patch(path, 0, Some(BlockKind::Superblock), |d| put32(d, 4, flags));
}

/// uthin's check, silent.
pub fn check(path: &Path, opts: CheckOptions) -> CheckOutcome {
    check_path(path, opts, &Report::silent()).expect("superblock readable")
}

pub fn check_ok(path: &Path) -> CheckOutcome {
    check(path, CheckOptions::default())
}

/// All problem messages, one per line.
pub fn text(o: &CheckOutcome) -> String {
    let mut s: Vec<String> = o.problems.iter().map(|p| p.msg.clone()).collect();
    if let Some(e) = &o.error {
        s.push(format!("error: {e}"));
    }
    s.join("\n")
}

/// Asserts the check failed and that its report mentions every needle.
pub fn assert_fails_with(o: &CheckOutcome, needles: &[&str]) {
    let t = text(o);
    assert!(!o.passed(), "check passed but should fail:\n{t}");
    for n in needles {
        assert!(t.contains(n), "report lacks {n:?}:\n{t}");
    }
}

/// Debian's thin_check 0.9.0 (`-q`): whether it passes.
pub fn debian_passes(path: &Path) -> bool {
    let tool = [
        "/usr/sbin/thin_check",
        "/sbin/thin_check",
        "/usr/bin/thin_check",
    ]
    .iter()
    .find(|p| Path::new(p).exists())
    .expect("thin_check 0.9.0 not installed: run scripts/install-test-deps.sh");
    std::process::Command::new(tool)
        .args(["-q", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}
