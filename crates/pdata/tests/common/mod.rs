//! Test store shared by the pdata integration tests.
//!
//! A [`Store`] is a metadata device (any `SharedDevice`, usually an in-memory
//! one), a transaction manager that allocates from a metadata space map, an
//! optional data space map, and the tree roots a superblock would hold.  There
//! is no superblock at this layer: [`Store::commit`] follows FORMAT.md §4.3
//! (data SM commit, metadata SM commit, write dirty blocks, flush) and keeps
//! the committed space-map roots and tree roots in the struct;
//! [`Store::abort`] drops everything and reopens from them (§4.4).
//!
//! Checkers: [`check_tree`] (node invariants of §2.3),
//! [`Store::check_counts`] (every metadata reference count exact, §9), and,
//! at every commit and abort, that no write of the transaction landed on a
//! block reachable from the previous commit (the copy-on-write rule that
//! makes a crash roll back cleanly; the device is wrapped in a recorder).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::sync::{Arc, Mutex};
use uthin_block_io::testing::MemDevice;
use uthin_block_io::{BlockDevice, SharedDevice};
use uthin_pdata::block_manager::BlockManager;
use uthin_pdata::btree::node::{max_entries, Node};
use uthin_pdata::btree::Value;
use uthin_pdata::sm::counts::nr_bitmaps;
use uthin_pdata::sm::disk::{IndexEntry, INDEX_ENTRY_SIZE};
use uthin_pdata::sm::{DataSpaceMap, MetadataSpaceMap, RefCounts, SmRoot};
use uthin_pdata::tm::TransactionManager;
use uthin_pdata::validator::{INDEX, NODE};
use uthin_pdata::{MetaBlock, Result};

/// A cache small enough that B-tree work evicts (and writes back) dirty blocks.
pub const SMALL_CACHE: usize = 64;
/// A cache that holds everything the tests touch.
pub const BIG_CACHE: usize = 8192;

/// How to build a store.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Blocks tracked by the metadata space map (the device may be larger).
    pub meta_blocks: u64,
    /// Size of the device in blocks.
    pub dev_blocks: u64,
    pub cache_blocks: usize,
    /// Blocks `[0, pinned)` get count 1 at format and keep it: block 0 stands
    /// for the superblock, the rest is ballast that pushes allocations up
    /// (e.g. into the second bitmap).
    pub pinned: u64,
    /// Size of the data space map, if there is one.
    pub data_blocks: Option<u64>,
    /// Number of tree-root slots.
    pub slots: usize,
}

impl Config {
    pub fn new(meta_blocks: u64, cache_blocks: usize) -> Self {
        Config {
            meta_blocks,
            dev_blocks: meta_blocks,
            cache_blocks,
            pinned: 1,
            data_blocks: None,
            slots: 4,
        }
    }
}

/// What the last complete commit left on disk (what a superblock would hold).
#[derive(Clone, Debug)]
pub struct Committed {
    pub meta: SmRoot,
    pub data: Option<SmRoot>,
    pub roots: Vec<Option<MetaBlock>>,
}

/// Passes everything to `inner` and logs the block of every write.
struct Recorder {
    inner: SharedDevice,
    log: Arc<Mutex<Vec<u64>>>,
}

impl BlockDevice for Recorder {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.log.lock().unwrap().push(offset / 4096);
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

pub struct Store {
    /// The device, wrapped in the write recorder.
    pub dev: SharedDevice,
    writes: Arc<Mutex<Vec<u64>>>,
    /// Blocks reachable from the last commit: never to be written.
    protected: BTreeSet<u64>,
    /// Where the checks read the committed state: the device, or one that
    /// sees the same bytes without injected faults ([`Store::set_probe`]).
    probe: SharedDevice,
    pub cfg: Config,
    pub tm: TransactionManager,
    pub msm: MetadataSpaceMap,
    pub dsm: Option<DataSpaceMap>,
    /// Current tree roots, one per slot.
    pub roots: Vec<Option<MetaBlock>>,
    pub committed: Committed,
    /// Number of completed commits (format included).
    pub commits: u64,
}

/// A zero-filled in-memory device of `blocks` metadata blocks.
pub fn mem_dev(blocks: u64) -> SharedDevice {
    Arc::new(MemDevice::new(blocks * 4096))
}

impl Store {
    /// Formats `dev` and commits once.
    pub fn format(dev: SharedDevice, cfg: Config) -> Result<Store> {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let probe = dev.clone();
        let dev: SharedDevice = Arc::new(Recorder {
            inner: dev,
            log: writes.clone(),
        });
        let bm = BlockManager::new(dev.clone(), cfg.cache_blocks, false)?;
        let mut tm = TransactionManager::new(bm, RefCounts::new(cfg.meta_blocks));
        for b in 0..cfg.pinned {
            tm.counts_mut().set(b, 1);
        }
        let msm = MetadataSpaceMap::format(&mut tm)?;
        let dsm = match cfg.data_blocks {
            Some(n) => Some(DataSpaceMap::format(&mut tm, n)?),
            None => None,
        };
        let mut s = Store {
            dev,
            writes,
            protected: BTreeSet::new(),
            probe,
            cfg,
            tm,
            msm,
            dsm,
            roots: vec![None; cfg.slots],
            committed: Committed {
                meta: SmRoot::default(),
                data: None,
                roots: vec![None; cfg.slots],
            },
            commits: 0,
        };
        s.commit()?;
        Ok(s)
    }

    /// Formats a fresh in-memory device.
    pub fn mem(cfg: Config) -> Store {
        Store::format(mem_dev(cfg.dev_blocks), cfg).expect("format")
    }

    /// Opens the state `committed` describes on `dev`.
    pub fn open(dev: SharedDevice, cfg: Config, committed: Committed) -> Result<Store> {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let probe = dev.clone();
        let dev: SharedDevice = Arc::new(Recorder {
            inner: dev,
            log: writes.clone(),
        });
        Store::open_recorded((dev, writes, probe), cfg, committed)
    }

    fn open_recorded(
        (dev, writes, probe): (SharedDevice, Arc<Mutex<Vec<u64>>>, SharedDevice),
        cfg: Config,
        committed: Committed,
    ) -> Result<Store> {
        let bm = BlockManager::new(dev.clone(), cfg.cache_blocks, false)?;
        let (msm, tm) = MetadataSpaceMap::open(bm, &committed.meta)?;
        let dsm = match &committed.data {
            Some(r) => Some(DataSpaceMap::open(&tm, r)?),
            None => None,
        };
        let mut s = Store {
            dev,
            writes,
            protected: BTreeSet::new(),
            probe,
            cfg,
            tm,
            msm,
            dsm,
            roots: committed.roots.clone(),
            committed,
            commits: 0,
        };
        s.protect_committed();
        Ok(s)
    }

    /// Panics if a write since the last commit hit a block the last commit
    /// reaches; forgets the writes.
    fn check_writes(&self) {
        let mut log = self.writes.lock().unwrap();
        let hit: BTreeSet<u64> = log
            .iter()
            .copied()
            .filter(|b| self.protected.contains(b))
            .collect();
        assert!(
            hit.is_empty(),
            "blocks reachable from the last commit were written in place: {hit:?}"
        );
        log.clear();
    }

    /// Records what the last commit reaches (right after it, when all of
    /// it is on the device), reading through the probe.
    fn protect_committed(&mut self) {
        let roots: Vec<MetaBlock> = self.committed.roots.iter().flatten().copied().collect();
        let bm = BlockManager::new(self.probe.clone(), 1024, true).expect("probe");
        let tm = TransactionManager::new(bm, RefCounts::new(0));
        let reach = expected_counts(&tm, self.cfg.pinned, &self.committed, &roots)
            .expect("walk the committed state");
        self.protected = reach.into_keys().collect();
        self.writes.lock().unwrap().clear();
    }

    /// Reads the committed state for the checks through `probe` (the same
    /// bytes as the device, without its injected faults).
    pub fn set_probe(&mut self, probe: SharedDevice) {
        self.probe = probe;
    }

    /// Commits the transaction: the roots become durable once the flush after
    /// the dirty blocks returns.
    pub fn commit(&mut self) -> Result<()> {
        let data = match self.dsm.as_mut() {
            Some(d) => Some(d.commit(&mut self.tm)?),
            None => None,
        };
        let meta = self.msm.commit(&mut self.tm)?;
        self.tm.bm().flush_dirty()?;
        self.tm.bm().flush_device()?;
        self.tm.end_transaction();
        self.check_writes();
        self.committed = Committed {
            meta,
            data,
            roots: self.roots.clone(),
        };
        self.protect_committed();
        self.commits += 1;
        Ok(())
    }

    /// Drops all in-memory state and reopens from the last commit.
    pub fn abort(&mut self) -> Result<()> {
        self.check_writes();
        let commits = self.commits;
        let devs = (self.dev.clone(), self.writes.clone(), self.probe.clone());
        *self = Store::open_recorded(devs, self.cfg, self.committed.clone())?;
        self.commits = commits;
        Ok(())
    }

    /// The live tree roots.
    pub fn live_roots(&self) -> Vec<MetaBlock> {
        self.roots.iter().flatten().copied().collect()
    }

    /// Expected metadata counts of the current state (see [`expected_counts`]).
    pub fn expected_counts(&self, trees: &[MetaBlock]) -> Result<BTreeMap<u64, u32>> {
        expected_counts(&self.tm, self.cfg.pinned, &self.committed, trees)
    }

    /// Asserts every metadata count equals what the live trees (`trees`, or
    /// all live roots if None) and the space maps account for.
    pub fn check_counts(&self, trees: Option<&[MetaBlock]>) {
        let live = self.live_roots();
        let want = self
            .expected_counts(trees.unwrap_or(&live))
            .expect("walk for expected counts");
        let got: BTreeMap<u64, u32> = self.tm.counts().iter_nonzero().collect();
        if want != got {
            let mut diff = Vec::new();
            for b in want
                .keys()
                .chain(got.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                let (w, g) = (want.get(b).copied(), got.get(b).copied());
                if w != g {
                    diff.push(format!("block {b}: want {w:?} got {g:?}"));
                }
            }
            diff.truncate(20);
            panic!("metadata counts differ:\n{}", diff.join("\n"));
        }
        assert_eq!(self.tm.counts().nr_allocated(), got.len() as u64);
        assert_eq!(
            self.tm.counts().nr_free(),
            self.tm.counts().nr_blocks() - got.len() as u64
        );
    }
}

/// Expected metadata counts (FORMAT.md §9): the `pinned` blocks, the
/// metadata and data space maps' own blocks as of `committed` (they only
/// move at commit), and one per reference to a node of the u64 trees `trees`
/// (a shared node's contents are counted once).
pub fn expected_counts(
    tm: &TransactionManager,
    pinned: u64,
    committed: &Committed,
    trees: &[MetaBlock],
) -> Result<BTreeMap<u64, u32>> {
    let mut want = BTreeMap::new();
    for b in 0..pinned {
        *want.entry(b).or_default() += 1;
    }
    let meta = committed.meta;
    *want.entry(meta.bitmap_root.0).or_default() += 1;
    let idx = tm.read(meta.bitmap_root, &INDEX)?;
    for i in 0..nr_bitmaps(meta.nr_blocks) as usize {
        let o = 16 + INDEX_ENTRY_SIZE * i;
        let e = IndexEntry::unpack(&idx[o..o + INDEX_ENTRY_SIZE]);
        *want.entry(e.blocknr.0).or_default() += 1;
    }
    let mut seen = HashSet::new();
    count_tree::<u32>(
        tm,
        meta.ref_count_root,
        &mut want,
        &mut seen,
        &mut |_, _| {},
    )?;
    if let Some(d) = committed.data {
        count_tree::<IndexEntry>(tm, d.bitmap_root, &mut want, &mut seen, &mut |w, e| {
            *w.entry(e.blocknr.0).or_default() += 1;
        })?;
        count_tree::<u32>(tm, d.ref_count_root, &mut want, &mut seen, &mut |_, _| {})?;
    }
    for &r in trees {
        count_tree::<u64>(tm, r, &mut want, &mut seen, &mut |_, _| {})?;
    }
    Ok(want)
}

/// Adds one reference to `root` and, on the first visit, to everything the
/// node points to; calls `on_value` for each leaf value of a first visit.
pub fn count_tree<V: Value>(
    tm: &TransactionManager,
    root: MetaBlock,
    want: &mut BTreeMap<u64, u32>,
    seen: &mut HashSet<u64>,
    on_value: &mut dyn FnMut(&mut BTreeMap<u64, u32>, V),
) -> Result<()> {
    *want.entry(root.0).or_default() += 1;
    if !seen.insert(root.0) {
        return Ok(());
    }
    let d = tm.read(root, &NODE)?;
    let n = Node::new(&d);
    n.check(root, V::SIZE)?;
    for i in 0..n.nr_entries() {
        if n.is_leaf() {
            on_value(want, V::unpack(n.value(i)));
        } else {
            count_tree::<V>(tm, n.child(i), want, seen, on_value)?;
        }
    }
    Ok(())
}

/// Shape of a checked tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Levels (1 = a single leaf).
    pub depth: usize,
    pub entries: usize,
    pub nodes: usize,
}

/// Checks the invariants of FORMAT.md §2.3 on the tree at `root` and returns
/// its shape: keys strictly ascending, every key of child i in
/// `[keys[i], keys[i+1])`, all leaves at one depth, non-root nodes at least a
/// third full, `max_entries` the standard multiple of three.
pub fn check_tree<V: Value>(tm: &TransactionManager, root: MetaBlock) -> Shape {
    let mut shape = Shape::default();
    let mut leaf_depth = None;
    check_node::<V>(tm, root, 1, None, None, true, &mut leaf_depth, &mut shape);
    shape.depth = leaf_depth.unwrap_or(1);
    shape
}

#[allow(clippy::too_many_arguments)]
fn check_node<V: Value>(
    tm: &TransactionManager,
    blk: MetaBlock,
    depth: usize,
    lo: Option<u64>,
    hi: Option<u64>,
    is_root: bool,
    leaf_depth: &mut Option<usize>,
    shape: &mut Shape,
) {
    assert!(depth <= 8, "tree too deep at {blk:?}");
    let d = tm.read(blk, &NODE).expect("read node");
    let n = Node::new(&d);
    n.check(blk, V::SIZE).expect("node check");
    shape.nodes += 1;
    let vs = if n.is_leaf() { V::SIZE } else { 8 };
    assert_eq!(n.value_size(), vs, "{blk:?} value size");
    assert_eq!(n.max_entries(), max_entries(vs), "{blk:?} max_entries");
    assert_eq!(n.max_entries() % 3, 0);
    let nr = n.nr_entries();
    assert!(nr <= n.max_entries(), "{blk:?} overfull");
    if !is_root {
        assert!(
            nr >= n.max_entries() / 3,
            "{blk:?} under-filled: {nr} of {} (depth {depth})",
            n.max_entries()
        );
    }
    for i in 0..nr {
        let k = n.key(i);
        if i > 0 {
            assert!(n.key(i - 1) < k, "{blk:?} keys not ascending at {i}");
        }
        // An internal node's first key may be below its subtree's keys, but
        // never below the parent's key for it.
        assert!(lo.iter().all(|&l| k >= l), "{blk:?} key {k} below {lo:?}");
        assert!(
            hi.iter().all(|&h| k < h),
            "{blk:?} key {k} not below {hi:?}"
        );
    }
    if n.is_leaf() {
        shape.entries += nr;
        match *leaf_depth {
            None => *leaf_depth = Some(depth),
            Some(ld) => assert_eq!(ld, depth, "{blk:?}: leaves at different depths"),
        }
        return;
    }
    for i in 0..nr {
        let clo = Some(n.key(i));
        let chi = if i + 1 < nr { Some(n.key(i + 1)) } else { hi };
        check_node::<V>(
            tm,
            n.child(i),
            depth + 1,
            clo,
            chi,
            false,
            leaf_depth,
            shape,
        );
    }
}
