//! Shared test support: pools on in-memory devices, Debian's thin_check as
//! an oracle, deterministic data, and the kernel VM runner.
#![allow(dead_code)]

pub mod history;
pub mod vm;
pub mod workload;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use uthin_block_io::testing::MemDevice;
use uthin_block_io::SharedDevice;
use uthin_pool::{Pool, PoolConfig};

/// 64 KiB data blocks.
pub const BLOCK: u64 = 65536;

/// A configuration without background commits (deterministic tests).
pub fn cfg() -> PoolConfig {
    let mut c = PoolConfig::new(128);
    c.commit_period = Duration::ZERO;
    c
}

/// A pool on fresh in-memory devices: `meta_mib` MiB of metadata and
/// `data_blocks` 64 KiB data blocks.
pub fn mem_pool(
    meta_mib: u64,
    data_blocks: u64,
    cfg: PoolConfig,
) -> (Arc<Pool>, Arc<MemDevice>, Arc<MemDevice>) {
    let meta = Arc::new(MemDevice::new(meta_mib << 20));
    let data = Arc::new(MemDevice::new(data_blocks * cfg.block_bytes()));
    let pool = Pool::open(meta.clone(), data.clone(), cfg).expect("open pool");
    (pool, meta, data)
}

/// Reopens a pool on the same devices.
pub fn reopen(meta: &Arc<MemDevice>, data: &Arc<MemDevice>, cfg: PoolConfig) -> Arc<Pool> {
    Pool::open(
        meta.clone() as SharedDevice,
        data.clone() as SharedDevice,
        cfg,
    )
    .expect("reopen pool")
}

/// Runs Debian's `thin_check -q` on a metadata image; panics with its
/// verbose output if it finds anything.
pub fn assert_thin_check_image(img: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("meta");
    std::fs::write(&p, img).unwrap();
    assert_thin_check(&p);
}

/// Runs Debian's `thin_check -q` on a metadata file.
pub fn assert_thin_check(meta: &Path) {
    let tool = Path::new("/usr/sbin/thin_check");
    assert!(
        tool.exists(),
        "thin_check is not installed: run scripts/install-test-deps.sh"
    );
    let out = Command::new(tool).arg("-q").arg(meta).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stderr.trim().is_empty() {
        return;
    }
    let verbose = Command::new(tool).arg(meta).output().unwrap();
    panic!(
        "thin_check failed on {}: {:?} {stderr}\n{}{}",
        meta.display(),
        out.status,
        String::from_utf8_lossy(&verbose.stdout),
        String::from_utf8_lossy(&verbose.stderr)
    );
}

/// thin-provisioning-tools 1.x's multi-call `pdata_tools` (the Rust line,
/// stricter than Debian 12's 0.9.0: node fill, `mapped_blocks`, exact data
/// counts, a held metadata snapshot's consistency with the live trees).
/// `scripts/install-test-deps.sh` extracts it into `~/.cache/uthin-tpt1`
/// (`UTHIN_TPT1_DIR` overrides); required like the other oracles.  It
/// takes half a second of wall time per run (a progress thread), so the
/// tests run it on a sample.
pub fn pdata_tools_1x() -> std::path::PathBuf {
    let dir = std::env::var_os("UTHIN_TPT1_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/uthin-tpt1")
        });
    let p = dir.join("usr/sbin/pdata_tools");
    assert!(
        p.exists(),
        "{} not found: run scripts/install-test-deps.sh (thin-provisioning-tools 1.x)",
        p.display()
    );
    p
}

/// thin-provisioning-tools 1.x's `thin_check -q` on a metadata file: exit
/// 0 and nothing on stderr; panics with the verbose output otherwise.
pub fn assert_thin_check_1x(meta: &Path) {
    let tool = pdata_tools_1x();
    let out = Command::new(&tool)
        .args(["thin_check", "-q"])
        .arg(meta)
        .output()
        .unwrap();
    if out.status.success() && out.stderr.is_empty() {
        return;
    }
    let verbose = Command::new(&tool)
        .arg("thin_check")
        .arg(meta)
        .output()
        .unwrap();
    panic!(
        "thin_check 1.x failed on {}: {:?}\n{}{}",
        meta.display(),
        out.status,
        String::from_utf8_lossy(&verbose.stdout),
        String::from_utf8_lossy(&verbose.stderr)
    );
}

/// thin-provisioning-tools 1.x's `thin_check` on a metadata image.
pub fn assert_thin_check_1x_image(img: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("meta");
    std::fs::write(&p, img).unwrap();
    assert_thin_check_1x(&p);
}

/// Deterministic bytes for a write: every 8-byte word encodes `tag` and its
/// position, so a misplaced or stale copy shows.
pub fn pattern(tag: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut pos = offset;
    while v.len() < len {
        let w = (tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (pos / 8)).to_le_bytes();
        let i = (pos % 8) as usize;
        let n = (8 - i).min(len - v.len());
        v.extend_from_slice(&w[i..i + n]);
        pos += n as u64;
    }
    v
}

/// A tiny deterministic generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49eb_133d_111b);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Compares two buffers without printing them whole.
#[track_caller]
pub fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: differs from byte {i}: got {:?}, want {:?}",
            &got[i..(i + 16).min(got.len())],
            &want[i..(i + 16).min(want.len())]
        );
    }
}
