//! `thin_metadata_size`: how much metadata a pool needs (FORMAT.md §7), with
//! the numbers and text of thin-provisioning-tools 1.x.
//!
//! Estimate, in 4 KiB metadata blocks: one superblock, one mapping leaf per
//! 126 data blocks (leaves of 252 entries assumed half full), one block per
//! thin device; capped at the largest metadata device (4 161 600 blocks).
//! `-b64k -s1t -m1000` gives 134 154 blocks = 1 073 232 sectors.
//!
//! [`units`] parses sizes and units and formats `thin_ls`'s compact sizes.

pub mod units;

use crate::error::{Error, Result};
use units::Unit;
use uthin_pdata::btree::node::max_entries;
use uthin_pdata::sm::metadata::MAX_METADATA_BLOCKS;

/// Smallest data block, in bytes; block sizes are multiples of it.
pub const MIN_DATA_BLOCK_BYTES: u64 = 64 << 10;
/// Largest data block, in bytes.
pub const MAX_DATA_BLOCK_BYTES: u64 = 1 << 30;

/// How the size is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// `1073232 sectors`
    #[default]
    Full,
    /// `-n=short`: `1073232s`
    ShortUnits,
    /// `-n=long`: `1073232sectors`
    LongUnits,
    /// `-n`: `1073232`
    NumericOnly,
}

/// Checks a data block size in bytes as 1.x does.
pub fn check_data_block_size(bytes: u64) -> Result<()> {
    if bytes == 0 || !bytes.is_multiple_of(MIN_DATA_BLOCK_BYTES) {
        return Err(Error::msg("block size must be a multiple of 64 KiB"));
    }
    if bytes > MAX_DATA_BLOCK_BYTES {
        return Err(Error::msg("maximum block size is 1 GiB"));
    }
    Ok(())
}

/// Estimated metadata size in bytes for a pool of `pool_bytes` with data
/// blocks of `block_bytes` and at most `max_thins` devices.
pub fn metadata_size(pool_bytes: u64, block_bytes: u64, max_thins: u64) -> Result<u64> {
    check_data_block_size(block_bytes)?;
    if pool_bytes < block_bytes {
        return Err(Error::msg("pool size must be larger than block size"));
    }
    let nr_data_blocks = pool_bytes / block_bytes;
    let per_leaf = max_entries(8) as u64 / 2;
    let blocks = 1u64
        .saturating_add(nr_data_blocks.div_ceil(per_leaf))
        .saturating_add(max_thins)
        .min(MAX_METADATA_BLOCKS);
    Ok(blocks * uthin_block_io::BLOCK_SIZE as u64)
}

/// `bytes` expressed in `unit` and printed as 1.x prints it: whole numbers
/// and values below one in full, others with two decimals.
pub fn format_size(bytes: u64, unit: Unit, format: OutputFormat) -> String {
    let v = bytes as f64 / unit.bytes() as f64;
    let mut s = if v < 1.0 || v.trunc() == v {
        format!("{v}")
    } else {
        format!("{v:.2}")
    };
    match format {
        OutputFormat::Full => {
            s.push(' ');
            s.push_str(unit.long_name());
            s.push('s');
        }
        OutputFormat::ShortUnits => s.push_str(unit.letter()),
        OutputFormat::LongUnits => {
            s.push_str(unit.long_name());
            s.push('s');
        }
        OutputFormat::NumericOnly => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_example() {
        let b = metadata_size(1 << 40, 64 << 10, 1000).unwrap();
        assert_eq!(b / 4096, 134_154);
        assert_eq!(
            format_size(b, Unit::Sector, OutputFormat::Full),
            "1073232 sectors"
        );
        assert_eq!(
            format_size(b, Unit::Sector, OutputFormat::ShortUnits),
            "1073232s"
        );
        assert_eq!(
            format_size(b, Unit::Sector, OutputFormat::LongUnits),
            "1073232sectors"
        );
        assert_eq!(
            format_size(b, Unit::Mebibyte, OutputFormat::NumericOnly),
            "524.04"
        );
        assert_eq!(
            format_size(b, Unit::Tebibyte, OutputFormat::Full)
                .split(' ')
                .nth(1),
            Some("terabytes")
        );
    }

    #[test]
    fn limits() {
        assert!(metadata_size(1 << 40, 0, 1).is_err());
        assert!(metadata_size(1 << 40, 96 << 10, 1).is_err());
        assert!(metadata_size(1 << 40, 2 << 30, 1).is_err());
        assert!(metadata_size(32 << 10, 64 << 10, 1).is_err());
        let max = metadata_size(u64::MAX, 64 << 10, u64::MAX).unwrap();
        assert_eq!(max / 4096, MAX_METADATA_BLOCKS);
    }
}
