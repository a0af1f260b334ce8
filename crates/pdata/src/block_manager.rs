//! The block manager: a bounded cache of validated 4 KiB metadata blocks.
//!
//! Reads go through a [`Validator`]; a block that fails validation is never
//! cached nor returned.  Writes are buffered as dirty entries and sealed
//! (block number + checksum) by their validator when they reach the device:
//! at [`BlockManager::flush_dirty`], or earlier when the cache must evict them.
//! Writing a dirty block early is safe because the transaction manager only
//! ever dirties blocks that the committed superblock cannot reach.
//!
//! In read-only mode every write fails with [`Error::ReadOnly`].

use crate::checksum::BlockKind;
use crate::error::{Error, Result};
use crate::types::{BlockData, MetaBlock};
use crate::validator::Validator;
use lru::LruCache;
use parking_lot::Mutex;
use std::num::NonZeroUsize;
use std::sync::Arc;
use uthin_block_io::{BlockDevice, SharedDevice, BLOCK_SIZE};

/// Default cache capacity in blocks (32 MiB).
pub const DEFAULT_CACHE_BLOCKS: usize = 8192;

struct Entry {
    data: Arc<BlockData>,
    dirty: Option<&'static dyn Validator>,
    /// The kind the block was validated as (or will be sealed as).  A cache
    /// hit asking for another kind is refused, as an uncached read would be.
    kind: BlockKind,
}

/// The error for a cached block asked for as another kind.
fn wrong_kind(blk: MetaBlock, v: &dyn Validator, cached: BlockKind) -> Error {
    Error::corrupt(
        v.kind().name(),
        blk,
        format!("block holds a {}", cached.name()),
    )
}

/// Cached, validated access to the metadata device.
pub struct BlockManager {
    dev: SharedDevice,
    nr_blocks: u64,
    cache: Mutex<LruCache<u64, Entry>>,
    read_only: bool,
}

impl BlockManager {
    /// A block manager over `dev` with room for `cache_blocks` blocks.
    pub fn new(dev: SharedDevice, cache_blocks: usize, read_only: bool) -> Result<Self> {
        let len = dev.len().map_err(|e| Error::Io {
            blk: MetaBlock(0),
            source: e,
        })?;
        let cap = NonZeroUsize::new(cache_blocks.max(16)).expect("non-zero");
        Ok(BlockManager {
            dev,
            nr_blocks: len / BLOCK_SIZE as u64,
            cache: Mutex::new(LruCache::new(cap)),
            read_only,
        })
    }

    /// Number of whole 4 KiB blocks on the device.
    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// Re-reads the device size (after the device grew).
    pub fn refresh_size(&mut self) -> Result<u64> {
        let len = self.dev.len().map_err(|e| Error::Io {
            blk: MetaBlock(0),
            source: e,
        })?;
        self.nr_blocks = len / BLOCK_SIZE as u64;
        Ok(self.nr_blocks)
    }

    /// The underlying device.
    pub fn device(&self) -> &SharedDevice {
        &self.dev
    }

    /// Whether writes are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Switches read-only mode.  Going read-only drops dirty blocks only at
    /// [`BlockManager::discard_dirty`]; callers abort first.
    pub fn set_read_only(&mut self, ro: bool) {
        self.read_only = ro;
    }

    fn check_range(&self, blk: MetaBlock) -> Result<()> {
        if blk.0 >= self.nr_blocks {
            return Err(Error::corrupt(
                "block reference",
                blk,
                format!(
                    "beyond the end of the metadata device ({} blocks)",
                    self.nr_blocks
                ),
            ));
        }
        Ok(())
    }

    /// Reads a block without validation (superblock probing, repair scans).
    pub fn read_raw(&self, blk: MetaBlock) -> Result<Box<BlockData>> {
        self.check_range(blk)?;
        if let Some(e) = self.cache.lock().peek(&blk.0) {
            return Ok(Box::new(*e.data));
        }
        let mut buf = Box::new([0u8; BLOCK_SIZE]);
        self.dev
            .read_at(&mut buf[..], blk.byte_offset())
            .map_err(|e| Error::Io { blk, source: e })?;
        Ok(buf)
    }

    /// Reads and validates a block.
    pub fn read(&self, blk: MetaBlock, v: &'static dyn Validator) -> Result<Arc<BlockData>> {
        if let Some(e) = self.cache.lock().get(&blk.0) {
            if e.kind != v.kind() {
                return Err(wrong_kind(blk, v, e.kind));
            }
            return Ok(e.data.clone());
        }
        self.check_range(blk)?;
        let mut buf = Arc::new([0u8; BLOCK_SIZE]);
        self.dev
            .read_at(
                &mut Arc::get_mut(&mut buf).expect("fresh")[..],
                blk.byte_offset(),
            )
            .map_err(|e| Error::Io { blk, source: e })?;
        v.check(blk, &buf)?;
        self.insert(blk, buf.clone(), None, v.kind())?;
        Ok(buf)
    }

    /// Takes a block out of the cache for modification (reading and validating
    /// it if needed).  Return it with [`BlockManager::put_dirty`].
    pub fn take(&self, blk: MetaBlock, v: &'static dyn Validator) -> Result<Arc<BlockData>> {
        {
            let mut c = self.cache.lock();
            if let Some(e) = c.peek(&blk.0) {
                if e.kind != v.kind() {
                    return Err(wrong_kind(blk, v, e.kind));
                }
                return Ok(c.pop(&blk.0).expect("present").data);
            }
        }
        self.read(blk, v)?;
        Ok(self
            .cache
            .lock()
            .pop(&blk.0)
            .map(|e| e.data)
            .expect("just inserted"))
    }

    /// Stores a modified block; it reaches the device at the next flush or
    /// eviction, sealed by `v`.
    pub fn put_dirty(
        &self,
        blk: MetaBlock,
        data: Arc<BlockData>,
        v: &'static dyn Validator,
    ) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.check_range(blk)?;
        self.insert(blk, data, Some(v), v.kind())
    }

    fn insert(
        &self,
        blk: MetaBlock,
        data: Arc<BlockData>,
        dirty: Option<&'static dyn Validator>,
        kind: BlockKind,
    ) -> Result<()> {
        let evicted = {
            let mut c = self.cache.lock();
            let ev = c.push(blk.0, Entry { data, dirty, kind });
            match ev {
                Some((k, e)) if k != blk.0 => Some((k, e)),
                _ => None,
            }
        };
        if let Some((k, e)) = evicted {
            if let Some(v) = e.dirty {
                if let Err(err) = self.write_out(MetaBlock(k), &e.data, v) {
                    // Keep it so the data is not lost; the caller sees the
                    // error.  The cache is full (the new entry took the
                    // slot), so grow it by one: a plain push would evict, and
                    // drop, another block, perhaps dirty, while the
                    // transaction goes on if the caller was a mere query.
                    let mut c = self.cache.lock();
                    let cap = c.cap().saturating_add(1);
                    c.resize(cap);
                    c.push(k, e);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    fn write_out(&self, blk: MetaBlock, data: &BlockData, v: &'static dyn Validator) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let mut buf = Box::new(*data);
        v.prepare(blk, &mut buf);
        self.dev
            .write_at(&buf[..], blk.byte_offset())
            .map_err(|e| Error::Io { blk, source: e })
    }

    /// Writes a block straight to the device (the superblock), sealed by `v`,
    /// and caches it clean.
    pub fn write_now(
        &self,
        blk: MetaBlock,
        data: &BlockData,
        v: &'static dyn Validator,
    ) -> Result<()> {
        self.check_range(blk)?;
        let mut buf = Box::new(*data);
        v.prepare(blk, &mut buf);
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.dev
            .write_at(&buf[..], blk.byte_offset())
            .map_err(|e| Error::Io { blk, source: e })?;
        self.cache.lock().pop(&blk.0);
        Ok(())
    }

    /// Writes every dirty block (in block order) and leaves them cached clean.
    pub fn flush_dirty(&self) -> Result<()> {
        let mut dirty: Vec<(u64, Arc<BlockData>, &'static dyn Validator)> = {
            let c = self.cache.lock();
            c.iter()
                .filter_map(|(k, e)| e.dirty.map(|v| (*k, e.data.clone(), v)))
                .collect()
        };
        dirty.sort_unstable_by_key(|d| d.0);
        for (k, data, v) in &dirty {
            self.write_out(MetaBlock(*k), data, *v)?;
        }
        let mut c = self.cache.lock();
        for (k, data, _) in dirty {
            if let Some(e) = c.peek_mut(&k) {
                if Arc::ptr_eq(&e.data, &data) {
                    e.dirty = None;
                }
            }
        }
        Ok(())
    }

    /// Issues a cache flush on the device.
    pub fn flush_device(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.dev.flush().map_err(Error::Flush)
    }

    /// Forgets every cached block (clean and dirty): used by abort.
    pub fn discard_all(&self) {
        self.cache.lock().clear();
    }

    /// Number of dirty blocks held.
    pub fn nr_dirty(&self) -> usize {
        self.cache
            .lock()
            .iter()
            .filter(|(_, e)| e.dirty.is_some())
            .count()
    }
}
