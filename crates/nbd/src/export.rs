//! What the server serves: the [`Export`] trait (a byte range with read,
//! write, flush, trim, zero and allocation status), its error type mapped to
//! NBD error values, and the [`Exports`] registry that resolves export names.
//!
//! Offsets and lengths reaching an export have been checked by the server:
//! `offset + len <= size()`, lengths fit the advertised block sizes, writes
//! never reach a read-only export.  Implementations must still not panic on
//! any input (a registry may hand out an export that shrank meanwhile).

use crate::proto::{Errno, STATE_HOLE, STATE_ZERO};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, RwLock};

/// Result of export operations.
pub type Result<T, E = ExportError> = std::result::Result<T, E>;

/// Why an export operation failed; [`ExportError::errno`] is what the client sees.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The backing store failed; the errno follows the I/O error kind.
    #[error("I/O error at offset {offset:#x}: {source}")]
    Io {
        /// Where in the export.
        offset: u64,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// No space to allocate (thin pool out of data space, quota, ...).
    #[error("no space left at offset {offset:#x}")]
    NoSpace {
        /// Where in the export.
        offset: u64,
    },
    /// A write to a read-only export.
    #[error("export is read-only")]
    ReadOnly,
    /// A request the export refuses (alignment, range).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A value too large to answer.
    #[error("value too large: {0}")]
    Overflow(String),
    /// The operation cannot be done as asked, e.g. a fast zero that would be
    /// as slow as writing zeroes.
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    /// The export is going away.
    #[error("export is shutting down")]
    Shutdown,
}

impl ExportError {
    /// An I/O error at `offset`.
    pub fn io(offset: u64, source: io::Error) -> Self {
        ExportError::Io { offset, source }
    }

    /// The NBD error value sent to the client.
    pub fn errno(&self) -> Errno {
        match self {
            ExportError::Io { source, .. } => io_errno(source),
            ExportError::NoSpace { .. } => Errno::NoSpc,
            ExportError::ReadOnly => Errno::Perm,
            ExportError::Invalid(_) => Errno::Inval,
            ExportError::Overflow(_) => Errno::Overflow,
            ExportError::NotSupported(_) => Errno::NotSup,
            ExportError::Shutdown => Errno::Shutdown,
        }
    }
}

/// NBD error for an I/O error: space and quota errors become `ENOSPC` (as the
/// spec asks), permission errors `EPERM`, bad arguments `EINVAL`, the rest `EIO`.
pub fn io_errno(e: &io::Error) -> Errno {
    use io::ErrorKind as K;
    match e.kind() {
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge => Errno::NoSpc,
        K::ReadOnlyFilesystem | K::PermissionDenied => Errno::Perm,
        K::InvalidInput => Errno::Inval,
        _ => Errno::Io,
    }
}

/// A run of bytes with one allocation status (`base:allocation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes (nonzero).
    pub len: u64,
    /// [`Extent::HOLE`] and/or [`Extent::ZERO`], or 0 for allocated data.
    pub flags: u32,
}

impl Extent {
    /// Not allocated in the backing store (`NBD_STATE_HOLE`).
    pub const HOLE: u32 = STATE_HOLE;
    /// Reads as zeroes (`NBD_STATE_ZERO`).
    pub const ZERO: u32 = STATE_ZERO;

    /// Allocated data of `len` bytes.
    pub fn data(len: u64) -> Self {
        Extent { len, flags: 0 }
    }

    /// An unallocated range that reads as zeroes.
    pub fn hole(len: u64) -> Self {
        Extent {
            len,
            flags: Self::HOLE | Self::ZERO,
        }
    }
}

/// Block size constraints advertised with `NBD_INFO_BLOCK_SIZE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSizes {
    /// Smallest addressable unit; requests must be aligned to it (power of
    /// two, at most 64 KiB).
    pub minimum: u32,
    /// Size and alignment below which I/O is inefficient (power of two,
    /// at least 512 and at least `minimum`).
    pub preferred: u32,
    /// Largest READ / WRITE payload (a multiple of `minimum`).
    pub maximum: u32,
}

impl Default for BlockSizes {
    fn default() -> Self {
        BlockSizes {
            minimum: 1,
            preferred: 4096,
            maximum: 32 << 20,
        }
    }
}

impl BlockSizes {
    /// These sizes made valid per the spec and capped at `max_request`:
    /// powers of two where required, `preferred >= max(minimum, 512)`,
    /// `maximum` a multiple of `minimum` (0 means "no limit of its own").
    pub fn sanitized(self, max_request: u32) -> BlockSizes {
        let minimum = self.minimum.clamp(1, 65536).next_power_of_two();
        let preferred = self.preferred.clamp(512, 1 << 30).next_power_of_two();
        let preferred = preferred.max(minimum);
        let cap = max_request.max(minimum);
        let wanted = if self.maximum == 0 { cap } else { self.maximum };
        let mut maximum = wanted.clamp(minimum, cap);
        maximum -= maximum % minimum;
        BlockSizes {
            minimum,
            preferred,
            maximum: maximum.max(minimum),
        }
    }
}

/// How a range is zeroed ([`Export::write_zeroes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZeroOptions {
    /// The range may become a hole (no `NBD_CMD_FLAG_NO_HOLE`).
    pub may_trim: bool,
    /// Fail with [`ExportError::NotSupported`] unless zeroing is faster than
    /// writing zeroes (`NBD_CMD_FLAG_FAST_ZERO`); leave the data untouched then.
    pub fast: bool,
    /// Persist before returning (`NBD_CMD_FLAG_FUA`).
    pub fua: bool,
}

/// A block device seen through NBD.  Called from many threads at once;
/// overlapping concurrent requests may be ordered arbitrarily (as on a disk).
pub trait Export: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;

    /// Refuse every write (`NBD_FLAG_READ_ONLY`).
    fn read_only(&self) -> bool {
        false
    }

    /// Human-readable description for `NBD_OPT_LIST` and `NBD_INFO_DESCRIPTION`.
    fn description(&self) -> Option<String> {
        None
    }

    /// Block size constraints; the server caps `maximum` at its request limit.
    fn block_sizes(&self) -> BlockSizes {
        BlockSizes::default()
    }

    /// FLUSH and FUA on one connection cover writes completed on every
    /// connection (`NBD_FLAG_CAN_MULTI_CONN`): true when there is no
    /// per-connection cache.
    fn can_multi_conn(&self) -> bool {
        false
    }

    /// Fill `buf` from `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Write `data` at `offset`; with `fua`, persist it before returning.
    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<()>;

    /// Persist every completed write.
    fn flush(&self) -> Result<()>;

    /// The range is no longer needed and may read back as anything until
    /// rewritten.  Advisory: the default does nothing.
    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<()> {
        let _ = (offset, len, fua);
        Ok(())
    }

    /// Make the range read as zeroes.  The default refuses a fast zero and
    /// otherwise writes zero buffers.
    fn write_zeroes(&self, offset: u64, len: u64, how: ZeroOptions) -> Result<()> {
        if how.fast {
            return Err(ExportError::NotSupported("fast zero"));
        }
        let zeroes = vec![0u8; len.min(1 << 20) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(zeroes.len() as u64);
            self.write_at(offset + done, &zeroes[..n as usize], false)?;
            done += n;
        }
        if how.fua {
            self.flush()?;
        }
        Ok(())
    }

    /// Allocation status of `[offset, offset + len)` as consecutive extents
    /// from `offset`.  May describe less than `len` (the client asks again
    /// for the rest) but must describe something.  The default says "data".
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let _ = offset;
        Ok(vec![Extent::data(len)])
    }
}

/// Resolves export names for the server; the daemon's volume registry
/// implements this.  Names are UTF-8 strings of at most 4096 bytes.
pub trait Exports: Send + Sync {
    /// Names for `NBD_OPT_LIST`.
    fn names(&self) -> Vec<String>;
    /// The export called `name`, if any.
    fn get(&self, name: &str) -> Option<Arc<dyn Export>>;
}

/// A simple [`Exports`]: a map that can change while the server runs.
#[derive(Default)]
pub struct ExportMap {
    map: RwLock<BTreeMap<String, Arc<dyn Export>>>,
}

impl ExportMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace `name`; new connections see the new export.
    pub fn insert(&self, name: impl Into<String>, export: Arc<dyn Export>) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.into(), export);
    }

    /// Remove `name`; open connections keep their export.
    pub fn remove(&self, name: &str) -> Option<Arc<dyn Export>> {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }
}

impl Exports for ExportMap {
    fn names(&self) -> Vec<String> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.keys().cloned().collect()
    }

    fn get(&self, name: &str) -> Option<Arc<dyn Export>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_are_sanitized() {
        let b = BlockSizes {
            minimum: 3,
            preferred: 100,
            maximum: 1 << 30,
        }
        .sanitized(32 << 20);
        assert_eq!(b.minimum, 4);
        assert_eq!(b.preferred, 512);
        assert_eq!(b.maximum, 32 << 20);
        let b = BlockSizes {
            minimum: 1 << 20,
            preferred: 0,
            maximum: 100_000,
        }
        .sanitized(32 << 20);
        assert_eq!((b.minimum, b.preferred, b.maximum), (65536, 65536, 65536));
        let b = BlockSizes {
            maximum: 0,
            ..BlockSizes::default()
        };
        assert_eq!(b.sanitized(1 << 20).maximum, 1 << 20);
    }

    #[test]
    fn io_errors_map_to_nbd_errnos() {
        let e = |k| ExportError::io(0, io::Error::from(k)).errno();
        assert_eq!(e(io::ErrorKind::StorageFull), Errno::NoSpc);
        assert_eq!(e(io::ErrorKind::ReadOnlyFilesystem), Errno::Perm);
        assert_eq!(e(io::ErrorKind::Other), Errno::Io);
        assert_eq!(ExportError::NotSupported("x").errno(), Errno::NotSup);
    }
}
