//! Pool metadata: the operations of the kernel's `dm-thin-metadata`.
//!
//! State: the last committed superblock, the transaction manager (metadata
//! counts), the data space map, the in-memory roots, and a table of devices
//! touched in this transaction (their details reach the details tree at
//! commit, as in the kernel).
//!
//! Error discipline: arguments are checked before anything changes.  An error
//! from below (I/O, corruption, no space) in a mutating call, be it in the
//! change or in the reads that check its arguments, marks the transaction
//! unusable ([`Error::NeedsAbort`]) until [`PoolMetadata::abort`].
//! If the abort cannot re-read the last commit, the metadata enters fail mode.
//!
//! Submodules: [`open`] (open, format), [`commit`] (commit, abort, flags),
//! [`devices`], [`mappings`], [`snap`] (metadata snapshots), [`space`].

mod commit;
mod devices;
mod mappings;
mod open;
mod snap;
mod space;

pub use mappings::{Lookup, MappedRange};
pub use open::OpenOptions;

use crate::details::DeviceDetails;
use crate::error::{Error, Result};
use crate::superblock::Superblock;
use crate::types::DevId;
use std::collections::BTreeMap;
use uthin_block_io::SharedDevice;
use uthin_pdata::sm::{DataSpaceMap, MetadataSpaceMap};
use uthin_pdata::tm::TransactionManager;
use uthin_pdata::MetaBlock;

/// A device touched in this transaction, or open.
#[derive(Clone, Debug, Default)]
struct DevState {
    details: DeviceDetails,
    changed: bool,
    open_count: u32,
    aborted_with_changes: bool,
    /// Whether it exists (a deleted-but-open entry keeps its counters).
    exists: bool,
}

/// The live transaction.
struct Inner {
    tm: TransactionManager,
    meta_sm: MetadataSpaceMap,
    data_sm: DataSpaceMap,
    /// The superblock as last committed.
    sb: Superblock,
    time: u32,
    trans_id: u64,
    held_root: u64,
    mapping_root: MetaBlock,
    details_root: MetaBlock,
    /// Something changed since the last commit (metadata must be written).
    dirty: bool,
}

// `Sync` so that `PoolMetadata` is, and a pool can share it behind a lock.
type LowWaterCallback = Box<dyn FnMut(u64) + Send + Sync>;
type PreCommitHook = Box<dyn FnMut() -> std::io::Result<()> + Send + Sync>;

struct Threshold {
    blocks: u64,
    armed: bool,
    callback: LowWaterCallback,
}

/// Thin-pool metadata on a metadata device.
pub struct PoolMetadata {
    dev: SharedDevice,
    opts: OpenOptions,
    inner: Option<Inner>,
    devices: BTreeMap<DevId, DevState>,
    /// Set after a failed change; cleared by abort.
    poisoned: bool,
    read_only: bool,
    threshold: Option<Threshold>,
    pre_commit: Option<PreCommitHook>,
}

impl PoolMetadata {
    fn inner(&self) -> Result<&Inner> {
        self.inner.as_ref().ok_or(Error::Failed)
    }

    /// Checks that a change may start; returns the live transaction.
    fn begin(&mut self) -> Result<&mut Inner> {
        if self.inner.is_none() {
            return Err(Error::Failed);
        }
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        if self.poisoned {
            return Err(Error::NeedsAbort);
        }
        Ok(self.inner.as_mut().expect("checked"))
    }

    /// Passes on the result of a read made to check a change's arguments:
    /// an error from below poisons the transaction as an error in the change
    /// itself would (dm-thin aborts on any failed metadata operation), so a
    /// failed mutating call always needs an abort.
    fn checked<T>(&mut self, r: Result<T>) -> Result<T> {
        if matches!(r, Err(Error::Pdata(_))) {
            self.poisoned = true;
        }
        r
    }

    /// Runs a change; an error from below poisons the transaction.
    fn change<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.begin()?;
        match f(self) {
            Ok(v) => {
                if let Some(i) = self.inner.as_mut() {
                    i.dirty = true;
                }
                self.check_threshold();
                Ok(v)
            }
            Err(e) => {
                if matches!(e, Error::Pdata(_)) {
                    self.poisoned = true;
                }
                Err(e)
            }
        }
    }

    /// Whether the metadata is in fail mode.
    pub fn is_failed(&self) -> bool {
        self.inner.is_none()
    }

    /// Whether the metadata is read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only || self.inner.is_none()
    }

    /// Whether a change failed and the transaction must be aborted.
    pub fn needs_abort(&self) -> bool {
        self.poisoned
    }

    /// Whether the transaction holds changes a commit would write.
    pub fn is_dirty(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.dirty)
    }

    /// The data block size in sectors.
    pub fn data_block_size(&self) -> u32 {
        self.opts.data_block_size
    }

    /// The superblock as last committed.
    pub fn committed_superblock(&self) -> Result<Superblock> {
        Ok(self.inner()?.sb.clone())
    }

    /// The metadata device.
    pub fn device(&self) -> &SharedDevice {
        &self.dev
    }
}
