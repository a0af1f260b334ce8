//! Concurrency: threads writing different sectors of the same blocks while
//! snapshots are taken, the pool commits and readers read.
//!
//! Every sector belongs to one writer thread, which stamps it with its own
//! tags in order (common/history.rs).  The blocks are provisioned, shared by
//! snapshots and broken again under the writers, so provisioning, breaking
//! sharing and in-place overwrites race on the same cells.  At the end each
//! sector of the origin holds its owner's last tag; every snapshot holds,
//! in every sector, a whole write of the owner (never a torn or foreign
//! sector), and readers never saw anything else either.

mod common;

use common::history::{decode, sector_bytes, SECTOR};
use common::*;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use uthin_block_io::testing::MemDevice;
use uthin_block_io::BlockDevice;
use uthin_pool::{DevId, Pool, PoolConfig, VirtBlock};

const BLOCKS: u64 = 4;
const WRITERS: u64 = 6;
const SECTORS: u64 = BLOCKS * BLOCK / SECTOR;

/// The writer owning sector `s`.
fn owner(s: u64) -> u64 {
    s % WRITERS
}

/// Tags of writer `w`: `w + 1 + WRITERS * i`, so the owner is recoverable.
fn tag(w: u64, i: u64) -> u32 {
    (w + 1 + WRITERS * i) as u32
}

fn check_sector(bytes: &[u8], s: u64, what: &str) -> u32 {
    let t = decode(bytes, s).unwrap_or_else(|e| panic!("{what}: sector {s} {e}"));
    assert!(
        t == 0 || (t as u64 - 1) % WRITERS == owner(s),
        "{what}: sector {s} holds foreign tag {t}"
    );
    t
}

/// The configurations each test runs in: cells in the volumes' dense
/// tables (the default), and in the pool's hash table.
fn tables() -> [PoolConfig; 2] {
    let mut hashed = cfg();
    hashed.dense_table_bytes = 0;
    [cfg(), hashed]
}

#[test]
fn same_block_writers_with_snapshots() {
    for c in tables() {
        same_block_writers_with_snapshots_in(c);
    }
}

fn same_block_writers_with_snapshots_in(mut c: PoolConfig) {
    c.commit_period = Duration::from_millis(5);
    let (pool, meta, _d) = mem_pool(4, 256, c);
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    let done = AtomicBool::new(false);
    let last: Vec<Vec<u32>> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2u64)
            .map(|r| {
                let (t, done) = (&t, &done);
                s.spawn(move || {
                    let mut rng = Rng(r + 100);
                    let mut buf = vec![0u8; BLOCK as usize];
                    while !done.load(Ordering::Relaxed) {
                        let b = rng.below(BLOCKS);
                        t.read(b * BLOCK, &mut buf).unwrap();
                        for (i, sec) in buf.chunks(SECTOR as usize).enumerate() {
                            check_sector(sec, b * BLOCK / SECTOR + i as u64, "live read");
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let t = &t;
                s.spawn(move || {
                    let mut rng = Rng(w);
                    let mut mine = vec![0u32; SECTORS as usize];
                    for i in 0..400 {
                        let s = owner_sector(w, rng.below(SECTORS / WRITERS));
                        let tg = tag(w, i);
                        t.write(s * SECTOR, &sector_bytes(tg, s), i % 50 == 0)
                            .unwrap();
                        mine[s as usize] = tg;
                    }
                    mine
                })
            })
            .collect();
        for id in 2..12 {
            std::thread::sleep(Duration::from_millis(3));
            pool.create_snap(DevId(id), DevId(if id % 3 == 0 { id - 1 } else { 1 }))
                .unwrap();
        }
        let mut last = vec![];
        for w in writers {
            last.push(w.join().unwrap());
        }
        done.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        last
    });
    let mut buf = vec![0u8; (SECTORS * SECTOR) as usize];
    t.read(0, &mut buf).unwrap();
    for (i, sec) in buf.chunks(SECTOR as usize).enumerate() {
        let s = i as u64;
        let got = check_sector(sec, s, "origin");
        assert_eq!(
            got,
            last[owner(s) as usize][i],
            "origin sector {s}: not the last write"
        );
    }
    for id in 2..12 {
        let snap = pool.thin(DevId(id), None).unwrap();
        snap.read(0, &mut buf).unwrap();
        for (i, sec) in buf.chunks(SECTOR as usize).enumerate() {
            check_sector(sec, i as u64, &format!("snapshot {id}"));
        }
    }
    drop(t);
    pool.close().unwrap();
    assert_thin_check_image(&meta.snapshot());
}

/// Writer `w`'s `k`-th sector.
fn owner_sector(w: u64, k: u64) -> u64 {
    k * WRITERS + w
}

/// A data device whose reads of one byte range stall until released.
struct Stall {
    inner: Arc<MemDevice>,
    range: Mutex<Option<(u64, u64)>>,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl BlockDevice for Stall {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let hit = self
            .range
            .lock()
            .unwrap()
            .is_some_and(|(s, e)| offset < e && s < offset + buf.len() as u64);
        if hit {
            *self.range.lock().unwrap() = None; // only the first one
            self.entered.lock().unwrap().send(()).unwrap();
            let _ = self.release.lock().unwrap().recv();
        }
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.discard(offset, len)
    }
}

/// I/O to different blocks runs in parallel, and I/O that must be ordered
/// after a request in flight on the same block waits for it: while a read
/// of block 0 is stuck in the data device, reads, overwrites and
/// provisioning writes of other blocks, a snapshot and commits complete; a
/// write that breaks the sharing of block 0 and a discard of block 0 wait
/// until the read has drained, and the read returns the old bytes.
#[test]
fn different_blocks_run_in_parallel_same_block_waits() {
    for c in tables() {
        different_blocks_run_in_parallel_same_block_waits_in(c);
    }
}

fn different_blocks_run_in_parallel_same_block_waits_in(c: PoolConfig) {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let stall = Arc::new(Stall {
        inner: Arc::new(MemDevice::new(64 * BLOCK)),
        range: Mutex::new(None),
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
    });
    let meta = Arc::new(MemDevice::new(4 << 20));
    let pool = Pool::open(meta.clone(), stall.clone(), c).unwrap();
    pool.create_thin(DevId(1)).unwrap();
    let t = Arc::new(pool.thin(DevId(1), None).unwrap());
    let old = pattern(1, 0, 4 * BLOCK as usize);
    t.write(0, &old, false).unwrap();
    let b0 = pool
        .inspect_metadata(|md| md.find_block(DevId(1), VirtBlock(0)).unwrap())
        .unwrap()
        .block;
    *stall.range.lock().unwrap() = Some((b0.0 * BLOCK, (b0.0 + 1) * BLOCK));

    let t2 = t.clone();
    let reader = std::thread::spawn(move || {
        let mut b = vec![0u8; 4096];
        t2.read(100, &mut b).map(|()| b)
    });
    entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the read never reached the data device");

    // Other blocks, a snapshot and commits go ahead.
    let t2 = t.clone();
    let p2 = pool.clone();
    let others = std::thread::spawn(move || {
        let mut b = vec![0u8; 4096];
        t2.read(BLOCK + 5, &mut b).unwrap();
        t2.write(2 * BLOCK + 7, b"overwrite", false).unwrap();
        t2.write(9 * BLOCK + 1, b"provision", false).unwrap();
        t2.flush().unwrap();
        p2.create_snap(DevId(2), DevId(1)).unwrap();
        t2.write(3 * BLOCK, b"breaks block 3", true).unwrap();
        b
    });
    let start = Instant::now();
    while !others.is_finished() {
        if start.elapsed() > Duration::from_secs(10) {
            release.send(()).unwrap();
            panic!("I/O to other blocks waited for a read of block 0");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_bytes(
        &others.join().unwrap(),
        &old[BLOCK as usize + 5..BLOCK as usize + 5 + 4096],
        "read of block 1",
    );

    // Block 0 is shared now: breaking the sharing, and a discard, wait for
    // the read in flight.
    let t2 = t.clone();
    let breaker = std::thread::spawn(move || t2.write(10, b"new", false));
    let t2 = t.clone();
    let discarder = std::thread::spawn(move || t2.discard(0, BLOCK));
    std::thread::sleep(Duration::from_millis(200));
    let waited = !breaker.is_finished() && !discarder.is_finished();
    release.send(()).unwrap();
    let read = reader.join().unwrap().unwrap();
    breaker.join().unwrap().unwrap();
    discarder.join().unwrap().unwrap();
    assert!(
        waited,
        "a write or discard of block 0 did not wait for its read"
    );
    assert_bytes(&read, &old[100..100 + 4096], "the stalled read");
    let snap = pool.thin(DevId(2), None).unwrap();
    let mut b = vec![0u8; 4 * BLOCK as usize];
    snap.read(0, &mut b).unwrap();
    let mut want = old.clone();
    want[2 * BLOCK as usize + 7..2 * BLOCK as usize + 16].copy_from_slice(b"overwrite");
    assert_bytes(&b, &want, "the snapshot");
    drop((t, snap));
    pool.close().unwrap();
    assert_thin_check_image(&meta.snapshot());
}
