//! Pool figures in the kernel's status format (FORMAT.md §6.1).  The mode
//! and feature words are the defaults until the pool engine reports its own.

use crate::error::Result;
use crate::metadata::PoolMetadata;

/// The figures of a pool status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    pub transaction_id: u64,
    pub used_meta: u64,
    pub total_meta: u64,
    pub used_data: u64,
    pub total_data: u64,
    pub held_root: Option<u64>,
    pub needs_check: bool,
    pub metadata_low_watermark: u64,
    pub read_only: bool,
}

impl PoolStatus {
    /// Reads the figures from open metadata.
    pub fn read(md: &PoolMetadata) -> Result<Self> {
        let total_meta = md.metadata_dev_size()?;
        let total_data = md.data_dev_size()?;
        Ok(PoolStatus {
            transaction_id: md.transaction_id()?,
            used_meta: total_meta - md.free_metadata_blocks()?,
            total_meta,
            used_data: total_data - md.free_data_blocks()?,
            total_data,
            held_root: md.metadata_snap()?.map(|b| b.0),
            needs_check: md.needs_check()?,
            metadata_low_watermark: (total_meta / 4).min(1024),
            read_only: md.is_read_only(),
        })
    }

    /// The kernel's pool status line (`dmsetup status` without the table prefix).
    pub fn kernel_line(&self) -> String {
        format!(
            "{} {}/{} {}/{} {} {} discard_passdown queue_if_no_space {} {}",
            self.transaction_id,
            self.used_meta,
            self.total_meta,
            self.used_data,
            self.total_data,
            self.held_root.map_or("-".to_string(), |h| h.to_string()),
            if self.read_only { "ro" } else { "rw" },
            if self.needs_check { "needs_check" } else { "-" },
            self.metadata_low_watermark
        )
    }
}
