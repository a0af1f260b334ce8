//! Fuzz-target bodies (feature `fuzzing`), shared by the cargo-fuzz targets in
//! `fuzz/` and by the CI smoke test `tests/decoder_smoke.rs`, so both run the
//! same logic.
//!
//! Every body takes arbitrary bytes and must not panic, hang or allocate
//! without bound: decoders return errors on bad input.  Bodies also assert a
//! few properties of what decodes successfully (a failed assertion is a
//! finding).  The first input byte is a mode byte; bit 0 asks to re-seal
//! checksums after building the block or image, so fuzzing reaches the checks
//! behind the checksum instead of stopping at it.
//!
//! * [`superblock`]: the superblock validator, decode/encode, probe and open
//!   of a one-block device.
//! * [`btree_node`]: the node validator, then [`Node`] accessors, searches and
//!   [`NodeMut`] edits on what passed.
//! * [`bitmap_index`]: bitmap and index validators, index entries, and
//!   [`RefCounts::from_disk`] over arbitrary words and overflow entries.
//! * [`metadata_image`]: patches over a valid 64-block pool image, opened
//!   read-only and walked; optionally opened read-write and changed.

use crate::superblock::{probe, Superblock, SUPERBLOCK};
use crate::types::{DataBlock, DevId, VirtBlock};
use crate::{OpenOptions, PoolMetadata};
use std::sync::{Arc, OnceLock};
use uthin_block_io::testing::MemDevice;
use uthin_block_io::{SharedDevice, BLOCK_SIZE};
use uthin_pdata::btree::node::{Node, NodeMut};
use uthin_pdata::btree::Value;
use uthin_pdata::checksum::{self, BlockKind};
use uthin_pdata::sm::counts::{RefCounts, ENTRIES_PER_BITMAP, WORDS_PER_BITMAP};
use uthin_pdata::sm::disk::{check_entry, IndexEntry, INDEX_ENTRY_SIZE};
use uthin_pdata::types::{le64, put64, BlockData};
use uthin_pdata::validator::{Validator, BITMAP, INDEX, NODE};
use uthin_pdata::MetaBlock;

/// Data block size of the images built here.
pub const BLOCK_SECTORS: u32 = 128;
/// Blocks of the base image of [`metadata_image`].
pub const IMAGE_BLOCKS: u64 = 64;

/// The mode byte and a 4096-byte block (zero padded) from the input.
fn split_block(data: &[u8]) -> (u8, Box<BlockData>) {
    let mode = data.first().copied().unwrap_or(0);
    let mut b = Box::new([0u8; BLOCK_SIZE]);
    let rest = data.get(1..).unwrap_or(&[]);
    let n = rest.len().min(BLOCK_SIZE);
    b[..n].copy_from_slice(&rest[..n]);
    (mode, b)
}

/// Bytes of the input after the first block, for extra parameters.
fn tail(data: &[u8]) -> &[u8] {
    data.get(1 + BLOCK_SIZE..).unwrap_or(&[])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    for (j, x) in w.iter_mut().enumerate() {
        *x = b.get(i * 8 + j).copied().unwrap_or(0);
    }
    u64::from_le_bytes(w)
}

/// Superblock: validation at block 0 and elsewhere, decode/encode, probe, open.
pub fn superblock(data: &[u8]) {
    let (mode, mut b) = split_block(data);
    if mode & 1 != 0 {
        put64(&mut b[..], 8, 0);
        checksum::seal(BlockKind::Superblock, &mut b);
    }
    let at0 = SUPERBLOCK.check(MetaBlock(0), &b);
    let _ = SUPERBLOCK.check(MetaBlock(le64(&b[..], 8)), &b);
    if at0.is_ok() {
        let sb = Superblock::unpack(&b);
        assert_eq!(Superblock::unpack(&sb.pack()), sb, "pack/unpack round trip");
    }
    let dev = MemDevice::from_bytes(b.to_vec());
    let zero = b.iter().all(|&x| x == 0);
    match probe(&dev) {
        Ok(Some(_)) => assert!(at0.is_ok(), "probe accepted what the validator refused"),
        Ok(None) => assert!(zero, "probe called a non-zero block unformatted"),
        Err(_) => assert!(at0.is_err() && !zero, "probe refused a valid block"),
    }
    let dev: SharedDevice = Arc::new(dev);
    let opts = OpenOptions {
        data_block_size: BLOCK_SECTORS,
        read_only: true,
        format_if_empty: false,
        cache_blocks: 16,
    };
    let _ = PoolMetadata::open(dev, opts);
}

/// B-tree node: validator, then accessors and edits on what it accepts.
pub fn btree_node(data: &[u8]) {
    let (mode, mut b) = split_block(data);
    let blk = MetaBlock(7);
    if mode & 1 != 0 {
        NODE.prepare(blk, &mut b);
    }
    if NODE.check(blk, &b).is_err() {
        return;
    }
    let n = Node::new(&b);
    for vs in [4, 8, 16, 24] {
        let _ = n.check(blk, vs);
    }
    let nr = n.nr_entries();
    let mut sorted = true;
    for i in 0..nr {
        let _ = n.value(i);
        if !n.is_leaf() {
            let _ = n.child(i);
        }
        if i > 0 && n.key(i - 1) >= n.key(i) {
            sorted = false;
        }
    }
    let t = tail(data);
    for i in 0..4 {
        let k = u64_at(t, i);
        let lb = n.lower_bound(k);
        let ub = n.upper_bound(k);
        assert!(ub <= nr, "upper_bound within entries");
        if let Some(l) = lb {
            assert!(l < nr, "lower_bound within entries");
        }
        if sorted {
            if let Some(l) = lb {
                assert!(n.key(l) <= k);
            }
            assert!(ub == nr || n.key(ub) >= k);
        }
    }
    // Edits the write path makes on nodes read from disk keep the node valid.
    let mut copy = b.clone();
    let vs = n.value_size();
    {
        let mut m = NodeMut::new(&mut copy);
        let left = nr.saturating_sub(1);
        if nr > 0 {
            m.remove_range(0, 1);
        }
        if left < n.max_entries() {
            m.insert_at(0, 1, &vec![0xAB; vs]);
        }
    }
    NODE.prepare(blk, &mut copy);
    assert!(NODE.check(blk, &copy).is_ok(), "edited node still valid");
}

/// Bitmap and index blocks, index entries, and ref counts from disk words.
pub fn bitmap_index(data: &[u8]) {
    let (mode, mut b) = split_block(data);
    let blk = MetaBlock(3);
    let kind: &dyn Validator = if mode & 2 != 0 { &INDEX } else { &BITMAP };
    if mode & 1 != 0 {
        kind.prepare(blk, &mut b);
    }
    let _ = BITMAP.check(blk, &b);
    let _ = INDEX.check(blk, &b);
    for i in 0..(BLOCK_SIZE - 16) / INDEX_ENTRY_SIZE {
        let o = 16 + INDEX_ENTRY_SIZE * i;
        let e = IndexEntry::unpack(&b[o..o + INDEX_ENTRY_SIZE]);
        let _ = check_entry(&e, i as u64, blk);
    }
    let words: Vec<u64> = (0..WORDS_PER_BITMAP)
        .map(|i| le64(&b[..], 16 + 8 * i))
        .collect();
    let t = tail(data);
    let nbm = 1 + (mode as u64 >> 2) % 3;
    let nr_blocks = if mode & 0x80 != 0 {
        u64_at(t, 0)
    } else {
        (nbm - 1) * ENTRIES_PER_BITMAP + 1 + u64_at(t, 0) % ENTRIES_PER_BITMAP
    };
    let mut all = Vec::with_capacity(words.len() * nbm as usize);
    for _ in 0..nbm {
        all.extend_from_slice(&words);
    }
    let overflow = (0..16)
        .map(|i| {
            (
                u64_at(t, 1 + i) % nr_blocks.max(1).saturating_add(2),
                u64_at(t, 17 + i) as u32,
            )
        })
        .collect();
    let Ok(mut rc) = RefCounts::from_disk(nr_blocks, all, overflow) else {
        return;
    };
    assert_eq!(rc.iter_nonzero().count() as u64, rc.nr_allocated());
    for bm in 0..nbm {
        let (free, before) = rc.bitmap_stats(bm);
        assert!(free as u64 <= ENTRIES_PER_BITMAP && before as u64 <= ENTRIES_PER_BITMAP);
    }
    for i in 0..8 {
        let x = u64_at(t, 20 + i);
        let _ = rc.get(x);
        let _ = rc.adjust(x % nr_blocks.max(1), if i % 2 == 0 { 1 } else { -1 });
        let _ = rc.alloc();
    }
    let _ = rc.take_dirty_overflow();
    rc.commit();
    assert_eq!(rc.iter_nonzero().count() as u64, rc.nr_allocated());
}

/// The valid base image of [`metadata_image`]: a pool with a multi-level
/// device tree, a snapshot that broke sharing, a third device, and a held
/// metadata snapshot, in [`IMAGE_BLOCKS`] blocks.
pub fn base_image() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| build_base_image().expect("base image builds"))
}

fn build_base_image() -> crate::Result<Vec<u8>> {
    let dev = Arc::new(MemDevice::new(IMAGE_BLOCKS * BLOCK_SIZE as u64));
    let mut md = PoolMetadata::open(dev.clone(), OpenOptions::new(BLOCK_SECTORS))?;
    md.resize_data_dev(2000)?;
    md.create_thin(DevId(1))?;
    for v in 0..300 {
        let b = md.alloc_data_block()?.expect("space");
        md.insert_block(DevId(1), VirtBlock(v * 3), b)?;
    }
    md.commit()?;
    md.create_snap(DevId(2), DevId(1))?;
    for v in 0..5 {
        let b = md.alloc_data_block()?.expect("space");
        md.insert_block(DevId(2), VirtBlock(v * 3), b)?;
    }
    md.create_thin(DevId(7))?;
    md.insert_block(DevId(7), VirtBlock(1 << 30), DataBlock(1999))?;
    md.commit()?;
    md.reserve_metadata_snap()?;
    md.insert_block(DevId(7), VirtBlock(5), DataBlock(1998))?;
    md.commit()?;
    drop(md);
    Ok(dev.snapshot())
}

/// An image: the base image with patches from the input.  Mode bit 0
/// re-seals every patched block as the kind it had; bit 1 also opens the
/// image read-write and changes it; bit 2 truncates the image.
///
/// After the mode byte the input is a list of patches
/// `block(1) offset(2, LE, mod 4096) len(1, mod 64) bytes(len)`.
pub fn metadata_image(data: &[u8]) {
    let mut img = base_image().to_vec();
    let mode = data.first().copied().unwrap_or(0);
    let mut touched = std::collections::BTreeSet::new();
    let mut p = data.get(1..).unwrap_or(&[]);
    while p.len() >= 4 {
        let blk = p[0] as u64 % IMAGE_BLOCKS;
        let off = u16::from_le_bytes([p[1], p[2]]) as usize % BLOCK_SIZE;
        let len = (p[3] as usize % 64).min(p.len() - 4);
        let start = blk as usize * BLOCK_SIZE + off;
        let end = (start + len).min((blk as usize + 1) * BLOCK_SIZE);
        img[start..end].copy_from_slice(&p[4..4 + (end - start)]);
        touched.insert(blk);
        p = &p[4 + len..];
    }
    if mode & 1 != 0 {
        let base = base_image();
        for blk in touched {
            let r = blk as usize * BLOCK_SIZE..(blk as usize + 1) * BLOCK_SIZE;
            let orig: &BlockData = base[r.clone()].try_into().expect("block");
            if let Some(kind) = checksum::classify(orig) {
                let b: &mut BlockData = (&mut img[r]).try_into().expect("block");
                checksum::seal(kind, b);
            }
        }
    }
    if mode & 4 != 0 {
        let keep = (mode as usize >> 3) % IMAGE_BLOCKS as usize;
        img.truncate(keep * BLOCK_SIZE + (mode as usize & 0x40) * 8);
    }
    let _ = walk_image(img.clone(), true);
    if mode & 2 != 0 {
        change_image(img);
    }
}

fn open_image(img: Vec<u8>, read_only: bool) -> crate::Result<PoolMetadata> {
    let dev: SharedDevice = Arc::new(MemDevice::from_bytes(img));
    PoolMetadata::open(
        dev,
        OpenOptions {
            data_block_size: BLOCK_SECTORS,
            read_only,
            format_if_empty: false,
            cache_blocks: 16,
        },
    )
}

/// Opens an image and reads everything a pool reads.  Returns the first error.
pub fn walk_image(img: Vec<u8>, read_only: bool) -> crate::Result<()> {
    let md = open_image(img, read_only)?;
    walk(&md)
}

/// Reads every device's details and mappings, and looks some of them up.
pub fn walk(md: &PoolMetadata) -> crate::Result<()> {
    let _ = md.metadata_snap()?;
    let _ = (md.data_dev_size()?, md.free_data_blocks()?);
    let _ = (md.metadata_dev_size()?, md.free_metadata_blocks()?);
    let _ = (md.time()?, md.transaction_id()?);
    for id in md.device_ids()? {
        md.device_details(id)?;
        let mut keys = Vec::new();
        md.for_each_mapping(id, VirtBlock(0), VirtBlock(u64::MAX), &mut |v, _| {
            if keys.len() < 8 {
                keys.push(v);
            }
        })?;
        for &k in &keys {
            let found = md.find_block(id, k)?;
            if let Some(l) = found {
                let _ = md.data_block_count(l.block)?;
            }
        }
        let _ = md.find_mapped_range(id, VirtBlock(0), VirtBlock(u64::MAX))?;
        let _ = md.highest_mapped(id)?;
    }
    Ok(())
}

/// Opens read-write and runs changes and a commit; errors are fine, panics not.
fn change_image(img: Vec<u8>) {
    let Ok(mut md) = open_image(img, false) else {
        return;
    };
    let ids = md.device_ids().unwrap_or_default();
    let _ = md.create_thin(DevId(100));
    if let Some(&first) = ids.first() {
        let _ = md.create_snap(DevId(101), first);
        if let Ok(Some(b)) = md.alloc_data_block() {
            let _ = md.insert_block(first, VirtBlock(4), b);
        }
        let _ = md.remove_range(first, VirtBlock(0), VirtBlock(10));
    }
    if let Some(&last) = ids.last() {
        let _ = md.delete_thin(last);
    }
    if md.metadata_snap().ok().flatten().is_some() {
        let _ = md.release_metadata_snap();
    }
    if md.commit().is_err() {
        let _ = md.abort();
    }
    let _ = walk(&md);
}
