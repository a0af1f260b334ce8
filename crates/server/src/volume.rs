//! A thin volume as an NBD export: the adapter between the NBD server's
//! [`Export`] trait and the pool engine's [`Thin`].
//!
//! * TRIM unmaps whole blocks (passed down per the pool's features);
//!   WRITE_ZEROES unmaps whole blocks unless the client asked for no holes,
//!   and is "fast" exactly when it may unmap (it never writes more than the
//!   two partial blocks at the ends).
//! * BLOCK_STATUS reports unprovisioned ranges as holes that read as zeroes,
//!   so `nbdcopy`, `qemu-img convert` and `nbdinfo --map` skip them.
//! * Multi-connection is safe: the pool has no per-connection cache, and a
//!   flush commits every write completed on any connection.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use uthin_nbd::{BlockSizes, Export, ExportError, Extent, ZeroOptions};
use uthin_pool::{ErrorKind, Thin};

/// A volume served over NBD.
pub struct VolumeExport {
    name: String,
    thin: Thin,
    size: AtomicU64,
    read_only: bool,
}

impl VolumeExport {
    /// Serves `thin` as `name` with `size` bytes.
    pub fn new(name: &str, thin: Thin, size: u64, read_only: bool) -> Self {
        VolumeExport {
            name: name.to_string(),
            thin,
            size: AtomicU64::new(size),
            read_only,
        }
    }

    /// The pool volume.
    pub fn thin(&self) -> &Thin {
        &self.thin
    }

    /// Changes the size new requests are checked against.
    pub fn set_size(&self, size: u64) {
        self.size.store(size, Ordering::SeqCst);
    }
}

/// A pool error as the client sees it.
fn export_error(offset: u64, e: uthin_pool::Error) -> ExportError {
    match e.kind() {
        ErrorKind::NoSpace => ExportError::NoSpace { offset },
        ErrorKind::Invalid => ExportError::Invalid(e.to_string()),
        // EIO, as the kernel completes writes a read-only pool refuses.
        _ => ExportError::io(offset, io::Error::other(e)),
    }
}

impl Export for VolumeExport {
    fn size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn description(&self) -> Option<String> {
        Some(format!(
            "uthin volume {} (thin device {})",
            self.name,
            self.thin.dev_id()
        ))
    }

    fn block_sizes(&self) -> BlockSizes {
        BlockSizes {
            minimum: 1,
            preferred: 4096,
            maximum: 32 << 20,
        }
    }

    fn can_multi_conn(&self) -> bool {
        true
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ExportError> {
        self.thin
            .read(offset, buf)
            .map_err(|e| export_error(offset, e))
    }

    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), ExportError> {
        self.thin
            .write(offset, data, fua)
            .map_err(|e| export_error(offset, e))
    }

    fn flush(&self) -> Result<(), ExportError> {
        self.thin.flush().map_err(|e| export_error(0, e))
    }

    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), ExportError> {
        self.thin
            .discard(offset, len)
            .map_err(|e| export_error(offset, e))?;
        if fua {
            self.flush()?;
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, how: ZeroOptions) -> Result<(), ExportError> {
        let can_unmap = how.may_trim
            && self.thin.external_origin_len().is_none()
            && self.thin.pool().mode().metadata_writable();
        if how.fast && !can_unmap {
            return Err(ExportError::NotSupported(
                "fast zero needs unmapping (no NO_HOLE, no external origin, a writable pool)",
            ));
        }
        self.thin
            .write_zeroes(offset, len, how.may_trim)
            .map_err(|e| export_error(offset, e))?;
        if how.fua {
            self.flush()?;
        }
        Ok(())
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, ExportError> {
        let runs = self
            .thin
            .allocation(offset, len)
            .map_err(|e| export_error(offset, e))?;
        Ok(runs
            .into_iter()
            .map(|r| {
                if r.mapped {
                    Extent::data(r.len)
                } else {
                    Extent::hole(r.len)
                }
            })
            .collect())
    }
}
