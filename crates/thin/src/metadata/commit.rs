//! Commit, abort, and the superblock flags (FORMAT.md §4.3-§4.5, §5.7).
//!
//! Commit order, as the kernel's: data-device flush hook; changed device
//! details into the details tree; data space map; metadata space map; write
//! every dirty block and flush; write the superblock and flush.

use super::open::load;
use super::{Inner, PoolMetadata};
use crate::details::DeviceDetails;
use crate::error::{Error, Result};
use crate::superblock::{Superblock, FLAG_NEEDS_CHECK, SUPERBLOCK};
use uthin_pdata::block_manager::BlockManager;
use uthin_pdata::btree::{self, NoRefs};
use uthin_pdata::MetaBlock;

impl PoolMetadata {
    /// Sets a hook run at the start of every commit (dm-thin flushes the data
    /// device there, so data reaches disk before the mappings that point to it).
    pub fn set_pre_commit_hook(
        &mut self,
        hook: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
    ) {
        self.pre_commit = Some(Box::new(hook));
    }

    /// Commits the transaction.  Does nothing if nothing changed.  On error
    /// the transaction must be aborted.
    pub fn commit(&mut self) -> Result<()> {
        self.begin()?;
        if !self.inner()?.dirty {
            // Nothing to write, but closed devices still leave the table (as
            // after a real commit): nothing in it is changed when clean.
            self.devices.retain(|_, d| d.open_count > 0);
            return Ok(());
        }
        let r = self.commit_inner();
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn commit_inner(&mut self) -> Result<()> {
        if let Some(hook) = self.pre_commit.as_mut() {
            hook().map_err(uthin_pdata::Error::Flush)?;
        }
        let changed: Vec<(u64, DeviceDetails)> = self
            .devices
            .iter()
            .filter(|(_, d)| d.changed && d.exists)
            .map(|(id, d)| (id.0, d.details))
            .collect();
        let inner = self.inner.as_mut().expect("begin checked");
        for (id, det) in changed {
            inner.details_root =
                btree::insert(&mut inner.tm, &mut NoRefs, inner.details_root, id, det)?.0;
        }
        let data_root = inner.data_sm.commit(&mut inner.tm)?;
        let meta_root = inner.meta_sm.commit(&mut inner.tm)?;
        inner.tm.bm().flush_dirty()?;
        inner.tm.bm().flush_device()?;
        let sb = Superblock {
            flags: inner.sb.flags,
            blocknr: 0,
            time: inner.time,
            trans_id: inner.trans_id,
            held_root: inner.held_root,
            data_sm_root: data_root,
            metadata_sm_root: meta_root,
            data_mapping_root: inner.mapping_root,
            device_details_root: inner.details_root,
            ..inner.sb.clone()
        };
        inner
            .tm
            .bm()
            .write_now(MetaBlock(0), &sb.pack(), &SUPERBLOCK)?;
        inner.tm.bm().flush_device()?;
        inner.tm.end_transaction();
        inner.sb = sb;
        inner.dirty = false;
        for d in self.devices.values_mut() {
            d.changed = false;
        }
        self.devices.retain(|_, d| d.open_count > 0);
        Ok(())
    }

    /// Drops the transaction and re-reads the last commit.  Devices that had
    /// uncommitted changes remember it ([`PoolMetadata::aborted_with_changes`]).
    /// If the last commit cannot be read, the metadata enters fail mode.
    pub fn abort(&mut self) -> Result<()> {
        let Some(old) = self.inner.take() else {
            return Err(Error::Failed);
        };
        for d in self.devices.values_mut() {
            if d.changed {
                d.aborted_with_changes = true;
            }
            d.changed = false;
        }
        let bm = old.tm.bm();
        bm.discard_all();
        let reopened = BlockManager::new(self.dev.clone(), self.opts.cache_blocks, self.read_only)
            .map_err(Error::from)
            .and_then(|bm| load(bm, &self.opts));
        drop(old);
        match reopened {
            Ok((inner, _)) => {
                self.inner = Some(inner);
                self.poisoned = false;
                // Forget cached details of devices that are not open.
                self.devices.retain(|_, d| d.open_count > 0);
                // Read the committed details tree itself: `read_details`
                // would answer from the (aborted) table entries.
                let ids: Vec<_> = self.devices.keys().copied().collect();
                for id in ids {
                    let inner = self.inner()?;
                    let det =
                        match btree::lookup::<DeviceDetails>(&inner.tm, inner.details_root, id.0) {
                            Ok(det) => det,
                            Err(e) => {
                                // The open devices' details are unknown: this is
                                // a failed re-open too, hence fail mode.
                                log::error!(
                                    "abort could not re-read device {id}, entering fail mode: {e}"
                                );
                                self.inner = None;
                                return Err(e.into());
                            }
                        };
                    let d = self.devices.get_mut(&id).expect("listed");
                    d.exists = det.is_some();
                    d.details = det.unwrap_or_default();
                }
                Ok(())
            }
            Err(e) => {
                log::error!("abort could not re-read the metadata, entering fail mode: {e}");
                Err(e)
            }
        }
    }

    /// Sets NEEDS_CHECK and writes it to the superblock at once.
    pub fn set_needs_check(&mut self) -> Result<()> {
        self.write_flags(|f| f | FLAG_NEEDS_CHECK)
    }

    /// Clears NEEDS_CHECK (what `thin_check --clear-needs-check-flag` does).
    pub fn clear_needs_check(&mut self) -> Result<()> {
        self.write_flags(|f| f & !FLAG_NEEDS_CHECK)
    }

    /// Whether NEEDS_CHECK is set.
    pub fn needs_check(&self) -> Result<bool> {
        Ok(self.inner()?.sb.needs_check())
    }

    /// Rewrites block 0 as last committed with new flags, and flushes.
    fn write_flags(&mut self, f: impl FnOnce(u32) -> u32) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let inner: &mut Inner = self.inner.as_mut().ok_or(Error::Failed)?;
        // In memory first, as the kernel does: if the write below fails, the
        // next superblock write (any commit) still carries the new flags.
        inner.sb.flags = f(inner.sb.flags);
        let sb = inner.sb.clone();
        inner
            .tm
            .bm()
            .write_now(MetaBlock(0), &sb.pack(), &SUPERBLOCK)?;
        inner.tm.bm().flush_device()?;
        Ok(())
    }

    /// Switches to read-only (no writes at all) or back to read-write.
    /// Going read-write requires the device to have been opened writable.
    pub fn set_read_only(&mut self, ro: bool) -> Result<()> {
        if !ro && self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        self.read_only = ro;
        if let Some(i) = self.inner.as_mut() {
            i.tm.bm_mut().set_read_only(ro);
        }
        Ok(())
    }

    /// Commits (unless read-only or failed) and releases everything.  Refused
    /// while thin devices are open.
    pub fn close(mut self) -> Result<()> {
        if let Some((id, _)) = self.devices.iter().find(|(_, d)| d.open_count > 0) {
            return Err(Error::DeviceBusy(*id));
        }
        if self.inner.is_some() && !self.read_only && !self.poisoned {
            self.commit()?;
        }
        Ok(())
    }
}
