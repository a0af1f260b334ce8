//! The space maps of a valid superblock, as far as they can be read, as
//! witnesses of what was live at the last commit.  Repair never trusts them
//! for the output (it recomputes every count); it only uses them to tell a
//! live node whose parent was destroyed from a stale copy left behind by an
//! earlier transaction, and stale mappings from live ones.  A damaged
//! bitmap leaves its blocks unknown; a damaged ref-count tree leaves the
//! counts above 2 unknown.

use super::roots::top_entries;
use super::scan::{NodeKind, SbState, Scan};
use super::walk::{walk, Walked};
use std::collections::{HashMap, HashSet};
use uthin_pdata::btree::node::Node;
use uthin_pdata::sm::counts::{nr_bitmaps, ENTRIES_PER_BITMAP, WORDS_PER_BITMAP};
use uthin_pdata::sm::SmRoot;
use uthin_pdata::types::le64;
use uthin_pdata::validator::{Validator, BITMAP, INDEX};
use uthin_pdata::MetaBlock;
use uthin_thin::superblock::{Superblock, SUPERBLOCK};

/// Reference counts read from a space map; parts may be unknown.
pub struct Counts {
    nr_blocks: u64,
    /// Words of each bitmap, if it could be read.
    bitmaps: Vec<Option<Vec<u64>>>,
    overflow: HashMap<u64, u32>,
}

impl Counts {
    /// The count of `b`, if known.
    pub fn get(&self, b: u64) -> Option<u32> {
        if b >= self.nr_blocks {
            return None;
        }
        let words = self.bitmaps[(b / ENTRIES_PER_BITMAP) as usize].as_ref()?;
        let e = b % ENTRIES_PER_BITMAP;
        let (w, p) = (words[(e / 32) as usize], 2 * (e % 32));
        match (((w >> p) & 1) << 1) | ((w >> (p + 1)) & 1) {
            3 => self.overflow.get(&b).copied(),
            v => Some(v as u32),
        }
    }
}

/// What the space maps say, as far as readable.
#[derive(Default)]
pub struct Oracle {
    /// Metadata block reference counts.
    pub meta: Option<Counts>,
    /// Data block reference counts.
    pub data: Option<Counts>,
    /// References the held metadata snapshot's mapping tree makes (they
    /// are in `meta` but not in any recovered tree).
    pub held: HashMap<u64, u32>,
}

impl Oracle {
    /// Reads both space maps of a valid superblock.
    pub fn load(scan: &Scan) -> Oracle {
        let SbState::Valid(sb) = &scan.sb else {
            return Oracle::default();
        };
        let mut o = Oracle {
            meta: read_meta(scan, &sb.metadata_sm_root),
            data: read_data(scan, &sb.data_sm_root),
            held: HashMap::new(),
        };
        if o.meta.is_some() && sb.held_root != 0 {
            o.held = held_refs(scan, sb.held_root);
        }
        o
    }

    /// Metadata count of `blk`, if known.
    pub fn meta_count(&self, blk: u64) -> Option<u32> {
        self.meta.as_ref().and_then(|c| c.get(blk))
    }

    /// Whether `blk` may have been live at the last commit.
    pub fn maybe_live(&self, blk: u64) -> bool {
        self.meta_count(blk).is_none_or(|c| c > 0)
    }

    /// Whether data block `b` may be mapped at the last commit.
    pub fn data_maybe_used(&self, b: u64) -> bool {
        match &self.data {
            Some(c) => b < c.nr_blocks && c.get(b).is_none_or(|n| n > 0),
            None => true,
        }
    }
}

/// The words of the bitmap at `loc`, if whole.
fn bitmap(scan: &Scan, loc: u64) -> Option<Vec<u64>> {
    let d = scan.read(loc).ok()?;
    BITMAP.check(MetaBlock(loc), &d).ok()?;
    Some(
        (0..WORDS_PER_BITMAP)
            .map(|i| le64(&d[..], 16 + 8 * i))
            .collect(),
    )
}

/// (key, value bytes) of every whole leaf of the tree at `root` whose
/// leaves hold `vs`-byte values.
fn tree_entries(scan: &Scan, root: u64, vs: usize) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![(root, 0usize)];
    let mut seen = HashSet::new();
    while let Some((b, depth)) = stack.pop() {
        let n = scan.node(b);
        let Some(n) = n.filter(|_| depth <= uthin_pdata::btree::MAX_DEPTH && seen.insert(b)) else {
            continue;
        };
        match n.kind {
            NodeKind::Internal => stack.extend(scan.entries_of(n).iter().map(|e| (e.1, depth + 1))),
            NodeKind::LeafOther => {
                let Ok(d) = scan.read(b) else {
                    continue;
                };
                let node = Node::new(&d);
                if node.value_size() != vs {
                    continue;
                }
                out.extend((0..node.nr_entries()).map(|i| (node.key(i), node.value(i).to_vec())));
            }
            _ => {}
        }
    }
    out
}

/// The counts above 2 held in a ref-count tree (as far as readable).
fn overflow(scan: &Scan, root: u64) -> HashMap<u64, u32> {
    tree_entries(scan, root, 4)
        .into_iter()
        .map(|(k, v)| (k, u32::from_le_bytes(v[..4].try_into().expect("4 bytes"))))
        .collect()
}

/// The metadata space map: an index block naming every bitmap.
fn read_meta(scan: &Scan, root: &SmRoot) -> Option<Counts> {
    let loc = root.bitmap_root.0;
    let d = scan.read(loc).ok()?;
    INDEX.check(MetaBlock(loc), &d).ok()?;
    let nbm = nr_bitmaps(root.nr_blocks).min(255) as usize;
    let bitmaps = (0..nbm)
        .map(|i| bitmap(scan, le64(&d[..], 16 + 16 * i)))
        .collect();
    Some(Counts {
        nr_blocks: root.nr_blocks.min(nbm as u64 * ENTRIES_PER_BITMAP),
        bitmaps,
        overflow: overflow(scan, root.ref_count_root.0),
    })
}

/// The data space map: an index tree of bitmaps.
fn read_data(scan: &Scan, root: &SmRoot) -> Option<Counts> {
    let nbm = nr_bitmaps(root.nr_blocks);
    if nbm > scan.nr_blocks {
        return None;
    }
    let es = tree_entries(scan, root.bitmap_root.0, 16);
    let mut bitmaps: Vec<Option<Vec<u64>>> = vec![None; nbm as usize];
    for (k, v) in es {
        if let Some(slot) = bitmaps.get_mut(k as usize) {
            *slot = bitmap(scan, le64(&v, 0));
        }
    }
    Some(Counts {
        nr_blocks: root.nr_blocks,
        bitmaps,
        overflow: overflow(scan, root.ref_count_root.0),
    })
}

/// References made by the mapping tree of the metadata snapshot at `loc`:
/// one per child slot of each distinct internal node, one per top-level
/// value.
fn held_refs(scan: &Scan, loc: u64) -> HashMap<u64, u32> {
    let mut refs: HashMap<u64, u32> = HashMap::new();
    let Ok(d) = scan.read(loc) else {
        return refs;
    };
    if SUPERBLOCK.check(MetaBlock(loc), &d).is_err() {
        return refs;
    }
    let top = Superblock::unpack(&d).data_mapping_root.0;
    let mut internals: HashSet<u64> = HashSet::new();
    let mut stack = vec![top];
    let mut subtrees = HashSet::new();
    for (_, root) in top_entries(scan, top) {
        *refs.entry(root).or_default() += 1;
        subtrees.insert(root);
    }
    let mut w = Walked::default();
    for r in subtrees {
        walk(scan, r, false, &mut w);
    }
    stack.extend(w.internals);
    while let Some(b) = stack.pop() {
        let Some(n) = scan.node(b).filter(|n| n.kind == NodeKind::Internal) else {
            continue;
        };
        if internals.insert(b) {
            for &(_, c) in scan.entries_of(n) {
                *refs.entry(c).or_default() += 1;
                stack.push(c);
            }
        }
    }
    refs
}
