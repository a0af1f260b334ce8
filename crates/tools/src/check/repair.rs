//! The checker's only writes: leak repair (`--auto-repair`) and clearing
//! NEEDS_CHECK.  Like thin_check 1.x, leaks are repaired in place: the
//! bitmap entries that hold a count of 1 for an unreferenced block are
//! zeroed and the bitmaps re-sealed.  uthin also refreshes what describes
//! those bitmaps, so the kernel's free-space accounting stays exact: the
//! index entries' `nr_free` / `none_free_before` and the superblock's
//! `nr_allocated`.  The superblock is written last, after a flush, and only
//! its changed fields are touched.

use super::counts::Expected;
use super::io::Disk;
use super::space_maps::{bitmap_stats, clear_leaks, Diff, SmOnDisk};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use uthin_pdata::checksum::{self, BlockKind};
use uthin_pdata::types::{le32, put32, put64};

/// Offsets of the two space-map roots' `nr_allocated` in the superblock.
const DATA_NR_ALLOCATED: usize = 64 + 8;
const META_NR_ALLOCATED: usize = 192 + 8;

/// Index entry updates: block -> [(slot, (nr_free, none_free_before))].
type EntryUpdates = BTreeMap<u64, Vec<(usize, (u32, u32))>>;

/// Zeroes the leaked entries of `sm`'s bitmaps and refreshes their index
/// entries; returns the number of entries cleared.  The caller flushes.
pub fn repair_leaks(
    disk: &Disk,
    sm: &SmOnDisk,
    diff: &Diff,
    expected: &dyn Expected,
) -> Result<u64> {
    let mut fixed = 0;
    let mut entries = EntryUpdates::new();
    for &i in &diff.leaky_bitmaps {
        let bm = sm.bitmaps[i];
        let mut d = disk
            .read_new(bm.loc)
            .map_err(|e| Error::msg(format!("cannot re-read bitmap block {}: {e}", bm.loc)))?;
        fixed += clear_leaks(&mut d[..], i, sm.nr_blocks, expected);
        let stats = bitmap_stats(&d[..]);
        checksum::seal(BlockKind::Bitmap, &mut d);
        disk.write(bm.loc, &d)?;
        entries
            .entry(bm.entry_at.0)
            .or_default()
            .push((bm.entry_at.1, stats));
    }
    for (blk, slots) in entries {
        let mut d = disk
            .read_new(blk)
            .map_err(|e| Error::msg(format!("cannot re-read index block {blk}: {e}")))?;
        let (kind, base) = if sm.kind == "metadata" {
            (BlockKind::Index, 16)
        } else {
            (BlockKind::Node, 32 + 8 * le32(&d[..], 20) as usize)
        };
        for (slot, (nr_free, nfb)) in slots {
            let o = base + 16 * slot;
            put32(&mut d[..], o + 8, nr_free);
            put32(&mut d[..], o + 12, nfb);
        }
        checksum::seal(kind, &mut d);
        disk.write(blk, &d)?;
    }
    Ok(fixed)
}

/// New values for the superblock.
#[derive(Default)]
pub struct SbUpdate {
    pub clear_needs_check: bool,
    pub data_nr_allocated: Option<u64>,
    pub meta_nr_allocated: Option<u64>,
}

/// Rewrites block 0 with `u` applied, if that changes anything; returns
/// whether NEEDS_CHECK was cleared.  Flushes before and after.
pub fn update_superblock(disk: &Disk, u: &SbUpdate) -> Result<bool> {
    let mut d = disk
        .read_new(0)
        .map_err(|e| Error::msg(format!("cannot re-read the superblock: {e}")))?;
    let old = d.clone();
    let flags = le32(&d[..], 4);
    let cleared = u.clear_needs_check && flags & 1 != 0;
    if cleared {
        put32(&mut d[..], 4, flags & !1);
    }
    if let Some(n) = u.data_nr_allocated {
        put64(&mut d[..], DATA_NR_ALLOCATED, n);
    }
    if let Some(n) = u.meta_nr_allocated {
        put64(&mut d[..], META_NR_ALLOCATED, n);
    }
    if d == old {
        return Ok(false);
    }
    checksum::seal(BlockKind::Superblock, &mut d);
    disk.flush()?;
    disk.write(0, &d)?;
    disk.flush()?;
    Ok(cleared)
}
