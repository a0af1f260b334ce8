//! Fast, read-only loading of thin mapping trees, shared by `thin_ls`,
//! `thin_delta`, `thin_rmap` and `thin_trim`.
//!
//! Nodes are read straight from the metadata device with positional reads,
//! many at once on the rayon pool, and validated here (checksum, block
//! number, header, leaf value size 8, keys strictly ascending) as the block
//! manager would; the block manager's cache lock is not taken on this path.
//!
//! [`load_trees`] reads every node reachable from a set of roots exactly
//! once, level by level (a node shared by several trees or reached twice is
//! read once), and keeps internal nodes as child lists and leaves as
//! whatever the caller's leaf function makes of them.  The result is a map
//! from block to loaded node; [`leaves_in_order`] lists one tree's leaves in
//! key order from it, and [`reference_counts`] counts how many times each
//! node is referenced by the loaded trees.

use crate::error::{Error, Result};
use crate::reader::Reader;
use crate::report::Report;
use rayon::prelude::*;
use std::collections::HashMap;
use uthin_block_io::{SharedDevice, BLOCK_SIZE};
use uthin_pdata::btree::node::Node;
use uthin_pdata::btree::MAX_DEPTH;
use uthin_pdata::types::BlockData;
use uthin_pdata::validator::{Validator, NODE};
use uthin_pdata::MetaBlock;

/// Reads and validates mapping-tree nodes.
#[derive(Clone)]
pub struct NodeReader {
    dev: SharedDevice,
    nr_blocks: u64,
}

impl NodeReader {
    /// A reader over the metadata device of `r`.
    pub fn new(r: &Reader) -> Self {
        NodeReader {
            dev: r.tm.bm().device().clone(),
            nr_blocks: r.nr_blocks,
        }
    }

    /// Reads node `blk` of a tree whose leaves hold 8-byte values.
    pub fn read(&self, blk: u64) -> Result<Box<BlockData>> {
        let loc = MetaBlock(blk);
        if blk >= self.nr_blocks {
            return Err(uthin_pdata::Error::corrupt(
                "block reference",
                loc,
                format!(
                    "beyond the end of the metadata device ({} blocks)",
                    self.nr_blocks
                ),
            )
            .into());
        }
        let mut buf = Box::new([0u8; BLOCK_SIZE]);
        self.dev
            .read_at(&mut buf[..], loc.byte_offset())
            .map_err(|e| uthin_pdata::Error::Io {
                blk: loc,
                source: e,
            })?;
        NODE.check(loc, &buf)?;
        let n = Node::new(&buf);
        n.check(loc, 8)?;
        for i in 1..n.nr_entries() {
            if n.key(i) <= n.key(i - 1) {
                return Err(uthin_pdata::Error::corrupt(
                    "btree node",
                    loc,
                    format!("key {} out of order", n.key(i)),
                )
                .into());
            }
        }
        Ok(buf)
    }
}

/// A loaded node.
#[derive(Debug)]
pub enum Loaded<T> {
    /// An internal node's children, in key order.
    Internal(Vec<u64>),
    /// What the leaf function made of a leaf.
    Leaf(T),
}

/// Reads every node reachable from `roots` once.  `leaf(block, node)` turns a
/// leaf into `T`; it runs in parallel, once per distinct leaf.
pub fn load_trees<T, F>(
    nr: &NodeReader,
    roots: &[u64],
    leaf: F,
    report: &Report,
) -> Result<HashMap<u64, Loaded<T>>>
where
    T: Send,
    F: Fn(u64, &Node<'_>) -> Result<T> + Sync,
{
    let mut map: HashMap<u64, Loaded<T>> = HashMap::new();
    let mut level: Vec<u64> = roots.to_vec();
    level.sort_unstable();
    level.dedup();
    for _ in 0..MAX_DEPTH {
        if level.is_empty() {
            return Ok(map);
        }
        let read: Vec<(u64, Loaded<T>)> = level
            .par_iter()
            .map(|&b| {
                let d = nr.read(b)?;
                let n = Node::new(&d);
                let l = if n.is_leaf() {
                    Loaded::Leaf(leaf(b, &n)?)
                } else {
                    Loaded::Internal((0..n.nr_entries()).map(|i| n.child(i).0).collect())
                };
                Ok((b, l))
            })
            .collect::<Result<_>>()?;
        report.inc(read.len() as u64);
        let mut next = Vec::new();
        for (b, l) in read {
            if let Loaded::Internal(children) = &l {
                next.extend(children.iter().copied().filter(|c| !map.contains_key(c)));
            }
            map.insert(b, l);
        }
        next.sort_unstable();
        next.dedup();
        next.retain(|c| !map.contains_key(c));
        level = next;
    }
    if level.is_empty() {
        return Ok(map);
    }
    Err(Error::msg(format!(
        "mapping tree deeper than {MAX_DEPTH} levels (a cycle?) at block {}",
        level[0]
    )))
}

/// The leaves of the tree at `root`, in key order.  Refuses a tree that
/// reaches a node twice or is deeper than [`MAX_DEPTH`].
pub fn leaves_in_order<T>(map: &HashMap<u64, Loaded<T>>, root: u64) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    // Depth-first, children pushed in reverse so they pop in key order.
    let mut stack = vec![(root, 0usize)];
    let mut internal_seen = std::collections::HashSet::new();
    while let Some((b, depth)) = stack.pop() {
        if depth >= MAX_DEPTH {
            return Err(Error::msg(format!(
                "mapping tree deeper than {MAX_DEPTH} levels (a cycle?) at block {b}"
            )));
        }
        match map.get(&b) {
            Some(Loaded::Leaf(_)) => out.push(b),
            Some(Loaded::Internal(children)) => {
                if !internal_seen.insert(b) {
                    return Err(Error::msg(format!(
                        "mapping tree node {b} is reached twice in one tree"
                    )));
                }
                stack.extend(children.iter().rev().map(|&c| (c, depth + 1)));
            }
            None => return Err(Error::msg(format!("mapping tree node {b} was not loaded"))),
        }
    }
    Ok(out)
}

/// How many references each loaded node has: one per root in `roots` (with
/// repeats) plus one per child pointer of every loaded internal node.
/// Counts saturate at 255.
pub fn reference_counts<T>(map: &HashMap<u64, Loaded<T>>, roots: &[u64]) -> HashMap<u64, u8> {
    let mut counts: HashMap<u64, u8> = HashMap::with_capacity(map.len());
    let mut bump = |b: u64| {
        let c = counts.entry(b).or_insert(0);
        *c = c.saturating_add(1);
    };
    roots.iter().for_each(|&r| bump(r));
    for l in map.values() {
        if let Loaded::Internal(children) = l {
            children.iter().for_each(|&c| bump(c));
        }
    }
    counts
}
