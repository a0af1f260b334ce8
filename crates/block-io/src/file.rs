//! [`FileDevice`]: a [`BlockDevice`] backed by a regular file or a block device.
//!
//! All I/O is positional (`pread`/`pwrite` through [`FileExt`]), so one
//! `FileDevice` may be shared between threads without a cursor lock.  This
//! module holds the crate's only `unsafe` code: the `fallocate` hole punch, the
//! `lseek(SEEK_DATA)` hole probe and
//! the `BLKDISCARD` ioctl used by [`BlockDevice::discard`].

use crate::BlockDevice;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `BLKDISCARD` from `<linux/fs.h>`: `_IO(0x12, 119)`; not exported by `libc`.
const BLKDISCARD: u32 = 0x1277;

/// Chunk size used when a discard falls back to writing zeroes.
const ZERO_CHUNK: usize = 1 << 20;

/// What the file descriptor refers to; decides how length and discard work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A regular file (or anything else that reports its size in metadata).
    Regular,
    /// A block device: size via `lseek(SEEK_END)`, discard via `BLKDISCARD`.
    Block,
}

/// A device backed by a [`File`]: a regular (usually sparse) image file or a
/// block device node.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    path: PathBuf,
    kind: Kind,
    /// A length the device is known to have: writes inside it skip the
    /// size query (a `statx` per write otherwise); a write beyond it
    /// re-queries, so a device that grew is seen.
    known_len: AtomicU64,
}

impl FileDevice {
    /// Open an existing regular file or block device, read-only unless
    /// `writable`.
    pub fn open(path: impl AsRef<Path>, writable: bool) -> io::Result<Self> {
        let path = path.as_ref();
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        Self::with_path(file, path.to_path_buf())
    }

    /// Create a sparse regular file of `size_bytes`, opened read-write.
    ///
    /// If the file already exists it is grown to `size_bytes` when smaller, but
    /// it is **never shrunk** (and never truncated): an existing file larger than
    /// `size_bytes` keeps its length and contents, so pointing `create` at a
    /// live image by mistake cannot destroy data past `size_bytes`.
    pub fn create(path: impl AsRef<Path>, size_bytes: u64) -> io::Result<Self> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let dev = Self::with_path(file, path.to_path_buf())?;
        if dev.kind != Kind::Regular {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: create needs a regular file", path.display()),
            ));
        }
        if dev.file.metadata()?.len() < size_bytes {
            dev.file.set_len(size_bytes)?;
        }
        Ok(dev)
    }

    /// Wrap an already open file; [`FileDevice::path`] then reports `"<fd>"`.
    pub fn from_file(file: File) -> io::Result<Self> {
        Self::with_path(file, PathBuf::from("<fd>"))
    }

    fn with_path(file: File, path: PathBuf) -> io::Result<Self> {
        let kind = if file.metadata()?.file_type().is_block_device() {
            Kind::Block
        } else {
            Kind::Regular
        };
        let dev = FileDevice {
            file,
            path,
            kind,
            known_len: AtomicU64::new(0),
        };
        dev.len()?;
        Ok(dev)
    }

    /// The path this device was opened with (`"<fd>"` for [`FileDevice::from_file`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is a block device node rather than a regular file.
    pub fn is_block_device(&self) -> bool {
        self.kind == Kind::Block
    }

    /// Set the length of a regular file (grow with zeroes, or shrink).
    /// Errors on a block device, whose size is fixed.
    pub fn set_len(&self, bytes: u64) -> io::Result<()> {
        if self.kind == Kind::Block {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{}: cannot set the length of a block device",
                    self.path.display()
                ),
            ));
        }
        self.file.set_len(bytes)?;
        self.known_len.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Whether `[offset, offset + len)` lies inside the device, querying
    /// its size only when the known size is too small.
    fn fits(&self, offset: u64, len: u64) -> io::Result<bool> {
        let Ok(len) = usize::try_from(len) else {
            return Ok(false);
        };
        Ok(
            in_range(offset, len, self.known_len.load(Ordering::Relaxed))
                || in_range(offset, len, self.len()?),
        )
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "discard range too large",
            ));
        };
        // SAFETY: fallocate takes plain integers; the fd is owned by `self.file`
        // and stays open for the duration of the call.  No memory is shared.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                n,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return self.fill_zeroes(offset, len);
        }
        Err(err)
    }

    /// Whether `[offset, offset + len)` of a regular file is a hole (no data
    /// and no dirty page in it): `lseek(SEEK_DATA)` finds the next data at
    /// or after the end.  False when unsure.
    fn is_hole(&self, offset: u64, len: u64) -> bool {
        let (Ok(off), Some(end)) = (libc::off_t::try_from(offset), offset.checked_add(len)) else {
            return false;
        };
        // SAFETY: lseek takes plain integers; the fd is owned by `self.file`
        // and stays open for the call.  It moves the shared file offset, but
        // all I/O here is positional.
        let next = unsafe { libc::lseek(self.file.as_raw_fd(), off, libc::SEEK_DATA) };
        if next < 0 {
            // ENXIO: no data at or after `offset`.
            return io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO);
        }
        next as u64 >= end
    }

    fn fill_zeroes(&self, mut offset: u64, len: u64) -> io::Result<()> {
        let zeroes = vec![0u8; ZERO_CHUNK.min(len as usize)];
        let end = offset + len;
        while offset < end {
            let n = ((end - offset) as usize).min(zeroes.len());
            self.file.write_all_at(&zeroes[..n], offset)?;
            offset += n as u64;
        }
        Ok(())
    }

    fn blk_discard(&self, offset: u64, len: u64) -> io::Result<()> {
        // The kernel wants sector-aligned ranges; discard is advisory, so shrink
        // the range inwards to whole sectors.
        let sector = crate::SECTOR_SIZE;
        let start = offset.div_ceil(sector) * sector;
        let end = (offset + len) / sector * sector;
        if start >= end {
            return Ok(());
        }
        let range: [u64; 2] = [start, end - start];
        // SAFETY: BLKDISCARD reads a `[u64; 2]` (start, length) from the pointer,
        // which points at a live, properly aligned local array for the whole call;
        // the fd is owned by `self.file`.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), BLKDISCARD as _, range.as_ptr()) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return Ok(());
        }
        Err(err)
    }
}

/// Error for a read of `len` bytes at `offset` that runs past the end.
pub(crate) fn read_past_end(what: &str, offset: u64, len: usize, dev_len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{what}: read of {len} bytes at offset {offset} runs past end of device ({dev_len} bytes)"),
    )
}

/// Error for a write of `len` bytes at `offset` that runs past the end.
pub(crate) fn write_past_end(what: &str, offset: u64, len: usize, dev_len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}: write of {len} bytes at offset {offset} runs past end of device ({dev_len} bytes)"),
    )
}

/// Whether `[offset, offset + len)` lies inside a device of `dev_len` bytes.
pub(crate) fn in_range(offset: u64, len: usize, dev_len: u64) -> bool {
    offset
        .checked_add(len as u64)
        .is_some_and(|end| end <= dev_len)
}

impl BlockDevice for FileDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self.file.read_exact_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let dev_len = self.len().unwrap_or(0);
                Err(read_past_end(
                    &self.path.display().to_string(),
                    offset,
                    buf.len(),
                    dev_len,
                ))
            }
            r => r,
        }
    }

    /// Writes past the current length fail with `InvalidInput`; grow a regular
    /// file explicitly with [`FileDevice::set_len`].
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.fits(offset, buf.len() as u64)? {
            let dev_len = self.len()?;
            return Err(write_past_end(
                &self.path.display().to_string(),
                offset,
                buf.len(),
                dev_len,
            ));
        }
        self.file.write_all_at(buf, offset)
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        let len = match self.kind {
            Kind::Regular => self.file.metadata()?.len(),
            // The shared file offset is moved, but all I/O here is positional.
            Kind::Block => (&self.file).seek(SeekFrom::End(0))?,
        };
        self.known_len.store(len, Ordering::Relaxed);
        Ok(len)
    }

    /// Punch a hole in a regular file (falling back to writing zeroes when the
    /// filesystem cannot), or issue `BLKDISCARD` to a block device (ignoring
    /// `EOPNOTSUPP`).  The range is clipped to the device's length.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let dev_len = self.len()?;
        let end = offset.saturating_add(len).min(dev_len);
        if offset >= end {
            return Ok(());
        }
        match self.kind {
            Kind::Regular => self.punch_hole(offset, end - offset),
            Kind::Block => self.blk_discard(offset, end - offset),
        }
    }

    /// Punch a hole in a regular file (a hole reads as zeroes; falls back to
    /// writing zeroes where holes are not supported); write zeroes to a block
    /// device.  Past the end is an error, as for writes.
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if !self.fits(offset, len)? {
            let dev_len = self.len()?;
            return Err(write_past_end(
                &self.path.display().to_string(),
                offset,
                len as usize,
                dev_len,
            ));
        }
        if len == 0 {
            return Ok(());
        }
        match self.kind {
            // A hole already reads as zeroes; probing is much cheaper than
            // punching (no journal transaction, no timestamp update).
            Kind::Regular if self.is_hole(offset, len) => Ok(()),
            Kind::Regular => self.punch_hole(offset, len),
            Kind::Block => self.fill_zeroes(offset, len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn create_write_read_len() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let dev = FileDevice::create(&p, 1 << 20).unwrap();
        assert_eq!(dev.len().unwrap(), 1 << 20);
        assert_eq!(dev.path(), p.as_path());
        assert!(!dev.is_block_device());
        // Sparse: nothing allocated yet.
        assert_eq!(std::fs::metadata(&p).unwrap().blocks(), 0);
        let data: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
        dev.write_at(&data, 4096).unwrap();
        dev.flush().unwrap();
        let mut back = vec![0u8; 8192];
        dev.read_at(&mut back, 4096).unwrap();
        assert_eq!(back, data);
        let mut zero = vec![1u8; 4096];
        dev.read_at(&mut zero, 0).unwrap();
        assert!(zero.iter().all(|&b| b == 0));
        drop(dev);
        let ro = FileDevice::open(&p, false).unwrap();
        ro.read_at(&mut back, 4096).unwrap();
        assert_eq!(back, data);
        assert!(ro.write_at(&data, 0).is_err());
    }

    #[test]
    fn create_never_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let dev = FileDevice::create(&p, 65536).unwrap();
        dev.write_at(&[7u8; 16], 60000).unwrap();
        drop(dev);
        let dev = FileDevice::create(&p, 4096).unwrap();
        assert_eq!(dev.len().unwrap(), 65536);
        let mut b = [0u8; 16];
        dev.read_at(&mut b, 60000).unwrap();
        assert_eq!(b, [7u8; 16]);
        let dev = FileDevice::create(&p, 1 << 20).unwrap();
        assert_eq!(dev.len().unwrap(), 1 << 20);
    }

    #[test]
    fn past_end_errors() {
        let dir = tempfile::tempdir().unwrap();
        let dev = FileDevice::create(dir.path().join("img"), 8192).unwrap();
        let mut buf = vec![0u8; 4096];
        let err = dev.read_at(&mut buf, 6144).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let msg = err.to_string();
        assert!(msg.contains("6144") && msg.contains("4096"), "{msg}");
        let err = dev.write_at(&buf, 6144).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(dev.write_at(&buf, u64::MAX - 10).is_err());
        assert_eq!(dev.len().unwrap(), 8192);
        // Growing makes the range valid.
        dev.set_len(16384).unwrap();
        dev.write_at(&buf, 6144).unwrap();
        dev.read_at(&mut buf, 6144).unwrap();
    }

    #[test]
    fn discard_punches_hole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let dev = FileDevice::create(&p, 1 << 20).unwrap();
        dev.write_at(&vec![0xabu8; 1 << 20], 0).unwrap();
        dev.flush().unwrap();
        let before = std::fs::metadata(&p).unwrap().blocks();
        dev.discard(65536, 262144).unwrap();
        // Clipped to the end, no error.
        dev.discard((1 << 20) - 4096, 1 << 30).unwrap();
        dev.discard(1 << 30, 4096).unwrap();
        assert_eq!(dev.len().unwrap(), 1 << 20);
        let mut buf = vec![1u8; 262144];
        dev.read_at(&mut buf, 65536).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        let mut edge = [0u8; 2];
        dev.read_at(&mut edge, 65535).unwrap();
        assert_eq!(edge, [0xab, 0]);
        dev.read_at(&mut edge, 65536 + 262143).unwrap();
        assert_eq!(edge, [0, 0xab]);
        // On filesystems that support holes, space was released.
        let after = std::fs::metadata(&p).unwrap().blocks();
        assert!(after <= before, "{after} > {before}");
    }

    /// A scratch block device: `UTHIN_TEST_BLOCKDEV` if set (its first MiB
    /// is overwritten), else a loop device over an 8 MiB temporary file,
    /// detached on drop (needs root, as the suite's installer does).
    struct ScratchBlockDev {
        path: PathBuf,
        loop_dev: bool,
        _dir: Option<tempfile::TempDir>,
    }

    impl ScratchBlockDev {
        fn new() -> Self {
            if let Some(p) = std::env::var_os("UTHIN_TEST_BLOCKDEV") {
                return ScratchBlockDev {
                    path: p.into(),
                    loop_dev: false,
                    _dir: None,
                };
            }
            let dir = tempfile::tempdir().unwrap();
            let img = dir.path().join("img");
            File::create(&img).unwrap().set_len(8 << 20).unwrap();
            let out = std::process::Command::new("losetup")
                .args(["-f", "--show"])
                .arg(&img)
                .output();
            let out = match out {
                Ok(o) if o.status.success() => o,
                r => panic!(
                    "cannot set up a loop device for the block-device test ({r:?}): run \
                     the tests as root, or set UTHIN_TEST_BLOCKDEV to a scratch block device"
                ),
            };
            let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
            ScratchBlockDev {
                path,
                loop_dev: true,
                _dir: Some(dir),
            }
        }
    }

    impl Drop for ScratchBlockDev {
        fn drop(&mut self) {
            if self.loop_dev {
                let _ = std::process::Command::new("losetup")
                    .arg("-d")
                    .arg(&self.path)
                    .status();
            }
        }
    }

    /// The block-device paths: size by seeking, `BLKDISCARD`, zeroes
    /// written, no resizing.
    #[test]
    fn block_device() {
        let scratch = ScratchBlockDev::new();
        let dev = FileDevice::open(&scratch.path, true).unwrap();
        assert!(dev.is_block_device());
        let len = dev.len().unwrap();
        assert!(len >= 1 << 20 && len & 511 == 0, "{len}");
        assert_eq!(dev.len().unwrap(), len, "len is stable");
        dev.write_at(&vec![0x5a; 1 << 20], 0).unwrap();
        dev.flush().unwrap();
        // Unaligned discard: shrunk inwards to whole sectors, EOPNOTSUPP ignored.
        dev.discard(100, 65536).unwrap();
        dev.discard(len - 512, 4096).unwrap();
        let mut b = vec![0u8; 4096];
        dev.read_at(&mut b, 0).unwrap();
        assert!(b[..100].iter().all(|&x| x == 0x5a));
        // Zeroes are written, exactly over the range.
        dev.write_at(&vec![0x5a; 65536], 0).unwrap();
        dev.write_zeroes(4096 + 7, 8192).unwrap();
        let mut z = vec![1u8; 8192 + 2];
        dev.read_at(&mut z, 4096 + 6).unwrap();
        assert_eq!((z[0], z[8193]), (0x5a, 0x5a));
        assert!(z[1..8193].iter().all(|&x| x == 0));
        assert!(dev.write_zeroes(len - 100, 4096).is_err());
        let err = dev.read_at(&mut b, len - 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(dev.write_at(&b, len - 100).is_err());
        assert!(dev.set_len(len * 2).is_err());
        assert!(FileDevice::create(&scratch.path, 1 << 20).is_err());
    }

    #[test]
    fn write_zeroes_punches_and_checks_range() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img");
        let dev = FileDevice::create(&p, 1 << 20).unwrap();
        dev.write_at(&vec![7u8; 1 << 20], 0).unwrap();
        dev.flush().unwrap();
        BlockDevice::write_zeroes(&dev, 4096, 65536).unwrap();
        let mut b = vec![1u8; 65536 + 2];
        dev.read_at(&mut b, 4095).unwrap();
        assert_eq!(b[0], 7);
        assert!(b[1..65537].iter().all(|&x| x == 0));
        assert_eq!(b[65537], 7);
        assert!(BlockDevice::write_zeroes(&dev, (1 << 20) - 10, 11).is_err());
        // Holes: already zero; dirty data in a hole is not.
        assert!(dev.is_hole(4096, 65536));
        assert!(!dev.is_hole(0, 8192));
        dev.write_at(&[9u8; 10], 20000).unwrap();
        assert!(!dev.is_hole(4096, 65536));
        BlockDevice::write_zeroes(&dev, 4096, 65536).unwrap();
        let mut z = [1u8; 10];
        dev.read_at(&mut z, 20000).unwrap();
        assert_eq!(z, [0u8; 10]);
        assert_eq!(dev.len().unwrap(), 1 << 20);
    }

    #[test]
    fn from_file_path() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(4096).unwrap();
        let dev = FileDevice::from_file(f).unwrap();
        assert_eq!(dev.path(), Path::new("<fd>"));
        assert_eq!(dev.len().unwrap(), 4096);
        dev.write_at(b"hello", 10).unwrap();
        let mut b = [0u8; 5];
        dev.read_at(&mut b, 10).unwrap();
        assert_eq!(&b, b"hello");
    }

    #[test]
    fn write_zeroes_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let dev = FileDevice::create(dir.path().join("img"), 3 << 20).unwrap();
        dev.write_at(&vec![9u8; 3 << 20], 0).unwrap();
        dev.fill_zeroes(100, (2 << 20) + 5).unwrap();
        let mut b = vec![1u8; 3 << 20];
        dev.read_at(&mut b, 0).unwrap();
        assert!(b[..100].iter().all(|&x| x == 9));
        assert!(b[100..100 + (2 << 20) + 5].iter().all(|&x| x == 0));
        assert!(b[100 + (2 << 20) + 5..].iter().all(|&x| x == 9));
    }
}
