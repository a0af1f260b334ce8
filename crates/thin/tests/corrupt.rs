//! Corrupt metadata never panics (STYLE.md §4).
//!
//! A pool built with uthin (a multi-level device tree, snapshots that broke
//! sharing, data and metadata ref-count tree entries, a details tree and a
//! data index tree with internal nodes, a held metadata snapshot) is
//! committed; an independent walker of the on-disk format labels every block
//! the live superblock reaches.  Then bytes are corrupted and the pool is
//! opened and read in full (open, device ids, details, every mapping,
//! lookups): the result must be an error naming the corrupted block when the
//! reader reads that block, and exactly the uncorrupted result when it does
//! not (free blocks, blocks only the metadata snapshot holds, bytes the format
//! says readers ignore).  Reads run under a watchdog so a loop is a failure,
//! not a hung test.

mod common;

use common::image::{blk, blk_mut, flip, label_blocks, reseal, BS};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;
use uthin_block_io::testing::MemDevice;
use uthin_block_io::SharedDevice;
use uthin_pdata::checksum::{self, BlockKind};
use uthin_pdata::types::{le32, le64, put32, put64};
use uthin_thin::details::DeviceDetails;
use uthin_thin::{DataBlock, DevId, Error, Lookup, OpenOptions, PoolMetadata, VirtBlock};

const META_BLOCKS: u64 = 1024;

/// The reference image and the labels of the blocks the live superblock reaches.
struct Fixture {
    img: Vec<u8>,
    live: BTreeMap<u64, String>,
    baseline: Seen,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let img = build_pool().expect("build pool");
        let live = label_blocks(&img);
        let baseline = read_all(img.clone(), true).expect("clean image reads");
        Fixture {
            img,
            live,
            baseline,
        }
    })
}

fn build_pool() -> uthin_thin::Result<Vec<u8>> {
    let dev = Arc::new(MemDevice::new(META_BLOCKS * BS as u64));
    let mut md = PoolMetadata::open(dev.clone(), OpenOptions::new(128))?;
    // 184 data bitmaps: the data index tree needs an internal node.
    md.resize_data_dev(3_000_000)?;
    // 130 devices: the details tree needs an internal node.
    for id in 10..140 {
        md.create_thin(DevId(id))?;
    }
    let map = |md: &mut PoolMetadata, dev: u64, vs: std::ops::Range<u64>| {
        for v in vs {
            let b = md.alloc_data_block()?.expect("data space");
            md.insert_block(DevId(dev), VirtBlock(v), b)?;
        }
        uthin_thin::Result::Ok(())
    };
    md.create_thin(DevId(1))?;
    map(&mut md, 1, 0..2000)?;
    md.create_thin(DevId::MAX)?;
    md.inc_data_range(DataBlock(2_999_999), DataBlock(3_000_000))?;
    md.insert_block(DevId::MAX, VirtBlock(7), DataBlock(2_999_999))?;
    md.commit()?;
    // Breaking sharing twice in one leaf takes its data counts to 3.
    md.create_snap(DevId(2), DevId(1))?;
    map(&mut md, 2, 0..10)?;
    md.create_snap(DevId(3), DevId(2))?;
    map(&mut md, 3, 20..25)?;
    // Three more references to dev 3's root take its count to 4.
    for id in 4..7 {
        md.create_snap(DevId(id), DevId(3))?;
    }
    md.commit()?;
    md.reserve_metadata_snap()?;
    map(&mut md, 1, 2000..2100)?;
    md.commit()?;
    drop(md);
    Ok(dev.snapshot())
}

/// Everything a full read returns.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    ids: Vec<DevId>,
    details: Vec<DeviceDetails>,
    mappings: Vec<(u64, u64, u64, u32)>,
    lookups: Vec<Option<Lookup>>,
    pool: (u32, u64, u64, Option<u64>),
}

/// Opens `img` and reads everything, under a watchdog.
fn read_all(img: Vec<u8>, read_only: bool) -> Result<Seen, Error> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_all_inner(img, read_only));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("reading corrupt metadata hung (or panicked)")
}

fn read_all_inner(img: Vec<u8>, read_only: bool) -> Result<Seen, Error> {
    let dev: SharedDevice = Arc::new(MemDevice::from_bytes(img));
    let opts = OpenOptions {
        read_only,
        format_if_empty: !read_only,
        ..OpenOptions::new(128)
    };
    let md = PoolMetadata::open(dev, opts)?;
    let mut s = Seen {
        ids: md.device_ids()?,
        details: Vec::new(),
        mappings: Vec::new(),
        lookups: Vec::new(),
        pool: (
            md.time()?,
            md.transaction_id()?,
            md.data_dev_size()?,
            md.metadata_snap()?.map(|b| b.0),
        ),
    };
    for &id in &s.ids {
        s.details.push(md.device_details(id)?);
        let first = s.mappings.len();
        md.for_each_mapping(id, VirtBlock(0), VirtBlock(u64::MAX), &mut |v, bt| {
            s.mappings.push((id.0, v.0, bt.block.0, bt.time.0));
        })?;
        let probe = [s.mappings.get(first), s.mappings.last()];
        for v in probe.into_iter().flatten().map(|m| m.1).chain([1 << 40]) {
            s.lookups.push(md.find_block(id, VirtBlock(v))?);
        }
        s.lookups.push(
            md.find_mapped_range(id, VirtBlock(0), VirtBlock(64))?
                .map(|r| Lookup {
                    block: r.data_begin,
                    shared: r.maybe_shared,
                }),
        );
    }
    Ok(s)
}

/// Whether an error message names metadata block `b` (printed `{b:#x}`).
fn names_block(msg: &str, b: u64) -> bool {
    let pat = format!("block {b:#x}");
    msg.match_indices(&pat)
        .any(|(i, _)| !msg[i + pat.len()..].starts_with(|c: char| c.is_ascii_hexdigit()))
}

/// Asserts that reading `img` fails with an error naming block `b`.
fn assert_err_names(img: Vec<u8>, b: u64, what: &str) {
    for ro in [true, false] {
        match read_all(img.clone(), ro) {
            Ok(_) => panic!("{what}: corrupt block {b:#x} read without error (read_only {ro})"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    names_block(&msg, b),
                    "{what}: error does not name {b:#x}: {msg}"
                );
            }
        }
    }
}

fn first_of(label: &str) -> u64 {
    *fixture()
        .live
        .iter()
        .find(|(_, l)| l.as_str() == label)
        .unwrap_or_else(|| panic!("the image has no {label} block"))
        .0
}

/// A device mapping leaf whose entry count satisfies `pred(nr, max)`.
fn leaf_where(pred: impl Fn(usize, usize) -> bool) -> u64 {
    let f = fixture();
    *f.live
        .iter()
        .find(|(&b, l)| {
            let d = blk(&f.img, b);
            *l == "device mapping leaf" && pred(le32(d, 16) as usize, le32(d, 20) as usize)
        })
        .expect("such a leaf")
        .0
}

const KINDS: [&str; 13] = [
    "superblock",
    "metadata index",
    "metadata bitmap",
    "metadata ref-count leaf",
    "data index internal",
    "data index leaf",
    "data bitmap",
    "data ref-count leaf",
    "top-level mapping leaf",
    "device mapping internal",
    "device mapping leaf",
    "details internal",
    "details leaf",
];

#[test]
fn image_has_every_block_kind() {
    let f = fixture();
    for k in KINDS {
        first_of(k);
    }
    for (&b, label) in &f.live {
        let want = match label.as_str() {
            "superblock" => BlockKind::Superblock,
            "metadata index" => BlockKind::Index,
            l if l.ends_with("bitmap") => BlockKind::Bitmap,
            _ => BlockKind::Node,
        };
        let d: &[u8; BS] = blk(&f.img, b).try_into().unwrap();
        assert_eq!(checksum::classify(d), Some(want), "{label} at {b:#x}");
    }
    assert_eq!(f.baseline.ids.len(), 137);
    assert!(f.baseline.pool.3.is_some(), "metadata snapshot held");
}

#[test]
fn flipped_byte_in_each_kind_is_an_error_naming_the_block() {
    let f = fixture();
    for k in KINDS {
        let b = first_of(k);
        // Header, body, and the unused tail (the checksum covers it all).
        for off in [0, 5, 17, 40, 300, 2100, 4095] {
            assert_err_names(flip(&f.img, b, off, 0x10), b, &format!("{k} @{off}"));
        }
        let mut z = f.img.clone();
        blk_mut(&mut z, b).fill(0);
        if b == 0 {
            assert!(matches!(read_all(z.clone(), true), Err(Error::Unformatted)));
            // An all-zero block 0 means "unformatted": read-write opens format it.
            assert_eq!(read_all(z, false).unwrap().ids, vec![]);
        } else {
            assert_err_names(z, b, &format!("zeroed {k}"));
        }
    }
}

#[test]
fn bytes_readers_ignore_may_change() {
    let f = fixture();
    let same = |img: Vec<u8>, what: &str| {
        assert_eq!(read_all(img, true).expect(what), f.baseline, "{what}");
    };
    // Superblock: uuid, version, sm-root tails, metadata_block_size,
    // metadata_nr_blocks, compat flags, the zero tail (FORMAT.md §1.3, §1.4).
    for off in [16, 31, 40, 100, 191, 224, 319, 340, 344, 352, 364, 4095] {
        let mut img = flip(&f.img, 0, off, 0x5a);
        reseal(&mut img, 0, BlockKind::Superblock);
        same(img, &format!("superblock byte {off}"));
    }
    // Nodes: padding, unused key and value slots.
    let leaf = leaf_where(|nr, max| nr > 1 && nr < max);
    let d = blk(&f.img, leaf);
    let (nr, max) = (le32(d, 16) as usize, le32(d, 20) as usize);
    for off in [
        28,
        32 + 8 * nr,
        32 + 8 * max - 1,
        32 + 8 * max + 8 * nr,
        4095,
    ] {
        let mut img = flip(&f.img, leaf, off, 0xa5);
        reseal(&mut img, leaf, BlockKind::Node);
        same(img, &format!("leaf byte {off}"));
    }
    // Bitmap and index padding; index entries beyond the last bitmap.
    for (label, kind, off) in [
        ("data bitmap", BlockKind::Bitmap, 4),
        ("metadata bitmap", BlockKind::Bitmap, 7),
        ("metadata index", BlockKind::Index, 4),
        ("metadata index", BlockKind::Index, 16 + 16 * 200),
    ] {
        let b = first_of(label);
        let mut img = flip(&f.img, b, off, 0x77);
        reseal(&mut img, b, kind);
        same(img, &format!("{label} byte {off}"));
    }
}

#[test]
fn tree_roots_pointing_anywhere_never_panic() {
    let f = fixture();
    // Superblock fields holding a block number: held root, data-SM index and
    // ref-count roots, metadata index and ref-count roots, mapping, details.
    let fields = [56, 80, 88, 208, 216, 320, 328];
    let targets = (0..META_BLOCKS)
        .step_by(7)
        .chain([1, META_BLOCKS, 1 << 40, u64::MAX]);
    for t in targets {
        for off in fields {
            let mut img = f.img.clone();
            put64(&mut img, off, t);
            reseal(&mut img, 0, BlockKind::Superblock);
            let r = read_all(img, true);
            let kind = (t < META_BLOCKS)
                .then(|| checksum::classify(blk(&f.img, t).try_into().unwrap()))
                .flatten();
            let expect_err = match off {
                56 => false,
                208 => kind != Some(BlockKind::Index),
                _ => kind != Some(BlockKind::Node),
            };
            if expect_err {
                let e = r.expect_err("a root at a block of the wrong kind must fail");
                assert!(names_block(&e.to_string(), t), "field {off} -> {t:#x}: {e}");
            }
        }
    }
}

/// Points child `i` of internal node `b` at `to` and re-seals.
fn set_child(img: &mut [u8], b: u64, i: usize, to: u64) {
    let max = le32(blk(img, b), 20) as usize;
    put64(blk_mut(img, b), 32 + 8 * max + 8 * i, to);
    reseal(img, b, BlockKind::Node);
}

#[test]
fn child_pointing_at_its_parent_is_an_error_not_a_hang() {
    let f = fixture();
    for label in [
        "device mapping internal",
        "details internal",
        "data index internal",
    ] {
        let b = first_of(label);
        let nr = le32(blk(&f.img, b), 16) as usize;
        for i in [0, nr - 1] {
            let mut img = f.img.clone();
            set_child(&mut img, b, i, b);
            assert!(read_all(img, true).is_err(), "{label} child {i} -> itself");
        }
    }
}

/// Regression: a chain of internal nodes whose every child is the next node
/// (a DAG, no cycle, depth < MAX_DEPTH) above an empty leaf made the walk
/// visit 252^depth leaves: it never finished.  Walks now refuse a node seen
/// twice in one tree.
#[test]
fn shared_subtrees_inside_one_tree_do_not_blow_up() {
    let f = fixture();
    let mut img = f.img.clone();
    let free: Vec<u64> = (1..META_BLOCKS)
        .filter(|b| !f.live.contains_key(b))
        .collect();
    let empty = free[0];
    let chain = &free[1..9];
    let node = |img: &mut Vec<u8>, b: u64, flags: u32, nr: u32, child: u64| {
        let d = blk_mut(img, b);
        d.fill(0);
        put32(d, 4, flags);
        put32(d, 16, nr);
        put32(d, 20, 252);
        put32(d, 24, 8);
        for i in 0..nr as usize {
            put64(d, 32 + 8 * i, i as u64);
            put64(d, 32 + 8 * 252 + 8 * i, child);
        }
        put64(d, 8, b);
        reseal(img, b, BlockKind::Node);
    };
    node(&mut img, empty, 2, 0, 0);
    for (i, &b) in chain.iter().enumerate() {
        let next = chain.get(i + 1).copied().unwrap_or(empty);
        node(&mut img, b, 1, 252, next);
    }
    // Make device 1's sub-tree root the head of the chain.
    let top = first_of("top-level mapping leaf");
    let d = blk(&img, top);
    let (nr, max) = (le32(d, 16) as usize, le32(d, 20) as usize);
    let slot = (0..nr).find(|&i| le64(d, 32 + 8 * i) == 1).expect("dev 1");
    put64(blk_mut(&mut img, top), 32 + 8 * max + 8 * slot, chain[0]);
    reseal(&mut img, top, BlockKind::Node);
    let e = read_all(img, true).expect_err("a node reached twice is corrupt");
    let msg = e.to_string();
    assert!(
        chain.iter().chain([&empty]).any(|&b| names_block(&msg, b)),
        "{msg}"
    );
}

/// Regression: the block cache handed a block validated as one kind to a
/// reader asking for another without validating it again.  A data bitmap
/// (read at open) whose words look like an internal node header with
/// nr_entries > max_entries, reached through the details root, was used as a
/// node: the lookup indexed past the end of the block and panicked.
#[test]
fn cached_block_of_another_kind_is_not_a_node() {
    let f = fixture();
    let bm = first_of("data bitmap");
    let mut img = f.img.clone();
    let d = blk_mut(&mut img, bm);
    put32(d, 16, 300); // nr_entries
    put32(d, 20, 252); // max_entries
    put32(d, 24, 8); // value size
    d[28..].fill(0);
    reseal(&mut img, bm, BlockKind::Bitmap);
    put64(&mut img, 328, bm);
    reseal(&mut img, 0, BlockKind::Superblock);
    let e = read_all(img, true).expect_err("a bitmap is not a node");
    assert!(names_block(&e.to_string(), bm), "{e}");
}

#[test]
fn short_files_and_garbage_superblocks_are_errors() {
    let f = fixture();
    for len in [0, 100, 4095] {
        assert!(read_all(vec![0; len], false).is_err(), "{len}-byte file");
        assert!(
            read_all(f.img[..len].to_vec(), false).is_err(),
            "{len}-byte prefix"
        );
    }
    // Truncated: the space maps or trees reach beyond the end.
    for blocks in [1, 2, 64, 200, META_BLOCKS as usize - 1] {
        let r = read_all(f.img[..blocks * BS].to_vec(), true);
        assert!(r.is_err(), "{blocks}-block prefix read");
    }
    // Garbage (neither formatted nor zero) in block 0 is refused, never formatted.
    let mut img = f.img.clone();
    for (i, x) in img[..BS].iter_mut().enumerate() {
        *x = (i * 7 + 3) as u8;
    }
    let dev = Arc::new(MemDevice::from_bytes(img.clone()));
    let r = PoolMetadata::open(dev.clone(), OpenOptions::new(128));
    assert!(names_block(
        &r.err().expect("garbage refused").to_string(),
        0
    ));
    assert!(dev.snapshot() == img, "nothing was written");
}

/// Regression: a data space map root claiming 2^64-1 data blocks (valid
/// superblock checksum) sized a `Vec` by its bitmap count at open: the
/// allocation failed and aborted the process.  Open now refuses more bitmaps
/// than the metadata device has blocks.
#[test]
fn huge_data_space_map_is_an_error_not_an_abort() {
    let mut img = fixture().img.clone();
    put64(&mut img, 64, u64::MAX);
    reseal(&mut img, 0, BlockKind::Superblock);
    let e = read_all(img, true).expect_err("2^64 data blocks");
    assert!(e.to_string().contains("data space map"), "{e}");
}

#[test]
fn valid_checksums_over_bad_content_are_errors() {
    let f = fixture();
    for (what, off, v) in [
        ("data sm nr_blocks past its bitmaps", 64, 3_000_000 + 16320),
        ("metadata sm nr_blocks past the end", 192, META_BLOCKS + 1),
        ("metadata sm nr_blocks huge", 192, u64::MAX),
    ] {
        let mut img = f.img.clone();
        put64(&mut img, off, v);
        reseal(&mut img, 0, BlockKind::Superblock);
        assert!(read_all(img, true).is_err(), "{what}");
    }
    // Node header fields the validator checks, and keys out of order.
    let leaf = leaf_where(|nr, _| nr > 1);
    for (what, off, v) in [
        ("nr_entries > max_entries", 16, 253u32),
        ("max_entries overflowing the block", 20, 1000),
        ("value size 0", 24, 0),
        ("flags 3", 4, 3),
        ("second key below the first", 40, 0),
    ] {
        let mut img = f.img.clone();
        put32(blk_mut(&mut img, leaf), off, v);
        reseal(&mut img, leaf, BlockKind::Node);
        assert_err_names(img, leaf, what);
    }
    // An entry beyond the data space map's end, in its last (partial) bitmap.
    let last = (f.live.iter())
        .filter(|(_, l)| *l == "data index leaf")
        .find_map(|(&b, _)| {
            let d = blk(&f.img, b);
            let i = (0..le32(d, 16) as usize).find(|&i| le64(d, 32 + 8 * i) == 183)?;
            Some(le64(d, 32 + 8 * le32(d, 20) as usize + 16 * i))
        })
        .expect("bitmap 183");
    let mut img = f.img.clone();
    img[last as usize * BS + BS - 1] = 0xff;
    reseal(&mut img, last, BlockKind::Bitmap);
    assert!(read_all(img, true).is_err(), "bitmap entry past the end");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any single flipped byte: an error naming the block if the reader reads
    /// it (every byte of a read block is checksummed), else the same result.
    #[test]
    fn any_flipped_byte(b in 0..META_BLOCKS, off in 0..BS, x in 1u8..=255) {
        let f = fixture();
        // Half the cases hit blocks in use, which are few among the free ones.
        let b = if b % 2 == 0 { *f.live.keys().nth(b as usize / 2 % f.live.len()).unwrap() } else { b };
        let r = read_all(flip(&f.img, b, off, x), true);
        if f.live.contains_key(&b) {
            let e = r.expect_err("flip in a block the reader reads");
            prop_assert!(names_block(&e.to_string(), b), "{}", e);
        } else {
            prop_assert_eq!(r.expect("flip in a block the reader never reads"), f.baseline.clone());
        }
    }
}
