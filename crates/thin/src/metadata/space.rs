//! Space queries and resizing (FORMAT.md §5.6), and the metadata low-water
//! callback.

use super::{PoolMetadata, Threshold};
use crate::error::{Error, Result};
use uthin_pdata::sm::metadata::MAX_METADATA_BLOCKS;

/// The kernel's metadata reserve: min(4096 blocks, a tenth of the device).
pub fn metadata_reserve(nr_blocks: u64) -> u64 {
    (nr_blocks / 10).min(4096)
}

impl PoolMetadata {
    /// Data blocks the pool tracks.
    pub fn data_dev_size(&self) -> Result<u64> {
        Ok(self.inner()?.data_sm.counts().nr_blocks())
    }

    /// Free data blocks (those released in this transaction included).
    pub fn free_data_blocks(&self) -> Result<u64> {
        Ok(self.inner()?.data_sm.counts().nr_free())
    }

    /// Data blocks that can be allocated before the next commit.
    pub fn allocatable_data_blocks(&self) -> Result<u64> {
        Ok(self.inner()?.data_sm.counts().nr_allocatable())
    }

    /// Metadata blocks the pool tracks.
    pub fn metadata_dev_size(&self) -> Result<u64> {
        Ok(self.inner()?.tm.counts().nr_blocks())
    }

    /// Free metadata blocks before the reserve is subtracted.
    pub fn raw_free_metadata_blocks(&self) -> Result<u64> {
        Ok(self.inner()?.tm.counts().nr_allocatable())
    }

    /// Free metadata blocks after the reserve (floored at 0).
    pub fn free_metadata_blocks(&self) -> Result<u64> {
        let total = self.metadata_dev_size()?;
        Ok(self
            .raw_free_metadata_blocks()?
            .saturating_sub(metadata_reserve(total)))
    }

    /// Grows the data space map to `nr_blocks` data blocks.
    pub fn resize_data_dev(&mut self, nr_blocks: u64) -> Result<()> {
        self.begin()?;
        if self.needs_check()? {
            return Err(Error::NeedsCheck("resize"));
        }
        let cur = self.data_dev_size()?;
        if nr_blocks < cur {
            return Err(Error::Shrink {
                what: "data device",
                from: cur,
                to: nr_blocks,
            });
        }
        if nr_blocks == cur {
            return Ok(());
        }
        self.change(|md| {
            md.inner.as_mut().expect("begun").data_sm.grow(nr_blocks);
            Ok(())
        })
    }

    /// Grows the metadata space map to the metadata device's current size
    /// (capped at the format's maximum); returns the new size in blocks.
    pub fn resize_metadata_dev(&mut self) -> Result<u64> {
        self.begin()?;
        if self.needs_check()? {
            return Err(Error::NeedsCheck("resize"));
        }
        let cur = self.metadata_dev_size()?;
        self.change(|md| {
            let inner = md.inner.as_mut().expect("begun");
            let dev_blocks = inner.tm.bm_mut().refresh_size()?;
            let want =
                super::open::usable_metadata_blocks(dev_blocks * 4096).min(MAX_METADATA_BLOCKS);
            if want < cur {
                return Err(Error::Shrink {
                    what: "metadata device",
                    from: cur,
                    to: want,
                });
            }
            if want > cur {
                inner.meta_sm.grow(&mut inner.tm, want)?;
            }
            Ok(want)
        })
    }

    /// Registers the metadata low-water callback: called with the free count
    /// when, after a change, free metadata blocks (without the reserve) are at
    /// or below `blocks`; it fires again only after the count rose above.
    pub fn set_metadata_threshold(
        &mut self,
        blocks: u64,
        callback: impl FnMut(u64) + Send + Sync + 'static,
    ) {
        self.threshold = Some(Threshold {
            blocks,
            armed: true,
            callback: Box::new(callback),
        });
        self.check_threshold();
    }

    pub(super) fn check_threshold(&mut self) {
        let Ok(free) = self.raw_free_metadata_blocks() else {
            return;
        };
        if let Some(t) = self.threshold.as_mut() {
            if free <= t.blocks {
                if t.armed {
                    t.armed = false;
                    (t.callback)(free);
                }
            } else {
                t.armed = true;
            }
        }
    }
}
