//! Expected reference counts, filled while the trees are walked (possibly by
//! many threads at once).
//!
//! * [`MetaCounts`]: one `u32` per metadata block (at most 4 161 600 blocks
//!   are addressable, so 16 MiB at most) and a one-byte tag saying what the
//!   block was first reached as.  The tag decides which walker reads the
//!   block's contents: a block is counted once per reference but read once
//!   (FORMAT.md §9), and a block reached as two different things (a mapping
//!   leaf and a details node, or a mapping node at two depths) is reported.
//! * [`DataCounts`]: one saturating byte per data block plus an overflow map
//!   for the rare blocks with 255 references or more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;

/// What a metadata block was reached as.
pub mod tag {
    pub const SUPERBLOCK: u8 = 1;
    pub const DETAILS: u8 = 2;
    pub const TOP: u8 = 3;
    pub const DATA_INDEX: u8 = 4;
    pub const DATA_REF: u8 = 5;
    pub const META_REF: u8 = 6;
    pub const META_INDEX: u8 = 7;
    pub const DATA_BITMAP: u8 = 8;
    pub const META_BITMAP: u8 = 9;
    /// A bottom-level mapping node at height `h` has tag `BOTTOM + h`.
    pub const BOTTOM: u8 = 16;

    /// A description for messages.
    pub fn name(t: u8) -> String {
        match t {
            SUPERBLOCK => "a superblock".into(),
            DETAILS => "a device details tree node".into(),
            TOP => "a top-level mapping tree node".into(),
            DATA_INDEX => "a data space map index node".into(),
            DATA_REF => "a data ref-count tree node".into(),
            META_REF => "a metadata ref-count tree node".into(),
            META_INDEX => "the metadata space map index".into(),
            DATA_BITMAP => "a data space map bitmap".into(),
            META_BITMAP => "a metadata space map bitmap".into(),
            0 => "nothing".into(),
            t if t >= BOTTOM => format!("a mapping tree node at height {}", t - BOTTOM),
            t => format!("unknown ({t})"),
        }
    }
}

/// The outcome of counting one reference to a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    /// First reference: the caller reads the block's contents.
    First,
    /// Reached before as the same thing: counted, contents already read.
    Again,
    /// Reached before as something else (the tag it has).
    Conflict(u8),
    /// Beyond the end of the metadata device: not counted.
    OutOfRange,
}

/// Expected metadata reference counts.
pub struct MetaCounts {
    counts: Vec<AtomicU32>,
    tags: Vec<AtomicU8>,
}

impl MetaCounts {
    /// Counts for a device of `nr_blocks` blocks.
    pub fn new(nr_blocks: u64) -> Self {
        let n = nr_blocks as usize;
        MetaCounts {
            counts: (0..n).map(|_| AtomicU32::new(0)).collect(),
            tags: (0..n).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    /// Number of blocks tracked.
    pub fn nr_blocks(&self) -> u64 {
        self.counts.len() as u64
    }

    /// Counts one reference to `b`, reached as `t`.
    pub fn reference(&self, b: u64, t: u8) -> Visit {
        let Some(c) = self.counts.get(b as usize) else {
            return Visit::OutOfRange;
        };
        c.fetch_add(1, Relaxed);
        match self.tags[b as usize].compare_exchange(0, t, Relaxed, Relaxed) {
            Ok(_) => Visit::First,
            Err(old) if old == t => Visit::Again,
            Err(old) => Visit::Conflict(old),
        }
    }

    /// The expected count of `b`.
    pub fn get(&self, b: u64) -> u32 {
        self.counts.get(b as usize).map_or(0, |c| c.load(Relaxed))
    }

    /// What `b` was first reached as (0: not reached).
    pub fn tag(&self, b: u64) -> u8 {
        self.tags.get(b as usize).map_or(0, |t| t.load(Relaxed))
    }
}

/// Expected data reference counts.
pub struct DataCounts {
    small: Vec<AtomicU8>,
    overflow: Mutex<HashMap<u64, u32>>,
}

impl DataCounts {
    /// Counts for `nr_blocks` data blocks.
    pub fn new(nr_blocks: u64) -> Self {
        DataCounts {
            small: (0..nr_blocks as usize).map(|_| AtomicU8::new(0)).collect(),
            overflow: Mutex::new(HashMap::new()),
        }
    }

    /// Number of data blocks tracked.
    pub fn nr_blocks(&self) -> u64 {
        self.small.len() as u64
    }

    /// Counts one reference to data block `b`; false if it is out of range.
    #[inline]
    pub fn inc(&self, b: u64) -> bool {
        let Some(c) = self.small.get(b as usize) else {
            return false;
        };
        let mut cur = c.load(Relaxed);
        loop {
            if cur == u8::MAX {
                let mut m = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
                *m.entry(b).or_insert(0) += 1;
                return true;
            }
            match c.compare_exchange_weak(cur, cur + 1, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(x) => cur = x,
            }
        }
    }

    /// The expected count of `b`.
    #[inline]
    pub fn get(&self, b: u64) -> u32 {
        match self.small.get(b as usize).map_or(0, |c| c.load(Relaxed)) {
            u8::MAX => {
                let m = self.overflow.lock().unwrap_or_else(|e| e.into_inner());
                255 + m.get(&b).copied().unwrap_or(0)
            }
            v => v as u32,
        }
    }
}

/// Anything that gives the expected count of a block.
pub trait Expected: Sync {
    fn expected(&self, b: u64) -> u32;

    /// The expected counts of `first..first + out.len()`.
    fn fill(&self, first: u64, out: &mut [u32]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.expected(first + i as u64);
        }
    }
}

impl Expected for MetaCounts {
    fn expected(&self, b: u64) -> u32 {
        self.get(b)
    }
}

impl Expected for DataCounts {
    fn expected(&self, b: u64) -> u32 {
        self.get(b)
    }

    fn fill(&self, first: u64, out: &mut [u32]) {
        let f = first as usize;
        match self.small.get(f..f + out.len()) {
            Some(src) => {
                for (i, (o, c)) in out.iter_mut().zip(src).enumerate() {
                    *o = match c.load(Relaxed) {
                        u8::MAX => self.get(first + i as u64),
                        v => v as u32,
                    };
                }
            }
            None => out
                .iter_mut()
                .enumerate()
                .for_each(|(i, o)| *o = self.get(first + i as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_visits() {
        let m = MetaCounts::new(4);
        assert_eq!(m.reference(1, tag::TOP), Visit::First);
        assert_eq!(m.reference(1, tag::TOP), Visit::Again);
        assert_eq!(m.reference(1, tag::DETAILS), Visit::Conflict(tag::TOP));
        assert_eq!(m.reference(9, tag::TOP), Visit::OutOfRange);
        assert_eq!(m.get(1), 3);
        assert_eq!(m.tag(1), tag::TOP);
    }

    #[test]
    fn data_saturates_into_overflow() {
        let d = DataCounts::new(3);
        for _ in 0..1000 {
            assert!(d.inc(2));
        }
        assert!(d.inc(0));
        assert!(!d.inc(3));
        assert_eq!(d.get(2), 1000);
        assert_eq!(d.get(0), 1);
        assert_eq!(d.get(1), 0);
        let mut out = [0u32; 3];
        d.fill(0, &mut out);
        assert_eq!(out, [1, 0, 1000]);
    }
}
