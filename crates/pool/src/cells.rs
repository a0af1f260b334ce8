//! Per-virtual-block locks (the kernel's bio prison), each slot also
//! caching its block's mapping: the hash table, for blocks the device's
//! dense table (`crate::dense`) has no entry for (`crate::devcells`
//! routes).
//!
//! A cell is keyed by `(thin device, virtual block)` and held either shared
//! (reads, and overwrites of mapped unshared blocks) or exclusive
//! (provisioning, breaking sharing, discards).  The holder keeps the cell
//! across the data-device I/O, so:
//!
//! * two requests that change the same virtual block are ordered;
//! * a mapping is removed (the only way a data block's count reaches zero)
//!   only once the reads and writes that went through it have drained, so a
//!   data block is never reused under an in-flight request.
//!
//! The table is sharded (a mutex and a condition variable per shard).  A
//! slot exists while its cell is held or waited for, or while it caches a
//! mapping (`crate::mapcache`); so the hot path, a read or an overwrite of a
//! cached block, takes its cell and finds its mapping with one lock and one
//! hash lookup, and releases it with one more.  Waiting writers block new
//! readers, so a stream of reads cannot starve a write.  Ranges are taken
//! in ascending order, so two ranges never deadlock.

use crate::mapcache::{shard_of, Cached, FxMap};
use parking_lot::{Condvar, Mutex};
use uthin_thin::{DevId, Lookup, VirtBlock};

pub(crate) const SHARDS: usize = 64;

pub(crate) type Key = (u64, u64);

/// One virtual block's cell and cached mapping.
#[derive(Default, Debug)]
pub(crate) struct Slot {
    readers: u32,
    writer: bool,
    /// Threads waiting for this cell.
    waiting: u32,
    /// Of which want it exclusive (new readers wait behind them).
    waiting_writers: u32,
    /// The cached mapping, if any.
    pub(crate) cached: Option<Cached>,
}

impl Slot {
    /// Nobody holds or waits for the cell.
    pub(crate) fn idle(&self) -> bool {
        self.readers == 0 && !self.writer && self.waiting == 0
    }
}

/// A shard's slots, and how many of them cache a mapping.
#[derive(Default)]
pub(crate) struct ShardMap {
    pub(crate) slots: FxMap<Key, Slot>,
    pub(crate) cached: usize,
}

/// One shard, on cache lines of its own (threads working on different
/// shards do not bounce a shared line).
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Shard {
    pub(crate) map: Mutex<ShardMap>,
    cv: Condvar,
}

/// The table of cells.
pub(crate) struct Cells {
    pub(crate) shards: Vec<Shard>,
    /// Cached mappings a shard may hold (0: no caching).
    pub(crate) per_shard: usize,
}

/// A held cell; released on drop.
#[must_use = "a cell is released when the guard is dropped"]
pub(crate) struct HashedGuard<'a> {
    cells: &'a Cells,
    key: Key,
    exclusive: bool,
}

impl Cells {
    /// A table caching about `cache_entries` mappings (0: none).
    pub(crate) fn new(cache_entries: usize) -> Self {
        Cells {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            per_shard: cache_entries.div_ceil(SHARDS),
        }
    }

    pub(crate) fn shard(&self, key: Key) -> &Shard {
        &self.shards[shard_of(key.0, key.1, SHARDS)]
    }

    /// Takes the cell of `v` shared.
    pub(crate) fn shared(&self, dev: DevId, v: VirtBlock) -> HashedGuard<'_> {
        self.acquire((dev.0, v.0), false, |_| ()).0
    }

    /// Takes the cell of `v` shared and returns its cached mapping, if one
    /// was cached at the snapshot time `snap_time()` reads once the cell is
    /// held.
    pub(crate) fn shared_cached(
        &self,
        dev: DevId,
        v: VirtBlock,
        snap_time: impl FnOnce() -> u32,
    ) -> (HashedGuard<'_>, Option<Lookup>) {
        self.acquire((dev.0, v.0), false, |slot| {
            let st = snap_time();
            slot.cached.and_then(|c| c.lookup(st))
        })
    }

    /// Takes the cell of `v` exclusive.
    pub(crate) fn exclusive(&self, dev: DevId, v: VirtBlock) -> HashedGuard<'_> {
        self.acquire((dev.0, v.0), true, |_| ()).0
    }

    /// Takes the cell of `key`, then runs `then` on its slot (under the
    /// shard lock).
    fn acquire<T>(
        &self,
        key: Key,
        exclusive: bool,
        then: impl FnOnce(&Slot) -> T,
    ) -> (HashedGuard<'_>, T) {
        let sh = self.shard(key);
        let mut map = sh.map.lock();
        loop {
            let c = map.slots.entry(key).or_default();
            let free = if exclusive {
                !c.writer && c.readers == 0
            } else {
                !c.writer && c.waiting_writers == 0
            };
            if free {
                if exclusive {
                    c.writer = true;
                } else {
                    c.readers += 1;
                }
                let t = then(c);
                let guard = HashedGuard {
                    cells: self,
                    key,
                    exclusive,
                };
                return (guard, t);
            }
            c.waiting += 1;
            c.waiting_writers += exclusive as u32;
            sh.cv.wait(&mut map);
            let c = map.slots.get_mut(&key).expect("a waiter keeps its slot");
            c.waiting -= 1;
            c.waiting_writers -= exclusive as u32;
        }
    }

    /// Number of slots (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.map.lock().slots.len()).sum()
    }
}

impl Drop for HashedGuard<'_> {
    fn drop(&mut self) {
        let sh = self.cells.shard(self.key);
        let mut map = sh.map.lock();
        let Some(c) = map.slots.get_mut(&self.key) else {
            debug_assert!(false, "held cell missing");
            return;
        };
        if self.exclusive {
            c.writer = false;
        } else {
            c.readers -= 1;
        }
        if c.waiting > 0 {
            sh.cv.notify_all();
        } else if c.idle() && c.cached.is_none() {
            map.slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn shared_and_exclusive_exclude_each_other() {
        let cells = Cells::new(0);
        let readers = AtomicU32::new(0);
        let writers = AtomicU32::new(0);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (cells, readers, writers) = (&cells, &readers, &writers);
                s.spawn(move || {
                    for i in 0..3000u64 {
                        if (i + t) % 4 == 0 {
                            let _g = cells.exclusive(DevId(1), VirtBlock(3));
                            assert_eq!(writers.fetch_add(1, Ordering::SeqCst), 0);
                            assert_eq!(readers.load(Ordering::SeqCst), 0);
                            std::hint::spin_loop();
                            writers.fetch_sub(1, Ordering::SeqCst);
                        } else {
                            let _g = cells.shared(DevId(1), VirtBlock(3));
                            readers.fetch_add(1, Ordering::SeqCst);
                            assert_eq!(writers.load(Ordering::SeqCst), 0);
                            readers.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(cells.len(), 0);
    }

    #[test]
    fn range_then_single() {
        let cells = Cells::new(0);
        let g: Vec<_> = (5..9)
            .map(|v| cells.exclusive(DevId(2), VirtBlock(v)))
            .collect();
        assert_eq!(g.len(), 4);
        assert_eq!(cells.len(), 4);
        drop(g);
        let _a = cells.shared(DevId(2), VirtBlock(5));
        let _b = cells.shared(DevId(2), VirtBlock(5));
        assert_eq!(cells.len(), 1);
    }
}
