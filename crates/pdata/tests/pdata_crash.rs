//! Crash and I/O-fault tests of the pdata commit protocol.
//!
//! A scripted workload (B-tree inserts, runs, removes, range removes,
//! snapshots, deep deletes, commits; deterministic from a seed) runs on a
//! test store.
//!
//! * Crashes: on a `CrashDevice` that dies at flush n, for every flush of
//!   the workload.  Without a superblock at this layer the roots of a commit
//!   are durable once the flush after its dirty blocks returns, so the
//!   durable image — and torn images where any subset of the unflushed
//!   writes survives, one of them cut at a sector boundary — must reopen
//!   from the roots of the last completed commit and hold exactly its trees,
//!   with valid nodes and exact reference counts.  The recovered store must
//!   take further commits.
//! * Faults: on a `FaultyDevice`, the n-th read, write or flush of one
//!   transaction (ops and commit) fails, once or from then on.  The failing
//!   call must return an error, not panic; abort (after the fault is
//!   cleared) must give back the last committed state, and redoing the
//!   transaction must then succeed.

mod common;

use common::{check_tree, Committed, Config, Store, BIG_CACHE, SMALL_CACHE};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use uthin_block_io::testing::{CrashDevice, FaultyDevice, MemDevice, Op as IoOp};
use uthin_block_io::SharedDevice;
use uthin_pdata::btree::{self, NoRefs};
use uthin_pdata::{MetaBlock, Result};

type Model = BTreeMap<u64, u64>;
type Models = Vec<Option<Model>>;

/// Small enough that the allocator wraps around and works among blocks freed
/// in the running transaction, so the free-in-both rule (FORMAT.md §3.8) is
/// what keeps the committed trees intact.
const DEV_BLOCKS: u64 = 192;

#[derive(Clone, Debug)]
enum Step {
    Insert { t: usize, key: u64, val: u64 },
    Remove { t: usize, key: u64 },
    RemoveRange { t: usize, begin: u64, end: u64 },
    Snapshot { from: usize, to: usize },
    Delete { t: usize },
    Commit,
}

/// SplitMix64, to derive the workload from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49eb_133d_111b);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `txns` transactions, each ending with a commit.
fn script(seed: u64, txns: usize) -> Vec<Step> {
    let mut r = Rng(seed);
    let mut v = Vec::new();
    for _ in 0..txns {
        for _ in 0..40 + r.below(40) {
            let t = r.below(3) as usize;
            match r.below(200) {
                0..=99 => v.push(Step::Insert {
                    t,
                    key: r.below(20_000),
                    val: r.next(),
                }),
                100..=129 => {
                    let start = r.below(20_000);
                    for k in start..start + 50 + r.below(600) {
                        v.push(Step::Insert { t, key: k, val: k });
                    }
                }
                130..=169 => v.push(Step::Remove {
                    t,
                    key: r.below(20_000),
                }),
                170..=193 => {
                    let begin = r.below(20_000);
                    let end = begin + r.below(400);
                    v.push(Step::RemoveRange { t, begin, end });
                }
                194..=198 => v.push(Step::Snapshot {
                    from: t,
                    to: r.below(3) as usize,
                }),
                _ => v.push(Step::Delete { t }),
            }
        }
        v.push(Step::Commit);
    }
    v
}

/// Applies a step to the store (errors propagate) and, on success, to the
/// models.
fn exec(s: &mut Store, models: &mut Models, step: &Step) -> Result<()> {
    fn root_of(s: &mut Store, models: &mut Models, t: usize) -> Result<MetaBlock> {
        if s.roots[t].is_none() {
            s.roots[t] = Some(btree::empty_tree::<u64>(&mut s.tm)?);
            models[t] = Some(Model::new());
        }
        Ok(s.roots[t].unwrap())
    }
    match *step {
        Step::Insert { t, key, val } => {
            let root = root_of(s, models, t)?;
            s.roots[t] = Some(btree::insert(&mut s.tm, &mut NoRefs, root, key, val)?.0);
            models[t].as_mut().unwrap().insert(key, val);
        }
        Step::Remove { t, key } => {
            let root = root_of(s, models, t)?;
            s.roots[t] = Some(btree::remove::<u64, _>(&mut s.tm, &mut NoRefs, root, key)?.0);
            models[t].as_mut().unwrap().remove(&key);
        }
        Step::RemoveRange { t, begin, end } => {
            let root = root_of(s, models, t)?;
            let r = btree::remove_range::<u64, _>(&mut s.tm, &mut NoRefs, root, begin, end)?;
            s.roots[t] = Some(r.0);
            models[t]
                .as_mut()
                .unwrap()
                .retain(|k, _| *k < begin || *k >= end);
        }
        Step::Snapshot { from, to } => {
            if from != to && s.roots[from].is_some() {
                exec(s, models, &Step::Delete { t: to })?;
                let r = s.roots[from].unwrap();
                s.tm.inc(r)?;
                s.roots[to] = Some(r);
                models[to] = models[from].clone();
            }
        }
        Step::Delete { t } => {
            if let Some(r) = s.roots[t] {
                btree::delete_tree::<u64, _>(&mut s.tm, &mut NoRefs, r)?;
                s.roots[t] = None;
                models[t] = None;
            }
        }
        Step::Commit => s.commit()?,
    }
    Ok(())
}

/// The trees of `s` equal `models`; nodes valid; counts exact.
fn check_store(s: &Store, models: &Models) {
    assert_eq!(s.roots.len(), models.len());
    for (t, (root, m)) in s.roots.iter().zip(models).enumerate() {
        assert_eq!(root.is_some(), m.is_some(), "slot {t}");
        let (Some(root), Some(m)) = (root, m) else {
            continue;
        };
        let mut got = Model::new();
        btree::walk::<u64>(&s.tm, *root, 0, u64::MAX, &mut |k, v| {
            got.insert(k, v);
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        assert!(got == *m, "slot {t}: tree differs from the model");
        assert_eq!(check_tree::<u64>(&s.tm, *root).entries, m.len());
    }
    s.check_counts(None);
}

fn config(cache: usize) -> Config {
    let mut c = Config::new(DEV_BLOCKS, cache);
    c.slots = 3;
    c
}

/// Like [`config`], but the free blocks straddle the boundary between the
/// first and second metadata bitmaps (blocks below 16300 are pinned), so
/// commits move bitmaps that other allocations of the commit dirty (the
/// fix-point of the metadata space-map commit).
fn straddling(cache: usize) -> Config {
    let mut c = config(cache);
    c.meta_blocks = 16_320 + 180;
    c.dev_blocks = c.meta_blocks;
    c.pinned = 16_300;
    c
}

/// Runs the script; returns the committed state and models after each
/// completed commit (index 0 = format), stopping at the first error.
fn run_until_error(
    dev: SharedDevice,
    cfg: Config,
    steps: &[Step],
) -> (Vec<(Committed, Models)>, Option<Store>) {
    let Ok(mut s) = Store::format(dev, cfg) else {
        return (Vec::new(), None);
    };
    let mut models: Models = vec![None; cfg.slots];
    let mut done = vec![(s.committed.clone(), models.clone())];
    for step in steps {
        if exec(&mut s, &mut models, step).is_err() {
            return (done, Some(s));
        }
        if matches!(step, Step::Commit) {
            done.push((s.committed.clone(), models.clone()));
        }
    }
    (done, Some(s))
}

/// Reopens `img` from `committed`, checks it against `models`, and checks
/// the recovered store takes another transaction.
fn check_image(img: Vec<u8>, cfg: Config, committed: &Committed, models: &Models, what: &str) {
    let dev: SharedDevice = Arc::new(MemDevice::from_bytes(img));
    let mut s = Store::open(dev, cfg, committed.clone())
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    check_store(&s, models);
    let mut models = models.clone();
    let more = [
        Step::Insert {
            t: 0,
            key: 3,
            val: 3,
        },
        Step::Remove { t: 1, key: 100 },
        Step::Snapshot { from: 2, to: 1 },
        Step::Insert {
            t: 2,
            key: 1 << 40,
            val: 4,
        },
        Step::Commit,
    ];
    for step in &more {
        exec(&mut s, &mut models, step).unwrap_or_else(|e| panic!("{what}: continue: {e}"));
    }
    check_store(&s, &models);
    s.abort().unwrap();
    check_store(&s, &models);
}

fn crash_at_every_flush(seed: u64, cfg: Config) {
    let steps = script(seed, 8);
    let len = cfg.dev_blocks * 4096;
    let reference = Arc::new(CrashDevice::new(len));
    let (all, _) = run_until_error(reference.clone(), cfg, &steps);
    assert_eq!(
        all.len(),
        9,
        "the workload must run to the end (out of space?)"
    );
    let total = reference.flushes();
    assert_eq!(total, all.len() as u64, "one flush per commit");
    for n in 0..=total {
        let dev = Arc::new(CrashDevice::new(len));
        dev.crash_at_flush(n);
        let (done, _) = run_until_error(dev.clone(), cfg, &steps);
        assert_eq!(
            done.len() as u64,
            n.min(total),
            "commits completed before flush {n}"
        );
        let Some((committed, models)) = done.last() else {
            assert!(dev.durable_image().iter().all(|&b| b == 0));
            continue;
        };
        let what = format!("seed {seed:#x} {cfg:?} crash at flush {n}");
        check_image(dev.durable_image(), cfg, committed, models, &what);
        for torn in 0..3 {
            let img = dev.durable_image_torn(seed ^ (n << 8) ^ torn);
            check_image(img, cfg, committed, models, &format!("{what} torn {torn}"));
        }
    }
}

#[test]
fn crash_at_every_flush_big_cache() {
    crash_at_every_flush(1, config(BIG_CACHE));
}

#[test]
fn crash_at_every_flush_small_cache() {
    crash_at_every_flush(2, config(SMALL_CACHE));
    crash_at_every_flush(3, config(SMALL_CACHE));
}

#[test]
fn crash_at_every_flush_two_bitmaps() {
    crash_at_every_flush(4, straddling(SMALL_CACHE));
}

type Faulty = Arc<FaultyDevice<Arc<MemDevice>>>;

/// Formats a store on a faulty device (the checks of the store read the
/// device behind it), runs the base transactions, reopens (cold cache) and
/// returns the faulty handle, the store and the models.
fn base(cfg: Config, steps: &[Step]) -> (Faulty, Store, Models) {
    let mem = Arc::new(MemDevice::new(cfg.dev_blocks * 4096));
    let fd = Arc::new(FaultyDevice::new(mem.clone()));
    let mut s = Store::format(fd.clone(), cfg).unwrap();
    s.set_probe(mem);
    let mut models: Models = vec![None; cfg.slots];
    for step in steps {
        exec(&mut s, &mut models, step).unwrap();
    }
    s.abort().unwrap();
    (fd, s, models)
}

/// Runs the transaction `steps.1` after `steps.0` with the `n`-th operation
/// of kind `op` (of `count` in a fault-free run) failing, then checks the
/// failure surfaced, abort restores the last commit, and a redo succeeds.
fn faulty_txn(op: IoOp, n: u64, sticky: bool, cfg: Config, steps: (&[Step], &[Step]), count: u64) {
    let (base_steps, txn) = steps;
    let (fd, mut s, before) = base(cfg, base_steps);
    fd.reset_counts();
    if sticky {
        fd.fail_all_from(op, n);
    } else {
        fd.fail_at(op, n);
    }
    let mut models = before.clone();
    let failed = txn.iter().any(|st| exec(&mut s, &mut models, st).is_err());
    fd.clear_faults();
    let what = format!("{op:?} #{n} sticky {sticky} {cfg:?}");
    assert_eq!(failed, n < count, "{what}: {count} operations of the kind");
    if !failed {
        check_store(&s, &models);
        return;
    }
    if op == IoOp::Read {
        // The reopen itself may fail too, and must leave the store usable.
        fd.fail_at(IoOp::Read, fd.counts().0);
        assert!(s.abort().is_err(), "{what}: abort with a read fault");
        fd.clear_faults();
    }
    s.abort()
        .unwrap_or_else(|e| panic!("{what}: abort failed: {e}"));
    check_store(&s, &before);
    let mut models = before.clone();
    for st in txn {
        exec(&mut s, &mut models, st).unwrap_or_else(|e| panic!("{what}: redo: {e}"));
    }
    check_store(&s, &models);
    s.abort().unwrap();
    check_store(&s, &models);
}

/// Fails each of up to `points` evenly spread operations of each kind (and
/// always the first and the last) of one transaction.
fn fault_every_op(cfg: Config, points: u64) {
    let steps = script(7, 4);
    let commits: Vec<usize> = (steps.iter().enumerate())
        .filter(|(_, s)| matches!(s, Step::Commit))
        .map(|(i, _)| i)
        .collect();
    let (base_steps, txn) = steps.split_at(commits[2] + 1);
    // Count the operations of the faulty transaction without faults.
    let (fd, mut s, mut models) = base(cfg, base_steps);
    fd.reset_counts();
    for st in txn {
        exec(&mut s, &mut models, st).unwrap();
    }
    let (reads, writes, flushes) = fd.counts();
    assert_eq!(flushes, 1);
    assert!(writes > 0);
    if cfg.cache_blocks == SMALL_CACHE {
        assert!(reads > 0, "a cold small cache reads");
    }
    for (op, count) in [
        (IoOp::Read, reads),
        (IoOp::Write, writes),
        (IoOp::Flush, flushes),
    ] {
        let step = (count / points).max(1);
        let points = (0..count)
            .step_by(step as usize)
            .chain([count.saturating_sub(1), count]);
        for n in points {
            faulty_txn(op, n, false, cfg, (base_steps, txn), count);
            faulty_txn(op, n, true, cfg, (base_steps, txn), count);
        }
    }
}

#[test]
fn faults_small_cache() {
    fault_every_op(config(SMALL_CACHE), 25);
}

#[test]
fn faults_big_cache() {
    fault_every_op(config(BIG_CACHE), 25);
}

#[test]
fn faults_two_bitmaps() {
    fault_every_op(straddling(SMALL_CACHE), 6);
}
