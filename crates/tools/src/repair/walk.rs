//! Walking one device's bottom-level tree while tolerating damage: every
//! whole leaf reached is kept with the key range its parents allow, and every
//! pointer to a block that is not a whole mapping node becomes a gap: the
//! key range that block covered, named after the block (devices sharing the
//! damaged node share the gap).

use super::scan::{NodeKind, Scan};

/// A leaf of a recovered device; only keys in `lo..=hi` belong to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeafRef {
    pub lo: u64,
    pub hi: u64,
    pub blk: u64,
}

/// Keys `lo..=hi` of a device lost with block `cause`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub lo: u64,
    pub hi: u64,
    pub cause: u64,
    /// The lost block was a leaf (its whole siblings are leaves): no other
    /// device's leaf can stand in for it.
    pub leaf: bool,
}

impl Gap {
    /// Width of the range (for "most specific gap" decisions).
    pub fn width(&self) -> u64 {
        self.hi - self.lo
    }

    /// Whether keys `a..=b` lie inside.
    pub fn holds(&self, a: u64, b: u64) -> bool {
        self.lo <= a && b <= self.hi
    }
}

/// What a walk found.
#[derive(Default, Debug)]
pub struct Walked {
    /// The root walked from, if any.
    pub root: Option<u64>,
    pub leaves: Vec<LeafRef>,
    pub gaps: Vec<Gap>,
    /// Internal nodes passed through.
    pub internals: Vec<u64>,
}

/// Walks the tree at `root` over every key; `leaf_root` says the root is
/// probably a leaf (for the gap if it is lost).
pub fn walk(scan: &Scan, root: u64, leaf_root: bool, out: &mut Walked) {
    out.root = Some(root);
    visit(scan, root, 0, u64::MAX, 0, leaf_root, out);
}

/// Walks the sub-tree at `blk` over keys `lo..=hi` into `out` (a loose
/// sub-tree put back into a device).
pub fn walk_into(scan: &Scan, blk: u64, lo: u64, hi: u64, out: &mut Walked) {
    visit(scan, blk, lo, hi, 1, false, out);
}

fn visit(scan: &Scan, blk: u64, lo: u64, hi: u64, depth: usize, leaf: bool, out: &mut Walked) {
    let gap = Gap {
        lo,
        hi,
        cause: blk,
        leaf,
    };
    let Some(n) = scan.node(blk) else {
        out.gaps.push(gap);
        return;
    };
    if depth > uthin_pdata::btree::MAX_DEPTH {
        out.gaps.push(gap);
        return;
    }
    match n.kind {
        NodeKind::Leaf8 => out.leaves.push(LeafRef { lo, hi, blk }),
        NodeKind::Internal => {
            out.internals.push(blk);
            let es = scan.entries_of(n);
            let leaves_below = es
                .iter()
                .any(|&(_, c)| scan.node(c).is_some_and(|c| c.kind == NodeKind::Leaf8));
            for (i, &(k, child)) in es.iter().enumerate() {
                let clo = if i == 0 { lo } else { k.max(lo) };
                let chi = match es.get(i + 1) {
                    Some(&(next, _)) => (next - 1).min(hi),
                    None => hi,
                };
                if clo <= chi {
                    visit(scan, child, clo, chi, depth + 1, leaves_below, out);
                }
            }
        }
        NodeKind::Leaf24 | NodeKind::LeafOther => out.gaps.push(gap),
    }
}
