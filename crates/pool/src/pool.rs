//! The pool: opening, thin devices, metadata access, and the failure
//! discipline (FORMAT.md §6.8).
//!
//! The metadata sits behind a reader-writer lock: lookups share it, changes
//! take it exclusively.  Any failed change aborts the transaction back to the
//! last commit, sets needs_check and leaves the pool read-only; if the abort
//! or the flag cannot be written the pool fails.  A failed lookup only fails
//! its request, as in the kernel.

use crate::cells::Cells;
use crate::commit::Committer;
use crate::config::PoolConfig;
use crate::dense::{Budget, DenseCells};
use crate::devcells::CellGuard;
use crate::error::{Error, Result};
use crate::event::{EventHandler, Events, PoolEvent};
use crate::io::{Thin, ThinShared};
use crate::mode::{ModeCtl, PoolMode};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use uthin_block_io::{SharedDevice, SECTOR_SIZE};
use uthin_pdata::sm::metadata::MAX_METADATA_BLOCKS;
use uthin_thin::superblock::MAX_METADATA_SECTORS;
use uthin_thin::{DevId, Lookup, OpenOptions, PoolMetadata, VirtBlock};

/// A thin pool: metadata device, data device, and the engine between them.
pub struct Pool {
    pub(crate) cfg: PoolConfig,
    pub(crate) block_bytes: u64,
    pub(crate) meta_dev: SharedDevice,
    pub(crate) data: SharedDevice,
    pub(crate) md: RwLock<PoolMetadata>,
    pub(crate) cells: Cells,
    /// Shared by requests that hold a data block the metadata does not
    /// account for yet (allocated but not mapped, or temporarily incremented
    /// for a discard); a commit takes it exclusively, so a commit never
    /// records such a block and a crash never leaks one.
    pub(crate) commit_gate: RwLock<()>,
    pub(crate) mode: ModeCtl,
    pub(crate) events: Arc<Events>,
    /// The per-device state of each device in use (open, or taking part
    /// in a message); dropped with the device's last user.
    pub(crate) thins: Mutex<HashMap<DevId, Weak<ThinShared>>>,
    /// What the devices' dense tables may still allocate.
    pub(crate) dense_budget: Arc<Budget>,
    /// Number of commits that reached the pre-commit hook.
    pub(crate) commits: Arc<AtomicU64>,
    pub(crate) committer: Committer,
    closed: AtomicBool,
}

/// Metadata blocks a device of `bytes` can hold (as the format caps them).
pub(crate) fn usable_metadata_blocks(bytes: u64) -> u64 {
    ((bytes / SECTOR_SIZE).min(MAX_METADATA_SECTORS) / 8).min(MAX_METADATA_BLOCKS)
}

/// dm-thin's metadata low-water threshold.
pub(crate) fn metadata_threshold(total: u64) -> u64 {
    (total / 4).min(1024)
}

pub(crate) fn meta_err(op: &'static str) -> impl FnOnce(uthin_thin::Error) -> Error {
    move |source| match source {
        uthin_thin::Error::Failed => Error::Failed,
        source => Error::Metadata { op, source },
    }
}

impl Pool {
    /// Opens a pool: formats empty metadata (unless `read_only`), grows the
    /// data space map to the data device and the metadata space map to the
    /// metadata device, commits, and starts the background committer.
    ///
    /// A pool whose metadata has needs_check opens read-only; a data device
    /// smaller than the pool's data space map is refused.
    pub fn open(meta: SharedDevice, data: SharedDevice, cfg: PoolConfig) -> Result<Arc<Pool>> {
        cfg.validate()?;
        let ro = cfg.features.read_only;
        let mut opts = OpenOptions::new(cfg.data_block_size);
        opts.read_only = ro;
        opts.format_if_empty = !ro;
        opts.cache_blocks = cfg.metadata_cache_blocks;
        let mut md = PoolMetadata::open(meta.clone(), opts).map_err(meta_err("open"))?;
        let bb = cfg.block_bytes();
        let have = data
            .len()
            .map_err(|e| Error::data_io("size query", 0, 0, e))?
            / bb;
        let need = md.data_dev_size().map_err(meta_err("open"))?;
        if have < need {
            return Err(Error::DataDeviceTooSmall { have, need });
        }
        let needs_check = md.needs_check().map_err(meta_err("open"))?;
        let writable = !ro && !needs_check && !md.is_read_only();
        if writable {
            if have > need {
                md.resize_data_dev(have)
                    .map_err(meta_err("resize_data_dev"))?;
            }
            let meta_bytes = meta.len().map_err(|e| meta_err("open")(io_to_thin(e)))?;
            if usable_metadata_blocks(meta_bytes)
                > md.metadata_dev_size().map_err(meta_err("open"))?
            {
                md.resize_metadata_dev()
                    .map_err(meta_err("resize_metadata_dev"))?;
            }
            md.commit().map_err(meta_err("commit"))?;
        } else if needs_check {
            log::warn!("pool metadata has needs_check set: opening read-only");
        }
        let commits = Arc::new(AtomicU64::new(0));
        let (d, c) = (data.clone(), commits.clone());
        md.set_pre_commit_hook(move || {
            d.flush()?;
            c.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        let events = Arc::new(Events::default());
        install_metadata_threshold(&mut md, &events);
        let mode = if writable {
            PoolMode::Write
        } else {
            // Only fails when asked to go read-write.
            let _ = md.set_read_only(true);
            PoolMode::ReadOnly
        };
        let pool = Arc::new(Pool {
            block_bytes: bb,
            meta_dev: meta,
            data,
            md: RwLock::new(md),
            cells: Cells::new(cfg.mapping_cache_entries),
            commit_gate: RwLock::new(()),
            mode: ModeCtl::new(mode),
            events,
            thins: Mutex::new(HashMap::new()),
            dense_budget: Budget::new(cfg.dense_table_bytes),
            commits,
            committer: Committer::idle(),
            closed: AtomicBool::new(false),
            cfg,
        });
        if writable {
            let mut md = pool.md.write();
            pool.check_spaces(&mut md);
        }
        Committer::start(&pool);
        Ok(pool)
    }

    /// Opens thin device `dev` for I/O, optionally over a read-only external
    /// origin (unmapped blocks read from it).  The device stays open in the
    /// metadata (it cannot be deleted) until the [`Thin`] is dropped.
    pub fn thin(
        self: &Arc<Self>,
        dev: DevId,
        external_origin: Option<SharedDevice>,
    ) -> Result<Thin> {
        self.check_io()?;
        let origin_len = match &external_origin {
            Some(o) => o.len().map_err(|source| Error::OriginIo {
                offset: 0,
                len: 0,
                source,
            })?,
            None => 0,
        };
        let shared = self.thin_shared(dev);
        {
            let mut md = self.md.write();
            md.open_device(dev).map_err(meta_err("open_device"))?;
            if let Ok(d) = md.device_details(dev) {
                shared
                    .snap_time
                    .store(d.snapshotted_time, Ordering::Release);
            }
        }
        Ok(Thin {
            pool: self.clone(),
            shared,
            origin: external_origin,
            origin_len,
        })
    }

    /// The per-device state shared by every open of `dev`.
    pub(crate) fn thin_shared(&self, dev: DevId) -> Arc<ThinShared> {
        let mut thins = self.thins.lock();
        if let Some(t) = thins.get(&dev).and_then(Weak::upgrade) {
            return t;
        }
        thins.retain(|_, t| t.strong_count() > 0);
        let leaf_bits = self.cfg.dense_leaf_blocks.trailing_zeros();
        let dense = DenseCells::new(leaf_bits, self.dense_budget.clone());
        let t = Arc::new(ThinShared::new(dev, dense));
        thins.insert(dev, Arc::downgrade(&t));
        t
    }

    /// The per-device state of `dev` if it is in use.
    fn live_thin(&self, dev: DevId) -> Option<Arc<ThinShared>> {
        self.thins.lock().get(&dev).and_then(Weak::upgrade)
    }

    /// Forgets the cached mappings of `dev` (deleted).
    pub(crate) fn forget_dev(&self, dev: DevId) {
        self.cells.remove_dev(dev);
        if let Some(t) = self.live_thin(dev) {
            t.dense.clear();
        }
    }

    /// Forgets every cached mapping (the metadata was aborted).
    fn forget_all(&self) {
        self.cells.clear();
        let live: Vec<_> = self
            .thins
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        live.iter().for_each(|t| t.dense.clear());
    }

    /// Commits (when the metadata is writable), stops the background
    /// committer and refuses further requests.  Dropping the last handle
    /// does the same, ignoring errors.
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.committer.stop();
        let r = if self.mode().metadata_writable() {
            self.commit_inner().map(|_| ())
        } else {
            Ok(())
        };
        self.events.deliver();
        r
    }

    /// Registers the event callback (replacing any earlier one); events
    /// raised before are delivered now.
    pub fn set_event_handler(&self, handler: impl Fn(PoolEvent) + Send + Sync + 'static) {
        let h: EventHandler = Arc::new(handler);
        self.events.set_handler(Some(h));
        self.events.deliver();
    }

    /// Runs `f` on the metadata under the read lock (inspection, tests).
    /// Do not call into the pool from `f`.
    pub fn inspect_metadata<R>(&self, f: impl FnOnce(&PoolMetadata) -> R) -> R {
        f(&self.md.read())
    }

    /// The configuration the pool runs with.
    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// The data block size in bytes.
    pub fn block_bytes(&self) -> u64 {
        self.block_bytes
    }

    /// The data device.
    pub fn data_device(&self) -> &SharedDevice {
        &self.data
    }

    /// The metadata device.
    pub fn metadata_device(&self) -> &SharedDevice {
        &self.meta_dev
    }

    /// Errors unless requests may run (not closed, not failed).
    pub(crate) fn check_io(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        if self.mode() == PoolMode::Fail {
            return Err(Error::Failed);
        }
        Ok(())
    }

    /// Looks up a mapping (in the cache, else under the metadata read
    /// lock).  A failure fails only this request (the kernel does not
    /// change mode on a failed lookup).  The caller holds the block's cell.
    pub(crate) fn lookup(&self, th: &ThinShared, v: VirtBlock) -> Result<Option<Lookup>> {
        // Load the snapshot time first: it is raised after the metadata
        // changes, so an entry filled with it is never staler than it.
        let st = th.snap_time.load(Ordering::Acquire);
        if let Some(l) = th.cells(self).get(v, st) {
            return Ok(Some(l));
        }
        self.lookup_metadata(th, v, st)
    }

    /// Takes the cell of `v` shared and looks its mapping up: the hot path
    /// of reads and overwrites (one lock when the mapping is cached).
    pub(crate) fn shared_lookup<'a>(
        &'a self,
        th: &'a ThinShared,
        v: VirtBlock,
    ) -> Result<(CellGuard<'a>, Option<Lookup>)> {
        let mut st = 0;
        let (cell, hit) = th.cells(self).shared_cached(v, || {
            st = th.snap_time.load(Ordering::Acquire);
            st
        });
        let l = match hit {
            Some(l) => Some(l),
            None => self.lookup_metadata(th, v, st)?,
        };
        Ok((cell, l))
    }

    /// Looks `v` up in the metadata and caches a mapping found, as made at
    /// snapshot time `st` (loaded before the call).
    fn lookup_metadata(&self, th: &ThinShared, v: VirtBlock, st: u32) -> Result<Option<Lookup>> {
        let md = self.md.read();
        let r = md.find_block(th.dev, v).map_err(meta_err("find_block"))?;
        if let Some(l) = r {
            th.cells(self).put(v, l, st);
        }
        Ok(r)
    }

    /// Runs a metadata change under the write lock; a failure aborts.
    pub(crate) fn change<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut PoolMetadata) -> uthin_thin::Result<T>,
    ) -> Result<T> {
        let mut md = self.md.write();
        f(&mut md).map_err(|e| self.on_meta_error(&mut md, op, e))
    }

    /// Turns a metadata error into the pool's: a change that failed from
    /// below (the transaction needs an abort) aborts, sets needs_check and
    /// goes read-only; argument errors pass through.
    pub(crate) fn on_meta_error(
        &self,
        md: &mut PoolMetadata,
        op: &'static str,
        e: uthin_thin::Error,
    ) -> Error {
        if md.needs_abort() {
            self.abort_to_read_only(md, op, &e);
            return Error::Metadata { op, source: e };
        }
        match e {
            uthin_thin::Error::ReadOnly => Error::ReadOnly {
                what: op,
                mode: self.mode(),
            },
            e => meta_err(op)(e),
        }
    }

    /// dm-thin's `metadata_operation_failed`: abort, needs_check, read-only;
    /// fail mode if either of the first two fails.
    pub(crate) fn abort_to_read_only(
        &self,
        md: &mut PoolMetadata,
        op: &str,
        e: &dyn std::fmt::Display,
    ) {
        log::error!("metadata operation {op} failed: {e}; aborting the transaction");
        let mut new = PoolMode::ReadOnly;
        self.forget_all();
        if let Err(ae) = md.abort() {
            log::error!("failed to abort the metadata transaction: {ae}");
            new = PoolMode::Fail;
        } else if let Err(se) = md.set_needs_check() {
            log::error!("failed to set needs_check in the metadata: {se}");
            new = PoolMode::Fail;
        }
        self.set_mode(md, new);
    }

    /// The error for a request that needs metadata changes in `mode`.
    pub(crate) fn mode_error(&self, what: &'static str, mode: PoolMode) -> Error {
        match mode {
            PoolMode::Fail => Error::Failed,
            PoolMode::OutOfDataSpace => Error::NoDataSpace,
            mode => Error::ReadOnly { what, mode },
        }
    }
}

/// Wraps a metadata-device error as the metadata layer would.
pub(crate) fn io_to_thin(e: std::io::Error) -> uthin_thin::Error {
    uthin_thin::Error::Pdata(uthin_pdata::Error::Io {
        blk: uthin_pdata::MetaBlock(0),
        source: e,
    })
}

/// Registers dm-thin's metadata low-water threshold for the current size.
pub(crate) fn install_metadata_threshold(md: &mut PoolMetadata, events: &Arc<Events>) {
    let total = md.metadata_dev_size().unwrap_or(0);
    let ev = events.clone();
    md.set_metadata_threshold(metadata_threshold(total), move |free| {
        ev.push(PoolEvent::MetadataLowWater { free })
    });
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::error!("closing the pool: {e}");
        }
    }
}
