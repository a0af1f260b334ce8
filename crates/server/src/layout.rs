//! Where a pool's pieces live, and creating a new pool's files.
//!
//! A pool folder (default `./uthin-pool`) holds:
//!
//! ```text
//! metadata        the metadata device (a sparse file, unless --metadata names a device)
//! data            the data device (likewise --data)
//! volumes.json    the volume registry (names and sizes)
//! nbd.sock        the NBD unix socket of a running daemon
//! control.sock    the control socket of a running daemon
//! ```

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use uthin_block_io::{BlockDevice, FileDevice, SECTOR_SIZE};
use uthin_thin::superblock::probe;
use uthin_thin::{OpenOptions, PoolMetadata};

/// The default pool folder.
pub const DEFAULT_DIR: &str = "uthin-pool";
/// Size of a new metadata file.
pub const DEFAULT_METADATA_SIZE: u64 = 128 << 20;
/// Size of a new (sparse) data file.
pub const DEFAULT_DATA_SIZE: u64 = 16 << 30;
/// Size of the first volume of a new pool.
pub const DEFAULT_VOLUME_SIZE: u64 = 10 << 30;
/// Data block size of a new pool.
pub const DEFAULT_BLOCK_SIZE: u64 = 64 << 10;

/// The paths of one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolPaths {
    /// The pool folder.
    pub dir: PathBuf,
    /// Metadata file or block device.
    pub metadata: PathBuf,
    /// Data file or block device.
    pub data: PathBuf,
}

impl PoolPaths {
    /// The pool in `dir`, with devices overriding the folder's files.
    pub fn new(dir: &Path, metadata: Option<&Path>, data: Option<&Path>) -> Self {
        PoolPaths {
            dir: dir.to_path_buf(),
            metadata: metadata.map_or_else(|| dir.join("metadata"), Path::to_path_buf),
            data: data.map_or_else(|| dir.join("data"), Path::to_path_buf),
        }
    }

    /// The volume registry.
    pub fn registry(&self) -> PathBuf {
        self.dir.join("volumes.json")
    }

    /// The NBD unix socket.
    pub fn nbd_socket(&self) -> PathBuf {
        self.dir.join("nbd.sock")
    }

    /// The control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Whether the metadata device exists.
    pub fn exists(&self) -> bool {
        self.metadata.exists()
    }
}

/// How to create a pool.
#[derive(Clone, Copy, Debug)]
pub struct CreateOptions {
    /// Size of a new metadata file.
    pub metadata_size: u64,
    /// Size of a new data file.
    pub data_size: u64,
    /// Data block size in bytes.
    pub block_size: u64,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            metadata_size: DEFAULT_METADATA_SIZE,
            data_size: DEFAULT_DATA_SIZE,
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

/// What [`create`] made.
#[derive(Clone, Debug)]
pub struct Created {
    pub metadata_bytes: u64,
    pub data_bytes: u64,
    pub data_blocks: u64,
    pub block_size: u64,
}

impl std::fmt::Display for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "metadata {}, data {} ({} blocks of {})",
            human(self.metadata_bytes),
            human(self.data_bytes),
            self.data_blocks,
            human(self.block_size)
        )
    }
}

/// Checks a data block size in bytes (the kernel's 64 KiB to 1 GiB, a
/// multiple of 64 KiB) and returns it in sectors.
pub fn block_sectors(bytes: u64) -> Result<u32> {
    if !bytes.is_multiple_of(64 << 10) || !(64 << 10..=1 << 30).contains(&bytes) {
        return Err(Error::Usage(format!(
            "block size {}: must be 64 KiB to 1 GiB and a multiple of 64 KiB",
            human(bytes)
        )));
    }
    Ok((bytes / SECTOR_SIZE) as u32)
}

/// Creates a pool: sparse files where the paths do not exist yet (the
/// folder too), then formats the metadata.  Existing metadata is never
/// overwritten.
pub fn create(paths: &PoolPaths, o: &CreateOptions) -> Result<Created> {
    let sectors = block_sectors(o.block_size)?;
    std::fs::create_dir_all(&paths.dir).map_err(|e| Error::io(&paths.dir, "create", e))?;
    let meta = open_or_create(&paths.metadata, o.metadata_size)?;
    if probe(&meta)
        .map_err(|e| Error::Other(format!("{}: {e}", paths.metadata.display())))?
        .is_some()
    {
        return Err(Error::Usage(format!(
            "{} already holds pool metadata; not overwriting it",
            paths.metadata.display()
        )));
    }
    let data = open_or_create(&paths.data, o.data_size)?;
    let dev_len = |d: &FileDevice, p: &Path| d.len().map_err(|e| Error::io(p, "size", e));
    let (metadata_bytes, data_bytes) = (
        dev_len(&meta, &paths.metadata)?,
        dev_len(&data, &paths.data)?,
    );
    let data_blocks = data_bytes / o.block_size;
    if data_blocks == 0 {
        return Err(Error::Usage(format!(
            "{} holds {} bytes, less than one data block",
            paths.data.display(),
            data_bytes
        )));
    }
    let meta_err = |e: uthin_thin::Error| Error::Other(format!("formatting metadata: {e}"));
    let mut md = PoolMetadata::open(std::sync::Arc::new(meta), OpenOptions::new(sectors))
        .map_err(meta_err)?;
    md.resize_data_dev(data_blocks).map_err(meta_err)?;
    md.commit().map_err(meta_err)?;
    md.close().map_err(meta_err)?;
    Ok(Created {
        metadata_bytes,
        data_bytes,
        data_blocks,
        block_size: o.block_size,
    })
}

fn open_or_create(p: &Path, size: u64) -> Result<FileDevice> {
    if p.exists() {
        FileDevice::open(p, true).map_err(|e| Error::io(p, "open", e))
    } else {
        FileDevice::create(p, size).map_err(|e| Error::io(p, "create", e))
    }
}

/// Parses sizes like `4096`, `64k`, `16M`, `2G`, `1T`, `10GiB` (powers of
/// 1024) or `128s` (512-byte sectors).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let unit = s[i..].to_ascii_lowercase();
            let m = match unit.trim_end_matches("ib").trim_end_matches('b') {
                "" => 1,
                "s" => 512,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                "p" => 1 << 50,
                _ => return Err(format!("unknown size unit {:?} in {s:?}", &s[i..])),
            };
            (&s[..i], m)
        }
    };
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// A byte count for people: `10 GiB`, `64 KiB`, `1.5 MiB`, `512 B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut u = 0;
    while u + 1 < UNITS.len() && bytes >= 1 << (10 * (u + 1)) {
        u += 1;
    }
    let unit = 1u64 << (10 * u);
    if bytes.is_multiple_of(unit) {
        format!("{} {}", bytes / unit, UNITS[u])
    } else {
        format!("{:.1} {}", bytes as f64 / unit as f64, UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("128s"), Ok(65536));
        assert!(parse_size("12x").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(human(10 << 30), "10 GiB");
        assert_eq!(human(1536 << 10), "1.5 MiB");
        assert_eq!(human(100), "100 B");
    }

    #[test]
    fn block_sizes() {
        assert_eq!(block_sectors(64 << 10).unwrap(), 128);
        assert!(block_sectors(4096).is_err());
        assert!(block_sectors(96 << 10).is_err());
        assert!(block_sectors(2 << 30).is_err());
    }

    #[test]
    fn create_formats_once() {
        let d = tempfile::tempdir().unwrap();
        let p = PoolPaths::new(&d.path().join("pool"), None, None);
        let o = CreateOptions {
            metadata_size: 4 << 20,
            data_size: 64 << 20,
            block_size: 64 << 10,
        };
        let c = create(&p, &o).unwrap();
        assert_eq!(c.data_blocks, 1024);
        let e = create(&p, &o).unwrap_err();
        assert!(e.to_string().contains("already holds pool metadata"), "{e}");
    }
}
