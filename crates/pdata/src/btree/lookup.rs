//! Searches and ordered walks (FORMAT.md §2.4).

use super::node::Node;
use super::{read_node, too_deep, Value, MAX_DEPTH};
use crate::error::{Error, Result};
use crate::tm::TransactionManager;
use crate::types::MetaBlock;
use std::collections::HashSet;
use std::ops::ControlFlow;

/// Error for a node reached twice in one tree.  Sharing happens only between
/// trees; inside one tree a node reached twice makes walks exponential (a
/// chain of internal nodes whose children are all the next node).
fn reached_twice(blk: MetaBlock) -> Error {
    Error::corrupt("btree", blk, "node reached twice in one tree")
}

/// The value stored under `key`.
pub fn lookup<V: Value>(tm: &TransactionManager, root: MetaBlock, key: u64) -> Result<Option<V>> {
    let mut blk = root;
    for _ in 0..MAX_DEPTH {
        let d = read_node(tm, blk, V::SIZE)?;
        let n = Node::new(&d);
        let Some(i) = n.lower_bound(key) else {
            return Ok(None);
        };
        if n.is_leaf() {
            return Ok((n.key(i) == key).then(|| V::unpack(n.value(i))));
        }
        blk = n.child(i);
    }
    Err(too_deep(root))
}

/// The first (key, value) with key >= `key`.
pub fn lookup_ge<V: Value>(
    tm: &TransactionManager,
    root: MetaBlock,
    key: u64,
) -> Result<Option<(u64, V)>> {
    fn rec<V: Value>(
        tm: &TransactionManager,
        blk: MetaBlock,
        key: u64,
        depth: usize,
        seen: &mut HashSet<u64>,
    ) -> Result<Option<(u64, V)>> {
        if depth >= MAX_DEPTH {
            return Err(too_deep(blk));
        }
        if !seen.insert(blk.0) {
            return Err(reached_twice(blk));
        }
        let d = read_node(tm, blk, V::SIZE)?;
        let n = Node::new(&d);
        if n.is_leaf() {
            let i = n.upper_bound(key);
            return Ok((i < n.nr_entries()).then(|| (n.key(i), V::unpack(n.value(i)))));
        }
        let mut i = n.lower_bound(key).unwrap_or(0);
        while i < n.nr_entries() {
            if let Some(r) = rec(tm, n.child(i), key, depth + 1, seen)? {
                return Ok(Some(r));
            }
            i += 1;
        }
        Ok(None)
    }
    rec(tm, root, key, 0, &mut HashSet::new())
}

fn edge_key<V: Value>(tm: &TransactionManager, root: MetaBlock, last: bool) -> Result<Option<u64>> {
    let mut blk = root;
    for _ in 0..MAX_DEPTH {
        let d = read_node(tm, blk, V::SIZE)?;
        let n = Node::new(&d);
        let nr = n.nr_entries();
        if nr == 0 {
            return Ok(None);
        }
        let i = if last { nr - 1 } else { 0 };
        if n.is_leaf() {
            return Ok(Some(n.key(i)));
        }
        blk = n.child(i);
    }
    Err(too_deep(root))
}

/// The highest key in the tree.
pub fn highest_key<V: Value>(tm: &TransactionManager, root: MetaBlock) -> Result<Option<u64>> {
    edge_key::<V>(tm, root, true)
}

/// The lowest key in the tree.
pub fn lowest_key<V: Value>(tm: &TransactionManager, root: MetaBlock) -> Result<Option<u64>> {
    edge_key::<V>(tm, root, false)
}

/// Calls `f` for every (key, value) with `begin <= key < end`, in key order,
/// until it breaks.  Keys out of order are reported as corruption.
pub fn walk<V: Value>(
    tm: &TransactionManager,
    root: MetaBlock,
    begin: u64,
    end: u64,
    f: &mut dyn FnMut(u64, V) -> Result<ControlFlow<()>>,
) -> Result<()> {
    let mut w = Walker {
        tm,
        begin,
        end,
        last: None,
        seen: HashSet::new(),
        f,
    };
    w.rec(root, 0).map(|_| ())
}

struct Walker<'a, 'f, V> {
    tm: &'a TransactionManager,
    begin: u64,
    end: u64,
    last: Option<u64>,
    seen: HashSet<u64>,
    f: &'f mut dyn FnMut(u64, V) -> Result<ControlFlow<()>>,
}

impl<V: Value> Walker<'_, '_, V> {
    fn rec(&mut self, blk: MetaBlock, depth: usize) -> Result<ControlFlow<()>> {
        if depth >= MAX_DEPTH {
            return Err(too_deep(blk));
        }
        if !self.seen.insert(blk.0) {
            return Err(reached_twice(blk));
        }
        let d = read_node(self.tm, blk, V::SIZE)?;
        let n = Node::new(&d);
        let nr = n.nr_entries();
        if n.is_leaf() {
            for i in n.upper_bound(self.begin)..nr {
                let k = n.key(i);
                if k >= self.end {
                    return Ok(ControlFlow::Break(()));
                }
                if self.last.is_some_and(|l| k <= l) {
                    return Err(Error::corrupt(
                        "btree node",
                        blk,
                        format!("key {k} out of order"),
                    ));
                }
                self.last = Some(k);
                if (self.f)(k, V::unpack(n.value(i)))?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
            return Ok(ControlFlow::Continue(()));
        }
        let start = n.lower_bound(self.begin).unwrap_or(0);
        for i in start..nr {
            if i > start && n.key(i) >= self.end {
                return Ok(ControlFlow::Break(()));
            }
            if self.rec(n.child(i), depth + 1)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// Calls `f(block, depth, is_leaf)` for every node of the tree, parents before
/// children (used to account for metadata blocks).
pub fn walk_nodes<V: Value>(
    tm: &TransactionManager,
    root: MetaBlock,
    f: &mut dyn FnMut(MetaBlock, &super::node::Node<'_>) -> Result<bool>,
) -> Result<()> {
    fn rec<V: Value>(
        tm: &TransactionManager,
        blk: MetaBlock,
        depth: usize,
        f: &mut dyn FnMut(MetaBlock, &super::node::Node<'_>) -> Result<bool>,
    ) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(too_deep(blk));
        }
        let d = read_node(tm, blk, V::SIZE)?;
        let n = Node::new(&d);
        if !f(blk, &n)? || n.is_leaf() {
            return Ok(());
        }
        for i in 0..n.nr_entries() {
            rec::<V>(tm, n.child(i), depth + 1, f)?;
        }
        Ok(())
    }
    rec::<V>(tm, root, 0, f)
}
