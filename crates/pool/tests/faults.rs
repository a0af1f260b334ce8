//! Fault test: an I/O error injected into one read, write, flush or discard
//! of the metadata or the data device, at each request of a multi-volume
//! workload.
//!
//! A dry run counts each request's device operations; then, for every
//! request and every kind of operation it issued on either device (the
//! first, a middle and the last one), a fresh run fails exactly that
//! operation and checks, as the kernel behaves (FORMAT.md §6.8):
//! * the request that issued it fails;
//! * data reads, writes and discards (passdown) only fail their request
//!   (the pool stays writable); a failed metadata write or flush, or a
//!   failed data flush inside a commit, aborts the transaction: the pool
//!   turns read-only with needs_check set, on disk too (a reopen stays
//!   read-only);
//! * the rest of the workload runs (refused or not) and every read, live
//!   and after reopening, returns what the history allows: nothing
//!   committed is lost.

mod common;

use common::history::{History, Outcome};
use common::workload::{exec, verify_pool, workload, Req, Thins, SECTORS};
use common::*;
use std::sync::Arc;
use uthin_block_io::testing::{FaultyDevice, MemDevice, Op};
use uthin_pool::{Pool, PoolMode};

type Faulty = FaultyDevice<Arc<MemDevice>>;

struct Rig {
    meta: Arc<Faulty>,
    data: Arc<Faulty>,
    mem_meta: Arc<MemDevice>,
    mem_data: Arc<MemDevice>,
    pool: Arc<Pool>,
    thins: Thins,
    h: History,
}

impl Rig {
    fn new() -> Rig {
        let mem_meta = Arc::new(MemDevice::new(4 << 20));
        let mem_data = Arc::new(MemDevice::new(96 * BLOCK));
        let meta = Arc::new(FaultyDevice::new(mem_meta.clone()));
        let data = Arc::new(FaultyDevice::new(mem_data.clone()));
        let pool = Pool::open(meta.clone(), data.clone(), cfg()).unwrap();
        Rig {
            meta,
            data,
            mem_meta,
            mem_data,
            pool,
            thins: Thins::new(),
            h: History::new(SECTORS),
        }
    }

    fn counts(&self) -> [Counts; 2] {
        let c = |d: &Faulty| {
            let (r, w, f) = d.counts();
            [r, w, f, d.discards()]
        };
        [c(&self.meta), c(&self.data)]
    }

    fn exec(&mut self, req: &Req) -> Option<Outcome> {
        exec(&self.pool, &mut self.thins, &mut self.h, req)
    }
}

/// Reads, writes, flushes and discards of a device.
type Counts = [u64; 4];

fn pick(c: Counts, op: Op) -> u64 {
    c[op as usize]
}

#[test]
fn a_fault_at_every_step() {
    let reqs = workload(0xfa17, 60);
    // Dry run: operations per request.
    let mut rig = Rig::new();
    let mut per_req = Vec::new();
    for req in &reqs {
        let before = rig.counts();
        let o = rig.exec(req);
        assert_ne!(o, Some(Outcome::Failed), "{req:?} failed without a fault");
        per_req.push((before, rig.counts()));
    }
    drop(rig);

    let mut runs = 0;
    let mut read_only = 0;
    let mut discards = 0;
    for (i, req) in reqs.iter().enumerate() {
        let (before, after) = per_req[i];
        for (d, name) in [(0usize, "metadata"), (1, "data")] {
            for op in [Op::Read, Op::Write, Op::Flush, Op::Discard] {
                let (b, a) = (pick(before[d], op), pick(after[d], op));
                let mut at: Vec<u64> = vec![b, b + (a - b) / 2, a.saturating_sub(1)];
                at.retain(|&n| n >= b && n < a);
                at.dedup();
                for n in at {
                    runs += 1;
                    discards += (op == Op::Discard) as u32;
                    let what = format!("{op:?} #{n} of the {name} device, in request {i} {req:?}");
                    read_only += fault_run(&reqs, i, d, op, n, runs % 8 == 0, &what) as u32;
                }
            }
        }
    }
    eprintln!(
        "{runs} fault runs ({discards} at data discards), {read_only} turned the pool read-only"
    );
    assert!(
        runs > 100 && read_only > 10 && discards > 0,
        "{runs} runs, {read_only} read-only, {discards} discards"
    );
}

/// A discard whose passdown fails: the request fails, the pool stays
/// writable (the kernel fails the bio only), the blocks are unmapped and
/// free again (not leaked, not left pinned), and the metadata is clean.
#[test]
fn a_failed_passdown_fails_only_the_discard() {
    let rig = Rig::new();
    let pool = &rig.pool;
    pool.create_thin(uthin_pool::DevId(1)).unwrap();
    let t = pool.thin(uthin_pool::DevId(1), None).unwrap();
    t.write(0, &pattern(1, 0, 4 * BLOCK as usize), true)
        .unwrap();
    let free = || pool.inspect_metadata(|md| md.free_data_blocks().unwrap());
    let before = free();
    rig.data.fail_discard_at(rig.data.discards());
    let e = t.discard(0, 2 * BLOCK).unwrap_err();
    assert_eq!(e.kind(), uthin_pool::ErrorKind::Io, "{e}");
    assert_eq!(pool.mode(), PoolMode::Write);
    assert!(!pool.inspect_metadata(|md| md.needs_check().unwrap()));
    assert_eq!(t.mapped_blocks().unwrap(), 2);
    assert_eq!(free(), before + 2, "the discarded blocks are free");
    let mut b = vec![1u8; 2 * BLOCK as usize];
    t.read(0, &mut b).unwrap();
    assert!(b.iter().all(|&x| x == 0), "discarded blocks read as zeroes");
    // The pool goes on: new blocks, a discard that passes down, a commit.
    t.write(8 * BLOCK, b"after", false).unwrap();
    t.discard(2 * BLOCK, BLOCK).unwrap();
    t.flush().unwrap();
    drop(t);
    assert_thin_check_image(&rig.mem_meta.snapshot());
    assert_thin_check_1x_image(&rig.mem_meta.snapshot());
}

/// One run with operation `n` of kind `op` failing on device `d` during
/// request `i`; returns whether the pool went read-only.
fn fault_run(reqs: &[Req], i: usize, d: usize, op: Op, n: u64, check: bool, what: &str) -> bool {
    let mut rig = Rig::new();
    for req in &reqs[..i] {
        rig.exec(req);
    }
    let dev = if d == 0 { &rig.meta } else { &rig.data };
    dev.fail_at(op, n);
    let o = rig.exec(&reqs[i]);
    assert_eq!(o, Some(Outcome::Failed), "{what}: the request did not fail");
    let mode = rig.pool.mode();
    let needs_check = rig
        .pool
        .inspect_metadata(|md| md.needs_check().unwrap_or(false));
    match (d, op) {
        // A failed data read, write or discard fails its request only.
        (1, Op::Read | Op::Write | Op::Discard) => assert_eq!(mode, PoolMode::Write, "{what}"),
        (0, Op::Write | Op::Flush) => assert_eq!(mode, PoolMode::ReadOnly, "{what}"),
        _ => assert!(
            mode == PoolMode::Write || mode == PoolMode::ReadOnly,
            "{what}: {mode:?}"
        ),
    }
    assert_eq!(
        mode == PoolMode::ReadOnly,
        needs_check,
        "{what}: needs_check"
    );
    for req in &reqs[i + 1..] {
        rig.exec(req);
    }
    verify_pool(&rig.pool, &rig.h, &format!("{what}, live"));
    let Rig {
        mem_meta,
        mem_data,
        pool,
        thins,
        mut h,
        ..
    } = rig;
    let ended_writable = pool.mode() == PoolMode::Write;
    drop(thins);
    drop(pool);
    if ended_writable {
        h.committed(); // close committed
    }
    if check {
        assert_thin_check_image(&mem_meta.snapshot());
        assert_thin_check_1x_image(&mem_meta.snapshot());
    }
    let pool = reopen(&mem_meta, &mem_data, cfg());
    assert_eq!(
        pool.mode() == PoolMode::ReadOnly,
        mode == PoolMode::ReadOnly,
        "{what}: needs_check on disk"
    );
    verify_pool(&pool, &h, &format!("{what}, reopened"));
    mode == PoolMode::ReadOnly
}

#[test]
fn aborted_changes_fail_flushes_and_a_failed_abort_fails_the_pool() {
    let rig = Rig::new();
    let pool = &rig.pool;
    pool.create_thin(uthin_pool::DevId(1)).unwrap();
    pool.create_thin(uthin_pool::DevId(2)).unwrap();
    let t1 = pool.thin(uthin_pool::DevId(1), None).unwrap();
    let t2 = pool.thin(uthin_pool::DevId(2), None).unwrap();
    t1.write(0, b"committed", true).unwrap();
    t1.write(BLOCK, b"pending", false).unwrap(); // provisions: t1 changed
                                                 // The commit's metadata write fails: abort, needs_check, read-only.
    rig.meta.fail_at(Op::Write, rig.meta.counts().1);
    let e = t1.flush().unwrap_err();
    assert_eq!(pool.mode(), PoolMode::ReadOnly, "{e}");
    let e = t1.flush().unwrap_err();
    assert!(matches!(e, uthin_pool::Error::AbortedWithChanges(_)), "{e}");
    t2.flush().unwrap(); // no changes were thrown away on 2
    let mut b = [0u8; 9];
    t1.read(0, &mut b).unwrap();
    assert_eq!(&b, b"committed");
    t1.read(BLOCK, &mut b).unwrap();
    assert_eq!(b, [0; 9], "the uncommitted mapping is gone");
    assert!(pool
        .status_line()
        .contains(" ro discard_passdown queue_if_no_space needs_check "));
    drop((t1, t2));

    // Metadata that can be neither written nor read: the abort fails.
    let rig = Rig::new();
    let pool = &rig.pool;
    pool.create_thin(uthin_pool::DevId(1)).unwrap();
    let t = pool.thin(uthin_pool::DevId(1), None).unwrap();
    t.write(0, b"x", false).unwrap();
    let (r, w, _) = rig.meta.counts();
    rig.meta.fail_all_from(Op::Write, w);
    rig.meta.fail_all_from(Op::Read, r);
    assert!(pool.commit().is_err());
    assert_eq!(pool.mode(), PoolMode::Fail);
    assert_eq!(pool.status_line(), "Fail");
    assert_eq!(t.status_line(), "Fail");
    let mut b = [0u8; 1];
    assert_eq!(
        t.read(0, &mut b).unwrap_err().kind(),
        uthin_pool::ErrorKind::Failed
    );
    assert_eq!(
        t.write(0, b"y", false).unwrap_err().kind(),
        uthin_pool::ErrorKind::Failed
    );
    assert!(pool.message("create_thin 5").is_err());
}
