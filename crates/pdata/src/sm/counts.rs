//! In-memory reference counts of a space map during a transaction.
//!
//! Counts are held as the on-disk bitmaps hold them: 2-bit entries in the
//! kernel's bit order (FORMAT.md §3.3), 510 words per bitmap block, plus an
//! overflow map with the true count of every block whose entry is 3.  Both the
//! current state and the last committed state are kept (the committed words
//! only for bitmaps changed since the commit, copied on first change), because a block may be
//! allocated only if it is free in both (§3.8): a block freed in this
//! transaction is never reused before the commit.
//!
//! Dirty tracking tells the commit which bitmap blocks and ref-count tree
//! entries changed.

use std::collections::{BTreeSet, HashMap};

/// Entries per bitmap block.
pub const ENTRIES_PER_BITMAP: u64 = 16320;
/// 64-bit words per bitmap block.
pub const WORDS_PER_BITMAP: usize = 510;
const LOW_PAIRS: u64 = 0x5555_5555_5555_5555;

/// Decodes the 2-bit entry at pair position `p` (even) of a word.
#[inline]
fn get2(word: u64, p: u32) -> u32 {
    let hi = (word >> p) & 1;
    let lo = (word >> (p + 1)) & 1;
    ((hi << 1) | lo) as u32
}

#[inline]
fn set2(word: u64, p: u32, v: u32) -> u64 {
    let hi = ((v >> 1) & 1) as u64;
    let lo = (v & 1) as u64;
    (word & !(3u64 << p)) | (hi << p) | (lo << (p + 1))
}

/// Reference counts with a committed shadow.
#[derive(Clone, Debug)]
pub struct RefCounts {
    nr_blocks: u64,
    words: Vec<u64>,
    /// Committed words of the bitmaps changed since the last commit; every
    /// other bitmap's committed words are its current ones.
    committed: HashMap<u64, Box<[u64]>>,
    overflow: HashMap<u64, u32>,
    nr_allocated: u64,
    /// Blocks whose count is non-zero now or at the last commit.
    nr_unavailable: u64,
    dirty_bitmaps: BTreeSet<u64>,
    dirty_overflow: BTreeSet<u64>,
    hint: u64,
}

/// Where block `b` lives: (word index, pair position).
#[inline]
fn locate(b: u64) -> (usize, u32) {
    let bm = b / ENTRIES_PER_BITMAP;
    let e = b % ENTRIES_PER_BITMAP;
    (
        bm as usize * WORDS_PER_BITMAP + (e / 32) as usize,
        2 * (e % 32) as u32,
    )
}

/// Number of bitmaps needed for `nr_blocks`.
pub fn nr_bitmaps(nr_blocks: u64) -> u64 {
    nr_blocks.div_ceil(ENTRIES_PER_BITMAP)
}

impl RefCounts {
    /// All-free counts for `nr_blocks` blocks; every bitmap is dirty.
    pub fn new(nr_blocks: u64) -> Self {
        let mut rc = RefCounts {
            nr_blocks: 0,
            words: Vec::new(),
            committed: HashMap::new(),
            overflow: HashMap::new(),
            nr_allocated: 0,
            nr_unavailable: 0,
            dirty_bitmaps: BTreeSet::new(),
            dirty_overflow: BTreeSet::new(),
            hint: 0,
        };
        rc.grow(nr_blocks);
        rc
    }

    /// Counts loaded from disk: `bitmaps[i]` holds the 510 words of bitmap i
    /// and `overflow` the ref-count tree.  Returns an error text if they disagree.
    pub fn from_disk(
        nr_blocks: u64,
        words: Vec<u64>,
        overflow: HashMap<u64, u32>,
    ) -> Result<Self, String> {
        let nbm = nr_bitmaps(nr_blocks) as usize;
        if words.len() != nbm * WORDS_PER_BITMAP {
            return Err(format!("{} bitmap words for {nbm} bitmaps", words.len()));
        }
        let mut rc = RefCounts {
            nr_blocks,
            committed: HashMap::new(),
            words,
            overflow,
            nr_allocated: 0,
            nr_unavailable: 0,
            dirty_bitmaps: BTreeSet::new(),
            dirty_overflow: BTreeSet::new(),
            hint: 0,
        };
        // Entries beyond nr_blocks must read as free.
        let mut allocated = 0u64;
        for (wi, w) in rc.words.iter().enumerate() {
            allocated += ((w | (w >> 1)) & LOW_PAIRS).count_ones() as u64;
            let _ = wi;
        }
        let tail_start = nr_blocks;
        let tail_end = nbm as u64 * ENTRIES_PER_BITMAP;
        for b in tail_start..tail_end {
            let (wi, p) = locate(b);
            if get2(rc.words[wi], p) != 0 {
                return Err(format!(
                    "entry for block {b} beyond the end ({nr_blocks}) is set"
                ));
            }
        }
        for (&b, &c) in &rc.overflow {
            if b >= nr_blocks {
                return Err(format!("ref-count tree holds block {b} beyond the end"));
            }
            let (wi, p) = locate(b);
            if get2(rc.words[wi], p) != 3 || c < 3 {
                return Err(format!(
                    "ref-count tree holds {c} for block {b} whose bitmap entry is {}",
                    get2(rc.words[wi], p)
                ));
            }
        }
        rc.nr_allocated = allocated;
        rc.nr_unavailable = allocated;
        Ok(rc)
    }

    /// Number of blocks tracked.
    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// Blocks with a non-zero count now.
    pub fn nr_allocated(&self) -> u64 {
        self.nr_allocated
    }

    /// Blocks that could be allocated now (free now and at the last commit).
    pub fn nr_allocatable(&self) -> u64 {
        self.nr_blocks - self.nr_unavailable
    }

    /// Blocks free now (frees of this transaction included).
    pub fn nr_free(&self) -> u64 {
        self.nr_blocks - self.nr_allocated
    }

    /// Grows to `nr_blocks` (never shrinks); new bitmaps are dirty.
    pub fn grow(&mut self, nr_blocks: u64) {
        if nr_blocks <= self.nr_blocks {
            return;
        }
        let old_bm = nr_bitmaps(self.nr_blocks);
        let new_bm = nr_bitmaps(nr_blocks);
        self.words.resize(new_bm as usize * WORDS_PER_BITMAP, 0);
        for bm in old_bm..new_bm {
            self.dirty_bitmaps.insert(bm);
        }
        // A partial last bitmap gains entries: it must be rewritten too.
        if old_bm > 0 && !self.nr_blocks.is_multiple_of(ENTRIES_PER_BITMAP) {
            self.dirty_bitmaps.insert(old_bm - 1);
        }
        self.nr_blocks = nr_blocks;
    }

    /// The count of `b` (0 for blocks beyond the end).
    pub fn get(&self, b: u64) -> u32 {
        if b >= self.nr_blocks {
            return 0;
        }
        let (wi, p) = locate(b);
        match get2(self.words[wi], p) {
            3 => *self.overflow.get(&b).unwrap_or(&3),
            v => v,
        }
    }

    /// The count of `b` at the last commit, as far as the bitmap tells (0, 1,
    /// 2 or 3 for "3 or more").
    pub fn get_committed_small(&self, b: u64) -> u32 {
        if b >= self.nr_blocks {
            return 0;
        }
        let (wi, p) = locate(b);
        get2(self.committed_word(wi), p)
    }

    /// Sets the count of `b`.  Panics never; out-of-range is the caller's
    /// error and is reported by returning false.
    pub fn set(&mut self, b: u64, count: u32) -> bool {
        if b >= self.nr_blocks {
            return false;
        }
        let (wi, p) = locate(b);
        let old_small = get2(self.words[wi], p);
        let old = if old_small == 3 {
            *self.overflow.get(&b).unwrap_or(&3)
        } else {
            old_small
        };
        if old == count {
            return true;
        }
        let small = count.min(3);
        let committed_free = get2(self.committed_word(wi), p) == 0;
        if small != old_small {
            let bm = b / ENTRIES_PER_BITMAP;
            if !self.committed.contains_key(&bm) {
                let s = bm as usize * WORDS_PER_BITMAP;
                self.committed
                    .insert(bm, self.words[s..s + WORDS_PER_BITMAP].into());
            }
            self.words[wi] = set2(self.words[wi], p, small);
            self.dirty_bitmaps.insert(b / ENTRIES_PER_BITMAP);
        }
        if count >= 3 {
            self.overflow.insert(b, count);
            self.dirty_overflow.insert(b);
        } else if old_small == 3 {
            self.overflow.remove(&b);
            self.dirty_overflow.insert(b);
        }
        match (old == 0, count == 0) {
            (true, false) => {
                self.nr_allocated += 1;
                if committed_free {
                    self.nr_unavailable += 1;
                }
            }
            (false, true) => {
                self.nr_allocated -= 1;
                if committed_free {
                    self.nr_unavailable -= 1;
                }
            }
            _ => {}
        }
        true
    }

    /// Adds `delta` to the count of `b`; returns the new count, or None if the
    /// block is out of range or the count would go below zero.
    pub fn adjust(&mut self, b: u64, delta: i64) -> Option<u32> {
        if b >= self.nr_blocks {
            return None;
        }
        let new = self.get(b) as i64 + delta;
        if new < 0 || new > u32::MAX as i64 {
            return None;
        }
        self.set(b, new as u32);
        Some(new as u32)
    }

    /// Finds a block free now and at the last commit, from the allocation hint
    /// with wrap-around, sets its count to 1 and returns it.
    pub fn alloc(&mut self) -> Option<u64> {
        let b = self
            .find_free(self.hint, self.nr_blocks)
            .or_else(|| self.find_free(0, self.hint))?;
        self.set(b, 1);
        self.hint = b + 1;
        Some(b)
    }

    /// Like [`RefCounts::alloc`] but only within `[begin, end)`.
    pub fn alloc_in(&mut self, begin: u64, end: u64) -> Option<u64> {
        let b = self.find_free(begin, end.min(self.nr_blocks))?;
        self.set(b, 1);
        Some(b)
    }

    fn find_free(&self, begin: u64, end: u64) -> Option<u64> {
        let mut b = begin;
        while b < end {
            let (wi, p) = locate(b);
            let x = self.words[wi] | self.committed_word(wi);
            let used = (x | (x >> 1)) & LOW_PAIRS;
            let free = !used & LOW_PAIRS & (!0u64 << p);
            let word_base = b - (p / 2) as u64;
            if free != 0 {
                let cand = word_base + (free.trailing_zeros() / 2) as u64;
                // Words of a bitmap hold 32 entries each; no word straddles bitmaps.
                if cand < end {
                    return Some(cand);
                }
                return None;
            }
            b = word_base + 32;
        }
        None
    }

    /// The committed value of word `wi`.
    #[inline]
    fn committed_word(&self, wi: usize) -> u64 {
        let bm = (wi / WORDS_PER_BITMAP) as u64;
        match self.committed.get(&bm) {
            Some(c) => c[wi % WORDS_PER_BITMAP],
            None => self.words[wi],
        }
    }

    /// Marks the end of a transaction: the current state becomes committed.
    pub fn commit(&mut self) {
        self.committed.clear();
        self.dirty_bitmaps.clear();
        self.dirty_overflow.clear();
        self.nr_unavailable = self.nr_allocated;
    }

    /// Dirty bitmap numbers.
    pub fn dirty_bitmaps(&self) -> &BTreeSet<u64> {
        &self.dirty_bitmaps
    }

    /// Marks a bitmap dirty (e.g. because its block moved).
    pub fn mark_bitmap_dirty(&mut self, bm: u64) {
        self.dirty_bitmaps.insert(bm);
    }

    /// Takes the set of blocks whose overflow entry changed (to be inserted
    /// into or removed from the ref-count tree).
    pub fn take_dirty_overflow(&mut self) -> Vec<(u64, Option<u32>)> {
        let keys = std::mem::take(&mut self.dirty_overflow);
        keys.into_iter()
            .map(|b| (b, self.overflow.get(&b).copied()))
            .collect()
    }

    /// The 510 words of bitmap `bm`.
    pub fn bitmap_words(&self, bm: u64) -> &[u64] {
        let s = bm as usize * WORDS_PER_BITMAP;
        &self.words[s..s + WORDS_PER_BITMAP]
    }

    /// (nr_free, none_free_before) of bitmap `bm`, as the index entry wants
    /// them: every zero entry counts as free, as the kernel counts.
    pub fn bitmap_stats(&self, bm: u64) -> (u32, u32) {
        let words = self.bitmap_words(bm);
        let mut used = 0u32;
        let mut first_free = None;
        for (i, w) in words.iter().enumerate() {
            let u = (w | (w >> 1)) & LOW_PAIRS;
            used += u.count_ones();
            if first_free.is_none() && u != LOW_PAIRS {
                first_free = Some(i as u32 * 32 + ((!u & LOW_PAIRS).trailing_zeros() / 2));
            }
        }
        (
            ENTRIES_PER_BITMAP as u32 - used,
            first_free.unwrap_or(ENTRIES_PER_BITMAP as u32),
        )
    }

    /// Iterates over blocks with non-zero counts as (block, count).
    pub fn iter_nonzero(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.words.iter().enumerate().flat_map(move |(wi, &w)| {
            let bm = (wi / WORDS_PER_BITMAP) as u64;
            let base = bm * ENTRIES_PER_BITMAP + (wi % WORDS_PER_BITMAP) as u64 * 32;
            let mut u = (w | (w >> 1)) & LOW_PAIRS;
            std::iter::from_fn(move || {
                if u == 0 {
                    return None;
                }
                let p = u.trailing_zeros();
                u &= u - 1;
                let b = base + (p / 2) as u64;
                Some((b, self.get(b)))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_order_matches_format_md() {
        let mut rc = RefCounts::new(100);
        for b in [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11] {
            rc.set(b, 1);
        }
        assert_eq!(rc.bitmap_words(0)[0], 0x0000_0000_00A2_AAAA);
        let mut rc = RefCounts::new(100);
        for b in 0..=10 {
            rc.set(b, 1);
        }
        rc.set(1, 2);
        assert_eq!(rc.bitmap_words(0)[0], 0x0000_0000_002A_AAA6);
        let mut rc = RefCounts::new(100);
        for b in 8..=10 {
            rc.set(b, 3);
        }
        assert_eq!(rc.bitmap_words(0)[0], 0x0000_0000_003F_0000);
    }

    #[test]
    fn no_reuse_before_commit() {
        let mut rc = RefCounts::new(64);
        let a = rc.alloc().unwrap();
        rc.commit();
        rc.set(a, 0);
        for _ in 0..63 {
            assert_ne!(rc.alloc(), Some(a));
        }
        assert_eq!(rc.alloc(), None);
        rc.commit();
        assert_eq!(rc.alloc(), Some(a));
    }

    #[test]
    fn overflow_and_counts() {
        let mut rc = RefCounts::new(40000);
        rc.set(20000, 7);
        assert_eq!(rc.get(20000), 7);
        assert_eq!(rc.take_dirty_overflow(), vec![(20000, Some(7))]);
        rc.adjust(20000, -5);
        assert_eq!(rc.get(20000), 2);
        assert_eq!(rc.take_dirty_overflow(), vec![(20000, None)]);
        assert_eq!(rc.nr_allocated(), 1);
        assert_eq!(rc.iter_nonzero().collect::<Vec<_>>(), vec![(20000, 2)]);
    }
}
