//! Crash test: a multi-volume workload (provisioning, partial and FUA
//! writes, overwrites, breaking sharing, snapshots of snapshots, deletes,
//! discards, flushes, commits) on crash devices for metadata and data that
//! die together.
//!
//! The two devices share a crash controller that numbers every write,
//! discard and flush of either device: at the chosen number that operation
//! and everything after it fails on both, as a power cut would.  A dry run
//! lists the operation numbers; the test crashes at every flush, and between
//! flushes at a sample of writes, then rebuilds the post-crash images (only
//! flushed writes; and torn: any subset of the unflushed writes, one cut at a
//! sector boundary), reopens the pool and checks, sector by sector, that
//! every volume reads a value the history allows (common/history.rs): every
//! write acknowledged before a completed flush or FUA of its volume (or a
//! pool message) reads back, and nothing reads back that was never written.
//! Debian's thin_check passes on every metadata image, and the stricter
//! thin_check 1.x on a sample.

mod common;

use common::history::{History, Outcome};
use common::workload::{exec, verify_pool, workload, Req, Thins, SECTORS};
use common::*;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uthin_block_io::testing::{CrashDevice, MemDevice};
use uthin_block_io::{BlockDevice, SharedDevice};
use uthin_pool::Pool;

const DATA_BLOCKS: u64 = 96;

/// Numbers the mutating operations of both devices; kills both at one.
#[derive(Default)]
struct Ctl {
    ops: AtomicU64,
    crash_at: AtomicU64,
    dead: AtomicBool,
    flushes: Mutex<Vec<u64>>,
}

impl Ctl {
    fn new(crash_at: u64) -> Arc<Self> {
        let c = Ctl::default();
        c.crash_at.store(crash_at, Ordering::SeqCst);
        Arc::new(c)
    }
    fn tick(&self, flush: bool) -> io::Result<()> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        if self.dead.load(Ordering::SeqCst) || n >= self.crash_at.load(Ordering::SeqCst) {
            self.dead.store(true, Ordering::SeqCst);
            return Err(io::Error::other(format!("power cut (operation {n})")));
        }
        if flush {
            self.flushes.lock().unwrap().push(n);
        }
        Ok(())
    }
}

struct Linked {
    dev: Arc<CrashDevice>,
    ctl: Arc<Ctl>,
}

impl BlockDevice for Linked {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.dev.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.ctl.tick(false)?;
        self.dev.write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.ctl.tick(true)?;
        self.dev.flush()
    }
    fn len(&self) -> io::Result<u64> {
        self.dev.len()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.ctl.tick(false)?;
        self.dev.discard(offset, len)
    }
}

/// Runs `reqs` until the devices die; returns the history and the devices.
fn run(reqs: &[Req], crash_at: u64) -> (History, Arc<CrashDevice>, Arc<CrashDevice>, Arc<Ctl>) {
    let ctl = Ctl::new(crash_at);
    let meta = Arc::new(CrashDevice::new(4 << 20));
    let data = Arc::new(CrashDevice::new(DATA_BLOCKS * BLOCK));
    let lm: SharedDevice = Arc::new(Linked {
        dev: meta.clone(),
        ctl: ctl.clone(),
    });
    let ld: SharedDevice = Arc::new(Linked {
        dev: data.clone(),
        ctl: ctl.clone(),
    });
    let mut h = History::new(SECTORS);
    let Ok(pool) = Pool::open(lm, ld, cfg()) else {
        return (h, meta, data, ctl);
    };
    let mut thins = Thins::new();
    for req in reqs {
        if exec(&pool, &mut thins, &mut h, req) == Some(Outcome::Failed) {
            assert!(
                ctl.dead.load(Ordering::SeqCst),
                "{req:?} failed without a crash"
            );
            break;
        }
    }
    drop(thins);
    drop(pool);
    (h, meta, data, ctl)
}

/// Reopens the images and checks every volume (`strict`: thin_check 1.x
/// too).
fn verify(h: &History, meta: Vec<u8>, data: Vec<u8>, strict: bool, what: &str) {
    if h.vols.is_empty() && meta[..4096].iter().all(|&b| b == 0) {
        // Crashed while formatting: nothing was ever acknowledged, and the
        // next open formats again.
        return;
    }
    assert_thin_check_image(&meta);
    if strict {
        assert_thin_check_1x_image(&meta);
    }
    let meta = Arc::new(MemDevice::from_bytes(meta));
    let data = Arc::new(MemDevice::from_bytes(data));
    let pool = reopen(&meta, &data, cfg());
    verify_pool(&pool, h, what);
}

#[test]
fn crash_at_every_flush_and_between() {
    let reqs = workload(0x5eed, 90);
    let (_, _, _, ctl) = run(&reqs, u64::MAX);
    let total = ctl.ops.load(Ordering::SeqCst);
    let flushes = ctl.flushes.lock().unwrap().clone();
    assert!(flushes.len() > 40, "{} flushes", flushes.len());
    let mut rng = Rng(7);
    let mut points: Vec<u64> = flushes.clone();
    points.extend((0..40).map(|_| rng.below(total)));
    points.push(total); // no crash: everything flushed at close? checked too
    points.sort();
    points.dedup();
    eprintln!(
        "{} device operations, {} flushes, {} crash points",
        total,
        flushes.len(),
        points.len()
    );
    for (i, &at) in points.iter().enumerate() {
        let (mut h, meta, data, _) = run(&reqs, at);
        h.crashed();
        verify(
            &h,
            meta.durable_image(),
            data.durable_image(),
            i % 8 == 0 || at == total,
            &format!("crash at op {at}"),
        );
        if i % 2 == 0 {
            let seed = at * 31 + 1;
            verify(
                &h,
                meta.durable_image_torn(seed),
                data.durable_image_torn(seed ^ 0xabc),
                false,
                &format!("crash at op {at}, torn images (seed {seed})"),
            );
        }
    }
}
