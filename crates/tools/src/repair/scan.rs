//! The scan: read every metadata block once, keep the B-tree nodes that are
//! whole (checksum with the node salt, own block number, a header the format
//! allows, keys strictly ascending) and summarise each in a [`NodeRec`].
//!
//! Only what the later passes need stays in memory: the children of internal
//! nodes, the values of 8-byte leaves that could be top-level mapping leaves
//! (every value a metadata block number), and the entries of device-details
//! leaves.  Bottom-level mapping leaves are re-read when their mappings are
//! emitted.

use crate::error::{Error, Result};
use crate::report::Report;
use rayon::prelude::*;
use std::sync::Arc;
use uthin_block_io::{BlockDevice, BLOCK_SIZE};
use uthin_pdata::btree::node::{Node, HEADER, INTERNAL, LEAF};
use uthin_pdata::btree::Value;
use uthin_pdata::checksum::{self, BlockKind};
use uthin_pdata::sm::metadata::MAX_METADATA_BLOCKS;
use uthin_pdata::types::{le64, BlockData};
use uthin_pdata::validator::Validator;
use uthin_pdata::MetaBlock;
use uthin_thin::details::DeviceDetails;
use uthin_thin::superblock::{Superblock, SUPERBLOCK};

/// Blocks read per I/O of the scan.
const CHUNK: u64 = 256;

/// What a whole node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// Internal node (8-byte child pointers).
    Internal,
    /// Leaf with 8-byte values: a mapping leaf of either level.
    Leaf8,
    /// Leaf with 24-byte values: device details.
    Leaf24,
    /// Leaf of a space-map tree (4- or 16-byte values).
    LeafOther,
}

/// Summary of one whole node.
#[derive(Clone, Debug)]
pub struct NodeRec {
    pub blk: u64,
    pub kind: NodeKind,
    pub nr: u32,
    /// Smallest and largest key (0, 0 when empty).
    pub key_lo: u64,
    pub key_hi: u64,
    /// Leaf8 read as mappings: newest time, how many entries carry it, and
    /// the highest data block.
    pub max_time: u32,
    pub at_max: u32,
    pub max_data: u64,
    /// Start of this node's entries in [`Scan::entries`] (internal nodes and
    /// leaves whose values all look like block numbers) or in
    /// [`Scan::details`] (details leaves); `u32::MAX` when none are kept.
    pub first: u32,
}

impl NodeRec {
    /// Whether the entries were kept.
    pub fn has_entries(&self) -> bool {
        self.first != u32::MAX
    }
}

/// The state of block 0.
#[derive(Clone, Debug)]
pub enum SbState {
    /// A superblock that validates.
    Valid(Superblock),
    /// Not a valid superblock: why.
    Invalid(String),
}

/// Everything the scan found.
pub struct Scan {
    pub dev: Arc<dyn BlockDevice>,
    pub nr_blocks: u64,
    pub sb: SbState,
    /// Whole nodes, by block number.
    pub nodes: Vec<NodeRec>,
    /// (key, value) pairs of kept 8-byte entries.
    pub entries: Vec<(u64, u64)>,
    /// (device id, details) pairs of details leaves.
    pub details: Vec<(u64, DeviceDetails)>,
}

impl Scan {
    /// The node at `blk`, if whole.
    pub fn node(&self, blk: u64) -> Option<&NodeRec> {
        self.index_of(blk).map(|i| &self.nodes[i])
    }

    /// Index of the node at `blk` in [`Scan::nodes`].
    pub fn index_of(&self, blk: u64) -> Option<usize> {
        self.nodes.binary_search_by_key(&blk, |n| n.blk).ok()
    }

    /// The kept (key, value) entries of a node.
    pub fn entries_of(&self, n: &NodeRec) -> &[(u64, u64)] {
        if n.kind == NodeKind::Leaf24 || !n.has_entries() {
            return &[];
        }
        let s = n.first as usize;
        &self.entries[s..s + n.nr as usize]
    }

    /// The details entries of a details leaf.
    pub fn details_of(&self, n: &NodeRec) -> &[(u64, DeviceDetails)] {
        if n.kind != NodeKind::Leaf24 || !n.has_entries() {
            return &[];
        }
        let s = n.first as usize;
        &self.details[s..s + n.nr as usize]
    }

    /// Reads a block (for mapping leaves, whose entries are not kept).
    pub fn read(&self, blk: u64) -> Result<Box<BlockData>> {
        let mut d = Box::new([0u8; BLOCK_SIZE]);
        self.dev
            .read_at(&mut d[..], blk * BLOCK_SIZE as u64)
            .map_err(|e| io_err(blk, e))?;
        Ok(d)
    }

    /// The (key, value) pairs of a whole 8-byte leaf, re-read from disk and
    /// checked to be the node the scan saw.
    pub fn leaf8(&self, blk: u64) -> Result<Vec<(u64, u64)>> {
        let d = self.read(blk)?;
        match parse(blk, &d, self.nr_blocks) {
            Some(p) if p.rec.kind == NodeKind::Leaf8 => {
                let n = Node::new(&d);
                Ok((0..n.nr_entries())
                    .map(|i| (n.key(i), le64(n.value(i), 0)))
                    .collect())
            }
            _ => Err(Error::msg(format!(
                "metadata block {blk:#x} changed while thin_repair was reading it"
            ))),
        }
    }
}

fn io_err(blk: u64, e: std::io::Error) -> Error {
    Error::Pdata(uthin_pdata::Error::Io {
        blk: MetaBlock(blk),
        source: e,
    })
}

/// A parsed node with the entries it keeps.
struct Parsed {
    rec: NodeRec,
    entries: Vec<(u64, u64)>,
    details: Vec<(u64, DeviceDetails)>,
}

/// Parses a block as a whole B-tree node, or None.
fn parse(blk: u64, d: &BlockData, nr_blocks: u64) -> Option<Parsed> {
    if checksum::classify(d) != Some(BlockKind::Node) || le64(d, 8) != blk {
        return None;
    }
    let n = Node::new(d);
    let (flags, nr, max, vs) = (n.flags(), n.nr_entries(), n.max_entries(), n.value_size());
    let kind = match (flags, vs) {
        (INTERNAL, 8) => NodeKind::Internal,
        (LEAF, 8) => NodeKind::Leaf8,
        (LEAF, 24) => NodeKind::Leaf24,
        (LEAF, 4) | (LEAF, 16) => NodeKind::LeafOther,
        _ => return None,
    };
    if max == 0 || HEADER + (8 + vs) * max > BLOCK_SIZE || nr > max {
        return None;
    }
    if kind == NodeKind::Internal && nr == 0 {
        return None;
    }
    if (1..nr).any(|i| n.key(i - 1) >= n.key(i)) {
        return None;
    }
    let mut rec = NodeRec {
        blk,
        kind,
        nr: nr as u32,
        key_lo: if nr > 0 { n.key(0) } else { 0 },
        key_hi: if nr > 0 { n.key(nr - 1) } else { 0 },
        max_time: 0,
        at_max: 0,
        max_data: 0,
        first: u32::MAX,
    };
    let mut entries = Vec::new();
    let mut details = Vec::new();
    match kind {
        NodeKind::Internal => {
            for i in 0..nr {
                let c = n.child(i).0;
                if c == 0 || c == blk || c >= nr_blocks {
                    return None;
                }
                entries.push((n.key(i), c));
            }
        }
        NodeKind::Leaf8 => {
            let mut small = nr > 0;
            for i in 0..nr {
                let v = le64(n.value(i), 0);
                small &= v < nr_blocks && v != 0;
                let (data, time) = (v >> 24, (v & 0xFF_FFFF) as u32);
                rec.max_data = rec.max_data.max(data);
                if time > rec.max_time || rec.at_max == 0 {
                    rec.max_time = time;
                    rec.at_max = 1;
                } else if time == rec.max_time {
                    rec.at_max += 1;
                }
            }
            if small {
                entries.extend((0..nr).map(|i| (n.key(i), le64(n.value(i), 0))));
            }
        }
        NodeKind::Leaf24 => {
            details.extend((0..nr).map(|i| (n.key(i), DeviceDetails::unpack(n.value(i)))));
        }
        NodeKind::LeafOther => {}
    }
    Some(Parsed {
        rec,
        entries,
        details,
    })
}

/// Reads the superblock at block 0.
fn read_sb(dev: &dyn BlockDevice) -> Result<SbState> {
    let mut d = Box::new([0u8; BLOCK_SIZE]);
    dev.read_at(&mut d[..], 0).map_err(|e| io_err(0, e))?;
    Ok(match SUPERBLOCK.check(MetaBlock(0), &d) {
        Ok(()) => SbState::Valid(Superblock::unpack(&d)),
        Err(e) => SbState::Invalid(e.to_string()),
    })
}

/// Scans every block of `dev` (up to the format's maximum metadata size).
pub fn scan(dev: Arc<dyn BlockDevice>, report: &Report) -> Result<Scan> {
    let len = dev.len().map_err(|e| io_err(0, e))?;
    let nr_blocks = (len / BLOCK_SIZE as u64).min(MAX_METADATA_BLOCKS);
    if nr_blocks == 0 {
        return Err(Error::msg(
            "Metadata device/file too small.  Is this binary metadata?",
        ));
    }
    let sb = read_sb(&*dev)?;
    report.start("scanning metadata", nr_blocks);
    let chunks: Vec<Vec<Parsed>> = (0..nr_blocks.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let begin = c * CHUNK;
            let n = CHUNK.min(nr_blocks - begin) as usize;
            let mut buf = vec![0u8; n * BLOCK_SIZE];
            dev.read_at(&mut buf, begin * BLOCK_SIZE as u64)
                .map_err(|e| io_err(begin, e))?;
            let out = buf
                .chunks_exact(BLOCK_SIZE)
                .enumerate()
                .filter_map(|(i, b)| {
                    let d: &BlockData = b.try_into().expect("block-sized chunk");
                    parse(begin + i as u64, d, nr_blocks)
                })
                .collect();
            report.inc(n as u64);
            Ok(out)
        })
        .collect::<Result<_>>()?;
    report.finish();
    let mut s = Scan {
        dev,
        nr_blocks,
        sb,
        nodes: Vec::new(),
        entries: Vec::new(),
        details: Vec::new(),
    };
    for p in chunks.into_iter().flatten() {
        let mut rec = p.rec;
        let too_many = |len: usize| len + rec.nr as usize >= u32::MAX as usize;
        if !p.entries.is_empty() && !too_many(s.entries.len()) {
            rec.first = s.entries.len() as u32;
            s.entries.extend(p.entries);
        } else if !p.details.is_empty() && !too_many(s.details.len()) {
            rec.first = s.details.len() as u32;
            s.details.extend(p.details);
        } else if rec.nr == 0 {
            rec.first = 0;
        }
        s.nodes.push(rec);
    }
    Ok(s)
}
