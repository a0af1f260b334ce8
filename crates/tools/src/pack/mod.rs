//! `thin_metadata_pack` / `thin_metadata_unpack`: a compressed copy of the
//! metadata blocks that matter, in the pack format of thin-provisioning-tools
//! 1.x (version 3), so packs move between uthin and 1.x either way.
//!
//! File layout (all integers little-endian u64):
//!
//! ```text
//! header:  magic 0xa537a0aa6309ef77 | version 3 | block size 4096 | nr_blocks
//! chunks:  length L | L bytes of one zlib stream          (repeated to EOF)
//! stream:  block number | block byte-code (see vm)       (repeated)
//! ```
//!
//! Only blocks whose checksum identifies them as metadata are packed (thin,
//! cache or era superblock, B-tree node, space-map bitmap or index, array
//! block); the rest of the device unpacks as zeroes.  A chunk holds at most
//! 1024 blocks; chunks may come in any order (1.x writes them in the order
//! its threads finish; uthin in block order, so its packs are
//! deterministic).  [`vm`] documents the block byte-code.
//!
//! Work is spread over the rayon pool: blocks are classified and encoded,
//! and chunks compressed or decompressed, in parallel; output order is kept.

pub mod vm;

use crate::error::{Error, Result};
use crate::report::Report;
use flate2::{read::ZlibDecoder, write::ZlibEncoder, Compression};
use rayon::prelude::*;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;
use uthin_pdata::checksum::crc32c_raw;

/// Pack file magic.
pub const MAGIC: u64 = 0xa537_a0aa_6309_ef77;
/// Pack format version.
pub const VERSION: u64 = 3;
/// Block size of packed metadata.
pub const BLOCK_SIZE: usize = 4096;
/// Most blocks in one compressed chunk.
pub const BLOCKS_PER_CHUNK: usize = 1024;
/// Blocks read from the input at a time.
const WINDOW: u64 = 8192;
/// Largest chunk accepted when unpacking (a chunk of 1024 literal blocks
/// compresses to a little over 4 MiB at worst).
const MAX_CHUNK: u64 = 64 << 20;

/// Metadata block kinds a pack keeps, by checksum salt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ThinSuperblock,
    CacheSuperblock,
    EraSuperblock,
    Node,
    Bitmap,
    Index,
    Array,
}

const SALTS: &[(Kind, u32)] = &[
    (Kind::ThinSuperblock, 160774),
    (Kind::CacheSuperblock, 9031977),
    (Kind::EraSuperblock, 146538381),
    (Kind::Node, 121107),
    (Kind::Bitmap, 240779),
    (Kind::Index, 160478),
    (Kind::Array, 595846735),
];

/// The kind of a 4096-byte block, if its checksum makes it metadata.
pub fn block_kind(b: &[u8]) -> Option<Kind> {
    if b.len() != BLOCK_SIZE {
        return None;
    }
    let stored = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
    let x = stored ^ crc32c_raw(&b[4..]);
    SALTS.iter().find(|s| s.1 == x).map(|s| s.0)
}

/// Whether the file or device at `path` starts with a thin, cache or era
/// superblock (used to ask before overwriting it).
pub fn holds_metadata(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    let mut b = vec![0u8; BLOCK_SIZE];
    f.read_exact_at(&mut b, 0).is_ok()
        && matches!(
            block_kind(&b),
            Some(Kind::ThinSuperblock | Kind::CacheSuperblock | Kind::EraSuperblock)
        )
}

/// The packed record of one block (block number, byte-code), or None if
/// the block is not metadata.
fn encode_block(blk: u64, b: &[u8]) -> Option<Vec<u8>> {
    let kind = block_kind(b)?;
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(&blk.to_le_bytes());
    match kind {
        Kind::Node => vm::encode_node(&mut out, b),
        _ => vm::literal(&mut out, b),
    }
    Some(out)
}

fn compress(records: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    for r in records {
        z.write_all(r)
            .map_err(|e| Error::msg(format!("compressing: {e}")))?;
    }
    z.finish()
        .map_err(|e| Error::msg(format!("compressing: {e}")))
}

fn file_err(path: &Path, e: std::io::Error) -> Error {
    Error::File {
        path: path.display().to_string(),
        source: e,
    }
}

/// What a pack or unpack moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Blocks of the metadata device.
    pub nr_blocks: u64,
    /// Metadata blocks packed or unpacked.
    pub packed: u64,
}

/// Packs the metadata at `input` into the file `output` (created or
/// truncated).
pub fn pack(input: &Path, output: &Path, report: &Report) -> Result<PackStats> {
    let inp = File::open(input).map_err(|e| file_err(input, e))?;
    let dev = uthin_block_io::FileDevice::from_file(inp).map_err(|e| file_err(input, e))?;
    use uthin_block_io::BlockDevice;
    let nr_blocks = dev.len().map_err(|e| file_err(input, e))? / BLOCK_SIZE as u64;
    let out = File::create(output).map_err(|e| file_err(output, e))?;
    let mut w = std::io::BufWriter::new(out);
    let mut header = Vec::with_capacity(32);
    for v in [MAGIC, VERSION, BLOCK_SIZE as u64, nr_blocks] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    w.write_all(&header).map_err(|e| file_err(output, e))?;

    report.start("Packing metadata", nr_blocks.max(1));
    let mut stats = PackStats {
        nr_blocks,
        packed: 0,
    };
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; WINDOW as usize * BLOCK_SIZE];
    let mut start = 0u64;
    while start < nr_blocks || !pending.is_empty() {
        let n = WINDOW.min(nr_blocks - start);
        let bytes = &mut buf[..n as usize * BLOCK_SIZE];
        if n > 0 {
            dev.read_at(bytes, start * BLOCK_SIZE as u64)
                .map_err(|e| file_err(input, e))?;
        }
        let records: Vec<Vec<u8>> = bytes
            .par_chunks(BLOCK_SIZE)
            .enumerate()
            .filter_map(|(i, b)| encode_block(start + i as u64, b))
            .collect();
        stats.packed += records.len() as u64;
        pending.extend(records);
        start += n;
        // Whole chunks now; the remainder at the end.
        let take = if start >= nr_blocks {
            pending.len()
        } else {
            pending.len() / BLOCKS_PER_CHUNK * BLOCKS_PER_CHUNK
        };
        let ready: Vec<Vec<u8>> = pending.drain(..take).collect();
        let chunks: Vec<Vec<u8>> = ready
            .par_chunks(BLOCKS_PER_CHUNK)
            .map(compress)
            .collect::<Result<_>>()?;
        for c in chunks {
            w.write_all(&(c.len() as u64).to_le_bytes())
                .and_then(|_| w.write_all(&c))
                .map_err(|e| file_err(output, e))?;
        }
        report.inc(n);
    }
    report.finish();
    w.flush().map_err(|e| file_err(output, e))?;
    Ok(stats)
}

/// Decodes one chunk into (block number, block) pairs.
fn decode_chunk(z: &[u8], nr_blocks: u64) -> Result<Vec<(u64, Vec<u8>)>> {
    let bad = |why: String| Error::msg(format!("corrupt pack file: {why}"));
    let mut raw = Vec::new();
    ZlibDecoder::new(z)
        .read_to_end(&mut raw)
        .map_err(|e| bad(format!("bad compressed chunk: {e}")))?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let Some(nr) = raw.get(pos..pos + 8) else {
            return Err(bad("truncated block number".into()));
        };
        let blk = u64::from_le_bytes(nr.try_into().expect("8 bytes"));
        if blk >= nr_blocks {
            return Err(bad(format!(
                "block {blk} beyond the end ({nr_blocks} blocks)"
            )));
        }
        let (block, used) = vm::decode(&raw[pos + 8..], BLOCK_SIZE)
            .map_err(|e| bad(format!("block {blk}: {e}")))?;
        if block_kind(&block).is_none() {
            return Err(bad(format!(
                "block {blk} does not unpack to a metadata block"
            )));
        }
        out.push((blk, block));
        pos += 8 + used;
    }
    Ok(out)
}

fn read_u64(r: &mut dyn Read) -> std::io::Result<Option<u64>> {
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match r.read(&mut b[got..])? {
            0 if got == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    Ok(Some(u64::from_le_bytes(b)))
}

/// Unpacks the pack file `input` onto `output` (a regular file is created or
/// truncated and sized; a block device must be large enough).
pub fn unpack(input: &Path, output: &Path, report: &Report) -> Result<PackStats> {
    let f = File::open(input).map_err(|e| file_err(input, e))?;
    let in_len = f.metadata().map_err(|e| file_err(input, e))?.len();
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let mut hdr = [0u64; 4];
    for h in hdr.iter_mut() {
        *h = read_u64(&mut r)
            .ok()
            .flatten()
            .ok_or_else(|| Error::msg("Not a pack file"))?;
    }
    let [magic, version, block_size, nr_blocks] = hdr;
    if magic != MAGIC {
        return Err(Error::msg("Not a pack file"));
    }
    if version != VERSION {
        return Err(Error::msg(format!(
            "unsupported pack file version ({version})"
        )));
    }
    if block_size != BLOCK_SIZE as u64 {
        return Err(Error::msg(format!("block size is not {BLOCK_SIZE}")));
    }
    let size = nr_blocks
        .checked_mul(BLOCK_SIZE as u64)
        .filter(|&s| nr_blocks > 0 && s <= i64::MAX as u64)
        .ok_or_else(|| Error::msg(format!("corrupt pack file: {nr_blocks} blocks")))?;

    let is_blk = std::fs::metadata(output)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    let out = OpenOptions::new()
        .write(true)
        .create(!is_blk)
        .truncate(!is_blk)
        .open(output)
        .map_err(|e| file_err(output, e))?;
    if is_blk {
        let dev =
            uthin_block_io::FileDevice::open(output, false).map_err(|e| file_err(output, e))?;
        use uthin_block_io::BlockDevice;
        if dev.len().map_err(|e| file_err(output, e))? < size {
            return Err(Error::msg(format!(
                "{}: too small for the {size} bytes of metadata",
                output.display()
            )));
        }
    } else {
        out.set_len(size).map_err(|e| file_err(output, e))?;
    }

    report.start("Unpacking metadata", in_len.max(1));
    let mut stats = PackStats {
        nr_blocks,
        packed: 0,
    };
    let batch = 2 * rayon::current_num_threads().max(1);
    loop {
        let mut chunks = Vec::with_capacity(batch);
        while chunks.len() < batch {
            let Some(len) = read_u64(&mut r).map_err(|_| Error::msg("truncated pack file"))? else {
                break;
            };
            if len > MAX_CHUNK {
                return Err(Error::msg(format!(
                    "corrupt pack file: chunk of {len} bytes"
                )));
            }
            let mut c = vec![0u8; len as usize];
            r.read_exact(&mut c)
                .map_err(|_| Error::msg("truncated pack file"))?;
            report.inc(len + 8);
            chunks.push(c);
        }
        if chunks.is_empty() {
            break;
        }
        let n: u64 = chunks
            .par_iter()
            .map(|c| {
                let blocks = decode_chunk(c, nr_blocks)?;
                for (blk, b) in &blocks {
                    out.write_all_at(b, blk * BLOCK_SIZE as u64)
                        .map_err(|e| file_err(output, e))?;
                }
                Ok(blocks.len() as u64)
            })
            .sum::<Result<u64>>()?;
        stats.packed += n;
    }
    report.finish();
    out.sync_all().map_err(|e| file_err(output, e))?;
    Ok(stats)
}
