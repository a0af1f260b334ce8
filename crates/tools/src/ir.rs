//! The metadata IR: a stream of events describing pool metadata, as
//! thin-provisioning-tools 1.x's `MetadataVisitor`.  Producers: the XML
//! reader ([`crate::xml::read`]), `dump` (from a metadata device), `repair`.
//! Consumers: the XML and human-readable writers, and
//! [`crate::restore::Restorer`], which writes metadata.
//!
//! Grammar of a stream:
//!
//! ```text
//! superblock_begin
//!     (def_begin map* def_end)*           shared runs of mappings, named
//!     (device_begin (map | ref_shared)* device_end)*
//! superblock_end
//! eof
//! ```
//!
//! Inside a device, mappings (with refs expanded) come in strictly ascending
//! `thin_begin` order.  A `ref_shared` splices the named def's mappings in at
//! that point; a consumer that writes metadata shares the def's leaves
//! between every device that refers to it.  A [`Visit::Stop`] answer asks
//! the producer to stop early (used to read only the superblock).

use crate::error::Result;

/// The superblock: the pool-wide fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Superblock {
    /// Normally "" (the on-disk uuid is never used).
    pub uuid: String,
    /// Pool time (snapshot counter).
    pub time: u32,
    /// Transaction id.
    pub transaction: u64,
    /// Superblock flags; dumps carry `Some(1)` only when NEEDS_CHECK is set.
    pub flags: Option<u32>,
    /// Metadata format version (dumps: the superblock's; writers default to 2).
    pub version: Option<u32>,
    /// Data block size in 512-byte sectors.
    pub data_block_size: u32,
    /// Number of data blocks (the data space map's size).
    pub nr_data_blocks: u64,
    /// Location of a metadata snapshot (never written by dumps).
    pub metadata_snap: Option<u64>,
}

/// One thin device's details.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Device {
    pub dev_id: u64,
    /// Taken verbatim by restore (checkers compare it with the mappings).
    pub mapped_blocks: u64,
    pub transaction: u64,
    pub creation_time: u32,
    pub snap_time: u32,
}

/// A run of `len` mappings: `thin_begin + i -> data_begin + i`, all with
/// the same `time`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Map {
    pub thin_begin: u64,
    pub data_begin: u64,
    pub time: u32,
    pub len: u64,
}

/// thin-provisioning-tools 1.x's superblock overrides (`--transaction-id`,
/// `--data-block-size`, `--nr-data-blocks` of dump, restore and repair).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SuperblockOverrides {
    pub transaction_id: Option<u64>,
    pub data_block_size: Option<u32>,
    pub nr_data_blocks: Option<u64>,
}

impl SuperblockOverrides {
    /// Applies them as 1.x does: the transaction id and the number of data
    /// blocks never go down (the larger wins); the block size is replaced.
    pub fn apply(&self, sb: &mut Superblock) {
        if let Some(t) = self.transaction_id {
            sb.transaction = sb.transaction.max(t);
        }
        if let Some(b) = self.data_block_size {
            sb.data_block_size = b;
        }
        if let Some(n) = self.nr_data_blocks {
            sb.nr_data_blocks = sb.nr_data_blocks.max(n);
        }
    }
}

/// Whether the producer should go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    Continue,
    Stop,
}

/// A consumer of the metadata IR.
pub trait MetadataVisitor {
    /// Start of the stream.
    fn superblock_begin(&mut self, sb: &Superblock) -> Result<Visit>;
    /// All defs and devices were given.
    fn superblock_end(&mut self) -> Result<Visit>;
    /// Start of a shared run of mappings named `name`; only `map` may follow
    /// until [`MetadataVisitor::def_end`].
    fn def_begin(&mut self, name: &str) -> Result<Visit>;
    /// End of the current def.
    fn def_end(&mut self) -> Result<Visit>;
    /// Start of a device; `map` and `ref_shared` follow.
    fn device_begin(&mut self, d: &Device) -> Result<Visit>;
    /// End of the current device.
    fn device_end(&mut self) -> Result<Visit>;
    /// A run of mappings of the current def or device.
    fn map(&mut self, m: &Map) -> Result<Visit>;
    /// The named def's mappings, inside a device.
    fn ref_shared(&mut self, name: &str) -> Result<Visit>;
    /// End of input: flush, check completeness.
    fn eof(&mut self) -> Result<Visit>;
}

/// Merges consecutive mappings into runs, as dumps emit them: a mapping
/// extends the current run when its virtual block, data block and time all
/// continue it.
#[derive(Debug, Default)]
pub struct RunBuilder {
    run: Option<Map>,
}

impl RunBuilder {
    /// No run yet.
    pub fn new() -> Self {
        RunBuilder { run: None }
    }

    /// Adds a mapping; returns the run it ended, if any.
    #[inline]
    pub fn next(&mut self, thin: u64, data: u64, time: u32) -> Option<Map> {
        if let Some(r) = self.run.as_mut() {
            if thin == r.thin_begin.wrapping_add(r.len)
                && data == r.data_begin.wrapping_add(r.len)
                && time == r.time
            {
                r.len += 1;
                return None;
            }
        }
        self.run.replace(Map {
            thin_begin: thin,
            data_begin: data,
            time,
            len: 1,
        })
    }

    /// Ends the current run, if any.
    pub fn complete(&mut self) -> Option<Map> {
        self.run.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_only_when_everything_continues() {
        let mut b = RunBuilder::new();
        assert_eq!(b.next(0, 10, 1), None);
        assert_eq!(b.next(1, 11, 1), None);
        let r = b.next(2, 13, 1).unwrap();
        assert_eq!((r.thin_begin, r.data_begin, r.len), (0, 10, 2));
        let r = b.next(3, 14, 2).unwrap();
        assert_eq!((r.thin_begin, r.len), (2, 1));
        let r = b.complete().unwrap();
        assert_eq!((r.thin_begin, r.data_begin, r.time, r.len), (3, 14, 2, 1));
        assert_eq!(b.complete(), None);
    }
}
