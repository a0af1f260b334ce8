//! Shared test support: Debian's thin-provisioning-tools as oracles, and a
//! parser for the XML `thin_dump` writes.
//!
//! The oracles are required: if a tool is missing the test fails and says to
//! run `scripts/install-test-deps.sh` (the README's test command does).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Runs a tool from thin-provisioning-tools; panics with a clear message if
/// it is not installed.
pub fn run_tool(tool: &str, args: &[&str]) -> std::process::Output {
    let path = ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{tool} is not installed: run scripts/install-test-deps.sh (apt-get install thin-provisioning-tools)")
        });
    Command::new(path).args(args).output().expect("run tool")
}

/// Debian's `thin_check` on `meta`: asserts exit 0 and nothing on stderr.
pub fn assert_thin_check(meta: &Path) {
    let out = run_tool("thin_check", &[meta.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "thin_check failed on {}: status {:?}\nstdout:\n{}\nstderr:\n{}",
        meta.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr
    );
}

/// `thin_check` exit status and combined output, for negative tests.
pub fn thin_check_status(meta: &Path) -> (bool, String) {
    let out = run_tool("thin_check", &[meta.to_str().unwrap()]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// One device as `thin_dump` shows it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DumpDevice {
    pub mapped_blocks: u64,
    pub transaction: u64,
    pub creation_time: u32,
    pub snap_time: u32,
    /// virtual block -> (data block, time)
    pub mappings: BTreeMap<u64, (u64, u32)>,
}

/// A parsed dump.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dump {
    pub time: u32,
    pub transaction: u64,
    pub data_block_size: u32,
    pub nr_data_blocks: u64,
    pub devices: BTreeMap<u64, DumpDevice>,
}

fn attr<T: std::str::FromStr>(line: &str, name: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let key = format!(" {name}=\"");
    let i = line.find(&key).unwrap_or_else(|| panic!("no {name} in {line}")) + key.len();
    let j = line[i..].find('"').unwrap() + i;
    line[i..j].parse().unwrap()
}

/// Parses `thin_dump` XML (0.9.0 form: no defs).
pub fn parse_dump(xml: &str) -> Dump {
    let mut d = Dump::default();
    let mut cur: Option<(u64, DumpDevice)> = None;
    for line in xml.lines().map(str::trim) {
        if line.starts_with("<superblock") {
            d.time = attr(line, "time");
            d.transaction = attr(line, "transaction");
            d.data_block_size = attr(line, "data_block_size");
            d.nr_data_blocks = attr(line, "nr_data_blocks");
        } else if line.starts_with("<device") {
            cur = Some((
                attr(line, "dev_id"),
                DumpDevice {
                    mapped_blocks: attr(line, "mapped_blocks"),
                    transaction: attr(line, "transaction"),
                    creation_time: attr(line, "creation_time"),
                    snap_time: attr(line, "snap_time"),
                    mappings: BTreeMap::new(),
                },
            ));
        } else if line.starts_with("</device") {
            let (id, dev) = cur.take().expect("device open");
            d.devices.insert(id, dev);
        } else if line.starts_with("<single_mapping") {
            let dev = &mut cur.as_mut().expect("in device").1;
            dev.mappings.insert(
                attr(line, "origin_block"),
                (attr(line, "data_block"), attr(line, "time")),
            );
        } else if line.starts_with("<range_mapping") {
            let dev = &mut cur.as_mut().expect("in device").1;
            let (ob, db, len, t): (u64, u64, u64, u32) = (
                attr(line, "origin_begin"),
                attr(line, "data_begin"),
                attr(line, "length"),
                attr(line, "time"),
            );
            for i in 0..len {
                dev.mappings.insert(ob + i, (db + i, t));
            }
        }
    }
    d
}

/// Debian's `thin_dump` of `meta`, parsed.
pub fn thin_dump(meta: &Path) -> Dump {
    let out = run_tool("thin_dump", &[meta.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "thin_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_dump(&String::from_utf8_lossy(&out.stdout))
}

/// Debian's `thin_restore` of `xml` into `meta` (which must exist, sized).
pub fn thin_restore(xml: &Path, meta: &Path) {
    let out = run_tool(
        "thin_restore",
        &["-i", xml.to_str().unwrap(), "-o", meta.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "thin_restore failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
