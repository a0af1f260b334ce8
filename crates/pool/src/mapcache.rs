//! A cache of mapping lookups, so the hot path of reads and overwrites
//! skips the B-tree walk.
//!
//! An entry holds what `find_block` answered (data block, shared flag) and
//! the device's snapshot time when it was filled; it is used only while that
//! time is unchanged (a snapshot makes every older mapping shared).
//!
//! Coherence: an entry is filled under the metadata read lock and changed
//! under the metadata write lock, always with the virtual block's cell held,
//! so it never disagrees with the metadata about a block whose cell the user
//! holds:
//! * insert: [`MapCache::put`] after `insert_block`;
//! * discard: [`MapCache::remove_range`] after `remove_range`;
//! * delete: [`MapCache::remove_dev`]; abort: [`MapCache::clear`].
//!
//! Negative answers (unmapped) are not cached.  Each shard holds a bounded
//! number of entries; when full, an arbitrary entry makes room.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use uthin_thin::{DataBlock, DevId, Lookup, VirtBlock};

const SHARDS: usize = 64;

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

#[derive(Clone, Copy)]
struct Entry {
    block: u64,
    shared: bool,
    snap_time: u32,
}

/// One shard, on cache lines of its own (threads working on different
/// shards do not bounce a shared line).
#[repr(align(128))]
struct Shard(Mutex<FxMap<(u64, u64), Entry>>);

/// The cache.
pub(crate) struct MapCache {
    shards: Vec<Shard>,
    per_shard: usize,
}

impl MapCache {
    /// A cache of about `capacity` entries (0 disables it).
    pub(crate) fn new(capacity: usize) -> Self {
        MapCache {
            shards: (0..SHARDS)
                .map(|_| Shard(Mutex::new(FxMap::default())))
                .collect(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard(&self, dev: DevId, v: VirtBlock) -> &Mutex<FxMap<(u64, u64), Entry>> {
        &self.shards[shard_of(dev.0, v.0, SHARDS)].0
    }

    /// The cached lookup of `v`, if filled at snapshot time `snap_time`.
    pub(crate) fn get(&self, dev: DevId, v: VirtBlock, snap_time: u32) -> Option<Lookup> {
        if self.per_shard == 0 {
            return None;
        }
        let e = *self.shard(dev, v).lock().get(&(dev.0, v.0))?;
        (e.snap_time == snap_time).then_some(Lookup {
            block: DataBlock(e.block),
            shared: e.shared,
        })
    }

    /// Records a lookup made at snapshot time `snap_time`.
    pub(crate) fn put(&self, dev: DevId, v: VirtBlock, l: Lookup, snap_time: u32) {
        if self.per_shard == 0 {
            return;
        }
        let mut m = self.shard(dev, v).lock();
        if m.len() >= self.per_shard && !m.contains_key(&(dev.0, v.0)) {
            if let Some(k) = m.keys().next().copied() {
                m.remove(&k);
            }
        }
        m.insert(
            (dev.0, v.0),
            Entry {
                block: l.block.0,
                shared: l.shared,
                snap_time,
            },
        );
    }

    /// Forgets `[b, e)` of `dev`.
    pub(crate) fn remove_range(&self, dev: DevId, b: VirtBlock, e: VirtBlock) {
        if self.per_shard == 0 {
            return;
        }
        for v in b.0..e.0 {
            self.shard(dev, VirtBlock(v)).lock().remove(&(dev.0, v));
        }
    }

    /// Forgets every entry of `dev`.
    pub(crate) fn remove_dev(&self, dev: DevId) {
        for s in &self.shards {
            s.0.lock().retain(|k, _| k.0 != dev.0);
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        for s in &self.shards {
            s.0.lock().clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_time_invalidates_and_capacity_bounds() {
        let c = MapCache::new(SHARDS * 2);
        let l = Lookup {
            block: DataBlock(7),
            shared: false,
        };
        c.put(DevId(1), VirtBlock(3), l, 4);
        assert_eq!(c.get(DevId(1), VirtBlock(3), 4), Some(l));
        assert_eq!(c.get(DevId(1), VirtBlock(3), 5), None);
        assert_eq!(c.get(DevId(2), VirtBlock(3), 4), None);
        for v in 0..10_000 {
            c.put(DevId(1), VirtBlock(v), l, 4);
        }
        let n: usize = c.shards.iter().map(|s| s.0.lock().len()).sum();
        assert!(n <= SHARDS * 2, "{n}");
        c.remove_dev(DevId(1));
        assert_eq!(c.get(DevId(1), VirtBlock(9999), 4), None);
        let off = MapCache::new(0);
        off.put(DevId(1), VirtBlock(3), l, 4);
        assert_eq!(off.get(DevId(1), VirtBlock(3), 4), None);
    }
}
