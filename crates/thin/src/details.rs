//! Device details, the 24-byte value of the details tree (FORMAT.md §2.9.3):
//!
//! ```text
//! off size field
//!   0   8  mapped_blocks
//!   8   8  transaction_id
//!  16   4  creation_time
//!  20   4  snapshotted_time
//! ```

use uthin_pdata::btree::Value;
use uthin_pdata::types::{le32, le64, put32, put64};

/// One thin device's details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DeviceDetails {
    pub mapped_blocks: u64,
    pub transaction_id: u64,
    pub creation_time: u32,
    pub snapshotted_time: u32,
}

impl Value for DeviceDetails {
    const SIZE: usize = 24;
    fn pack(&self, out: &mut [u8]) {
        put64(out, 0, self.mapped_blocks);
        put64(out, 8, self.transaction_id);
        put32(out, 16, self.creation_time);
        put32(out, 20, self.snapshotted_time);
    }
    fn unpack(b: &[u8]) -> Self {
        DeviceDetails {
            mapped_blocks: le64(b, 0),
            transaction_id: le64(b, 8),
            creation_time: le32(b, 16),
            snapshotted_time: le32(b, 20),
        }
    }
}
