//! Model-based tests of the space maps against a `Vec<u32>` of counts.
//!
//! * `refcounts_match_model`: [`RefCounts`] under set / adjust / alloc /
//!   alloc_in / grow / commit.  Checks every count, the committed counts, the
//!   free-in-both allocation rule (FORMAT.md §3.8: `alloc` never returns a
//!   block that was in use at the last commit, and returns None only when no
//!   block is free in both states), `nr_allocated` / `nr_free` /
//!   `nr_allocatable`, `iter_nonzero`, the bitmap words decoded with the
//!   on-disk bit order (§3.3), the index-entry statistics (§3.4), and that
//!   the dirty bitmap and dirty overflow sets cover every change.
//! * `data_sm_persists`: a [`DataSpaceMap`] in a test store under random
//!   counts (including >= 3, so the ref-count tree gains and loses entries),
//!   allocations, growth across several 16320-entry bitmaps, metadata space
//!   map growth, commits and aborts.  After each commit the on-disk bitmaps,
//!   index entries and ref-count tree are decoded independently and compared
//!   with the model, the map is reopened with `DataSpaceMap::open`, and every
//!   metadata reference count must be exact.

mod common;

use common::{Config, Store, BIG_CACHE, SMALL_CACHE};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use uthin_pdata::btree;
use uthin_pdata::sm::counts::{nr_bitmaps, ENTRIES_PER_BITMAP, WORDS_PER_BITMAP};
use uthin_pdata::sm::data::read_overflow;
use uthin_pdata::sm::disk::IndexEntry;
use uthin_pdata::sm::{DataSpaceMap, RefCounts};
use uthin_pdata::types::le64;
use uthin_pdata::validator::BITMAP;

#[derive(Clone, Debug)]
enum Op {
    Set { b: Index, count: u32 },
    SetOutOfRange { beyond: u64, count: u32 },
    Adjust { b: Index, delta: i64 },
    Alloc { n: usize },
    AllocIn { begin: Index, len: u64 },
    Grow { extra: u64 },
    GrowMeta { extra: u64 },
    Commit,
    Abort,
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![6 => 0..5u32, 2 => 0..40u32, 1 => Just(u32::MAX)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (any::<Index>(), count()).prop_map(|(b, count)| Op::Set { b, count }),
        1 => (0..3u64, count()).prop_map(|(beyond, count)| Op::SetOutOfRange { beyond, count }),
        6 => (any::<Index>(), prop_oneof![-3..=3i64, Just(i64::MIN), Just(1 << 33)])
            .prop_map(|(b, delta)| Op::Adjust { b, delta }),
        3 => prop_oneof![1..5usize, 0..300usize].prop_map(|n| Op::Alloc { n }),
        1 => (any::<Index>(), 0..100u64).prop_map(|(begin, len)| Op::AllocIn { begin, len }),
        1 => prop_oneof![0..100u64, 0..40_000u64].prop_map(|extra| Op::Grow { extra }),
        1 => (0..20_000u64).prop_map(|extra| Op::GrowMeta { extra }),
        2 => Just(Op::Commit),
        1 => Just(Op::Abort),
    ]
}

/// Counts now and at the last commit.
#[derive(Clone, Debug, Default)]
struct Model {
    cur: Vec<u32>,
    committed: Vec<u32>,
}

impl Model {
    fn new(n: u64) -> Self {
        Model {
            cur: vec![0; n as usize],
            committed: vec![0; n as usize],
        }
    }
    fn free_in_both(&self, b: usize) -> bool {
        self.cur[b] == 0 && self.committed[b] == 0
    }
    fn pick(&self, i: &Index) -> Option<u64> {
        (!self.cur.is_empty()).then(|| i.index(self.cur.len()) as u64)
    }
    /// Checks an allocation result for `[begin, end)` and records it.
    fn alloc(&mut self, got: Option<u64>, begin: u64, end: u64) {
        let end = end.min(self.cur.len() as u64);
        match got {
            Some(b) => {
                assert!(b >= begin && b < end, "alloc {b} outside {begin}..{end}");
                assert!(
                    self.free_in_both(b as usize),
                    "alloc returned {b}: count {} now, {} at commit",
                    self.cur[b as usize],
                    self.committed[b as usize]
                );
                self.cur[b as usize] = 1;
            }
            None => assert!(
                (begin..end).all(|b| !self.free_in_both(b as usize)),
                "alloc found nothing but a block is free in both states"
            ),
        }
    }
}

/// Applies the operations that work on bare counts; returns false for the
/// others.
fn apply_counts(rc: &mut RefCounts, m: &mut Model, op: &Op) -> bool {
    let nr = m.cur.len() as u64;
    match op {
        Op::Set { b, count } => {
            if let Some(b) = m.pick(b) {
                assert!(rc.set(b, *count));
                m.cur[b as usize] = *count;
            }
        }
        Op::SetOutOfRange { beyond, count } => {
            assert!(!rc.set(nr + beyond, *count));
            assert_eq!(rc.adjust(nr + beyond, 1), None);
            assert_eq!(rc.get(nr + beyond), 0);
        }
        Op::Adjust { b, delta } => {
            if let Some(b) = m.pick(b) {
                let c = &mut m.cur[b as usize];
                let want = (*c as i64)
                    .checked_add(*delta)
                    .filter(|n| (0..=u32::MAX as i64).contains(n));
                assert_eq!(rc.adjust(b, *delta), want.map(|n| n as u32));
                if let Some(n) = want {
                    *c = n as u32;
                }
            }
        }
        Op::Alloc { n } => {
            for _ in 0..*n {
                let got = rc.alloc();
                m.alloc(got, 0, nr);
            }
        }
        Op::AllocIn { begin, len } => {
            let begin = m.pick(begin).unwrap_or(0);
            let got = rc.alloc_in(begin, begin + len);
            m.alloc(got, begin, begin + len);
        }
        Op::Grow { extra } => {
            rc.grow(nr + extra);
            m.cur.resize((nr + extra) as usize, 0);
            m.committed.resize((nr + extra) as usize, 0);
        }
        _ => return false,
    }
    true
}

/// Decodes entry `e` of a bitmap's words in the on-disk bit order: bit p is
/// the high bit, bit p + 1 the low bit.
fn entry(words: &[u64], e: usize) -> u32 {
    let (w, p) = (words[e / 32], 2 * (e % 32));
    ((((w >> p) & 1) << 1) | ((w >> (p + 1)) & 1)) as u32
}

/// (nr_free, none_free_before) the model expects for bitmap `bm`: entries
/// past the end count as free, as the kernel counts them.
fn expected_stats(m: &[u32], bm: usize) -> (u32, u32) {
    let per = ENTRIES_PER_BITMAP as usize;
    let slot = |e: usize| m.get(bm * per + e).copied().unwrap_or(0);
    let free = (0..per).filter(|&e| slot(e) == 0).count() as u32;
    let first = (0..per).find(|&e| slot(e) == 0).unwrap_or(per) as u32;
    (free, first)
}

/// Compares bitmap words (as the disk would hold them) with the model.
fn check_words(words: &[u64], m: &[u32], bm: usize) {
    assert_eq!(words.len(), WORDS_PER_BITMAP);
    let per = ENTRIES_PER_BITMAP as usize;
    for e in 0..per {
        let want = m.get(bm * per + e).map_or(0, |c| (*c).min(3));
        assert_eq!(entry(words, e), want, "bitmap {bm} entry {e}");
    }
}

fn check_counts(rc: &RefCounts, m: &Model) {
    let nr = m.cur.len();
    assert_eq!(rc.nr_blocks(), nr as u64);
    for (b, (&c, &k)) in m.cur.iter().zip(&m.committed).enumerate() {
        assert_eq!(rc.get(b as u64), c, "count of {b}");
        assert_eq!(rc.get_committed_small(b as u64), k.min(3), "committed {b}");
    }
    let nonzero: Vec<(u64, u32)> = (m.cur.iter().enumerate())
        .filter(|(_, &c)| c > 0)
        .map(|(b, &c)| (b as u64, c))
        .collect();
    assert_eq!(rc.iter_nonzero().collect::<Vec<_>>(), nonzero);
    assert_eq!(rc.nr_allocated(), nonzero.len() as u64);
    assert_eq!(rc.nr_free(), (nr - nonzero.len()) as u64);
    let both = (0..nr).filter(|&b| m.free_in_both(b)).count() as u64;
    assert_eq!(rc.nr_allocatable(), both);
    for bm in 0..nr_bitmaps(nr as u64) as usize {
        check_words(rc.bitmap_words(bm as u64), &m.cur, bm);
        assert_eq!(rc.bitmap_stats(bm as u64), expected_stats(&m.cur, bm));
    }
}

/// Bare counts plus what a commit would persist: the dirty sets must cover
/// every change since the last commit.
struct CountsHarness {
    rc: RefCounts,
    m: Model,
    words_at_commit: Vec<u64>,
    overflow_on_disk: BTreeMap<u64, u32>,
}

impl CountsHarness {
    fn commit(&mut self) {
        let nbm = nr_bitmaps(self.rc.nr_blocks());
        for bm in 0..nbm {
            let s = bm as usize * WORDS_PER_BITMAP;
            let old = self.words_at_commit.get(s..s + WORDS_PER_BITMAP);
            if old != Some(self.rc.bitmap_words(bm)) {
                assert!(
                    self.rc.dirty_bitmaps().contains(&bm),
                    "bitmap {bm} not dirty"
                );
            }
        }
        for (b, c) in self.rc.take_dirty_overflow() {
            match c {
                Some(c) => self.overflow_on_disk.insert(b, c),
                None => self.overflow_on_disk.remove(&b),
            };
        }
        let want: BTreeMap<u64, u32> = (self.m.cur.iter().enumerate())
            .filter(|(_, &c)| c >= 3)
            .map(|(b, &c)| (b as u64, c))
            .collect();
        assert_eq!(
            self.overflow_on_disk, want,
            "dirty overflow missed a change"
        );
        self.rc.commit();
        self.m.committed = self.m.cur.clone();
        self.words_at_commit = (0..nbm)
            .flat_map(|bm| self.rc.bitmap_words(bm).to_vec())
            .collect();
    }
}

fn run_counts(nr: u64, ops: &[Op]) {
    let mut h = CountsHarness {
        rc: RefCounts::new(nr),
        m: Model::new(nr),
        words_at_commit: Vec::new(),
        overflow_on_disk: BTreeMap::new(),
    };
    h.commit();
    for op in ops {
        if !apply_counts(&mut h.rc, &mut h.m, op) && matches!(op, Op::Commit) {
            h.commit();
        }
        check_counts(&h.rc, &h.m);
    }
}

/// A store with a data space map and its model.
struct DataHarness {
    s: Store,
    m: Model,
}

impl DataHarness {
    fn check_counts(&self) {
        check_counts(self.s.dsm.as_ref().expect("dsm").counts(), &self.m);
    }

    fn apply(&mut self, op: &Op) {
        let dsm = self.s.dsm.as_mut().expect("data space map");
        if let Op::Grow { extra } = op {
            let n = self.m.cur.len() + *extra as usize;
            dsm.grow(n as u64);
            self.m.cur.resize(n, 0);
            self.m.committed.resize(n, 0);
            return;
        }
        if apply_counts(dsm.counts_mut(), &mut self.m, op) {
            return;
        }
        match op {
            Op::GrowMeta { extra } => {
                let n = (self.s.tm.counts().nr_blocks() + extra).min(self.s.cfg.dev_blocks);
                self.s.msm.grow(&mut self.s.tm, n).unwrap();
            }
            Op::Commit => {
                self.s.commit().unwrap();
                self.m.committed = self.m.cur.clone();
                self.check_disk();
            }
            Op::Abort => {
                self.s.abort().unwrap();
                let n = self.s.committed.data.expect("data sm root").nr_blocks as usize;
                self.m.committed.truncate(n);
                self.m.cur = self.m.committed.clone();
            }
            _ => unreachable!("{op:?}"),
        }
    }

    /// Decodes the committed data space map from disk and compares it with
    /// the model; reopens it; checks the metadata counts.
    fn check_disk(&mut self) {
        let root = self.s.committed.data.expect("data sm root");
        let m = &self.m.committed;
        assert_eq!(root.nr_blocks, m.len() as u64);
        assert_eq!(
            root.nr_allocated,
            m.iter().filter(|&&c| c > 0).count() as u64
        );
        let tm = &self.s.tm;
        let mut next = 0usize;
        btree::walk::<IndexEntry>(tm, root.bitmap_root, 0, u64::MAX, &mut |k, e| {
            assert_eq!(k, next as u64, "index keys");
            let d = tm.read(e.blocknr, &BITMAP)?;
            let words: Vec<u64> = (0..WORDS_PER_BITMAP)
                .map(|i| le64(&d[..], 16 + 8 * i))
                .collect();
            check_words(&words, m, next);
            assert_eq!((e.nr_free, e.none_free_before), expected_stats(m, next));
            next += 1;
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        assert_eq!(next as u64, nr_bitmaps(m.len() as u64), "index entries");
        let overflow: BTreeMap<u64, u32> = read_overflow(tm, root.ref_count_root)
            .unwrap()
            .into_iter()
            .collect();
        let want: BTreeMap<u64, u32> = (m.iter().enumerate())
            .filter(|(_, &c)| c >= 3)
            .map(|(b, &c)| (b as u64, c))
            .collect();
        assert_eq!(overflow, want, "ref-count tree");
        let reopened = DataSpaceMap::open(tm, &root).unwrap();
        let rc = reopened.counts();
        for (b, &c) in m.iter().enumerate() {
            assert_eq!(rc.get(b as u64), c, "reopened count of {b}");
        }
        assert_eq!(rc.nr_allocated(), root.nr_allocated);
        self.s.check_counts(Some(&[]));
    }
}

fn run_data(cfg: Config, data_blocks: u64, ops: &[Op]) {
    let mut cfg = cfg;
    cfg.data_blocks = Some(data_blocks);
    let mut h = DataHarness {
        s: Store::mem(cfg),
        m: Model::new(data_blocks),
    };
    h.check_disk();
    for op in ops {
        h.apply(op);
        h.check_counts();
    }
    h.apply(&Op::Commit);
    h.apply(&Op::Abort);
    h.check_counts();
}

fn nr_blocks() -> impl Strategy<Value = u64> {
    prop_oneof![0..200u64, 16_000..40_000u64]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn refcounts_match_model(nr in nr_blocks(), ops in proptest::collection::vec(op(), 1..60)) {
        run_counts(nr, &ops);
    }

    #[test]
    fn data_sm_persists(
        data_blocks in nr_blocks(),
        cache in prop_oneof![Just(SMALL_CACHE), Just(BIG_CACHE)],
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut cfg = Config::new(2000, cache);
        cfg.dev_blocks = 40_000;
        run_data(cfg, data_blocks, &ops);
    }
}

/// Fills a small map completely: the last allocations must skip blocks
/// freed in the same transaction and report exhaustion.
#[test]
fn alloc_exhaustion_respects_committed_state() {
    let mut rc = RefCounts::new(100);
    let mut m = Model::new(100);
    for _ in 0..100 {
        let got = rc.alloc();
        m.alloc(got, 0, 100);
    }
    rc.commit();
    m.committed = m.cur.clone();
    for b in [3u64, 50, 99] {
        rc.set(b, 0);
        m.cur[b as usize] = 0;
    }
    assert_eq!(rc.alloc(), None);
    assert_eq!(rc.nr_allocatable(), 0);
    rc.commit();
    m.committed = m.cur.clone();
    for _ in 0..3 {
        let got = rc.alloc();
        m.alloc(got, 0, 100);
    }
    assert_eq!(rc.alloc(), None);
    check_counts(&rc, &m);
}
