//! The graph of whole nodes: what tree each node heads, how complete that
//! tree is, and which nodes no other whole node points to (candidate roots).
//!
//! A node's [`Sub`] is computed bottom-up and memoised.  An 8-byte leaf whose
//! values are all metadata block numbers is a top-level mapping leaf (see
//! [`compute`] for the one ambiguous case); every other 8-byte leaf is a
//! bottom-level mapping leaf.  An internal node takes the tree kind and height most of its whole
//! children agree on; children that are missing, of another kind or height,
//! or whose keys fall outside the node's separators make it incomplete but
//! do not discard it (thin-provisioning-tools 1.x discards such a node and
//! everything above it).

use super::scan::{NodeKind, Scan};

/// Which tree a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tree {
    /// Bottom level of the mapping tree (one thin device's mappings).
    Mapping,
    /// Top level of the mapping tree (device id -> sub-tree root).
    Top,
    /// Device details.
    Details,
    /// A space-map tree.
    Other,
}

/// Summary of the tree a node heads.
#[derive(Clone, Copy, Debug)]
pub struct Sub {
    pub tree: Tree,
    /// 0 for leaves.
    pub height: u8,
    /// Every node below is whole and consistent.
    pub complete: bool,
    /// Entries in the leaves: mappings, devices or details.
    pub entries: u64,
    /// Top trees: mappings of all devices below.  Details trees: the sum of
    /// `mapped_blocks`.
    pub mappings: u64,
    /// Newest time seen (mapping times; details creation/snapshot times) and
    /// how many mappings carry it.
    pub age: u32,
    pub at_age: u64,
    pub max_data: u64,
    /// The highest key in the leaves (mapping trees).
    pub max_key: u64,
    /// Details trees: the highest transaction id.
    pub max_tid: u64,
}

impl Sub {
    /// Orders two trees by age as 1.x does (newer times first, then more
    /// mappings at that time).
    pub fn newness(&self) -> (u32, u64, u64) {
        (self.age, self.at_age, self.entries)
    }

    fn merge_age(&mut self, age: u32, at: u64) {
        if age > self.age {
            self.age = age;
            self.at_age = at;
        } else if age == self.age {
            self.at_age += at;
        }
    }
}

#[derive(Clone, Copy)]
enum Memo {
    Todo,
    Busy,
    Done(Option<Sub>),
}

/// Summaries of every whole node.
pub struct Graph {
    subs: Vec<Option<Sub>>,
    /// Nodes some whole internal node points to.
    pub referenced: Vec<bool>,
}

/// Deepest tree followed (as pdata's bound).
const MAX_DEPTH: usize = uthin_pdata::btree::MAX_DEPTH;

impl Graph {
    /// Builds the summaries.
    pub fn build(scan: &Scan) -> Self {
        let mut memo = vec![Memo::Todo; scan.nodes.len()];
        for i in 0..scan.nodes.len() {
            sub_of(scan, &mut memo, i, 0);
        }
        let subs = memo
            .into_iter()
            .map(|m| match m {
                Memo::Done(s) => s,
                _ => None,
            })
            .collect();
        let mut referenced = vec![false; scan.nodes.len()];
        for n in scan.nodes.iter().filter(|n| n.kind == NodeKind::Internal) {
            for &(_, c) in scan.entries_of(n) {
                if let Some(ci) = scan.index_of(c) {
                    referenced[ci] = true;
                }
            }
        }
        Graph { subs, referenced }
    }

    /// The summary of the node at `blk`, if it is whole.
    pub fn sub(&self, scan: &Scan, blk: u64) -> Option<Sub> {
        scan.index_of(blk).and_then(|i| self.subs[i])
    }

    /// Summary by node index.
    pub fn sub_at(&self, i: usize) -> Option<Sub> {
        self.subs[i]
    }

    /// Nodes heading a tree of `tree` that no whole internal node points to.
    pub fn unreferenced(&self, scan: &Scan, tree: Tree) -> Vec<u64> {
        (0..scan.nodes.len())
            .filter(|&i| !self.referenced[i] && self.subs[i].is_some_and(|s| s.tree == tree))
            .map(|i| scan.nodes[i].blk)
            .collect()
    }
}

fn sub_of(scan: &Scan, memo: &mut [Memo], i: usize, depth: usize) -> Option<Sub> {
    match memo[i] {
        Memo::Done(s) => return s,
        Memo::Busy => return None,
        Memo::Todo => {}
    }
    if depth > MAX_DEPTH {
        return None;
    }
    memo[i] = Memo::Busy;
    let s = compute(scan, memo, i, depth);
    memo[i] = Memo::Done(s);
    s
}

fn leaf_sub(tree: Tree, entries: u64) -> Sub {
    Sub {
        tree,
        height: 0,
        complete: true,
        entries,
        mappings: 0,
        age: 0,
        at_age: 0,
        max_data: 0,
        max_key: 0,
        max_tid: 0,
    }
}

fn compute(scan: &Scan, memo: &mut [Memo], i: usize, depth: usize) -> Option<Sub> {
    let n = scan.nodes[i].clone();
    match n.kind {
        NodeKind::LeafOther => Some(leaf_sub(Tree::Other, n.nr as u64)),
        NodeKind::Leaf24 => {
            let mut s = leaf_sub(Tree::Details, n.nr as u64);
            for (_, d) in scan.details_of(&n) {
                s.mappings += d.mapped_blocks;
                s.max_tid = s.max_tid.max(d.transaction_id);
                s.age = s.age.max(d.creation_time).max(d.snapshotted_time);
            }
            Some(s)
        }
        NodeKind::Leaf8 => {
            let mut mapping = leaf_sub(Tree::Mapping, n.nr as u64);
            mapping.age = n.max_time;
            mapping.at_age = n.at_max as u64;
            mapping.max_data = n.max_data;
            mapping.max_key = n.key_hi;
            if !n.has_entries() || n.nr == 0 {
                return Some(mapping);
            }
            // Two or more values that are all block numbers cannot be
            // mappings (two mappings of a device never share data block 0),
            // so such a leaf is a top-level leaf, complete if every value
            // heads a mapping tree.  A single value must head one.
            let mut top = leaf_sub(Tree::Top, n.nr as u64);
            for &(_, v) in scan.entries_of(&n) {
                let child = scan
                    .index_of(v)
                    .and_then(|ci| sub_of(scan, memo, ci, depth + 1));
                match child {
                    Some(c) if c.tree == Tree::Mapping => {
                        top.complete &= c.complete;
                        top.mappings += c.entries;
                        top.max_data = top.max_data.max(c.max_data);
                        top.merge_age(c.age, c.at_age);
                    }
                    _ if n.nr >= 2 => top.complete = false,
                    _ => return Some(mapping),
                }
            }
            Some(top)
        }
        NodeKind::Internal => {
            let children: Vec<(u64, u64)> = scan.entries_of(&n).to_vec();
            let subs: Vec<Option<Sub>> = children
                .iter()
                .map(|&(_, c)| {
                    scan.index_of(c)
                        .and_then(|ci| sub_of(scan, memo, ci, depth + 1))
                })
                .collect();
            // The (tree, height) most whole children agree on.
            let mut votes: Vec<((Tree, u8), usize)> = Vec::new();
            for s in subs.iter().flatten() {
                let k = (s.tree, s.height);
                match votes.iter_mut().find(|v| v.0 == k) {
                    Some(v) => v.1 += 1,
                    None => votes.push((k, 1)),
                }
            }
            let &((tree, height), _) = votes.iter().max_by_key(|v| (v.1, v.0))?;
            let mut out = Sub {
                height: height.saturating_add(1),
                ..leaf_sub(tree, 0)
            };
            for (j, s) in subs.iter().enumerate() {
                let Some(s) = s.filter(|s| s.tree == tree && s.height == height) else {
                    out.complete = false;
                    continue;
                };
                let c = scan.node(children[j].1).expect("summarised nodes exist");
                let below_next = children.get(j + 1).is_none_or(|nx| c.key_hi < nx.0);
                let above_own = j == 0 || c.nr == 0 || c.key_lo >= children[j].0;
                if !below_next || !above_own {
                    out.complete = false;
                    continue;
                }
                out.complete &= s.complete;
                out.entries += s.entries;
                out.mappings += s.mappings;
                out.max_data = out.max_data.max(s.max_data);
                out.max_key = out.max_key.max(s.max_key);
                out.max_tid = out.max_tid.max(s.max_tid);
                out.merge_age(s.age, s.at_age);
            }
            Some(out)
        }
    }
}
