//! An independent check of restored metadata, stricter than Debian's
//! 0.9.0 thin_check: every non-root node holds at least a third of its
//! capacity, every metadata and data reference count is exactly what the
//! trees imply (FORMAT.md §9), and each device's `mapped_blocks` matches.

use std::collections::HashMap;
use std::sync::Arc;
use uthin_block_io::BlockDevice;
use uthin_pdata::block_manager::BlockManager;
use uthin_pdata::btree::node::Node;
use uthin_pdata::btree::read_node;
use uthin_pdata::btree::Value;
use uthin_pdata::sm::disk::IndexEntry;
use uthin_pdata::sm::{DataSpaceMap, MetadataSpaceMap};
use uthin_pdata::tm::TransactionManager;
use uthin_pdata::validator::INDEX;
use uthin_pdata::MetaBlock;
use uthin_thin::details::DeviceDetails;
use uthin_thin::superblock::{Superblock, SUPERBLOCK};

struct V<'a> {
    tm: &'a TransactionManager,
    meta: HashMap<u64, u32>,
    data: HashMap<u64, u32>,
    /// Walked nodes: (entries, max entries, leaf entries below).
    walked: HashMap<u64, (usize, usize, u64)>,
    errors: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Top,
    Bottom,
    Details,
    Index,
    RefCount,
}

impl V<'_> {
    fn inc(&mut self, b: u64) {
        *self.meta.entry(b).or_default() += 1;
    }

    /// Counts a reference to `blk`, walks it the first time; returns the
    /// number of leaf entries below it (for mapped_blocks).
    fn node(&mut self, blk: u64, kind: Kind, root: bool) -> u64 {
        self.inc(blk);
        if let Some(&(nr, max, count)) = self.walked.get(&blk) {
            if !root && nr < max / 3 {
                self.errors
                    .push(format!("node {blk} under-filled: {nr} entries"));
            }
            return count;
        }
        let vs = match kind {
            Kind::Top | Kind::Bottom => 8,
            Kind::Details => DeviceDetails::SIZE,
            Kind::Index => IndexEntry::SIZE,
            Kind::RefCount => 4,
        };
        let d = match read_node(self.tm, MetaBlock(blk), vs) {
            Ok(d) => d,
            Err(e) => {
                self.errors.push(e.to_string());
                return 0;
            }
        };
        let n = Node::new(&d);
        if !root && n.nr_entries() < n.max_entries() / 3 {
            self.errors.push(format!(
                "node {blk} under-filled: {} entries",
                n.nr_entries()
            ));
        }
        let mut count = 0;
        for i in 0..n.nr_entries() {
            if !n.is_leaf() {
                count += self.node(n.child(i).0, kind, false);
                continue;
            }
            count += 1;
            match kind {
                Kind::Bottom => {
                    let v = u64::unpack(n.value(i));
                    *self.data.entry(v >> 24).or_default() += 1;
                }
                Kind::Index => {
                    let e = IndexEntry::unpack(n.value(i));
                    self.inc(e.blocknr.0);
                }
                _ => {}
            }
        }
        self.walked
            .insert(blk, (n.nr_entries(), n.max_entries(), count));
        count
    }
}

/// Checks the metadata on `dev`; returns every problem found.
pub fn verify(dev: Arc<dyn BlockDevice>) -> Result<(), String> {
    let bm = BlockManager::new(dev, 4096, true).map_err(|e| e.to_string())?;
    let sbd = bm
        .read(MetaBlock(0), &SUPERBLOCK)
        .map_err(|e| e.to_string())?;
    let sb = Superblock::unpack(&sbd);
    let (_msm, tm) = MetadataSpaceMap::open(bm, &sb.metadata_sm_root).map_err(|e| e.to_string())?;
    let dsm = DataSpaceMap::open(&tm, &sb.data_sm_root).map_err(|e| e.to_string())?;
    let mut v = V {
        tm: &tm,
        meta: HashMap::new(),
        data: HashMap::new(),
        walked: HashMap::new(),
        errors: Vec::new(),
    };
    v.inc(0);
    let mut details = Vec::new();
    uthin_pdata::btree::walk::<DeviceDetails>(
        &tm,
        sb.device_details_root,
        0,
        u64::MAX,
        &mut |k, d| {
            details.push((k, d));
            Ok(std::ops::ControlFlow::Continue(()))
        },
    )
    .map_err(|e| e.to_string())?;
    let mut roots = Vec::new();
    uthin_pdata::btree::walk::<u64>(&tm, sb.data_mapping_root, 0, u64::MAX, &mut |k, r| {
        roots.push((k, r));
        Ok(std::ops::ControlFlow::Continue(()))
    })
    .map_err(|e| e.to_string())?;
    v.node(sb.device_details_root.0, Kind::Details, true);
    v.node(sb.data_mapping_root.0, Kind::Top, true);
    for (id, root) in &roots {
        let mapped = v.node(*root, Kind::Bottom, true);
        match details.iter().find(|d| d.0 == *id) {
            Some((_, d)) if d.mapped_blocks == mapped => {}
            other => v
                .errors
                .push(format!("device {id}: {mapped} mappings, details {other:?}")),
        }
    }
    if details.len() != roots.len() {
        v.errors
            .push("details and mapping trees list different devices".into());
    }
    v.node(sb.data_sm_root.bitmap_root.0, Kind::Index, true);
    v.node(sb.data_sm_root.ref_count_root.0, Kind::RefCount, true);
    v.node(sb.metadata_sm_root.ref_count_root.0, Kind::RefCount, true);
    let idx = sb.metadata_sm_root.bitmap_root;
    v.inc(idx.0);
    let id = tm.read(idx, &INDEX).map_err(|e| e.to_string())?;
    let nbm = uthin_pdata::sm::counts::nr_bitmaps(sb.metadata_sm_root.nr_blocks);
    for i in 0..nbm as usize {
        let e = IndexEntry::unpack(&id[16 + 16 * i..32 + 16 * i]);
        v.inc(e.blocknr.0);
    }
    let mut errors = std::mem::take(&mut v.errors);
    for b in 0..sb.metadata_sm_root.nr_blocks {
        let want = v.meta.get(&b).copied().unwrap_or(0);
        let got = tm.counts().get(b);
        if want != got {
            errors.push(format!("metadata block {b}: count {got}, expected {want}"));
        }
    }
    for b in 0..sb.data_sm_root.nr_blocks {
        let want = v.data.get(&b).copied().unwrap_or(0);
        let got = dsm.counts().get(b);
        if want != got {
            errors.push(format!("data block {b}: count {got}, expected {want}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.truncate(20);
        Err(errors.join("\n"))
    }
}
