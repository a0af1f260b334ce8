//! Discards and write-zeroes (FORMAT.md §6.6).
//!
//! Only whole data blocks are unmapped.  The range is walked from mapped run
//! to mapped run, in chunks of at most [`CHUNK`] blocks whose cells are held
//! exclusively (in-flight I/O through them drains first).  With passdown,
//! blocks whose count drops to zero are discarded on the data device: they
//! are pinned (`inc_data_range`) in the same metadata critical section as
//! the removal, so no write can allocate them before the discard lands,
//! and unpinned afterwards; the commit gate is held meanwhile, so no commit
//! records the pin.  Blocks still mapped elsewhere (snapshots) are left
//! alone.

use crate::error::Result;
use crate::io::Thin;
use crate::mode::PoolMode;
use crate::pool::meta_err;
use uthin_thin::{DataBlock, VirtBlock};

/// Virtual blocks unmapped per critical section.
const CHUNK: u64 = 256;

/// Zeros for write-zeroes.
static ZEROS: [u8; 1 << 16] = [0; 1 << 16];

impl Thin {
    /// Discards `[offset, offset + len)`: whole blocks inside it are
    /// unmapped (and passed down).  A no-op with `ignore_discard`, and in
    /// the read-only modes (as the kernel completes them without action).
    pub fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check_range(offset, len)?;
        let pool = &*self.pool;
        pool.check_io()?;
        if pool.cfg.features.ignore_discard || !pool.mode().metadata_writable() {
            return Ok(());
        }
        let (b, e) = self.whole_blocks(offset, len);
        let r = self.unmap(VirtBlock(b), VirtBlock(e), pool.cfg.features.passdown());
        pool.events.deliver();
        r
    }

    /// Writes zeros to `[offset, offset + len)`.  With `may_unmap`, whole
    /// blocks are unmapped instead when that reads back as zeros (no
    /// external origin) and the metadata is writable.
    pub fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> Result<()> {
        self.check_range(offset, len)?;
        let pool = &*self.pool;
        pool.check_io()?;
        let bb = pool.block_bytes;
        let (b, e) = self.whole_blocks(offset, len);
        let unmap = may_unmap && self.origin.is_none() && pool.mode().metadata_writable() && b < e;
        let (mut pos, end) = (offset, offset + len);
        if unmap {
            self.zero_bytes(offset, b * bb)?;
            self.unmap(VirtBlock(b), VirtBlock(e), pool.cfg.features.passdown())?;
            pos = e * bb;
        }
        self.zero_bytes(pos, end)?;
        pool.events.deliver();
        Ok(())
    }

    /// Writes zeros over `[from, to)` through the write path.
    fn zero_bytes(&self, mut from: u64, to: u64) -> Result<()> {
        let bb = self.pool.block_bytes;
        while from < to {
            let in_block = bb - from % bb;
            let n = (to - from).min(in_block).min(ZEROS.len() as u64);
            self.write_chunk(VirtBlock(from / bb), from % bb, &ZEROS[..n as usize])?;
            from += n;
        }
        Ok(())
    }

    /// The whole blocks inside a byte range.
    fn whole_blocks(&self, offset: u64, len: u64) -> (u64, u64) {
        let bb = self.pool.block_bytes;
        let b = offset.div_ceil(bb);
        let e = (offset + len) / bb;
        (b, e.max(b))
    }

    /// Unmaps the mapped blocks of `[b, e)`.
    fn unmap(&self, b: VirtBlock, e: VirtBlock, passdown: bool) -> Result<()> {
        let pool = &*self.pool;
        let dev = self.dev_id();
        let _q = self.shared.quiesce.read();
        let mut cur = b;
        while cur < e {
            pool.check_io()?;
            let next = pool.md.read().find_mapped_range(dev, cur, e);
            let Some(first) = next.map_err(meta_err("find_mapped_range"))? else {
                break;
            };
            let cb = first.thin_begin;
            let ce = VirtBlock((cb.0 + CHUNK).min(e.0));
            let _cells = self.shared.cells(pool).exclusive_range(cb, ce);
            self.unmap_chunk(cb, ce, passdown)?;
            cur = ce;
        }
        Ok(())
    }

    /// Unmaps `[cb, ce)` with its cells held.
    fn unmap_chunk(&self, cb: VirtBlock, ce: VirtBlock, passdown: bool) -> Result<()> {
        let pool = &*self.pool;
        let dev = self.dev_id();
        let mode = pool.mode();
        if !mode.metadata_writable() {
            return Ok(()); // completed without action, as the kernel does
        }
        let _gate = passdown.then(|| pool.commit_gate.read());
        let pinned = pool.change("discard", |md| {
            let mut runs = Vec::new();
            let mut pos = cb;
            while let Some(r) = md.find_mapped_range(dev, pos, ce)? {
                runs.push(r);
                pos = r.thin_end;
            }
            if runs.is_empty() {
                return Ok(Vec::new());
            }
            md.remove_range(dev, cb, ce)?;
            self.shared.cells(pool).remove_range(cb, ce);
            let mut pinned: Vec<(DataBlock, DataBlock)> = Vec::new();
            if passdown {
                for r in &runs {
                    let len = r.thin_end.0 - r.thin_begin.0;
                    for d in r.data_begin.0..r.data_begin.0 + len {
                        if md.data_block_count(DataBlock(d))? != 0 {
                            continue;
                        }
                        match pinned.last_mut() {
                            Some(last) if last.1 .0 == d => last.1 = DataBlock(d + 1),
                            _ => pinned.push((DataBlock(d), DataBlock(d + 1))),
                        }
                    }
                }
                for &(s, t) in &pinned {
                    md.inc_data_range(s, t)?;
                }
            }
            Ok(pinned)
        })?;
        if pinned.is_empty() {
            return Ok(());
        }
        let bb = pool.block_bytes;
        let mut result = Ok(());
        for &(s, t) in &pinned {
            if let Err(e) = pool.data.discard(s.0 * bb, (t.0 - s.0) * bb) {
                log::error!("data device discard of blocks {s}..{t} failed: {e}");
                if result.is_ok() {
                    result = Err(crate::Error::data_io(
                        "discard",
                        s.0 * bb,
                        (t.0 - s.0) * bb,
                        e,
                    ));
                }
            }
        }
        let unpin = {
            let mut md = pool.md.write();
            if md.is_read_only() || pool.mode() == PoolMode::Fail {
                Ok(()) // aborted meanwhile: the pins went with the transaction
            } else {
                pinned
                    .iter()
                    .try_for_each(|&(s, t)| md.dec_data_range(s, t))
                    .map_err(|e| pool.on_meta_error(&mut md, "dec_data_range", e))
            }
        };
        result.and(unpin)
    }
}
