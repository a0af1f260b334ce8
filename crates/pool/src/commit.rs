//! Commits (FORMAT.md §6.7) and the background committer.
//!
//! A commit flushes the data device (the pre-commit hook, so mappings never
//! reach disk before their data) and then writes the metadata transaction.
//! It takes the commit gate exclusively: requests holding an allocated but
//! not yet mapped block (or a block pinned for a discard) finish first.
//!
//! Triggers: flush and FUA on a device that changed in this transaction;
//! every `commit_period` when any device changed; after each pool message;
//! when allocation finds nothing free but the transaction freed blocks; when
//! free metadata runs out; on resize and close.  After each commit the pool
//! leaves OutOfDataSpace if blocks are free, and enters OutOfMetadataSpace
//! if no metadata block is.

use crate::error::{Error, Result};
use crate::mode::PoolMode;
use crate::pool::Pool;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use uthin_thin::{DevId, PoolMetadata};

#[derive(Default)]
struct Ctl {
    stop: Mutex<bool>,
    cv: Condvar,
}

/// The background committer thread's handle.
pub(crate) struct Committer {
    ctl: Arc<Ctl>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Committer {
    /// No thread yet.
    pub(crate) fn idle() -> Self {
        Committer {
            ctl: Arc::new(Ctl::default()),
            handle: Mutex::new(None),
        }
    }

    /// Starts the thread (unless the period is zero).  It holds the pool
    /// only weakly, and only while committing.
    pub(crate) fn start(pool: &Arc<Pool>) {
        let period = pool.cfg.commit_period;
        if period.is_zero() {
            return;
        }
        let weak: Weak<Pool> = Arc::downgrade(pool);
        let ctl = pool.committer.ctl.clone();
        let h = std::thread::Builder::new()
            .name("uthin-commit".into())
            .spawn(move || loop {
                {
                    let mut stop = ctl.stop.lock();
                    if *stop {
                        break;
                    }
                    ctl.cv.wait_for(&mut stop, period);
                    if *stop {
                        break;
                    }
                }
                let Some(pool) = weak.upgrade() else {
                    break;
                };
                pool.periodic_commit();
            });
        match h {
            Ok(h) => *pool.committer.handle.lock() = Some(h),
            Err(e) => log::error!("cannot start the commit thread: {e}"),
        }
    }

    /// Stops the thread and waits for it (unless called from it).
    pub(crate) fn stop(&self) {
        *self.ctl.stop.lock() = true;
        self.ctl.cv.notify_all();
        if let Some(h) = self.handle.lock().take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Pool {
    /// Commits the metadata transaction now (a no-op when nothing changed).
    /// Refused from OutOfMetadataSpace on.
    pub fn commit(&self) -> Result<()> {
        self.check_io()?;
        let r = self.commit_inner().map(|_| ());
        self.events.deliver();
        r
    }

    /// Commits; returns whether a transaction was written.
    pub(crate) fn commit_inner(&self) -> Result<bool> {
        let mode = self.mode();
        if !mode.metadata_writable() {
            return Err(self.mode_error("commit", mode));
        }
        if !self.md.read().is_dirty() {
            if mode == PoolMode::OutOfDataSpace {
                let mut md = self.md.write();
                self.check_spaces(&mut md);
            }
            return Ok(false);
        }
        // Flush the data device before taking the locks, so the flush inside
        // the commit finds little left to write and the metadata lock is held
        // briefly.  A failure is a failed commit.
        if let Err(e) = self.data.flush() {
            let mut md = self.md.write();
            let source = uthin_thin::Error::Pdata(uthin_pdata::Error::Flush(e));
            self.abort_to_read_only(&mut md, "commit", &source);
            return Err(Error::Metadata {
                op: "commit (flushing the data device)",
                source,
            });
        }
        let _gate = self.commit_gate.write();
        let mut md = self.md.write();
        let mode = self.mode();
        if !mode.metadata_writable() {
            return Err(self.mode_error("commit", mode));
        }
        let before = self.commits.load(Ordering::Relaxed);
        md.commit()
            .map_err(|e| self.on_meta_error(&mut md, "commit", e))?;
        self.check_spaces(&mut md);
        Ok(self.commits.load(Ordering::Relaxed) != before)
    }

    /// The kernel's checks after a commit: out of metadata space if no
    /// metadata block is free (after the reserve); back to Write from
    /// OutOfDataSpace if a data block is.
    pub(crate) fn check_spaces(&self, md: &mut PoolMetadata) {
        if !self.mode().metadata_writable() {
            return;
        }
        if md.free_metadata_blocks().is_ok_and(|f| f == 0) {
            log::error!("no free metadata blocks");
            self.set_mode(md, PoolMode::OutOfMetadataSpace);
            return;
        }
        if self.mode() == PoolMode::OutOfDataSpace && md.free_data_blocks().is_ok_and(|f| f > 0) {
            self.set_mode(md, PoolMode::Write);
        }
    }

    /// The background commit: only when a device changed.
    pub(crate) fn periodic_commit(&self) {
        if self.check_io().is_err() || !self.mode().metadata_writable() {
            return;
        }
        if self.md.read().any_changed_this_transaction() {
            if let Err(e) = self.commit_inner() {
                log::error!("periodic commit failed: {e}");
            }
        }
        self.events.deliver();
    }

    /// A flush of thin device `dev`: commit if it changed in this
    /// transaction (the commit flushes the data device first), otherwise
    /// flush the data device.  Fails on a device whose changes an abort
    /// threw away.
    pub(crate) fn flush_dev(&self, dev: DevId) -> Result<()> {
        self.check_io()?;
        let (aborted, changed) = {
            let md = self.md.read();
            (
                md.aborted_with_changes(dev),
                md.changed_this_transaction(dev),
            )
        };
        if aborted {
            return Err(Error::AbortedWithChanges(dev));
        }
        if changed && self.commit_inner()? {
            return Ok(());
        }
        self.data
            .flush()
            .map_err(|e| Error::data_io("flush", 0, 0, e))?;
        if self.md.read().aborted_with_changes(dev) {
            return Err(Error::AbortedWithChanges(dev));
        }
        Ok(())
    }
}
