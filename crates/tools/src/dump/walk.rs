//! Reading the device trees for a dump: the details and top-level mapping
//! trees (every entry), and each device's bottom-level leaves (their block
//! numbers, in key order, without reading the leaves themselves: the
//! children of the lowest internal level are taken as leaves, and checked
//! when they are read for output).
//!
//! In repair mode an unreadable or malformed node is reported and skipped
//! with everything below it; otherwise it is an error.

use crate::error::{Error, Result};
use crate::report::Report;
use std::collections::HashSet;
use uthin_pdata::btree::node::Node;
use uthin_pdata::btree::{read_node, Value, MAX_DEPTH};
use uthin_pdata::tm::TransactionManager;
use uthin_pdata::MetaBlock;

/// What to do with a damaged node.
#[derive(Clone, Copy)]
pub struct Tolerance<'a> {
    /// Skip damage (repair mode) instead of failing.
    pub repair: bool,
    /// Where skipped damage is reported.
    pub report: &'a Report,
}

impl Tolerance<'_> {
    /// Returns `Ok(())` after reporting `e` in repair mode, else `Err(e)`.
    pub fn absorb(&self, e: Error) -> Result<()> {
        if self.repair {
            self.report.info(&format!("skipping damaged metadata: {e}"));
            Ok(())
        } else {
            Err(e)
        }
    }
}

/// Every (key, value) of a single-level tree, in key order.  Keys out of
/// order are an error (in repair mode: the offending entries are skipped).
pub fn read_tree<V: Value>(
    tm: &TransactionManager,
    root: MetaBlock,
    tol: Tolerance,
) -> Result<Vec<(u64, V)>> {
    fn rec<V: Value>(
        tm: &TransactionManager,
        blk: MetaBlock,
        depth: usize,
        tol: Tolerance,
        seen: &mut HashSet<u64>,
        out: &mut Vec<(u64, V)>,
    ) -> Result<()> {
        if depth >= MAX_DEPTH || !seen.insert(blk.0) {
            return tol.absorb(Error::Pdata(uthin_pdata::Error::corrupt(
                "btree",
                blk,
                "node reached twice or tree too deep (a cycle?)",
            )));
        }
        let d = match read_node(tm, blk, V::SIZE) {
            Ok(d) => d,
            Err(e) => return tol.absorb(e.into()),
        };
        let n = Node::new(&d);
        for i in 0..n.nr_entries() {
            if n.is_leaf() {
                let k = n.key(i);
                if out.last().is_some_and(|l| l.0 >= k) {
                    tol.absorb(Error::Pdata(uthin_pdata::Error::corrupt(
                        "btree node",
                        blk,
                        format!("key {k} out of order"),
                    )))?;
                    continue;
                }
                out.push((k, V::unpack(n.value(i))));
            } else {
                rec(tm, n.child(i), depth + 1, tol, seen, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    rec(tm, root, 0, tol, &mut HashSet::new(), &mut out)?;
    Ok(out)
}

/// The leaf blocks of a bottom-level mapping tree, in key order.
pub fn collect_leaves(
    tm: &TransactionManager,
    root: MetaBlock,
    tol: Tolerance,
) -> Result<Vec<u64>> {
    // The height: follow first children down to a leaf.
    let mut height = 0usize;
    let mut blk = root;
    loop {
        let d = match read_node(tm, blk, 8) {
            Ok(d) => d,
            Err(e) => {
                tol.absorb(e.into())?;
                return Ok(Vec::new());
            }
        };
        let n = Node::new(&d);
        if n.is_leaf() {
            break;
        }
        height += 1;
        if height >= MAX_DEPTH {
            tol.absorb(Error::Pdata(uthin_pdata::Error::corrupt(
                "btree",
                root,
                "deeper than any real tree (a cycle?)",
            )))?;
            return Ok(Vec::new());
        }
        blk = n.child(0);
    }
    let mut out = Vec::new();
    if height == 0 {
        out.push(root.0);
        return Ok(out);
    }
    fn rec(
        tm: &TransactionManager,
        blk: MetaBlock,
        height: usize,
        tol: Tolerance,
        seen: &mut HashSet<u64>,
        out: &mut Vec<u64>,
    ) -> Result<()> {
        if !seen.insert(blk.0) {
            return tol.absorb(Error::Pdata(uthin_pdata::Error::corrupt(
                "btree",
                blk,
                "node reached twice in one tree",
            )));
        }
        let d = match read_node(tm, blk, 8) {
            Ok(d) => d,
            Err(e) => return tol.absorb(e.into()),
        };
        let n = Node::new(&d);
        if n.is_leaf() {
            return tol.absorb(Error::Pdata(uthin_pdata::Error::corrupt(
                "btree",
                blk,
                "btree nodes are not all at the same depth",
            )));
        }
        for i in 0..n.nr_entries() {
            if height == 1 {
                out.push(n.child(i).0);
            } else {
                rec(tm, n.child(i), height - 1, tol, seen, out)?;
            }
        }
        Ok(())
    }
    rec(tm, root, height, tol, &mut HashSet::new(), &mut out)?;
    Ok(out)
}
