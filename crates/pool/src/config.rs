//! Pool configuration, as the kernel's thin-pool table line has it
//! (FORMAT.md §6.1):
//!
//! ```text
//! <data_block_size_sectors> <low_water_blocks> [<n> <feature>...]
//! features: skip_block_zeroing ignore_discard no_discard_passdown
//!           read_only error_if_no_space
//! ```
//!
//! plus the two knobs the kernel keeps elsewhere: the no-space timeout (a
//! module parameter, default 60 s) and the commit period (1 s).

use crate::error::{Error, Result};
use std::time::Duration;

/// The default data block size: 128 sectors (64 KiB).
pub const DEFAULT_BLOCK_SECTORS: u32 = 128;
/// dm-thin's `no_space_timeout` default.
pub const DEFAULT_NO_SPACE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of cached mapping lookups (about 9 MiB; 16 GiB of data
/// at 64 KiB blocks).
pub const DEFAULT_MAPPING_CACHE: usize = 1 << 18;
/// Default memory for dense tables: 16 MiB (about a million blocks, 64 GiB
/// of volume at 64 KiB blocks).
pub const DEFAULT_DENSE_TABLE_BYTES: usize = 16 << 20;
/// Default blocks a dense table's leaf holds (4 KiB of entries).
pub const DEFAULT_DENSE_LEAF_BLOCKS: u32 = 256;
/// dm-thin's `COMMIT_PERIOD`.
pub const DEFAULT_COMMIT_PERIOD: Duration = Duration::from_secs(1);

/// The table line's optional features.  All off is the kernel's default:
/// zeroing on, discards on and passed down, read-write, queue when out of
/// data space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// Do not zero newly provisioned blocks (a partial first write leaves
    /// the rest of the block with whatever the data device held).
    pub skip_block_zeroing: bool,
    /// Complete discards without doing anything.
    pub ignore_discard: bool,
    /// Unmap discarded blocks but do not discard them on the data device.
    pub no_discard_passdown: bool,
    /// Open the metadata read-only: the pool never changes it.
    pub read_only: bool,
    /// Fail writes that need a new block at once when out of data space,
    /// instead of queueing them.
    pub error_if_no_space: bool,
}

impl Features {
    /// Parses feature words; unknown words are an error.
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut f = Features::default();
        for w in words {
            match w {
                "skip_block_zeroing" => f.skip_block_zeroing = true,
                "ignore_discard" => f.ignore_discard = true,
                "no_discard_passdown" => f.no_discard_passdown = true,
                "read_only" => f.read_only = true,
                "error_if_no_space" => f.error_if_no_space = true,
                _ => return Err(Error::Config(format!("unknown feature {w:?}"))),
            }
        }
        Ok(f)
    }

    /// The feature words, in the kernel's table order.
    pub fn words(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.skip_block_zeroing {
            v.push("skip_block_zeroing");
        }
        if self.ignore_discard {
            v.push("ignore_discard");
        }
        if self.no_discard_passdown {
            v.push("no_discard_passdown");
        }
        if self.read_only {
            v.push("read_only");
        }
        if self.error_if_no_space {
            v.push("error_if_no_space");
        }
        v
    }

    /// Whether discards reach the data device.
    pub fn passdown(&self) -> bool {
        !self.ignore_discard && !self.no_discard_passdown
    }
}

/// How a pool runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Data block size in 512-byte sectors: 128 ..= 2097152, a multiple of 128.
    pub data_block_size: u32,
    /// Raise [`crate::PoolEvent::DataLowWater`] when free data blocks drop
    /// to this many (0: only when none is left).
    pub low_water_blocks: u64,
    /// The table line's features.
    pub features: Features,
    /// How long writes wait for data space before failing with ENOSPC
    /// (`Duration::ZERO`: forever).
    pub no_space_timeout: Duration,
    /// Period of the background commit (`Duration::ZERO`: no background
    /// commits; only flushes, FUA writes, messages and close commit).
    pub commit_period: Duration,
    /// Metadata block cache size in 4 KiB blocks.
    pub metadata_cache_blocks: usize,
    /// Mapping lookups cached for reads and overwrites (0: no cache) in
    /// the hash table, for the blocks the dense tables do not cover.
    pub mapping_cache_entries: usize,
    /// Memory the open devices' dense tables of cells and cached mappings
    /// may take together (16 bytes a block, plus 24 KiB a 2^(10 + leaf
    /// bits) blocks reached); blocks beyond use the hash table.  0: none.
    pub dense_table_bytes: usize,
    /// Blocks a leaf of a dense table holds, a power of two up to 65536:
    /// what a device's first touch of a block there allocates at once.
    pub dense_leaf_blocks: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig::new(DEFAULT_BLOCK_SECTORS)
    }
}

impl PoolConfig {
    /// The defaults with a data block size of `data_block_size` sectors.
    pub fn new(data_block_size: u32) -> Self {
        PoolConfig {
            data_block_size,
            low_water_blocks: 0,
            features: Features::default(),
            no_space_timeout: DEFAULT_NO_SPACE_TIMEOUT,
            commit_period: DEFAULT_COMMIT_PERIOD,
            metadata_cache_blocks: uthin_pdata::block_manager::DEFAULT_CACHE_BLOCKS,
            mapping_cache_entries: DEFAULT_MAPPING_CACHE,
            dense_table_bytes: DEFAULT_DENSE_TABLE_BYTES,
            dense_leaf_blocks: DEFAULT_DENSE_LEAF_BLOCKS,
        }
    }

    /// Parses the arguments of a thin-pool table line after the two devices:
    /// `<block_size> <low_water> [<n> <feature>...]`.
    pub fn from_table_args(args: &str) -> Result<Self> {
        let w: Vec<&str> = args.split_whitespace().collect();
        let num = |i: usize, what: &str| -> Result<u64> {
            w.get(i)
                .ok_or_else(|| Error::Config(format!("missing {what}")))?
                .parse()
                .map_err(|_| Error::Config(format!("bad {what} {:?}", w[i])))
        };
        let bs = num(0, "data block size")?;
        let mut cfg = PoolConfig::new(
            u32::try_from(bs).map_err(|_| Error::Config(format!("bad data block size {bs}")))?,
        );
        cfg.low_water_blocks = num(1, "low water mark")?;
        if w.len() > 2 {
            let n = num(2, "feature count")? as usize;
            if w.len() != 3 + n {
                return Err(Error::Config(format!(
                    "{n} features announced, {} given",
                    w.len() - 3
                )));
            }
            cfg.features = Features::parse(w[3..].iter().copied())?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The table arguments this configuration stands for.
    pub fn table_args(&self) -> String {
        let words = self.features.words();
        let mut s = format!("{} {}", self.data_block_size, self.low_water_blocks);
        if !words.is_empty() {
            s += &format!(" {} {}", words.len(), words.join(" "));
        }
        s
    }

    /// Checks the data block size.
    pub fn validate(&self) -> Result<()> {
        let s = self.data_block_size;
        if !(128..=2_097_152).contains(&s) || !s.is_multiple_of(128) {
            return Err(Error::Config(format!(
                "data block size {s} sectors is invalid (128 ..= 2097152, a multiple of 128)"
            )));
        }
        let l = self.dense_leaf_blocks;
        if !l.is_power_of_two() || l > 1 << crate::dense::MAX_LEAF_BITS {
            return Err(Error::Config(format!(
                "dense leaf size {l} blocks is invalid (a power of two up to {})",
                1 << crate::dense::MAX_LEAF_BITS
            )));
        }
        Ok(())
    }

    /// The data block size in bytes.
    pub fn block_bytes(&self) -> u64 {
        self.data_block_size as u64 * uthin_block_io::SECTOR_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_args_round_trip() {
        let c =
            PoolConfig::from_table_args("256 10 2 skip_block_zeroing error_if_no_space").unwrap();
        assert_eq!(c.data_block_size, 256);
        assert_eq!(c.low_water_blocks, 10);
        assert!(c.features.skip_block_zeroing && c.features.error_if_no_space);
        assert_eq!(
            c.table_args(),
            "256 10 2 skip_block_zeroing error_if_no_space"
        );
        assert_eq!(
            PoolConfig::from_table_args("128 0").unwrap().table_args(),
            "128 0"
        );
        for bad in [
            "64 0",
            "200 0",
            "128",
            "128 0 2 read_only",
            "128 0 1 bogus",
            "x 0",
        ] {
            assert!(PoolConfig::from_table_args(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dense_leaf_size_is_a_power_of_two_within_reach() {
        let mut c = PoolConfig::default();
        for ok in [1, 2, 256, 65536] {
            c.dense_leaf_blocks = ok;
            assert!(c.validate().is_ok(), "{ok}");
        }
        for bad in [0, 3, 100, 131072] {
            c.dense_leaf_blocks = bad;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("dense leaf size"), "{bad}: {e}");
        }
    }
}
