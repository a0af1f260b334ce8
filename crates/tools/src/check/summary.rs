//! Path-dependent checks of the mapping tree, and phase two of its check:
//! per device, bottom-up over the nodes phase one kept (no I/O).  A node's
//! keys must lie inside the range its parent gives it, it must sit at the
//! height its parent expects, and it must not be under-filled unless it is
//! a root; the mappings under every device root are counted for the
//! `mapped_blocks` check.  Summaries of internal nodes do not depend on the
//! path (a child's range is bounded by its parent's keys only; the node's
//! own keys are checked against each parent), so they are memoised and a
//! subtree shared by many devices is summarised once.  Phase one already
//! summarises the height-1 nodes whose leaves it read itself.

use super::mapping::{Frozen, NodeInfo};
use super::node::KeyRange;
use super::problems::Problems;
use std::collections::HashMap;

/// What a subtree holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sum {
    /// Lowest and highest key (meaningful when `nr > 0`).
    pub low: u64,
    pub high: u64,
    /// Number of mappings.
    pub nr: u64,
    /// Number of errors (saturating).
    pub errors: u32,
}

impl Sum {
    /// A subtree that could not be read.
    pub fn error() -> Self {
        Sum {
            errors: 1,
            ..Sum::default()
        }
    }

    /// Appends child `c` (block `cb` under `parent`); reports overlapping keys.
    pub fn append(&mut self, c: &Sum, cb: u64, parent: u64, problems: &Problems) {
        if c.nr > 0 {
            if self.nr == 0 {
                self.low = c.low;
            } else if c.low <= self.high {
                let msg = format!(
                    "mapping tree: node {cb} (child of node {parent}): keys overlap those of its left sibling"
                );
                problems.fatal(Some(cb), msg);
                self.errors = self.errors.saturating_add(1);
            }
            self.high = c.high;
        }
        self.nr += c.nr;
        self.errors = self.errors.saturating_add(c.errors);
    }
}

/// A node as the per-reference checks see it.
pub struct Facts {
    pub sum: Sum,
    pub nr_entries: usize,
    pub max_entries: usize,
    /// The last key of an internal node.
    pub last_key: Option<u64>,
}

/// The checks of one reference to node `b` (from `parent`, None for a
/// device root, with key range `kr`); returns what the parent adds up.
pub fn reference(
    problems: &Problems,
    ignore_non_fatal: bool,
    b: u64,
    parent: Option<u64>,
    kr: KeyRange,
    f: &Facts,
) -> Sum {
    let mut s = f.sum;
    let from = parent.map_or(String::new(), |p| format!(" (child of node {p})"));
    if parent.is_some() && !ignore_non_fatal && f.nr_entries < f.max_entries / 3 {
        let msg = format!(
            "mapping tree: node {b}{from} is under-filled: nr_entries < max_entries / 3 ({} < {} / 3)",
            f.nr_entries, f.max_entries
        );
        problems.non_fatal(Some(b), msg);
    }
    if let (Some(e), Some(last)) = (kr.end, f.last_key) {
        if last >= e {
            problems.fatal(
                Some(b),
                format!(
                    "mapping tree: node {b}{from}: key {last} is not below the parent's bound {e}"
                ),
            );
            s.errors = s.errors.saturating_add(1);
        }
    }
    if s.nr > 0 && !kr.holds(s.low, s.high) {
        let msg = format!(
            "mapping tree: node {b}{from} holds keys {}..={} outside the parent's range {kr}",
            s.low, s.high
        );
        problems.fatal(Some(b), msg);
        s.errors = s.errors.saturating_add(1);
    }
    s
}

/// The range of child `i` of an internal node with `keys` (its last child
/// is unbounded here: the node's own keys are checked per reference).
pub fn child_range(keys: &[u64], i: usize) -> KeyRange {
    KeyRange::default().child(keys, i)
}

/// Phase two.
pub struct Summarizer<'a> {
    nodes: &'a Frozen,
    problems: &'a Problems,
    ignore_non_fatal: bool,
    memo: HashMap<u64, Sum>,
}

impl<'a> Summarizer<'a> {
    /// A summarizer over what phase one kept.
    pub fn new(nodes: &'a Frozen, problems: &'a Problems, ignore_non_fatal: bool) -> Self {
        Summarizer {
            nodes,
            problems,
            ignore_non_fatal,
            memo: HashMap::new(),
        }
    }

    /// The summary of the device tree rooted at `root`.
    pub fn device(&mut self, root: u64) -> Sum {
        match self.nodes.get(root) {
            Some(st) => self.sum(root, st.height, KeyRange::default(), None),
            None => Sum::error(),
        }
    }

    fn sum(&mut self, b: u64, h: u8, kr: KeyRange, parent: Option<u64>) -> Sum {
        let nodes = self.nodes;
        let Some(st) = nodes.get(b) else {
            return Sum::error(); // reported when it was reached
        };
        if st.height != h {
            let from = parent.map_or(String::new(), |p| format!(" (child of node {p})"));
            let msg = format!(
                "mapping tree: node {b}{from} is at height {h} here but at height {} elsewhere (unbalanced tree or a cycle)",
                st.height
            );
            self.problems.fatal(Some(b), msg);
            return Sum::error();
        }
        let f = match &st.info {
            NodeInfo::Error(_) => return Sum::error(),
            NodeInfo::Leaf { low, high, nr, max } => Facts {
                sum: Sum {
                    low: *low,
                    high: *high,
                    nr: *nr as u64,
                    errors: 0,
                },
                nr_entries: *nr as usize,
                max_entries: *max as usize,
                last_key: None,
            },
            NodeInfo::Summary {
                sum,
                nr,
                max,
                last_key,
            } => Facts {
                sum: *sum,
                nr_entries: *nr as usize,
                max_entries: *max as usize,
                last_key: Some(*last_key),
            },
            NodeInfo::Internal {
                keys,
                children,
                max,
            } => Facts {
                sum: self.internal(b, h, keys, children),
                nr_entries: keys.len(),
                max_entries: *max as usize,
                last_key: keys.last().copied(),
            },
        };
        reference(self.problems, self.ignore_non_fatal, b, parent, kr, &f)
    }

    fn internal(&mut self, b: u64, h: u8, keys: &[u64], children: &[u64]) -> Sum {
        if let Some(s) = self.memo.get(&b) {
            return *s;
        }
        let mut s = Sum::default();
        for (i, &c) in children.iter().enumerate() {
            let cs = self.sum(c, h.saturating_sub(1), child_range(keys, i), Some(b));
            s.append(&cs, c, b, self.problems);
        }
        self.memo.insert(b, s);
        s
    }
}
