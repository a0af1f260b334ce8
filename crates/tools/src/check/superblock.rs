//! Superblock checks.  thin_check 1.x only verifies the checksum; uthin also
//! checks what the kernel refuses or relies on (block number, magic,
//! version, block sizes, incompatible features) and, in a full check, the
//! space-map roots' sanity.  `nr_allocated` is not compared with the
//! bitmaps (FORMAT.md §3.2: the tools never did, and thin_restore 0.9.0
//! writes a value one too high), but it cannot exceed `nr_blocks`.

use super::io::Disk;
use super::node::NodeError;
use super::problems::Problems;
use uthin_pdata::checksum::{self, BlockKind};
use uthin_thin::superblock::{Superblock, MAGIC};

/// Reads and checksums the superblock at `loc`.
pub fn read(disk: &Disk, loc: u64) -> Result<Superblock, String> {
    if loc >= disk.nr_blocks() {
        return Err(format!(
            "superblock at block {loc}: {}",
            NodeError::BeyondEnd
        ));
    }
    let d = disk
        .read_new(loc)
        .map_err(|e| format!("cannot read the superblock at block {loc}: {e}"))?;
    match checksum::classify(&d) {
        Some(BlockKind::Superblock) => Ok(Superblock::unpack(&d)),
        _ => Err("bad checksum in superblock".to_string()),
    }
}

/// Checks the fields of a superblock read from `loc` (a metadata snapshot
/// copy when `loc` is not 0).
pub fn check_fields(sb: &Superblock, loc: u64, problems: &Problems) {
    let what = if loc == 0 {
        "superblock".to_string()
    } else {
        format!("metadata snapshot superblock at block {loc}")
    };
    let bad = |msg: String| problems.fatal(Some(loc), format!("{what}: {msg}"));
    if sb.blocknr != loc {
        bad(format!(
            "blocknr mismatch (it says it is block {})",
            sb.blocknr
        ));
    }
    if sb.magic != MAGIC {
        bad(format!("bad magic {} (expected {MAGIC})", sb.magic));
    }
    if sb.version != 1 && sb.version != 2 {
        bad(format!("unsupported metadata version {}", sb.version));
    }
    let dbs = sb.data_block_size;
    if !(128..=2_097_152).contains(&dbs) || !dbs.is_multiple_of(128) {
        bad(format!(
            "bad data_block_size {dbs} (must be a multiple of 128 sectors, 128 to 2097152)"
        ));
    }
    if sb.metadata_block_size != 8 {
        bad(format!(
            "bad metadata_block_size {} (expected 8)",
            sb.metadata_block_size
        ));
    }
    if sb.incompat_flags != 0 {
        bad(format!(
            "unsupported incompatible features {:#x}",
            sb.incompat_flags
        ));
    }
    if loc != 0 {
        return; // a snapshot copy has no space maps
    }
    for (name, r) in [
        ("data", &sb.data_sm_root),
        ("metadata", &sb.metadata_sm_root),
    ] {
        if r.nr_allocated > r.nr_blocks {
            bad(format!(
                "the {name} space map root says {} of {} blocks are allocated",
                r.nr_allocated, r.nr_blocks
            ));
        }
    }
}
