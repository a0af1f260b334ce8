//! Bottom-up B-tree building, for tools that write a whole tree at once
//! (restore, repair): push (key, value) pairs in strictly ascending key
//! order; leaves are packed full and written as soon as they are known to be
//! final; [`build_internal`] then puts the internal levels on top.
//!
//! Fill rule (FORMAT.md §2.3): every non-root node holds at least
//! `max_entries / 3` entries.  Nodes are filled to `max_entries`; only the
//! last two nodes of a level may hold less: when the remainder would be
//! under-filled, the last full node and the remainder share their entries
//! evenly (each then holds at least `max_entries / 2`).  To know whether the
//! remainder is short, [`LeafBuilder`] keeps up to `2 * max_entries` entries
//! unwritten.
//!
//! The builder knows nothing of reference counts: the [`NodeSink`] allocates
//! blocks (with whatever count the caller keeps) and writes the node bytes.
//! Nodes are not sealed here; the sink seals them (block number and checksum,
//! e.g. with [`crate::validator::NODE`]).

use super::node::{max_entries, NodeMut, HEADER};
use super::Value;
use crate::error::{Error, Result};
use crate::types::{BlockData, MetaBlock};

/// Where built nodes go.
pub trait NodeSink {
    /// A fresh block for a node.
    fn alloc(&mut self) -> Result<MetaBlock>;
    /// Stores a finished, unsealed node at `loc`.
    fn write(&mut self, loc: MetaBlock, node: &BlockData) -> Result<()>;
}

/// A written node as its parent sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeRef {
    /// Its first key (the key its parent holds for it); 0 for an empty leaf.
    pub key: u64,
    /// Where it lives.
    pub loc: MetaBlock,
    /// How many entries it holds.
    pub nr_entries: usize,
}

/// The fewest entries a non-root node may hold for `value_size`-byte values.
pub const fn min_entries(value_size: usize) -> usize {
    max_entries(value_size) / 3
}

/// Sizes of the nodes that `n` entries are cut into: full nodes, then the
/// remainder; a remainder below `max / 3` is evened out with the last full
/// node.  `n == 0` gives no node.
pub fn node_sizes(n: usize, max: usize) -> Vec<usize> {
    let (full, rem) = (n / max, n % max);
    let mut sizes = vec![max; full];
    if rem == 0 {
        return sizes;
    }
    if full == 0 || rem >= max / 3 {
        sizes.push(rem);
    } else {
        let total = max + rem;
        sizes.pop();
        sizes.push(total / 2);
        sizes.push(total - total / 2);
    }
    sizes
}

/// Fills `out` with a node holding `keys` and `values` (equal lengths, at
/// most `max_entries`); unused slots are zero.
pub fn pack_node<V: Value>(out: &mut BlockData, leaf: bool, keys: &[u64], values: &[V]) {
    debug_assert_eq!(keys.len(), values.len());
    debug_assert!(keys.len() <= max_entries(V::SIZE));
    let mut n = NodeMut::new(out);
    n.init(leaf, V::SIZE);
    n.set_nr_entries(keys.len());
    let values_at = HEADER + 8 * max_entries(V::SIZE);
    let (kbytes, vbytes) = out[HEADER..].split_at_mut(values_at - HEADER);
    for (slot, k) in kbytes.chunks_exact_mut(8).zip(keys) {
        slot.copy_from_slice(&k.to_le_bytes());
    }
    for (slot, v) in vbytes.chunks_exact_mut(V::SIZE).zip(values) {
        v.pack(slot);
    }
}

/// Writes a node holding `keys` / `values` to a fresh block of `sink`.
pub fn write_node<V: Value>(
    sink: &mut dyn NodeSink,
    leaf: bool,
    keys: &[u64],
    values: &[V],
) -> Result<NodeRef> {
    let loc = sink.alloc()?;
    let mut d = Box::new([0u8; uthin_block_io::BLOCK_SIZE]);
    pack_node(&mut d, leaf, keys, values);
    sink.write(loc, &d)?;
    Ok(NodeRef {
        key: keys.first().copied().unwrap_or(0),
        loc,
        nr_entries: keys.len(),
    })
}

/// Packs a stream of sorted (key, value) pairs into leaves.
pub struct LeafBuilder<V: Value> {
    keys: Vec<u64>,
    values: Vec<V>,
    nodes: Vec<NodeRef>,
    last: Option<u64>,
}

impl<V: Value> Default for LeafBuilder<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Value> LeafBuilder<V> {
    /// An empty builder.
    pub fn new() -> Self {
        let max = max_entries(V::SIZE);
        LeafBuilder {
            keys: Vec::with_capacity(2 * max),
            values: Vec::with_capacity(2 * max),
            nodes: Vec::new(),
            last: None,
        }
    }

    /// Adds a pair; `key` must be greater than every key pushed before.
    pub fn push(&mut self, sink: &mut dyn NodeSink, key: u64, value: V) -> Result<()> {
        if let Some(l) = self.last {
            if key <= l {
                return Err(Error::Invalid(format!(
                    "keys out of order: {key} after {l}"
                )));
            }
        }
        self.last = Some(key);
        let max = max_entries(V::SIZE);
        if self.keys.len() == 2 * max {
            let node = write_node(sink, true, &self.keys[..max], &self.values[..max])?;
            self.nodes.push(node);
            self.keys.drain(..max);
            self.values.drain(..max);
        }
        self.keys.push(key);
        self.values.push(value);
        Ok(())
    }

    /// Writes what is left and returns every leaf, in key order (one empty
    /// leaf if nothing was pushed).
    pub fn finish(mut self, sink: &mut dyn NodeSink) -> Result<Vec<NodeRef>> {
        let mut at = 0;
        for n in node_sizes(self.keys.len(), max_entries(V::SIZE)) {
            let node = write_node(sink, true, &self.keys[at..at + n], &self.values[at..at + n])?;
            self.nodes.push(node);
            at += n;
        }
        if self.nodes.is_empty() {
            self.nodes.push(write_node::<V>(sink, true, &[], &[])?);
        }
        Ok(self.nodes)
    }
}

/// Builds the internal levels above `nodes` (one level of a tree, in key
/// order, at least one node) and returns the root.  A single node is its own
/// root.
pub fn build_internal(sink: &mut dyn NodeSink, mut nodes: Vec<NodeRef>) -> Result<MetaBlock> {
    let max = max_entries(8);
    loop {
        match nodes.len() {
            0 => return Err(Error::Invalid("no nodes to build a tree on".into())),
            1 => return Ok(nodes[0].loc),
            _ => {}
        }
        let mut parents = Vec::with_capacity(nodes.len() / max + 1);
        let mut at = 0;
        for n in node_sizes(nodes.len(), max) {
            let group = &nodes[at..at + n];
            let keys: Vec<u64> = group.iter().map(|c| c.key).collect();
            let children: Vec<u64> = group.iter().map(|c| c.loc.0).collect();
            parents.push(write_node(sink, false, &keys, &children)?);
            at += n;
        }
        nodes = parents;
    }
}

/// A whole tree from sorted pairs: [`LeafBuilder`] then [`build_internal`].
pub struct BTreeBuilder<V: Value> {
    leaves: LeafBuilder<V>,
}

impl<V: Value> Default for BTreeBuilder<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Value> BTreeBuilder<V> {
    /// An empty tree.
    pub fn new() -> Self {
        BTreeBuilder {
            leaves: LeafBuilder::new(),
        }
    }

    /// Adds a pair; keys strictly ascending.
    pub fn push(&mut self, sink: &mut dyn NodeSink, key: u64, value: V) -> Result<()> {
        self.leaves.push(sink, key, value)
    }

    /// Writes the rest of the tree; returns its root.
    pub fn finish(self, sink: &mut dyn NodeSink) -> Result<MetaBlock> {
        let leaves = self.leaves.finish(sink)?;
        build_internal(sink, leaves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::node::Node;
    use std::collections::BTreeMap;

    /// Keeps nodes in memory.
    struct MemSink {
        next: u64,
        blocks: BTreeMap<u64, Box<BlockData>>,
    }

    impl NodeSink for MemSink {
        fn alloc(&mut self) -> Result<MetaBlock> {
            self.next += 1;
            Ok(MetaBlock(self.next))
        }
        fn write(&mut self, loc: MetaBlock, node: &BlockData) -> Result<()> {
            self.blocks.insert(loc.0, Box::new(*node));
            Ok(())
        }
    }

    /// Walks the tree: returns its pairs, checking fill and depth.
    fn walk(s: &MemSink, blk: u64, root: bool, depth: usize, out: &mut Vec<(u64, u64)>) -> usize {
        let d = &s.blocks[&blk];
        let n = Node::new(d);
        if !root {
            assert!(n.nr_entries() >= n.max_entries() / 3, "under-filled {blk}");
        }
        if n.is_leaf() {
            for i in 0..n.nr_entries() {
                out.push((n.key(i), u64::unpack(n.value(i))));
            }
            return depth;
        }
        let mut d0 = None;
        for i in 0..n.nr_entries() {
            let child = n.child(i).0;
            let first = Node::new(&s.blocks[&child]).key(0);
            assert_eq!(first, n.key(i));
            let dd = walk(s, child, false, depth + 1, out);
            assert!(d0.is_none_or(|x| x == dd), "leaves at different depths");
            d0 = Some(dd);
        }
        d0.unwrap()
    }

    #[test]
    fn sizes_respect_the_fill_rule() {
        for n in 0..2000 {
            let s = node_sizes(n, 252);
            assert_eq!(s.iter().sum::<usize>(), n);
            if s.len() > 1 {
                assert!(s.iter().all(|&x| (84..=252).contains(&x)), "{n}: {s:?}");
            }
        }
    }

    #[test]
    fn builds_trees_of_every_shape() {
        for n in [
            0u64, 1, 83, 84, 252, 253, 300, 504, 505, 600, 63_600, 64_000,
        ] {
            let mut s = MemSink {
                next: 0,
                blocks: BTreeMap::new(),
            };
            let mut b = BTreeBuilder::<u64>::new();
            for k in 0..n {
                b.push(&mut s, k * 3, k + 7).unwrap();
            }
            let root = b.finish(&mut s).unwrap();
            let mut out = Vec::new();
            walk(&s, root.0, true, 0, &mut out);
            let want: Vec<(u64, u64)> = (0..n).map(|k| (k * 3, k + 7)).collect();
            assert_eq!(out, want, "n = {n}");
        }
    }

    #[test]
    fn rejects_unsorted_keys() {
        let mut s = MemSink {
            next: 0,
            blocks: BTreeMap::new(),
        };
        let mut b = BTreeBuilder::<u64>::new();
        b.push(&mut s, 5, 0).unwrap();
        assert!(b.push(&mut s, 5, 0).is_err());
        assert!(b.push(&mut s, 4, 0).is_err());
    }
}
