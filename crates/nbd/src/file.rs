//! [`FileExport`]: a regular file (sparse or not) or a block device served as
//! is, for benchmarks and tools.  Reads and writes are positional
//! (`pread`/`pwrite`), so any number of threads use one descriptor; FLUSH is
//! `fdatasync`.  On regular files TRIM punches holes, WRITE_ZEROES punches
//! or zero-ranges, and block status comes from `SEEK_DATA`/`SEEK_HOLE`.

use crate::export::{Export, ExportError, Extent, Result, ZeroOptions};
use rustix::fs::{FallocateFlags, SeekFrom};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Most extents one block status answer describes.
const MAX_EXTENTS: usize = 1024;

/// A file or block device served over NBD.
pub struct FileExport {
    file: File,
    size: u64,
    read_only: bool,
    regular: bool,
}

impl FileExport {
    /// Open `path` for reading and (unless `read_only`) writing.
    pub fn open(path: &Path, read_only: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        Self::from_file(file, read_only)
    }

    /// Serve an open file.
    pub fn from_file(mut file: File, read_only: bool) -> io::Result<Self> {
        let meta = file.metadata()?;
        let regular = meta.file_type().is_file();
        let size = if regular {
            meta.len()
        } else {
            file.seek(io::SeekFrom::End(0))?
        };
        Ok(FileExport {
            file,
            size,
            read_only,
            regular,
        })
    }

    fn fallocate(&self, flags: FallocateFlags, offset: u64, len: u64) -> io::Result<()> {
        if !self.regular {
            return Err(io::ErrorKind::Unsupported.into());
        }
        rustix::fs::fallocate(&self.file, flags | FallocateFlags::KEEP_SIZE, offset, len)
            .map_err(io::Error::from)
    }

    fn sync(&self, offset: u64) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| ExportError::io(offset, e))
    }

    /// Where the next data (`data`) or hole (`!data`) starts at or after
    /// `pos`; `None` when there is none before the end of the file.
    fn seek(&self, pos: u64, data: bool) -> io::Result<Option<u64>> {
        let whence = if data {
            SeekFrom::Data(pos)
        } else {
            SeekFrom::Hole(pos)
        };
        match rustix::fs::seek(&self.file, whence) {
            Ok(p) => Ok(Some(p)),
            Err(rustix::io::Errno::NXIO) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl Export for FileExport {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn can_multi_conn(&self) -> bool {
        // One descriptor and the kernel's page cache serve every connection.
        true
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| ExportError::io(offset, e))
    }

    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        if self.read_only {
            return Err(ExportError::ReadOnly);
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|e| ExportError::io(offset, e))?;
        if fua {
            self.sync(offset)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.sync(0)
    }

    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<()> {
        if self.read_only {
            return Err(ExportError::ReadOnly);
        }
        // Advisory: a file system without hole punching keeps the data.
        if self
            .fallocate(FallocateFlags::PUNCH_HOLE, offset, len)
            .is_ok()
            && fua
        {
            self.sync(offset)?;
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, how: ZeroOptions) -> Result<()> {
        if self.read_only {
            return Err(ExportError::ReadOnly);
        }
        let flags = if how.may_trim {
            FallocateFlags::PUNCH_HOLE
        } else {
            FallocateFlags::ZERO_RANGE
        };
        match self.fallocate(flags, offset, len) {
            Ok(()) => {
                if how.fua {
                    self.sync(offset)?;
                }
                Ok(())
            }
            Err(_) if how.fast => Err(ExportError::NotSupported("fast zero on this file")),
            Err(_) => {
                let slow = ZeroOptions { fast: false, ..how };
                // The trait's default writes zero buffers.
                WriteZeroes(self).write_zeroes(offset, len, slow)
            }
        }
    }

    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>> {
        let end = offset.saturating_add(len).min(self.size);
        if !self.regular || offset >= end {
            return Ok(vec![Extent::data(len)]);
        }
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end && out.len() < MAX_EXTENTS {
            let next_data = match self.seek(pos, true) {
                Ok(d) => d.unwrap_or(end).min(end),
                Err(_) => break,
            };
            if next_data > pos {
                out.push(Extent::hole(next_data - pos));
                pos = next_data;
                continue;
            }
            let next_hole = match self.seek(pos, false) {
                Ok(h) => h.unwrap_or(end).min(end),
                Err(_) => end,
            };
            let next = if next_hole > pos { next_hole } else { end };
            out.push(Extent::data(next - pos));
            pos = next;
        }
        if out.is_empty() {
            out.push(Extent::data(len));
        }
        Ok(out)
    }
}

/// The trait's default `write_zeroes` (zero buffers through `write_at`) for
/// a [`FileExport`] whose file system cannot zero ranges.
struct WriteZeroes<'a>(&'a FileExport);

impl Export for WriteZeroes<'_> {
    fn size(&self) -> u64 {
        self.0.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        self.0.write_at(offset, data, fua)
    }
    fn flush(&self) -> Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_file_holes_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::create(&path).unwrap();
        f.set_len(8 << 20).unwrap();
        let e = FileExport::open(&path, false).unwrap();
        assert_eq!(e.size(), 8 << 20);
        e.write_at(1 << 20, &[7u8; 4096], false).unwrap();
        let st = e.block_status(0, 8 << 20).unwrap();
        assert_eq!(st.iter().map(|x| x.len).sum::<u64>(), 8 << 20);
        assert_eq!(st[0].flags, Extent::HOLE | Extent::ZERO);
        assert!(st.iter().any(|x| x.flags == 0));
        e.write_zeroes(1 << 20, 4096, ZeroOptions::default())
            .unwrap();
        let mut b = [1u8; 4096];
        e.read_at(1 << 20, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == 0));
        e.flush().unwrap();
    }
}
