//! On-disk pieces shared by both space maps: bitmap blocks and index entries.
//!
//! Bitmap block (FORMAT.md §3.3): `csum(4) not_used(4) blocknr(8)` then 510
//! little-endian u64 words of 2-bit entries.  Index entry (§3.4), 16 bytes:
//! `blocknr(8) nr_free(4) none_free_before(4)`.

use super::counts::{RefCounts, WORDS_PER_BITMAP};
use crate::btree::Value;
use crate::error::{Error, Result};
use crate::tm::{TransactionManager, WriteBlock};
use crate::types::{le32, le64, put32, put64, MetaBlock};
use crate::validator::BITMAP;
use std::sync::Arc;

/// Size of an index entry.
pub const INDEX_ENTRY_SIZE: usize = 16;

/// One bitmap's index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IndexEntry {
    pub blocknr: MetaBlock,
    pub nr_free: u32,
    pub none_free_before: u32,
}

impl Value for IndexEntry {
    const SIZE: usize = INDEX_ENTRY_SIZE;
    fn pack(&self, out: &mut [u8]) {
        put64(out, 0, self.blocknr.0);
        put32(out, 8, self.nr_free);
        put32(out, 12, self.none_free_before);
    }
    fn unpack(b: &[u8]) -> Self {
        IndexEntry {
            blocknr: MetaBlock(le64(b, 0)),
            nr_free: le32(b, 8),
            none_free_before: le32(b, 12),
        }
    }
}

/// Reads the words of the bitmap at `loc` and appends them to `out`.
pub fn read_bitmap(tm: &TransactionManager, loc: MetaBlock, out: &mut Vec<u64>) -> Result<()> {
    let d = tm.read(loc, &BITMAP)?;
    out.extend((0..WORDS_PER_BITMAP).map(|i| le64(&d[..], 16 + 8 * i)));
    Ok(())
}

/// Writes bitmap `bm` of `counts` at `loc` (already allocated in this
/// transaction) and returns its index entry.
pub fn write_bitmap(
    tm: &mut TransactionManager,
    counts: &RefCounts,
    bm: u64,
    loc: MetaBlock,
) -> Result<IndexEntry> {
    let words = counts.bitmap_words(bm).to_vec();
    let stats = counts.bitmap_stats(bm);
    write_bitmap_words(tm, &words, stats, loc)
}

/// Writes a bitmap block holding `words` at `loc`; `stats` are its
/// (nr_free, none_free_before).
pub fn write_bitmap_words(
    tm: &mut TransactionManager,
    words: &[u64],
    stats: (u32, u32),
    loc: MetaBlock,
) -> Result<IndexEntry> {
    let mut data = Arc::new([0u8; uthin_block_io::BLOCK_SIZE]);
    {
        let d = Arc::make_mut(&mut data);
        for (i, w) in words.iter().enumerate().take(WORDS_PER_BITMAP) {
            put64(&mut d[..], 16 + 8 * i, *w);
        }
    }
    tm.put(WriteBlock { loc, data }, &BITMAP)?;
    Ok(IndexEntry {
        blocknr: loc,
        nr_free: stats.0,
        none_free_before: stats.1,
    })
}

/// Checks a loaded index entry refers to a plausible block.
pub fn check_entry(e: &IndexEntry, bm: u64, owner: MetaBlock) -> Result<()> {
    if e.blocknr.0 == 0 {
        return Err(Error::corrupt(
            "space map index",
            owner,
            format!("bitmap {bm} has no block"),
        ));
    }
    Ok(())
}
