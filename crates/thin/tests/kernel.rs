//! The real Linux dm-thin (Debian 12's 6.1 kernel under QEMU, through
//! `../shared/tools/dmthin-vm.sh`) against uthin's metadata, both ways:
//!
//! * uthin formats a pool and writes devices, a snapshot and mappings (one
//!   of them removed after the snapshot, so lazy counts matter); the kernel
//!   activates it and reads back exactly the expected bytes of every device,
//!   then writes more (a new block, and a write that breaks sharing); uthin
//!   reads the kernel's new mappings and Debian's thin_check passes.
//! * the kernel formats a pool, creates a thin device and a snapshot and
//!   writes; uthin opens the metadata and finds every mapping and its bytes.

mod common;

use common::assert_thin_check;
use common::vm::run_dmthin_vm;
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use uthin_block_io::FileDevice;
use uthin_thin::{DataBlock, DevId, OpenOptions, PoolMetadata, VirtBlock};

const BLOCK: usize = 65536;
const SECTORS: u32 = 128;
/// Blocks per thin device in the guest (1 MiB devices).
const DEV_BLOCKS: u64 = 16;

/// The bytes uthin puts in data block `b`.
fn pattern(b: u64) -> Vec<u8> {
    let mut v = vec![(b as u8).wrapping_mul(37).wrapping_add(11); BLOCK];
    v[..8].copy_from_slice(&b.to_le_bytes());
    v
}

/// Compares a block with what it should hold, without printing 64 KiB.
#[track_caller]
fn assert_block(got: Vec<u8>, want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{what}: differs from byte {first} (got {:?}..., want {:?}...)",
            &got[first..(first + 16).min(got.len())],
            &want[first..(first + 16).min(want.len())]
        );
    }
}

fn read_block(f: &std::fs::File, b: u64) -> Vec<u8> {
    let mut v = vec![0u8; BLOCK];
    f.read_exact_at(&mut v, b * BLOCK as u64).unwrap();
    v
}

fn open_md(meta: &Path, read_only: bool) -> PoolMetadata {
    let dev = Arc::new(FileDevice::open(meta, !read_only).unwrap());
    let mut o = OpenOptions::new(SECTORS);
    o.read_only = read_only;
    o.format_if_empty = false;
    PoolMetadata::open(dev, o).unwrap()
}

fn mappings(md: &PoolMetadata, dev: u64) -> BTreeMap<u64, u64> {
    let mut m = BTreeMap::new();
    md.for_each_mapping(
        DevId(dev),
        VirtBlock(0),
        VirtBlock(u64::MAX),
        &mut |v, bt| {
            m.insert(v.0, bt.block.0);
        },
    )
    .unwrap();
    m
}

/// A shell helper for the guest: `fill CHAR DEVICE BLOCK` writes one 64 KiB
/// block of CHAR and syncs it.
const FILL: &str = r#"
fill() {
  dd if=/dev/zero bs=65536 count=1 2>/dev/null | tr '\000' "$1" > /tmp/blk
  dd if=/tmp/blk of="$2" bs=65536 seek="$3" count=1 conv=fsync 2>/dev/null
}
"#;

#[test]
fn kernel_reads_and_extends_uthin_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, data, out) = (
        dir.path().join("meta"),
        dir.path().join("data"),
        dir.path().join("out"),
    );
    let data_blocks = 256u64;
    let mut md = PoolMetadata::open(
        Arc::new(FileDevice::create(&meta, 4 << 20).unwrap()),
        OpenOptions::new(SECTORS),
    )
    .unwrap();
    md.resize_data_dev(data_blocks).unwrap();
    md.create_thin(DevId(1)).unwrap();
    let alloc = |md: &mut PoolMetadata| md.alloc_data_block().unwrap().unwrap();
    let mut want: BTreeMap<u64, BTreeMap<u64, u64>> = BTreeMap::new();
    for v in [0u64, 1, 5, 15] {
        let b = alloc(&mut md);
        md.insert_block(DevId(1), VirtBlock(v), b).unwrap();
        want.entry(1).or_default().insert(v, b.0);
    }
    md.commit().unwrap();
    md.create_snap(DevId(2), DevId(1)).unwrap();
    want.insert(2, want[&1].clone());
    for v in [1u64, 7] {
        let b = alloc(&mut md);
        md.insert_block(DevId(2), VirtBlock(v), b).unwrap();
        want.get_mut(&2).unwrap().insert(v, b.0);
    }
    md.remove_block(DevId(1), VirtBlock(5)).unwrap();
    want.get_mut(&1).unwrap().remove(&5);
    md.set_transaction_id(0, 3).unwrap();
    md.commit().unwrap();
    md.close().unwrap();
    assert_thin_check(&meta);

    let df = FileDevice::create(&data, data_blocks * BLOCK as u64).unwrap();
    for b in want.values().flat_map(|m| m.values()) {
        df.file()
            .write_all_at(&pattern(*b), *b * BLOCK as u64)
            .unwrap();
    }
    drop(df);
    std::fs::File::create(&out)
        .unwrap()
        .set_len(2 * DEV_BLOCKS * BLOCK as u64)
        .unwrap();

    let snippet = format!(
        r#"set -e
{FILL}
dmsetup create pool --table "0 $DATA_SECTORS thin-pool $META $DATA {SECTORS} 0"
dmsetup status pool
dmsetup create thin1 --table "0 {s} thin /dev/mapper/pool 1"
dmsetup create thin2 --table "0 {s} thin /dev/mapper/pool 2"
dd if=/dev/mapper/thin1 of=$EXTRA1 bs=65536 count={n} conv=fsync,notrunc 2>/dev/null
dd if=/dev/mapper/thin2 of=$EXTRA1 bs=65536 seek={n} count={n} conv=fsync,notrunc 2>/dev/null
fill K /dev/mapper/thin1 3
fill L /dev/mapper/thin2 0
dmsetup status
dmsetup remove thin1
dmsetup remove thin2
dmsetup remove pool
echo KERNEL-DONE
"#,
        s = DEV_BLOCKS * SECTORS as u64,
        n = DEV_BLOCKS
    );
    let log = run_dmthin_vm(&meta, &data, &snippet, &[&out]);
    assert!(log.contains("KERNEL-DONE"), "{log}");

    // The kernel read exactly what uthin's metadata says.
    let of = std::fs::File::open(&out).unwrap();
    for (i, dev) in [1u64, 2].iter().enumerate() {
        for v in 0..DEV_BLOCKS {
            let got = read_block(&of, i as u64 * DEV_BLOCKS + v);
            let exp = want[dev].get(&v).map_or(vec![0u8; BLOCK], |b| pattern(*b));
            assert_block(got, &exp, &format!("kernel read of thin {dev} block {v}"));
        }
    }

    // uthin reads the kernel's new mappings; the old ones are intact.
    assert_thin_check(&meta);
    let md = open_md(&meta, true);
    assert_eq!(md.transaction_id().unwrap(), 3);
    let df = std::fs::File::open(&data).unwrap();
    let m1 = mappings(&md, 1);
    let m2 = mappings(&md, 2);
    for (v, b) in &want[&1] {
        assert_eq!(m1.get(v), Some(b), "thin 1 block {v}");
    }
    for (v, b) in &want[&2] {
        if *v != 0 {
            assert_eq!(m2.get(v), Some(b), "thin 2 block {v}");
        }
    }
    assert_block(read_block(&df, m1[&3]), &[b'K'; BLOCK], "thin 1 block 3");
    assert_ne!(m2[&0], want[&2][&0], "the kernel broke sharing");
    assert_block(read_block(&df, m2[&0]), &[b'L'; BLOCK], "thin 2 block 0");
    assert_block(
        read_block(&df, m1[&0]),
        &pattern(want[&1][&0]),
        "thin 1 block 0",
    );
    assert_eq!(md.device_details(DevId(1)).unwrap().mapped_blocks, 4);
    assert_eq!(md.device_details(DevId(2)).unwrap().mapped_blocks, 5);
    // Block 15 is still shared by both devices (lazy counts: one leaf ref).
    assert!(md.data_block_count(DataBlock(want[&1][&15])).unwrap() >= 1);
}

#[test]
fn uthin_reads_kernel_written_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, data) = (dir.path().join("meta"), dir.path().join("data"));
    std::fs::File::create(&meta)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    std::fs::File::create(&data)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let snippet = format!(
        r#"set -e
{FILL}
dmsetup create pool --table "0 $DATA_SECTORS thin-pool $META $DATA {SECTORS} 0"
dmsetup message pool 0 "create_thin 0"
dmsetup create thin0 --table "0 {s} thin /dev/mapper/pool 0"
fill A /dev/mapper/thin0 0
fill B /dev/mapper/thin0 1
fill C /dev/mapper/thin0 2
fill D /dev/mapper/thin0 3
dmsetup suspend thin0
dmsetup message pool 0 "create_snap 1 0"
dmsetup resume thin0
dmsetup create snap1 --table "0 {s} thin /dev/mapper/pool 1"
fill M /dev/mapper/thin0 1
fill N /dev/mapper/snap1 2
fill O /dev/mapper/thin0 9
dmsetup message pool 0 "set_transaction_id 0 7"
dmsetup status
dmsetup remove snap1
dmsetup remove thin0
dmsetup remove pool
echo KERNEL-DONE
"#,
        s = DEV_BLOCKS * SECTORS as u64
    );
    let log = run_dmthin_vm(&meta, &data, &snippet, &[]);
    assert!(log.contains("KERNEL-DONE"), "{log}");
    assert_thin_check(&meta);

    let md = open_md(&meta, true);
    assert_eq!(md.transaction_id().unwrap(), 7);
    assert_eq!(md.time().unwrap(), 1);
    assert_eq!(md.device_ids().unwrap(), vec![DevId(0), DevId(1)]);
    let df = std::fs::File::open(&data).unwrap();
    let expect: [(u64, &[(u64, u8)]); 2] = [
        (0, &[(0, b'A'), (1, b'M'), (2, b'C'), (3, b'D'), (9, b'O')]),
        (1, &[(0, b'A'), (1, b'B'), (2, b'N'), (3, b'D')]),
    ];
    for (dev, blocks) in expect {
        let m = mappings(&md, dev);
        assert_eq!(
            m.keys().copied().collect::<Vec<_>>(),
            blocks.iter().map(|b| b.0).collect::<Vec<_>>(),
            "thin {dev} mapped blocks"
        );
        for (v, c) in blocks {
            assert_block(
                read_block(&df, m[v]),
                &[*c; BLOCK],
                &format!("thin {dev} block {v}"),
            );
        }
        let det = md.device_details(DevId(dev)).unwrap();
        assert_eq!(det.mapped_blocks, blocks.len() as u64);
        assert_eq!(det.snapshotted_time, 1);
    }
    // Sharing as the kernel left it: blocks 0 and 3 are shared, and a write
    // to either device must break sharing.
    let l = md.find_block(DevId(1), VirtBlock(0)).unwrap().unwrap();
    assert!(l.shared);
    let l = md.find_block(DevId(0), VirtBlock(9)).unwrap().unwrap();
    assert!(!l.shared);
}
