//! Building mapping sub-trees bottom-up, with defs' leaves shared.
//!
//! A def becomes a run of leaves of its own (packed full; see
//! [`uthin_pdata::btree::builder::node_sizes`]).  A device's tree is a
//! sequence of leaves: its own mappings, packed the same way, and the
//! leaves of the defs it refers to, used as they are (each use is one more
//! reference to the leaf).  Internal nodes are never shared.
//!
//! Every non-root leaf must hold at least a third of its capacity
//! ([`MIN`]).  Leaves written for a def or for a stretch of own mappings
//! satisfy that unless the whole def or stretch is shorter; then the short
//! part is merged with a neighbouring def leaf, whose mappings are copied
//! into a leaf of the device's own (the device no longer shares that one
//! leaf):
//! * own mappings shorter than [`MIN`] before a def take the def's first
//!   leaves; after the last def they take its last leaf;
//! * a def of one short leaf is used as is only when it is the device's
//!   whole tree (it is then the root); otherwise its mappings are copied.
//!
//! Dumps of well-formed metadata never need these merges, so their
//! `<def>` structure survives a restore.
//!
//! Data block counts: own mappings count once per device; a def's
//! mappings count once (per leaf, FORMAT.md §9), plus once per copy.

use super::data_counts::DataCounts;
use super::writer::MetaWriter;
use crate::error::Result;
use uthin_pdata::btree::builder::{build_internal, node_sizes, pack_node, NodeRef, NodeSink};
use uthin_pdata::btree::node::{max_entries, Node};
use uthin_pdata::MetaBlock;

/// Entries of a full mapping leaf.
pub const MAX: usize = max_entries(8);
/// Fewest entries of a non-root leaf.
pub const MIN: usize = MAX / 3;

/// A written leaf.
#[derive(Clone, Copy, Debug)]
pub struct Leaf {
    pub loc: MetaBlock,
    /// First key (0 for an empty leaf).
    pub key: u64,
    pub nr: usize,
}

impl Leaf {
    fn node_ref(&self) -> NodeRef {
        NodeRef {
            key: self.key,
            loc: self.loc,
            nr_entries: self.nr,
        }
    }
}

/// What the builders write through.
pub struct Ctx<'a> {
    pub w: &'a mut MetaWriter,
    pub data: &'a mut DataCounts,
}

/// Packs a mapping value.
#[inline]
pub fn pack(block: u64, time: u32) -> u64 {
    (block << 24) | (time as u64 & 0xFF_FFFF)
}

/// Mappings not yet in a leaf.
#[derive(Default)]
struct Pending {
    keys: Vec<u64>,
    vals: Vec<u64>,
}

impl Pending {
    fn len(&self) -> usize {
        self.keys.len()
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Writes the first `n` pending mappings as a leaf at `loc` (or a fresh
    /// block).
    fn emit(&mut self, ctx: &mut Ctx, n: usize, loc: Option<MetaBlock>) -> Result<Leaf> {
        let loc = match loc {
            Some(l) => l,
            None => ctx.w.alloc()?,
        };
        let mut d = Box::new([0u8; uthin_block_io::BLOCK_SIZE]);
        pack_node(&mut d, true, &self.keys[..n], &self.vals[..n]);
        ctx.w.write(loc, &d)?;
        let leaf = Leaf {
            loc,
            key: self.keys.first().copied().unwrap_or(0),
            nr: n,
        };
        self.keys.drain(..n);
        self.vals.drain(..n);
        Ok(leaf)
    }
}

/// The mappings of a leaf written earlier.
fn read_leaf(ctx: &mut Ctx, leaf: &Leaf) -> Result<Vec<(u64, u64)>> {
    let d = ctx.w.read(leaf.loc)?;
    let n = Node::new(&d);
    Ok((0..n.nr_entries())
        .map(|i| {
            (
                n.key(i),
                u64::from_le_bytes(n.value(i).try_into().expect("8 bytes")),
            )
        })
        .collect())
}

/// A def's leaves and key range.
#[derive(Clone, Debug, Default)]
pub struct Def {
    pub leaves: Vec<Leaf>,
    pub first_key: Option<u64>,
    pub last_key: Option<u64>,
}

/// Builds the leaves of a def.
pub struct DefBuilder {
    pending: Pending,
    def: Def,
    /// Where the first leaf goes, if chosen (see `Restorer::reserve_def_head`).
    head: Option<MetaBlock>,
}

impl DefBuilder {
    /// A def whose first leaf goes to `head` (a block already counted), or
    /// anywhere.
    pub fn new(head: Option<MetaBlock>) -> Self {
        DefBuilder {
            pending: Pending::default(),
            def: Def::default(),
            head,
        }
    }

    /// Adds a run of mappings; the caller checked the order and ranges.
    pub fn push_run(
        &mut self,
        ctx: &mut Ctx,
        thin: u64,
        data: u64,
        time: u32,
        len: u64,
    ) -> Result<()> {
        ctx.data.inc_range(data, len)?;
        if self.def.first_key.is_none() {
            self.def.first_key = Some(thin);
        }
        self.def.last_key = Some(thin + (len - 1));
        for i in 0..len {
            if self.pending.len() == 2 * MAX {
                let leaf = self.pending.emit(ctx, MAX, self.head.take())?;
                self.def.leaves.push(leaf);
            }
            self.pending.keys.push(thin + i);
            self.pending.vals.push(pack(data + i, time));
        }
        Ok(())
    }

    /// Writes the rest; every leaf holds one temporary reference (the
    /// restore drops it at the end).
    pub fn finish(mut self, ctx: &mut Ctx) -> Result<Def> {
        for n in node_sizes(self.pending.len(), MAX) {
            let leaf = self.pending.emit(ctx, n, self.head.take())?;
            self.def.leaves.push(leaf);
        }
        if self.def.leaves.is_empty() {
            let leaf = self.pending.emit(ctx, 0, self.head.take())?;
            self.def.leaves.push(leaf);
        }
        Ok(self.def)
    }
}

/// Builds one device's mapping tree.
#[derive(Default)]
pub struct DeviceBuilder {
    pending: Pending,
    /// Leaves so far, and whether each is a def's (shared).
    nodes: Vec<(Leaf, bool)>,
    /// `nodes` is a single short def leaf that may yet become the root.
    tentative: bool,
}

impl DeviceBuilder {
    /// An empty device.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, ctx: &mut Ctx, k: u64, v: u64) -> Result<()> {
        if self.pending.len() == 2 * MAX {
            let leaf = self.pending.emit(ctx, MAX, None)?;
            self.nodes.push((leaf, false));
        }
        self.pending.keys.push(k);
        self.pending.vals.push(v);
        Ok(())
    }

    /// Copies a def leaf's mappings into the device's own.
    fn import(&mut self, ctx: &mut Ctx, leaf: &Leaf) -> Result<()> {
        for (k, v) in read_leaf(ctx, leaf)? {
            ctx.data.inc(v >> 24)?;
            self.push(ctx, k, v)?;
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut Ctx) -> Result<()> {
        for n in node_sizes(self.pending.len(), MAX) {
            let leaf = self.pending.emit(ctx, n, None)?;
            self.nodes.push((leaf, false));
        }
        Ok(())
    }

    /// A short def leaf held as a possible root is not the root after all.
    fn settle(&mut self, ctx: &mut Ctx) -> Result<()> {
        if self.tentative {
            self.tentative = false;
            let (leaf, _) = self.nodes.pop().expect("tentative leaf");
            self.import(ctx, &leaf)?;
        }
        Ok(())
    }

    /// Adds a run of mappings; the caller checked the order and ranges.
    pub fn push_run(
        &mut self,
        ctx: &mut Ctx,
        thin: u64,
        data: u64,
        time: u32,
        len: u64,
    ) -> Result<()> {
        self.settle(ctx)?;
        ctx.data.inc_range(data, len)?;
        for i in 0..len {
            self.push(ctx, thin + i, pack(data + i, time))?;
        }
        Ok(())
    }

    /// Adds a def's leaves; the caller checked the order.
    pub fn push_def(&mut self, ctx: &mut Ctx, def: &Def) -> Result<()> {
        self.settle(ctx)?;
        let leaves = &def.leaves[..];
        if leaves.len() == 1 && leaves[0].nr < MIN {
            if self.nodes.is_empty() && self.pending.is_empty() {
                self.nodes.push((leaves[0], true));
                self.tentative = true;
            } else {
                self.import(ctx, &leaves[0])?;
            }
            return Ok(());
        }
        let mut i = 0;
        while !self.pending.is_empty() && self.pending.len() < MIN && i < leaves.len() {
            self.import(ctx, &leaves[i])?;
            i += 1;
        }
        if self.pending.len() >= MIN {
            self.flush(ctx)?;
        }
        self.nodes.extend(leaves[i..].iter().map(|l| (*l, true)));
        Ok(())
    }

    /// Writes the rest of the tree and returns its root.  Each def leaf
    /// used gains a reference.
    pub fn finish(mut self, ctx: &mut Ctx) -> Result<MetaBlock> {
        if !self.pending.is_empty() && self.pending.len() < MIN && !self.nodes.is_empty() {
            // Too short to stand alone: merge with the leaf before.
            let (leaf, shared) = self.nodes.pop().expect("non-empty");
            let mut merged = read_leaf(ctx, &leaf)?;
            if shared {
                for (_, v) in &merged {
                    ctx.data.inc(v >> 24)?;
                }
            } else {
                // Our own leaf, already counted: rewrite it with the rest.
                ctx.w.counts.adjust(leaf.loc.0, -1);
            }
            merged.extend(
                self.pending
                    .keys
                    .iter()
                    .copied()
                    .zip(self.pending.vals.iter().copied()),
            );
            self.pending.keys = merged.iter().map(|m| m.0).collect();
            self.pending.vals = merged.iter().map(|m| m.1).collect();
        }
        self.flush(ctx)?;
        if self.nodes.is_empty() {
            let leaf = self.pending.emit(ctx, 0, None)?;
            self.nodes.push((leaf, false));
        }
        for (leaf, shared) in &self.nodes {
            if *shared {
                ctx.w.counts.adjust(leaf.loc.0, 1);
            }
        }
        let refs: Vec<NodeRef> = self.nodes.iter().map(|(l, _)| l.node_ref()).collect();
        Ok(build_internal(ctx.w, refs)?)
    }
}
