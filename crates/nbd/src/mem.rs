//! [`MemExport`]: a sparse in-memory export for tests and benchmarks.
//! Memory is allocated per 64 KiB chunk on first write; a chunk never
//! written (or trimmed whole) is a hole and reads as zeroes.  Chunks live in
//! 64 lock shards so concurrent requests rarely contend.

use crate::export::{BlockSizes, Export, ExportError, Extent, Result, ZeroOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Allocation unit of [`MemExport`].
pub const CHUNK: u64 = 64 << 10;
const SHARDS: u64 = 64;
/// Most extents one block status answer describes.
const MAX_EXTENTS: usize = 1024;

type Shard = HashMap<u64, Box<[u8]>>;

/// A sparse export held in memory.
pub struct MemExport {
    size: u64,
    read_only: bool,
    description: Option<String>,
    sizes: BlockSizes,
    shards: Box<[RwLock<Shard>]>,
    flushes: AtomicU64,
}

/// One chunk's part of a request: chunk index, offset in the chunk, length,
/// and offset from the start of the request.
struct Piece {
    chunk: u64,
    at: usize,
    len: usize,
    done: usize,
}

fn pieces(offset: u64, len: u64) -> impl Iterator<Item = Piece> {
    let end = offset.saturating_add(len);
    let mut pos = offset;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let chunk = pos / CHUNK;
        let at = pos % CHUNK;
        let n = (CHUNK - at).min(end - pos);
        let p = Piece {
            chunk,
            at: at as usize,
            len: n as usize,
            done: (pos - offset) as usize,
        };
        pos += n;
        Some(p)
    })
}

impl MemExport {
    /// An empty (all holes) export of `size` bytes.
    pub fn new(size: u64) -> Self {
        MemExport {
            size,
            read_only: false,
            description: None,
            sizes: BlockSizes::default(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            flushes: AtomicU64::new(0),
        }
    }

    /// Refuse writes.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Set the description shown by `NBD_OPT_LIST` and `NBD_OPT_INFO`.
    pub fn with_description(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }

    /// Advertise other block sizes.
    pub fn with_block_sizes(mut self, sizes: BlockSizes) -> Self {
        self.sizes = sizes;
        self
    }

    /// Number of allocated 64 KiB chunks.
    pub fn allocated_chunks(&self) -> usize {
        (0..SHARDS as usize)
            .map(|i| self.read(i as u64).len())
            .sum()
    }

    /// FLUSH requests seen so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    fn read(&self, chunk: u64) -> RwLockReadGuard<'_, Shard> {
        self.shards[(chunk % SHARDS) as usize]
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, chunk: u64) -> RwLockWriteGuard<'_, Shard> {
        self.shards[(chunk % SHARDS) as usize]
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(ExportError::Invalid(format!(
                "range {offset:#x}+{len:#x} beyond the end ({:#x})",
                self.size
            ))),
        }
    }

    fn check_write(&self, offset: u64, len: u64) -> Result<()> {
        if self.read_only {
            return Err(ExportError::ReadOnly);
        }
        self.check(offset, len)
    }

    /// Zero `[offset, offset+len)`; chunks covered whole are dropped when
    /// `unmap`, otherwise every chunk is allocated.
    fn zero(&self, offset: u64, len: u64, unmap: bool) {
        for p in pieces(offset, len) {
            let mut shard = self.write(p.chunk);
            if unmap && p.len as u64 == CHUNK {
                shard.remove(&p.chunk);
            } else if let Some(c) = shard.get_mut(&p.chunk) {
                c[p.at..p.at + p.len].fill(0);
            } else if !unmap {
                shard.insert(p.chunk, vec![0u8; CHUNK as usize].into_boxed_slice());
            }
        }
    }
}

impl Export for MemExport {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn description(&self) -> Option<String> {
        self.description.clone()
    }

    fn block_sizes(&self) -> BlockSizes {
        self.sizes
    }

    fn can_multi_conn(&self) -> bool {
        true
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len() as u64)?;
        for p in pieces(offset, buf.len() as u64) {
            let dst = &mut buf[p.done..p.done + p.len];
            match self.read(p.chunk).get(&p.chunk) {
                Some(c) => dst.copy_from_slice(&c[p.at..p.at + p.len]),
                None => dst.fill(0),
            }
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8], _fua: bool) -> Result<()> {
        self.check_write(offset, data.len() as u64)?;
        for p in pieces(offset, data.len() as u64) {
            let mut shard = self.write(p.chunk);
            let c = shard
                .entry(p.chunk)
                .or_insert_with(|| vec![0u8; CHUNK as usize].into_boxed_slice());
            c[p.at..p.at + p.len].copy_from_slice(&data[p.done..p.done + p.len]);
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn trim(&self, offset: u64, len: u64, _fua: bool) -> Result<()> {
        self.check_write(offset, len)?;
        self.zero(offset, len, true);
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, how: ZeroOptions) -> Result<()> {
        self.check_write(offset, len)?;
        if how.fast && !how.may_trim {
            // Provisioning zeroes costs as much as writing them.
            return Err(ExportError::NotSupported("fast zero without holes"));
        }
        self.zero(offset, len, how.may_trim);
        Ok(())
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        self.check(offset, len)?;
        let mut out: Vec<Extent> = Vec::new();
        for p in pieces(offset, len) {
            let flags = if self.read(p.chunk).contains_key(&p.chunk) {
                0
            } else {
                Extent::HOLE | Extent::ZERO
            };
            let full = out.len() == MAX_EXTENTS;
            match out.last_mut() {
                Some(last) if last.flags == flags => last.len += p.len as u64,
                _ if full => break,
                _ => out.push(Extent {
                    len: p.len as u64,
                    flags,
                }),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_data_trim_and_zero() {
        let m = MemExport::new(4 * CHUNK);
        let hole = Extent::HOLE | Extent::ZERO;
        assert_eq!(
            m.block_status(0, 4 * CHUNK).unwrap(),
            vec![Extent::hole(4 * CHUNK)]
        );
        m.write_at(CHUNK - 2, &[1, 2, 3, 4], false).unwrap();
        let mut b = [9u8; 6];
        m.read_at(CHUNK - 3, &mut b).unwrap();
        assert_eq!(b, [0, 1, 2, 3, 4, 0]);
        let st = m.block_status(0, 4 * CHUNK).unwrap();
        assert_eq!(
            st,
            vec![
                Extent::data(2 * CHUNK),
                Extent {
                    len: 2 * CHUNK,
                    flags: hole
                }
            ]
        );
        // Trimming part of a chunk zeroes it but keeps it allocated.
        m.trim(CHUNK - 1, CHUNK + 1, false).unwrap();
        assert_eq!(m.allocated_chunks(), 1);
        m.read_at(CHUNK - 3, &mut b).unwrap();
        assert_eq!(b, [0, 1, 0, 0, 0, 0]);
        let fast_no_hole = ZeroOptions {
            fast: true,
            ..Default::default()
        };
        assert!(matches!(
            m.write_zeroes(0, CHUNK, fast_no_hole),
            Err(ExportError::NotSupported(_))
        ));
        m.write_zeroes(2 * CHUNK, CHUNK, ZeroOptions::default())
            .unwrap();
        assert_eq!(m.allocated_chunks(), 2);
        assert!(m.read_at(4 * CHUNK - 1, &mut b).is_err());
        assert!(m.write_at(u64::MAX, &b, false).is_err());
    }

    #[test]
    fn read_only_refuses_writes() {
        let m = MemExport::new(CHUNK).read_only();
        assert!(matches!(
            m.write_at(0, &[1], false),
            Err(ExportError::ReadOnly)
        ));
        assert!(matches!(m.trim(0, 1, false), Err(ExportError::ReadOnly)));
    }
}
