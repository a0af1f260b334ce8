//! Running out of space (FORMAT.md §6.8): data space with queueing (a
//! waiting write completes once the data device grows), with
//! error_if_no_space (fails at once), with the no-space timeout, freeing
//! space with discards; metadata space (out-of-metadata-space mode until the
//! metadata device grows).

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uthin_pool::{DevId, ErrorKind, PoolEvent, PoolMode};

fn events(pool: &uthin_pool::Pool) -> Arc<Mutex<Vec<PoolEvent>>> {
    let ev = Arc::new(Mutex::new(Vec::new()));
    let e2 = ev.clone();
    pool.set_event_handler(move |e| e2.lock().unwrap().push(e));
    ev
}

#[test]
fn queued_write_completes_after_growing() {
    let mut c = cfg();
    c.low_water_blocks = 1;
    let (pool, meta, data) = mem_pool(4, 4, c);
    let ev = events(&pool);
    pool.create_thin(DevId(1)).unwrap();
    let t = Arc::new(pool.thin(DevId(1), None).unwrap());
    t.write(0, &pattern(1, 0, 4 * BLOCK as usize), false)
        .unwrap();
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || t2.write(4 * BLOCK + 10, b"queued", true));
    let start = Instant::now();
    while pool.mode() != PoolMode::OutOfDataSpace {
        assert!(start.elapsed() < Duration::from_secs(5), "never ran out");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished(), "the write waits");
    let st = pool.status_line();
    assert!(
        st.contains(" out_of_data_space ") && st.contains(" queue_if_no_space "),
        "{st}"
    );
    // Messages are processed out of data space (the kernel refuses them
    // only from out-of-metadata-space on); their commit finds no free
    // block, so the pool stays out of data space.
    pool.message("create_thin 2").unwrap();
    assert_eq!(pool.mode(), PoolMode::OutOfDataSpace);
    // Overwrites and reads still work.
    t.write(5, b"over", false).unwrap();
    let mut b = [0u8; 4];
    t.read(5, &mut b).unwrap();
    assert_eq!(&b, b"over");
    // A same-size resize changes nothing.
    pool.resize_data().unwrap();
    assert_eq!(pool.mode(), PoolMode::OutOfDataSpace);
    data.set_len(8 * BLOCK);
    pool.resize_data().unwrap();
    waiter.join().unwrap().unwrap();
    assert_eq!(pool.mode(), PoolMode::Write);
    let mut b = [0u8; 6];
    t.read(4 * BLOCK + 10, &mut b).unwrap();
    assert_eq!(&b, b"queued");
    let e = ev.lock().unwrap().clone();
    assert!(e.contains(&PoolEvent::DataLowWater { free: 1 }), "{e:?}");
    assert!(e.contains(&PoolEvent::ModeChanged {
        old: PoolMode::Write,
        new: PoolMode::OutOfDataSpace
    }));
    assert!(e.contains(&PoolEvent::ModeChanged {
        old: PoolMode::OutOfDataSpace,
        new: PoolMode::Write
    }));
    drop(t);
    pool.close().unwrap();
    assert_thin_check_image(&meta.snapshot());
}

#[test]
fn error_if_no_space_fails_at_once() {
    let mut c = cfg();
    c.features.error_if_no_space = true;
    let (pool, _m, data) = mem_pool(4, 2, c);
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    t.write(0, &vec![1; 2 * BLOCK as usize], false).unwrap();
    let start = Instant::now();
    let e = t.write(2 * BLOCK, b"x", false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(pool
        .status_line()
        .contains(" out_of_data_space discard_passdown error_if_no_space "));
    // Growing recovers.
    data.set_len(3 * BLOCK);
    pool.resize_data().unwrap();
    t.write(2 * BLOCK, b"x", false).unwrap();
    assert_eq!(pool.mode(), PoolMode::Write);
}

#[test]
fn no_space_timeout_turns_queueing_into_errors() {
    let mut c = cfg();
    c.no_space_timeout = Duration::from_millis(200);
    let (pool, _m, data) = mem_pool(4, 1, c);
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    t.write(0, b"a", false).unwrap();
    let start = Instant::now();
    let e = t.write(BLOCK, b"b", false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(190), "{waited:?}");
    assert!(pool.status_line().contains(" error_if_no_space "));
    let start = Instant::now();
    assert_eq!(
        t.write(2 * BLOCK, b"c", false).unwrap_err().kind(),
        ErrorKind::NoSpace
    );
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "errors at once now"
    );
    data.set_len(4 * BLOCK);
    pool.resize_data().unwrap();
    t.write(BLOCK, b"b", false).unwrap();
    assert!(pool.status_line().contains(" queue_if_no_space "));
}

#[test]
fn discards_free_space() {
    let mut c = cfg();
    c.features.error_if_no_space = true;
    let (pool, _m, _d) = mem_pool(4, 3, c);
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    t.write(0, &vec![1; 3 * BLOCK as usize], false).unwrap();
    // Freed in this transaction: allocation commits and retries.
    t.discard(0, BLOCK).unwrap();
    t.write(5 * BLOCK, b"x", false).unwrap();
    assert_eq!(pool.mode(), PoolMode::Write);
    // Out of space, then a discard and a commit bring the pool back.
    assert!(t.write(6 * BLOCK, b"y", false).is_err());
    assert_eq!(pool.mode(), PoolMode::OutOfDataSpace);
    t.discard(BLOCK, BLOCK).unwrap();
    t.flush().unwrap();
    assert_eq!(pool.mode(), PoolMode::Write);
    t.write(6 * BLOCK, b"y", false).unwrap();
    let mut b = [9u8; 1];
    t.read(BLOCK, &mut b).unwrap();
    assert_eq!(b, [0]);
}

#[test]
fn metadata_exhaustion_and_growth() {
    // 2 MiB of metadata (512 blocks, 51 reserved), the smallest LVM makes.
    let meta = Arc::new(uthin_block_io::testing::MemDevice::new(2 << 20));
    let data = Arc::new(uthin_block_io::testing::MemDevice::new(1024 * BLOCK));
    let pool = reopen(&meta, &data, cfg());
    let ev = events(&pool);
    pool.create_thin(DevId(0)).unwrap();
    let t = pool.thin(DevId(0), None).unwrap();
    t.write(0, b"origin", false).unwrap();
    // Each snapshot written once gets its own leaf: metadata runs out.
    let mut id = 1;
    let mut last = None;
    let err = loop {
        assert!(id < 1000, "metadata never ran out");
        if let Err(e) = pool.create_snap(DevId(id), DevId(0)) {
            break e;
        }
        let s = pool.thin(DevId(id), None).unwrap();
        if let Err(e) = s.write(0, b"snap", false) {
            break e;
        }
        last = Some(s);
        id += 1;
    };
    let last = last.unwrap();
    // The reserve absorbs the last changes: the commit after them finds no
    // free metadata and the pool goes out of metadata space (no abort).
    let mode = pool.mode();
    assert_eq!(mode, PoolMode::OutOfMetadataSpace, "after {err}");
    eprintln!("metadata ran out after {id} snapshots: {err}; mode {mode:?}");
    assert!(pool.status_line().contains(" ro "));
    assert!(ev
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, PoolEvent::MetadataLowWater { .. })));
    // Reads and overwrites of mapped blocks work; messages are refused.
    let mut b = [0u8; 6];
    t.read(0, &mut b).unwrap();
    assert_eq!(&b, b"origin");
    last.write(0, b"SNAP", false).unwrap();
    last.read(0, &mut b).unwrap();
    assert_eq!(&b, b"SNAPin");
    drop(last);
    assert_eq!(
        pool.message("create_thin 999").unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    meta.set_len(4 << 20);
    pool.resize_metadata().unwrap();
    assert_eq!(pool.mode(), PoolMode::Write);
    pool.create_snap(DevId(id), DevId(0)).unwrap();
    let s = pool.thin(DevId(id), None).unwrap();
    s.write(0, b"grown", true).unwrap();
    drop(s);
    drop(t);
    pool.close().unwrap();
    assert_thin_check_image(&meta.snapshot());
}

/// Allocated bytes of a file (its blocks on the host file system).
fn allocated(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().blocks() * 512
}

/// On real files: a write queued out of data space completes once the data
/// file itself grows (as `truncate -s` or `lvextend` would grow it, behind
/// the pool's back) and the pool is told; discarded blocks become holes in
/// the data file, so the space goes back to the host file system.
#[test]
fn file_pool_recovers_after_the_file_grows_and_discards_punch_holes() {
    use uthin_block_io::{FileDevice, SharedDevice};
    let dir = tempfile::tempdir().unwrap();
    let (mp, dp) = (dir.path().join("meta"), dir.path().join("data"));
    let meta: SharedDevice = Arc::new(FileDevice::create(&mp, 4 << 20).unwrap());
    let data: SharedDevice = Arc::new(FileDevice::create(&dp, 4 * BLOCK).unwrap());
    let pool = uthin_pool::Pool::open(meta, data, cfg()).unwrap();
    pool.create_thin(DevId(1)).unwrap();
    let t = Arc::new(pool.thin(DevId(1), None).unwrap());
    let full = pattern(3, 0, 4 * BLOCK as usize);
    t.write(0, &full, true).unwrap();
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || t2.write(4 * BLOCK + 10, b"queued", true));
    let start = Instant::now();
    while pool.mode() != PoolMode::OutOfDataSpace {
        assert!(start.elapsed() < Duration::from_secs(5), "never ran out");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished(), "the write waits for space");
    // The file grows under the pool, through another handle.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&dp)
        .unwrap()
        .set_len(8 * BLOCK)
        .unwrap();
    pool.resize_data().unwrap();
    waiter.join().unwrap().unwrap();
    assert_eq!(pool.mode(), PoolMode::Write);
    assert!(
        pool.status_line().contains(" 5/8 "),
        "{}",
        pool.status_line()
    );
    let mut b = [0u8; 6];
    t.read(4 * BLOCK + 10, &mut b).unwrap();
    assert_eq!(&b, b"queued");

    // Discards punch holes: three blocks' worth of the file is released.
    let before = allocated(&dp);
    t.discard(0, 3 * BLOCK).unwrap();
    t.flush().unwrap();
    let after = allocated(&dp);
    assert!(
        after + 3 * BLOCK <= before,
        "discarding 3 blocks released {} bytes of the data file",
        before.saturating_sub(after)
    );
    let mut rest = vec![0u8; BLOCK as usize];
    t.read(3 * BLOCK, &mut rest).unwrap();
    assert_bytes(&rest, &full[3 * BLOCK as usize..], "block 3");
    drop(t);
    pool.close().unwrap();
    assert_thin_check(&mp);
}

/// A data device whose size can be set without backing it: only its first
/// blocks are ever written.
struct Sized {
    inner: uthin_block_io::testing::MemDevice,
    len: std::sync::atomic::AtomicU64,
}

impl uthin_block_io::BlockDevice for Sized {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.len.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Metadata running out in the middle of a transaction (FORMAT.md §6.8:
/// "any metadata operation failure"): the data device grew so much that
/// its space map needs more metadata blocks than are left, reserve
/// included.  The commit fails, the transaction is aborted, needs_check is
/// set and the pool goes read-only; what was committed still reads back,
/// and the pool reopens read-only.
#[test]
fn metadata_running_out_mid_transaction_aborts_to_read_only() {
    let meta = Arc::new(uthin_block_io::testing::MemDevice::new(2 << 20));
    let data = Arc::new(Sized {
        inner: uthin_block_io::testing::MemDevice::new(16 * BLOCK),
        len: (16 * BLOCK).into(),
    });
    let pool = uthin_pool::Pool::open(meta.clone(), data.clone(), cfg()).unwrap();
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    t.write(0, b"committed", true).unwrap();
    // 700 bitmaps of data space map: more than the 512 metadata blocks.
    let huge = 700 * 16320;
    data.len
        .store(huge * BLOCK, std::sync::atomic::Ordering::SeqCst);
    let e = pool.resize_data().unwrap_err();
    eprintln!("resize_data: {e}");
    assert_eq!(pool.mode(), PoolMode::ReadOnly, "{e}");
    let st = pool.status_line();
    assert!(st.contains(" ro ") && st.contains(" needs_check "), "{st}");
    assert!(
        st.contains("/16 "),
        "the data space is back to 16 blocks: {st}"
    );
    let mut b = [0u8; 9];
    t.read(0, &mut b).unwrap();
    assert_eq!(&b, b"committed");
    t.write(0, b"overwrite", false).unwrap();
    assert_eq!(
        t.write(BLOCK, b"new", false).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert_eq!(
        pool.message("create_thin 2").unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    drop(t);
    pool.close().unwrap();
    drop(pool);
    assert_thin_check_image(&meta.snapshot());
    data.len
        .store(16 * BLOCK, std::sync::atomic::Ordering::SeqCst);
    let pool = uthin_pool::Pool::open(meta.clone(), data, cfg()).unwrap();
    assert_eq!(pool.mode(), PoolMode::ReadOnly, "needs_check on disk");
    let t = pool.thin(DevId(1), None).unwrap();
    t.read(0, &mut b).unwrap();
    assert_eq!(&b, b"overwrite");
}
