//! A cache of mapping lookups, so the hot path of reads and overwrites
//! skips the B-tree walk.
//!
//! An entry holds what `find_block` answered (data block, shared flag) and
//! the device's snapshot time when it was filled; it is used only while that
//! time is unchanged (a snapshot makes every older mapping shared).
//!
//! These entries live in the slots of the hash table of cells
//! (`crate::cells`), so a request takes its cell and finds its mapping
//! under one lock; they serve the blocks a device's dense table
//! (`crate::dense`, same rules) has no entry for.
//!
//! Coherence: an entry is filled under the metadata read lock and changed
//! under the metadata write lock, always with the virtual block's cell held,
//! so it never disagrees with the metadata about a block whose cell the user
//! holds:
//! * insert: [`Cells::put`] after `insert_block`;
//! * discard: [`Cells::remove_range`] after `remove_range`;
//! * delete: [`Cells::remove_dev`]; abort: [`Cells::clear`].
//!
//! Negative answers (unmapped) are not cached.  Each shard holds a bounded
//! number of entries; when full, an arbitrary entry makes room.

use crate::cells::{Cells, Key, ShardMap};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use uthin_thin::{DataBlock, DevId, Lookup, VirtBlock};

/// A small, fast hasher for integer keys (the Fx multiply-rotate).
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// `HashMap` with [`FxHasher`].
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The shard of `(dev, v)` among `n` (a mix unlike the map's own hash).
pub(crate) fn shard_of(dev: u64, v: u64, n: usize) -> usize {
    let h = (v ^ dev.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 40) as usize % n
}

/// A cached lookup and the snapshot time it was made at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cached {
    block: u64,
    shared: bool,
    snap_time: u32,
}

impl Cached {
    /// The lookup, if it was made at snapshot time `snap_time`.
    pub(crate) fn lookup(self, snap_time: u32) -> Option<Lookup> {
        (self.snap_time == snap_time).then_some(Lookup {
            block: DataBlock(self.block),
            shared: self.shared,
        })
    }
}

impl Cells {
    /// The cached lookup of `v`, if made at snapshot time `snap_time`.
    pub(crate) fn get(&self, dev: DevId, v: VirtBlock, snap_time: u32) -> Option<Lookup> {
        let key = (dev.0, v.0);
        let map = self.shard(key).map.lock();
        map.slots.get(&key)?.cached?.lookup(snap_time)
    }

    /// Records a lookup made at snapshot time `snap_time`.
    pub(crate) fn put(&self, dev: DevId, v: VirtBlock, l: Lookup, snap_time: u32) {
        if self.per_shard == 0 {
            return;
        }
        let key = (dev.0, v.0);
        let mut map = self.shard(key).map.lock();
        let fresh = map.slots.get(&key).is_none_or(|s| s.cached.is_none());
        if fresh && map.cached >= self.per_shard {
            evict_one(&mut map);
        }
        let c = Cached {
            block: l.block.0,
            shared: l.shared,
            snap_time,
        };
        map.slots.entry(key).or_default().cached = Some(c);
        map.cached += fresh as usize;
    }

    /// Forgets `[b, e)` of `dev`.
    pub(crate) fn remove_range(&self, dev: DevId, b: VirtBlock, e: VirtBlock) {
        for v in b.0..e.0 {
            let key = (dev.0, v);
            let mut map = self.shard(key).map.lock();
            if let Some(s) = map.slots.get_mut(&key) {
                let had = s.cached.take().is_some();
                if s.idle() {
                    map.slots.remove(&key);
                }
                map.cached -= had as usize;
            }
        }
    }

    /// Forgets every entry of `dev`.
    pub(crate) fn remove_dev(&self, dev: DevId) {
        self.forget(|k| k.0 == dev.0);
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        self.forget(|_| true);
    }

    fn forget(&self, which: impl Fn(&Key) -> bool) {
        for sh in &self.shards {
            let mut map = sh.map.lock();
            let mut dropped = 0;
            map.slots.retain(|k, s| {
                if which(k) && s.cached.take().is_some() {
                    dropped += 1;
                }
                !s.idle() || s.cached.is_some()
            });
            map.cached -= dropped;
        }
    }
}

/// Makes room for one more cached mapping in a full shard: forgets an
/// arbitrary one (and its slot, unless its cell is in use).
fn evict_one(map: &mut ShardMap) {
    let victim = map
        .slots
        .iter_mut()
        .find(|(_, s)| s.cached.is_some())
        .map(|(k, s)| {
            s.cached = None;
            (*k, s.idle())
        });
    if let Some((k, idle)) = victim {
        map.cached -= 1;
        if idle {
            map.slots.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cells::SHARDS;

    const L: Lookup = Lookup {
        block: DataBlock(7),
        shared: false,
    };

    #[test]
    fn snapshot_time_invalidates_and_capacity_bounds() {
        let c = Cells::new(SHARDS * 2);
        c.put(DevId(1), VirtBlock(3), L, 4);
        assert_eq!(c.get(DevId(1), VirtBlock(3), 4), Some(L));
        assert_eq!(c.get(DevId(1), VirtBlock(3), 5), None);
        assert_eq!(c.get(DevId(2), VirtBlock(3), 4), None);
        for v in 0..10_000 {
            c.put(DevId(1), VirtBlock(v), L, 4);
        }
        let n: usize = c.shards.iter().map(|s| s.map.lock().cached).sum();
        assert!(n <= SHARDS * 2, "{n}");
        assert_eq!(c.len(), n);
        c.remove_dev(DevId(1));
        assert_eq!(c.get(DevId(1), VirtBlock(9999), 4), None);
        assert_eq!(c.len(), 0);
        let off = Cells::new(0);
        off.put(DevId(1), VirtBlock(3), L, 4);
        assert_eq!(off.get(DevId(1), VirtBlock(3), 4), None);
    }

    #[test]
    fn entries_live_beside_cells() {
        let c = Cells::new(1024);
        // A held cell keeps its slot when the cache forgets the block...
        let g = c.exclusive(DevId(1), VirtBlock(5));
        c.put(DevId(1), VirtBlock(5), L, 0);
        c.clear();
        assert_eq!(c.len(), 1);
        drop(g);
        assert_eq!(c.len(), 0);
        // ...and a cached mapping outlives its cell, found with it.
        c.put(DevId(1), VirtBlock(6), L, 2);
        let (g, l) = c.shared_cached(DevId(1), VirtBlock(6), || 2);
        assert_eq!(l, Some(L));
        drop(g);
        let (_g, l) = c.shared_cached(DevId(1), VirtBlock(6), || 3);
        assert_eq!(l, None);
        c.remove_range(DevId(1), VirtBlock(0), VirtBlock(10));
        assert_eq!(c.get(DevId(1), VirtBlock(6), 2), None);
        assert_eq!(c.len(), 1);
        let n: usize = c.shards.iter().map(|s| s.map.lock().cached).sum();
        assert_eq!(n, 0);
    }
}
