//! Fault tests: a workload on a [`FaultyDevice`] over a [`MemDevice`], with a
//! one-shot fault injected at every read, every write and every flush it
//! issues (counted in a fault-free run), and with sticky faults.
//!
//! For each fault:
//! * the call that meets it returns an error (never panics) whose message
//!   names the metadata block, or says flush;
//! * after a failed change, every mutating call fails with `NeedsAbort` until
//!   `abort()`;
//! * `abort()` brings back exactly the last committed state (or, for a fault
//!   at the flush after a superblock write, possibly the commit that wrote it:
//!   the superblock did reach the device) — unless the abort itself meets the
//!   fault: then the metadata is in fail mode and every call but `close`
//!   fails with `Failed`, and the device still holds the committed state;
//! * after the abort the workload carries on (the failed transaction is
//!   redone) and commits, and the final image matches the model and passes
//!   Debian's `thin_check`.
//!
//! The cache is small (16 blocks) so that reads and evictions reach the
//! device all through the workload.

mod common;

use common::*;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use uthin_block_io::testing::{FaultyDevice, MemDevice, Op};
use uthin_block_io::BlockDevice;
use uthin_thin::{DataBlock, DevId, Error, OpenOptions, PoolMetadata, Result, VirtBlock};

const DATA_BLOCK_SIZE: u32 = 128;
const CACHE_BLOCKS: usize = 16;
const META_BYTES: u64 = 2 << 20;
/// The device that stays open through the whole workload.
const OPEN_DEV: u64 = 1;
/// Transactions in the workload.
const NR_TXNS: usize = 7;

type Dev = FaultyDevice<MemDevice>;

fn opts() -> OpenOptions {
    let mut o = OpenOptions::new(DATA_BLOCK_SIZE);
    o.cache_blocks = CACHE_BLOCKS;
    o
}

/// A pool with its model.
struct F {
    dev: Arc<Dev>,
    md: PoolMetadata,
    m: PoolModel,
    committed: PoolModel,
    /// Devices changed in the running transaction.
    changed: HashSet<u64>,
}

/// Why a step failed, and what state it may have left on the device.
struct Failure {
    err: Error,
    /// The step was a change (then the transaction needs an abort).
    mutating: bool,
    /// The state the failing commit was writing, if the step was a commit.
    candidate: Option<PoolModel>,
}

type Step<T> = std::result::Result<T, Box<Failure>>;

fn fail(err: Error, mutating: bool) -> Box<Failure> {
    Box::new(Failure {
        err,
        mutating,
        candidate: None,
    })
}

impl F {
    fn create_thin(&mut self, id: u64) -> Step<()> {
        self.md.create_thin(DevId(id)).map_err(|e| fail(e, true))?;
        self.m.create_thin(id);
        self.changed.insert(id);
        Ok(())
    }

    fn snap(&mut self, id: u64, origin: u64) -> Step<()> {
        self.md
            .create_snap(DevId(id), DevId(origin))
            .map_err(|e| fail(e, true))?;
        self.m.create_snap(id, origin);
        self.changed.extend([id, origin]);
        Ok(())
    }

    fn delete(&mut self, id: u64) -> Step<()> {
        self.md.delete_thin(DevId(id)).map_err(|e| fail(e, true))?;
        self.m.delete(id);
        Ok(())
    }

    fn map(&mut self, dev: u64, vs: impl IntoIterator<Item = u64>) -> Step<()> {
        for v in vs {
            let b = self
                .md
                .alloc_data_block()
                .map_err(|e| fail(e, true))?
                .expect("data space left");
            self.md
                .insert_block(DevId(dev), VirtBlock(v), b)
                .map_err(|e| fail(e, true))?;
            self.m.insert(dev, v, b.0);
            self.changed.insert(dev);
        }
        Ok(())
    }

    fn unmap(&mut self, dev: u64, vs: impl IntoIterator<Item = u64>) -> Step<()> {
        for v in vs {
            let r = self
                .md
                .remove_block(DevId(dev), VirtBlock(v))
                .map_err(|e| fail(e, true))?;
            assert_eq!(r, self.m.remove(dev, v));
            self.changed.insert(dev);
        }
        Ok(())
    }

    fn unmap_range(&mut self, dev: u64, b: u64, e: u64) -> Step<()> {
        let n = self
            .md
            .remove_range(DevId(dev), VirtBlock(b), VirtBlock(e))
            .map_err(|e| fail(e, true))?;
        assert_eq!(n, self.m.remove_range(dev, b, e));
        self.changed.insert(dev);
        Ok(())
    }

    /// Lookups compared with the model (reads only).
    fn lookups(&mut self, dev: u64, vs: impl IntoIterator<Item = u64>) -> Step<()> {
        for v in vs {
            let got = self
                .md
                .find_block(DevId(dev), VirtBlock(v))
                .map_err(|e| fail(e, false))?;
            let want = self.m.devices[&dev].mappings.get(&v).map(|m| m.0);
            assert_eq!(got.map(|l| l.block.0), want, "find_block({dev}, {v})");
        }
        Ok(())
    }

    fn commit(&mut self) -> Step<()> {
        let t = self.m.trans_id;
        self.md
            .set_transaction_id(t, t + 1)
            .map_err(|e| fail(e, true))?;
        self.m.trans_id = t + 1;
        if let Err(err) = self.md.commit() {
            return Err(Box::new(Failure {
                err,
                mutating: true,
                candidate: Some(self.m.clone()),
            }));
        }
        self.committed = self.m.clone();
        self.changed.clear();
        Ok(())
    }

    /// Takes a metadata snapshot (first step of a transaction: its commit
    /// then writes what is already committed).
    fn reserve(&mut self) -> Step<()> {
        assert!(self.changed.is_empty() && self.m == self.committed);
        if let Err(err) = self.md.reserve_metadata_snap() {
            return Err(Box::new(Failure {
                err,
                mutating: true,
                candidate: Some(self.m.clone()),
            }));
        }
        self.m.held = Some(Arc::new(self.committed.clone()));
        Ok(())
    }

    fn release(&mut self) -> Step<()> {
        self.md.release_metadata_snap().map_err(|e| fail(e, true))?;
        self.m.held = None;
        Ok(())
    }

    fn resize_data(&mut self, n: u64) -> Step<()> {
        self.md.resize_data_dev(n).map_err(|e| fail(e, true))?;
        self.m.data_blocks = n;
        Ok(())
    }

    fn grow_meta(&mut self, bytes: u64) -> Step<()> {
        if self.dev.inner().len().unwrap() < bytes {
            self.dev.inner().set_len(bytes);
        }
        let n = self.md.resize_metadata_dev().map_err(|e| fail(e, true))?;
        assert_eq!(n, bytes / 4096);
        self.m.meta_blocks = n;
        Ok(())
    }

    /// Transaction `k` of the workload; ends with a commit.
    fn txn(&mut self, k: usize) -> Step<()> {
        // Strided keys reach many leaves of the 3000-block devices.
        let spread = |from: u64, step: usize| (from..3000).step_by(step);
        match k {
            0 => {
                self.create_thin(3)?;
                self.map(3, 0..120)?;
                self.map(OPEN_DEV, spread(0, 97))?;
                self.lookups(2, spread(5, 61))?;
            }
            1 => {
                self.snap(4, 3)?;
                self.map(4, 50..90)?;
                self.unmap(OPEN_DEV, spread(10, 131))?;
                self.unmap_range(2, 100, 700)?;
                self.map(2, spread(1, 89))?;
                self.lookups(3, 40..80)?;
            }
            2 => {
                self.reserve()?;
                self.map(OPEN_DEV, spread(7, 53))?;
                self.snap(5, 4)?;
            }
            3 => {
                self.delete(2)?;
                self.create_thin(6)?;
                self.map(6, 0..30)?;
                self.release()?;
            }
            4 => {
                let n = self.m.data_blocks + 20_000;
                self.resize_data(n)?;
                self.map(OPEN_DEV, 3000..3040)?;
                self.unmap_range(5, 0, 1000)?;
            }
            5 => {
                self.grow_meta(3 << 20)?;
                self.map(6, 30..60)?;
                self.delete(3)?;
            }
            6 => {
                self.reserve()?;
                self.map(4, 0..30)?;
                self.unmap_range(OPEN_DEV, 1200, 1900)?;
                self.lookups(OPEN_DEV, spread(3, 71))?;
            }
            _ => unreachable!(),
        }
        self.commit()
    }
}

/// The pool the workload starts from: devices 1 (3000 mappings) and 2 (a
/// snapshot of 1, partly remapped), committed, on a fault-free device.
fn base_image() -> (Vec<u8>, PoolModel) {
    let dev = Arc::new(MemDevice::new(META_BYTES));
    let mut md = PoolMetadata::open(dev.clone(), opts()).unwrap();
    let mut m = PoolModel {
        meta_blocks: META_BYTES / 4096,
        ..Default::default()
    };
    md.resize_data_dev(8000).unwrap();
    m.data_blocks = 8000;
    md.create_thin(DevId(1)).unwrap();
    m.create_thin(1);
    for v in 0..3000 {
        let b = md.alloc_data_block().unwrap().unwrap();
        md.insert_block(DevId(1), VirtBlock(v), b).unwrap();
        m.insert(1, v, b.0);
    }
    md.create_snap(DevId(2), DevId(1)).unwrap();
    m.create_snap(2, 1);
    for v in 1500..2500 {
        let b = md.alloc_data_block().unwrap().unwrap();
        md.insert_block(DevId(2), VirtBlock(v), b).unwrap();
        m.insert(2, v, b.0);
    }
    md.commit().unwrap();
    md.close().unwrap();
    (dev.snapshot(), m)
}

/// The image behind the faulty device, checked by Debian's tools.
fn check_device_image(img: &[u8], model: &PoolModel, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    write_image(&path, img);
    assert_thin_check(&path);
    if let Some(d) = model.diff_dump(&thin_dump(&path)) {
        panic!("{what}: thin_dump: {d}");
    }
}

/// Opens `img` fault-free and returns its state.
fn state_of(img: Vec<u8>) -> PoolModel {
    let md = PoolMetadata::open(Arc::new(MemDevice::from_bytes(img)), opts()).unwrap();
    PoolModel::read(&md).unwrap()
}

/// Every mutating call must fail with NeedsAbort.
fn assert_needs_abort(md: &mut PoolMetadata, m: &PoolModel, what: &str) {
    assert!(
        md.needs_abort(),
        "{what}: a failed change must need an abort"
    );
    assert!(!md.is_failed(), "{what}");
    let dev = *m.devices.keys().next().expect("a device");
    let tid = md.transaction_id().unwrap();
    let mut results: Vec<(&str, Result<()>)> = vec![
        ("create_thin", md.create_thin(DevId(999))),
        ("create_snap", md.create_snap(DevId(999), DevId(dev))),
        ("delete_thin", md.delete_thin(DevId(dev))),
        (
            "insert_block",
            md.insert_block(DevId(dev), VirtBlock(5), DataBlock(0)),
        ),
        (
            "remove_block",
            md.remove_block(DevId(dev), VirtBlock(5)).map(|_| ()),
        ),
        (
            "remove_range",
            md.remove_range(DevId(dev), VirtBlock(0), VirtBlock(10))
                .map(|_| ()),
        ),
        ("alloc_data_block", md.alloc_data_block().map(|_| ())),
        ("set_transaction_id", md.set_transaction_id(tid, tid + 7)),
        ("resize_data_dev", md.resize_data_dev(1 << 20)),
        ("resize_metadata_dev", md.resize_metadata_dev().map(|_| ())),
        ("commit", md.commit()),
    ];
    if md.metadata_snap().unwrap().is_some() {
        results.push(("release_metadata_snap", md.release_metadata_snap()));
    } else {
        results.push((
            "reserve_metadata_snap",
            md.reserve_metadata_snap().map(|_| ()),
        ));
    }
    for (name, r) in results {
        assert!(
            matches!(r, Err(Error::NeedsAbort)),
            "{what}: {name} after a failed change: {r:?}"
        );
    }
}

/// Every call but close must fail with Failed.
fn assert_fail_mode(md: &mut PoolMetadata, what: &str) {
    assert!(
        md.is_failed(),
        "{what}: a failed abort must enter fail mode"
    );
    let d = DevId(OPEN_DEV);
    let results: Vec<(&str, Result<()>)> = vec![
        ("device_details", md.device_details(d).map(|_| ())),
        ("device_exists", md.device_exists(d).map(|_| ())),
        ("device_ids", md.device_ids().map(|_| ())),
        ("find_block", md.find_block(d, VirtBlock(0)).map(|_| ())),
        ("mapped_count", md.mapped_count(d).map(|_| ())),
        ("transaction_id", md.transaction_id().map(|_| ())),
        ("time", md.time().map(|_| ())),
        ("data_dev_size", md.data_dev_size().map(|_| ())),
        ("metadata_dev_size", md.metadata_dev_size().map(|_| ())),
        ("free_data_blocks", md.free_data_blocks().map(|_| ())),
        ("metadata_snap", md.metadata_snap().map(|_| ())),
        ("needs_check", md.needs_check().map(|_| ())),
        ("create_thin", md.create_thin(DevId(999))),
        (
            "insert_block",
            md.insert_block(d, VirtBlock(5), DataBlock(0)),
        ),
        ("alloc_data_block", md.alloc_data_block().map(|_| ())),
        ("commit", md.commit()),
        ("set_needs_check", md.set_needs_check()),
        ("resize_data_dev", md.resize_data_dev(1 << 20)),
        (
            "reserve_metadata_snap",
            md.reserve_metadata_snap().map(|_| ()),
        ),
        ("open_device", md.open_device(d)),
        ("abort", md.abort()),
    ];
    for (name, r) in results {
        assert!(
            matches!(r, Err(Error::Failed)),
            "{what}: {name} in fail mode: {r:?}"
        );
    }
}

/// What the fault-free run tells about the workload.
struct Plan {
    base: Vec<u8>,
    base_model: PoolModel,
    /// (reads, writes, flushes) of the whole workload.
    counts: (u64, u64, u64),
    /// Flush indices that follow a superblock write.
    sb_flushes: BTreeSet<u64>,
}

fn plan() -> Plan {
    let (base, base_model) = base_image();
    let dev = Arc::new(FaultyDevice::new(MemDevice::from_bytes(base.clone())));
    let mut md = PoolMetadata::open(dev.clone(), opts()).unwrap();
    md.open_device(DevId(OPEN_DEV)).unwrap();
    let mut f = F {
        dev: dev.clone(),
        md,
        m: base_model.clone(),
        committed: base_model.clone(),
        changed: HashSet::new(),
    };
    let mut sb_flushes = BTreeSet::new();
    for k in 0..NR_TXNS {
        let flushes = dev.counts().2;
        if f.txn(k).is_err() {
            panic!("fault-free run failed in transaction {k}");
        }
        // Each commit (the one inside reserve included) flushes twice: the
        // second follows the superblock write.
        let now = dev.counts().2;
        assert!(now > flushes && (now - flushes).is_multiple_of(2));
        for i in (flushes..now).skip(1).step_by(2) {
            sb_flushes.insert(i);
        }
    }
    let counts = dev.counts();
    f.m.assert_matches(&PoolModel::read(&f.md).unwrap(), "fault-free run");
    Plan {
        base,
        base_model,
        counts,
        sb_flushes,
    }
}

/// How a faulty run went.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    aborts: u32,
    failed_aborts: u32,
    open_failures: u32,
    new_state_after_abort: u32,
    /// Reads the (successful) abort made.
    abort_reads: u64,
    /// Failures outside commits (reads, and writes of evicted dirty blocks).
    mid_transaction: u32,
}

/// Opens the pool and device 1, retrying once after an injected failure.
fn open_pool(dev: &Arc<Dev>, out: &mut Outcome, what: &str) -> PoolMetadata {
    let mut md = match PoolMetadata::open(dev.clone(), opts()) {
        Ok(md) => md,
        Err(e) => {
            check_message(&e, what);
            out.open_failures += 1;
            PoolMetadata::open(dev.clone(), opts())
                .unwrap_or_else(|e| panic!("{what}: reopen after a failed open: {e}"))
        }
    };
    if let Err(e) = md.open_device(DevId(OPEN_DEV)) {
        check_message(&e, what);
        out.open_failures += 1;
        md.open_device(DevId(OPEN_DEV)).unwrap();
    }
    md
}

/// Checks the state after a failure and aborts.  Returns whether the abort
/// worked (else the pool is in fail mode, checked, and the device was found
/// to hold a committed state).
fn fail_and_abort(
    f: &mut F,
    failure: Failure,
    may_be_new: bool,
    out: &mut Outcome,
    what: &str,
    thin_check: bool,
) -> std::result::Result<bool, ()> {
    let wk = format!("{what}, error \"{}\"", failure.err);
    check_message(&failure.err, &wk);
    if failure.mutating {
        assert_needs_abort(&mut f.md, &f.m, &wk);
    }
    // A failed flush after a superblock write: that commit may be what the
    // device holds (only a final commit's differs from the last one).
    let candidate = failure
        .candidate
        .filter(|c| may_be_new && *c != f.committed);
    let reads = f.dev.counts().0;
    match f.md.abort() {
        Ok(()) => {
            out.aborts += 1;
            out.abort_reads = f.dev.counts().0 - reads;
            assert!(!f.md.needs_abort() && !f.md.is_failed(), "{wk}");
            let actual = PoolModel::read(&f.md).unwrap();
            let mut new = false;
            if let Some(c) = candidate.filter(|c| c.diff(&actual).is_none()) {
                // The superblock reached the device before the flush failed.
                out.new_state_after_abort += 1;
                f.committed = c;
                new = true;
            } else {
                f.committed
                    .assert_matches(&actual, &format!("{wk}: state after abort"));
            }
            if f.changed.contains(&OPEN_DEV) {
                assert!(f.md.aborted_with_changes(DevId(OPEN_DEV)), "{wk}");
            }
            f.m = f.committed.clone();
            f.changed.clear();
            Ok(new)
        }
        Err(e) => {
            check_message(&e, &format!("{wk}: abort"));
            out.failed_aborts += 1;
            assert_fail_mode(&mut f.md, &wk);
            f.md.close_device(DevId(OPEN_DEV));
            // The device still holds a committed state.
            let actual = state_of(f.dev.inner().snapshot());
            let model = match candidate.filter(|c| c.diff(&actual).is_none()) {
                Some(c) => c,
                None => f.committed.clone(),
            };
            model.assert_matches(&actual, &format!("{wk}: device after a failed abort"));
            if thin_check {
                check_device_image(&f.dev.inner().snapshot(), &model, &wk);
            }
            Err(())
        }
    }
}

/// Runs the workload with a one-shot fault at operation `i` of kind `op`;
/// with `abort_read`, the abort that follows meets a read fault too (at its
/// read of that index).
fn faulty_run(p: &Plan, op: Op, i: u64, abort_read: Option<u64>, thin_check: bool) -> Outcome {
    let what = match abort_read {
        None => format!("{op:?} fault #{i}"),
        Some(j) => format!("{op:?} fault #{i}, then a fault at the abort's read #{j}"),
    };
    let dev = Arc::new(FaultyDevice::new(MemDevice::from_bytes(p.base.clone())));
    dev.fail_at(op, i);
    let mut out = Outcome::default();
    let md = open_pool(&dev, &mut out, &what);
    let mut f = F {
        dev: dev.clone(),
        md,
        m: p.base_model.clone(),
        committed: p.base_model.clone(),
        changed: HashSet::new(),
    };
    let mut k = 0;
    while k < NR_TXNS {
        let Err(failure) = f.txn(k) else {
            k += 1;
            continue;
        };
        assert_eq!(
            out.aborts + out.failed_aborts + out.open_failures,
            0,
            "{what}: a second failure: {}",
            failure.err
        );
        let commit_failed = failure.candidate.is_some();
        if !commit_failed {
            out.mid_transaction += 1;
        }
        if let Some(j) = abort_read {
            dev.fail_at(Op::Read, dev.counts().0 + j);
        }
        let may_be_new = op == Op::Flush && p.sb_flushes.contains(&i);
        let r = fail_and_abort(
            &mut f,
            *failure,
            may_be_new,
            &mut out,
            &format!("{what}, transaction {k}"),
            thin_check,
        );
        dev.clear_faults();
        match r {
            // The transaction is durable after all: go on with the next.
            Ok(true) => {
                assert!(commit_failed);
                k += 1;
            }
            // Redo the transaction.
            Ok(false) => {}
            Err(()) => {
                f.md.close().expect("close in fail mode");
                return out;
            }
        }
    }
    f.m.assert_matches(&PoolModel::read(&f.md).unwrap(), &format!("{what}: end"));
    f.md.close_device(DevId(OPEN_DEV));
    f.md.close().unwrap();
    let img = dev.inner().snapshot();
    f.m.assert_matches(&state_of(img.clone()), &format!("{what}: reopened"));
    if thin_check {
        check_device_image(&img, &f.m, &what);
    }
    out
}

/// Runs the workload with every operation of kind `op` failing from the
/// `i`-th on.  The first failure is aborted (which works unless reads fail),
/// the transaction is redone (and fails again if it needs `op`), and in the
/// end the device behind must hold the last committed state.
fn sticky_run(p: &Plan, op: Op, i: u64) -> Outcome {
    let what = format!("sticky {op:?} faults from #{i}");
    let dev = Arc::new(FaultyDevice::new(MemDevice::from_bytes(p.base.clone())));
    dev.fail_all_from(op, i);
    let mut out = Outcome::default();
    let md = match PoolMetadata::open(dev.clone(), opts()) {
        Ok(md) => md,
        Err(e) => {
            check_message(&e, &what);
            assert_eq!(op, Op::Read, "{what}: open failed: {e}");
            return out;
        }
    };
    let mut f = F {
        dev: dev.clone(),
        md,
        m: p.base_model.clone(),
        committed: p.base_model.clone(),
        changed: HashSet::new(),
    };
    if let Err(e) = f.md.open_device(DevId(OPEN_DEV)) {
        check_message(&e, &what);
        assert_eq!(op, Op::Read, "{what}: open_device failed: {e}");
        return out;
    }
    let mut k = 0;
    let mut failures = 0;
    while k < NR_TXNS && failures < 2 {
        let Err(failure) = f.txn(k) else {
            k += 1;
            continue;
        };
        failures += 1;
        // A failed flush after a superblock write, on the first failure only:
        // later flushes all fail, so no later superblock is flushed... but
        // the device behind is a MemDevice: whatever was written is there.
        let may_be_new = op == Op::Flush && failure.candidate.is_some();
        let wk = format!("{what}, transaction {k} (failure {failures})");
        match fail_and_abort(&mut f, *failure, may_be_new, &mut out, &wk, true) {
            Ok(true) => k += 1,
            Ok(false) => {}
            Err(()) => {
                assert_eq!(op, Op::Read, "{wk}: only reads can make abort fail");
                f.md.close().expect("close in fail mode");
                return out;
            }
        }
    }
    assert!(failures > 0 || op == Op::Read, "{what}: no failure");
    // Whatever happened, the device behind holds the last committed state.
    let img = dev.inner().snapshot();
    f.committed
        .assert_matches(&state_of(img.clone()), &format!("{what}: device behind"));
    check_device_image(&img, &f.committed, &what);
    out
}

/// The error names the block, or says flush, and carries the injected cause.
fn check_message(e: &Error, what: &str) {
    let msg = e.to_string();
    let full = format!("{msg}: {:?}", std::error::Error::source(e));
    assert!(
        msg.contains("metadata block") || msg.contains("flush"),
        "{what}: the error does not name the block or say flush: {msg}"
    );
    assert!(
        full.contains("injected") || msg.contains("injected"),
        "{what}: the error hides its cause: {full}"
    );
}

fn sweep(op: Op) {
    let t0 = std::time::Instant::now();
    let p = plan();
    let n = match op {
        Op::Read => p.counts.0,
        Op::Write => p.counts.1,
        Op::Flush => p.counts.2,
        Op::Discard => unreachable!("the metadata gets no discards"),
    };
    let mut total = Outcome::default();
    for i in 0..n {
        // thin_check every image for writes and flushes, every 5th for reads.
        let check = op != Op::Read || i % 5 == 0;
        let o = faulty_run(&p, op, i, None, check);
        assert_eq!(
            o.aborts + o.failed_aborts + o.open_failures,
            1,
            "{op:?} fault #{i} must surface exactly once: {o:?}"
        );
        total.aborts += o.aborts;
        total.open_failures += o.open_failures;
        total.new_state_after_abort += o.new_state_after_abort;
        total.mid_transaction += o.mid_transaction;
        // For some, the abort meets a read fault too, at each of its reads.
        if o.aborts == 1 && i % 9 == 0 {
            for j in 0..o.abort_reads {
                let o2 = faulty_run(&p, op, i, Some(j), j % 4 == 0);
                assert_eq!(o2.failed_aborts, 1, "{op:?} #{i}, abort read #{j}: {o2:?}");
                total.failed_aborts += 1;
            }
        }
    }
    eprintln!(
        "{op:?}: {n} faults (workload counts {:?}): {total:?}, {:.1?}",
        p.counts,
        t0.elapsed()
    );
}

#[test]
fn one_shot_read_faults() {
    sweep(Op::Read);
}

#[test]
fn one_shot_write_faults() {
    sweep(Op::Write);
}

#[test]
fn one_shot_flush_faults() {
    sweep(Op::Flush);
}

/// Sticky faults: the device keeps failing.  With writes or flushes failing,
/// abort (which only reads) still works and the committed state is intact;
/// with reads failing, abort fails into fail mode and the device behind still
/// holds the committed state.
#[test]
fn sticky_faults() {
    let t0 = std::time::Instant::now();
    let p = plan();
    for (op, n, step) in [
        (Op::Write, p.counts.1, 7),
        (Op::Flush, p.counts.2, 1),
        (Op::Read, p.counts.0, 11),
    ] {
        let mut total = Outcome::default();
        for i in (0..n).step_by(step) {
            let o = sticky_run(&p, op, i);
            total.aborts += o.aborts;
            total.failed_aborts += o.failed_aborts;
            total.new_state_after_abort += o.new_state_after_abort;
        }
        if op == Op::Read {
            assert_eq!(total.aborts, 0, "abort cannot work without reads");
        } else {
            assert_eq!(total.failed_aborts, 0);
        }
        eprintln!("sticky {op:?}: {total:?}");
    }
    eprintln!("sticky: {:.1?}", t0.elapsed());
}

// ---------------------------------------------------------------------------
// Regression tests for bugs these sweeps found.

/// A pool with device 1 (some mappings) committed, reopened with a cold
/// cache on a faulty device, device 1 open.
fn cold_pool() -> (Arc<Dev>, PoolMetadata) {
    let (base, _) = base_image();
    let dev = Arc::new(FaultyDevice::new(MemDevice::from_bytes(base)));
    let mut md = PoolMetadata::open(dev.clone(), opts()).unwrap();
    md.open_device(DevId(OPEN_DEV)).unwrap();
    (dev, md)
}

/// Broke: a read error in the checks of a mutating call (here the device
/// lookup of insert_block, which reads the details tree) was returned but
/// left the transaction usable, so "a failed change needs an abort" did not
/// hold.  Now such errors poison the transaction too.
#[test]
fn regression_failed_argument_read_poisons() {
    let (base, _) = base_image();
    let dev = Arc::new(FaultyDevice::new(MemDevice::from_bytes(base)));
    let mut md = PoolMetadata::open(dev.clone(), opts()).unwrap();
    // The next read is the details tree's root, read to check that device 2
    // exists.
    dev.fail_read_at(dev.counts().0);
    let e = md
        .insert_block(DevId(2), VirtBlock(7), DataBlock(7000))
        .unwrap_err();
    assert!(e.to_string().contains("injected read fault"), "{e}");
    assert!(md.needs_abort());
    assert!(matches!(md.create_thin(DevId(9)), Err(Error::NeedsAbort)));
    md.abort().unwrap();
    md.create_thin(DevId(9)).unwrap();
}

/// Broke: in fail mode, device_details (and open_device) of a device in the
/// open-device table still answered from the table instead of failing.
#[test]
fn regression_fail_mode_hides_device_table() {
    let (dev, mut md) = cold_pool();
    let b = md.alloc_data_block().unwrap().unwrap();
    md.insert_block(DevId(OPEN_DEV), VirtBlock(5000), b)
        .unwrap();
    dev.fail_all_from(Op::Read, dev.counts().0);
    assert!(md.abort().is_err());
    assert!(md.is_failed());
    assert!(matches!(
        md.device_details(DevId(OPEN_DEV)),
        Err(Error::Failed)
    ));
    assert!(matches!(
        md.open_device(DevId(OPEN_DEV)),
        Err(Error::Failed)
    ));
}

/// Broke: when abort re-read the superblock and space maps but then failed
/// to re-read an open device's details, it returned the error without
/// entering fail mode, leaving the device table half refreshed.
#[test]
fn regression_abort_failing_on_open_device_details_enters_fail_mode() {
    // Count the abort's reads; its last is the open device's details.
    let (dev, mut md) = cold_pool();
    let b = md.alloc_data_block().unwrap().unwrap();
    md.insert_block(DevId(OPEN_DEV), VirtBlock(5000), b)
        .unwrap();
    let before = dev.counts().0;
    md.abort().unwrap();
    let abort_reads = dev.counts().0 - before;

    let (dev, mut md) = cold_pool();
    let b = md.alloc_data_block().unwrap().unwrap();
    md.insert_block(DevId(OPEN_DEV), VirtBlock(5000), b)
        .unwrap();
    dev.fail_read_at(dev.counts().0 + abort_reads - 1);
    let e = md.abort().unwrap_err();
    assert!(e.to_string().contains("injected read fault"), "{e}");
    assert!(md.is_failed(), "a failed abort must enter fail mode");
    assert!(matches!(md.commit(), Err(Error::Failed)));
}

/// A query (not a change) that fails because evicting a dirty block to make
/// room for its read failed: the transaction may go on (the query changed
/// nothing) only if no dirty block was lost; the commit must then write
/// exactly the model.
///
/// Broke: the block manager put the evicted dirty block back with a plain
/// push into the full cache, which evicted (and silently dropped) another
/// block, perhaps dirty; the query's error did not poison the transaction, so
/// the next commit wrote a tree pointing at a node that was never written
/// (device 1 came back with no mappings at all).
#[test]
fn regression_failed_query_eviction_loses_no_dirty_block() {
    for nth in 0.. {
        let (base, mut m) = base_image();
        let dev = Arc::new(FaultyDevice::new(MemDevice::from_bytes(base)));
        let mut md = PoolMetadata::open(dev.clone(), opts()).unwrap();
        // Dirty many leaves of device 1 (far more than the cache holds).
        for v in (0..3000).step_by(37) {
            let b = md.alloc_data_block().unwrap().unwrap();
            md.insert_block(DevId(1), VirtBlock(v), b).unwrap();
            m.insert(1, v, b.0);
        }
        // Queries over device 2 read clean blocks and evict dirty ones.
        dev.fail_write_at(dev.counts().1 + nth);
        let mut failed = false;
        for v in 0..3000 {
            match md.find_block(DevId(2), VirtBlock(v)) {
                Ok(got) => assert_eq!(
                    got.map(|l| l.block.0),
                    m.devices[&2].mappings.get(&v).map(|x| x.0)
                ),
                Err(e) => {
                    check_message(&e, "query");
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            // The queries evict fewer dirty blocks than that.
            assert!(nth > 3, "the queries must evict dirty blocks");
            eprintln!("{nth} eviction write faults under queries");
            break;
        }
        if md.needs_abort() {
            md.abort().unwrap();
            continue;
        }
        let t = md.transaction_id().unwrap();
        md.set_transaction_id(t, t + 1).unwrap();
        m.trans_id = t + 1;
        md.commit().unwrap();
        m.assert_matches(&PoolModel::read(&md).unwrap(), "after commit");
        md.close().unwrap();
        let img = dev.inner().snapshot();
        m.assert_matches(
            &state_of(img.clone()),
            &format!("eviction fault {nth}: reopened"),
        );
        check_device_image(&img, &m, "after a failed query");
    }
}

/// Faults while formatting: open fails cleanly, and opening again (the fault
/// was one-shot) gives an empty, valid pool, formatted anew or as written.
#[test]
fn format_faults() {
    let dry = Arc::new(FaultyDevice::new(MemDevice::new(META_BYTES)));
    PoolMetadata::open(dry.clone(), opts()).unwrap();
    let (reads, writes, flushes) = dry.counts();
    let empty = PoolModel {
        meta_blocks: META_BYTES / 4096,
        ..Default::default()
    };
    for (op, n) in [(Op::Read, reads), (Op::Write, writes), (Op::Flush, flushes)] {
        for i in 0..n {
            let what = format!("format, {op:?} fault #{i}");
            let dev = Arc::new(FaultyDevice::new(MemDevice::new(META_BYTES)));
            dev.fail_at(op, i);
            let e = match PoolMetadata::open(dev.clone(), opts()) {
                Ok(_) => panic!("{what}: open succeeded"),
                Err(e) => e,
            };
            check_message(&e, &what);
            let md = PoolMetadata::open(dev.clone(), opts())
                .unwrap_or_else(|e| panic!("{what}: second open: {e}"));
            empty.assert_matches(&PoolModel::read(&md).unwrap(), &what);
            md.close().unwrap();
            check_device_image(&dev.inner().snapshot(), &empty, &what);
        }
    }
}
