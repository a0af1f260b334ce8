//! Walks the small trees (device details, the top level of the mapping tree,
//! the data space map's index, both ref-count trees) one node at a time:
//! every node is validated, key ranges and leaf depths are checked on the
//! way down, non-root nodes must not be under-filled, and every node
//! reference is counted in the expected metadata counts.  A node reached
//! before (shared) is counted again but not read again (FORMAT.md §9).

use super::counts::{tag, MetaCounts, Visit};
use super::io::Disk;
use super::node::{self, KeyRange, NodeError};
use super::problems::Problems;
use std::collections::HashSet;
use uthin_block_io::BLOCK_SIZE;

/// Deepest tree accepted.
pub const MAX_DEPTH: usize = 16;

/// A leaf entry as the walk visits it: key, value bytes, and where the value
/// lives (leaf block, slot) for the rare caller that rewrites it.
pub type Visitor<'v> = dyn FnMut(u64, &[u8], u64, usize) + 'v;

/// One tree kind to walk.
pub struct TreeWalk<'a> {
    pub disk: &'a Disk,
    pub meta: &'a MetaCounts,
    pub problems: &'a Problems,
    pub ignore_non_fatal: bool,
    /// The tree's name in messages ("device details tree").
    pub what: &'a str,
    pub tag: u8,
    pub leaf_vs: usize,
}

struct State<'v, 'w> {
    leaf_depth: Option<usize>,
    errors: usize,
    visit: &'v mut Visitor<'w>,
}

impl TreeWalk<'_> {
    /// Walks the tree at `root`, counting references; returns the number of
    /// fatal errors found in it.
    pub fn walk(&self, root: u64, visit: &mut Visitor<'_>) -> usize {
        let mut st = State {
            leaf_depth: None,
            errors: 0,
            visit,
        };
        self.node(root, KeyRange::default(), 0, None, &mut st);
        st.errors
    }

    fn fatal(&self, st: &mut State<'_, '_>, b: u64, msg: String) {
        st.errors += 1;
        self.problems
            .fatal(Some(b), format!("{}: {msg}", self.what));
    }

    fn node(
        &self,
        b: u64,
        kr: KeyRange,
        depth: usize,
        parent: Option<u64>,
        st: &mut State<'_, '_>,
    ) {
        let from = parent.map_or(String::new(), |p| format!(" (child of node {p})"));
        match self.meta.reference(b, self.tag) {
            Visit::First => {}
            Visit::Again => return,
            Visit::OutOfRange => {
                return self.fatal(st, b, format!("node {b}{from}: {}", NodeError::BeyondEnd));
            }
            Visit::Conflict(t) => {
                let msg = format!("node {b}{from} is also used as {}", tag::name(t));
                return self.fatal(st, b, msg);
            }
        }
        if depth >= MAX_DEPTH {
            return self.fatal(st, b, format!("node {b}: {}", NodeError::TooDeep));
        }
        let mut buf = [0u8; BLOCK_SIZE];
        if self.disk.read(b, &mut buf).is_err() {
            return self.fatal(st, b, format!("node {b}{from}: {}", NodeError::IoError));
        }
        let n = match node::parse(&buf, b, self.leaf_vs) {
            Ok(n) => n,
            Err(e) => return self.fatal(st, b, format!("node {b}{from}: node error: {e}")),
        };
        if !self.ignore_non_fatal {
            if !n.max.is_multiple_of(3) {
                let msg = format!("{}: node {b}: max_entries is not divisible by 3", self.what);
                self.problems.non_fatal(Some(b), msg);
            }
            if parent.is_some() && n.underfull() {
                let msg = format!(
                    "{}: node {b}{from} is under-filled: nr_entries < max_entries / 3 ({} < {} / 3)",
                    self.what, n.nr, n.max
                );
                self.problems.non_fatal(Some(b), msg);
            }
        }
        if n.nr > 0 && !kr.holds(n.key(0), n.key(n.nr - 1)) {
            let (lo, hi) = (n.key(0), n.key(n.nr - 1));
            let msg =
                format!("node {b}{from}: keys {lo}..={hi} lie outside the parent's range {kr}");
            if n.leaf || kr.end.is_some_and(|e| hi >= e) {
                return self.fatal(st, b, msg);
            }
        }
        if n.leaf {
            match st.leaf_depth {
                None => st.leaf_depth = Some(depth),
                Some(d) if d != depth => {
                    let msg = format!("node {b}: leaf at depth {depth}, other leaves at depth {d} (unbalanced tree)");
                    return self.fatal(st, b, msg);
                }
                _ => {}
            }
            for i in 0..n.nr {
                (st.visit)(n.key(i), n.value(i), b, i);
            }
        } else {
            let keys = n.keys();
            for (i, c) in n.children().into_iter().enumerate() {
                self.node(c, kr.child(&keys, i), depth + 1, Some(b), st);
            }
        }
    }
}

/// Reads every leaf entry of the tree at `root` without counting anything
/// (to list the devices of a metadata snapshot whose nodes are shared with
/// the live trees).  Errors are returned as a message.
pub fn list(
    disk: &Disk,
    root: u64,
    leaf_vs: usize,
    out: &mut dyn FnMut(u64, &[u8]),
) -> Result<(), String> {
    fn rec(
        disk: &Disk,
        b: u64,
        vs: usize,
        depth: usize,
        seen: &mut HashSet<u64>,
        out: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), String> {
        if depth >= MAX_DEPTH {
            return Err(format!("node {b}: {}", NodeError::TooDeep));
        }
        if !seen.insert(b) {
            return Err(format!("node {b} is reached twice (a cycle?)"));
        }
        let mut buf = [0u8; BLOCK_SIZE];
        disk.read(b, &mut buf)
            .map_err(|_| format!("node {b}: {}", NodeError::IoError))?;
        let n = node::parse(&buf, b, vs).map_err(|e| format!("node {b}: node error: {e}"))?;
        for i in 0..n.nr {
            if n.leaf {
                out(n.key(i), n.value(i));
            } else {
                rec(disk, n.value64(i), vs, depth + 1, seen, out)?;
            }
        }
        Ok(())
    }
    rec(disk, root, leaf_vs, 0, &mut HashSet::new(), out)
}
