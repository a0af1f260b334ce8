//! `thin_ls`: one row per thin device, with the fields and layout of
//! thin-provisioning-tools 1.x.
//!
//! Fields (`-o`): DEV; MAPPED, EXCLUSIVE, SHARED and HIGHEST in `_BLOCKS`,
//! `_SECTORS` and `_BYTES` (HIGHEST_BLOCK, HIGHEST_SECTOR, HIGHEST_BYTE) and
//! unit-less compact sizes (MAPPED, EXCLUSIVE, SHARED, HIGHEST_MAPPED);
//! TRANSACTION, CREATE_TIME, SNAP_TIME.  Default: DEV, MAPPED, CREATE_TIME,
//! SNAP_TIME.  Layout: every cell right-aligned to its column's widest cell
//! and followed by one space; one line per row.
//!
//! Cost: MAPPED comes from the device details and HIGHEST from one walk
//! down the right edge of the tree, so the default listing reads a handful
//! of blocks per device.  Only EXCLUSIVE and SHARED walk every mapping
//! ([`sharing`]); then MAPPED and HIGHEST come from that walk as in 1.x.
//! HIGHEST of a device without mappings is block 0, as 1.x prints it.
//!
//! [`nodes`] is the parallel tree loader the other read-only tools share.

pub mod nodes;
pub mod sharing;

use crate::error::{Error, Result};
use crate::metadata_size::units::compact_size;
use crate::reader::{Reader, SbChoice};
use crate::report::Report;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::path::Path;
use std::str::FromStr;
use uthin_pdata::btree;
use uthin_pdata::sm::counts::ENTRIES_PER_BITMAP;
use uthin_pdata::MetaBlock;
use uthin_thin::details::DeviceDetails;
use uthin_thin::superblock::{Superblock, SUPERBLOCK};

/// A column of the listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    DevId,
    MappedBlocks,
    ExclusiveBlocks,
    SharedBlocks,
    HighestBlock,
    MappedSectors,
    ExclusiveSectors,
    SharedSectors,
    HighestSector,
    MappedBytes,
    ExclusiveBytes,
    SharedBytes,
    HighestByte,
    Mapped,
    Exclusive,
    Shared,
    HighestMapped,
    Transaction,
    CreateTime,
    SnapTime,
}

const NAMES: &[(Field, &str)] = &[
    (Field::DevId, "DEV"),
    (Field::MappedBlocks, "MAPPED_BLOCKS"),
    (Field::ExclusiveBlocks, "EXCLUSIVE_BLOCKS"),
    (Field::SharedBlocks, "SHARED_BLOCKS"),
    (Field::HighestBlock, "HIGHEST_BLOCK"),
    (Field::MappedSectors, "MAPPED_SECTORS"),
    (Field::ExclusiveSectors, "EXCLUSIVE_SECTORS"),
    (Field::SharedSectors, "SHARED_SECTORS"),
    (Field::HighestSector, "HIGHEST_SECTOR"),
    (Field::MappedBytes, "MAPPED_BYTES"),
    (Field::ExclusiveBytes, "EXCLUSIVE_BYTES"),
    (Field::SharedBytes, "SHARED_BYTES"),
    (Field::HighestByte, "HIGHEST_BYTE"),
    (Field::Mapped, "MAPPED"),
    (Field::Exclusive, "EXCLUSIVE"),
    (Field::Shared, "SHARED"),
    (Field::HighestMapped, "HIGHEST_MAPPED"),
    (Field::Transaction, "TRANSACTION"),
    (Field::CreateTime, "CREATE_TIME"),
    (Field::SnapTime, "SNAP_TIME"),
];

/// The default columns.
pub const DEFAULT_FIELDS: &[Field] = &[
    Field::DevId,
    Field::Mapped,
    Field::CreateTime,
    Field::SnapTime,
];

impl Field {
    /// The column's name, as `-o` takes it and the header shows it.
    pub fn name(self) -> &'static str {
        NAMES.iter().find(|n| n.0 == self).expect("named").1
    }

    /// Every field name.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().map(|n| n.1)
    }

    /// Whether the column needs the full walk of every mapping.
    fn needs_sharing(self) -> bool {
        use Field::*;
        matches!(
            self,
            ExclusiveBlocks
                | SharedBlocks
                | ExclusiveSectors
                | SharedSectors
                | ExclusiveBytes
                | SharedBytes
                | Exclusive
                | Shared
        )
    }

    fn needs_highest(self) -> bool {
        use Field::*;
        matches!(
            self,
            HighestBlock | HighestSector | HighestByte | HighestMapped
        )
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Field {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        NAMES
            .iter()
            .find(|n| n.1 == s)
            .map(|n| n.0)
            .ok_or_else(|| "Unknown field".to_string())
    }
}

/// One device's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub dev_id: u64,
    pub details: DeviceDetails,
    /// Mapped blocks.
    pub mapped: u64,
    /// Shared blocks (0 unless a sharing column was asked for).
    pub shared: u64,
    /// Highest mapped block (0 if none, or if no HIGHEST column was asked for).
    pub highest: u64,
}

/// The rows and what is needed to print them.
#[derive(Clone, Debug)]
pub struct Listing {
    /// Data block size in sectors.
    pub data_block_size: u32,
    pub rows: Vec<Row>,
}

/// Reads `(dev id, root)` of the mapping tree's top level.
pub fn device_roots(r: &Reader, sb: &Superblock) -> Result<BTreeMap<u64, u64>> {
    let mut m = BTreeMap::new();
    btree::walk::<u64>(&r.tm, sb.data_mapping_root, 0, u64::MAX, &mut |k, v| {
        m.insert(k, v);
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(m)
}

/// Reads the device details tree.
pub fn device_details(r: &Reader, sb: &Superblock) -> Result<BTreeMap<u64, DeviceDetails>> {
    let mut m = BTreeMap::new();
    btree::walk::<DeviceDetails>(&r.tm, sb.device_details_root, 0, u64::MAX, &mut |k, v| {
        m.insert(k, v);
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(m)
}

/// Both top-level trees, refused unless they list the same devices (what
/// 1.x calls "inconsistent device ids").
pub fn devices(
    r: &Reader,
    sb: &Superblock,
) -> Result<(BTreeMap<u64, u64>, BTreeMap<u64, DeviceDetails>)> {
    let roots = device_roots(r, sb)?;
    let details = device_details(r, sb)?;
    if !roots.keys().eq(details.keys()) {
        return Err(Error::msg(
            "inconsistent device ids: the mapping tree and the device details tree list different devices",
        ));
    }
    Ok((roots, details))
}

/// The live superblock (for the data space map's size when listing a
/// metadata snapshot, whose copy has none).
fn live_superblock(r: &Reader) -> Result<Superblock> {
    if r.sb_loc.0 == 0 {
        return Ok(r.sb.clone());
    }
    Ok(Superblock::unpack(&*r.tm.read(MetaBlock(0), &SUPERBLOCK)?))
}

/// Opens metadata for the read-only tools; a block that is not a
/// superblock fails in 1.x's words, "bad checksum in superblock", with
/// what uthin saw in brackets ([`crate::dump::superblock_error_at`]).
pub fn open_metadata(path: &Path, choice: SbChoice) -> Result<Reader> {
    Reader::open(path, choice, 1024).map_err(|e| crate::dump::superblock_error_at(path, e))
}

/// Lists the devices of the metadata at `path` (its metadata snapshot if
/// `metadata_snap`), computing what `fields` need.
pub fn list(
    path: &Path,
    metadata_snap: bool,
    fields: &[Field],
    report: &Report,
) -> Result<Listing> {
    let choice = if metadata_snap {
        SbChoice::MetadataSnap
    } else {
        SbChoice::Live
    };
    let r = open_metadata(path, choice)?;
    list_reader(&r, fields, report)
}

/// [`list`] on open metadata.
pub fn list_reader(r: &Reader, fields: &[Field], report: &Report) -> Result<Listing> {
    let (roots, details) = devices(r, &r.sb)?;
    let mut rows: Vec<Row> = details
        .iter()
        .map(|(&dev_id, &d)| Row {
            dev_id,
            details: d,
            mapped: d.mapped_blocks,
            shared: 0,
            highest: 0,
        })
        .collect();
    if fields.iter().any(|f| f.needs_sharing()) {
        let live = live_superblock(r)?;
        let nr_data = live.data_sm_root.nr_blocks;
        // Each bitmap of the data space map is a metadata block: a larger
        // size is corrupt (and must not size the counts).
        if nr_data.div_ceil(ENTRIES_PER_BITMAP) > r.nr_blocks {
            return Err(Error::msg(format!(
                "data space map of {nr_data} blocks does not fit the metadata device"
            )));
        }
        let root_list: Vec<u64> = roots.values().copied().collect();
        let nr = nodes::NodeReader::new(r);
        report.title("Scanning data mappings");
        report.start(
            "Scanning data mappings",
            live.metadata_sm_root.nr_allocated.max(1),
        );
        let usage = sharing::usage(&nr, &root_list, nr_data, report);
        report.finish();
        for (row, u) in rows.iter_mut().zip(usage?) {
            row.mapped = u.mapped;
            row.shared = u.shared;
            row.highest = u.highest.unwrap_or(0);
        }
    } else if fields.iter().any(|f| f.needs_highest()) {
        for (row, root) in rows.iter_mut().zip(roots.values()) {
            row.highest = btree::highest_key::<u64>(&r.tm, MetaBlock(*root))?.unwrap_or(0);
        }
    }
    Ok(Listing {
        data_block_size: r.sb.data_block_size,
        rows,
    })
}

/// The text of one cell.
fn cell(f: Field, row: &Row, bs: u64) -> String {
    use Field::*;
    let exclusive = row.mapped.saturating_sub(row.shared);
    let sectors = |blocks: u64| blocks.saturating_mul(bs);
    let bytes = |blocks: u64| sectors(blocks).saturating_mul(512);
    let end = row.highest.saturating_add(1).saturating_mul(bs);
    let last_sector = end.saturating_sub(1);
    let last_byte = end.saturating_mul(512).saturating_sub(1);
    match f {
        DevId => row.dev_id.to_string(),
        Transaction => row.details.transaction_id.to_string(),
        CreateTime => row.details.creation_time.to_string(),
        SnapTime => row.details.snapshotted_time.to_string(),
        MappedBlocks => row.mapped.to_string(),
        ExclusiveBlocks => exclusive.to_string(),
        SharedBlocks => row.shared.to_string(),
        HighestBlock => row.highest.to_string(),
        MappedSectors => sectors(row.mapped).to_string(),
        ExclusiveSectors => sectors(exclusive).to_string(),
        SharedSectors => sectors(row.shared).to_string(),
        HighestSector => last_sector.to_string(),
        MappedBytes => bytes(row.mapped).to_string(),
        ExclusiveBytes => bytes(exclusive).to_string(),
        SharedBytes => bytes(row.shared).to_string(),
        HighestByte => last_byte.to_string(),
        Mapped => compact_size(bytes(row.mapped)),
        Exclusive => compact_size(bytes(exclusive)),
        Shared => compact_size(bytes(row.shared)),
        HighestMapped => compact_size(last_byte),
    }
}

/// The table as 1.x prints it.
pub fn render(fields: &[Field], listing: &Listing, headers: bool) -> String {
    if fields.is_empty() {
        return String::new();
    }
    let bs = listing.data_block_size as u64;
    let mut grid: Vec<Vec<String>> = Vec::with_capacity(listing.rows.len() + 1);
    if headers {
        grid.push(fields.iter().map(|f| f.name().to_string()).collect());
    }
    for row in &listing.rows {
        grid.push(fields.iter().map(|&f| cell(f, row, bs)).collect());
    }
    let mut widths = vec![0usize; fields.len()];
    for line in &grid {
        for (w, c) in widths.iter_mut().zip(line) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for line in &grid {
        for (c, w) in line.iter().zip(&widths) {
            out.push_str(&format!("{c:>w$} "));
        }
        out.push('\n');
    }
    out
}
