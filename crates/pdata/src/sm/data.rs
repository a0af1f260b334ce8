//! The data space map: counts of data blocks, indexed by a B-tree of index
//! entries (FORMAT.md §3.6).  Counts live in memory; [`DataSpaceMap::commit`]
//! writes the changed bitmaps, index entries and ref-count tree entries
//! through the transaction manager.

use super::counts::{nr_bitmaps, RefCounts};
use super::disk::{check_entry, read_bitmap, write_bitmap, IndexEntry};
use super::root::SmRoot;
use crate::btree::{self, NoRefs};
use crate::error::{Error, Result};
use crate::tm::TransactionManager;
use crate::types::MetaBlock;
use std::collections::HashMap;
use std::ops::ControlFlow;

/// The data space map.
pub struct DataSpaceMap {
    counts: RefCounts,
    bitmap_locs: Vec<Option<MetaBlock>>,
    index_root: MetaBlock,
    ref_root: MetaBlock,
}

impl DataSpaceMap {
    /// A new, empty space map of `nr_blocks` blocks.
    pub fn format(tm: &mut TransactionManager, nr_blocks: u64) -> Result<Self> {
        let index_root = btree::empty_tree::<IndexEntry>(tm)?;
        let ref_root = btree::empty_tree::<u32>(tm)?;
        let mut sm = DataSpaceMap {
            counts: RefCounts::new(0),
            bitmap_locs: Vec::new(),
            index_root,
            ref_root,
        };
        sm.grow(nr_blocks);
        Ok(sm)
    }

    /// Opens the space map described by `root`.
    pub fn open(tm: &TransactionManager, root: &SmRoot) -> Result<Self> {
        let nbm = nr_bitmaps(root.nr_blocks);
        // Each bitmap has its own metadata block: a larger count is corrupt
        // (and must not size an allocation).
        if nbm > tm.bm().nr_blocks() {
            return Err(Error::corrupt(
                "data space map",
                MetaBlock(0),
                format!(
                    "{} data blocks need {nbm} bitmaps, more than the metadata device's {} blocks",
                    root.nr_blocks,
                    tm.bm().nr_blocks()
                ),
            ));
        }
        let mut locs = Vec::with_capacity(nbm as usize);
        let mut words = Vec::new();
        let mut expect = 0u64;
        let mut err = None;
        btree::walk::<IndexEntry>(tm, root.bitmap_root, 0, u64::MAX, &mut |k, e| {
            if k != expect || k >= nbm {
                err = Some(format!(
                    "index entry for bitmap {k}, expected {expect} of {nbm}"
                ));
                return Ok(ControlFlow::Break(()));
            }
            check_entry(&e, k, root.bitmap_root)?;
            read_bitmap(tm, e.blocknr, &mut words)?;
            locs.push(Some(e.blocknr));
            expect += 1;
            Ok(ControlFlow::Continue(()))
        })?;
        if err.is_none() && expect != nbm {
            err = Some(format!("{expect} index entries for {nbm} bitmaps"));
        }
        let overflow = read_overflow(tm, root.ref_count_root)?;
        let counts = err
            .map_or_else(
                || RefCounts::from_disk(root.nr_blocks, words, overflow),
                Err,
            )
            .map_err(|why| Error::corrupt("data space map", root.bitmap_root, why))?;
        Ok(DataSpaceMap {
            counts,
            bitmap_locs: locs,
            index_root: root.bitmap_root,
            ref_root: root.ref_count_root,
        })
    }

    /// The counts.
    pub fn counts(&self) -> &RefCounts {
        &self.counts
    }

    /// The counts, mutably.
    pub fn counts_mut(&mut self) -> &mut RefCounts {
        &mut self.counts
    }

    /// Grows to `nr_blocks` (never shrinks).
    pub fn grow(&mut self, nr_blocks: u64) {
        self.counts.grow(nr_blocks);
        self.bitmap_locs
            .resize(nr_bitmaps(self.counts.nr_blocks()) as usize, None);
    }

    /// Writes every change of this transaction; returns the new root.
    pub fn commit(&mut self, tm: &mut TransactionManager) -> Result<SmRoot> {
        for (b, c) in self.counts.take_dirty_overflow() {
            self.ref_root = match c {
                Some(c) => btree::insert(tm, &mut NoRefs, self.ref_root, b, c)?.0,
                None => btree::remove::<u32, _>(tm, &mut NoRefs, self.ref_root, b)?.0,
            };
        }
        let dirty: Vec<u64> = self.counts.dirty_bitmaps().iter().copied().collect();
        for bm in dirty {
            let loc = tm.relocate(self.bitmap_locs[bm as usize])?;
            self.bitmap_locs[bm as usize] = Some(loc);
            let entry = write_bitmap(tm, &self.counts, bm, loc)?;
            self.index_root = btree::insert(tm, &mut NoRefs, self.index_root, bm, entry)?.0;
        }
        self.counts.commit();
        Ok(self.root())
    }

    /// The root as of the last commit (valid right after [`DataSpaceMap::commit`]).
    pub fn root(&self) -> SmRoot {
        SmRoot {
            nr_blocks: self.counts.nr_blocks(),
            nr_allocated: self.counts.nr_allocated(),
            bitmap_root: self.index_root,
            ref_count_root: self.ref_root,
        }
    }
}

/// Reads a ref-count tree into a map.
pub fn read_overflow(tm: &TransactionManager, root: MetaBlock) -> Result<HashMap<u64, u32>> {
    let mut m = HashMap::new();
    btree::walk::<u32>(tm, root, 0, u64::MAX, &mut |k, v| {
        m.insert(k, v);
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(m)
}
