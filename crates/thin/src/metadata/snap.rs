//! Metadata snapshots (FORMAT.md §5.5): a copy of the superblock whose two
//! tree roots hold an extra reference, so userland tools can read a stable
//! view of a live pool.

use super::PoolMetadata;
use crate::details::DeviceDetails;
use crate::error::{Error, Result};
use crate::mapping::SubtreeRefs;
use crate::superblock::{Superblock, SUPERBLOCK};
use uthin_pdata::btree::{self, NoRefs};
use uthin_pdata::sm::SmRoot;
use uthin_pdata::tm::WriteBlock;
use uthin_pdata::MetaBlock;

impl PoolMetadata {
    /// Takes a metadata snapshot.  Commits first, so the copy describes the
    /// current roots; the new held root reaches disk with the next commit.
    pub fn reserve_metadata_snap(&mut self) -> Result<MetaBlock> {
        let held = self.inner()?.held_root;
        if held != 0 {
            return Err(Error::MetadataSnapExists(held));
        }
        self.begin()?;
        self.inner.as_mut().expect("begun").dirty = true;
        self.commit()?;
        self.change(|md| {
            let inner = md.inner.as_mut().expect("begun");
            let tm = &mut inner.tm;
            tm.inc(MetaBlock(0))?;
            let (mut wb, _shared) = tm.shadow(MetaBlock(0), &SUPERBLOCK)?;
            let mut sb = Superblock::unpack(&wb.data);
            sb.data_sm_root = SmRoot::default();
            sb.metadata_sm_root = SmRoot::default();
            sb.held_root = 0;
            sb.blocknr = wb.loc.0;
            let loc = wb.loc;
            tm.inc(sb.data_mapping_root)?;
            tm.inc(sb.device_details_root)?;
            wb.bytes().copy_from_slice(&sb.pack()[..]);
            tm.put(WriteBlock { loc, data: wb.data }, &SUPERBLOCK)?;
            inner.held_root = loc.0;
            Ok(loc)
        })
    }

    /// Releases the metadata snapshot: what only it held is freed.
    pub fn release_metadata_snap(&mut self) -> Result<()> {
        let held = self.inner()?.held_root;
        if held == 0 {
            return Err(Error::NoMetadataSnap);
        }
        self.begin()?;
        self.change(|md| {
            let inner = md.inner.as_mut().expect("begun");
            let d = inner.tm.read(MetaBlock(held), &SUPERBLOCK)?;
            let sb = Superblock::unpack(&d);
            inner.held_root = 0;
            btree::delete_tree::<u64, _>(
                &mut inner.tm,
                &mut SubtreeRefs(&mut inner.data_sm),
                sb.data_mapping_root,
            )?;
            btree::delete_tree::<DeviceDetails, _>(
                &mut inner.tm,
                &mut NoRefs,
                sb.device_details_root,
            )?;
            inner.tm.dec(MetaBlock(held))?;
            Ok(())
        })
    }

    /// The held metadata snapshot's location (None if there is none).
    pub fn metadata_snap(&self) -> Result<Option<MetaBlock>> {
        let h = self.inner()?.held_root;
        Ok((h != 0).then_some(MetaBlock(h)))
    }
}
