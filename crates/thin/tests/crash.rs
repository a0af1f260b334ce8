//! Crash tests: scripted workloads on a [`CrashDevice`], crashed at every
//! flush.
//!
//! Each workload runs once to record its commits: for each, the index of the
//! flush that follows its superblock write, and a model of the pool as of
//! that commit (kept independently of the implementation, and compared with
//! the live pool at every commit of that first run).  Then, for every flush
//! index `n`, the workload reruns on a fresh device that dies at flush `n`,
//! and every image a power cut could leave is opened and compared with the
//! models:
//!
//! * the durable image (nothing unflushed survives) must hold exactly the last
//!   commit whose superblock flush completed (flush index < n);
//! * torn images (any subset of the unflushed writes, one of them cut at a
//!   sector boundary) and the live image (every write survived) may also hold
//!   the commit whose superblock flush is `n` itself, and nothing else;
//! * before the first (format) commit is durable, block 0 must be all zero
//!   (then opening formats anew).
//!
//! Every image must also pass Debian's `thin_check` (the final image and a
//! sample of the crash images the stricter 1.x `thin_check` too), dump
//! (`thin_dump`, and `thin_dump -m` while a metadata snapshot is held) as
//! the model says, count
//! the free data blocks the model implies, and (for a sample) take a new
//! transaction that allocates only blocks the model leaves free.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uthin_block_io::testing::{CrashDevice, MemDevice};
use uthin_block_io::BlockDevice;
use uthin_thin::{DevId, OpenOptions, PoolMetadata, Result, VirtBlock};

const DATA_BLOCK_SIZE: u32 = 128;
const MIB: u64 = 1 << 20;

/// A completed commit: the flush after its superblock write, and the state.
#[derive(Clone)]
struct Commit {
    sb_flush: u64,
    model: PoolModel,
}

/// A pool under a scripted workload, with its model.
struct H<'a> {
    dev: Arc<CrashDevice>,
    md: PoolMetadata,
    /// The live model (uncommitted changes included).
    m: PoolModel,
    /// The model as of the last commit.
    committed: PoolModel,
    commits: &'a mut Vec<Commit>,
    /// Data blocks referenced at the last commit (held snapshot included):
    /// never to be handed out by the allocator before the next commit.
    committed_refs: HashSet<u64>,
    /// Live reference counts of data blocks (mappings of live devices).
    live_refs: HashMap<u64, u32>,
    rng: Rng,
    /// Compare the pool with the model at every commit (the recording run).
    verify: bool,
}

fn opts(cache_blocks: usize) -> OpenOptions {
    let mut o = OpenOptions::new(DATA_BLOCK_SIZE);
    o.cache_blocks = cache_blocks;
    o
}

impl<'a> H<'a> {
    fn open(
        dev: Arc<CrashDevice>,
        cache_blocks: usize,
        commits: &'a mut Vec<Commit>,
        verify: bool,
    ) -> Result<Self> {
        let md = PoolMetadata::open(dev.clone() as Arc<dyn BlockDevice>, opts(cache_blocks))?;
        let m = PoolModel {
            meta_blocks: dev.len().unwrap() / 4096,
            ..Default::default()
        };
        let mut h = H {
            dev,
            md,
            committed: m.clone(),
            m,
            commits,
            committed_refs: HashSet::new(),
            live_refs: HashMap::new(),
            rng: Rng(0x5eed),
            verify,
        };
        h.record();
        Ok(h)
    }

    /// Records a completed commit (if it flushed anything).
    fn record(&mut self) {
        let f = self.dev.flushes();
        let last = self.commits.last().map_or(0, |c| c.sb_flush + 1);
        if f == last {
            // Nothing was written: then nothing may have changed.
            self.m
                .assert_matches(&self.committed, "a commit that wrote nothing");
            return;
        }
        assert!(f >= last + 2, "a commit flushes twice ({last} -> {f})");
        if self.verify {
            let actual = PoolModel::read(&self.md).unwrap();
            self.m.assert_matches(&actual, "live pool after commit");
        }
        self.committed = self.m.clone();
        self.committed_refs = self.m.data_refs();
        self.commits.push(Commit {
            sb_flush: f - 1,
            model: self.committed.clone(),
        });
    }

    fn commit(&mut self) -> Result<()> {
        let t = self.m.trans_id;
        self.md.set_transaction_id(t, t + 1)?;
        self.m.trans_id = t + 1;
        self.md.commit()?;
        self.record();
        Ok(())
    }

    fn create_thin(&mut self, id: u64) -> Result<()> {
        self.md.create_thin(DevId(id))?;
        self.m.create_thin(id);
        Ok(())
    }

    fn snap(&mut self, id: u64, origin: u64) -> Result<()> {
        self.md.create_snap(DevId(id), DevId(origin))?;
        self.m.create_snap(id, origin);
        for (b, _) in self.m.devices[&id].mappings.values() {
            *self.live_refs.entry(*b).or_default() += 1;
        }
        Ok(())
    }

    fn unref(&mut self, b: u64) {
        let c = self.live_refs.get_mut(&b).expect("referenced");
        *c -= 1;
        if *c == 0 {
            self.live_refs.remove(&b);
        }
    }

    fn delete(&mut self, id: u64) -> Result<()> {
        self.md.delete_thin(DevId(id))?;
        let blocks: Vec<u64> = self.m.devices[&id].mappings.values().map(|m| m.0).collect();
        for b in blocks {
            self.unref(b);
        }
        self.m.delete(id);
        Ok(())
    }

    /// Maps `v` of `dev` to a freshly allocated block (replacing any mapping).
    fn map(&mut self, dev: u64, v: u64) -> Result<()> {
        let b = self.md.alloc_data_block()?.expect("data space left");
        assert!(
            b.0 < self.m.data_blocks,
            "allocated {b} beyond the data size"
        );
        assert!(
            !self.committed_refs.contains(&b.0) && !self.live_refs.contains_key(&b.0),
            "allocator handed out data block {b}, which is still referenced"
        );
        self.md.insert_block(DevId(dev), VirtBlock(v), b)?;
        if let Some(old) = self.m.insert(dev, v, b.0) {
            self.unref(old);
        }
        *self.live_refs.entry(b.0).or_default() += 1;
        Ok(())
    }

    fn map_range(&mut self, dev: u64, vs: std::ops::Range<u64>) -> Result<()> {
        for v in vs {
            self.map(dev, v)?;
        }
        Ok(())
    }

    fn unmap(&mut self, dev: u64, v: u64) -> Result<()> {
        let old = self.m.devices[&dev].mappings.get(&v).map(|m| m.0);
        let r = self.md.remove_block(DevId(dev), VirtBlock(v))?;
        assert_eq!(r, old.is_some(), "remove_block({dev}, {v})");
        if let Some(b) = old {
            self.m.remove(dev, v);
            self.unref(b);
        }
        Ok(())
    }

    fn unmap_range(&mut self, dev: u64, begin: u64, end: u64) -> Result<()> {
        let blocks: Vec<u64> = self.m.devices[&dev]
            .mappings
            .range(begin..end)
            .map(|(_, m)| m.0)
            .collect();
        let n = self
            .md
            .remove_range(DevId(dev), VirtBlock(begin), VirtBlock(end))?;
        assert_eq!(n, self.m.remove_range(dev, begin, end), "remove_range");
        for b in blocks {
            self.unref(b);
        }
        Ok(())
    }

    /// A random live device among `ids`.
    fn pick(&mut self, ids: &[u64]) -> u64 {
        let live: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|i| self.m.devices.contains_key(i))
            .collect();
        live[self.rng.below(live.len() as u64) as usize]
    }

    /// A random mapped virtual block of `dev`, if any.
    fn mapped_key(&mut self, dev: u64) -> Option<u64> {
        let maps = &self.m.devices[&dev].mappings;
        if maps.is_empty() {
            return None;
        }
        let i = self.rng.below(maps.len() as u64) as usize;
        maps.keys().nth(i).copied()
    }

    /// Takes a metadata snapshot (the call commits first).
    fn reserve(&mut self) -> Result<()> {
        assert!(self.m.held.is_none());
        self.md.reserve_metadata_snap()?;
        // The commit inside wrote the state before the snapshot is held.
        let verify = std::mem::replace(&mut self.verify, false);
        self.record();
        self.verify = verify;
        self.m.held = Some(Arc::new(self.committed.clone()));
        if verify {
            let actual = PoolModel::read(&self.md).unwrap();
            self.m.assert_matches(&actual, "live pool after reserve");
        }
        Ok(())
    }

    fn release(&mut self) -> Result<()> {
        self.md.release_metadata_snap()?;
        self.m.held = None;
        Ok(())
    }

    fn resize_data(&mut self, n: u64) -> Result<()> {
        self.md.resize_data_dev(n)?;
        self.m.data_blocks = n;
        Ok(())
    }

    /// Grows the metadata device to `bytes` and the pool's metadata space
    /// with it.
    fn grow_meta(&mut self, bytes: u64) -> Result<()> {
        self.dev.set_len(bytes);
        let n = self.md.resize_metadata_dev()?;
        assert_eq!(n, bytes / 4096);
        self.m.meta_blocks = n;
        Ok(())
    }

    /// Sets or clears NEEDS_CHECK: the last committed superblock is
    /// rewritten at once with the new flag (a commit of its own).
    fn needs_check(&mut self, on: bool) -> Result<()> {
        if on {
            self.md.set_needs_check()?;
        } else {
            self.md.clear_needs_check()?;
        }
        self.m.needs_check = on;
        let f = self.dev.flushes();
        self.committed.needs_check = on;
        self.commits.push(Commit {
            sb_flush: f - 1,
            model: self.committed.clone(),
        });
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Workloads.

type WorkFn = fn(&mut H) -> Result<()>;

struct Workload {
    name: &'static str,
    meta_bytes: u64,
    cache_blocks: usize,
    run: WorkFn,
    /// Seeds of the torn images checked at every crash point.
    torn_seeds: u64,
    /// Run thin_check, thin_dump and a follow-up transaction on every
    /// `sample`-th crash point only (1 = all); the model comparison runs on
    /// every point.
    sample: u64,
}

/// (a) Format only.
fn w_format(_h: &mut H) -> Result<()> {
    Ok(())
}

/// (b) Thin devices and snapshots, snapshots of snapshots, sharing broken on
/// both sides.
fn w_snapshots(h: &mut H) -> Result<()> {
    h.resize_data(4096)?;
    h.commit()?;
    h.create_thin(1)?;
    h.map_range(1, 0..300)?;
    h.commit()?;
    h.snap(2, 1)?;
    for _ in 0..20 {
        let v = h.rng.below(300);
        h.map(1, v)?;
    }
    h.map_range(2, 300..350)?;
    h.commit()?;
    h.snap(3, 2)?;
    h.snap(4, 3)?;
    h.map_range(3, 0..10)?;
    for v in 100..110 {
        h.unmap(4, v)?;
    }
    h.commit()?;
    h.create_thin(5)?;
    h.map_range(5, 0..50)?;
    h.snap(6, 5)?;
    h.map_range(6, 20..30)?;
    h.snap(7, 1)?;
    h.map_range(5, 1000..1010)?;
    h.commit()?;
    h.unmap_range(2, 0, 150)?;
    h.map_range(7, 290..320)?;
    h.snap(8, 4)?;
    h.unmap_range(8, 0, 1 << 20)?;
    h.commit()
}

/// (c) Thousands of random inserts, remaps, removes and range removes over
/// several commits, with snapshots: multi-level trees, many bitmap changes,
/// and a small cache so dirty blocks are written early.
fn w_large(h: &mut H) -> Result<()> {
    // Small spaces, so both allocators wrap around several times and must
    // skip the blocks freed in the running transaction.
    const VBLOCKS: u64 = 6000;
    h.resize_data(14_000)?;
    h.commit()?;
    h.create_thin(1)?;
    h.create_thin(2)?;
    h.commit()?;
    for round in 0..30 {
        let devs = [1, 2, 3, 4, 5];
        if round % 8 == 0 {
            // Spread: nearly every leaf of every device is rewritten.
            for _ in 0..1000 {
                let d = h.pick(&devs);
                let v = h.rng.below(VBLOCKS);
                h.map(d, v)?;
            }
            for _ in 0..100 {
                let d = h.pick(&devs);
                if let Some(v) = h.mapped_key(d) {
                    h.unmap(d, v)?;
                }
            }
        } else {
            // Clustered: a few windows; old blocks elsewhere are freed one
            // by one, some ahead of the allocators' cursors.
            for _ in 0..4 {
                let d = h.pick(&devs);
                let start = h.rng.below(VBLOCKS - 400);
                for _ in 0..200 {
                    let v = start + h.rng.below(400);
                    h.map(d, v)?;
                }
                for _ in 0..25 {
                    let v = start + h.rng.below(400);
                    h.unmap(d, v)?;
                }
            }
        }
        let d = h.pick(&devs);
        let b = h.rng.below(VBLOCKS);
        let len = h.rng.below(800);
        h.unmap_range(d, b, b + len)?;
        match round {
            3 => h.snap(3, 1)?,
            6 => h.snap(4, 3)?,
            12 => h.delete(3)?,
            15 => h.snap(5, 2)?,
            _ => {}
        }
        h.commit()?;
    }
    Ok(())
}

/// (d) Reserving and releasing a metadata snapshot, twice.
fn w_metadata_snap(h: &mut H) -> Result<()> {
    h.resize_data(2000)?;
    h.create_thin(1)?;
    h.map_range(1, 0..200)?;
    h.commit()?;
    h.reserve()?;
    h.map_range(1, 0..50)?;
    h.map_range(1, 200..260)?;
    h.commit()?;
    h.create_thin(2)?;
    h.map_range(2, 0..30)?;
    h.unmap_range(1, 100, 150)?;
    h.commit()?;
    h.release()?;
    h.commit()?;
    h.reserve()?;
    h.snap(3, 1)?;
    h.map_range(3, 0..20)?;
    h.commit()?;
    h.delete(2)?;
    h.commit()?;
    h.release()?;
    h.delete(1)?;
    h.commit()
}

/// (e) Growing the data space (across a bitmap boundary) and the metadata
/// device (to a second metadata bitmap).
fn w_grow(h: &mut H) -> Result<()> {
    h.resize_data(1000)?;
    h.commit()?;
    h.create_thin(1)?;
    h.map_range(1, 0..500)?;
    h.commit()?;
    h.resize_data(20_000)?;
    h.map_range(1, 500..800)?;
    h.commit()?;
    h.grow_meta(4 * MIB)?;
    h.map_range(1, 800..1000)?;
    h.commit()?;
    h.grow_meta(65 * MIB)?;
    h.snap(2, 1)?;
    h.map_range(2, 0..100)?;
    h.commit()?;
    h.resize_data(40_000)?;
    h.grow_meta(66 * MIB)?;
    h.map_range(1, 2000..2100)?;
    h.commit()
}

/// (f) Deleting devices: an origin with live snapshots, a device created in
/// the same transaction, a snapshot chain; NEEDS_CHECK set (mid-transaction)
/// and cleared.  Smallest cache.
fn w_delete(h: &mut H) -> Result<()> {
    h.resize_data(5000)?;
    h.create_thin(1)?;
    h.create_thin(2)?;
    h.map_range(1, 0..400)?;
    h.map_range(2, 0..400)?;
    h.snap(3, 1)?;
    h.snap(4, 3)?;
    h.commit()?;
    h.delete(1)?;
    h.map_range(3, 50..80)?;
    h.commit()?;
    h.create_thin(5)?;
    h.map_range(5, 0..40)?;
    h.delete(5)?;
    h.delete(4)?;
    h.commit()?;
    h.delete(2)?;
    h.commit()?;
    // NEEDS_CHECK set in the middle of a transaction (with dirty blocks
    // already written by evictions), kept by the next commit, then cleared.
    h.create_thin(7)?;
    h.map_range(7, 0..200)?;
    h.needs_check(true)?;
    h.map_range(7, 200..260)?;
    h.commit()?;
    h.needs_check(false)?;
    h.delete(3)?;
    h.delete(7)?;
    h.commit()
}

// ---------------------------------------------------------------------------
// The harness.

/// Runs `w` on a fresh device, dying at flush `crash_at` if given.
fn run(
    w: &Workload,
    crash_at: Option<u64>,
    verify: bool,
) -> (Arc<CrashDevice>, Vec<Commit>, Result<()>) {
    let dev = Arc::new(CrashDevice::new(w.meta_bytes));
    if let Some(n) = crash_at {
        dev.crash_at_flush(n);
    }
    let mut commits = Vec::new();
    let r = H::open(dev.clone(), w.cache_blocks, &mut commits, verify).and_then(|mut h| {
        (w.run)(&mut h)?;
        // Reopen-free sanity: the live pool matches the model at the end.
        if verify {
            let actual = PoolModel::read(&h.md)?;
            h.m.assert_matches(&actual, "live pool at the end");
        }
        Ok(())
    });
    (dev, commits, r)
}

/// How thoroughly to check one image.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Depth {
    /// Open and compare with the models.
    Model,
    /// Also thin_check.
    Check,
    /// Also thin_dump (and thin_dump -m), and a follow-up transaction.
    Full,
}

/// Opens a crash image and checks it holds one of `accept` (or, with
/// `allow_zero`, is unformatted).  Returns the index of the model it holds
/// (`None` for an unformatted image).
fn check_image(
    w: &Workload,
    img: Vec<u8>,
    accept: &[&PoolModel],
    allow_zero: bool,
    depth: Depth,
    what: &str,
) -> Option<usize> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    if img[..4096].iter().all(|&b| b == 0) {
        assert!(
            allow_zero,
            "{what}: block 0 is all zero although a commit completed"
        );
        // Opening formats anew.
        let len = img.len() as u64;
        let dev = Arc::new(MemDevice::from_bytes(img));
        let md = PoolMetadata::open(dev.clone(), opts(w.cache_blocks))
            .unwrap_or_else(|e| panic!("{what}: formatting the zeroed image failed: {e}"));
        let empty = PoolModel {
            meta_blocks: len / 4096,
            ..Default::default()
        };
        empty.assert_matches(&PoolModel::read(&md).unwrap(), what);
        if depth >= Depth::Check {
            write_image(&path, &dev.snapshot());
            assert_thin_check(&path);
        }
        return None;
    }
    let dev = Arc::new(MemDevice::from_bytes(img));
    let mut md = PoolMetadata::open(dev.clone(), opts(w.cache_blocks))
        .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    let actual = PoolModel::read(&md).unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
    let Some(i) = accept.iter().position(|m| m.diff(&actual).is_none()) else {
        let diffs: Vec<String> = accept.iter().map(|m| m.diff(&actual).unwrap()).collect();
        panic!("{what}: the image holds none of the acceptable commits: {diffs:#?}");
    };
    let model = accept[i];
    let refs = model.data_refs();
    assert_eq!(
        md.free_data_blocks().unwrap(),
        model.data_blocks - refs.len() as u64,
        "{what}: free data blocks"
    );
    if depth >= Depth::Check {
        write_image(&path, &dev.snapshot());
        assert_thin_check(&path);
    }
    if depth >= Depth::Full {
        if let Some(d) = model.diff_dump(&thin_dump(&path)) {
            panic!("{what}: thin_dump: {d}");
        }
        if let Some(held) = &model.held {
            // The snapshot's superblock owns no space maps (both roots are
            // zeroed, FORMAT.md §5.5), so thin_dump -m shows 0 data blocks.
            let held = PoolModel {
                data_blocks: 0,
                ..(**held).clone()
            };
            if let Some(d) = held.diff_dump(&thin_dump_snap(&path)) {
                panic!("{what}: thin_dump -m: {d}");
            }
        }
        follow_up(&mut md, model, &dev, &path, what);
    }
    Some(i)
}

/// A transaction on a recovered pool: a new device with fresh blocks (none
/// of which the recovered state references), a snapshot and remaps of an
/// existing device; commit; thin_check; reopen and compare.
fn follow_up(
    md: &mut PoolMetadata,
    model: &PoolModel,
    dev: &Arc<MemDevice>,
    path: &std::path::Path,
    what: &str,
) {
    let mut m = model.clone();
    let refs = model.data_refs();
    if m.data_blocks == 0 {
        md.resize_data_dev(64).unwrap();
        m.data_blocks = 64;
    }
    let new_id = 4242;
    md.create_thin(DevId(new_id)).unwrap();
    m.create_thin(new_id);
    let mut fresh = HashSet::new();
    for v in 0..20 {
        let Some(b) = md.alloc_data_block().unwrap() else {
            break;
        };
        assert!(
            !refs.contains(&b.0) && fresh.insert(b.0),
            "{what}: recovered pool allocated block {b}, which is in use"
        );
        md.insert_block(DevId(new_id), VirtBlock(v), b).unwrap();
        m.insert(new_id, v, b.0);
    }
    if let Some((&id, d)) = model.devices.iter().find(|(_, d)| !d.mappings.is_empty()) {
        let snap_id = 4243;
        md.create_snap(DevId(snap_id), DevId(id)).unwrap();
        m.create_snap(snap_id, id);
        let keys: Vec<u64> = d.mappings.keys().copied().take(5).collect();
        for v in keys {
            if let Some(b) = md.alloc_data_block().unwrap() {
                assert!(!refs.contains(&b.0) && fresh.insert(b.0));
                md.insert_block(DevId(id), VirtBlock(v), b).unwrap();
                m.insert(id, v, b.0);
            }
        }
    }
    md.commit().unwrap();
    write_image(path, &dev.snapshot());
    assert_thin_check(path);
    let md2 = PoolMetadata::open(
        Arc::new(MemDevice::from_bytes(dev.snapshot())),
        OpenOptions::new(DATA_BLOCK_SIZE),
    )
    .unwrap();
    m.assert_matches(
        &PoolModel::read(&md2).unwrap(),
        &format!("{what}, follow-up"),
    );
}

/// thin-provisioning-tools 1.x's thin_check on an image.
fn thin_check_1x_image(img: Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    write_image(&path, &img);
    assert_thin_check_1x(&path);
}

fn crash_test(w: &Workload) {
    let t0 = std::time::Instant::now();
    let (dev, commits, r) = run(w, None, true);
    r.unwrap_or_else(|e| panic!("{}: recording run failed: {e}", w.name));
    let total = dev.flushes();
    assert!(!commits.is_empty());
    assert_eq!(commits.last().unwrap().sb_flush + 1, total);
    let last = &commits.last().unwrap().model;
    check_image(
        w,
        dev.durable_image(),
        &[last],
        false,
        Depth::Full,
        &format!("{}: final image", w.name),
    );
    thin_check_1x_image(dev.durable_image());
    for n in 0..total {
        let (dev, got, r) = run(w, Some(n), false);
        let err = r.expect_err("the workload must hit the crash");
        assert!(
            dev.is_dead(),
            "{}: crash {n}: failed otherwise: {err}",
            w.name
        );
        let seen: Vec<u64> = got.iter().map(|c| c.sb_flush).collect();
        let expect: Vec<u64> = commits
            .iter()
            .map(|c| c.sb_flush)
            .filter(|&f| f < n)
            .collect();
        assert_eq!(seen, expect, "{}: the rerun is not deterministic", w.name);
        let prev = commits.iter().rev().find(|c| c.sb_flush < n);
        let at = commits.iter().find(|c| c.sb_flush == n);
        let depth = if n % w.sample == 0 || n + 1 == total {
            Depth::Full
        } else {
            Depth::Model
        };
        let what = |kind: &str| format!("{}: crash at flush {n}/{total}, {kind}", w.name);
        // The durable image: exactly the last completed commit.
        let strict: Vec<&PoolModel> = prev.iter().map(|c| &c.model).collect();
        check_image(
            w,
            dev.durable_image(),
            &strict,
            prev.is_none(),
            depth,
            &what("durable image"),
        );
        // The stricter 1.x checker (half a second each) on a sample.
        if n % 16 == 0 && prev.is_some() {
            thin_check_1x_image(dev.durable_image());
        }
        // Torn and live images: that, or the commit whose superblock flush died.
        let either: Vec<&PoolModel> = prev.iter().chain(at.iter()).map(|c| &c.model).collect();
        let cdepth = depth.min(Depth::Check);
        for seed in 0..w.torn_seeds {
            check_image(
                w,
                dev.durable_image_torn(seed),
                &either,
                prev.is_none(),
                cdepth,
                &what(&format!("torn image (seed {seed})")),
            );
        }
        // Every write reached the live image: the commit whose superblock
        // flush died is there if there is one.
        let live: Vec<&PoolModel> = match at {
            Some(c) => vec![&c.model],
            None => strict.clone(),
        };
        check_image(
            w,
            dev.live_image(),
            &live,
            prev.is_none() && at.is_none(),
            cdepth,
            &what("live image"),
        );
    }
    eprintln!(
        "{}: {} commits, {total} crash points, {:.1?}",
        w.name,
        commits.len(),
        t0.elapsed()
    );
}

#[test]
fn crash_format() {
    crash_test(&Workload {
        name: "format",
        meta_bytes: 4 * MIB,
        cache_blocks: 1024,
        run: w_format,
        torn_seeds: 8,
        sample: 1,
    });
}

#[test]
fn crash_snapshots() {
    crash_test(&Workload {
        name: "snapshots",
        meta_bytes: 4 * MIB,
        cache_blocks: 1024,
        run: w_snapshots,
        torn_seeds: 4,
        sample: 1,
    });
}

/// The same with the smallest cache: dirty blocks reach the device (as
/// unflushed writes a crash may tear) long before the commit.
#[test]
fn crash_snapshots_small_cache() {
    crash_test(&Workload {
        name: "snapshots, small cache",
        meta_bytes: 4 * MIB,
        cache_blocks: 16,
        run: w_snapshots,
        torn_seeds: 6,
        sample: 1,
    });
}

#[test]
fn crash_large() {
    crash_test(&Workload {
        name: "large",
        meta_bytes: MIB,
        cache_blocks: 64,
        run: w_large,
        torn_seeds: 3,
        sample: 1,
    });
}

#[test]
fn crash_metadata_snap() {
    crash_test(&Workload {
        name: "metadata snap",
        meta_bytes: 4 * MIB,
        cache_blocks: 1024,
        run: w_metadata_snap,
        torn_seeds: 4,
        sample: 1,
    });
}

#[test]
fn crash_grow() {
    crash_test(&Workload {
        name: "grow",
        meta_bytes: MIB,
        cache_blocks: 1024,
        run: w_grow,
        torn_seeds: 2,
        sample: 1,
    });
}

#[test]
fn crash_delete() {
    crash_test(&Workload {
        name: "delete",
        meta_bytes: 4 * MIB,
        cache_blocks: 16,
        run: w_delete,
        torn_seeds: 4,
        sample: 1,
    });
}
