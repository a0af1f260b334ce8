//! Thin volumes: I/O at any byte offset and length, split at data-block
//! boundaries (FORMAT.md §6.2-§6.5).
//!
//! [`read`] maps reads (unmapped blocks read as zeros, or from the external
//! origin); [`write`] overwrites mapped blocks in place, provisions new ones
//! and breaks sharing, [`provision`] whole blocks a run at a time; [`fill`] prepares a new block (zeroes, or a copy of
//! the old block or of the origin, with the write laid over it).
//! Discards and write-zeroes are in `crate::discard`.

mod fill;
mod provision;
mod read;
mod write;

use crate::dense::DenseCells;
use crate::devcells::DevCells;
use crate::error::{Error, Result};
use crate::pool::Pool;
use parking_lot::RwLock;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use uthin_block_io::SharedDevice;
use uthin_thin::{DataBlock, DevId, VirtBlock};

/// Bytes a thin device can address (2^63).
pub const MAX_THIN_BYTES: u64 = 1 << 63;

/// An open thin volume.  Cheap to share between threads (`&Thin` is enough
/// for every request); I/O to different blocks runs in parallel.
pub struct Thin {
    pub(crate) pool: Arc<Pool>,
    pub(crate) shared: Arc<ThinShared>,
    pub(crate) origin: Option<SharedDevice>,
    pub(crate) origin_len: u64,
}

/// State of a thin device shared by all its opens.
pub(crate) struct ThinShared {
    pub(crate) dev: DevId,
    /// Writes, discards and write-zeroes hold it shared; a snapshot of this
    /// device holds it exclusively, so the snapshot falls between writes
    /// (the kernel has the user suspend the origin).
    pub(crate) quiesce: RwLock<()>,
    /// The device's snapshot time as far as the mapping cache knows: set
    /// from the metadata (under its write lock) when the device is opened,
    /// created or snapshotted.
    pub(crate) snap_time: AtomicU32,
    /// The device's dense table of cells and cached mappings.
    pub(crate) dense: DenseCells,
}

impl ThinShared {
    pub(crate) fn new(dev: DevId, dense: DenseCells) -> Self {
        ThinShared {
            dev,
            quiesce: RwLock::new(()),
            snap_time: AtomicU32::new(0),
            dense,
        }
    }

    /// The device's cells (in its dense table or the pool's hash table).
    pub(crate) fn cells<'a>(&'a self, pool: &'a Pool) -> DevCells<'a> {
        DevCells {
            hashed: &pool.cells,
            dense: &self.dense,
            dev: self.dev,
        }
    }
}

/// The part of a request that falls in one data block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub(crate) vblock: VirtBlock,
    /// Offset within the block.
    pub(crate) off: usize,
    /// Offset within the request's buffer.
    pub(crate) start: usize,
    pub(crate) len: usize,
}

/// Splits `[offset, offset + len)` at multiples of `bb`.
pub(crate) fn chunks(offset: u64, len: u64, bb: u64) -> impl Iterator<Item = Chunk> {
    let mut pos = offset;
    let end = offset + len;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let off = pos % bb;
        let n = (bb - off).min(end - pos);
        let c = Chunk {
            vblock: VirtBlock(pos / bb),
            off: off as usize,
            start: (pos - offset) as usize,
            len: n as usize,
        };
        pos += n;
        Some(c)
    })
}

impl Thin {
    /// The thin device id.
    pub fn dev_id(&self) -> DevId {
        self.shared.dev
    }

    /// The pool.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The external origin's size in bytes, if there is one.
    pub fn external_origin_len(&self) -> Option<u64> {
        self.origin.as_ref().map(|_| self.origin_len)
    }

    /// Makes every write completed before the call durable: commits if the
    /// device changed in this transaction, else flushes the data device.
    pub fn flush(&self) -> Result<()> {
        let r = self.pool.flush_dev(self.dev_id());
        self.pool.events.deliver();
        r
    }

    pub(crate) fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= MAX_THIN_BYTES => Ok(()),
            _ => Err(Error::OutOfRange { offset, len }),
        }
    }
}

impl Drop for Thin {
    fn drop(&mut self) {
        self.pool.md.write().close_device(self.dev_id());
    }
}

impl Pool {
    /// Reads from data block `b` at `off`.
    pub(crate) fn read_data(&self, b: DataBlock, off: u64, buf: &mut [u8]) -> Result<()> {
        let at = b.0 * self.block_bytes + off;
        self.data
            .read_at(buf, at)
            .map_err(|e| Error::data_io("read", at, buf.len() as u64, e))
    }

    /// Writes to data block `b` at `off`.
    pub(crate) fn write_data(&self, b: DataBlock, off: u64, buf: &[u8]) -> Result<()> {
        let at = b.0 * self.block_bytes + off;
        self.data
            .write_at(buf, at)
            .map_err(|e| Error::data_io("write", at, buf.len() as u64, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_at_block_boundaries() {
        let c: Vec<_> = chunks(100, 300, 128).collect();
        assert_eq!(
            c,
            vec![
                Chunk {
                    vblock: VirtBlock(0),
                    off: 100,
                    start: 0,
                    len: 28
                },
                Chunk {
                    vblock: VirtBlock(1),
                    off: 0,
                    start: 28,
                    len: 128
                },
                Chunk {
                    vblock: VirtBlock(2),
                    off: 0,
                    start: 156,
                    len: 128
                },
                Chunk {
                    vblock: VirtBlock(3),
                    off: 0,
                    start: 284,
                    len: 16
                },
            ]
        );
        assert_eq!(chunks(5, 0, 128).count(), 0);
        assert_eq!(chunks(256, 128, 128).count(), 1);
    }
}
