//! The 32-byte space-map root stored in the superblock (FORMAT.md §3.2):
//!
//! ```text
//! off size field
//!   0   8  nr_blocks
//!   8   8  nr_allocated
//!  16   8  bitmap_root (data: index tree root; metadata: index block)
//!  24   8  ref_count_root
//! ```

use crate::types::{le64, put64, MetaBlock};

/// Encoded size.
pub const SM_ROOT_SIZE: usize = 32;

/// A space-map root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SmRoot {
    pub nr_blocks: u64,
    pub nr_allocated: u64,
    pub bitmap_root: MetaBlock,
    pub ref_count_root: MetaBlock,
}

impl SmRoot {
    /// Decodes the first 32 bytes of `b` (the rest of a 128-byte area is ignored).
    pub fn unpack(b: &[u8]) -> Self {
        SmRoot {
            nr_blocks: le64(b, 0),
            nr_allocated: le64(b, 8),
            bitmap_root: MetaBlock(le64(b, 16)),
            ref_count_root: MetaBlock(le64(b, 24)),
        }
    }

    /// Encodes into the first 32 bytes of `b`.
    pub fn pack(&self, b: &mut [u8]) {
        put64(b, 0, self.nr_blocks);
        put64(b, 8, self.nr_allocated);
        put64(b, 16, self.bitmap_root.0);
        put64(b, 24, self.ref_count_root.0);
    }
}
