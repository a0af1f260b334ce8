//! Block I/O seam: the only place uthin touches a device.
//!
//! Every layer above reads and writes through [`BlockDevice`], a narrow trait of
//! positional reads and writes, flush and length.  [`FileDevice`] backs it with a
//! regular file or a block device.  Behind the `testing` feature live the devices
//! used by the crash and fault tests: [`testing::MemDevice`],
//! [`testing::FaultyDevice`] and [`testing::CrashDevice`].

mod file;
#[cfg(feature = "testing")]
pub mod testing;

pub use file::FileDevice;

use std::io;
use std::sync::Arc;

/// Size of a metadata block in bytes (8 sectors).
pub const BLOCK_SIZE: usize = 4096;
/// Size of a sector in bytes.
pub const SECTOR_SIZE: u64 = 512;

/// A device addressed by byte offset.  Implementations must be usable from
/// several threads at once (positional I/O, no shared cursor).
pub trait BlockDevice: Send + Sync {
    /// Read exactly `buf.len()` bytes at `offset`.  Reading past the end is an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` at `offset`.  Writing past the end is an error.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make every completed write durable (a cache flush).
    fn flush(&self) -> io::Result<()>;
    /// Current size in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Tell the device the range no longer holds data (discard / punch a hole).
    /// Reads of the range may then return zeroes or the old bytes.  The default
    /// does nothing, which is always correct.
    fn discard(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// Make the range read as zeroes.  Unlike [`BlockDevice::discard`] this
    /// is a write: the zeroes are guaranteed (and durable after a flush).
    /// The default writes zero buffers; [`FileDevice`] punches a hole in a
    /// regular file, which allocates nothing.
    fn write_zeroes(&self, mut offset: u64, len: u64) -> io::Result<()> {
        const CHUNK: usize = 1 << 16;
        static ZEROES: [u8; CHUNK] = [0; CHUNK];
        let end = offset.checked_add(len).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "write_zeroes range overflows")
        })?;
        while offset < end {
            let n = ((end - offset) as usize).min(CHUNK);
            self.write_at(&ZEROES[..n], offset)?;
            offset += n as u64;
        }
        Ok(())
    }

    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A shared handle to a device.
pub type SharedDevice = Arc<dyn BlockDevice>;

impl<T: BlockDevice + ?Sized> BlockDevice for Arc<T> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn len(&self) -> io::Result<u64> {
        (**self).len()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        (**self).discard(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        (**self).write_zeroes(offset, len)
    }
}
