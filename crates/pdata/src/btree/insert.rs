//! Insertion (FORMAT.md §2.5): a top-down walk that shadows every node on the
//! path and splits full nodes on the way down, so a parent always has room for
//! a new child entry.  A full root is split beneath (it keeps its block and
//! becomes an internal node with two children); another full node first
//! shares entries with an unshared sibling that has room (as kernels since
//! 5.14 do, which keeps sequentially filled leaves nearly full), and is
//! split one into two otherwise.

use super::node::{Node, NodeMut};
use super::{even_out, shadow_node, too_deep, RefCounter, Value, MAX_DEPTH};
use crate::error::Result;
use crate::tm::{TransactionManager, WriteBlock};
use crate::types::MetaBlock;
use crate::validator::NODE;

/// Inserts or overwrites `key`.  An overwrite with a value that is not
/// `equal` to the old one decrements the old value.  Returns the new root and
/// the old value.
pub fn insert<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    root: MetaBlock,
    key: u64,
    value: V,
) -> Result<(MetaBlock, Option<V>)> {
    insert_with(tm, rc, root, key, true, |_, _| Ok(value))
}

/// Inserts or overwrites `key` with the value `f` computes from the old one
/// (called once the leaf is shadowed and has room).  With `dec_old` false
/// the old value is not decremented (the caller took care of it, e.g. a
/// sub-tree root that moved by shadowing).
pub fn insert_with<V: Value, R: RefCounter<V>, F>(
    tm: &mut TransactionManager,
    rc: &mut R,
    root: MetaBlock,
    key: u64,
    dec_old: bool,
    f: F,
) -> Result<(MetaBlock, Option<V>)>
where
    F: FnOnce(&mut TransactionManager, Option<V>) -> Result<V>,
{
    let mut cur = shadow_node::<V, R>(tm, rc, root)?;
    let new_root = cur.loc;
    let mut parent: Option<(WriteBlock, usize)> = None;
    // Each level may take one extra round for a split.
    for _ in 0..2 * MAX_DEPTH {
        let (nr, max, leaf, has_key) = {
            let n = Node::new(&cur.data);
            let has = n.is_leaf() && n.lower_bound(key).is_some_and(|i| n.key(i) == key);
            (n.nr_entries(), n.max_entries(), n.is_leaf(), has)
        };
        if nr >= max && !has_key {
            match parent.as_mut() {
                None => split_beneath(tm, &mut cur)?,
                Some((p, pi)) => {
                    let (right, with_left) = match make_room_with_sibling(tm, &mut cur, p, *pi)? {
                        Some(r) => r,
                        None => (split_one_into_two(tm, &mut cur, p, *pi)?, false),
                    };
                    // `right` is cur's left sibling when `with_left`.
                    let (left_node, right_node) = if with_left {
                        (right, cur)
                    } else {
                        (cur, right)
                    };
                    let rkey = Node::new(&right_node.data).key(0);
                    let right_idx = if with_left { *pi } else { *pi + 1 };
                    if key >= rkey {
                        tm.put(left_node, &NODE)?;
                        cur = right_node;
                        *pi = right_idx;
                    } else {
                        tm.put(right_node, &NODE)?;
                        cur = left_node;
                        *pi = right_idx - 1;
                    }
                }
            }
            continue;
        }
        if leaf {
            let old = {
                let n = Node::new(&cur.data);
                match n.lower_bound(key) {
                    Some(i) if n.key(i) == key => Some((i, V::unpack(n.value(i)))),
                    _ => None,
                }
            };
            let new = f(tm, old.map(|o| o.1))?;
            let mut buf = vec![0u8; V::SIZE];
            new.pack(&mut buf);
            match old {
                Some((i, oldv)) => {
                    if dec_old && !rc.equal(&oldv, &new) {
                        rc.dec(tm, &oldv)?;
                    }
                    NodeMut::new(cur.bytes()).set_value(i, &buf);
                }
                None => {
                    let i = Node::new(&cur.data).upper_bound(key);
                    NodeMut::new(cur.bytes()).insert_at(i, key, &buf);
                }
            }
            tm.put(cur, &NODE)?;
            if let Some((p, _)) = parent {
                tm.put(p, &NODE)?;
            }
            return Ok((new_root, old.map(|o| o.1)));
        }
        let i = match Node::new(&cur.data).lower_bound(key) {
            Some(i) => i,
            None => {
                NodeMut::new(cur.bytes()).set_key(0, key);
                0
            }
        };
        let child_blk = Node::new(&cur.data).child(i);
        let child = shadow_node::<V, R>(tm, rc, child_blk)?;
        NodeMut::new(cur.bytes()).set_child(i, child.loc);
        if let Some((p, _)) = parent.take() {
            tm.put(p, &NODE)?;
        }
        parent = Some((cur, i));
        cur = child;
    }
    Err(too_deep(root))
}

/// Moves the root's entries into two new children; the root keeps its block
/// and becomes internal with two entries.
fn split_beneath(tm: &mut TransactionManager, root: &mut WriteBlock) -> Result<()> {
    let n = Node::new(&root.data);
    let nr = n.nr_entries();
    let (leaf, vs) = (n.is_leaf(), n.value_size());
    let mid = nr / 2;
    let mut left = tm.new_block()?;
    let mut right = tm.new_block()?;
    {
        let mut l = NodeMut::new(left.bytes());
        l.init(leaf, vs);
        l.append_from(n, 0, mid);
        let mut r = NodeMut::new(right.bytes());
        r.init(leaf, vs);
        r.append_from(n, mid, nr);
    }
    let (lk, rk) = (Node::new(&left.data).key(0), Node::new(&right.data).key(0));
    let mut rt = NodeMut::new(root.bytes());
    rt.init(false, 8);
    rt.insert_at(0, lk, &left.loc.0.to_le_bytes());
    rt.insert_at(1, rk, &right.loc.0.to_le_bytes());
    tm.put(left, &NODE)?;
    tm.put(right, &NODE)?;
    Ok(())
}

/// Free slots a sibling needs before a full node shares entries with it
/// instead of splitting (the kernel's value since 5.14).
const SIBLING_FREE: usize = 8;

/// Makes room in the full node `cur` (child `pi` of `parent`) by moving
/// entries to an unshared sibling with at least [`SIBLING_FREE`] free slots,
/// the left one first.  Returns the shadowed sibling and whether it is the
/// left one, or None when neither qualifies.
fn make_room_with_sibling(
    tm: &mut TransactionManager,
    cur: &mut WriteBlock,
    parent: &mut WriteBlock,
    pi: usize,
) -> Result<Option<(WriteBlock, bool)>> {
    let p = Node::new(&parent.data);
    let nr = p.nr_entries();
    let vs = Node::new(&cur.data).value_size();
    let candidates = [
        (pi.checked_sub(1), true),
        ((pi + 1 < nr).then_some(pi + 1), false),
    ];
    for (idx, is_left) in candidates {
        let Some(si) = idx else { continue };
        let blk = Node::new(&parent.data).child(si);
        if tm.ref_count(blk) > 1 {
            continue;
        }
        let d = super::read_node(tm, blk, vs)?;
        let sib = Node::new(&d);
        if sib.value_size() != vs || sib.max_entries() - sib.nr_entries() < SIBLING_FREE {
            continue;
        }
        let (mut wb, _) = tm.shadow(blk, &NODE)?;
        let total = sib.nr_entries() + Node::new(&cur.data).nr_entries();
        let mut pm = NodeMut::new(parent.bytes());
        pm.set_child(si, wb.loc);
        if is_left {
            even_out(&mut wb, cur, total / 2);
            pm.set_key(pi, Node::new(&cur.data).key(0));
        } else {
            even_out(cur, &mut wb, total / 2);
            pm.set_key(si, Node::new(&wb.data).key(0));
        }
        return Ok(Some((wb, is_left)));
    }
    Ok(None)
}

/// Splits `cur` (child `pi` of `parent`) into itself and a new right sibling,
/// and adds the sibling to the parent.  Returns the sibling.
fn split_one_into_two(
    tm: &mut TransactionManager,
    cur: &mut WriteBlock,
    parent: &mut WriteBlock,
    pi: usize,
) -> Result<WriteBlock> {
    let mut right = tm.new_block()?;
    let n = Node::new(&cur.data);
    let nr = n.nr_entries();
    let mid = nr / 2;
    {
        let mut r = NodeMut::new(right.bytes());
        r.init(n.is_leaf(), n.value_size());
        r.append_from(n, mid, nr);
    }
    NodeMut::new(cur.bytes()).remove_range(mid, nr);
    let rk = Node::new(&right.data).key(0);
    NodeMut::new(parent.bytes()).insert_at(pi + 1, rk, &right.loc.0.to_le_bytes());
    Ok(right)
}
