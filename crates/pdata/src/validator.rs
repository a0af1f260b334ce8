//! Validators: one per block kind.  A validator checks a block read from disk
//! (checksum, own block number, kind-specific structure) and prepares a block
//! for writing (own block number, checksum).  The block manager runs them on
//! every read and write, so no caller sees unvalidated bytes.

use crate::checksum::{self, BlockKind};
use crate::error::{Error, Result};
use crate::types::{le32, le64, put64, BlockData, MetaBlock};

/// Checks and seals one kind of block.
pub trait Validator: Send + Sync + 'static {
    /// The checksum kind.
    fn kind(&self) -> BlockKind;

    /// Kind-specific checks after checksum and block number passed.
    fn check_body(&self, _blk: MetaBlock, _data: &BlockData) -> Result<()> {
        Ok(())
    }

    /// The block number the block must carry when read from `blk`.
    fn expected_blocknr(&self, blk: MetaBlock) -> u64 {
        blk.0
    }

    /// Full validation of a block read from `blk`.
    fn check(&self, blk: MetaBlock, data: &BlockData) -> Result<()> {
        let kind = self.kind();
        if let Err((stored, computed)) = checksum::verify(kind, data) {
            return Err(Error::corrupt(
                kind.name(),
                blk,
                format!("bad checksum (stored {stored:#010x}, computed {computed:#010x})"),
            ));
        }
        let nr = le64(data, 8);
        if nr != self.expected_blocknr(blk) {
            return Err(Error::corrupt(
                kind.name(),
                blk,
                format!("block number field is {nr:#x}"),
            ));
        }
        self.check_body(blk, data)
    }

    /// Sets the block number and checksum before a write to `blk`.
    fn prepare(&self, blk: MetaBlock, data: &mut BlockData) {
        put64(data, 8, blk.0);
        checksum::seal(self.kind(), data);
    }
}

/// B-tree nodes: header sanity on top of the checksum.
pub struct NodeValidator;
/// Space-map bitmap blocks.
pub struct BitmapValidator;
/// The metadata space map's index block.
pub struct IndexValidator;

/// Static instances.
pub static NODE: NodeValidator = NodeValidator;
/// Static bitmap validator.
pub static BITMAP: BitmapValidator = BitmapValidator;
/// Static index validator.
pub static INDEX: IndexValidator = IndexValidator;

impl Validator for NodeValidator {
    fn kind(&self) -> BlockKind {
        BlockKind::Node
    }
    fn check_body(&self, blk: MetaBlock, d: &BlockData) -> Result<()> {
        let flags = le32(d, 4);
        let nr = le32(d, 16);
        let max = le32(d, 20);
        let vs = le32(d, 24);
        let bad = |why: String| Err(Error::corrupt("btree node", blk, why));
        if flags != 1 && flags != 2 {
            return bad(format!("flags {flags:#x} are neither internal nor leaf"));
        }
        if vs == 0 || vs > 4064 {
            return bad(format!("value size {vs}"));
        }
        if 32 + (8 + vs as u64) * max as u64 > 4096 {
            return bad(format!(
                "max_entries {max} with value size {vs} overflow the block"
            ));
        }
        if nr > max {
            return bad(format!("nr_entries {nr} > max_entries {max}"));
        }
        if flags == 1 && vs != 8 {
            return bad(format!("internal node with value size {vs}"));
        }
        Ok(())
    }
}

impl Validator for BitmapValidator {
    fn kind(&self) -> BlockKind {
        BlockKind::Bitmap
    }
}

impl Validator for IndexValidator {
    fn kind(&self) -> BlockKind {
        BlockKind::Index
    }
}
