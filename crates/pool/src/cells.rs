//! Per-virtual-block locks: the kernel's bio prison.
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
//! The table is sharded (a mutex and a condition variable per shard); a cell
//! exists only while held or waited for.  Waiting writers block new readers,
//! so a stream of reads cannot starve a write.  Ranges are taken in
//! ascending order, so two ranges never deadlock.

use crate::mapcache::{shard_of, FxMap};
use parking_lot::{Condvar, Mutex};
use uthin_thin::{DevId, VirtBlock};

const SHARDS: usize = 64;

type Key = (u64, u64);

#[derive(Default, Debug)]
struct Cell {
    readers: u32,
    writer: bool,
    /// Threads waiting for this cell (keeps the entry alive).
    waiting: u32,
    /// Of which want it exclusive (new readers wait behind them).
    waiting_writers: u32,
}

/// One shard, on cache lines of its own (threads working on different
/// shards do not bounce a shared line).
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    map: Mutex<FxMap<Key, Cell>>,
    cv: Condvar,
}

/// The table of cells.
pub(crate) struct Cells {
    shards: Vec<Shard>,
}

/// A held cell; released on drop.
#[must_use = "a cell is released when the guard is dropped"]
pub(crate) struct CellGuard<'a> {
    cells: &'a Cells,
    key: Key,
    exclusive: bool,
}

impl Cells {
    pub(crate) fn new() -> Self {
        Cells {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    fn shard(&self, key: Key) -> &Shard {
        &self.shards[shard_of(key.0, key.1, SHARDS)]
    }

    /// Takes the cell of `v` shared.
    pub(crate) fn shared(&self, dev: DevId, v: VirtBlock) -> CellGuard<'_> {
        self.acquire((dev.0, v.0), false)
    }

    /// Takes the cell of `v` exclusive.
    pub(crate) fn exclusive(&self, dev: DevId, v: VirtBlock) -> CellGuard<'_> {
        self.acquire((dev.0, v.0), true)
    }

    /// Takes the cells of `[begin, end)` exclusive, in ascending order.
    pub(crate) fn exclusive_range(
        &self,
        dev: DevId,
        begin: VirtBlock,
        end: VirtBlock,
    ) -> Vec<CellGuard<'_>> {
        (begin.0..end.0)
            .map(|v| self.exclusive(dev, VirtBlock(v)))
            .collect()
    }

    fn acquire(&self, key: Key, exclusive: bool) -> CellGuard<'_> {
        let sh = self.shard(key);
        let mut map = sh.map.lock();
        loop {
            let c = map.entry(key).or_default();
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
                break;
            }
            c.waiting += 1;
            c.waiting_writers += exclusive as u32;
            sh.cv.wait(&mut map);
            let c = map.get_mut(&key).expect("a waiter keeps its cell");
            c.waiting -= 1;
            c.waiting_writers -= exclusive as u32;
        }
        CellGuard {
            cells: self,
            key,
            exclusive,
        }
    }

    /// Number of cells held or waited for (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.map.lock().len()).sum()
    }
}

impl Drop for CellGuard<'_> {
    fn drop(&mut self) {
        let sh = self.cells.shard(self.key);
        let mut map = sh.map.lock();
        let Some(c) = map.get_mut(&self.key) else {
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
        } else if c.readers == 0 && !c.writer {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn shared_and_exclusive_exclude_each_other() {
        let cells = Cells::new();
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
        let cells = Cells::new();
        let g = cells.exclusive_range(DevId(2), VirtBlock(5), VirtBlock(9));
        assert_eq!(g.len(), 4);
        assert_eq!(cells.len(), 4);
        drop(g);
        let _a = cells.shared(DevId(2), VirtBlock(5));
        let _b = cells.shared(DevId(2), VirtBlock(5));
        assert_eq!(cells.len(), 1);
    }
}
