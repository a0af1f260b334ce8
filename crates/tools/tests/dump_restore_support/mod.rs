//! Shared support of the dump/restore tests: pools built with
//! `PoolMetadata`, dumping and restoring through the library, the logical
//! content of an XML dump, and Debian's thin-provisioning-tools 0.9.0 as
//! oracles (required: run `scripts/install-test-deps.sh` if missing).
#![allow(dead_code)]

pub mod verify;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use uthin_block_io::testing::MemDevice;
use uthin_block_io::{BlockDevice, FileDevice};
use uthin_thin::{DevId, OpenOptions, PoolMetadata, VirtBlock};
use uthin_tools::dump::{dump_reader, DumpOptions};
use uthin_tools::error::Result;
use uthin_tools::ir::{self, MetadataVisitor, Visit};
use uthin_tools::reader::Reader;
use uthin_tools::report::Report;
use uthin_tools::restore::Restorer;
use uthin_tools::xml::{self, XmlWriter};

/// A fresh pool of `meta_bytes` metadata on a memory device, with
/// `data_blocks` data blocks.
pub fn mem_pool(meta_bytes: u64, data_blocks: u64) -> (Arc<MemDevice>, PoolMetadata) {
    let dev = Arc::new(MemDevice::new(meta_bytes));
    let mut md = PoolMetadata::open(dev.clone(), OpenOptions::new(128)).expect("format");
    md.resize_data_dev(data_blocks).expect("resize");
    (dev, md)
}

/// Maps `n` blocks of `dev` from `first`, allocating data blocks.
pub fn map_run(md: &mut PoolMetadata, dev: u64, first: u64, n: u64) {
    for v in first..first + n {
        let b = md.alloc_data_block().unwrap().expect("data space");
        md.insert_block(DevId(dev), VirtBlock(v), b).unwrap();
    }
}

/// Dumps (as XML) the metadata on `dev` with `opts`.
pub fn dump_with(dev: Arc<dyn BlockDevice>, opts: &DumpOptions) -> Result<String> {
    let r = Reader::from_device(dev, opts.sb, 256)?;
    let mut w = XmlWriter::new(Vec::new());
    dump_reader(&r, opts, &mut w, &Report::silent())?;
    Ok(String::from_utf8(w.into_inner()).expect("utf8"))
}

/// Dumps (as XML) the live metadata on `dev`.
pub fn dump(dev: Arc<dyn BlockDevice>) -> String {
    dump_with(dev, &DumpOptions::default()).expect("dump")
}

/// Restores `xml` onto `dev`, honouring numeric def names as `restore` does.
pub fn restore(xml: &str, dev: Arc<dyn BlockDevice>) -> Result<()> {
    let mut r = Restorer::new(dev, ir::SuperblockOverrides::default())?;
    for name in def_names(xml) {
        if let Ok(b) = name.parse::<u64>() {
            r.reserve_def_head(&name, b);
        }
    }
    xml::read(Cursor::new(xml.as_bytes()), &mut r, &mut |_| {})
        .map_err(|e| uthin_tools::Error::msg(format!("byte {}: {}", e.offset, e.msg)))
}

/// Restores `xml` onto a fresh memory device of `bytes`.
pub fn restore_mem(xml: &str, bytes: u64) -> Arc<MemDevice> {
    let dev = Arc::new(MemDevice::new(bytes));
    restore(xml, dev.clone()).expect("restore");
    dev
}

/// The def names of an XML document, in order.
pub fn def_names(xml: &str) -> Vec<String> {
    let mut v = Collect::default();
    xml::read(Cursor::new(xml.as_bytes()), &mut v, &mut |_| {}).expect("parse");
    v.def_order
}

/// A device's details and its mappings (thin, data, time), refs expanded.
pub type Logical = BTreeMap<u64, (ir::Device, Vec<(u64, u64, u32)>)>;

#[derive(Default)]
struct Collect {
    sb: Option<ir::Superblock>,
    defs: BTreeMap<String, Vec<(u64, u64, u32)>>,
    def_order: Vec<String>,
    cur: Vec<(u64, u64, u32)>,
    cur_def: Option<String>,
    cur_dev: Option<ir::Device>,
    out: Logical,
}

impl MetadataVisitor for Collect {
    fn superblock_begin(&mut self, sb: &ir::Superblock) -> Result<Visit> {
        self.sb = Some(sb.clone());
        Ok(Visit::Continue)
    }
    fn superblock_end(&mut self) -> Result<Visit> {
        Ok(Visit::Continue)
    }
    fn def_begin(&mut self, name: &str) -> Result<Visit> {
        self.cur_def = Some(name.to_string());
        self.def_order.push(name.to_string());
        Ok(Visit::Continue)
    }
    fn def_end(&mut self) -> Result<Visit> {
        let n = self.cur_def.take().unwrap();
        self.defs.insert(n, std::mem::take(&mut self.cur));
        Ok(Visit::Continue)
    }
    fn device_begin(&mut self, d: &ir::Device) -> Result<Visit> {
        self.cur_dev = Some(*d);
        Ok(Visit::Continue)
    }
    fn device_end(&mut self) -> Result<Visit> {
        let d = self.cur_dev.take().unwrap();
        self.out
            .insert(d.dev_id, (d, std::mem::take(&mut self.cur)));
        Ok(Visit::Continue)
    }
    fn map(&mut self, m: &ir::Map) -> Result<Visit> {
        for i in 0..m.len {
            self.cur.push((m.thin_begin + i, m.data_begin + i, m.time));
        }
        Ok(Visit::Continue)
    }
    fn ref_shared(&mut self, name: &str) -> Result<Visit> {
        let d = self.defs[name].clone();
        self.cur.extend(d);
        Ok(Visit::Continue)
    }
    fn eof(&mut self) -> Result<Visit> {
        Ok(Visit::Continue)
    }
}

/// The superblock and devices of an XML dump, refs expanded.
pub fn logical(xml: &str) -> (ir::Superblock, Logical) {
    let mut v = Collect::default();
    xml::read(Cursor::new(xml.as_bytes()), &mut v, &mut |_| {}).expect("parse");
    (v.sb.expect("superblock"), v.out)
}

/// Runs a tool of Debian's thin-provisioning-tools.
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

/// Debian's `thin_check -q`: exit 0, nothing on stderr.
pub fn assert_thin_check(meta: &Path) {
    let out = run_tool("thin_check", &["-q", meta.to_str().unwrap()]);
    if out.status.success() && out.stderr.is_empty() {
        return;
    }
    let verbose = run_tool("thin_check", &[meta.to_str().unwrap()]);
    panic!(
        "thin_check failed on {}: {:?}\n{}{}",
        meta.display(),
        out.status,
        String::from_utf8_lossy(&verbose.stdout),
        String::from_utf8_lossy(&verbose.stderr)
    );
}

/// Writes a memory device's bytes to a file.
pub fn to_file(dev: &MemDevice, path: &Path) {
    std::fs::write(path, dev.snapshot()).expect("write image");
}

/// A sparse file of `bytes` as a device.
pub fn file_dev(path: &Path, bytes: u64) -> Arc<FileDevice> {
    Arc::new(FileDevice::create(path, bytes).expect("create"))
}
