//! Reading metadata others wrote: XML pools restored by Debian's
//! `thin_restore` 0.9.0 are opened with uthin (read-only and read-write) and
//! every device detail, mapping (with its time), `find_block` shared flag,
//! data block count and pool field must read back as the XML says.  Then
//! uthin changes a restored pool and commits, and Debian's `thin_check` and
//! `thin_dump` must accept and show the change.
//!
//! Cases: devices sharing data blocks with snapshot-like times (counts of 3
//! land in the data ref-count tree), device id 2^24-1, data block numbers
//! beyond 24 bits and beyond 2^32, several times and transaction ids, a 100k-mapping device
//! whose tree has three levels, and restored images hold no metadata snapshot.

mod common;

use common::{assert_thin_check, thin_dump, thin_dump_snap, thin_restore, Dump, DumpDevice, Rng};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uthin_block_io::FileDevice;
use uthin_thin::{DevId, Error, Lookup, OpenOptions, PoolMetadata, VirtBlock};

/// The XML `thin_dump` 0.9.0 writes for `d`: consecutive mappings with
/// consecutive data blocks and equal times merge into a `range_mapping`.
fn to_xml(d: &Dump) -> String {
    let mut x = String::new();
    writeln!(
        x,
        r#"<superblock uuid="" time="{}" transaction="{}" data_block_size="{}" nr_data_blocks="{}">"#,
        d.time, d.transaction, d.data_block_size, d.nr_data_blocks
    )
    .unwrap();
    for (id, dev) in &d.devices {
        writeln!(
            x,
            r#"  <device dev_id="{id}" mapped_blocks="{}" transaction="{}" creation_time="{}" snap_time="{}">"#,
            dev.mapped_blocks, dev.transaction, dev.creation_time, dev.snap_time
        )
        .unwrap();
        let ms: Vec<_> = dev.mappings.iter().map(|(&v, &(b, t))| (v, b, t)).collect();
        let mut i = 0;
        while i < ms.len() {
            let (v, b, t) = ms[i];
            let mut n = 1;
            while i + n < ms.len() && ms[i + n] == (v + n as u64, b + n as u64, t) {
                n += 1;
            }
            if n == 1 {
                writeln!(x, r#"    <single_mapping origin_block="{v}" data_block="{b}" time="{t}"/>"#)
            } else {
                writeln!(
                    x,
                    r#"    <range_mapping origin_begin="{v}" data_begin="{b}" length="{n}" time="{t}"/>"#
                )
            }
            .unwrap();
            i += n;
        }
        writeln!(x, "  </device>").unwrap();
    }
    writeln!(x, "</superblock>").unwrap();
    x
}

fn dev(
    transaction: u64,
    creation_time: u32,
    snap_time: u32,
    maps: &[(u64, u64, u32)],
) -> DumpDevice {
    DumpDevice {
        mapped_blocks: maps.len() as u64,
        transaction,
        creation_time,
        snap_time,
        mappings: maps.iter().map(|&(v, b, t)| (v, (b, t))).collect(),
    }
}

fn pool(time: u32, transaction: u64, nr_data_blocks: u64, devs: Vec<(u64, DumpDevice)>) -> Dump {
    Dump {
        time,
        transaction,
        data_block_size: 128,
        nr_data_blocks,
        devices: devs.into_iter().collect(),
    }
}

/// Writes `d` as XML and restores it with Debian's thin_restore into a
/// sparse metadata file of `mib` MiB.
fn restore(dir: &Path, d: &Dump, mib: u64) -> PathBuf {
    let xml = dir.join("in.xml");
    std::fs::write(&xml, to_xml(d)).unwrap();
    let meta = dir.join("meta");
    std::fs::File::create(&meta)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    thin_restore(&xml, &meta);
    meta
}

fn open(meta: &Path, read_only: bool, data_block_size: u32) -> uthin_thin::Result<PoolMetadata> {
    let dev = Arc::new(FileDevice::open(meta, !read_only).unwrap());
    PoolMetadata::open(
        dev,
        OpenOptions {
            read_only,
            format_if_empty: false,
            ..OpenOptions::new(data_block_size)
        },
    )
}

/// Everything uthin reads, in the dump's terms.
fn read(md: &PoolMetadata) -> Dump {
    let mut d = pool(
        md.time().unwrap(),
        md.transaction_id().unwrap(),
        md.data_dev_size().unwrap(),
        vec![],
    );
    d.data_block_size = md.data_block_size();
    for id in md.device_ids().unwrap() {
        let det = md.device_details(id).unwrap();
        let mut mappings = BTreeMap::new();
        md.for_each_mapping(id, VirtBlock(0), VirtBlock(u64::MAX), &mut |v, bt| {
            mappings.insert(v.0, (bt.block.0, bt.time.0));
        })
        .unwrap();
        let dd = DumpDevice {
            mapped_blocks: det.mapped_blocks,
            transaction: det.transaction_id,
            creation_time: det.creation_time,
            snap_time: det.snapshotted_time,
            mappings,
        };
        d.devices.insert(id.0, dd);
    }
    d
}

/// Checks that uthin reads `want` from `meta`, read-only and read-write:
/// details, mappings, the shared flag of every lookup, data block counts.
fn check_reads(meta: &Path, want: &Dump) {
    for ro in [true, false] {
        let md = open(meta, ro, 128).unwrap();
        assert_eq!(read(&md), *want, "read_only {ro}");
        assert_eq!(
            md.metadata_snap().unwrap(),
            None,
            "restored images hold no snapshot"
        );
        let mut refs: BTreeMap<u64, u32> = BTreeMap::new();
        for (&id, dev) in &want.devices {
            for (&v, &(b, t)) in &dev.mappings {
                let shared = dev.snap_time > t;
                let got = md.find_block(DevId(id), VirtBlock(v)).unwrap();
                assert_eq!(
                    got,
                    Some(Lookup {
                        block: uthin_thin::DataBlock(b),
                        shared
                    }),
                    "dev {id} v {v}"
                );
                *refs.entry(b).or_default() += 1;
            }
            let beyond = dev.mappings.keys().last().map_or(0, |k| k + 1);
            assert_eq!(md.find_block(DevId(id), VirtBlock(beyond)).unwrap(), None);
        }
        // thin_restore 0.9.0 shares no leaves: a block's count is its number of mappings.
        for (&b, &n) in &refs {
            assert_eq!(
                md.data_block_count(uthin_thin::DataBlock(b)).unwrap(),
                n,
                "data block {b}"
            );
        }
        let used = refs.len() as u64;
        assert_eq!(md.free_data_blocks().unwrap(), want.nr_data_blocks - used);
    }
}

/// Devices sharing data blocks as snapshots do, at several times and
/// transaction ids; device 3 shares blocks 0..100 with 1 and 2 (count 3).
fn snapshot_like() -> Dump {
    let origin: Vec<_> = (0..300).map(|v| (v, v, (v % 2) as u32)).collect();
    let mut snap = origin[..200].to_vec();
    snap.extend((200..300).map(|v| (v, v + 300, 2)));
    let mut third = origin[..100].to_vec();
    third.extend((1000..1010).map(|v| (v, v - 400, 3)));
    let top = [
        (0, 999, 3),
        (1 << 30, 998, 3),
        (u32::MAX as u64 * 16, 997, 1),
    ];
    pool(
        3,
        42,
        1000,
        vec![
            (1, dev(7, 0, 2, &origin)),
            (2, dev(9, 2, 2, &snap)),
            (3, dev(40, 3, 3, &third)),
            (17, dev(41, 3, 3, &[])),
            (DevId::MAX.0, dev(42, 1, 3, &top)),
        ],
    )
}

#[test]
fn snapshot_like_sharing_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let want = snapshot_like();
    let meta = restore(dir.path(), &want, 16);
    check_reads(&meta, &want);
    assert_eq!(
        thin_dump(&meta),
        want,
        "the XML round-trips through Debian's tools"
    );
}

#[test]
fn big_device_with_a_three_level_tree() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000u64;
    let mut rng = Rng(5);
    // Times change every few blocks, so ranges and single mappings mix.
    let mut t = 0;
    let big: Vec<_> = (0..n)
        .map(|v| {
            if rng.below(4) == 0 {
                t = (t + 1) % 5;
            }
            (v * 2, (v * 7919) % 150_000, t)
        })
        .collect();
    let every_third: Vec<_> = big.iter().copied().step_by(3).collect();
    let want = pool(
        5,
        1,
        150_000,
        vec![(1, dev(0, 0, 3, &big)), (2, dev(1, 3, 5, &every_third))],
    );
    let meta = restore(dir.path(), &want, 64);
    // The device's root and its first child are internal nodes.
    let img = std::fs::read(&meta).unwrap();
    let le = |b: u64, off: usize| {
        u64::from_le_bytes(img[b as usize * 4096 + off..][..8].try_into().unwrap())
    };
    let top = le(0, 320);
    let max_of = |b: u64| le(b, 20) as u32 as usize;
    let flags_of = |b: u64| le(b, 4) as u32;
    let root = le(top, 32 + 8 * max_of(top));
    let child = le(root, 32 + 8 * max_of(root));
    assert_eq!((flags_of(root), flags_of(child)), (1, 1), "three levels");
    check_reads(&meta, &want);
}

/// Data blocks past 24 bits (the packing puts them above the time) with a
/// data space map small enough to load: 2^27 blocks are 32 MiB of bitmaps.
#[test]
fn data_block_numbers_beyond_24_bits() {
    let dir = tempfile::tempdir().unwrap();
    let top = (1u64 << 27) + 2;
    let maps = [
        (0, (1 << 24) - 1, 0xFF_FFFF),
        (1, 1 << 24, 0),
        (2, (1 << 24) + 1, 0x80_0000),
        (3, (1 << 26) + 12345, 1),
        (4, top, 0xFF_FFFE),
    ];
    let want = pool(
        0xFF_FFFF,
        u64::MAX,
        top + 1,
        vec![(5, dev(u64::MAX, 0xFF_FFFF, 0xFF_FFFF, &maps))],
    );
    let meta = restore(dir.path(), &want, 64);
    check_reads(&meta, &want);
}

/// Data blocks beyond 2^32.  thin_restore insists on nr_data_blocks above
/// every mapped block and writes every bitmap (1.1 GiB of sparse metadata for
/// 2^32 blocks, ~12 s), and uthin holds every data bitmap in memory (1 GiB).
#[test]
fn data_block_numbers_beyond_32_bits() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1u64 << 32;
    let maps = [(0, base + 5, 1), (1, base + 16321, 2), (2, 7, 3)];
    let want = pool(3, 3, base + 2 * 16320, vec![(1, dev(3, 0, 3, &maps))]);
    let meta = restore(dir.path(), &want, 2048);
    check_reads(&meta, &want);
}

#[test]
fn changes_by_uthin_pass_thin_check_and_show_in_thin_dump() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = snapshot_like();
    let meta = restore(dir.path(), &want, 16);
    let mut md = open(&meta, false, 128).unwrap();
    md.set_transaction_id(42, 43).unwrap();
    // A new mapping in dev 1 at the pool's time (3).
    let b = md.alloc_data_block().unwrap().expect("free data block");
    md.insert_block(DevId(1), VirtBlock(5000), b).unwrap();
    // A snapshot of dev 1: time 4, both devices snapshotted at 4.
    md.create_snap(DevId(9), DevId(1)).unwrap();
    // Break sharing in dev 2 (an overwrite) and delete dev 3.
    let b2 = md.alloc_data_block().unwrap().expect("free data block");
    md.insert_block(DevId(2), VirtBlock(0), b2).unwrap();
    md.delete_thin(DevId(3)).unwrap();
    md.commit().unwrap();
    drop(md);

    want.transaction = 43;
    want.time = 4;
    let d1 = want.devices.get_mut(&1).unwrap();
    d1.mappings.insert(5000, (b.0, 3));
    d1.mapped_blocks += 1;
    d1.snap_time = 4;
    let snap = DumpDevice {
        transaction: 43,
        creation_time: 4,
        snap_time: 4,
        ..d1.clone()
    };
    want.devices.insert(9, snap);
    want.devices
        .get_mut(&2)
        .unwrap()
        .mappings
        .insert(0, (b2.0, 4));
    want.devices.remove(&3);
    assert_thin_check(&meta);
    assert_eq!(thin_dump(&meta), want);
    let md = open(&meta, true, 128).unwrap();
    assert_eq!(read(&md), want, "uthin reads its own change back");
    drop(md);

    // A metadata snapshot taken by uthin is what `thin_dump -m` shows.
    let mut md = open(&meta, false, 128).unwrap();
    md.reserve_metadata_snap().unwrap();
    md.commit().unwrap();
    drop(md);
    assert_thin_check(&meta);
    let mut held = thin_dump_snap(&meta);
    held.nr_data_blocks = want.nr_data_blocks;
    assert_eq!(held, want);
}

#[test]
fn another_data_block_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let meta = restore(dir.path(), &snapshot_like(), 16);
    for ro in [true, false] {
        match open(&meta, ro, 256) {
            Err(Error::BlockSizeMismatch {
                stored: 128,
                requested: 256,
            }) => {}
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("opened with the wrong data block size"),
        }
    }
    // Nothing was written: the image still checks and reads.
    assert_thin_check(&meta);
    check_reads(&meta, &snapshot_like());
}
