//! One device's cells and cached mappings, wherever they live: in the
//! device's dense table (`crate::dense`) when it has an entry for the block,
//! else in the pool's hash table (`crate::cells`, `crate::mapcache`).
//!
//! The dense table decides once, for its life, whether a block has an entry,
//! so every request for a block finds its cell in the same place.  Ranges
//! are still taken in ascending virtual block order whichever table each
//! block is in, so the locking order of `crate::cells` holds across both.

use crate::cells::{Cells, HashedGuard};
use crate::dense::{DenseCells, Entry};
use parking_lot::{RwLockReadGuard, RwLockWriteGuard};
use uthin_thin::{DevId, Lookup, VirtBlock};

/// The cells of one device.
#[derive(Clone, Copy)]
pub(crate) struct DevCells<'a> {
    pub(crate) hashed: &'a Cells,
    pub(crate) dense: &'a DenseCells,
    pub(crate) dev: DevId,
}

/// A held cell; released on drop.
#[must_use = "a cell is released when the guard is dropped"]
#[allow(dead_code)] // the guards are held only to be dropped
pub(crate) enum CellGuard<'a> {
    Hashed(HashedGuard<'a>),
    Shared(RwLockReadGuard<'a, ()>),
    Exclusive(RwLockWriteGuard<'a, ()>),
}

impl<'a> DevCells<'a> {
    /// Takes the cell of `v` shared.
    pub(crate) fn shared(self, v: VirtBlock) -> CellGuard<'a> {
        match self.dense.entry(v.0) {
            Some(e) => CellGuard::Shared(e.lock.read()),
            None => CellGuard::Hashed(self.hashed.shared(self.dev, v)),
        }
    }

    /// Takes the cell of `v` shared and returns its cached mapping, if one
    /// was cached at the snapshot time `snap_time()` reads once the cell is
    /// held.
    pub(crate) fn shared_cached(
        self,
        v: VirtBlock,
        snap_time: impl FnOnce() -> u32,
    ) -> (CellGuard<'a>, Option<Lookup>) {
        match self.dense.entry(v.0) {
            Some(e) => {
                let g = e.lock.read();
                (CellGuard::Shared(g), e.get(snap_time()))
            }
            None => {
                let (g, l) = self.hashed.shared_cached(self.dev, v, snap_time);
                (CellGuard::Hashed(g), l)
            }
        }
    }

    /// Takes the cell of `v` exclusive.
    pub(crate) fn exclusive(self, v: VirtBlock) -> CellGuard<'a> {
        match self.dense.entry(v.0) {
            Some(e) => CellGuard::Exclusive(e.lock.write()),
            None => CellGuard::Hashed(self.hashed.exclusive(self.dev, v)),
        }
    }

    /// Takes the cells of `[begin, end)` exclusive, in ascending order.
    pub(crate) fn exclusive_range(self, begin: VirtBlock, end: VirtBlock) -> Vec<CellGuard<'a>> {
        (begin.0..end.0)
            .map(|v| self.exclusive(VirtBlock(v)))
            .collect()
    }

    /// The cached lookup of `v`, if made at snapshot time `snap_time`.  The
    /// caller holds the cell.
    pub(crate) fn get(self, v: VirtBlock, snap_time: u32) -> Option<Lookup> {
        match self.held(v) {
            Some(e) => e.get(snap_time),
            None => self.hashed.get(self.dev, v, snap_time),
        }
    }

    /// Caches a lookup made at snapshot time `snap_time`.  The caller holds
    /// the cell.
    pub(crate) fn put(self, v: VirtBlock, l: Lookup, snap_time: u32) {
        match self.held(v) {
            Some(e) => e.put(l, snap_time),
            None => self.hashed.put(self.dev, v, l, snap_time),
        }
    }

    /// Forgets the cached lookups of `[b, e)`.  The caller holds the cells.
    pub(crate) fn remove_range(self, b: VirtBlock, e: VirtBlock) {
        for v in b.0..e.0 {
            match self.held(VirtBlock(v)) {
                Some(en) => en.forget(),
                None => self
                    .hashed
                    .remove_range(self.dev, VirtBlock(v), VirtBlock(v + 1)),
            }
        }
    }

    /// The dense entry of `v`, whose cell the caller holds (so the table
    /// has decided whether it has one).
    fn held(self, v: VirtBlock) -> Option<&'a Entry> {
        self.dense.find(v.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense::{Budget, FANOUT};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn blocks_in_either_table_exclude_and_cache() {
        // Leaves of 2 blocks and room for two of them: blocks 0..4 are
        // dense, the rest hashed.
        let hashed = Cells::new(1024);
        let slot = size_of::<std::sync::OnceLock<Option<Box<[Entry]>>>>();
        let dense = DenseCells::new(1, Budget::new(FANOUT * slot + 4 * size_of::<Entry>()));
        let c = DevCells {
            hashed: &hashed,
            dense: &dense,
            dev: DevId(1),
        };
        let l = Lookup {
            block: uthin_thin::DataBlock(9),
            shared: false,
        };
        for v in 0..8 {
            let vb = VirtBlock(v);
            let g = c.exclusive(vb);
            assert_eq!(matches!(g, CellGuard::Hashed(_)), v >= 4, "block {v}");
            c.put(vb, l, 5);
            assert_eq!(c.get(vb, 5), Some(l));
            drop(g);
            let (_g, got) = c.shared_cached(vb, || 5);
            assert_eq!(got, Some(l));
        }
        let g = c.exclusive_range(VirtBlock(2), VirtBlock(6));
        c.remove_range(VirtBlock(2), VirtBlock(6));
        drop(g);
        for v in 0..8 {
            let (_g, got) = c.shared_cached(VirtBlock(v), || 5);
            assert_eq!(got.is_some(), !(2..6).contains(&v), "block {v}");
        }

        // Shared and exclusive exclude each other in both tables.
        for v in [1, 6] {
            let readers = AtomicU32::new(0);
            let writers = AtomicU32::new(0);
            std::thread::scope(|s| {
                for t in 0..4u64 {
                    let (readers, writers) = (&readers, &writers);
                    s.spawn(move || {
                        for i in 0..2000u64 {
                            if (i + t) % 4 == 0 {
                                let _g = c.exclusive(VirtBlock(v));
                                assert_eq!(writers.fetch_add(1, Ordering::SeqCst), 0);
                                assert_eq!(readers.load(Ordering::SeqCst), 0);
                                writers.fetch_sub(1, Ordering::SeqCst);
                            } else {
                                let _g = c.shared(VirtBlock(v));
                                readers.fetch_add(1, Ordering::SeqCst);
                                assert_eq!(writers.load(Ordering::SeqCst), 0);
                                readers.fetch_sub(1, Ordering::SeqCst);
                            }
                        }
                    });
                }
            });
        }
    }
}
