//! `thin_trim`: discard the data blocks of an inactive pool that nothing
//! maps, as thin-provisioning-tools 1.x does, one discard per whole run of
//! free blocks.  On a block device that is `BLKDISCARD`; on a regular file
//! it punches holes (1.x only handles block devices).
//!
//! Safety first.  1.x runs a full `thin_check` and refuses with "metadata
//! contains errors" if it fails; [`verify`] is the check that protects the
//! data: the data space map must load (index, bitmaps, ref-count tree), the
//! mapping and details trees must list the same devices and every mapping
//! tree (the live ones and those of a held metadata snapshot) must read
//! cleanly, and every data block they map must be inside the data device
//! and counted in the data space map.  Then a block is discarded only if
//! its count is 0 *and* no mapping refers to it, so a mapped block is never
//! touched.  Like 1.x, the NEEDS_CHECK flag alone does not stop a trim.

use crate::error::{Error, Result};
use crate::ls::nodes::{load_trees, NodeReader};
use crate::ls::{devices, open_metadata};
use crate::reader::{Reader, SbChoice};
use crate::report::Report;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use uthin_block_io::{BlockDevice, FileDevice};
use uthin_pdata::sm::DataSpaceMap;
use uthin_pdata::MetaBlock;
use uthin_thin::superblock::{Superblock, SUPERBLOCK};

/// What a trim did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrimStats {
    /// Discard requests issued (one per run of free blocks).
    pub discards: u64,
    /// Data blocks discarded.
    pub blocks: u64,
}

/// The data blocks in use, as [`verify`] found them.
pub struct InUse {
    sm: DataSpaceMap,
    mapped: Vec<AtomicU64>,
}

impl InUse {
    /// Number of data blocks.
    pub fn nr_blocks(&self) -> u64 {
        self.sm.counts().nr_blocks()
    }

    /// Whether `b` may be discarded: free in the space map and unmapped.
    pub fn is_free(&self, b: u64) -> bool {
        let mapped = self.mapped[(b / 64) as usize].load(Ordering::Relaxed) & (1 << (b % 64)) != 0;
        !mapped && self.sm.counts().get(b) == 0
    }
}

/// Checks what the trim relies on (see the module docs); an error here is
/// what 1.x reports as "metadata contains errors".
pub fn verify(r: &Reader, report: &Report) -> Result<InUse> {
    let sb = &r.sb;
    let sm = DataSpaceMap::open(&r.tm, &sb.data_sm_root)?;
    let nr_data = sb.data_sm_root.nr_blocks;
    let (roots, _) = devices(r, sb)?;
    let mut root_list: Vec<u64> = roots.values().copied().collect();
    if sb.held_root != 0 {
        let snap = Superblock::unpack(&*r.tm.read(MetaBlock(sb.held_root), &SUPERBLOCK)?);
        let (snap_roots, _) = devices(r, &snap)?;
        root_list.extend(snap_roots.values());
    }
    let mapped: Vec<AtomicU64> = (0..nr_data.div_ceil(64))
        .map(|_| AtomicU64::new(0))
        .collect();
    let nr = NodeReader::new(r);
    report.start("Checking mappings", sb.metadata_sm_root.nr_allocated.max(1));
    let loaded = load_trees(
        &nr,
        &root_list,
        |blk, n| {
            for i in 0..n.nr_entries() {
                let d = u64::from_le_bytes(n.value(i).try_into().expect("8 bytes")) >> 24;
                if d >= nr_data {
                    return Err(Error::msg(format!(
                        "leaf {blk} maps virtual block {} to data block {d}, beyond the data device ({nr_data} blocks)",
                        n.key(i)
                    )));
                }
                mapped[(d / 64) as usize].fetch_or(1 << (d % 64), Ordering::Relaxed);
            }
            Ok(())
        },
        report,
    );
    report.finish();
    loaded?;
    for (w, word) in mapped.iter().enumerate() {
        let mut bits = word.load(Ordering::Relaxed);
        while bits != 0 {
            let b = w as u64 * 64 + bits.trailing_zeros() as u64;
            if sm.counts().get(b) == 0 {
                return Err(Error::msg(format!(
                    "data block {b} is mapped but free in the data space map"
                )));
            }
            bits &= bits - 1;
        }
    }
    Ok(InUse { sm, mapped })
}

/// Discards the free data blocks of the pool whose metadata is at `meta` on
/// the data device or file `data`.  Fails before discarding anything if
/// [`verify`] fails (its error is returned as [`TrimError::Metadata`]).
pub fn trim(
    meta: &Path,
    data: &Path,
    report: &Report,
) -> std::result::Result<TrimStats, TrimError> {
    let r = open_metadata(meta, SbChoice::Live).map_err(TrimError::Metadata)?;
    let in_use = verify(&r, report).map_err(TrimError::Metadata)?;
    let dev = FileDevice::open(data, true).map_err(|e| {
        TrimError::Other(Error::File {
            path: data.display().to_string(),
            source: e,
        })
    })?;
    discard_free(&r.sb, &in_use, &dev, report).map_err(TrimError::Other)
}

/// Why a trim failed.
#[derive(Debug, thiserror::Error)]
pub enum TrimError {
    /// The metadata failed [`verify`]: nothing was discarded.
    #[error("{0}")]
    Metadata(Error),
    /// Anything else (the data device, its size, a discard).
    #[error("{0}")]
    Other(Error),
}

/// Issues one discard per run of free blocks.
pub fn discard_free(
    sb: &Superblock,
    in_use: &InUse,
    dev: &dyn BlockDevice,
    report: &Report,
) -> Result<TrimStats> {
    let bs = sb.data_block_size as u64 * 512;
    let nr = in_use.nr_blocks();
    let expected = nr.saturating_mul(bs);
    let len = dev
        .len()
        .map_err(|e| Error::msg(format!("data device: {e}")))?;
    if expected > len {
        return Err(Error::msg(format!(
            "unexpected data device size, wanted {expected} bytes"
        )));
    }
    let mut stats = TrimStats::default();
    report.start("Discarding free data blocks", nr.max(1));
    let mut b = 0;
    while b < nr {
        if !in_use.is_free(b) {
            b += 1;
            continue;
        }
        let start = b;
        while b < nr && in_use.is_free(b) {
            b += 1;
        }
        dev.discard(start * bs, (b - start) * bs)
            .map_err(|e| Error::msg(format!("discarding data blocks {start}..{b}: {e}")))?;
        stats.discards += 1;
        stats.blocks += b - start;
        report.inc(b - start);
    }
    report.finish();
    Ok(stats)
}
