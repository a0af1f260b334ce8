//! Writes (FORMAT.md §6.4, §6.5).
//!
//! Per block:
//! * mapped and not shared: overwrite in place under the shared cell (works
//!   in every mode but Fail);
//! * unmapped: allocate, prepare the block (the write itself if it covers the
//!   block, else zeros or the external origin's bytes with the write over
//!   them; only the write with `skip_block_zeroing`), then map it;
//! * shared (a snapshot may see it): allocate, copy the old block with the
//!   write over it (or just the write if it covers the block), then remap,
//!   which releases the old block.
//!
//! Provisioning and breaking sharing hold the cell exclusively, so requests
//! to the block wait, and the mapping is inserted only once the data is in
//! place.  Out of data space, the request drops every lock, waits for space
//! and starts over.

use super::fill::Source;
use super::read::{run_end, GROUP};
use super::{chunks, Chunk, Thin};
use crate::error::Result;
use crate::space::Alloc;
use std::sync::atomic::Ordering;
use uthin_thin::{DataBlock, Lookup, VirtBlock};

impl Thin {
    /// Writes `buf` at byte `offset`.  With `fua`, the write (and every
    /// write completed before it) is durable when this returns.
    pub fn write(&self, offset: u64, buf: &[u8], fua: bool) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let bb = self.pool.block_bytes;
        let r = if offset % bb + buf.len() as u64 <= bb {
            // Within one block.
            self.write_chunk(VirtBlock(offset / bb), offset % bb, buf)
        } else {
            let all: Vec<Chunk> = chunks(offset, buf.len() as u64, bb).collect();
            all.chunks(GROUP).try_for_each(|group| {
                if self.overwrite_group(group, buf)? || self.provision_group(group, buf)? {
                    return Ok(());
                }
                group.iter().try_for_each(|c| {
                    self.write_chunk(c.vblock, c.off as u64, &buf[c.start..c.start + c.len])
                })
            })
        };
        self.pool.events.deliver();
        r?;
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Overwrites consecutive chunks in place if they are all mapped and
    /// unshared, with one data-device write per run of consecutive data
    /// blocks; returns false (having written nothing) otherwise.
    fn overwrite_group(&self, group: &[Chunk], buf: &[u8]) -> Result<bool> {
        let pool = &*self.pool;
        pool.check_io()?;
        let _quiesce = self.shared.quiesce.read();
        let cells = self.shared.cells(pool);
        let _cells: Vec<_> = group.iter().map(|c| cells.shared(c.vblock)).collect();
        let looks = group
            .iter()
            .map(|c| pool.lookup(&self.shared, c.vblock))
            .collect::<Result<Vec<_>>>()?;
        if !looks.iter().all(|l| l.is_some_and(|l| !l.shared)) {
            return Ok(false);
        }
        let mut i = 0;
        while let Some(Some(l)) = looks.get(i) {
            let j = run_end(&looks, i, *l);
            let (c, last) = (group[i], group[j - 1]);
            pool.write_data(l.block, c.off as u64, &buf[c.start..last.start + last.len])?;
            i = j;
        }
        Ok(true)
    }

    /// Writes `data` at `off` within virtual block `vb`.
    pub(crate) fn write_chunk(&self, vb: VirtBlock, off: u64, data: &[u8]) -> Result<()> {
        let pool = &*self.pool;
        loop {
            pool.check_io()?;
            let quiesce = self.shared.quiesce.read();
            {
                let (_cell, l) = pool.shared_lookup(&self.shared, vb)?;
                if let Some(l) = l {
                    if !l.shared {
                        return pool.write_data(l.block, off, data);
                    }
                }
            }
            let cell = self.shared.cells(pool).exclusive(vb);
            let old = pool.lookup(&self.shared, vb)?;
            if let Some(l) = old {
                if !l.shared {
                    return pool.write_data(l.block, off, data);
                }
            }
            match pool.alloc_for_write()? {
                Alloc::Got(new, gate) => {
                    let r = self.provision(vb, off, data, old, new);
                    drop(gate);
                    drop(cell);
                    drop(quiesce);
                    r?;
                    return pool.commit_if_metadata_exhausted();
                }
                Alloc::NoSpace => {
                    drop(cell);
                    drop(quiesce);
                    pool.wait_for_space()?;
                }
            }
        }
    }

    /// Fills new block `new` for a write to `vb` (whose old mapping, if
    /// any, is `old`) and maps it.
    fn provision(
        &self,
        vb: VirtBlock,
        off: u64,
        data: &[u8],
        old: Option<Lookup>,
        new: DataBlock,
    ) -> Result<()> {
        let pool = &*self.pool;
        let bb = pool.block_bytes;
        let full = off == 0 && data.len() as u64 == bb;
        let at = vb.0 * bb;
        let prepared = if full {
            pool.write_data(new, 0, data)
        } else if let Some(l) = old {
            pool.prepare_block(new, Source::Block(l.block), off, data)
        } else if let Some(o) = self.origin.as_deref().filter(|_| at < self.origin_len) {
            let src = Source::Origin {
                dev: o,
                len: self.origin_len,
                at,
            };
            pool.prepare_block(new, src, off, data)
        } else if pool.cfg.features.skip_block_zeroing {
            pool.write_data(new, off, data)
        } else {
            pool.prepare_block(new, Source::Zeros, off, data)
        };
        if let Err(e) = prepared {
            pool.release_block(new);
            return Err(e);
        }
        let dev = self.dev_id();
        pool.change("insert_block", |md| {
            md.insert_block(dev, vb, new)?;
            let st = self.shared.snap_time.load(Ordering::Acquire);
            let l = Lookup {
                block: new,
                shared: false,
            };
            self.shared.cells(pool).put(vb, l, st);
            Ok(())
        })
    }
}
