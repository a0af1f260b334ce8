//! Model-based test of the copy-on-write B-tree (u64 -> u64, `NoRefs`)
//! against `BTreeMap`s.
//!
//! A proptest state machine drives up to four tree slots through inserts
//! (single keys from small and huge key spaces, runs of up to 2000
//! consecutive keys), removes, range removes, lookups, snapshots (a root
//! shared by `tm.inc`, after which both trees diverge), deep deletes, commits
//! and aborts (back to the models of the last commit).  After every step each
//! live tree must walk exactly like its model, answer lookups, `lookup_ge`,
//! `highest_key` and `lowest_key` like it, satisfy the node invariants of
//! FORMAT.md §2.3, and every metadata reference count must be exact (§9).
//! At the end all trees are deleted: only the space maps' own blocks may
//! stay allocated.  Some cases start from a prefilled 3-level tree, use a
//! 64-block cache (eviction and write-back), or pin 16300 blocks so that the
//! trees live across the boundary of the second metadata bitmap.

mod common;

use common::{check_tree, Config, Store, BIG_CACHE, SMALL_CACHE};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use uthin_pdata::btree::node::NodeMut;
use uthin_pdata::btree::{self, NoRefs};
use uthin_pdata::validator::NODE;
use uthin_pdata::MetaBlock;

const SLOTS: usize = 4;
type Model = BTreeMap<u64, u64>;

#[derive(Clone, Debug)]
enum Op {
    Insert {
        t: usize,
        key: u64,
        val: u64,
    },
    InsertRun {
        t: usize,
        start: u64,
        len: u64,
        stride: u64,
        val: u64,
    },
    Remove {
        t: usize,
        key: u64,
    },
    RemoveExisting {
        t: usize,
        idx: Index,
    },
    RemoveRange {
        t: usize,
        begin: u64,
        len: u64,
    },
    Lookup {
        t: usize,
        key: u64,
    },
    LookupGe {
        t: usize,
        key: u64,
    },
    Snapshot {
        from: usize,
        to: usize,
    },
    Delete {
        t: usize,
    },
    Commit,
    Abort,
}

fn key() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0..600u64,
        4 => 0..60_000u64,
        1 => any::<u64>(),
        1 => Just(u64::MAX),
        1 => Just(0u64),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..SLOTS;
    prop_oneof![
        8 => (t.clone(), key(), any::<u64>()).prop_map(|(t, key, val)| Op::Insert { t, key, val }),
        4 => (t.clone(), 0..60_000u64, 1..2000u64, prop_oneof![Just(1u64), 2..4u64], any::<u64>())
            .prop_map(|(t, start, len, stride, val)| Op::InsertRun { t, start, len, stride, val }),
        3 => (t.clone(), key()).prop_map(|(t, key)| Op::Remove { t, key }),
        6 => (t.clone(), any::<Index>()).prop_map(|(t, idx)| Op::RemoveExisting { t, idx }),
        3 => (t.clone(), key(), prop_oneof![0..10u64, 0..3000u64, Just(u64::MAX)])
            .prop_map(|(t, begin, len)| Op::RemoveRange { t, begin, len }),
        2 => (t.clone(), key()).prop_map(|(t, key)| Op::Lookup { t, key }),
        2 => (t.clone(), key()).prop_map(|(t, key)| Op::LookupGe { t, key }),
        2 => (t.clone(), t.clone()).prop_map(|(from, to)| Op::Snapshot { from, to }),
        1 => t.prop_map(|t| Op::Delete { t }),
        2 => Just(Op::Commit),
        1 => Just(Op::Abort),
    ]
}

/// The store plus one model per slot, current and as of the last commit.
struct Harness {
    s: Store,
    models: Vec<Option<Model>>,
    committed: Vec<Option<Model>>,
}

impl Harness {
    fn new(cfg: Config) -> Self {
        Harness {
            s: Store::mem(cfg),
            models: vec![None; cfg.slots],
            committed: vec![None; cfg.slots],
        }
    }

    /// The root of slot `t`, creating an empty tree if there is none.
    fn root(&mut self, t: usize) -> MetaBlock {
        if self.s.roots[t].is_none() {
            self.s.roots[t] = Some(btree::empty_tree::<u64>(&mut self.s.tm).unwrap());
            self.models[t] = Some(Model::new());
        }
        self.s.roots[t].unwrap()
    }

    fn insert(&mut self, t: usize, key: u64, val: u64) {
        let root = self.root(t);
        let (r, old) = btree::insert(&mut self.s.tm, &mut NoRefs, root, key, val).unwrap();
        self.s.roots[t] = Some(r);
        assert_eq!(old, self.models[t].as_mut().unwrap().insert(key, val));
    }

    fn remove(&mut self, t: usize, key: u64) {
        let root = self.root(t);
        let (r, old) = btree::remove::<u64, _>(&mut self.s.tm, &mut NoRefs, root, key).unwrap();
        self.s.roots[t] = Some(r);
        assert_eq!(
            old,
            self.models[t].as_mut().unwrap().remove(&key),
            "remove {key}"
        );
    }

    fn delete(&mut self, t: usize) {
        if let Some(r) = self.s.roots[t].take() {
            btree::delete_tree::<u64, _>(&mut self.s.tm, &mut NoRefs, r).unwrap();
            self.models[t] = None;
        }
    }

    fn commit(&mut self) {
        self.s.commit().unwrap();
        self.committed = self.models.clone();
    }

    fn abort(&mut self) {
        self.s.abort().unwrap();
        self.models = self.committed.clone();
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Insert { t, key, val } => self.insert(t, key, val),
            Op::InsertRun {
                t,
                start,
                len,
                stride,
                val,
            } => {
                for i in 0..len {
                    let k = start + i * stride;
                    self.insert(t, k, val ^ k);
                }
            }
            Op::Remove { t, key } => self.remove(t, key),
            Op::RemoveExisting { t, idx } => {
                let m = self.models[t].as_ref();
                if let Some(k) = m.filter(|m| !m.is_empty()).map(|m| {
                    let i = idx.index(m.len());
                    *m.keys().nth(i).unwrap()
                }) {
                    self.remove(t, k);
                }
            }
            Op::RemoveRange { t, begin, len } => {
                let root = self.root(t);
                let end = begin.saturating_add(len);
                let (r, n) =
                    btree::remove_range::<u64, _>(&mut self.s.tm, &mut NoRefs, root, begin, end)
                        .unwrap();
                self.s.roots[t] = Some(r);
                let m = self.models[t].as_mut().unwrap();
                let gone: Vec<u64> = m.range(begin..end).map(|(k, _)| *k).collect();
                for k in &gone {
                    m.remove(k);
                }
                assert_eq!(n, gone.len() as u64, "remove_range {begin}..{end}");
            }
            Op::Lookup { t, key } => {
                if let Some(r) = self.s.roots[t] {
                    let got = btree::lookup::<u64>(&self.s.tm, r, key).unwrap();
                    assert_eq!(got, self.models[t].as_ref().unwrap().get(&key).copied());
                }
            }
            Op::LookupGe { t, key } => {
                if let Some(r) = self.s.roots[t] {
                    let got = btree::lookup_ge::<u64>(&self.s.tm, r, key).unwrap();
                    let m = self.models[t].as_ref().unwrap();
                    assert_eq!(got, m.range(key..).next().map(|(k, v)| (*k, *v)));
                }
            }
            Op::Snapshot { from, to } => {
                if from != to && self.s.roots[from].is_some() {
                    self.delete(to);
                    let r = self.s.roots[from].unwrap();
                    self.s.tm.inc(r).unwrap();
                    self.s.roots[to] = Some(r);
                    self.models[to] = self.models[from].clone();
                }
            }
            Op::Delete { t } => self.delete(t),
            Op::Commit => self.commit(),
            Op::Abort => self.abort(),
        }
    }

    /// Every live tree against its model, node invariants, exact counts.
    fn check(&self) {
        let tm = &self.s.tm;
        for (t, root) in self.s.roots.iter().enumerate() {
            let Some(root) = *root else {
                assert!(self.models[t].is_none());
                continue;
            };
            let m = self.models[t].as_ref().unwrap();
            let mut got = Vec::with_capacity(m.len());
            btree::walk::<u64>(tm, root, 0, u64::MAX, &mut |k, v| {
                got.push((k, v));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
            // walk's end is exclusive: u64::MAX itself is looked up separately.
            let want: Vec<(u64, u64)> = m.range(..u64::MAX).map(|(k, v)| (*k, *v)).collect();
            assert_eq!(got.len(), want.len(), "tree {t}: walk length");
            assert!(got == want, "tree {t}: walk differs from the model");
            let probe = |k: u64| btree::lookup::<u64>(tm, root, k).unwrap();
            assert_eq!(probe(u64::MAX), m.get(&u64::MAX).copied());
            let first = m.keys().next().copied();
            let last = m.keys().next_back().copied();
            assert_eq!(btree::lowest_key::<u64>(tm, root).unwrap(), first);
            assert_eq!(btree::highest_key::<u64>(tm, root).unwrap(), last);
            if let (Some(f), Some(l)) = (first, last) {
                let mid = *m.keys().nth(m.len() / 2).unwrap();
                for k in [f, l, mid, mid.wrapping_add(1), f.wrapping_sub(1)] {
                    assert_eq!(probe(k), m.get(&k).copied(), "tree {t}: lookup {k}");
                }
            }
            let shape = check_tree::<u64>(tm, root);
            assert_eq!(shape.entries, m.len(), "tree {t}: entries");
        }
        self.s.check_counts(None);
    }

    /// Deletes everything and commits: only the space maps' blocks remain.
    fn finish(&mut self) {
        for t in 0..SLOTS {
            self.delete(t);
        }
        self.commit();
        self.check();
        let sm_only = self.s.expected_counts(&[]).unwrap().len() as u64;
        assert_eq!(self.s.tm.counts().nr_allocated(), sm_only, "leaked blocks");
        self.abort();
        self.check();
    }
}

/// Inserts keys 0, 3, 6, ... into tree `t` until it has `depth` levels
/// (whatever the insert policy's fill); returns the number of keys.
fn fill_to_depth(h: &mut Harness, t: usize, depth: usize) -> u64 {
    let mut i = 0u64;
    loop {
        for _ in 0..2000 {
            h.insert(t, i * 3, i);
            i += 1;
        }
        if check_tree::<u64>(&h.s.tm, h.s.roots[t].unwrap()).depth >= depth {
            return i;
        }
        assert!(i < 200_000, "no {depth} levels after {i} keys");
    }
}

fn run(cfg: Config, prefill: bool, ops: &[Op]) {
    let mut h = Harness::new(cfg);
    if prefill {
        fill_to_depth(&mut h, 0, 3);
        h.commit();
        h.check();
    }
    for op in ops {
        h.apply(op);
        h.check();
    }
    h.finish();
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop_oneof![Just(SMALL_CACHE), Just(BIG_CACHE)],
        prop_oneof![3 => Just(false), 1 => Just(true)],
    )
        .prop_map(|(cache, ballast)| {
            let mut c = Config::new(if ballast { 20_000 } else { 8192 }, cache);
            if ballast {
                c.pinned = 16_300;
            }
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        max_shrink_iters: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn btree_matches_model(
        cfg in config(),
        prefill in prop_oneof![3 => Just(false), 1 => Just(true)],
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(cfg, prefill, &ops);
    }
}

/// Snapshots of a 3-level tree diverge and are deleted without leaks.
#[test]
fn three_levels_snapshot_and_delete() {
    let mut h = Harness::new(Config::new(8192, SMALL_CACHE));
    fill_to_depth(&mut h, 0, 3);
    h.commit();
    h.apply(&Op::Snapshot { from: 0, to: 1 });
    h.apply(&Op::Snapshot { from: 0, to: 2 });
    h.apply(&Op::Snapshot { from: 1, to: 3 });
    h.check();
    h.commit();
    h.check();
    for (t, start) in [(0, 0u64), (1, 50_000), (2, 90_000), (3, 100_001)] {
        h.apply(&Op::RemoveRange {
            t,
            begin: start,
            len: 7000,
        });
        h.apply(&Op::InsertRun {
            t,
            start: start + 1,
            len: 1999,
            stride: 1,
            val: 7,
        });
        h.check();
    }
    h.commit();
    h.check();
    h.apply(&Op::Delete { t: 0 });
    h.apply(&Op::Abort);
    h.check();
    h.finish();
}

/// Builds tree `t` by hand: one root over leaves holding `leaves` (keys;
/// value = key), independent of the insert policy.
fn build_two_level(h: &mut Harness, t: usize, leaves: &[Vec<u64>]) {
    let tm = &mut h.s.tm;
    let mut root = tm.new_block().unwrap();
    NodeMut::new(root.bytes()).init(false, 8);
    for (i, keys) in leaves.iter().enumerate() {
        let mut leaf = tm.new_block().unwrap();
        let mut n = NodeMut::new(leaf.bytes());
        n.init(true, 8);
        for (j, k) in keys.iter().enumerate() {
            n.insert_at(j, *k, &k.to_le_bytes());
        }
        NodeMut::new(root.bytes()).insert_at(i, keys[0], &leaf.loc.0.to_le_bytes());
        tm.put(leaf, &NODE).unwrap();
    }
    h.s.roots[t] = Some(root.loc);
    tm.put(root, &NODE).unwrap();
    h.models[t] = Some(leaves.iter().flatten().map(|k| (*k, *k)).collect());
}

/// Regression: `rebalance3` (remove.rs) overfilled the centre node.  With a
/// full left (252), a full centre (252) and a small right (85), removing a
/// key of the centre evened the left out first, prepending its surplus to
/// the already full centre (307 entries): `prepend_from` ran past the end of
/// the block and panicked.  The centre must hand its surplus to the right
/// first.
#[test]
fn regression_rebalance3_full_left_and_centre() {
    let mut h = Harness::new(Config::new(4096, BIG_CACHE));
    // Keys 10, 20, ... split into leaves of these sizes.
    let mut keys = (1u64..).map(|i| i * 10);
    let leaves: Vec<Vec<u64>> = [126usize, 252, 252, 85, 85]
        .iter()
        .map(|&n| keys.by_ref().take(n).collect())
        .collect();
    build_two_level(&mut h, 0, &leaves);
    h.check();
    // A key of the centre leaf (leaf 2): rebalance3(1, 2, 3).
    h.remove(0, leaves[2][10]);
    h.check();
    h.commit();
    h.check();
    h.finish();
}

/// Regression: `btree::remove` of key `u64::MAX` found nothing.  It asked
/// the leaf walk for the half-open range `[key, key + 1)` with a saturating
/// add, which is empty for `u64::MAX`; the key stayed in the tree while the
/// call reported it absent.  The walk now takes an inclusive bound.
#[test]
fn regression_remove_u64_max() {
    let mut h = Harness::new(Config::new(1024, BIG_CACHE));
    h.insert(0, u64::MAX, 1);
    h.insert(0, 5, 2);
    h.check();
    h.remove(0, u64::MAX);
    h.check();
    assert_eq!(h.models[0].as_ref().unwrap().len(), 1);
    h.finish();
}

/// Many one-insert transactions on a map whose free blocks are 10 at the
/// end of the first bitmap and 40 in the second: the allocator wraps
/// around the boundary inside commits, so a commit moves bitmaps that only
/// its own allocations dirtied (the fix-point of the metadata space-map
/// commit).  Every commit checks nothing reachable from the previous commit
/// was written in place, and every count.
#[test]
fn tiny_commits_across_the_bitmap_boundary() {
    let mut cfg = Config::new(16_320 + 40, SMALL_CACHE);
    cfg.pinned = 16_310;
    let mut h = Harness::new(cfg);
    for i in 0..400u64 {
        match i % 7 {
            0..=4 => h.insert(0, (i * 37) % 500, i),
            5 => h.remove(0, (i * 11) % 500),
            _ => h.apply(&Op::Snapshot { from: 0, to: 1 }),
        }
        h.commit();
        h.check();
        if i % 50 == 49 {
            h.abort();
            h.check();
        }
    }
    h.finish();
}
