//! Newtypes for block-number spaces used by the persistent-data layer.

use std::fmt;

/// A 4 KiB block on the metadata device.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MetaBlock(pub u64);

impl MetaBlock {
    /// The superblock location.
    pub const SUPERBLOCK: MetaBlock = MetaBlock(0);

    /// Byte offset of the block on the metadata device.
    pub fn byte_offset(self) -> u64 {
        self.0 * uthin_block_io::BLOCK_SIZE as u64
    }
}

impl fmt::Debug for MetaBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetaBlock({:#x})", self.0)
    }
}

impl fmt::Display for MetaBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// One metadata block's bytes.
pub type BlockData = [u8; uthin_block_io::BLOCK_SIZE];

/// Reads a little-endian u32 at `off`.
pub fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

/// Reads a little-endian u64 at `off`.
pub fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Writes a little-endian u32 at `off`.
pub fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian u64 at `off`.
pub fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
