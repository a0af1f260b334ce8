//! Data block allocation, running out of space, and growing the devices
//! (FORMAT.md §6.8, §6.9).
//!
//! When allocation finds no block, the pool commits if the transaction freed
//! blocks (they become allocatable only after a commit) and retries; if there
//! is still none it goes OutOfDataSpace.  Writes that need a block then wait
//! (without holding any lock) until the pool is back in Write mode, for up to
//! the no-space timeout, or fail at once with `error_if_no_space`.  Growing
//! the data device and calling [`Pool::resize_data`] commits and returns the
//! pool to Write, waking them.

use crate::error::{Error, Result};
use crate::event::PoolEvent;
use crate::mode::PoolMode;
use crate::pool::{install_metadata_threshold, usable_metadata_blocks, Pool};
use parking_lot::RwLockReadGuard;
use std::time::Instant;
use uthin_thin::DataBlock;

/// The outcome of an allocation.
pub(crate) enum Alloc<'a> {
    /// A block (count 1, not mapped yet), with the commit gate held until
    /// it is mapped or released.
    Got(DataBlock, RwLockReadGuard<'a, ()>),
    /// None free: the pool is out of data space.
    NoSpace,
}

impl Pool {
    /// Allocates a data block for a write.
    pub(crate) fn alloc_for_write(&self) -> Result<Alloc<'_>> {
        let mut retried = false;
        loop {
            match self.mode() {
                PoolMode::Write => {}
                PoolMode::OutOfDataSpace => return Ok(Alloc::NoSpace),
                m => return Err(self.mode_error("a write to a new block", m)),
            }
            let gate = self.commit_gate.read();
            let mut md = self.md.write();
            match md.alloc_data_block() {
                Ok(Some(b)) => {
                    let free = md.free_data_blocks().unwrap_or(0);
                    drop(md);
                    self.check_data_low_water(free);
                    return Ok(Alloc::Got(b, gate));
                }
                Ok(None) => {
                    let freed = md.free_data_blocks().unwrap_or(0)
                        > md.allocatable_data_blocks().unwrap_or(0);
                    if freed && !retried {
                        drop(md);
                        drop(gate);
                        self.commit_inner()?;
                        retried = true;
                        continue;
                    }
                    self.set_mode(&mut md, PoolMode::OutOfDataSpace);
                    return Ok(Alloc::NoSpace);
                }
                Err(e) => return Err(self.on_meta_error(&mut md, "alloc_data_block", e)),
            }
        }
    }

    /// Allocates `n` data blocks for a write at once, under one metadata
    /// lock (so they are consecutive where free space is), with the commit
    /// gate held until they are mapped or released.  `None` unless the pool
    /// is in Write mode and has `n` blocks allocatable now: the caller then
    /// goes block by block, which handles running out of space.
    pub(crate) fn alloc_run(
        &self,
        n: usize,
    ) -> Result<Option<(Vec<DataBlock>, RwLockReadGuard<'_, ()>)>> {
        if self.mode() != PoolMode::Write {
            return Ok(None);
        }
        let gate = self.commit_gate.read();
        let mut md = self.md.write();
        let enough = md
            .allocatable_data_blocks()
            .map_err(|e| self.on_meta_error(&mut md, "allocatable_data_blocks", e))?;
        if enough < n as u64 {
            return Ok(None);
        }
        let free_before = md.free_data_blocks().unwrap_or(0);
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match md.alloc_data_block() {
                Ok(Some(b)) => got.push(b),
                Ok(None) => break,
                Err(e) => return Err(self.on_meta_error(&mut md, "alloc_data_block", e)),
            }
        }
        drop(md);
        if got.len() < n {
            got.into_iter().for_each(|b| self.release_block(b));
            return Ok(None);
        }
        // The kernel checks the mark after each allocation: report the first
        // free count at or below it, as block-by-block allocation would.
        let (lw, after) = (
            self.cfg.low_water_blocks,
            free_before.saturating_sub(n as u64),
        );
        let seen = if after <= lw {
            free_before.saturating_sub(1).min(lw)
        } else {
            after
        };
        self.check_data_low_water(seen);
        Ok(Some((got, gate)))
    }

    /// Gives back a block allocated for a write that failed before mapping
    /// it (the kernel leaks it until the next abort; a commit would record
    /// the leak).
    pub(crate) fn release_block(&self, b: DataBlock) {
        let mut md = self.md.write();
        if md.is_read_only() {
            return; // aborted meanwhile: the block is free again
        }
        if let Err(e) = md.dec_data_range(b, DataBlock(b.0 + 1)) {
            let e = self.on_meta_error(&mut md, "dec_data_range", e);
            log::error!("releasing data block {b}: {e}");
        }
    }

    /// Waits until a write needing a block may retry: the pool left
    /// OutOfDataSpace.  Fails at once with `error_if_no_space`, or when the
    /// no-space timeout expires (after which the pool errors until it is
    /// back in Write mode).
    pub(crate) fn wait_for_space(&self) -> Result<()> {
        let timeout = self.cfg.no_space_timeout;
        let mut st = self.mode.state.lock();
        loop {
            if st.mode != PoolMode::OutOfDataSpace {
                return Ok(());
            }
            if self.cfg.features.error_if_no_space || st.no_space_error {
                return Err(Error::NoDataSpace);
            }
            let since = *st.oods_since.get_or_insert_with(Instant::now);
            if timeout.is_zero() {
                self.mode.changed.wait(&mut st);
                continue;
            }
            let deadline = since + timeout;
            if Instant::now() >= deadline {
                log::error!("no-space timeout expired: failing writes that need space");
                st.no_space_error = true;
                self.mode.changed.notify_all();
                return Err(Error::NoDataSpace);
            }
            self.mode.changed.wait_until(&mut st, deadline);
        }
    }

    /// Raises the data low-water event once per arming.
    fn check_data_low_water(&self, free: u64) {
        if free > self.cfg.low_water_blocks {
            return;
        }
        let mut st = self.mode.state.lock();
        if st.data_low_armed {
            st.data_low_armed = false;
            drop(st);
            log::warn!("reached the low water mark for data: {free} blocks free");
            self.events.push(PoolEvent::DataLowWater { free });
        }
    }

    /// After a change: if free metadata (after the reserve) ran out, commit
    /// so the reserve can absorb it (the commit then checks for
    /// OutOfMetadataSpace).
    pub(crate) fn commit_if_metadata_exhausted(&self) -> Result<()> {
        let exhausted = self.md.read().free_metadata_blocks().is_ok_and(|f| f == 0);
        if exhausted && self.mode().metadata_writable() {
            self.commit_inner()?;
        }
        Ok(())
    }

    /// Grows the pool to the data device's current size (the device grew),
    /// commits, re-arms the low-water event and returns an out-of-space pool
    /// to Write mode.  A smaller device is refused.
    pub fn resize_data(&self) -> Result<()> {
        self.check_io()?;
        let have = self
            .data
            .len()
            .map_err(|e| Error::data_io("size query", 0, 0, e))?
            / self.block_bytes;
        let grew = {
            let mut md = self.md.write();
            let cur = md
                .data_dev_size()
                .map_err(|e| self.on_meta_error(&mut md, "data_dev_size", e))?;
            if have < cur {
                return Err(Error::DataDeviceTooSmall { have, need: cur });
            }
            if have > cur {
                let mode = self.mode();
                if !mode.metadata_writable() {
                    return Err(Error::ReadOnly {
                        what: "resizing the data device",
                        mode,
                    });
                }
                md.resize_data_dev(have)
                    .map_err(|e| self.on_meta_error(&mut md, "resize_data_dev", e))?;
            }
            have > cur
        };
        self.mode.state.lock().data_low_armed = true;
        let r = if grew || self.mode() == PoolMode::OutOfDataSpace {
            self.commit_inner().map(|_| ())
        } else {
            Ok(())
        };
        self.events.deliver();
        r
    }

    /// Grows the metadata space map to the metadata device's current size,
    /// commits, and returns an out-of-metadata-space pool to Write mode.
    pub fn resize_metadata(&self) -> Result<()> {
        self.check_io()?;
        let bytes = self.meta_dev.len().map_err(|e| Error::Metadata {
            op: "metadata device size",
            source: crate::pool::io_to_thin(e),
        })?;
        {
            let mut md = self.md.write();
            let cur = md
                .metadata_dev_size()
                .map_err(|e| self.on_meta_error(&mut md, "metadata_dev_size", e))?;
            if usable_metadata_blocks(bytes) <= cur {
                return Ok(());
            }
            let needs_check = md.needs_check().unwrap_or(true);
            if needs_check || self.mode() > PoolMode::OutOfMetadataSpace {
                return Err(Error::ReadOnly {
                    what: "resizing the metadata device",
                    mode: self.mode(),
                });
            }
            if self.mode() == PoolMode::OutOfMetadataSpace {
                self.set_mode(&mut md, PoolMode::Write);
            }
            md.resize_metadata_dev()
                .map_err(|e| self.on_meta_error(&mut md, "resize_metadata_dev", e))?;
            install_metadata_threshold(&mut md, &self.events);
        }
        let r = self.commit_inner().map(|_| ());
        self.events.deliver();
        r
    }
}
