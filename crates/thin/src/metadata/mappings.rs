//! Mapping operations (FORMAT.md §5.3): lookups with the `shared` flag,
//! mapped ranges, insert, remove, remove a range, and data block counts.
//!
//! Updating a device's sub-tree goes through [`btree::insert_with`] on the
//! top level with no decrement of the old value: shadowing already moved the
//! sub-tree root's reference, so only the new location is recorded.

use super::PoolMetadata;
use crate::error::{Error, Result};
use crate::mapping::{BlockTime, DataRefs};
use crate::types::{DataBlock, DevId, VirtBlock};
use std::ops::ControlFlow;
use uthin_pdata::btree::{self, MetaBlockRefs};
use uthin_pdata::sm::DataSpaceMap;
use uthin_pdata::tm::TransactionManager;
use uthin_pdata::MetaBlock;

/// A run of consecutive mappings to consecutive data blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRange {
    pub thin_begin: VirtBlock,
    pub thin_end: VirtBlock,
    pub data_begin: DataBlock,
    pub maybe_shared: bool,
}

/// A looked-up mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub block: DataBlock,
    pub shared: bool,
}

impl PoolMetadata {
    /// Where `vblock` of `dev` is mapped, and whether it may be shared.
    pub fn find_block(&self, dev: DevId, vblock: VirtBlock) -> Result<Option<Lookup>> {
        let det = self.device_details(dev)?;
        let root = self.device_root(dev)?;
        let inner = self.inner()?;
        Ok(btree::lookup::<u64>(&inner.tm, root, vblock.0)?.map(|v| {
            let bt = BlockTime::unpack(v);
            Lookup {
                block: bt.block,
                shared: det.snapshotted_time > bt.time.0,
            }
        }))
    }

    /// The first run of mappings in `[begin, end)`.
    pub fn find_mapped_range(
        &self,
        dev: DevId,
        begin: VirtBlock,
        end: VirtBlock,
    ) -> Result<Option<MappedRange>> {
        let det = self.device_details(dev)?;
        let root = self.device_root(dev)?;
        let inner = self.inner()?;
        let mut run: Option<MappedRange> = None;
        btree::walk::<u64>(&inner.tm, root, begin.0, end.0, &mut |k, v| {
            let bt = BlockTime::unpack(v);
            let shared = det.snapshotted_time > bt.time.0;
            match run.as_mut() {
                None => {
                    run = Some(MappedRange {
                        thin_begin: VirtBlock(k),
                        thin_end: VirtBlock(k + 1),
                        data_begin: bt.block,
                        maybe_shared: shared,
                    });
                }
                Some(r) => {
                    let len = r.thin_end.0 - r.thin_begin.0;
                    if k != r.thin_end.0
                        || bt.block.0 != r.data_begin.0 + len
                        || shared != r.maybe_shared
                    {
                        return Ok(ControlFlow::Break(()));
                    }
                    r.thin_end = VirtBlock(k + 1);
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(run)
    }

    /// Calls `f` for every mapping of `dev` in `[begin, end)`, in order.
    pub fn for_each_mapping(
        &self,
        dev: DevId,
        begin: VirtBlock,
        end: VirtBlock,
        f: &mut dyn FnMut(VirtBlock, BlockTime),
    ) -> Result<()> {
        let root = self.device_root(dev)?;
        let inner = self.inner()?;
        btree::walk::<u64>(&inner.tm, root, begin.0, end.0, &mut |k, v| {
            f(VirtBlock(k), BlockTime::unpack(v));
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(())
    }

    /// The number of mapped blocks of `dev`.
    pub fn mapped_count(&self, dev: DevId) -> Result<u64> {
        Ok(self.device_details(dev)?.mapped_blocks)
    }

    /// The highest mapped virtual block of `dev`.
    pub fn highest_mapped(&self, dev: DevId) -> Result<Option<VirtBlock>> {
        let root = self.device_root(dev)?;
        let inner = self.inner()?;
        Ok(btree::highest_key::<u64>(&inner.tm, root)?.map(VirtBlock))
    }

    /// Runs `f` on the sub-tree of `dev` and records its new root.
    fn update_subtree<T>(
        &mut self,
        dev: DevId,
        f: impl FnOnce(
            &mut TransactionManager,
            &mut DataSpaceMap,
            MetaBlock,
        ) -> uthin_pdata::Result<(MetaBlock, T)>,
    ) -> Result<T> {
        let inner = self.inner.as_mut().ok_or(Error::Failed)?;
        let data_sm = &mut inner.data_sm;
        let mut out = None;
        let (root, _) = btree::insert_with(
            &mut inner.tm,
            &mut MetaBlockRefs,
            inner.mapping_root,
            dev.0,
            false,
            |tm, old: Option<u64>| {
                let old =
                    old.ok_or_else(|| uthin_pdata::Error::NotFound(format!("thin device {dev}")))?;
                let (new_root, t) = f(tm, data_sm, MetaBlock(old))?;
                out = Some(t);
                Ok(new_root.0)
            },
        )?;
        inner.mapping_root = root;
        Ok(out.expect("closure ran"))
    }

    /// Maps `vblock` of `dev` to `block` (the caller's reference on `block`,
    /// from allocation, moves into the tree).  An old mapping to another block
    /// is released.
    pub fn insert_block(&mut self, dev: DevId, vblock: VirtBlock, block: DataBlock) -> Result<()> {
        self.begin()?;
        let r = self.device_details(dev);
        self.checked(r)?;
        if block > DataBlock::MAX {
            return Err(Error::Invalid(format!(
                "data block {block} exceeds 40 bits"
            )));
        }
        self.change(|md| {
            let time = md.inner()?.time;
            let v = BlockTime {
                block,
                time: crate::types::Time(time),
            }
            .pack();
            let old = md.update_subtree(dev, |tm, sm, root| {
                let (r, old) = btree::insert(tm, &mut DataRefs(sm), root, vblock.0, v)?;
                Ok((r, old))
            })?;
            md.update_details(dev, |d| {
                if old.is_none() {
                    d.mapped_blocks += 1
                }
            })
        })
    }

    /// Whether `dev` maps a block in `[begin, end)` (`end` None: unbounded).
    ///
    /// Removals check first and leave the tree alone when nothing is mapped:
    /// removing shadows the path even when the key is absent, and a moved
    /// sub-tree root without rewritten device details is what
    /// thin-provisioning-tools 1.x rejects next to a held metadata snapshot
    /// (the kernel rewrites the details whenever a device's root moves).
    fn maps_any(&self, dev: DevId, begin: VirtBlock, end: Option<VirtBlock>) -> Result<bool> {
        let root = self.device_root(dev)?;
        let inner = self.inner()?;
        let next = btree::lookup_ge::<u64>(&inner.tm, root, begin.0)?;
        Ok(next.is_some_and(|(k, _)| end.is_none_or(|e| k < e.0)))
    }

    /// Unmaps `vblock` of `dev`; returns whether it was mapped.
    pub fn remove_block(&mut self, dev: DevId, vblock: VirtBlock) -> Result<bool> {
        self.begin()?;
        let r = self.device_details(dev);
        self.checked(r)?;
        let end = vblock.0.checked_add(1).map(VirtBlock);
        let r = self.maps_any(dev, vblock, end);
        if !self.checked(r)? {
            return Ok(false);
        }
        self.change(|md| {
            let old = md.update_subtree(dev, |tm, sm, root| {
                btree::remove::<u64, _>(tm, &mut DataRefs(sm), root, vblock.0)
            })?;
            if old.is_some() {
                md.update_details(dev, |d| d.mapped_blocks = d.mapped_blocks.saturating_sub(1))?;
            }
            Ok(old.is_some())
        })
    }

    /// Unmaps every block of `dev` in `[begin, end)`; returns how many were mapped.
    pub fn remove_range(&mut self, dev: DevId, begin: VirtBlock, end: VirtBlock) -> Result<u64> {
        self.begin()?;
        let r = self.device_details(dev);
        self.checked(r)?;
        if begin >= end {
            return Ok(0);
        }
        let r = self.maps_any(dev, begin, Some(end));
        if !self.checked(r)? {
            return Ok(0);
        }
        self.change(|md| {
            let n = md.update_subtree(dev, |tm, sm, root| {
                btree::remove_range::<u64, _>(tm, &mut DataRefs(sm), root, begin.0, end.0)
            })?;
            if n > 0 {
                md.update_details(dev, |d| d.mapped_blocks = d.mapped_blocks.saturating_sub(n))?;
            }
            Ok(n)
        })
    }

    /// Allocates a data block (count 1), or None when no block is free (a
    /// commit may free blocks released in this transaction).
    pub fn alloc_data_block(&mut self) -> Result<Option<DataBlock>> {
        let inner = self.begin()?;
        Ok(inner.data_sm.counts_mut().alloc().map(|b| {
            inner.dirty = true;
            DataBlock(b)
        }))
    }

    /// The reference count of a data block.
    pub fn data_block_count(&self, b: DataBlock) -> Result<u32> {
        Ok(self.inner()?.data_sm.counts().get(b.0))
    }

    /// Whether a data block is referenced more than once.
    pub fn data_block_is_shared(&self, b: DataBlock) -> Result<bool> {
        Ok(self.data_block_count(b)? > 1)
    }

    /// Adds `delta` to the counts of data blocks `[begin, end)`.
    fn adjust_data_range(&mut self, begin: DataBlock, end: DataBlock, delta: i64) -> Result<()> {
        let inner = self.begin()?;
        let counts = inner.data_sm.counts();
        if end.0 > counts.nr_blocks() || begin > end {
            return Err(Error::Invalid(format!(
                "data range {begin}..{end} outside the pool's {} blocks",
                counts.nr_blocks()
            )));
        }
        if delta < 0 && (begin.0..end.0).any(|b| counts.get(b) == 0) {
            return Err(Error::Invalid(format!(
                "data range {begin}..{end} holds a free block"
            )));
        }
        let counts = inner.data_sm.counts_mut();
        for b in begin.0..end.0 {
            counts.adjust(b, delta);
        }
        inner.dirty = true;
        Ok(())
    }

    /// Increments the counts of data blocks `[begin, end)`.
    pub fn inc_data_range(&mut self, begin: DataBlock, end: DataBlock) -> Result<()> {
        self.adjust_data_range(begin, end, 1)
    }

    /// Decrements the counts of data blocks `[begin, end)`.
    pub fn dec_data_range(&mut self, begin: DataBlock, end: DataBlock) -> Result<()> {
        self.adjust_data_range(begin, end, -1)
    }
}
