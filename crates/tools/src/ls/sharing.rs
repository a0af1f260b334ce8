//! Exclusive and shared mappings of every thin device, computed from the
//! mapping trees alone (the space maps are not trusted nor needed), with the
//! definition of thin-provisioning-tools 1.x:
//!
//! * a node's reference count is the number of references to it from the
//!   device roots and from internal nodes of the trees walked;
//! * a data block's count is the number of entries referring to it over
//!   *distinct* leaves (a leaf shared by two devices counts once);
//! * a mapping is shared if a node on its path (root included) has more
//!   than one reference, or if its data block's count is above one.
//!
//! Walk: every distinct node is read once, in parallel, level by level
//! ([`super::nodes::load_trees`]); reading a leaf bumps its data blocks'
//! counts in two atomic bitsets ("seen once", "seen twice"), 2 bits per data
//! block.  Leaves referenced once whose entries may have shared data blocks
//! are read a second time to count them, only if some data block was seen
//! twice at all.  Subtree sums are memoised per node.

use super::nodes::{load_trees, reference_counts, Loaded, NodeReader};
use crate::error::{Error, Result};
use crate::report::Report;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use uthin_pdata::btree::node::Node;

/// One device's usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Mappings in the device's tree.
    pub mapped: u64,
    /// Mappings that are shared with another device.
    pub shared: u64,
    /// Highest mapped virtual block (None when nothing is mapped).
    pub highest: Option<u64>,
}

/// A set of data blocks with a saturating count of 0, 1 or "2 or more",
/// updated lock-free.
struct DataCounts {
    once: Vec<AtomicU64>,
    twice: Vec<AtomicU64>,
    nr_blocks: u64,
}

impl DataCounts {
    fn new(nr_blocks: u64) -> Self {
        let words = nr_blocks.div_ceil(64) as usize;
        DataCounts {
            once: (0..words).map(|_| AtomicU64::new(0)).collect(),
            twice: (0..words).map(|_| AtomicU64::new(0)).collect(),
            nr_blocks,
        }
    }

    /// Counts one more reference.  Blocks beyond the data device are not
    /// counted (as 1.x does).
    fn inc(&self, b: u64) {
        if b >= self.nr_blocks {
            return;
        }
        let (w, bit) = ((b / 64) as usize, 1u64 << (b % 64));
        if self.once[w].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            self.twice[w].fetch_or(bit, Ordering::Relaxed);
        }
    }

    fn is_shared(&self, b: u64) -> bool {
        b < self.nr_blocks
            && self.twice[(b / 64) as usize].load(Ordering::Relaxed) & (1u64 << (b % 64)) != 0
    }

    fn any_shared(&self) -> bool {
        self.twice.iter().any(|w| w.load(Ordering::Relaxed) != 0)
    }
}

/// What a leaf contributes.
#[derive(Clone, Copy, Debug, Default)]
struct Sum {
    mapped: u64,
    shared: u64,
    low: u64,
    high: u64,
}

impl Sum {
    fn append(&mut self, c: &Sum, at: u64) -> Result<()> {
        if c.mapped == 0 {
            return Ok(());
        }
        if self.mapped > 0 && c.low <= self.high {
            return Err(Error::msg(format!(
                "mapping tree node {at} has children with overlapping keys"
            )));
        }
        if self.mapped == 0 {
            self.low = c.low;
        }
        self.high = c.high;
        self.mapped += c.mapped;
        self.shared += c.shared;
        Ok(())
    }
}

fn data_block(v: &[u8]) -> u64 {
    u64::from_le_bytes(v.try_into().expect("8-byte value")) >> 24
}

/// Usage of each device root in `roots` (in that order).  `nr_data_blocks`
/// sizes the data block counts.
pub fn usage(
    nr: &NodeReader,
    roots: &[u64],
    nr_data_blocks: u64,
    report: &Report,
) -> Result<Vec<Usage>> {
    let counts = DataCounts::new(nr_data_blocks);
    let map = load_trees(
        nr,
        roots,
        |_, n: &Node<'_>| {
            let nr_entries = n.nr_entries();
            for i in 0..nr_entries {
                counts.inc(data_block(n.value(i)));
            }
            Ok(Sum {
                mapped: nr_entries as u64,
                shared: 0,
                low: if nr_entries > 0 { n.key(0) } else { 0 },
                high: if nr_entries > 0 {
                    n.key(nr_entries - 1)
                } else {
                    0
                },
            })
        },
        report,
    )?;
    let refs = reference_counts(&map, roots);
    let is_shared_node = |b: u64| refs.get(&b).copied().unwrap_or(0) > 1;

    // Leaves referenced once: count entries whose data block is shared.
    let mut leaf_sums: HashMap<u64, Sum> = HashMap::with_capacity(map.len());
    let mut exclusive = Vec::new();
    for (&b, l) in &map {
        if let Loaded::Leaf(s) = l {
            let mut s = *s;
            if is_shared_node(b) {
                s.shared = s.mapped;
            } else if s.mapped > 0 {
                exclusive.push(b);
            }
            leaf_sums.insert(b, s);
        }
    }
    if counts.any_shared() {
        exclusive.sort_unstable();
        let shared: Vec<(u64, u64)> = exclusive
            .par_iter()
            .map(|&b| {
                let d = nr.read(b)?;
                let n = Node::new(&d);
                let c = (0..n.nr_entries())
                    .filter(|&i| counts.is_shared(data_block(n.value(i))))
                    .count();
                Ok((b, c as u64))
            })
            .collect::<Result<_>>()?;
        report.inc(shared.len() as u64);
        for (b, c) in shared {
            if let Some(s) = leaf_sums.get_mut(&b) {
                s.shared = c;
            }
        }
    }

    let mut memo: HashMap<u64, Sum> = leaf_sums;
    roots
        .iter()
        .map(|&r| {
            let s = subtree(&map, &is_shared_node, &mut memo, r, 0)?;
            Ok(Usage {
                mapped: s.mapped,
                shared: s.shared,
                highest: (s.mapped > 0).then_some(s.high),
            })
        })
        .collect()
}

/// The sum of the subtree at `b`, memoised.
fn subtree<T>(
    map: &HashMap<u64, Loaded<T>>,
    is_shared_node: &dyn Fn(u64) -> bool,
    memo: &mut HashMap<u64, Sum>,
    b: u64,
    depth: usize,
) -> Result<Sum> {
    if let Some(s) = memo.get(&b) {
        return Ok(*s);
    }
    if depth >= uthin_pdata::btree::MAX_DEPTH {
        return Err(Error::msg(format!(
            "mapping tree deeper than {} levels (a cycle?) at block {b}",
            uthin_pdata::btree::MAX_DEPTH
        )));
    }
    let Some(Loaded::Internal(children)) = map.get(&b) else {
        return Err(Error::msg(format!("mapping tree node {b} was not loaded")));
    };
    let mut s = Sum::default();
    for &c in children {
        let cs = subtree(map, is_shared_node, memo, c, depth + 1)?;
        s.append(&cs, b)?;
    }
    if is_shared_node(b) {
        s.shared = s.mapped;
    }
    memo.insert(b, s);
    Ok(s)
}
