//! Shared by the command-line tests of ls, delta, rmap, trim, metadata_size
//! and metadata_pack/unpack: the `uthin` binary run as a subcommand or under
//! a tool's name (a `thin_xxx` symlink to it, the multi-call convention),
//! and small pools built with uthin's `PoolMetadata`.
#![allow(dead_code)]

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uthin_block_io::FileDevice;
use uthin_thin::{DevId, OpenOptions, PoolMetadata, VirtBlock};

/// `uthin SUBCOMMAND`.
pub fn uthin(sub: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_uthin"));
    c.arg(sub);
    c
}

/// The tool `name` (e.g. "thin_ls") through a symlink named after it.
pub fn tool(dir: &Path, name: &str) -> Command {
    let link = dir.join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_uthin"), &link).unwrap();
    }
    Command::new(link)
}

/// A pool: devices 1 (blocks 0..300 and 1000), 2 (a snapshot of 1 with
/// blocks 0..20 rewritten), 3 (empty).  Returns the temp dir, the metadata
/// path and the open metadata.
pub fn pool() -> (tempfile::TempDir, PathBuf, PoolMetadata) {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    let dev = Arc::new(FileDevice::create(&meta, 8 << 20).unwrap());
    let mut md = PoolMetadata::open(dev, OpenOptions::new(128)).unwrap();
    md.resize_data_dev(2000).unwrap();
    md.create_thin(DevId(1)).unwrap();
    write(&mut md, 1, (0..300).chain([1000]));
    md.create_snap(DevId(2), DevId(1)).unwrap();
    write(&mut md, 2, 0..20);
    md.create_thin(DevId(3)).unwrap();
    md.commit().unwrap();
    (dir, meta, md)
}

/// Maps `vs` of device `id` to new data blocks.
pub fn write(md: &mut PoolMetadata, id: u64, vs: impl IntoIterator<Item = u64>) {
    for v in vs {
        let b = md.alloc_data_block().unwrap().unwrap();
        md.insert_block(DevId(id), VirtBlock(v), b).unwrap();
    }
}

/// stdout of a successful run.
pub fn stdout_ok(c: &mut Command) -> String {
    let out = c.assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap()
}

/// Runs a command expected to fail with `code`; returns its stderr.
pub fn fails(c: &mut Command, code: i32) -> String {
    let out = c.assert().code(code).get_output().clone();
    String::from_utf8(out.stderr).unwrap()
}

/// Debian's 0.9.0 tool `name`, stdout of a successful run.
pub fn debian_ok(name: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(format!("/usr/sbin/{name}"))
        .args(args)
        .output()
        .unwrap_or_else(|_| panic!("{name} is not installed: run scripts/install-test-deps.sh"));
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Files that are not metadata (missing, a directory, tiny, junk, zeroes)
/// and what the error says.
pub fn bad_inputs(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let tiny = dir.join("tiny");
    std::fs::write(&tiny, [0u8; 100]).unwrap();
    let junk = dir.join("junk");
    std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
    let zero = dir.join("zero");
    std::fs::write(&zero, vec![0u8; 8192]).unwrap();
    vec![
        (dir.join("missing"), "Couldn't find input file"),
        (dir.to_path_buf(), "Not a block device or regular file"),
        (tiny, "too small"),
        (junk, "bad checksum in superblock (block 0, stored "),
        (
            zero,
            "bad checksum in superblock (block 0 is all zeroes: not formatted metadata?)",
        ),
    ]
}
