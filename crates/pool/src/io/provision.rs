//! Provisioning a run of whole blocks with one allocation and one metadata
//! change.
//!
//! A large write into fresh space (or over shared blocks) would otherwise
//! allocate block by block; with two writers the allocations interleave and
//! a volume written sequentially ends up with its blocks alternating on the
//! data device, so every later large read or overwrite of it takes one
//! data-device request per block.  Only whole blocks take this path (the
//! write is the block's content: no zeroing, no copy, no origin); anything
//! else, and running short of space, goes block by block.

use super::{Chunk, Thin};
use crate::error::Result;
use std::sync::atomic::Ordering;
use uthin_thin::{Lookup, VirtBlock};

impl Thin {
    /// Writes `group` (consecutive chunks of a request whose buffer is
    /// `buf`) into new blocks if each covers its whole block and none is
    /// mapped unshared; returns false (having written nothing) otherwise.
    pub(super) fn provision_group(&self, group: &[Chunk], buf: &[u8]) -> Result<bool> {
        let pool = &*self.pool;
        let bb = pool.block_bytes as usize;
        if group.len() < 2 || group.iter().any(|c| c.off != 0 || c.len != bb) {
            return Ok(false);
        }
        pool.check_io()?;
        let dev = self.dev_id();
        let _quiesce = self.shared.quiesce.read();
        let (first, last) = (group[0].vblock, group[group.len() - 1].vblock);
        let cells = self.shared.cells(pool);
        let _cells = cells.exclusive_range(first, VirtBlock(last.0 + 1));
        for c in group {
            if pool
                .lookup(&self.shared, c.vblock)?
                .is_some_and(|l| !l.shared)
            {
                return Ok(false);
            }
        }
        let Some((new, _gate)) = pool.alloc_run(group.len())? else {
            return Ok(false);
        };
        // One data write per block, not per run: the page cache keeps the
        // size of the folios a file region was first written with, and a
        // later 4 KiB write into a large folio dirties (and writes back) all
        // of it.  Block-sized folios keep small overwrites cheap.
        let written = group
            .iter()
            .zip(&new)
            .try_for_each(|(c, &b)| pool.write_data(b, 0, &buf[c.start..c.start + bb]));
        if let Err(e) = written {
            new.iter().for_each(|&b| pool.release_block(b));
            return Err(e);
        }
        pool.change("insert_block", |md| {
            let st = self.shared.snap_time.load(Ordering::Acquire);
            for (c, &b) in group.iter().zip(&new) {
                md.insert_block(dev, c.vblock, b)?;
                let l = Lookup {
                    block: b,
                    shared: false,
                };
                cells.put(c.vblock, l, st);
            }
            Ok(())
        })?;
        Ok(true)
    }
}
