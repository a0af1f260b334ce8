//! Mapping values and their reference semantics (FORMAT.md §2.9).
//!
//! A bottom-level leaf value packs a data block and a time:
//! `(data_block << 24) | (time & 0xFFFFFF)`.  Bottom-level values reference
//! data blocks (counted in the data space map); top-level values are the roots
//! of bottom-level trees (counted in the metadata space map, released by a
//! deep delete).

use crate::types::{DataBlock, Time};
use uthin_pdata::btree::{self, RefCounter};
use uthin_pdata::sm::DataSpaceMap;
use uthin_pdata::tm::TransactionManager;
use uthin_pdata::{Error, MetaBlock, Result};

/// A mapping's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockTime {
    pub block: DataBlock,
    pub time: Time,
}

impl BlockTime {
    /// Packs into the on-disk u64.
    pub fn pack(self) -> u64 {
        (self.block.0 << 24) | (self.time.0 as u64 & 0xFF_FFFF)
    }

    /// Unpacks the on-disk u64.
    pub fn unpack(v: u64) -> Self {
        BlockTime {
            block: DataBlock(v >> 24),
            time: Time((v & 0xFF_FFFF) as u32),
        }
    }
}

/// Bottom-level values: packed block/time referencing data blocks.
pub struct DataRefs<'a>(pub &'a mut DataSpaceMap);

fn data_adjust(sm: &mut DataSpaceMap, v: u64, delta: i64) -> Result<()> {
    let b = BlockTime::unpack(v).block.0;
    sm.counts_mut().adjust(b, delta).map(|_| ()).ok_or_else(|| {
        Error::corrupt(
            "data mapping",
            MetaBlock(0),
            format!("data block {b} out of range of the data space map, or its count would drop below zero"),
        )
    })
}

impl RefCounter<u64> for DataRefs<'_> {
    fn inc(&mut self, _: &mut TransactionManager, v: &u64) -> Result<()> {
        data_adjust(self.0, *v, 1)
    }
    fn dec(&mut self, _: &mut TransactionManager, v: &u64) -> Result<()> {
        data_adjust(self.0, *v, -1)
    }
    fn equal(&self, a: &u64, b: &u64) -> bool {
        a >> 24 == b >> 24
    }
}

/// Top-level values: roots of device sub-trees.  Dec deep-deletes the sub-tree.
pub struct SubtreeRefs<'a>(pub &'a mut DataSpaceMap);

impl RefCounter<u64> for SubtreeRefs<'_> {
    fn inc(&mut self, tm: &mut TransactionManager, v: &u64) -> Result<()> {
        tm.inc(MetaBlock(*v))
    }
    fn dec(&mut self, tm: &mut TransactionManager, v: &u64) -> Result<()> {
        btree::delete_tree::<u64, _>(tm, &mut DataRefs(self.0), MetaBlock(*v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_matches_format_md() {
        let v = BlockTime {
            block: DataBlock(10),
            time: Time(1),
        }
        .pack();
        assert_eq!(v, 0x0000_0000_0A00_0001);
        assert_eq!(v.to_le_bytes(), [1, 0, 0, 0x0a, 0, 0, 0, 0]);
        assert_eq!(BlockTime::unpack(v).block, DataBlock(10));
    }
}
