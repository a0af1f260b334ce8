//! The metadata space map's on-disk side (FORMAT.md §3.7, §3.9): one index
//! block with up to 255 entries, bitmaps, and a ref-count tree.  Its counts
//! live in the transaction manager (every shadow and allocation changes them).
//!
//! Commit is a fix-point: updating the ref-count tree and moving bitmaps to
//! fresh blocks allocate and free metadata blocks, which changes counts in
//! other bitmaps.  The loop relocates every dirty bitmap once (a relocated
//! bitmap is a shadow and is rewritten in place afterwards) until nothing new
//! is dirty, and only then writes the bitmaps, so what reaches the disk
//! describes every block, the space map's own included.

use super::counts::{nr_bitmaps, RefCounts, ENTRIES_PER_BITMAP};
use super::data::read_overflow;
use super::disk::{check_entry, read_bitmap, write_bitmap_words, IndexEntry, INDEX_ENTRY_SIZE};
use super::root::SmRoot;
use crate::block_manager::BlockManager;
use crate::btree::{self, NoRefs, Value};
use crate::error::{Error, Result};
use crate::tm::{TransactionManager, WriteBlock};
use crate::types::MetaBlock;
use crate::validator::INDEX;
use std::sync::Arc;

/// Most bitmaps one index block can describe.
pub const MAX_BITMAPS: u64 = 255;
/// Most metadata blocks the format can address.
pub const MAX_METADATA_BLOCKS: u64 = MAX_BITMAPS * ENTRIES_PER_BITMAP;

/// Where the metadata space map lives on disk.
pub struct MetadataSpaceMap {
    index_loc: Option<MetaBlock>,
    ref_root: MetaBlock,
    entries: Vec<Option<IndexEntry>>,
}

impl MetadataSpaceMap {
    /// Formats: `tm` holds fresh counts (`RefCounts::new`); creates the ref-count tree.
    pub fn format(tm: &mut TransactionManager) -> Result<Self> {
        let ref_root = btree::empty_tree::<u32>(tm)?;
        let nbm = nr_bitmaps(tm.counts().nr_blocks());
        Ok(MetadataSpaceMap {
            index_loc: None,
            ref_root,
            entries: vec![None; nbm as usize],
        })
    }

    /// Opens the space map described by `root`: returns the disk state and
    /// the counts to give the transaction manager.
    pub fn open(bm: BlockManager, root: &SmRoot) -> Result<(Self, TransactionManager)> {
        let nbm = nr_bitmaps(root.nr_blocks);
        if nbm > MAX_BITMAPS {
            return Err(Error::corrupt(
                "metadata space map",
                MetaBlock(0),
                format!(
                    "{} blocks need more than {MAX_BITMAPS} bitmaps",
                    root.nr_blocks
                ),
            ));
        }
        if root.nr_blocks > bm.nr_blocks() {
            return Err(Error::corrupt(
                "metadata space map",
                MetaBlock(0),
                format!(
                    "tracks {} blocks but the metadata device has {}",
                    root.nr_blocks,
                    bm.nr_blocks()
                ),
            ));
        }
        // Read with provisional counts, then load the ref-count tree.
        let mut tm = TransactionManager::new(bm, RefCounts::new(0));
        let idx = tm.read(root.bitmap_root, &INDEX)?;
        let mut entries = Vec::with_capacity(nbm as usize);
        let mut words = Vec::new();
        for i in 0..nbm {
            let o = 16 + INDEX_ENTRY_SIZE * i as usize;
            let e = IndexEntry::unpack(&idx[o..o + INDEX_ENTRY_SIZE]);
            check_entry(&e, i, root.bitmap_root)?;
            read_bitmap(&tm, e.blocknr, &mut words)?;
            entries.push(Some(e));
        }
        let overflow = read_overflow(&tm, root.ref_count_root)?;
        let counts = RefCounts::from_disk(root.nr_blocks, words, overflow)
            .map_err(|why| Error::corrupt("metadata space map", root.bitmap_root, why))?;
        tm.replace_counts(counts);
        Ok((
            MetadataSpaceMap {
                index_loc: Some(root.bitmap_root),
                ref_root: root.ref_count_root,
                entries,
            },
            tm,
        ))
    }

    /// Grows the counts in `tm` to `nr_blocks` (capped at the format's maximum).
    pub fn grow(&mut self, tm: &mut TransactionManager, nr_blocks: u64) -> Result<()> {
        let n = nr_blocks.min(MAX_METADATA_BLOCKS);
        if n > tm.bm().nr_blocks() {
            return Err(Error::Invalid(format!(
                "metadata device has {} blocks, cannot track {n}",
                tm.bm().nr_blocks()
            )));
        }
        tm.counts_mut().grow(n);
        self.entries.resize(nr_bitmaps(n) as usize, None);
        Ok(())
    }

    /// Writes the metadata space map; returns its root.  Call after every
    /// other change of the transaction (the data space map included).
    pub fn commit(&mut self, tm: &mut TransactionManager) -> Result<SmRoot> {
        self.index_loc = Some(tm.relocate(self.index_loc)?);
        loop {
            let mut progress = false;
            for (b, c) in tm.counts_mut().take_dirty_overflow() {
                progress = true;
                self.ref_root = match c {
                    Some(c) => btree::insert(tm, &mut NoRefs, self.ref_root, b, c)?.0,
                    None => btree::remove::<u32, _>(tm, &mut NoRefs, self.ref_root, b)?.0,
                };
            }
            let moving: Vec<u64> = tm
                .counts()
                .dirty_bitmaps()
                .iter()
                .copied()
                .filter(|&bm| match self.entries[bm as usize] {
                    Some(e) => !tm.is_shadow(e.blocknr),
                    None => true,
                })
                .collect();
            for bm in moving {
                progress = true;
                let old = self.entries[bm as usize].map(|e| e.blocknr);
                let loc = tm.relocate(old)?;
                self.entries[bm as usize] = Some(IndexEntry {
                    blocknr: loc,
                    nr_free: 0,
                    none_free_before: 0,
                });
            }
            if !progress {
                break;
            }
        }
        let dirty: Vec<u64> = tm.counts().dirty_bitmaps().iter().copied().collect();
        for bm in dirty {
            let loc = self.entries[bm as usize]
                .map(|e| e.blocknr)
                .expect("relocated above");
            let words = tm.counts().bitmap_words(bm).to_vec();
            let stats = tm.counts().bitmap_stats(bm);
            let e = write_bitmap_words(tm, &words, stats, loc)?;
            self.entries[bm as usize] = Some(e);
        }
        let index_loc = self.index_loc.expect("set above");
        let mut data = Arc::new([0u8; uthin_block_io::BLOCK_SIZE]);
        {
            let d = Arc::make_mut(&mut data);
            for (i, e) in self.entries.iter().enumerate() {
                let o = 16 + INDEX_ENTRY_SIZE * i;
                e.expect("every bitmap placed")
                    .pack(&mut d[o..o + INDEX_ENTRY_SIZE]);
            }
        }
        tm.put(
            WriteBlock {
                loc: index_loc,
                data,
            },
            &INDEX,
        )?;
        Ok(SmRoot {
            nr_blocks: tm.counts().nr_blocks(),
            nr_allocated: tm.counts().nr_allocated(),
            bitmap_root: index_loc,
            ref_count_root: self.ref_root,
        })
    }
}
