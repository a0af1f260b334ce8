//! The engine's behaviours one at a time: provisioning, breaking sharing,
//! discards and their passdown, write-zeroes, external origins, zeroing,
//! durability across reopen, messages, status lines, events.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uthin_block_io::testing::{FaultyDevice, MemDevice};
use uthin_block_io::BlockDevice;
use uthin_pool::{DataBlock, DevId, ErrorKind, Pool, PoolEvent, PoolMode, VirtBlock};

fn read(t: &uthin_pool::Thin, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0xeeu8; len];
    t.read(off, &mut b).unwrap();
    b
}

fn count(pool: &Pool, b: DataBlock) -> u32 {
    pool.inspect_metadata(|md| md.data_block_count(b).unwrap())
}

#[test]
fn unaligned_writes_provision_with_zeroes() {
    let (pool, _m, data) = mem_pool(4, 64, cfg());
    data.write_at(&vec![0xaa; 64 * BLOCK as usize], 0).unwrap(); // stale bytes
    pool.message("create_thin 1").unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    let w = pattern(1, 1000, 3 * BLOCK as usize);
    t.write(BLOCK - 1000 + 7, &w, false).unwrap();
    let mut want = vec![0u8; 5 * BLOCK as usize];
    let at = (BLOCK - 1000 + 7) as usize;
    want[at..at + w.len()].copy_from_slice(&w);
    assert_bytes(&read(&t, 0, want.len()), &want, "volume");
    assert_eq!(t.mapped_blocks().unwrap(), 4);
    assert_eq!(t.status_line(), format!("{} {}", 4 * 128, 4 * 128 - 1));
    // Unmapped reads never allocate.
    read(&t, 100 * BLOCK, 4096);
    assert_eq!(t.mapped_blocks().unwrap(), 4);
    // Overwrite in place.
    t.write(at as u64 + 5, b"hello", false).unwrap();
    want[at + 5..at + 10].copy_from_slice(b"hello");
    assert_bytes(&read(&t, 0, want.len()), &want, "after overwrite");
    assert_eq!(t.mapped_blocks().unwrap(), 4);
}

#[test]
fn skip_block_zeroing_leaves_the_rest_of_the_block() {
    let mut c = cfg();
    c.features.skip_block_zeroing = true;
    let (pool, _m, data) = mem_pool(4, 16, c);
    data.write_at(&vec![0xaa; 16 * BLOCK as usize], 0).unwrap();
    pool.create_thin(DevId(0)).unwrap();
    let t = pool.thin(DevId(0), None).unwrap();
    t.write(10, b"xyz", false).unwrap();
    let b = read(&t, 0, 16);
    assert_eq!(&b[10..13], b"xyz");
    assert_eq!(b[0], 0xaa, "stale byte kept");
}

#[test]
fn snapshots_share_until_written() {
    let (pool, _m, _d) = mem_pool(4, 64, cfg());
    pool.message("create_thin 1").unwrap();
    let origin = pool.thin(DevId(1), None).unwrap();
    let base = pattern(7, 0, 4 * BLOCK as usize);
    origin.write(0, &base, false).unwrap();
    pool.message("create_snap 2 1").unwrap();
    pool.message("create_snap 3 2").unwrap();
    let snap = pool.thin(DevId(2), None).unwrap();
    let snap2 = pool.thin(DevId(3), None).unwrap();
    let blk0 = pool
        .inspect_metadata(|md| md.find_block(DevId(1), VirtBlock(0)).unwrap())
        .unwrap();
    assert!(blk0.shared);
    // Partial write to the snapshot: copy then overlay.
    snap.write(100, b"snap", false).unwrap();
    // Full-block write to the origin: no copy needed.
    let full = pattern(8, 0, BLOCK as usize);
    origin.write(BLOCK, &full, false).unwrap();
    let mut want_snap = base.clone();
    want_snap[100..104].copy_from_slice(b"snap");
    let mut want_origin = base.clone();
    want_origin[BLOCK as usize..2 * BLOCK as usize].copy_from_slice(&full);
    assert_bytes(&read(&snap, 0, base.len()), &want_snap, "snapshot");
    assert_bytes(&read(&origin, 0, base.len()), &want_origin, "origin");
    assert_bytes(&read(&snap2, 0, base.len()), &base, "snapshot of snapshot");
    let l = pool
        .inspect_metadata(|md| md.find_block(DevId(2), VirtBlock(0)).unwrap())
        .unwrap();
    assert!(!l.shared && l.block != blk0.block, "sharing broken");
    // Once broken, writes go in place.
    snap.write(200, b"again", false).unwrap();
    let l2 = pool
        .inspect_metadata(|md| md.find_block(DevId(2), VirtBlock(0)).unwrap())
        .unwrap();
    assert_eq!(l2.block, l.block);
    // Deleting needs the device closed.
    let e = pool.message("delete 3").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    drop(snap2);
    pool.message("delete 3").unwrap();
    assert_bytes(
        &read(&origin, 0, base.len()),
        &want_origin,
        "origin after delete",
    );
    pool.commit().unwrap();
    let img = pool.metadata_device().clone();
    let mut bytes = vec![0u8; img.len().unwrap() as usize];
    img.read_at(&mut bytes, 0).unwrap();
    assert_thin_check_image(&bytes);
}

#[test]
fn discard_passes_down_only_unshared_blocks() {
    let (pool, _m, data) = mem_pool(4, 64, cfg());
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    t.write(0, &pattern(1, 0, 8 * BLOCK as usize), false)
        .unwrap();
    let blocks: Vec<DataBlock> = (0..8)
        .map(|v| {
            pool.inspect_metadata(|md| md.find_block(DevId(1), VirtBlock(v)).unwrap())
                .unwrap()
                .block
        })
        .collect();
    pool.create_snap(DevId(2), DevId(1)).unwrap();
    // Blocks 4..8 of the snapshot are rewritten: the origin alone maps its
    // old blocks 4..8 afterwards.
    let s = pool.thin(DevId(2), None).unwrap();
    s.write(4 * BLOCK, &pattern(2, 0, 4 * BLOCK as usize), false)
        .unwrap();
    // A partial discard does nothing; this one covers blocks 1..7 only.
    t.discard(BLOCK - 1, 10).unwrap();
    t.discard(BLOCK - 1, 6 * BLOCK + 2).unwrap();
    pool.commit().unwrap();
    let mut buf = vec![0u8; BLOCK as usize];
    for (v, b) in blocks.iter().enumerate() {
        data.read_at(&mut buf, b.0 * BLOCK).unwrap();
        let zero = buf.iter().all(|&x| x == 0);
        let expect_zero = (4..7).contains(&v);
        assert_eq!(zero, expect_zero, "block of vblock {v} discarded?");
        assert_eq!(count(&pool, *b) == 0, expect_zero, "count of vblock {v}");
    }
    let want = pattern(1, 0, 8 * BLOCK as usize);
    assert_bytes(
        &read(&s, 0, 4 * BLOCK as usize),
        &want[..4 * BLOCK as usize],
        "snapshot",
    );
    let got = read(&t, 0, 8 * BLOCK as usize);
    assert_bytes(
        &got[..BLOCK as usize],
        &want[..BLOCK as usize],
        "origin block 0",
    );
    assert!(got[BLOCK as usize..7 * BLOCK as usize]
        .iter()
        .all(|&x| x == 0));
    assert_bytes(
        &got[7 * BLOCK as usize..],
        &want[7 * BLOCK as usize..],
        "origin block 7",
    );
    assert_eq!(t.mapped_blocks().unwrap(), 2);
}

#[test]
fn discard_variants() {
    for (nopass, ignore) in [(true, false), (false, true)] {
        let mut c = cfg();
        c.features.no_discard_passdown = nopass;
        c.features.ignore_discard = ignore;
        let (pool, _m, data) = mem_pool(4, 16, c);
        pool.create_thin(DevId(1)).unwrap();
        let t = pool.thin(DevId(1), None).unwrap();
        t.write(0, &pattern(1, 0, 2 * BLOCK as usize), false)
            .unwrap();
        t.discard(0, 2 * BLOCK).unwrap();
        let mut raw = vec![0u8; 2 * BLOCK as usize];
        data.read_at(&mut raw, 0).unwrap();
        assert!(raw.iter().any(|&x| x != 0), "nothing passed down");
        assert_eq!(t.mapped_blocks().unwrap(), if ignore { 2 } else { 0 });
        let words = pool.status_line();
        assert!(
            words.contains(if ignore {
                " ignore_discard "
            } else {
                " no_discard_passdown "
            }),
            "{words}"
        );
    }
}

#[test]
fn write_zeroes_unmaps_or_writes() {
    let (pool, _m, _d) = mem_pool(4, 16, cfg());
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    let all = pattern(3, 0, 4 * BLOCK as usize);
    t.write(0, &all, false).unwrap();
    t.write_zeroes(100, 2 * BLOCK, true).unwrap();
    let mut want = all.clone();
    want[100..100 + 2 * BLOCK as usize].fill(0);
    assert_bytes(&read(&t, 0, want.len()), &want, "after write_zeroes");
    assert_eq!(t.mapped_blocks().unwrap(), 3, "block 1 unmapped");
    t.write_zeroes(3 * BLOCK, BLOCK, false).unwrap();
    want[3 * BLOCK as usize..].fill(0);
    assert_bytes(
        &read(&t, 0, want.len()),
        &want,
        "after write_zeroes no unmap",
    );
    assert_eq!(t.mapped_blocks().unwrap(), 3, "block 3 still mapped");
    t.write_zeroes(8 * BLOCK, BLOCK, false).unwrap();
    assert_eq!(t.mapped_blocks().unwrap(), 4, "no-unmap provisions");
}

#[test]
fn external_origin() {
    let (pool, _m, _d) = mem_pool(4, 16, cfg());
    let olen = 2 * BLOCK + 300;
    let obytes = pattern(9, 0, olen as usize);
    let origin = Arc::new(MemDevice::from_bytes(obytes.clone()));
    pool.create_thin(DevId(5)).unwrap();
    let t = pool.thin(DevId(5), Some(origin.clone())).unwrap();
    let mut want = obytes.clone();
    want.resize(4 * BLOCK as usize, 0);
    assert_bytes(&read(&t, 0, want.len()), &want, "unmapped reads");
    // Partial writes copy the origin (block 2 straddles its end).
    t.write(5, b"abc", false).unwrap();
    t.write(2 * BLOCK + 1000, b"tail", false).unwrap();
    t.write(3 * BLOCK + 1, b"past", false).unwrap();
    want[5..8].copy_from_slice(b"abc");
    want[2 * BLOCK as usize + 1000..2 * BLOCK as usize + 1004].copy_from_slice(b"tail");
    want[3 * BLOCK as usize + 1..3 * BLOCK as usize + 5].copy_from_slice(b"past");
    assert_bytes(&read(&t, 0, want.len()), &want, "after writes");
    assert_eq!(t.mapped_blocks().unwrap(), 3);
    // Write-zeroes may not unmap over an origin: it writes zeros.
    t.write_zeroes(BLOCK, BLOCK, true).unwrap();
    want[BLOCK as usize..2 * BLOCK as usize].fill(0);
    assert_bytes(&read(&t, 0, want.len()), &want, "after write_zeroes");
    // A discard brings the origin back.
    t.discard(0, BLOCK).unwrap();
    want[..BLOCK as usize].copy_from_slice(&obytes[..BLOCK as usize]);
    assert_bytes(&read(&t, 0, want.len()), &want, "after discard");
}

#[test]
fn flush_makes_writes_survive_reopen() {
    let (pool, meta, data) = mem_pool(4, 32, cfg());
    pool.message("create_thin 1").unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    let w = pattern(4, 0, 3 * BLOCK as usize + 17);
    t.write(4096, &w, false).unwrap();
    t.flush().unwrap();
    t.write(9 * BLOCK, b"fua", true).unwrap();
    pool.message("set_transaction_id 0 9").unwrap();
    let st = pool.status_line();
    assert!(st.starts_with("9 "), "{st}");
    assert!(
        st.ends_with("rw discard_passdown queue_if_no_space - 256"),
        "{st}"
    );
    // A crash now: drop without closing is not possible, so copy the images.
    let (m2, d2) = (
        Arc::new(MemDevice::from_bytes(meta.snapshot())),
        Arc::new(MemDevice::from_bytes(data.snapshot())),
    );
    drop(t);
    drop(pool);
    assert_thin_check_image(&m2.snapshot());
    let pool = reopen(&m2, &d2, cfg());
    let t = pool.thin(DevId(1), None).unwrap();
    assert_bytes(&read(&t, 4096, w.len()), &w, "flushed write");
    assert_bytes(&read(&t, 9 * BLOCK, 3), b"fua", "FUA write");
    assert_eq!(pool.inspect_metadata(|md| md.transaction_id().unwrap()), 9);
}

#[test]
fn messages_and_refusals() {
    let (pool, meta, data) = mem_pool(4, 16, cfg());
    for bad in [
        "",
        "create_thin",
        "create_thin x",
        "frobnicate 1",
        "delete 1 2",
    ] {
        let e = pool.message(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{bad}: {e}");
    }
    pool.message("create_thin 1").unwrap();
    assert_eq!(
        pool.message("create_thin 1").unwrap_err().kind(),
        ErrorKind::Busy
    );
    assert_eq!(
        pool.message("create_snap 2 7").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        pool.message("set_transaction_id 1 2").unwrap_err().kind(),
        ErrorKind::Invalid
    );
    pool.message("reserve_metadata_snap").unwrap();
    let st = pool.status_line();
    assert_ne!(st.split(' ').nth(3), Some("-"), "{st}");
    assert_eq!(
        pool.message("reserve_metadata_snap").unwrap_err().kind(),
        ErrorKind::Busy
    );
    pool.message("release_metadata_snap").unwrap();
    assert_eq!(pool.mode(), PoolMode::Write);
    pool.close().unwrap();
    drop(pool);
    // Read-only pools refuse messages, but read.
    let mut c = cfg();
    c.features.read_only = true;
    let pool = reopen(&meta, &data, c);
    assert_eq!(pool.mode(), PoolMode::ReadOnly);
    let e = pool.message("create_thin 2").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let t = pool.thin(DevId(1), None).unwrap();
    assert_eq!(read(&t, 0, 10), vec![0; 10]);
    let e = t.write(0, b"x", false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadOnly, "{e}");
    assert!(pool.status_line().contains(" ro "));
}

#[test]
fn needs_check_opens_read_only() {
    let (pool, meta, data) = mem_pool(4, 16, cfg());
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    t.write(0, b"kept", true).unwrap();
    drop(t);
    pool.close().unwrap();
    drop(pool);
    {
        let mut md =
            uthin_thin::PoolMetadata::open(meta.clone(), uthin_thin::OpenOptions::new(128))
                .unwrap();
        md.set_needs_check().unwrap();
    }
    let pool = reopen(&meta, &data, cfg());
    assert_eq!(pool.mode(), PoolMode::ReadOnly);
    let st = pool.status_line();
    assert!(st.contains(" ro ") && st.contains(" needs_check "), "{st}");
    let t = pool.thin(DevId(1), None).unwrap();
    assert_eq!(read(&t, 0, 4), b"kept");
    // Overwrites of mapped blocks still work; new blocks do not.
    t.write(0, b"KEPT", false).unwrap();
    assert_eq!(read(&t, 0, 4), b"KEPT");
    assert_eq!(
        t.write(BLOCK, b"new", false).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert!(pool.resize_data().is_ok(), "same size is a no-op");
}

#[test]
fn background_commit_and_events() {
    let mut c = cfg();
    c.commit_period = Duration::from_millis(50);
    c.low_water_blocks = 2;
    let (pool, meta, _d) = mem_pool(4, 4, c);
    let events = Arc::new(Mutex::new(Vec::new()));
    let e2 = events.clone();
    pool.set_event_handler(move |e| e2.lock().unwrap().push(e));
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    t.write(0, b"a", false).unwrap();
    t.write(BLOCK, b"b", false).unwrap();
    let sb0 = pool.inspect_metadata(|md| md.committed_superblock().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let sb1 = pool.inspect_metadata(|md| md.committed_superblock().unwrap());
    assert_ne!(
        sb0.data_mapping_root, sb1.data_mapping_root,
        "committed in the background"
    );
    assert_eq!(
        *events.lock().unwrap(),
        vec![PoolEvent::DataLowWater { free: 2 }]
    );
    t.write(2 * BLOCK, b"c", false).unwrap();
    assert_eq!(events.lock().unwrap().len(), 1, "fires once per arming");
    drop(t);
    drop(pool);
    assert_thin_check_image(&meta.snapshot());
}

/// The background commit runs only when something changed: an idle pool,
/// or one that only reads and overwrites mapped blocks, writes nothing to
/// its metadata device; the next change is committed within a period.
#[test]
fn background_commit_only_when_something_changed() {
    let mut c = cfg();
    c.commit_period = Duration::from_millis(20);
    let meta = Arc::new(FaultyDevice::new(MemDevice::new(4 << 20)));
    let data = Arc::new(MemDevice::new(16 * BLOCK));
    let pool = Pool::open(meta.clone(), data, c).unwrap();
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    let settle = || {
        let start = std::time::Instant::now();
        while pool.inspect_metadata(|md| md.is_dirty()) {
            assert!(start.elapsed() < Duration::from_secs(5), "never committed");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    t.write(0, b"a", false).unwrap();
    settle();
    let (_, w0, f0) = meta.counts();
    for i in 0..10u8 {
        t.write(5, &[i; 100], false).unwrap();
        assert_eq!(read(&t, 5, 1), vec![i]);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let (_, w1, f1) = meta.counts();
    assert_eq!((w1, f1), (w0, f0), "an unchanged pool wrote its metadata");
    t.write(BLOCK, b"b", false).unwrap();
    settle();
    let (_, w2, f2) = meta.counts();
    assert!(w2 > w1 && f2 > f1, "the change was not committed");
}

#[test]
fn large_blocks_copy_in_chunks() {
    // 2 MiB blocks: preparing a block goes through 1 MiB chunks.
    let mut c = cfg();
    c.data_block_size = 4096;
    let bb = c.block_bytes();
    let (pool, meta, data) = mem_pool(4, 6, c);
    data.write_at(&vec![0x5a; 6 * bb as usize], 0).unwrap();
    let obytes = pattern(5, 0, (bb + bb / 2 + 512) as usize);
    let origin = Arc::new(MemDevice::from_bytes(obytes.clone()));
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    let base = pattern(1, 0, 2 * bb as usize);
    t.write(0, &base, false).unwrap();
    pool.create_snap(DevId(2), DevId(1)).unwrap();
    let s = pool.thin(DevId(2), None).unwrap();
    // Straddles the chunk boundary inside block 0: copy, overlay, copy.
    let w = pattern(2, 0, 8192);
    s.write((1 << 20) - 4096, &w, false).unwrap();
    // Partial write to a fresh block: zeroed.
    t.write(2 * bb + 10, b"fresh", false).unwrap();
    let mut want_s = base.clone();
    want_s[(1 << 20) - 4096..(1 << 20) + 4096].copy_from_slice(&w);
    assert_bytes(&read(&s, 0, 2 * bb as usize), &want_s, "snapshot");
    assert_bytes(&read(&t, 0, 2 * bb as usize), &base, "origin");
    let mut want_fresh = vec![0u8; bb as usize];
    want_fresh[10..15].copy_from_slice(b"fresh");
    assert_bytes(&read(&t, 2 * bb, bb as usize), &want_fresh, "fresh block");
    // External origin: block 1 straddles the origin's end.
    pool.create_thin(DevId(3)).unwrap();
    let o = pool.thin(DevId(3), Some(origin)).unwrap();
    o.write(bb + (1 << 20) + 7, b"x", false).unwrap();
    let mut want_o = obytes[bb as usize..].to_vec();
    want_o.resize(bb as usize, 0);
    want_o[(1 << 20) + 7] = b'x';
    assert_bytes(&read(&o, bb, bb as usize), &want_o, "origin-backed block");
    assert_eq!(t.status_line(), format!("{} {}", 3 * 4096, 3 * 4096 - 1));
    drop((t, s, o));
    pool.close().unwrap();
    assert_thin_check_image(&meta.snapshot());
}
