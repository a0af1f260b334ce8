//! `thin_restore`: writes metadata from the IR (XML, or any producer such
//! as `repair`) onto a metadata device.
//!
//! [`Restorer`] is a [`MetadataVisitor`]: feed it a whole stream
//! (`superblock_begin` ... `superblock_end`, `eof`) and the device holds
//! fresh metadata.  It never holds all mappings: leaves are written as soon
//! as they are full, a device's tree is finished at its `device_end`, and
//! what stays in memory is the data block counts (2 bits per data block),
//! the metadata block counts, and the leaf lists of the defs.
//!
//! The metadata is written when the stream ends (`eof`, after
//! `superblock_end`), so trailing garbage is caught first.
//!
//! Layout: block 0 is zeroed first and written last; tree nodes are
//! allocated upwards from block 1, except that a def named by a block
//! number gets its first leaf at that block when it is free, so that
//! dumping the restored metadata names the def as the input did (1.x names
//! defs after their first leaf).  Then come the details and top-level
//! mapping trees, the data space map and the metadata space map (written
//! through the transaction manager, [`finish`]), and the superblock.
//!
//! Checks, with 1.x's words where 1.x has them: the data block size;
//! mappings in strictly ascending order within a device (refs included);
//! data blocks inside `nr_data_blocks`; times within 24 bits; defs defined
//! before use and once; devices once.  `mapped_blocks` is written as given.

mod data_counts;
mod finish;
mod tree;
mod writer;

use crate::error::{Error, Result};
use crate::ir::{self, MetadataVisitor, SuperblockOverrides, Visit};
use crate::report::Report;
use data_counts::DataCounts;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use tree::{Ctx, Def, DefBuilder, DeviceBuilder};
use uthin_block_io::{FileDevice, SharedDevice, BLOCK_SIZE};
use uthin_pdata::btree::builder::BTreeBuilder;
use uthin_pdata::sm::counts::nr_bitmaps;
use uthin_pdata::sm::metadata::MAX_METADATA_BLOCKS;
use uthin_pdata::MetaBlock;
use uthin_thin::details::DeviceDetails;
use writer::MetaWriter;

/// Largest mapping time (24 bits on disk).
const MAX_TIME: u32 = 0xFF_FFFF;
/// Largest data block a mapping can hold (40 bits).
const MAX_DATA_BLOCK: u64 = (1 << 40) - 1;

enum Section {
    Start,
    Superblock,
    Def(String, DefBuilder),
    Device(ir::Device, DeviceBuilder),
    /// `</superblock>` seen; the metadata is written at `eof`.
    Ended,
    Finished,
}

/// Writes metadata from an IR stream.
pub struct Restorer {
    w: MetaWriter,
    data: DataCounts,
    overrides: SuperblockOverrides,
    sb: Option<ir::Superblock>,
    section: Section,
    /// Last key of the current def or device.
    last_key: Option<u64>,
    defs: HashMap<String, Def>,
    /// Blocks set aside for the first leaf of named defs.
    reserved: HashMap<String, MetaBlock>,
    devices: BTreeMap<u64, (DeviceDetails, MetaBlock)>,
}

/// Checks a data block size as dm-thin and 1.x do.
fn check_block_size(sectors: u32) -> Result<()> {
    if !(128..=2_097_152).contains(&sectors) || !sectors.is_multiple_of(128) {
        return Err(Error::msg(format!(
            "invalid data block size {sectors} (128 to 2097152 sectors, a multiple of 128)"
        )));
    }
    Ok(())
}

/// A clearer message for running out of metadata blocks.
fn space(e: Error) -> Error {
    match e {
        Error::Pdata(uthin_pdata::Error::NoSpace(_)) => {
            Error::msg("Output file too small: no free metadata block left")
        }
        e => e,
    }
}

impl Restorer {
    /// A restorer writing to `dev` (its size decides the metadata size);
    /// zeroes block 0 at once.  `overrides` apply to the incoming superblock.
    pub fn new(dev: SharedDevice, overrides: SuperblockOverrides) -> Result<Self> {
        let bytes = dev.len().map_err(|e| {
            Error::Pdata(uthin_pdata::Error::Io {
                blk: MetaBlock(0),
                source: e,
            })
        })?;
        let nr_blocks = (bytes / BLOCK_SIZE as u64).min(MAX_METADATA_BLOCKS);
        if nr_blocks < 2 {
            return Err(Error::msg("Output file too small."));
        }
        Ok(Restorer {
            w: MetaWriter::new(dev, nr_blocks)?,
            data: DataCounts::new(0),
            overrides,
            sb: None,
            section: Section::Start,
            last_key: None,
            defs: HashMap::new(),
            reserved: HashMap::new(),
            devices: BTreeMap::new(),
        })
    }

    /// Asks for the first leaf of the def `name` to go to block `loc`, so
    /// a dump names the def `loc` again.  Call before the stream starts;
    /// false if the block cannot be had.
    pub fn reserve_def_head(&mut self, name: &str, loc: u64) -> bool {
        if self.reserved.contains_key(name) || !self.w.reserve(loc) {
            return false;
        }
        self.reserved.insert(name.to_string(), MetaBlock(loc));
        true
    }

    /// Whether the stream was complete and the metadata is written.
    pub fn is_finished(&self) -> bool {
        matches!(self.section, Section::Finished)
    }

    /// Checks a run of mappings against the order and the ranges.
    fn check_map(&mut self, m: &ir::Map) -> Result<()> {
        let nr = self.data.nr_blocks();
        if let Some(l) = self.last_key {
            if m.thin_begin <= l {
                return Err(Error::msg(format!(
                    "keys out of order: origin block {} follows {l}",
                    m.thin_begin
                )));
            }
        }
        let last = m
            .thin_begin
            .checked_add(m.len - 1)
            .ok_or_else(|| Error::msg("mapping runs past the largest block number"))?;
        if m.time > MAX_TIME {
            return Err(Error::msg(format!(
                "mapping time {} does not fit in 24 bits",
                m.time
            )));
        }
        let end = m.data_begin.checked_add(m.len);
        if end.is_none_or(|e| e > nr || e - 1 > MAX_DATA_BLOCK) {
            return Err(Error::msg(format!(
                "data block {} is beyond nr_data_blocks {nr}",
                m.data_begin.saturating_add(m.len - 1)
            )));
        }
        self.last_key = Some(last);
        Ok(())
    }

    /// Writes the top-level trees, space maps and superblock.
    fn finalize(&mut self) -> Result<()> {
        let sb = self
            .sb
            .clone()
            .ok_or_else(|| Error::msg("missing superblock"))?;
        let mut details = BTreeBuilder::<DeviceDetails>::new();
        let mut mapping = BTreeBuilder::<u64>::new();
        for (id, (d, root)) in &self.devices {
            details.push(&mut self.w, *id, *d)?;
            mapping.push(&mut self.w, *id, root.0)?;
        }
        let details_root = details.finish(&mut self.w)?;
        let mapping_root = mapping.finish(&mut self.w)?;
        // Drop the defs' temporary references: a leaf no device uses is
        // freed, and so are its data references.
        let defs = std::mem::take(&mut self.defs);
        for def in defs.values() {
            for leaf in &def.leaves {
                if self.w.counts.adjust(leaf.loc.0, -1) == Some(0) {
                    for v in self.leaf_values(leaf.loc)? {
                        self.data.dec(v >> 24)?;
                    }
                }
            }
        }
        for (_, loc) in self.reserved.drain() {
            self.w.counts.set(loc.0, 0);
        }
        self.w.flush()?;
        let data = std::mem::replace(&mut self.data, DataCounts::new(0)).into_refcounts()?;
        let counts = std::mem::replace(&mut self.w.counts, uthin_pdata::sm::RefCounts::new(0));
        finish::write(
            self.w.device().clone(),
            counts,
            data,
            &finish::Roots {
                sb: &sb,
                mapping_root,
                details_root,
            },
        )
    }

    fn leaf_values(&mut self, loc: MetaBlock) -> Result<Vec<u64>> {
        let d = self.w.read(loc)?;
        let n = uthin_pdata::btree::node::Node::new(&d);
        Ok((0..n.nr_entries())
            .map(|i| u64::from_le_bytes(n.value(i).try_into().expect("8 bytes")))
            .collect())
    }

    fn wrong(&self, what: &str) -> Error {
        let at = match &self.section {
            Section::Start => "before <superblock>",
            Section::Superblock => "directly inside <superblock>",
            Section::Def(..) => "inside <def>",
            Section::Device(..) => "inside <device>",
            Section::Ended | Section::Finished => "after </superblock>",
        };
        Error::msg(format!("unexpected {what} {at}"))
    }
}

impl MetadataVisitor for Restorer {
    fn superblock_begin(&mut self, sb: &ir::Superblock) -> Result<Visit> {
        if !matches!(self.section, Section::Start) {
            return Err(Error::msg("duplicated superblock"));
        }
        check_block_size(sb.data_block_size)?;
        let mut sb = sb.clone();
        self.overrides.apply(&mut sb);
        check_block_size(sb.data_block_size)?;
        let bitmaps = nr_bitmaps(sb.nr_data_blocks);
        if bitmaps > self.w.counts.nr_blocks() {
            return Err(Error::msg(format!(
                "Output file too small: {} data blocks need {bitmaps} space map blocks, \
                 the output has {} metadata blocks",
                sb.nr_data_blocks,
                self.w.counts.nr_blocks()
            )));
        }
        self.data = DataCounts::new(sb.nr_data_blocks);
        self.sb = Some(sb);
        self.section = Section::Superblock;
        Ok(Visit::Continue)
    }

    fn superblock_end(&mut self) -> Result<Visit> {
        if !matches!(self.section, Section::Superblock) {
            return Err(self.wrong("</superblock>"));
        }
        self.section = Section::Ended;
        Ok(Visit::Continue)
    }

    fn def_begin(&mut self, name: &str) -> Result<Visit> {
        if !matches!(self.section, Section::Superblock) {
            return Err(match self.section {
                Section::Def(..) | Section::Device(..) => Error::msg(format!(
                    "nested <def name=\"{name}\">: nested subtrees are not allowed"
                )),
                _ => Error::msg("missing superblock"),
            });
        }
        if self.defs.contains_key(name) {
            return Err(Error::msg(format!("def '{name}' is defined twice")));
        }
        let head = self.reserved.remove(name);
        self.section = Section::Def(name.to_string(), DefBuilder::new(head));
        self.last_key = None;
        Ok(Visit::Continue)
    }

    fn def_end(&mut self) -> Result<Visit> {
        match std::mem::replace(&mut self.section, Section::Superblock) {
            Section::Def(name, b) => {
                let mut ctx = Ctx {
                    w: &mut self.w,
                    data: &mut self.data,
                };
                let def = b.finish(&mut ctx).map_err(space)?;
                self.defs.insert(name, def);
                Ok(Visit::Continue)
            }
            other => {
                self.section = other;
                Err(self.wrong("</def>"))
            }
        }
    }

    fn device_begin(&mut self, d: &ir::Device) -> Result<Visit> {
        if !matches!(self.section, Section::Superblock) {
            return Err(match self.section {
                Section::Def(..) | Section::Device(..) => Error::msg(format!(
                    "nested <device dev_id=\"{}\">: nested subtrees are not allowed",
                    d.dev_id
                )),
                _ => Error::msg("missing superblock"),
            });
        }
        if self.devices.contains_key(&d.dev_id) {
            return Err(Error::msg(format!("device {} is defined twice", d.dev_id)));
        }
        self.section = Section::Device(*d, DeviceBuilder::new());
        self.last_key = None;
        Ok(Visit::Continue)
    }

    fn device_end(&mut self) -> Result<Visit> {
        match std::mem::replace(&mut self.section, Section::Superblock) {
            Section::Device(d, b) => {
                let mut ctx = Ctx {
                    w: &mut self.w,
                    data: &mut self.data,
                };
                let root = b.finish(&mut ctx).map_err(space)?;
                let details = DeviceDetails {
                    mapped_blocks: d.mapped_blocks,
                    transaction_id: d.transaction,
                    creation_time: d.creation_time,
                    snapshotted_time: d.snap_time,
                };
                self.devices.insert(d.dev_id, (details, root));
                Ok(Visit::Continue)
            }
            other => {
                self.section = other;
                Err(self.wrong("</device>"))
            }
        }
    }

    fn map(&mut self, m: &ir::Map) -> Result<Visit> {
        if !matches!(self.section, Section::Def(..) | Section::Device(..)) {
            return Err(Error::msg(
                "Mapping tags must appear within a <def> or <device> tag.",
            ));
        }
        if m.len == 0 {
            return Ok(Visit::Continue);
        }
        self.check_map(m)?;
        let mut ctx = Ctx {
            w: &mut self.w,
            data: &mut self.data,
        };
        let r = match &mut self.section {
            Section::Def(_, b) => b.push_run(&mut ctx, m.thin_begin, m.data_begin, m.time, m.len),
            Section::Device(_, b) => {
                b.push_run(&mut ctx, m.thin_begin, m.data_begin, m.time, m.len)
            }
            _ => unreachable!("checked above"),
        };
        r.map_err(space)?;
        Ok(Visit::Continue)
    }

    fn ref_shared(&mut self, name: &str) -> Result<Visit> {
        if !matches!(self.section, Section::Device(..)) {
            return Err(Error::msg(
                "<ref> tags may only occur within <device> sections.",
            ));
        }
        let def = self
            .defs
            .get(name)
            .ok_or_else(|| Error::msg(format!("Couldn't find sub tree '{name}'.")))?;
        if let (Some(first), Some(last)) = (def.first_key, def.last_key) {
            if let Some(l) = self.last_key {
                if first <= l {
                    return Err(Error::msg(format!(
                        "keys out of order: def '{name}' starts at origin block {first}, \
                         which does not follow {l}"
                    )));
                }
            }
            self.last_key = Some(last);
        }
        let mut ctx = Ctx {
            w: &mut self.w,
            data: &mut self.data,
        };
        if let Section::Device(_, b) = &mut self.section {
            b.push_def(&mut ctx, def).map_err(space)?;
        }
        Ok(Visit::Continue)
    }

    fn eof(&mut self) -> Result<Visit> {
        if !matches!(self.section, Section::Ended) {
            return Err(Error::msg("incomplete source metadata"));
        }
        self.finalize().map_err(space)?;
        self.section = Section::Finished;
        Ok(Visit::Continue)
    }
}

/// `thin_restore`: writes the metadata described by the XML file `input`
/// onto `output` (an existing file or block device; 1.x's size and
/// existence checks are [`crate::dump::checks`]).
pub fn restore(
    input: &Path,
    output: &Path,
    overrides: SuperblockOverrides,
    report: &Report,
) -> Result<()> {
    // The input must be readable before the output is touched.
    std::fs::File::open(input).map_err(|e| Error::File {
        path: input.display().to_string(),
        source: e,
    })?;
    let dev = FileDevice::open(output, true).map_err(|e| Error::File {
        path: output.display().to_string(),
        source: e,
    })?;
    let mut r = Restorer::new(Arc::new(dev), overrides)?;
    for name in crate::xml::scan_def_names(input) {
        if let Ok(b) = name.parse::<u64>() {
            r.reserve_def_head(&name, b);
        }
    }
    crate::xml::read_file(input, &mut r, report)
}
