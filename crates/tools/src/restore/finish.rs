//! The end of a restore: the space maps and the superblock, written
//! through the persistent-data layer's transaction manager (the same code
//! that commits a live pool), then block 0.

use crate::error::Result;
use crate::ir;
use uthin_block_io::SharedDevice;
use uthin_pdata::block_manager::BlockManager;
use uthin_pdata::sm::{DataSpaceMap, MetadataSpaceMap, RefCounts};
use uthin_pdata::tm::TransactionManager;
use uthin_pdata::MetaBlock;
use uthin_thin::superblock::{Superblock, MAGIC, SUPERBLOCK, VERSION};

/// The roots and fields the superblock needs.
pub struct Roots<'a> {
    pub sb: &'a ir::Superblock,
    pub mapping_root: MetaBlock,
    pub details_root: MetaBlock,
}

/// Writes the data space map (`data`), the metadata space map (`meta`,
/// counting every block written so far) and the superblock.
pub fn write(dev: SharedDevice, meta: RefCounts, data: RefCounts, roots: &Roots) -> Result<()> {
    let nr_meta = meta.nr_blocks();
    let bm = BlockManager::new(dev, 1024, false)?;
    let mut tm = TransactionManager::new(bm, meta);
    let mut msm = MetadataSpaceMap::format(&mut tm)?;
    let mut dsm = DataSpaceMap::format(&mut tm, 0)?;
    let nr_data = data.nr_blocks();
    *dsm.counts_mut() = data;
    dsm.grow(nr_data);
    let data_sm_root = dsm.commit(&mut tm)?;
    let metadata_sm_root = msm.commit(&mut tm)?;
    tm.bm().flush_dirty()?;
    tm.bm().flush_device()?;
    let sb = Superblock {
        flags: 0,
        blocknr: 0,
        uuid: [0; 16],
        magic: MAGIC,
        version: VERSION,
        time: roots.sb.time,
        trans_id: roots.sb.transaction,
        held_root: 0,
        data_sm_root,
        metadata_sm_root,
        data_mapping_root: roots.mapping_root,
        device_details_root: roots.details_root,
        data_block_size: roots.sb.data_block_size,
        metadata_block_size: 8,
        metadata_nr_blocks: nr_meta,
        compat_flags: 0,
        compat_ro_flags: 0,
        incompat_flags: 0,
    };
    tm.bm().write_now(MetaBlock(0), &sb.pack(), &SUPERBLOCK)?;
    tm.bm().flush_device()?;
    Ok(())
}
