//! Removal (FORMAT.md §2.6, §2.7): a top-down walk that rebalances the child
//! it is about to enter with its siblings at every internal node, so that the
//! child holds more than a third of its capacity before an entry leaves it.
//! Non-root nodes therefore never fall below `max_entries / 3` entries, the
//! fill thin_check 1.x demands.
//!
//! A range removal enters the leaf holding the next key in range and removes
//! as many in-range entries as it can without under-filling the leaf, then
//! walks again from the next key.

use super::node::{Node, NodeMut};
use super::{even_out, lookup_ge, read_node, shadow_node, too_deep, RefCounter, Value, MAX_DEPTH};
use crate::error::Result;
use crate::tm::{TransactionManager, WriteBlock};
use crate::types::MetaBlock;
use crate::validator::NODE;

/// Removes `key`; returns the new root and the removed value (None if absent;
/// nodes shadowed on the way stay shadowed, which is harmless).
pub fn remove<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    root: MetaBlock,
    key: u64,
) -> Result<(MetaBlock, Option<V>)> {
    let mut removed = None;
    let (root, _) = remove_walk(tm, rc, root, key, key, &mut |v| removed = Some(v))?;
    Ok((root, removed))
}

/// Removes every key in `[begin, end)`; returns the new root and the number
/// of entries removed.
pub fn remove_range<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    mut root: MetaBlock,
    begin: u64,
    end: u64,
) -> Result<(MetaBlock, u64)> {
    let mut total = 0;
    let mut next = begin;
    while next < end {
        let Some((k, _)) = lookup_ge::<V>(tm, root, next)? else {
            break;
        };
        if k >= end {
            break;
        }
        let (r, last) = remove_walk(tm, rc, root, k, end - 1, &mut |_| total += 1)?;
        root = r;
        match last {
            Some(l) if l < u64::MAX => next = l + 1,
            _ => break,
        }
    }
    Ok((root, total))
}

/// One walk from the root to the leaf holding `key`; removes entries with
/// keys in `[key, last]` from that leaf (at least `key` if present).  The
/// bound is inclusive so that `u64::MAX` can be removed.  Returns the new
/// root and the last key removed.
fn remove_walk<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    root: MetaBlock,
    key: u64,
    last_key: u64,
    on_removed: &mut dyn FnMut(V),
) -> Result<(MetaBlock, Option<u64>)> {
    let mut cur = shadow_node::<V, R>(tm, rc, root)?;
    let new_root = cur.loc;
    let mut is_root = true;
    for _ in 0..2 * MAX_DEPTH {
        let n = Node::new(&cur.data);
        if n.is_leaf() {
            let nr = n.nr_entries();
            let t = n.max_entries() / 3;
            let start = n.upper_bound(key);
            let mut stop = start;
            while stop < nr && n.key(stop) <= last_key {
                stop += 1;
            }
            if !is_root {
                // Keep the leaf at least a third full (but remove at least one).
                stop = stop.min(start + nr.saturating_sub(t).max(1));
            }
            let mut last = None;
            for i in start..stop {
                let v = V::unpack(n.value(i));
                last = Some(n.key(i));
                rc.dec(tm, &v)?;
                on_removed(v);
            }
            if stop > start {
                NodeMut::new(cur.bytes()).remove_range(start, stop);
            }
            tm.put(cur, &NODE)?;
            return Ok((new_root, last));
        }
        if n.nr_entries() == 1 {
            collapse::<V, R>(tm, rc, &mut cur)?;
            continue;
        }
        let Some(i) = n.lower_bound(key) else {
            tm.put(cur, &NODE)?;
            return Ok((new_root, None));
        };
        rebalance_children::<V, R>(tm, rc, &mut cur, i)?;
        let n = Node::new(&cur.data);
        if n.nr_entries() == 1 && is_root {
            collapse::<V, R>(tm, rc, &mut cur)?;
            continue;
        }
        let i = n.lower_bound(key).unwrap_or(0);
        let child = shadow_node::<V, R>(tm, rc, n.child(i))?;
        NodeMut::new(cur.bytes()).set_child(i, child.loc);
        tm.put(cur, &NODE)?;
        cur = child;
        is_root = false;
    }
    Err(too_deep(root))
}

/// An internal node with one entry takes over its child's contents (it keeps
/// its own block); the child loses this reference.
fn collapse<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    cur: &mut WriteBlock,
) -> Result<()> {
    let child = Node::new(&cur.data).child(0);
    let d = read_node(tm, child, V::SIZE)?;
    if tm.ref_count(child) > 1 {
        super::inc_children::<V, R>(tm, rc, &d)?;
    }
    cur.bytes().copy_from_slice(&d[..]);
    tm.dec(child)?;
    Ok(())
}

/// Rebalances child `i` of `parent` with its neighbours.
fn rebalance_children<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    parent: &mut WriteBlock,
    i: usize,
) -> Result<()> {
    let nr = Node::new(&parent.data).nr_entries();
    if i == 0 {
        rebalance2::<V, R>(tm, rc, parent, 0)
    } else if i == nr - 1 {
        rebalance2::<V, R>(tm, rc, parent, i - 1)
    } else {
        rebalance3::<V, R>(tm, rc, parent, i - 1)
    }
}

fn shadow_child<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    parent: &mut WriteBlock,
    i: usize,
) -> Result<WriteBlock> {
    let blk = Node::new(&parent.data).child(i);
    let wb = shadow_node::<V, R>(tm, rc, blk)?;
    NodeMut::new(parent.bytes()).set_child(i, wb.loc);
    Ok(wb)
}

/// Merges or evens out children `li` and `li + 1`.
fn rebalance2<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    parent: &mut WriteBlock,
    li: usize,
) -> Result<()> {
    let mut left = shadow_child::<V, R>(tm, rc, parent, li)?;
    let mut right = shadow_child::<V, R>(tm, rc, parent, li + 1)?;
    let (nl, nr) = (
        Node::new(&left.data).nr_entries(),
        Node::new(&right.data).nr_entries(),
    );
    let max = Node::new(&left.data)
        .max_entries()
        .min(Node::new(&right.data).max_entries());
    let t = max / 3;
    if nl + nr < 2 * (t + 1) && nl + nr <= Node::new(&left.data).max_entries() {
        NodeMut::new(left.bytes()).append_from(Node::new(&right.data), 0, nr);
        NodeMut::new(parent.bytes()).remove_range(li + 1, li + 2);
        tm.dec(right.loc)?;
        tm.put(left, &NODE)?;
        return Ok(());
    }
    even_out(&mut left, &mut right, (nl + nr) / 2);
    let rk = Node::new(&right.data).key(0);
    NodeMut::new(parent.bytes()).set_key(li + 1, rk);
    tm.put(left, &NODE)?;
    tm.put(right, &NODE)?;
    Ok(())
}

/// Rebalances children `li`, `li + 1` (the centre) and `li + 2`.
fn rebalance3<V: Value, R: RefCounter<V>>(
    tm: &mut TransactionManager,
    rc: &mut R,
    parent: &mut WriteBlock,
    li: usize,
) -> Result<()> {
    let mut left = shadow_child::<V, R>(tm, rc, parent, li)?;
    let mut centre = shadow_child::<V, R>(tm, rc, parent, li + 1)?;
    let mut right = shadow_child::<V, R>(tm, rc, parent, li + 2)?;
    let n = |w: &WriteBlock| Node::new(&w.data).nr_entries();
    let (nl, nc, nr) = (n(&left), n(&centre), n(&right));
    let max = [&left, &centre, &right]
        .iter()
        .map(|w| Node::new(&w.data).max_entries())
        .min()
        .unwrap_or(0);
    let t = max / 3;
    let total = nl + nc + nr;
    if total < 4 * t + 1 {
        // Empty the centre into its neighbours, drop it, then even out the pair.
        let to_left = (max - nl).min(nc);
        let csrc = centre.data.clone();
        NodeMut::new(left.bytes()).append_from(Node::new(&csrc), 0, to_left);
        NodeMut::new(right.bytes()).prepend_from(Node::new(&csrc), to_left, nc);
        let rk = Node::new(&right.data).key(0);
        {
            let mut p = NodeMut::new(parent.bytes());
            p.set_key(li + 2, rk);
            p.remove_range(li + 1, li + 2);
        }
        tm.dec(centre.loc)?;
        tm.put(left, &NODE)?;
        tm.put(right, &NODE)?;
        return rebalance2::<V, R>(tm, rc, parent, li);
    }
    let target_r = total / 3;
    let target_l = target_r + usize::from(total % 3 != 0);
    // Order the moves so that no node ever holds more than `max`: first the
    // centre gives the right what it lacks (as far as it can) — otherwise a
    // full left could overfill a full centre — then left <-> centre so the
    // left holds target_l, then centre <-> right.
    if nr < target_r {
        let give = (target_r - nr).min(nc);
        even_out(&mut centre, &mut right, nc - give);
    }
    let nc = Node::new(&centre.data).nr_entries();
    if nl < target_l && nc < target_l - nl {
        // The centre cannot supply the left alone: pull from the right first.
        let need = target_l - nl - nc;
        let rsrc = right.data.clone();
        NodeMut::new(centre.bytes()).append_from(Node::new(&rsrc), 0, need);
        NodeMut::new(right.bytes()).remove_range(0, need);
    }
    even_out(&mut left, &mut centre, target_l);
    let pair = Node::new(&centre.data).nr_entries() + Node::new(&right.data).nr_entries();
    even_out(&mut centre, &mut right, pair - target_r);
    let (ck, rk) = (
        Node::new(&centre.data).key(0),
        Node::new(&right.data).key(0),
    );
    {
        let mut p = NodeMut::new(parent.bytes());
        p.set_key(li + 1, ck);
        p.set_key(li + 2, rk);
    }
    tm.put(left, &NODE)?;
    tm.put(centre, &NODE)?;
    tm.put(right, &NODE)?;
    Ok(())
}
