//! The real Linux dm-thin (Debian 12's 6.1 kernel under QEMU, through
//! `../shared/tools/dmthin-vm.sh`) against the engine, both ways:
//!
//! * the engine writes a pool on files (volumes, snapshots of snapshots,
//!   partial and unaligned writes, breaking sharing, discards with
//!   passdown, write-zeroes that unmap, a deleted volume, a volume over an
//!   external origin); the kernel activates it and reads every volume,
//!   which must hold exactly the bytes of the engine's model;
//! * the kernel writes a pool (partial writes, a snapshot, discards); the
//!   engine reads every volume with the bytes the kernel read, then writes
//!   to it, and Debian's thin_check passes.

mod common;

use common::vm::run_dmthin_vm;
use common::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use uthin_block_io::{FileDevice, SharedDevice};
use uthin_pool::{DevId, Pool, PoolConfig, Thin};

/// Volumes of 16 blocks (1 MiB).
const VOL: u64 = 16 * BLOCK;
const ORIGIN: u64 = 2 * BLOCK + BLOCK / 2;

fn file_pool(meta: &Path, data: &Path, data_bytes: u64, cfg: PoolConfig) -> Arc<Pool> {
    let m: SharedDevice = Arc::new(FileDevice::create(meta, 4 << 20).unwrap());
    let d: SharedDevice = Arc::new(FileDevice::create(data, data_bytes).unwrap());
    Pool::open(m, d, cfg).unwrap()
}

fn read_all(t: &Thin) -> Vec<u8> {
    let mut b = vec![0u8; VOL as usize];
    t.read(0, &mut b).unwrap();
    b
}

fn read_file(p: &Path, off: u64, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    std::fs::File::open(p)
        .unwrap()
        .read_exact_at(&mut b, off)
        .unwrap();
    b
}

#[test]
fn kernel_reads_what_the_engine_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (meta, data, out, origin) = (p("meta"), p("data"), p("out"), p("origin"));
    let origin_bytes = pattern(77, 0, ORIGIN as usize);
    std::fs::write(&origin, &origin_bytes).unwrap();
    std::fs::File::create(&out)
        .unwrap()
        .set_len(4 * VOL)
        .unwrap();
    let mut c = cfg();
    c.commit_period = std::time::Duration::from_millis(50);
    let pool = file_pool(&meta, &data, 64 * BLOCK, c);
    let mut model: Vec<(u64, Vec<u8>)> = Vec::new();

    // Volume 1: unaligned writes across blocks, a full block.
    pool.message("create_thin 1").unwrap();
    let t1 = pool.thin(DevId(1), None).unwrap();
    let mut m1 = vec![0u8; VOL as usize];
    for (i, (off, len)) in [
        (100, 70000),
        (5 * BLOCK, BLOCK),
        (9 * BLOCK + 4000, 300),
        (6 * BLOCK + 1, 2 * BLOCK),
    ]
    .into_iter()
    .enumerate()
    {
        let w = pattern(i as u64, off, len as usize);
        t1.write(off, &w, i == 1).unwrap();
        m1[off as usize..(off + len) as usize].copy_from_slice(&w);
    }
    // Volume 2: a snapshot of 1; both sides break sharing.
    pool.message("create_snap 2 1").unwrap();
    let t2 = pool.thin(DevId(2), None).unwrap();
    let mut m2 = m1.clone();
    t2.write(110, b"snapshot side", false).unwrap();
    m2[110..123].copy_from_slice(b"snapshot side");
    let w = pattern(10, 0, BLOCK as usize);
    t1.write(0, &w, false).unwrap();
    m1[..BLOCK as usize].copy_from_slice(&w);
    // Volume 3: a snapshot of the snapshot; discard and write-zeroes.
    pool.message("create_snap 3 2").unwrap();
    let t3 = pool.thin(DevId(3), None).unwrap();
    let mut m3 = m2.clone();
    t3.discard(5 * BLOCK - 10, BLOCK + 20).unwrap(); // block 5 only
    m3[5 * BLOCK as usize..6 * BLOCK as usize].fill(0);
    t3.write_zeroes(9 * BLOCK, BLOCK, true).unwrap();
    m3[9 * BLOCK as usize..10 * BLOCK as usize].fill(0);
    t3.write(7 * BLOCK + 3, b"third", false).unwrap();
    m3[7 * BLOCK as usize + 3..7 * BLOCK as usize + 8].copy_from_slice(b"third");
    // Volume 1 discards blocks 6 and 7 (still shared with 2 and 3: only
    // unmapped in 1).
    t1.discard(6 * BLOCK, 2 * BLOCK).unwrap();
    m1[6 * BLOCK as usize..8 * BLOCK as usize].fill(0);
    // A volume created, written and deleted.
    pool.message("create_thin 4").unwrap();
    pool.thin(DevId(4), None)
        .unwrap()
        .write(0, &[4; 5000], true)
        .unwrap();
    pool.message("delete 4").unwrap();
    // Volume 5 over an external origin: partial writes copy it.
    pool.message("create_thin 5").unwrap();
    let od: SharedDevice = Arc::new(FileDevice::open(&origin, false).unwrap());
    let t5 = pool.thin(DevId(5), Some(od)).unwrap();
    let mut m5 = origin_bytes.clone();
    m5.resize(VOL as usize, 0);
    for (off, s) in [
        (10u64, &b"over the origin"[..]),
        (2 * BLOCK + 100, b"straddles its end"),
        (4 * BLOCK, b"beyond"),
    ] {
        t5.write(off, s, false).unwrap();
        m5[off as usize..off as usize + s.len()].copy_from_slice(s);
    }
    pool.message("set_transaction_id 0 5").unwrap();
    let engine_status = pool.status_line();
    for (id, t, m) in [(1, &t1, &m1), (2, &t2, &m2), (3, &t3, &m3), (5, &t5, &m5)] {
        assert_bytes(&read_all(t), m, &format!("engine read of volume {id}"));
        model.push((id, m.clone()));
    }
    drop((t1, t2, t3, t5));
    pool.close().unwrap();
    drop(pool);
    assert_thin_check(&meta);
    assert_thin_check_1x(&meta);

    let snippet = format!(
        r#"set -e
dmsetup create pool --table "0 $DATA_SECTORS thin-pool $META $DATA 128 0"
dmsetup status pool
for id in 1 2 3; do dmsetup create thin$id --table "0 {s} thin /dev/mapper/pool $id"; done
dmsetup create thin5 --table "0 {s} thin /dev/mapper/pool 5 $EXTRA2"
i=0
for id in 1 2 3 5; do
  dd if=/dev/mapper/thin$id of=$EXTRA1 bs=65536 count=16 seek=$((i * 16)) conv=notrunc,fsync 2>/dev/null
  i=$((i + 1))
done
for id in 1 2 3 5; do dmsetup remove thin$id; done
dmsetup remove pool
echo KERNEL-DONE
"#,
        s = VOL / 512
    );
    let log = run_dmthin_vm(&meta, &data, &snippet, &[&out, &origin]);
    assert!(log.contains("KERNEL-DONE"), "{log}");
    // The kernel's status line for the pool, word for word the engine's.
    let kernel_status = log
        .lines()
        .find_map(|l| l.split_once(" thin-pool ").map(|(_, st)| st.trim()))
        .unwrap_or_else(|| panic!("no pool status in the log:\n{log}"));
    assert_eq!(
        kernel_status, engine_status,
        "pool status, kernel vs engine"
    );
    for (i, (id, m)) in model.iter().enumerate() {
        let got = read_file(&out, i as u64 * VOL, VOL);
        assert_bytes(&got, m, &format!("kernel read of volume {id}"));
    }
    assert_thin_check(&meta);
    assert_thin_check_1x(&meta);
}

#[test]
fn engine_reads_what_the_kernel_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (meta, data, out) = (p("meta"), p("data"), p("out"));
    std::fs::File::create(&meta)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    std::fs::File::create(&data)
        .unwrap()
        .set_len(64 * BLOCK)
        .unwrap();
    std::fs::File::create(&out)
        .unwrap()
        .set_len(2 * VOL)
        .unwrap();
    let snippet = format!(
        r#"set -e
dmsetup create pool --table "0 $DATA_SECTORS thin-pool $META $DATA 128 0"
dmsetup message pool 0 "create_thin 0"
dmsetup create thin0 --table "0 {s} thin /dev/mapper/pool 0"
head -c 1048576 /dev/urandom > /tmp/r
w() {{ dd if=/tmp/r of=/dev/mapper/$1 bs=$2 count=$3 seek=$4 skip=$5 conv=notrunc,fsync 2>/dev/null; }}
w thin0 4096 40 3 0
w thin0 512 7 1000 5
w thin0 65536 3 10 2
dmsetup suspend thin0
dmsetup message pool 0 "create_snap 1 0"
dmsetup resume thin0
dmsetup create snap1 --table "0 {s} thin /dev/mapper/pool 1"
w snap1 512 3 100 77
w thin0 4096 2 200 9
w snap1 65536 1 14 4
blkdiscard -o 655360 -l 131072 /dev/mapper/thin0
dd if=/dev/mapper/thin0 of=$EXTRA1 bs=65536 count=16 conv=notrunc,fsync 2>/dev/null
dd if=/dev/mapper/snap1 of=$EXTRA1 bs=65536 count=16 seek=16 conv=notrunc,fsync 2>/dev/null
dmsetup message pool 0 "set_transaction_id 0 7"
dmsetup status
dmsetup remove snap1
dmsetup remove thin0
dmsetup remove pool
echo KERNEL-DONE
"#,
        s = VOL / 512
    );
    let log = run_dmthin_vm(&meta, &data, &snippet, &[&out]);
    assert!(log.contains("KERNEL-DONE"), "{log}");
    assert_thin_check(&meta);
    assert_thin_check_1x(&meta);

    let pool = file_pool(&meta, &data, 64 * BLOCK, cfg());
    assert_eq!(pool.inspect_metadata(|md| md.transaction_id().unwrap()), 7);
    let t0 = pool.thin(DevId(0), None).unwrap();
    let t1 = pool.thin(DevId(1), None).unwrap();
    // `dmsetup status` printed "<name>: 0 <len> <target> <status>": the
    // engine's status lines for the pool and both volumes are the kernel's.
    let kernel_status = |name: &str| {
        log.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: 0 ")))
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(_, rest)| rest.split_once(' '))
            .map(|(_, st)| st.trim().to_string())
            .unwrap_or_else(|| panic!("no status of {name} in the log:\n{log}"))
    };
    assert_eq!(kernel_status("pool"), pool.status_line(), "pool status");
    assert_eq!(kernel_status("thin0"), t0.status_line(), "thin0 status");
    assert_eq!(kernel_status("snap1"), t1.status_line(), "snap1 status");
    let k0 = read_file(&out, 0, VOL);
    let k1 = read_file(&out, VOL, VOL);
    assert!(
        k0[3 * 4096..3 * 4096 + 100].iter().any(|&b| b != 0),
        "the kernel wrote"
    );
    assert_bytes(&read_all(&t0), &k0, "engine read of volume 0");
    assert_bytes(&read_all(&t1), &k1, "engine read of volume 1");
    // The engine writes on: breaking the kernel's sharing, provisioning.
    t1.write(3 * 4096 + 7, b"engine", false).unwrap();
    t0.write(15 * BLOCK + 1, b"more", true).unwrap();
    let mut want = k1.clone();
    want[3 * 4096 + 7..3 * 4096 + 13].copy_from_slice(b"engine");
    assert_bytes(&read_all(&t1), &want, "volume 1 after the engine's write");
    assert_bytes(
        &read_all(&t0)[..15 * BLOCK as usize],
        &k0[..15 * BLOCK as usize],
        "volume 0",
    );
    drop((t0, t1));
    pool.close().unwrap();
    assert_thin_check(&meta);
    assert_thin_check_1x(&meta);
}
