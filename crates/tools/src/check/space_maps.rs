//! The on-disk space maps (FORMAT.md §3): reading their structures (each
//! node, index block and bitmap is itself a counted metadata reference) and
//! comparing every 2-bit bitmap entry and ref-count tree entry with the
//! expected counts.  A block with count 1 on disk and 0 expected is a leak
//! (non-fatal, repairable); any other difference is fatal.

use super::counts::{tag, Expected, MetaCounts, Visit};
use super::io::Disk;
use super::node::{check_kind, NodeError};
use super::node::{le32, le64};
use super::problems::Problems;
use super::trees::TreeWalk;
use rayon::prelude::*;
use uthin_pdata::checksum::BlockKind;
use uthin_pdata::sm::counts::{ENTRIES_PER_BITMAP, WORDS_PER_BITMAP};
use uthin_pdata::sm::metadata::MAX_BITMAPS;
use uthin_pdata::sm::SmRoot;

const LOW_PAIRS: u64 = 0x5555_5555_5555_5555;
/// Example lines kept per space map and kind of difference.
const EXAMPLES: usize = 20;

/// One bitmap as the index describes it.
#[derive(Clone, Copy, Debug)]
pub struct BitmapRef {
    pub loc: u64,
    /// Where its index entry lives: (block, slot) — the index block for the
    /// metadata space map, an index-tree leaf for the data space map.
    pub entry_at: (u64, usize),
}

/// A space map's on-disk structures.
pub struct SmOnDisk {
    pub kind: &'static str,
    pub nr_blocks: u64,
    pub bitmaps: Vec<BitmapRef>,
    /// The ref-count tree, sorted by block.
    pub overflow: Vec<(u64, u32)>,
}

fn nr_bitmaps(nr_blocks: u64) -> u64 {
    nr_blocks.div_ceil(ENTRIES_PER_BITMAP)
}

fn count_bitmap(
    meta: &MetaCounts,
    problems: &Problems,
    kind: &str,
    i: u64,
    loc: u64,
    t: u8,
) -> bool {
    let why = match meta.reference(loc, t) {
        Visit::First => return true,
        Visit::Again => "is also another bitmap".to_string(),
        Visit::OutOfRange => NodeError::BeyondEnd.to_string(),
        Visit::Conflict(o) => format!("is also used as {}", tag::name(o)),
    };
    problems.fatal(
        Some(loc),
        format!("{kind} space map: bitmap {i} at block {loc} {why}"),
    );
    false
}

fn ref_count_tree(walk: &TreeWalk<'_>, root: u64) -> Vec<(u64, u32)> {
    let mut v = Vec::new();
    walk.walk(root, &mut |k, val, _, _| v.push((k, le32(val, 0))));
    v
}

/// Reads the data space map's index tree and ref-count tree.
pub fn read_data(
    disk: &Disk,
    meta: &MetaCounts,
    problems: &Problems,
    ignore_non_fatal: bool,
    root: &SmRoot,
) -> Option<SmOnDisk> {
    let nbm = nr_bitmaps(root.nr_blocks);
    if nbm > disk.nr_blocks() {
        problems.fatal(None, format!(
            "data space map: {} data blocks need {nbm} bitmaps, more blocks than the metadata device has",
            root.nr_blocks
        ));
        return None;
    }
    let walk = |what, t, vs| TreeWalk {
        disk,
        meta,
        problems,
        ignore_non_fatal,
        what,
        tag: t,
        leaf_vs: vs,
    };
    let mut entries = Vec::new();
    let errs = walk("data space map index", tag::DATA_INDEX, 16)
        .walk(root.bitmap_root.0, &mut |k, v, leaf, slot| {
            entries.push((k, le64(v, 0), (leaf, slot)))
        });
    let overflow = ref_count_tree(
        &walk("data ref-count tree", tag::DATA_REF, 4),
        root.ref_count_root.0,
    );
    let mut bitmaps = Vec::with_capacity(nbm as usize);
    let mut ok = errs == 0;
    for (k, loc, at) in entries {
        if k != bitmaps.len() as u64 || k >= nbm {
            problems.fatal(
                at.0.into(),
                format!(
                "data space map: index entry for bitmap {k} where bitmap {} of {nbm} was expected",
                bitmaps.len()
            ),
            );
            ok = false;
            break;
        }
        ok &= count_bitmap(meta, problems, "data", k, loc, tag::DATA_BITMAP);
        bitmaps.push(BitmapRef { loc, entry_at: at });
    }
    if ok && bitmaps.len() as u64 != nbm {
        problems.fatal(
            None,
            format!(
                "data space map: {} index entries for {nbm} bitmaps",
                bitmaps.len()
            ),
        );
        ok = false;
    }
    ok.then_some(SmOnDisk {
        kind: "data",
        nr_blocks: root.nr_blocks,
        bitmaps,
        overflow,
    })
}

/// Reads the metadata space map's index block and ref-count tree.
pub fn read_metadata(
    disk: &Disk,
    meta: &MetaCounts,
    problems: &Problems,
    ignore_non_fatal: bool,
    root: &SmRoot,
) -> Option<SmOnDisk> {
    let nbm = nr_bitmaps(root.nr_blocks);
    if root.nr_blocks > disk.nr_blocks() || nbm > MAX_BITMAPS {
        problems.fatal(None, format!(
            "metadata space map: tracks {} blocks, but the metadata device has {} (and the format at most {})",
            root.nr_blocks,
            disk.nr_blocks(),
            MAX_BITMAPS * ENTRIES_PER_BITMAP
        ));
        return None;
    }
    let rc = TreeWalk {
        disk,
        meta,
        problems,
        ignore_non_fatal,
        what: "metadata ref-count tree",
        tag: tag::META_REF,
        leaf_vs: 4,
    };
    let overflow = ref_count_tree(&rc, root.ref_count_root.0);
    let ib = root.bitmap_root.0;
    let bad = |why: String| {
        problems.fatal(
            Some(ib),
            format!("metadata space map: index block {ib}: {why}"),
        );
        None
    };
    match meta.reference(ib, tag::META_INDEX) {
        Visit::First => {}
        Visit::OutOfRange => return bad(NodeError::BeyondEnd.to_string()),
        Visit::Again => return bad("referenced twice".into()),
        Visit::Conflict(o) => return bad(format!("is also used as {}", tag::name(o))),
    }
    let Ok(d) = disk.read_new(ib) else {
        return bad(NodeError::IoError.to_string());
    };
    if let Err(e) = check_kind(&d, BlockKind::Index) {
        let why = match e {
            NodeError::NotANode(k) => format!(
                "not an index block (its checksum is that of a {})",
                k.name()
            ),
            e => e.to_string(),
        };
        return bad(why);
    }
    if le64(&d[..], 8) != ib {
        return bad(format!(
            "blocknr mismatch (it says it is block {})",
            le64(&d[..], 8)
        ));
    }
    let mut ok = true;
    let mut bitmaps = Vec::with_capacity(nbm as usize);
    for i in 0..nbm {
        let loc = le64(&d[..], 16 + 16 * i as usize);
        ok &= count_bitmap(meta, problems, "metadata", i, loc, tag::META_BITMAP);
        bitmaps.push(BitmapRef {
            loc,
            entry_at: (ib, i as usize),
        });
    }
    ok.then_some(SmOnDisk {
        kind: "metadata",
        nr_blocks: root.nr_blocks,
        bitmaps,
        overflow,
    })
}

/// Differences between a space map and the expected counts.
#[derive(Default, Debug)]
pub struct Diff {
    pub leaks: u64,
    pub bad: u64,
    /// Bitmaps (by number) holding leaks.
    pub leaky_bitmaps: Vec<usize>,
    /// Blocks whose expected count is not zero.
    pub expected_allocated: u64,
    leak_examples: Vec<String>,
    bad_examples: Vec<String>,
}

impl Diff {
    fn merge(mut self, o: Diff) -> Diff {
        self.leaks += o.leaks;
        self.bad += o.bad;
        self.leaky_bitmaps.extend(o.leaky_bitmaps);
        self.expected_allocated += o.expected_allocated;
        for (mine, theirs) in [
            (&mut self.leak_examples, o.leak_examples),
            (&mut self.bad_examples, o.bad_examples),
        ] {
            mine.extend(theirs);
            mine.truncate(EXAMPLES);
        }
        self
    }

    fn bad(&mut self, msg: String) {
        self.bad += 1;
        if self.bad_examples.len() < EXAMPLES {
            self.bad_examples.push(msg);
        }
    }
}

/// The 2-bit entry at pair position `p` (FORMAT.md §3.3 bit order).
#[inline]
fn get2(w: u64, p: u32) -> u32 {
    ((((w >> p) & 1) << 1) | ((w >> (p + 1)) & 1)) as u32
}

#[inline]
fn put2(v: u32, p: u32) -> u64 {
    (((v as u64 >> 1) & 1) << p) | ((v as u64 & 1) << (p + 1))
}

/// Compares every bitmap of `sm` with `expected`; records problems.
pub fn compare(disk: &Disk, sm: &SmOnDisk, expected: &dyn Expected, problems: &Problems) -> Diff {
    let kind = sm.kind;
    let diff = sm
        .bitmaps
        .par_iter()
        .enumerate()
        .map(|(i, bm)| compare_bitmap(disk, sm, i, bm, expected, problems))
        .reduce(Diff::default, Diff::merge);
    // Ref-count entries beyond the end.
    for &(b, c) in sm.overflow.iter().filter(|(b, _)| *b >= sm.nr_blocks) {
        problems.fatal(None, format!(
            "{kind} ref-count tree holds a count of {c} for block {b}, beyond the space map's {} blocks",
            sm.nr_blocks
        ));
    }
    for m in diff.bad_examples.iter() {
        problems.fatal(None, m.clone());
    }
    if diff.bad > 0 {
        problems.fatal(
            None,
            format!("{} {kind} blocks have bad reference counts", diff.bad),
        );
    }
    for m in diff.leak_examples.iter() {
        problems.non_fatal(None, m.clone());
    }
    if diff.leaks > 0 {
        problems.non_fatal(None, format!("{} {kind} blocks have leaked", diff.leaks));
    }
    diff
}

fn compare_bitmap(
    disk: &Disk,
    sm: &SmOnDisk,
    i: usize,
    bm: &BitmapRef,
    expected: &dyn Expected,
    problems: &Problems,
) -> Diff {
    let kind = sm.kind;
    let mut diff = Diff::default();
    let base = i as u64 * ENTRIES_PER_BITMAP;
    let n = (sm.nr_blocks - base).min(ENTRIES_PER_BITMAP);
    let d = match disk.read_new(bm.loc) {
        Ok(d) => d,
        Err(_) => {
            problems.fatal(
                Some(bm.loc),
                format!(
                    "{kind} space map: bitmap {i} at block {}: {}",
                    bm.loc,
                    NodeError::IoError
                ),
            );
            diff.bad += n;
            return diff;
        }
    };
    let why = match check_kind(&d, BlockKind::Bitmap) {
        Ok(()) if le64(&d[..], 8) == bm.loc => None,
        Ok(()) => Some(format!(
            "blocknr mismatch (it says it is block {})",
            le64(&d[..], 8)
        )),
        Err(NodeError::NotANode(k)) => Some(format!(
            "not a bitmap (its checksum is that of a {})",
            k.name()
        )),
        Err(e) => Some(e.to_string()),
    };
    if let Some(why) = why {
        problems.fatal(
            Some(bm.loc),
            format!("{kind} space map: bitmap {i} at block {}: {why}", bm.loc),
        );
        diff.bad += n;
        return diff;
    }
    let lo = sm.overflow.partition_point(|(b, _)| *b < base);
    let hi = sm.overflow.partition_point(|(b, _)| *b < base + n);
    let ov = &sm.overflow[lo..hi];
    let mut leaky = false;
    for w in 0..WORDS_PER_BITMAP.min(n.div_ceil(32) as usize) {
        let word = le64(&d[..], 16 + 8 * w);
        let first = base + 32 * w as u64;
        let cnt = (base + n - first).min(32) as u32;
        let mut exp = [0u32; 32];
        expected.fill(first, &mut exp[..cnt as usize]);
        let mut exp_word = 0u64;
        for j in 0..cnt {
            exp_word |= put2(exp[j as usize].min(3), 2 * j);
        }
        diff.expected_allocated += exp[..cnt as usize].iter().filter(|&&c| c > 0).count() as u64;
        let mask = if cnt == 32 {
            !0
        } else {
            (1u64 << (2 * cnt)) - 1
        };
        let word = word & mask;
        if word == exp_word && word & (word >> 1) & LOW_PAIRS == 0 {
            continue;
        }
        for j in 0..cnt {
            let b = first + j as u64;
            let e = exp[j as usize];
            let small = get2(word, 2 * j);
            let actual = if small == 3 {
                match ov.binary_search_by_key(&b, |x| x.0) {
                    Ok(k) => ov[k].1,
                    Err(_) => {
                        diff.bad(format!(
                            "Bad reference count for {kind} block {b}.  Expected {e}, but the bitmap says 3 or more and the ref-count tree has no entry."
                        ));
                        continue;
                    }
                }
            } else {
                small
            };
            if actual == e {
                continue;
            }
            if actual == 1 && e == 0 {
                diff.leaks += 1;
                leaky = true;
                if diff.leak_examples.len() < EXAMPLES {
                    diff.leak_examples.push(format!("{kind} block {b} has leaked: count 1 in the space map, but nothing references it"));
                }
            } else {
                diff.bad(format!(
                    "Bad reference count for {kind} block {b}.  Expected {e}, but space map contains {actual}."
                ));
            }
        }
    }
    for &(b, c) in ov {
        let off = b - base;
        let small = get2(
            le64(&d[..], 16 + 8 * (off / 32) as usize),
            2 * (off % 32) as u32,
        );
        if small != 3 || c < 3 {
            diff.bad(format!(
                "{kind} ref-count tree holds a count of {c} for block {b}, whose bitmap entry is {small}"
            ));
        }
    }
    if leaky {
        diff.leaky_bitmaps.push(i);
    }
    diff
}

/// Recomputes a bitmap's (nr_free, none_free_before) from its words, as the
/// kernel counts them (every zero entry is free).
pub fn bitmap_stats(d: &[u8]) -> (u32, u32) {
    let mut used = 0u32;
    let mut first_free = None;
    for i in 0..WORDS_PER_BITMAP {
        let w = le64(d, 16 + 8 * i);
        let u = (w | (w >> 1)) & LOW_PAIRS;
        used += u.count_ones();
        if first_free.is_none() && u != LOW_PAIRS {
            first_free = Some(i as u32 * 32 + (!u & LOW_PAIRS).trailing_zeros() / 2);
        }
    }
    (
        ENTRIES_PER_BITMAP as u32 - used,
        first_free.unwrap_or(ENTRIES_PER_BITMAP as u32),
    )
}

/// Clears the entries of bitmap block `d` (bitmap number `i`) that hold a
/// count of 1 where 0 is expected; returns how many.
pub fn clear_leaks(d: &mut [u8], i: usize, nr_blocks: u64, expected: &dyn Expected) -> u64 {
    let base = i as u64 * ENTRIES_PER_BITMAP;
    let n = (nr_blocks - base).min(ENTRIES_PER_BITMAP);
    let mut fixed = 0;
    for e in 0..n {
        let (wi, p) = (16 + 8 * (e / 32) as usize, 2 * (e % 32) as u32);
        let w = le64(d, wi);
        if get2(w, p) == 1 && expected.expected(base + e) == 0 {
            d[wi..wi + 8].copy_from_slice(&(w & !(3u64 << p)).to_le_bytes());
            fixed += 1;
        }
    }
    fixed
}
