//! The transaction manager: copy-on-write shadowing over the block manager,
//! with the metadata space map's counts held in memory.
//!
//! Invariant: a block reachable from the committed superblock is never written
//! in place.  Every block modified in a transaction is either new (allocated
//! in it) or a shadow (a copy of a committed block, made at most once per
//! transaction unless the block becomes shared again).  Blocks freed in a
//! transaction are not reused until the commit (see [`crate::sm::counts`]).
//!
//! Shadowing a shared block (count > 1) copies it and tells the caller, who
//! must increment everything the copy points to (lazy reference counting,
//! FORMAT.md §4.2).

use crate::block_manager::BlockManager;
use crate::error::{Error, Result};
use crate::sm::counts::RefCounts;
use crate::types::{BlockData, MetaBlock};
use crate::validator::Validator;
use std::collections::HashSet;
use std::sync::Arc;

/// A writable block handed out by the transaction manager.
pub struct WriteBlock {
    /// Where the block lives (the shadow's location).
    pub loc: MetaBlock,
    /// Its bytes; modify with `Arc::make_mut` (no copy: the cache let go of it).
    pub data: Arc<BlockData>,
}

impl WriteBlock {
    /// Mutable access to the bytes.
    pub fn bytes(&mut self) -> &mut BlockData {
        Arc::make_mut(&mut self.data)
    }
}

/// Copy-on-write access to metadata blocks.
pub struct TransactionManager {
    bm: BlockManager,
    counts: RefCounts,
    shadows: HashSet<u64>,
}

impl TransactionManager {
    /// A transaction manager over `bm` with metadata counts `counts`.
    pub fn new(bm: BlockManager, counts: RefCounts) -> Self {
        TransactionManager {
            bm,
            counts,
            shadows: HashSet::new(),
        }
    }

    /// The block manager.
    pub fn bm(&self) -> &BlockManager {
        &self.bm
    }

    /// The block manager, mutably.
    pub fn bm_mut(&mut self) -> &mut BlockManager {
        &mut self.bm
    }

    /// The metadata reference counts.
    pub fn counts(&self) -> &RefCounts {
        &self.counts
    }

    /// The metadata reference counts, mutably.
    pub fn counts_mut(&mut self) -> &mut RefCounts {
        &mut self.counts
    }

    /// Replaces the metadata counts (after abort or reopen).
    pub fn replace_counts(&mut self, counts: RefCounts) {
        self.counts = counts;
        self.shadows.clear();
    }

    /// Reads a validated block.
    pub fn read(&self, blk: MetaBlock, v: &'static dyn Validator) -> Result<Arc<BlockData>> {
        self.bm.read(blk, v)
    }

    /// Reference count of a metadata block.
    pub fn ref_count(&self, blk: MetaBlock) -> u32 {
        self.counts.get(blk.0)
    }

    /// Whether `blk` was allocated or shadowed in this transaction.
    pub fn is_shadow(&self, blk: MetaBlock) -> bool {
        self.shadows.contains(&blk.0)
    }

    fn alloc(&mut self) -> Result<MetaBlock> {
        if self.bm.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let b = self.counts.alloc().ok_or(Error::NoSpace("metadata"))?;
        self.shadows.insert(b);
        Ok(MetaBlock(b))
    }

    /// Allocates a zeroed block (count 1) in this transaction.
    pub fn new_block(&mut self) -> Result<WriteBlock> {
        let loc = self.alloc()?;
        Ok(WriteBlock {
            loc,
            data: Arc::new([0u8; uthin_block_io::BLOCK_SIZE]),
        })
    }

    /// Gets a writable version of `blk`.  Returns the block and whether the
    /// original was shared (then the caller increments what it points to).
    pub fn shadow(
        &mut self,
        blk: MetaBlock,
        v: &'static dyn Validator,
    ) -> Result<(WriteBlock, bool)> {
        if self.bm.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let count = self.counts.get(blk.0);
        if count == 0 {
            return Err(Error::corrupt(
                v.kind().name(),
                blk,
                "shadowing a block whose reference count is 0",
            ));
        }
        let shared = count > 1;
        if !shared && self.shadows.contains(&blk.0) {
            let data = self.bm.take(blk, v)?;
            return Ok((WriteBlock { loc: blk, data }, false));
        }
        let orig = self.bm.read(blk, v)?;
        let loc = self.alloc()?;
        self.dec(blk)?;
        Ok((WriteBlock { loc, data: orig }, shared))
    }

    /// Moves `blk` to a fresh location without reading it (the caller rewrites
    /// the whole block): used for space-map bitmaps and the index block.
    /// Returns `blk` itself when it is already a shadow.
    pub fn relocate(&mut self, blk: Option<MetaBlock>) -> Result<MetaBlock> {
        match blk {
            Some(b) if self.shadows.contains(&b.0) && self.counts.get(b.0) == 1 => Ok(b),
            Some(b) => {
                let loc = self.alloc()?;
                self.dec(b)?;
                Ok(loc)
            }
            None => self.alloc(),
        }
    }

    /// Stores a modified block; it reaches the device at commit.
    pub fn put(&mut self, wb: WriteBlock, v: &'static dyn Validator) -> Result<()> {
        self.bm.put_dirty(wb.loc, wb.data, v)
    }

    /// Increments the count of a metadata block.
    pub fn inc(&mut self, blk: MetaBlock) -> Result<()> {
        self.counts.adjust(blk.0, 1).map(|_| ()).ok_or_else(|| {
            Error::corrupt(
                "block reference",
                blk,
                "out of range of the metadata space map",
            )
        })
    }

    /// Decrements the count of a metadata block; returns the new count.
    pub fn dec(&mut self, blk: MetaBlock) -> Result<u32> {
        self.counts.adjust(blk.0, -1).ok_or_else(|| {
            Error::corrupt(
                "block reference",
                blk,
                "reference count would drop below zero (or block out of range)",
            )
        })
    }

    /// Ends the transaction's shadow tracking (after the commit wrote everything).
    pub fn end_transaction(&mut self) {
        self.shadows.clear();
        self.counts.commit();
    }
}
