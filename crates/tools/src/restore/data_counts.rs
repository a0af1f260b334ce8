//! Data block reference counts during a restore: 2-bit entries packed as
//! the on-disk bitmaps hold them (FORMAT.md §3.3; 16 320 entries per bitmap
//! = 510 whole words, so block `b` is entry `b % 32` of word `b / 32`), plus
//! the true count of every block at 3 or more.  Ranges of fresh blocks
//! (what runs of mappings mostly are) are counted a word at a time.
//! 40 million data blocks take 10 MB.

use crate::error::{Error, Result};
use std::collections::HashMap;
use uthin_pdata::sm::counts::{nr_bitmaps, RefCounts, WORDS_PER_BITMAP};

/// Count 1 in all 32 entries of a word (each pair's low bit is the high
/// bit of the pair, FORMAT.md §3.3).
const ALL_ONES: u64 = 0xAAAA_AAAA_AAAA_AAAA;

#[inline]
fn decode(raw: u64) -> u32 {
    (((raw & 1) << 1) | (raw >> 1)) as u32
}

#[inline]
fn encode(c: u32) -> u64 {
    let c = c.min(3) as u64;
    ((c & 1) << 1) | (c >> 1)
}

/// Reference counts of the data blocks.
pub struct DataCounts {
    nr_blocks: u64,
    words: Vec<u64>,
    overflow: HashMap<u64, u32>,
}

impl DataCounts {
    /// All-zero counts for `nr_blocks` data blocks.
    pub fn new(nr_blocks: u64) -> Self {
        let words = nr_bitmaps(nr_blocks) as usize * WORDS_PER_BITMAP;
        DataCounts {
            nr_blocks,
            words: vec![0; words],
            overflow: HashMap::new(),
        }
    }

    /// Number of data blocks.
    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// The count of `b`.
    pub fn get(&self, b: u64) -> u32 {
        let raw = (self.words[(b / 32) as usize] >> (2 * (b % 32))) & 3;
        match decode(raw) {
            3 => self.overflow.get(&b).copied().unwrap_or(3),
            c => c,
        }
    }

    #[inline]
    fn set(&mut self, b: u64, c: u32) {
        let (wi, p) = ((b / 32) as usize, 2 * (b % 32));
        let old = (self.words[wi] >> p) & 3;
        self.words[wi] = (self.words[wi] & !(3 << p)) | (encode(c) << p);
        if c >= 3 {
            self.overflow.insert(b, c);
        } else if old == 3 {
            self.overflow.remove(&b);
        }
    }

    fn check(&self, b: u64, len: u64) -> Result<()> {
        if b.checked_add(len).is_none_or(|e| e > self.nr_blocks) {
            return Err(Error::msg(format!(
                "data block {} is beyond the end of the data device ({} blocks)",
                b.saturating_add(len).saturating_sub(1),
                self.nr_blocks
            )));
        }
        Ok(())
    }

    /// Adds one reference to each of `len` blocks from `b`.
    pub fn inc_range(&mut self, mut b: u64, mut len: u64) -> Result<()> {
        self.check(b, len)?;
        while len > 0 && !b.is_multiple_of(32) {
            self.inc_one(b)?;
            b += 1;
            len -= 1;
        }
        while len >= 32 {
            let wi = (b / 32) as usize;
            if self.words[wi] == 0 {
                self.words[wi] = ALL_ONES;
            } else {
                for x in b..b + 32 {
                    self.inc_one(x)?;
                }
            }
            b += 32;
            len -= 32;
        }
        for x in b..b + len {
            self.inc_one(x)?;
        }
        Ok(())
    }

    #[inline]
    fn inc_one(&mut self, b: u64) -> Result<()> {
        let c = self.get(b);
        let n = c
            .checked_add(1)
            .ok_or_else(|| Error::msg(format!("data block {b} has too many references")))?;
        self.set(b, n);
        Ok(())
    }

    /// Adds one reference to `b`.
    pub fn inc(&mut self, b: u64) -> Result<()> {
        self.check(b, 1)?;
        self.inc_one(b)
    }

    /// Drops one reference to `b`.
    pub fn dec(&mut self, b: u64) -> Result<()> {
        self.check(b, 1)?;
        match self.get(b) {
            0 => Err(Error::msg(format!(
                "internal error: data block {b} released more often than referenced"
            ))),
            c => {
                self.set(b, c - 1);
                Ok(())
            }
        }
    }

    /// The counts as the data space map takes them, every bitmap and every
    /// count of 3 or more marked for writing.
    pub fn into_refcounts(self) -> Result<RefCounts> {
        let nbm = nr_bitmaps(self.nr_blocks);
        // Load the bitmaps (entries of 3 read as 3 without an overflow
        // entry), then set the large counts through `set`, which marks them
        // for the ref-count tree: going through 2 makes even a count of
        // exactly 3 a change.
        let mut rc = RefCounts::from_disk(self.nr_blocks, self.words, HashMap::new())
            .map_err(|e| Error::msg(format!("internal error building data counts: {e}")))?;
        for bm in 0..nbm {
            rc.mark_bitmap_dirty(bm);
        }
        let mut big: Vec<(u64, u32)> = self.overflow.into_iter().collect();
        big.sort_unstable();
        for (b, c) in big {
            rc.set(b, 2);
            rc.set(b, c);
        }
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_refcounts() {
        let mut d = DataCounts::new(40_000);
        let mut model = vec![0u32; 40_000];
        let ops: &[(u64, u64)] = &[
            (0, 100),
            (5, 64),
            (30, 3),
            (31, 1),
            (32, 32),
            (20_000, 500),
            (20_100, 10),
            (20_100, 1),
        ];
        for &(b, l) in ops {
            d.inc_range(b, l).unwrap();
            for x in b..b + l {
                model[x as usize] += 1;
            }
        }
        d.dec(5).unwrap();
        model[5] -= 1;
        for (b, &c) in model.iter().enumerate() {
            assert_eq!(d.get(b as u64), c, "block {b}");
        }
        assert!(d.inc_range(39_990, 11).is_err());
        let rc = d.into_refcounts().unwrap();
        for (b, &c) in model.iter().enumerate() {
            assert_eq!(rc.get(b as u64), c, "block {b}");
        }
        let mut rc = rc;
        let dirty = rc.take_dirty_overflow();
        let want: Vec<(u64, Option<u32>)> = model
            .iter()
            .enumerate()
            .filter(|(_, &c)| c >= 3)
            .map(|(b, &c)| (b as u64, Some(c)))
            .collect();
        assert_eq!(dirty, want);
        assert_eq!(rc.dirty_bitmaps().len(), 3);
    }
}
