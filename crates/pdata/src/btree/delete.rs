//! Deep delete (FORMAT.md §2.8): drops a reference to a (sub)tree; nodes that
//! were shared just lose a count, nodes that were not are visited, their
//! children or values released, and freed.

use super::node::Node;
use super::{read_node, too_deep, RefCounter, Value, MAX_DEPTH};
use crate::error::Result;
use crate::tm::TransactionManager;
use crate::types::MetaBlock;

/// Releases one reference to the tree rooted at `root`.
pub fn delete_tree<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    root: MetaBlock,
) -> Result<()> {
    rec::<V, R>(tm, rc, root, 0)
}

fn rec<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    blk: MetaBlock,
    depth: usize,
) -> Result<()> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(blk));
    }
    if tm.ref_count(blk) > 1 {
        tm.dec(blk)?;
        return Ok(());
    }
    let d = read_node(tm, blk, V::SIZE)?;
    let n = Node::new(&d);
    for i in 0..n.nr_entries() {
        if n.is_leaf() {
            rc.dec(tm, &V::unpack(n.value(i)))?;
        } else {
            rec::<V, R>(tm, rc, n.child(i), depth + 1)?;
        }
    }
    tm.dec(blk)?;
    Ok(())
}
