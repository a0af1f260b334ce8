//! The thin-pool superblock, metadata block 0 (FORMAT.md §1.3):
//!
//! ```text
//! off  size field
//!   0    4  csum (xor 160774)
//!   4    4  flags (bit 0 NEEDS_CHECK)
//!   8    8  blocknr
//!  16   16  uuid
//!  32    8  magic 27022010
//!  40    4  version (2)
//!  44    4  time
//!  48    8  trans_id
//!  56    8  held_root (metadata snapshot copy, 0 = none)
//!  64  128  data_space_map_root (32 bytes used)
//! 192  128  metadata_space_map_root (32 bytes used)
//! 320    8  data_mapping_root
//! 328    8  device_details_root
//! 336    4  data_block_size (sectors)
//! 340    4  metadata_block_size (8)
//! 344    8  metadata_nr_blocks
//! 352    4  compat_flags
//! 356    4  compat_ro_flags
//! 360    4  incompat_flags
//! 364 3732  zero
//! ```

use uthin_pdata::checksum::BlockKind;
use uthin_pdata::sm::SmRoot;
use uthin_pdata::types::{le32, le64, put32, put64, BlockData};
use uthin_pdata::validator::Validator;
use uthin_pdata::{Error, MetaBlock, Result};

/// Superblock magic.
pub const MAGIC: u64 = 27022010;
/// Metadata format version written.
pub const VERSION: u32 = 2;
/// The NEEDS_CHECK flag.
pub const FLAG_NEEDS_CHECK: u32 = 1;
/// Incompat / compat_ro flags this implementation supports (none).
pub const SUPPORTED_INCOMPAT: u32 = 0;
/// Supported compat_ro flags (none).
pub const SUPPORTED_COMPAT_RO: u32 = 0;
/// Size of the meaningful part.
pub const SUPERBLOCK_SIZE: usize = 364;
/// Most sectors of metadata the format addresses.
pub const MAX_METADATA_SECTORS: u64 = 33_292_800;
/// Above this the kernel warns that the rest of the device is unused.
pub const WARN_METADATA_SECTORS: u64 = 33_554_432;

const OFF_FLAGS: usize = 4;
const OFF_UUID: usize = 16;
const OFF_MAGIC: usize = 32;
const OFF_VERSION: usize = 40;
const OFF_TIME: usize = 44;
const OFF_TRANS: usize = 48;
const OFF_HELD: usize = 56;
const OFF_DATA_SM: usize = 64;
const OFF_META_SM: usize = 192;
const SM_AREA: usize = 128;
const OFF_MAPPING: usize = 320;
const OFF_DETAILS: usize = 328;
const OFF_DBS: usize = 336;
const OFF_MBS: usize = 340;
const OFF_MNR: usize = 344;
const OFF_COMPAT: usize = 352;
const OFF_COMPAT_RO: usize = 356;
const OFF_INCOMPAT: usize = 360;

/// The decoded superblock.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Superblock {
    pub flags: u32,
    pub blocknr: u64,
    pub uuid: [u8; 16],
    pub magic: u64,
    pub version: u32,
    pub time: u32,
    pub trans_id: u64,
    pub held_root: u64,
    pub data_sm_root: SmRoot,
    pub metadata_sm_root: SmRoot,
    pub data_mapping_root: MetaBlock,
    pub device_details_root: MetaBlock,
    pub data_block_size: u32,
    pub metadata_block_size: u32,
    pub metadata_nr_blocks: u64,
    pub compat_flags: u32,
    pub compat_ro_flags: u32,
    pub incompat_flags: u32,
}

impl Superblock {
    /// Decodes a (validated) superblock block.
    pub fn unpack(d: &BlockData) -> Self {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&d[OFF_UUID..OFF_UUID + 16]);
        Superblock {
            flags: le32(d, OFF_FLAGS),
            blocknr: le64(d, 8),
            uuid,
            magic: le64(d, OFF_MAGIC),
            version: le32(d, OFF_VERSION),
            time: le32(d, OFF_TIME),
            trans_id: le64(d, OFF_TRANS),
            held_root: le64(d, OFF_HELD),
            data_sm_root: SmRoot::unpack(&d[OFF_DATA_SM..OFF_DATA_SM + SM_AREA]),
            metadata_sm_root: SmRoot::unpack(&d[OFF_META_SM..OFF_META_SM + SM_AREA]),
            data_mapping_root: MetaBlock(le64(d, OFF_MAPPING)),
            device_details_root: MetaBlock(le64(d, OFF_DETAILS)),
            data_block_size: le32(d, OFF_DBS),
            metadata_block_size: le32(d, OFF_MBS),
            metadata_nr_blocks: le64(d, OFF_MNR),
            compat_flags: le32(d, OFF_COMPAT),
            compat_ro_flags: le32(d, OFF_COMPAT_RO),
            incompat_flags: le32(d, OFF_INCOMPAT),
        }
    }

    /// Encodes into a zeroed block (checksum and blocknr are set by the
    /// validator at write time).
    pub fn pack(&self) -> Box<BlockData> {
        let mut d = Box::new([0u8; uthin_block_io::BLOCK_SIZE]);
        put32(&mut d[..], OFF_FLAGS, self.flags);
        put64(&mut d[..], 8, self.blocknr);
        d[OFF_UUID..OFF_UUID + 16].copy_from_slice(&self.uuid);
        put64(&mut d[..], OFF_MAGIC, self.magic);
        put32(&mut d[..], OFF_VERSION, self.version);
        put32(&mut d[..], OFF_TIME, self.time);
        put64(&mut d[..], OFF_TRANS, self.trans_id);
        put64(&mut d[..], OFF_HELD, self.held_root);
        self.data_sm_root
            .pack(&mut d[OFF_DATA_SM..OFF_DATA_SM + SM_AREA]);
        self.metadata_sm_root
            .pack(&mut d[OFF_META_SM..OFF_META_SM + SM_AREA]);
        put64(&mut d[..], OFF_MAPPING, self.data_mapping_root.0);
        put64(&mut d[..], OFF_DETAILS, self.device_details_root.0);
        put32(&mut d[..], OFF_DBS, self.data_block_size);
        put32(&mut d[..], OFF_MBS, self.metadata_block_size);
        put64(&mut d[..], OFF_MNR, self.metadata_nr_blocks);
        put32(&mut d[..], OFF_COMPAT, self.compat_flags);
        put32(&mut d[..], OFF_COMPAT_RO, self.compat_ro_flags);
        put32(&mut d[..], OFF_INCOMPAT, self.incompat_flags);
        d
    }

    /// Whether NEEDS_CHECK is set.
    pub fn needs_check(&self) -> bool {
        self.flags & FLAG_NEEDS_CHECK != 0
    }
}

/// Validates superblocks: checksum, block number (0, or the location of a
/// metadata-snapshot copy) and magic.
pub struct SuperblockValidator;

/// The static instance.
pub static SUPERBLOCK: SuperblockValidator = SuperblockValidator;

impl Validator for SuperblockValidator {
    fn kind(&self) -> BlockKind {
        BlockKind::Superblock
    }
    fn check_body(&self, blk: MetaBlock, d: &BlockData) -> Result<()> {
        let magic = le64(d, OFF_MAGIC);
        if magic != MAGIC {
            return Err(Error::corrupt(
                "superblock",
                blk,
                format!("bad magic {magic} (expected {MAGIC})"),
            ));
        }
        Ok(())
    }
}

/// Reads and validates the superblock of a metadata device, without opening
/// the pool: `Ok(None)` if block 0 is all zero (unformatted).
pub fn probe(dev: &dyn uthin_block_io::BlockDevice) -> Result<Option<Superblock>> {
    let mut d = Box::new([0u8; uthin_block_io::BLOCK_SIZE]);
    dev.read_at(&mut d[..], 0).map_err(|e| Error::Io {
        blk: MetaBlock(0),
        source: e,
    })?;
    if d.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    SUPERBLOCK.check(MetaBlock(0), &d)?;
    Ok(Some(Superblock::unpack(&d)))
}
