//! Dense per-device cells: the locks and cached mappings of a thin device's
//! blocks in arrays indexed by virtual block.
//!
//! The hot path of a read or an overwrite finds its block's entry with a
//! few dependent loads of lines that stay in cache, and takes its lock with
//! one atomic operation: no hashing, no shard lock shared with every other
//! block (the hash table of `crate::cells` costs three cache misses a
//! request where this costs one).
//!
//! Layout: a radix of a top array of [`FANOUT`] slots, mid arrays of
//! [`FANOUT`] slots and leaves of `2^leaf_bits` entries, so it reaches
//! virtual blocks below `FANOUT² · 2^leaf_bits`.  Arrays are allocated on
//! first use and live until the device's last open closes (the table is
//! part of `crate::io::ThinShared`).  Their memory comes out of a budget
//! shared by the pool's devices; each slot is decided once, for the table's
//! life: it holds an array, or, when the budget was spent, nothing for
//! good.  A block with no entry (no budget, or beyond reach) has its cell in
//! the hash table instead, always: every block's cell is in exactly one
//! place (`crate::devcells` routes).
//!
//! An entry is a reader-writer lock (task-fair: a waiting writer holds off
//! new readers, like the hash table's cells) and a mapping word, the cached
//! lookup, valid at one snapshot time of the device (`crate::mapcache`
//! explains the coherence rules, which are the same).

use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use uthin_thin::{DataBlock, Lookup};

/// Slots in the top array and in each mid array.
pub(crate) const FANOUT: usize = 1024;

/// Most blocks a leaf may hold (2^16: 1 MiB of entries).
pub(crate) const MAX_LEAF_BITS: u32 = 16;

/// A slot of the radix: undecided, an array, or nothing for good.
type Slot<T> = OnceLock<Option<Box<[T]>>>;

/// Bytes of table the pool's devices may still allocate.
pub(crate) struct Budget(AtomicUsize);

impl Budget {
    pub(crate) fn new(bytes: usize) -> Arc<Self> {
        Arc::new(Budget(AtomicUsize::new(bytes)))
    }

    /// Takes `n` bytes if there are that many left.
    fn take(&self, n: usize) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(n))
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes left (for tests).
    #[cfg(test)]
    pub(crate) fn left(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One virtual block's cell and cached mapping.
#[derive(Default)]
pub(crate) struct Entry {
    pub(crate) lock: RwLock<()>,
    map: AtomicU64,
}

// The mapping word: 0 when nothing is cached, else VALID, SHARED if the
// block is shared, the snapshot time in bits 30..62 and the data block in
// bits 0..30 (a block number beyond is not cached).
const VALID: u64 = 1 << 63;
const SHARED: u64 = 1 << 62;
const TIME_SHIFT: u32 = 30;
const BLOCK_MASK: u64 = (1 << TIME_SHIFT) - 1;

impl Entry {
    /// The cached lookup, if made at snapshot time `snap_time`.  The caller
    /// holds the cell.
    pub(crate) fn get(&self, snap_time: u32) -> Option<Lookup> {
        let w = self.map.load(Ordering::Acquire);
        (w & VALID != 0 && (w >> TIME_SHIFT) as u32 == snap_time).then_some(Lookup {
            block: DataBlock(w & BLOCK_MASK),
            shared: w & SHARED != 0,
        })
    }

    /// Caches a lookup made at snapshot time `snap_time`.  The caller holds
    /// the cell.
    pub(crate) fn put(&self, l: Lookup, snap_time: u32) {
        let w = if l.block.0 > BLOCK_MASK {
            0
        } else {
            VALID | (l.shared as u64 * SHARED) | (snap_time as u64) << TIME_SHIFT | l.block.0
        };
        self.map.store(w, Ordering::Release);
    }

    /// Forgets the cached lookup.
    pub(crate) fn forget(&self) {
        self.map.store(0, Ordering::Release);
    }
}

/// One device's table.
pub(crate) struct DenseCells {
    top: Box<[Slot<Slot<Entry>>]>,
    leaf_bits: u32,
    budget: Arc<Budget>,
    /// Bytes taken from the budget (given back on drop).
    used: AtomicUsize,
}

impl DenseCells {
    /// A table with leaves of `2^leaf_bits` entries (at most
    /// [`MAX_LEAF_BITS`]), its arrays paid for out of `budget`.
    pub(crate) fn new(leaf_bits: u32, budget: Arc<Budget>) -> Self {
        DenseCells {
            top: slots(),
            leaf_bits: leaf_bits.min(MAX_LEAF_BITS),
            budget,
            used: AtomicUsize::new(0),
        }
    }

    /// The entry of virtual block `v`, allocating the arrays on the way if
    /// the budget allows; `None` if `v` has no entry (its cell is in the hash
    /// table), now and for the table's life.
    pub(crate) fn entry(&self, v: u64) -> Option<&Entry> {
        let (t, m, i) = self.index(v)?;
        let mid = self.top[t]
            .get_or_init(|| self.alloc(FANOUT * size_of::<Slot<Entry>>(), slots))
            .as_deref()?;
        let leaf = mid[m]
            .get_or_init(|| {
                let n = 1usize << self.leaf_bits;
                self.alloc(n * size_of::<Entry>(), || {
                    (0..n).map(|_| Entry::default()).collect()
                })
            })
            .as_deref()?;
        Some(&leaf[i])
    }

    /// The entry of `v` if it has one already (allocates nothing).
    pub(crate) fn find(&self, v: u64) -> Option<&Entry> {
        let (t, m, i) = self.index(v)?;
        let mid = self.top[t].get()?.as_deref()?;
        let leaf = mid[m].get()?.as_deref()?;
        Some(&leaf[i])
    }

    /// Forgets every cached lookup.
    pub(crate) fn clear(&self) {
        let mids = self.top.iter().filter_map(|s| s.get()?.as_deref());
        let leaves = mids.flat_map(|m| m.iter().filter_map(|s| s.get()?.as_deref()));
        leaves.flatten().for_each(Entry::forget);
    }

    /// Top slot, mid slot and leaf index of `v`, if within reach.
    fn index(&self, v: u64) -> Option<(usize, usize, usize)> {
        let leaf = v >> self.leaf_bits;
        let i = (v & ((1 << self.leaf_bits) - 1)) as usize;
        let leaf = usize::try_from(leaf)
            .ok()
            .filter(|&l| l < FANOUT * FANOUT)?;
        Some((leaf / FANOUT, leaf % FANOUT, i))
    }

    /// Builds an array of `bytes` if the budget has them.
    fn alloc<T>(&self, bytes: usize, make: impl FnOnce() -> Box<[T]>) -> Option<Box<[T]>> {
        if !self.budget.take(bytes) {
            return None;
        }
        self.used.fetch_add(bytes, Ordering::Relaxed);
        Some(make())
    }
}

impl Drop for DenseCells {
    fn drop(&mut self) {
        self.budget.give(*self.used.get_mut());
    }
}

/// An array of undecided slots.
fn slots<T>() -> Box<[Slot<T>]> {
    (0..FANOUT).map(|_| OnceLock::new()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Lookup = Lookup {
        block: DataBlock(7),
        shared: true,
    };

    #[test]
    fn mapping_word_round_trips_and_checks_the_time() {
        let e = Entry::default();
        assert_eq!(e.get(0), None);
        e.put(L, u32::MAX);
        assert_eq!(e.get(u32::MAX), Some(L));
        assert_eq!(e.get(u32::MAX - 1), None);
        let big = Lookup {
            block: DataBlock(BLOCK_MASK),
            shared: false,
        };
        e.put(big, 3);
        assert_eq!(e.get(3), Some(big));
        // Beyond what the word holds: not cached.
        e.put(
            Lookup {
                block: DataBlock(BLOCK_MASK + 1),
                shared: false,
            },
            3,
        );
        assert_eq!(e.get(3), None);
        e.put(L, 0);
        e.forget();
        assert_eq!(e.get(0), None);
    }

    #[test]
    fn decisions_hold_and_the_budget_comes_back() {
        let mid = FANOUT * size_of::<Slot<Entry>>();
        let leaf = 4 * size_of::<Entry>();
        // Room for one mid array and two leaves of 4 entries.
        let budget = Budget::new(mid + 2 * leaf);
        let t = DenseCells::new(2, budget.clone());
        assert!(t.find(0).is_none());
        assert!(std::ptr::eq(t.entry(1).unwrap(), t.entry(1).unwrap()));
        assert!(t.entry(5).is_some());
        assert!(!std::ptr::eq(t.entry(1).unwrap(), t.entry(5).unwrap()));
        // The budget is spent: a third leaf has no entries, for good.
        assert!(t.entry(9).is_none());
        budget.give(leaf);
        assert!(t.entry(9).is_none());
        assert!(t.entry(13).is_some(), "a leaf not decided yet");
        // Beyond reach.
        assert!(t.entry((FANOUT * FANOUT * 4) as u64).is_none());
        assert!(t.entry(u64::MAX).is_none());
        t.entry(1).unwrap().put(L, 2);
        assert_eq!(t.find(1).unwrap().get(2), Some(L));
        t.clear();
        assert_eq!(t.find(1).unwrap().get(2), None);
        assert_eq!(budget.left(), 0);
        drop(t);
        assert_eq!(budget.left(), mid + 3 * leaf);
    }
}
