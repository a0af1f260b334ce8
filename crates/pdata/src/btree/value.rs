//! Value types stored in B-tree leaves, and the reference semantics of values
//! (inc / dec / equal) that shadowing, overwrites and deletes apply.

use crate::error::Result;
use crate::tm::TransactionManager;
use crate::types::{le32, le64, MetaBlock};
use std::fmt::Debug;

/// A fixed-size little-endian value.
pub trait Value: Copy + PartialEq + Debug {
    /// Bytes per value on disk.
    const SIZE: usize;
    /// Encodes into `out` (exactly `SIZE` bytes).
    fn pack(&self, out: &mut [u8]);
    /// Decodes from `b` (exactly `SIZE` bytes).
    fn unpack(b: &[u8]) -> Self;
}

impl Value for u64 {
    const SIZE: usize = 8;
    fn pack(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn unpack(b: &[u8]) -> Self {
        le64(b, 0)
    }
}

impl Value for u32 {
    const SIZE: usize = 4;
    fn pack(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_le_bytes());
    }
    fn unpack(b: &[u8]) -> Self {
        le32(b, 0)
    }
}

/// What values reference, and how copies and removals adjust it.
pub trait RefCounter<V: Value> {
    /// A new reference to what `v` points to (a shared leaf was copied).
    fn inc(&mut self, tm: &mut TransactionManager, v: &V) -> Result<()>;
    /// A reference to what `v` points to went away.
    fn dec(&mut self, tm: &mut TransactionManager, v: &V) -> Result<()>;
    /// Whether two values reference the same thing (an overwrite with an
    /// equal value decrements nothing).
    fn equal(&self, a: &V, b: &V) -> bool {
        a == b
    }
}

/// Values that reference nothing.
pub struct NoRefs;

impl<V: Value> RefCounter<V> for NoRefs {
    fn inc(&mut self, _: &mut TransactionManager, _: &V) -> Result<()> {
        Ok(())
    }
    fn dec(&mut self, _: &mut TransactionManager, _: &V) -> Result<()> {
        Ok(())
    }
}

/// Values that are metadata block numbers counted in the metadata space map
/// (dec only drops the count; it does not walk what the block holds).
pub struct MetaBlockRefs;

impl RefCounter<u64> for MetaBlockRefs {
    fn inc(&mut self, tm: &mut TransactionManager, v: &u64) -> Result<()> {
        tm.inc(MetaBlock(*v))
    }
    fn dec(&mut self, tm: &mut TransactionManager, v: &u64) -> Result<()> {
        tm.dec(MetaBlock(*v)).map(|_| ())
    }
}
