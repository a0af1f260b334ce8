//! Read-only access to pool metadata for the tools: a block manager over the
//! metadata file or device, the superblock (the live one, a metadata
//! snapshot, or one with overridden roots), and a transaction manager used
//! only to read trees.

use crate::error::{Error, Result};
use std::path::Path;
use std::sync::Arc;
use uthin_block_io::{BlockDevice, FileDevice, BLOCK_SIZE};
use uthin_pdata::block_manager::BlockManager;
use uthin_pdata::sm::RefCounts;
use uthin_pdata::tm::TransactionManager;
use uthin_pdata::MetaBlock;
use uthin_thin::superblock::{Superblock, SUPERBLOCK};

/// Which superblock to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SbChoice {
    /// Block 0.
    #[default]
    Live,
    /// The metadata snapshot named by the live superblock's held root.
    MetadataSnap,
    /// A metadata snapshot at this block.
    At(u64),
}

/// Open, read-only metadata.
pub struct Reader {
    pub tm: TransactionManager,
    pub sb: Superblock,
    /// Where `sb` was read from.
    pub sb_loc: MetaBlock,
    pub nr_blocks: u64,
}

/// Opens a metadata file or device for reading, with a clear message when it
/// is missing or too small.
pub fn open_device(path: &Path, writable: bool) -> Result<Arc<FileDevice>> {
    let dev = FileDevice::open(path, writable).map_err(|e| Error::File {
        path: path.display().to_string(),
        source: e,
    })?;
    let len = dev.len().map_err(|e| Error::File {
        path: path.display().to_string(),
        source: e,
    })?;
    if len < BLOCK_SIZE as u64 {
        return Err(Error::msg(format!(
            "{}: metadata device/file too small ({len} bytes; a superblock needs 4096)",
            path.display()
        )));
    }
    Ok(Arc::new(dev))
}

impl Reader {
    /// Opens metadata at `path` with a cache of `cache_blocks`.
    pub fn open(path: &Path, choice: SbChoice, cache_blocks: usize) -> Result<Self> {
        let dev = open_device(path, false)?;
        Self::from_device(dev, choice, cache_blocks)
    }

    /// Opens metadata on `dev`.
    pub fn from_device(
        dev: Arc<dyn BlockDevice>,
        choice: SbChoice,
        cache_blocks: usize,
    ) -> Result<Self> {
        let bm = BlockManager::new(dev, cache_blocks, true)?;
        let nr_blocks = bm.nr_blocks();
        let tm = TransactionManager::new(bm, RefCounts::new(0));
        let live = Superblock::unpack(&*tm.read(MetaBlock(0), &SUPERBLOCK)?);
        let loc = match choice {
            SbChoice::Live => MetaBlock(0),
            // 1.x's words (scripts match them).
            SbChoice::MetadataSnap if live.held_root == 0 => {
                return Err(Error::msg("no current metadata snap"))
            }
            SbChoice::MetadataSnap => MetaBlock(live.held_root),
            SbChoice::At(b) => MetaBlock(b),
        };
        let sb = if loc.0 == 0 {
            live
        } else {
            Superblock::unpack(&*tm.read(loc, &SUPERBLOCK)?)
        };
        Ok(Reader {
            tm,
            sb,
            sb_loc: loc,
            nr_blocks,
        })
    }
}
