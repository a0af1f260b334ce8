//! Reads (FORMAT.md §6.3): a mapped block is read from the data device
//! (shared or not); an unmapped one reads as zeros, or from the external
//! origin (zeros beyond its end).  The cell is held shared across the data
//! read, so the block cannot be unmapped and reused underneath.
//!
//! A request spanning blocks takes their cells (ascending, at most
//! [`GROUP`] at a time) and reads runs of blocks mapped to consecutive data
//! blocks with one data-device read.

use super::fill::read_origin;
use super::{chunks, Chunk, Thin};
use crate::error::Result;
use uthin_thin::{Lookup, VirtBlock};

/// Blocks handled together by a multi-block request.
pub(crate) const GROUP: usize = 64;

impl Thin {
    /// Reads `buf.len()` bytes at byte `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let bb = self.pool.block_bytes;
        if offset % bb + buf.len() as u64 <= bb {
            // Within one block.
            let vb = VirtBlock(offset / bb);
            return self.read_chunk(vb, offset % bb, buf);
        }
        let all: Vec<Chunk> = chunks(offset, buf.len() as u64, bb).collect();
        for group in all.chunks(GROUP) {
            self.read_group(group, buf)?;
        }
        Ok(())
    }

    fn read_chunk(&self, vb: VirtBlock, off: u64, buf: &mut [u8]) -> Result<()> {
        let pool = &*self.pool;
        pool.check_io()?;
        let (_cell, l) = pool.shared_lookup(&self.shared, vb)?;
        match l {
            Some(l) => pool.read_data(l.block, off, buf),
            None => self.read_unmapped(vb.0 * pool.block_bytes + off, buf),
        }
    }

    /// Reads consecutive chunks (of a request whose buffer is `buf`).
    fn read_group(&self, group: &[Chunk], buf: &mut [u8]) -> Result<()> {
        let pool = &*self.pool;
        pool.check_io()?;
        let cells = self.shared.cells(pool);
        let _cells: Vec<_> = group.iter().map(|c| cells.shared(c.vblock)).collect();
        let looks = group
            .iter()
            .map(|c| pool.lookup(&self.shared, c.vblock))
            .collect::<Result<Vec<_>>>()?;
        let mut i = 0;
        while i < group.len() {
            let c = group[i];
            let Some(l) = looks[i] else {
                let at = c.vblock.0 * pool.block_bytes + c.off as u64;
                self.read_unmapped(at, &mut buf[c.start..c.start + c.len])?;
                i += 1;
                continue;
            };
            let j = run_end(&looks, i, l);
            let last = group[j - 1];
            pool.read_data(
                l.block,
                c.off as u64,
                &mut buf[c.start..last.start + last.len],
            )?;
            i = j;
        }
        Ok(())
    }

    /// What an unmapped range at virtual byte `at` reads as.
    pub(crate) fn read_unmapped(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        match &self.origin {
            Some(o) => read_origin(&**o, self.origin_len, at, buf),
            None => {
                buf.fill(0);
                Ok(())
            }
        }
    }
}

/// The end of the run from `i` of chunks mapped to consecutive data blocks
/// (consecutive chunks are adjacent in the volume).
pub(crate) fn run_end(looks: &[Option<Lookup>], i: usize, first: Lookup) -> usize {
    let mut j = i + 1;
    while j < looks.len() && looks[j].is_some_and(|m| m.block.0 == first.block.0 + (j - i) as u64) {
        j += 1;
    }
    j
}
