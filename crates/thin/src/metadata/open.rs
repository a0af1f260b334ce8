//! Opening and formatting (FORMAT.md §1.4, §4.6).

use super::{Inner, PoolMetadata};
use crate::error::{Error, Result};
use crate::superblock::{
    Superblock, MAGIC, MAX_METADATA_SECTORS, SUPERBLOCK, SUPPORTED_COMPAT_RO, SUPPORTED_INCOMPAT,
    VERSION, WARN_METADATA_SECTORS,
};
use std::collections::BTreeMap;
use uthin_block_io::{SharedDevice, SECTOR_SIZE};
use uthin_pdata::block_manager::{BlockManager, DEFAULT_CACHE_BLOCKS};
use uthin_pdata::btree;
use uthin_pdata::sm::metadata::MAX_METADATA_BLOCKS;
use uthin_pdata::sm::{DataSpaceMap, MetadataSpaceMap, RefCounts};
use uthin_pdata::tm::TransactionManager;
use uthin_pdata::MetaBlock;

/// How to open pool metadata.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Data block size in sectors; must match the stored one.
    pub data_block_size: u32,
    /// Never write; never format.
    pub read_only: bool,
    /// Format an all-zero device (refused when read-only).
    pub format_if_empty: bool,
    /// Block cache size in 4 KiB blocks.
    pub cache_blocks: usize,
}

impl OpenOptions {
    /// Read-write, formatting an empty device, default cache.
    pub fn new(data_block_size: u32) -> Self {
        OpenOptions {
            data_block_size,
            read_only: false,
            format_if_empty: true,
            cache_blocks: DEFAULT_CACHE_BLOCKS,
        }
    }
}

/// Checks a data block size as dm-thin does.
pub fn check_block_size(sectors: u32) -> Result<()> {
    if !(128..=2_097_152).contains(&sectors) || !sectors.is_multiple_of(128) {
        return Err(Error::BadBlockSize(sectors));
    }
    Ok(())
}

/// Usable metadata blocks of a device of `bytes` bytes.
pub fn usable_metadata_blocks(bytes: u64) -> u64 {
    (bytes / SECTOR_SIZE).min(MAX_METADATA_SECTORS) / 8
}

impl PoolMetadata {
    /// Opens pool metadata on `dev`, formatting it if block 0 is all zero.
    pub fn open(dev: SharedDevice, opts: OpenOptions) -> Result<Self> {
        check_block_size(opts.data_block_size)?;
        let bytes = dev.len().map_err(|e| {
            Error::Pdata(uthin_pdata::Error::Io {
                blk: MetaBlock(0),
                source: e,
            })
        })?;
        if bytes / SECTOR_SIZE > WARN_METADATA_SECTORS {
            log::warn!(
                "metadata device is {} sectors; only the first {MAX_METADATA_SECTORS} are used",
                bytes / SECTOR_SIZE
            );
        }
        let bm = BlockManager::new(dev.clone(), opts.cache_blocks, opts.read_only)?;
        if bm.nr_blocks() == 0 {
            return Err(Error::Invalid(
                "metadata device is smaller than one 4 KiB block".into(),
            ));
        }
        let raw = bm.read_raw(MetaBlock(0))?;
        let mut md = PoolMetadata {
            dev,
            opts: opts.clone(),
            inner: None,
            devices: BTreeMap::new(),
            poisoned: false,
            read_only: opts.read_only,
            threshold: None,
            pre_commit: None,
        };
        if raw.iter().all(|&b| b == 0) {
            if opts.read_only || !opts.format_if_empty {
                return Err(Error::Unformatted);
            }
            md.inner = Some(format(bm, opts.data_block_size, bytes)?);
            md.commit()?;
            return Ok(md);
        }
        let (inner, ro) = load(bm, &opts)?;
        md.read_only |= ro;
        md.inner = Some(inner);
        Ok(md)
    }
}

/// Loads the committed state from the superblock.  Returns whether unknown
/// compat_ro flags force read-only.
pub(super) fn load(bm: BlockManager, opts: &OpenOptions) -> Result<(Inner, bool)> {
    let d = bm.read(MetaBlock(0), &SUPERBLOCK)?;
    let sb = Superblock::unpack(&d);
    if sb.data_block_size != opts.data_block_size {
        return Err(Error::BlockSizeMismatch {
            stored: sb.data_block_size,
            requested: opts.data_block_size,
        });
    }
    if sb.incompat_flags & !SUPPORTED_INCOMPAT != 0 {
        return Err(Error::IncompatFeatures(sb.incompat_flags));
    }
    let ro = sb.compat_ro_flags & !SUPPORTED_COMPAT_RO != 0;
    if ro && !opts.read_only {
        log::warn!(
            "superblock has unknown compat_ro features {:#x}: opening read-only",
            sb.compat_ro_flags
        );
    }
    let (meta_sm, tm) = MetadataSpaceMap::open(bm, &sb.metadata_sm_root)?;
    let data_sm = DataSpaceMap::open(&tm, &sb.data_sm_root)?;
    Ok((
        Inner {
            tm,
            meta_sm,
            data_sm,
            time: sb.time,
            trans_id: sb.trans_id,
            held_root: sb.held_root,
            mapping_root: sb.data_mapping_root,
            details_root: sb.device_details_root,
            sb,
            dirty: false,
        },
        ro,
    ))
}

/// Builds a fresh, empty pool (committed by the caller).
fn format(bm: BlockManager, data_block_size: u32, dev_bytes: u64) -> Result<Inner> {
    let nr = usable_metadata_blocks(dev_bytes)
        .min(bm.nr_blocks())
        .min(MAX_METADATA_BLOCKS);
    let mut counts = RefCounts::new(nr);
    counts.set(0, 1);
    let mut tm = TransactionManager::new(bm, counts);
    let meta_sm = MetadataSpaceMap::format(&mut tm)?;
    let data_sm = DataSpaceMap::format(&mut tm, 0)?;
    let mapping_root = btree::empty_tree::<u64>(&mut tm)?;
    let details_root = btree::empty_tree::<crate::details::DeviceDetails>(&mut tm)?;
    let sb = Superblock {
        magic: MAGIC,
        version: VERSION,
        data_block_size,
        metadata_block_size: 8,
        metadata_nr_blocks: nr,
        ..Default::default()
    };
    Ok(Inner {
        tm,
        meta_sm,
        data_sm,
        sb,
        time: 0,
        trans_id: 0,
        held_root: 0,
        mapping_root,
        details_root,
        dirty: true,
    })
}
