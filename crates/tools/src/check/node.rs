//! Node-local validation of B-tree nodes (FORMAT.md §2.1-2.3), with
//! thin_check 1.x's error kinds.  Checks that depend on where a node sits
//! (key ranges, under-filling of non-root nodes, tree height) are made by the
//! walkers.

use std::fmt;
use uthin_pdata::checksum::{self, BlockKind};
use uthin_pdata::types::BlockData;

/// Node header size.
pub const HEADER: usize = 32;

/// Little-endian u64 at `o` (inlined: this is the checker's hot path).
#[inline(always)]
pub fn le64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// Little-endian u32 at `o`.
#[inline(always)]
pub fn le32(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(a)
}

/// What is wrong with a node on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeError {
    IoError,
    BeyondEnd,
    NotANode(BlockKind),
    ChecksumError,
    BlockNrMismatch(u64),
    ValueSizeMismatch { found: u32, expected: u32 },
    MaxEntriesTooLarge(u32),
    NumEntriesTooLarge(u32, u32),
    KeysOutOfOrder(u32),
    NoEntries,
    LeafExpected,
    InternalExpected,
    TooDeep,
}

impl NodeError {
    /// Whether it is an I/O error.
    pub fn is_io(&self) -> bool {
        matches!(self, NodeError::IoError | NodeError::BeyondEnd)
    }

    /// Whether it is a checksum error.
    pub fn is_checksum(&self) -> bool {
        matches!(self, NodeError::ChecksumError)
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use NodeError::*;
        match self {
            IoError => write!(f, "io error"),
            BeyondEnd => write!(f, "io error (beyond the end of the usable metadata device)"),
            NotANode(k) => write!(
                f,
                "not a btree node (its checksum is that of a {})",
                k.name()
            ),
            ChecksumError => write!(f, "checksum error"),
            BlockNrMismatch(n) => write!(f, "blocknr mismatch (the node says it is block {n})"),
            ValueSizeMismatch { found, expected } => {
                write!(f, "value_size mismatch ({found}, expected {expected})")
            }
            MaxEntriesTooLarge(m) => write!(f, "max_entries is too large ({m})"),
            NumEntriesTooLarge(n, m) => write!(f, "nr_entries > max_entries ({n} > {m})"),
            KeysOutOfOrder(i) => write!(f, "keys out of order (at entry {i})"),
            NoEntries => write!(f, "internal node with no entries"),
            LeafExpected => write!(
                f,
                "internal node where the tree's other leaves are (unbalanced tree)"
            ),
            InternalExpected => write!(
                f,
                "leaf where the tree has internal nodes (unbalanced tree)"
            ),
            TooDeep => write!(f, "tree deeper than 16 levels (a cycle?)"),
        }
    }
}

/// A validated node.
#[derive(Clone, Copy)]
pub struct NodeView<'a> {
    d: &'a BlockData,
    pub leaf: bool,
    pub nr: usize,
    pub max: usize,
    vs: usize,
}

impl<'a> NodeView<'a> {
    /// Key `i`.
    #[inline]
    pub fn key(&self, i: usize) -> u64 {
        le64(self.d, HEADER + 8 * i)
    }

    /// Value `i`.
    #[inline]
    pub fn value(&self, i: usize) -> &'a [u8] {
        let o = HEADER + 8 * self.max + self.vs * i;
        &self.d[o..o + self.vs]
    }

    /// Value `i` as a u64 (child pointers, mapping values).
    #[inline]
    pub fn value64(&self, i: usize) -> u64 {
        le64(self.d, HEADER + 8 * self.max + self.vs * i)
    }

    /// The keys.
    pub fn keys(&self) -> Vec<u64> {
        (0..self.nr).map(|i| self.key(i)).collect()
    }

    /// The child pointers of an internal node.
    pub fn children(&self) -> Vec<u64> {
        (0..self.nr).map(|i| self.value64(i)).collect()
    }

    /// Under-filled if it is not a root (fewer than max_entries / 3 entries).
    pub fn underfull(&self) -> bool {
        self.nr < self.max / 3
    }
}

/// Checks the checksum of `d` as a block of `kind`: a block with another
/// kind's checksum is told apart from garbage.
pub fn check_kind(d: &BlockData, kind: BlockKind) -> Result<(), NodeError> {
    match checksum::classify(d) {
        Some(k) if k == kind => Ok(()),
        Some(k) => Err(NodeError::NotANode(k)),
        None => Err(NodeError::ChecksumError),
    }
}

/// Validates `d`, read from block `loc`, as a node of a tree whose leaves
/// hold `leaf_vs`-byte values.  (`max_entries % 3` is left to the caller: it
/// is a non-fatal error.)
pub fn parse(d: &BlockData, loc: u64, leaf_vs: usize) -> Result<NodeView<'_>, NodeError> {
    check_kind(d, BlockKind::Node)?;
    let nr_field = le64(d, 8);
    if nr_field != loc {
        return Err(NodeError::BlockNrMismatch(nr_field));
    }
    let leaf = le32(d, 4) == 2;
    let nr = le32(d, 16);
    let max = le32(d, 20);
    let vs = le32(d, 24);
    let want = if leaf { leaf_vs as u32 } else { 8 };
    if vs != want {
        return Err(NodeError::ValueSizeMismatch {
            found: vs,
            expected: want,
        });
    }
    if HEADER as u64 + (8 + vs as u64) * max as u64 > d.len() as u64 {
        return Err(NodeError::MaxEntriesTooLarge(max));
    }
    if nr > max {
        return Err(NodeError::NumEntriesTooLarge(nr, max));
    }
    if !leaf && nr == 0 {
        return Err(NodeError::NoEntries);
    }
    let n = NodeView {
        d,
        leaf,
        nr: nr as usize,
        max: max as usize,
        vs: vs as usize,
    };
    let mut last = None;
    for i in 0..n.nr {
        let k = n.key(i);
        if last.is_some_and(|l| k <= l) {
            return Err(NodeError::KeysOutOfOrder(i as u32));
        }
        last = Some(k);
    }
    Ok(n)
}

/// A key range `[start, end)`; `None` is unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Option<u64>,
    pub end: Option<u64>,
}

impl KeyRange {
    /// Whether `lo..=hi` lies inside.
    pub fn holds(&self, lo: u64, hi: u64) -> bool {
        self.start.is_none_or(|s| lo >= s) && self.end.is_none_or(|e| hi < e)
    }

    /// The range of child `i` of an internal node with `keys` (sorted).
    pub fn child(&self, keys: &[u64], i: usize) -> KeyRange {
        KeyRange {
            start: Some(keys[i]),
            end: keys.get(i + 1).copied().or(self.end),
        }
    }
}

impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.start, self.end) {
            (None, None) => write!(f, "[..]"),
            (None, Some(e)) => write!(f, "[..{e})"),
            (Some(s), None) => write!(f, "[{s}..]"),
            (Some(s), Some(e)) => write!(f, "[{s}..{e})"),
        }
    }
}
