//! Block checksums: CRC-32C of bytes 4..4096 without the final inversion, XOR a
//! salt per block kind, stored little-endian at offset 0 (FORMAT.md §1.2).
//! This is the only module that computes them.

use crate::types::{le32, put32, BlockData};

/// The four checksummed block kinds and their salts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockKind {
    Superblock,
    Node,
    Bitmap,
    Index,
}

impl BlockKind {
    /// Every kind, for classification.
    pub const ALL: [BlockKind; 4] = [
        BlockKind::Superblock,
        BlockKind::Node,
        BlockKind::Bitmap,
        BlockKind::Index,
    ];

    /// The XOR constant of the kind.
    pub const fn salt(self) -> u32 {
        match self {
            BlockKind::Superblock => 160774,
            BlockKind::Node => 121107,
            BlockKind::Bitmap => 240779,
            BlockKind::Index => 160478,
        }
    }

    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            BlockKind::Superblock => "superblock",
            BlockKind::Node => "btree node",
            BlockKind::Bitmap => "space map bitmap",
            BlockKind::Index => "space map index",
        }
    }
}

/// The kernel's raw crc32c (seed !0, no final inversion) of `bytes`.
pub fn crc32c_raw(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes) ^ 0xFFFF_FFFF
}

/// The checksum a block of `kind` with these bytes must carry.
pub fn compute(kind: BlockKind, block: &BlockData) -> u32 {
    crc32c_raw(&block[4..]) ^ kind.salt()
}

/// Stores the checksum of `kind` at offset 0.
pub fn seal(kind: BlockKind, block: &mut BlockData) {
    let c = compute(kind, block);
    put32(block, 0, c);
}

/// Whether the stored checksum matches `kind`; on mismatch returns the
/// (stored, computed) pair.
pub fn verify(kind: BlockKind, block: &BlockData) -> Result<(), (u32, u32)> {
    let stored = le32(block, 0);
    let computed = compute(kind, block);
    if stored == computed {
        Ok(())
    } else {
        Err((stored, computed))
    }
}

/// Which kind's salt makes the stored checksum match, if any (the tools use this
/// to classify blocks when repairing).
pub fn classify(block: &BlockData) -> Option<BlockKind> {
    let x = le32(block, 0) ^ crc32c_raw(&block[4..]);
    BlockKind::ALL.into_iter().find(|k| k.salt() == x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_from_format_md() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let z = [0u8; 4096];
        assert_eq!(crc32c::crc32c(&z[4..]), 0xA732_586E);
        assert_eq!(compute(BlockKind::Superblock, &z), 0x58CF_D397);
        assert_eq!(compute(BlockKind::Node, &z), 0x58CC_7E82);
        assert_eq!(compute(BlockKind::Bitmap, &z), 0x58CE_0B1A);
        assert_eq!(compute(BlockKind::Index, &z), 0x58CF_D54F);
    }

    #[test]
    fn seal_verify_classify() {
        for k in BlockKind::ALL {
            let mut b = [7u8; 4096];
            seal(k, &mut b);
            assert!(verify(k, &b).is_ok());
            assert_eq!(classify(&b), Some(k));
            b[100] ^= 1;
            assert!(verify(k, &b).is_err());
        }
    }
}
