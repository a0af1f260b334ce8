//! Read-only questions about a thin volume that an NBD server or a volume
//! manager asks: which byte ranges are provisioned (NBD `base:allocation`),
//! and how many blocks a device maps.
//!
//! Answers come from the current (uncommitted) metadata under its read lock;
//! they may be stale by the time the caller uses them, as on any live device.

use crate::error::Result;
use crate::io::Thin;
use crate::pool::meta_err;
use uthin_thin::VirtBlock;

/// Virtual blocks walked per call of [`Thin::allocation`] (the caller asks
/// again for the rest).
const WINDOW: u64 = 16384;

/// A run of bytes that is either provisioned or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Length in bytes.
    pub len: u64,
    /// Mapped to a data block (or backed by the external origin).
    pub mapped: bool,
}

impl Thin {
    /// The allocation status of `[offset, offset + len)` as consecutive runs
    /// from `offset`, describing at least one byte and at most a window of
    /// [`WINDOW`] blocks (callers ask again for the rest).  Ranges the
    /// external origin covers count as mapped: they read as its data.
    pub fn allocation(&self, offset: u64, len: u64) -> Result<Vec<Allocation>> {
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let pool = &*self.pool;
        pool.check_io()?;
        let bb = pool.block_bytes;
        let first = offset / bb;
        let end = (offset + len).div_ceil(bb).min(first + WINDOW);
        let mut mapped_blocks = Vec::new();
        pool.md
            .read()
            .for_each_mapping(
                self.dev_id(),
                VirtBlock(first),
                VirtBlock(end),
                &mut |v, _| mapped_blocks.push(v.0),
            )
            .map_err(meta_err("for_each_mapping"))?;
        let stop = (end * bb).min(offset + len);
        let mut runs: Vec<Allocation> = Vec::new();
        let mut push = |from: u64, to: u64, mapped: bool| {
            if from >= to {
                return;
            }
            match runs.last_mut() {
                Some(r) if r.mapped == mapped => r.len += to - from,
                _ => runs.push(Allocation {
                    len: to - from,
                    mapped,
                }),
            }
        };
        let mut pos = offset;
        for v in mapped_blocks {
            let (b, e) = ((v * bb).max(offset), ((v + 1) * bb).min(stop));
            self.push_unmapped(&mut push, pos, b);
            push(b, e, true);
            pos = e;
        }
        self.push_unmapped(&mut push, pos, stop);
        Ok(runs)
    }

    /// Reports `[from, to)` of unmapped blocks: a hole, except where the
    /// external origin covers it.
    fn push_unmapped(&self, push: &mut impl FnMut(u64, u64, bool), from: u64, to: u64) {
        if self.origin.is_some() {
            let o = self.origin_len.clamp(from, to);
            push(from, o, true);
            push(o, to, false);
        } else {
            push(from, to, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Pool, PoolConfig};
    use std::sync::Arc;
    use uthin_block_io::testing::MemDevice;
    use uthin_block_io::SharedDevice;
    use uthin_thin::DevId;

    #[test]
    fn allocation_runs() {
        let meta: SharedDevice = Arc::new(MemDevice::new(4 << 20));
        let data: SharedDevice = Arc::new(MemDevice::new(64 << 20));
        let pool = Pool::open(meta, data, PoolConfig::default()).unwrap();
        pool.create_thin(DevId(1)).unwrap();
        let t = pool.thin(DevId(1), None).unwrap();
        let bb = 65536u64;
        t.write(bb + 10, b"x", false).unwrap();
        t.write(2 * bb, b"y", false).unwrap();
        t.write(5 * bb, b"z", false).unwrap();
        let r = t.allocation(100, 8 * bb).unwrap();
        let got: Vec<(u64, bool)> = r.iter().map(|a| (a.len, a.mapped)).collect();
        assert_eq!(
            got,
            vec![
                (bb - 100, false),
                (2 * bb, true),
                (2 * bb, false),
                (bb, true),
                (2 * bb + 100, false)
            ]
        );
        assert_eq!(got.iter().map(|g| g.0).sum::<u64>(), 8 * bb);
        // Inside one mapped block.
        let r = t.allocation(bb + 5, 7).unwrap();
        assert_eq!(
            r,
            vec![super::Allocation {
                len: 7,
                mapped: true
            }]
        );
    }
}
