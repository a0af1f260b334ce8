//! Writing metadata blocks during a restore: allocation from the metadata
//! reference counts, and direct writes that bypass the block cache.
//! Blocks are handed out in ascending order, so consecutive nodes are
//! gathered into one large write.  The superblock is written last, by
//! [`super::finish`], so the device holds no superblock pointing at half
//! written trees.

use crate::error::{Error, Result};
use uthin_block_io::{SharedDevice, BLOCK_SIZE};
use uthin_pdata::btree::builder::NodeSink;
use uthin_pdata::sm::RefCounts;
use uthin_pdata::types::BlockData;
use uthin_pdata::validator::{Validator, NODE};
use uthin_pdata::MetaBlock;

/// Blocks gathered into one write.
const RUN_BLOCKS: usize = 256;

/// Allocates and writes metadata blocks.
pub struct MetaWriter {
    dev: SharedDevice,
    /// Reference counts of every metadata block.
    pub counts: RefCounts,
    buf: Vec<u8>,
    buf_start: u64,
}

fn io(blk: u64, e: std::io::Error) -> Error {
    Error::Pdata(uthin_pdata::Error::Io {
        blk: MetaBlock(blk),
        source: e,
    })
}

impl MetaWriter {
    /// A writer over `dev`, whose first `nr_blocks` blocks hold metadata;
    /// block 0 (the superblock) is counted and zeroed now.
    pub fn new(dev: SharedDevice, nr_blocks: u64) -> Result<Self> {
        let mut counts = RefCounts::new(nr_blocks);
        counts.set(0, 1);
        dev.write_at(&[0u8; BLOCK_SIZE], 0).map_err(|e| io(0, e))?;
        Ok(MetaWriter {
            dev,
            counts,
            buf: Vec::with_capacity(RUN_BLOCKS * BLOCK_SIZE),
            buf_start: 0,
        })
    }

    /// The device.
    pub fn device(&self) -> &SharedDevice {
        &self.dev
    }

    /// Takes block `b` (count 1) if it is free; false otherwise.
    pub fn reserve(&mut self, b: u64) -> bool {
        if b == 0 || b >= self.counts.nr_blocks() || self.counts.get(b) != 0 {
            return false;
        }
        self.counts.set(b, 1)
    }

    fn buffered(&self) -> u64 {
        (self.buf.len() / BLOCK_SIZE) as u64
    }

    /// Writes out the gathered blocks.
    pub fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.dev
                .write_at(&self.buf, self.buf_start * BLOCK_SIZE as u64)
                .map_err(|e| io(self.buf_start, e))?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Reads back a node written earlier (unsealed bytes are not kept: this
    /// returns the sealed block).
    pub fn read(&mut self, loc: MetaBlock) -> Result<Box<BlockData>> {
        let mut d = Box::new([0u8; BLOCK_SIZE]);
        if loc.0 >= self.buf_start && loc.0 < self.buf_start + self.buffered() {
            let o = (loc.0 - self.buf_start) as usize * BLOCK_SIZE;
            d.copy_from_slice(&self.buf[o..o + BLOCK_SIZE]);
        } else {
            self.dev
                .read_at(&mut d[..], loc.byte_offset())
                .map_err(|e| io(loc.0, e))?;
        }
        Ok(d)
    }
}

impl NodeSink for MetaWriter {
    fn alloc(&mut self) -> uthin_pdata::Result<MetaBlock> {
        self.counts
            .alloc()
            .map(MetaBlock)
            .ok_or(uthin_pdata::Error::NoSpace("metadata"))
    }

    fn write(&mut self, loc: MetaBlock, node: &BlockData) -> uthin_pdata::Result<()> {
        if self.buffered() as usize == RUN_BLOCKS
            || (!self.buf.is_empty() && loc.0 != self.buf_start + self.buffered())
        {
            self.flush().map_err(|e| match e {
                Error::Pdata(p) => p,
                other => uthin_pdata::Error::Invalid(other.to_string()),
            })?;
        }
        if self.buf.is_empty() {
            self.buf_start = loc.0;
        }
        let at = self.buf.len();
        self.buf.extend_from_slice(node);
        let blk: &mut BlockData = (&mut self.buf[at..at + BLOCK_SIZE])
            .try_into()
            .expect("block sized");
        NODE.prepare(loc, blk);
        Ok(())
    }
}
