//! Copy-on-write B-trees in the kernel's on-disk format, generic over the leaf
//! value type.  A tree is named by its root block; every mutating operation
//! returns the (possibly new) root.  Multi-level trees (the thin mapping tree)
//! are built by the caller from single-level trees whose values are roots.
//!
//! Module map: [`node`] layout, [`value`] value types and reference
//! semantics, [`lookup`] searches and ordered walks, [`insert`], [`remove`]
//! (single keys and key ranges, with the kernel's rebalancing), [`delete`]
//! (deep delete).

pub mod builder;
pub mod delete;
pub mod insert;
pub mod lookup;
pub mod node;
pub mod remove;
pub mod value;

pub use delete::delete_tree;
pub use insert::{insert, insert_with};
pub use lookup::{highest_key, lookup, lookup_ge, lowest_key, walk, walk_nodes};
pub use remove::{remove, remove_range};
pub use value::{MetaBlockRefs, NoRefs, RefCounter, Value};

use crate::error::{Error, Result};
use crate::tm::{TransactionManager, WriteBlock};
use crate::types::{BlockData, MetaBlock};
use crate::validator::NODE;
use node::{Node, NodeMut};
use std::sync::Arc;

/// Deepest tree accepted: far beyond any real tree (a 3-level tree of
/// 84-entry nodes already holds 592k keys), it bounds recursion on corrupt
/// input that loops.
pub const MAX_DEPTH: usize = 16;

/// Reads and checks a node of a tree whose leaves hold `vs`-byte values.
pub fn read_node(tm: &TransactionManager, blk: MetaBlock, vs: usize) -> Result<Arc<BlockData>> {
    let d = tm.read(blk, &NODE)?;
    Node::new(&d).check(blk, vs)?;
    Ok(d)
}

/// Creates an empty tree (one empty leaf) and returns its root.
pub fn empty_tree<V: Value>(tm: &mut TransactionManager) -> Result<MetaBlock> {
    let mut wb = tm.new_block()?;
    NodeMut::new(wb.bytes()).init(true, V::SIZE);
    let loc = wb.loc;
    tm.put(wb, &NODE)?;
    Ok(loc)
}

/// Increments everything a node points to (its children, or its values).
pub fn inc_children<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    d: &BlockData,
) -> Result<()> {
    let n = Node::new(d);
    if n.is_leaf() {
        for i in 0..n.nr_entries() {
            rc.inc(tm, &V::unpack(n.value(i)))?;
        }
    } else {
        for i in 0..n.nr_entries() {
            tm.inc(n.child(i))?;
        }
    }
    Ok(())
}

/// Shadows a node, checks it, and if it was shared increments what it points to.
pub fn shadow_node<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    blk: MetaBlock,
) -> Result<WriteBlock> {
    let (wb, shared) = tm.shadow(blk, &NODE)?;
    Node::new(&wb.data).check(blk, V::SIZE)?;
    if shared {
        inc_children::<V, R>(tm, rc, &wb.data)?;
    }
    Ok(wb)
}

/// Error for a tree deeper than [`MAX_DEPTH`].
pub fn too_deep(blk: MetaBlock) -> Error {
    Error::corrupt(
        "btree",
        blk,
        format!("deeper than {MAX_DEPTH} levels (a cycle?)"),
    )
}

/// Moves entries between two adjacent nodes until the left holds `target`.
pub(crate) fn even_out(left: &mut WriteBlock, right: &mut WriteBlock, target: usize) {
    let nl = Node::new(&left.data).nr_entries();
    if nl > target {
        let src = left.data.clone();
        NodeMut::new(right.bytes()).prepend_from(Node::new(&src), target, nl);
        NodeMut::new(left.bytes()).remove_range(target, nl);
    } else if nl < target {
        let src = right.data.clone();
        let take = target - nl;
        NodeMut::new(left.bytes()).append_from(Node::new(&src), 0, take);
        NodeMut::new(right.bytes()).remove_range(0, take);
    }
}
