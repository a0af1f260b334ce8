//! B-tree node layout (FORMAT.md §2.1):
//!
//! ```text
//! off  size            field
//!   0     4            csum (xor 121107)
//!   4     4            flags: 1 internal, 2 leaf
//!   8     8            blocknr
//!  16     4            nr_entries
//!  20     4            max_entries
//!  24     4            value_size
//!  28     4            padding
//!  32     8*max        keys (u64, strictly ascending)
//!  32+8*max  vs*max    values
//! ```
//!
//! Accessors work on validated block bytes; the header was checked by the
//! node validator, and [`Node::check`] checks what the tree expects (value
//! size, entry counts) before any slot is touched, so nothing here indexes
//! out of bounds on corrupt input.

use crate::error::{Error, Result};
use crate::types::{le32, le64, put32, put64, BlockData, MetaBlock};

/// Node header size.
pub const HEADER: usize = 32;
/// Flag of an internal node.
pub const INTERNAL: u32 = 1;
/// Flag of a leaf.
pub const LEAF: u32 = 2;

/// `max_entries` for a value size: the largest multiple of 3 that fits.
pub const fn max_entries(value_size: usize) -> usize {
    let n = (4096 - HEADER) / (8 + value_size);
    n / 3 * 3
}

/// Read-only view of a node.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    d: &'a BlockData,
}

impl<'a> Node<'a> {
    /// Views `d` as a node.
    pub fn new(d: &'a BlockData) -> Self {
        Node { d }
    }

    /// Checks that the node fits the tree level that expects `leaf_value_size`
    /// bytes per leaf value.
    pub fn check(&self, blk: MetaBlock, leaf_value_size: usize) -> Result<()> {
        let vs = self.value_size();
        let want = if self.is_leaf() { leaf_value_size } else { 8 };
        if vs != want {
            return Err(Error::corrupt(
                "btree node",
                blk,
                format!("value size {vs}, expected {want}"),
            ));
        }
        if self.max_entries() > max_entries(vs) {
            return Err(Error::corrupt(
                "btree node",
                blk,
                format!(
                    "max_entries {} too large for value size {vs}",
                    self.max_entries()
                ),
            ));
        }
        if !self.is_leaf() && self.nr_entries() == 0 {
            return Err(Error::corrupt(
                "btree node",
                blk,
                "internal node with no entries",
            ));
        }
        Ok(())
    }

    pub fn flags(&self) -> u32 {
        le32(self.d, 4)
    }
    pub fn is_leaf(&self) -> bool {
        self.flags() == LEAF
    }
    pub fn nr_entries(&self) -> usize {
        le32(self.d, 16) as usize
    }
    pub fn max_entries(&self) -> usize {
        le32(self.d, 20) as usize
    }
    pub fn value_size(&self) -> usize {
        le32(self.d, 24) as usize
    }
    pub fn key(&self, i: usize) -> u64 {
        le64(self.d, HEADER + 8 * i)
    }
    fn value_off(&self, i: usize) -> usize {
        HEADER + 8 * self.max_entries() + self.value_size() * i
    }
    pub fn value(&self, i: usize) -> &'a [u8] {
        let o = self.value_off(i);
        &self.d[o..o + self.value_size()]
    }
    /// Child pointer of an internal node.
    pub fn child(&self, i: usize) -> MetaBlock {
        MetaBlock(le64(self.d, self.value_off(i)))
    }

    /// Index of the largest key <= k, or None.
    pub fn lower_bound(&self, k: u64) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.nr_entries());
        // Invariant: keys[..lo] <= k < keys[hi..]
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(mid) <= k {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// Index of the smallest key >= k (may equal nr_entries).
    pub fn upper_bound(&self, k: u64) -> usize {
        let (mut lo, mut hi) = (0usize, self.nr_entries());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(mid) < k {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Mutable view of a node.
pub struct NodeMut<'a> {
    d: &'a mut BlockData,
}

impl<'a> NodeMut<'a> {
    pub fn new(d: &'a mut BlockData) -> Self {
        NodeMut { d }
    }

    pub fn ro(&self) -> Node<'_> {
        Node { d: self.d }
    }

    /// Clears the block and writes an empty node header.
    pub fn init(&mut self, leaf: bool, value_size: usize) {
        self.d.fill(0);
        put32(self.d, 4, if leaf { LEAF } else { INTERNAL });
        put32(self.d, 20, max_entries(value_size) as u32);
        put32(self.d, 24, value_size as u32);
    }

    pub fn set_nr_entries(&mut self, n: usize) {
        put32(self.d, 16, n as u32);
    }

    pub fn set_key(&mut self, i: usize, k: u64) {
        put64(self.d, HEADER + 8 * i, k);
    }

    pub fn set_value(&mut self, i: usize, v: &[u8]) {
        let o = self.ro().value_off(i);
        let vs = self.ro().value_size();
        self.d[o..o + vs].copy_from_slice(v);
    }

    pub fn set_child(&mut self, i: usize, c: MetaBlock) {
        self.set_value(i, &c.0.to_le_bytes());
    }

    /// Inserts (k, v) at slot i, shifting the rest right.  The caller made room.
    pub fn insert_at(&mut self, i: usize, k: u64, v: &[u8]) {
        let n = self.ro().nr_entries();
        let vs = self.ro().value_size();
        let ko = HEADER + 8 * i;
        self.d.copy_within(ko..HEADER + 8 * n, ko + 8);
        let vo = self.ro().value_off(i);
        self.d.copy_within(vo..vo + vs * (n - i), vo + vs);
        self.set_nr_entries(n + 1);
        self.set_key(i, k);
        self.set_value(i, v);
    }

    /// Removes slots [i, j), shifting the rest left and zeroing the freed key slots.
    pub fn remove_range(&mut self, i: usize, j: usize) {
        let n = self.ro().nr_entries();
        let vs = self.ro().value_size();
        let cnt = j - i;
        let ko = HEADER + 8 * i;
        self.d.copy_within(ko + 8 * cnt..HEADER + 8 * n, ko);
        let vo = self.ro().value_off(i);
        let vend = self.ro().value_off(n);
        self.d.copy_within(vo + vs * cnt..vend, vo);
        let new_n = n - cnt;
        self.set_nr_entries(new_n);
        let zk = HEADER + 8 * new_n;
        self.d[zk..HEADER + 8 * n].fill(0);
        let zv = self.ro().value_off(new_n);
        self.d[zv..zv + vs * cnt].fill(0);
    }

    /// Appends slots [i, j) of `src` (same value size) at the end.
    pub fn append_from(&mut self, src: Node<'_>, i: usize, j: usize) {
        let n = self.ro().nr_entries();
        let vs = self.ro().value_size();
        for (dst, s) in (n..).zip(i..j) {
            self.set_key(dst, src.key(s));
            let o = self.ro().value_off(dst);
            self.d[o..o + vs].copy_from_slice(src.value(s));
        }
        self.set_nr_entries(n + (j - i));
    }

    /// Prepends slots [i, j) of `src` (same value size) at the front.
    pub fn prepend_from(&mut self, src: Node<'_>, i: usize, j: usize) {
        let n = self.ro().nr_entries();
        let vs = self.ro().value_size();
        let cnt = j - i;
        self.d.copy_within(HEADER..HEADER + 8 * n, HEADER + 8 * cnt);
        let vo = self.ro().value_off(0);
        self.d.copy_within(vo..vo + vs * n, vo + vs * cnt);
        for (dst, s) in (0..).zip(i..j) {
            self.set_key(dst, src.key(s));
            let o = self.ro().value_off(dst);
            self.d[o..o + vs].copy_from_slice(src.value(s));
        }
        self.set_nr_entries(n + cnt);
    }
}
