//! Model-based test of the lazy reference counting of B-tree *values*
//! (FORMAT.md §4.2, §9), the part `NoRefs` trees cannot see.
//!
//! Leaf values are "data blocks" counted in a `RefCounts` through a
//! `RefCounter`: an insert transfers the caller's reference, an overwrite
//! with another value and a remove drop the old value's, copying a shared
//! leaf (after a snapshot `tm.inc(root)`) adds one per value of the copy, and
//! a deep delete drops the values of the leaves it frees.  After every step
//! each count must equal the §9 rule: one per value slot over *distinct*
//! leaves of all live trees.  The trees must match their `BTreeMap` models
//! and the metadata counts must be exact.  Commit and abort roll the data
//! counts with the trees; at the end everything is deleted and every data
//! count must be 0.

mod common;

use common::{check_tree, Config, Store, BIG_CACHE, SMALL_CACHE};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use uthin_pdata::btree::{self, RefCounter};
use uthin_pdata::sm::RefCounts;
use uthin_pdata::tm::TransactionManager;
use uthin_pdata::{Error, Result};

const SLOTS: usize = 4;
const DATA_BLOCKS: u64 = 1000;
type Model = BTreeMap<u64, u64>;

/// Values are data blocks counted here.
struct DataRefs(RefCounts);

impl RefCounter<u64> for DataRefs {
    fn inc(&mut self, _: &mut TransactionManager, v: &u64) -> Result<()> {
        let c = self.0.adjust(*v, 1);
        c.map(|_| ())
            .ok_or_else(|| Error::Invalid(format!("inc {v}")))
    }
    fn dec(&mut self, _: &mut TransactionManager, v: &u64) -> Result<()> {
        let c = self.0.adjust(*v, -1);
        c.map(|_| ())
            .ok_or_else(|| Error::Invalid(format!("dec {v} below 0")))
    }
}

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
        val: u64,
    },
    Remove {
        t: usize,
        key: u64,
    },
    RemoveRange {
        t: usize,
        begin: u64,
        len: u64,
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

fn op() -> impl Strategy<Value = Op> {
    let (t, key, val) = (0..SLOTS, 0..3000u64, 0..DATA_BLOCKS);
    prop_oneof![
        10 => (t.clone(), key.clone(), val.clone())
            .prop_map(|(t, key, val)| Op::Insert { t, key, val }),
        3 => (t.clone(), key.clone(), 1..600u64, val)
            .prop_map(|(t, start, len, val)| Op::InsertRun { t, start, len, val }),
        5 => (t.clone(), key.clone()).prop_map(|(t, key)| Op::Remove { t, key }),
        2 => (t.clone(), key, 0..800u64)
            .prop_map(|(t, begin, len)| Op::RemoveRange { t, begin, len }),
        3 => (t.clone(), t.clone()).prop_map(|(from, to)| Op::Snapshot { from, to }),
        1 => t.prop_map(|t| Op::Delete { t }),
        2 => Just(Op::Commit),
        1 => Just(Op::Abort),
    ]
}

struct Harness {
    s: Store,
    data: DataRefs,
    models: Vec<Option<Model>>,
    committed: (RefCounts, Vec<Option<Model>>),
}

impl Harness {
    fn new(cache: usize) -> Self {
        let data = RefCounts::new(DATA_BLOCKS);
        Harness {
            s: Store::mem(Config::new(4096, cache)),
            committed: (data.clone(), vec![None; SLOTS]),
            data: DataRefs(data),
            models: vec![None; SLOTS],
        }
    }

    fn root(&mut self, t: usize) -> uthin_pdata::MetaBlock {
        if self.s.roots[t].is_none() {
            self.s.roots[t] = Some(btree::empty_tree::<u64>(&mut self.s.tm).unwrap());
            self.models[t] = Some(Model::new());
        }
        self.s.roots[t].unwrap()
    }

    fn insert(&mut self, t: usize, key: u64, val: u64) {
        let root = self.root(t);
        // The caller's reference, transferred into the tree.
        self.data.0.adjust(val, 1).unwrap();
        let (r, old) = btree::insert(&mut self.s.tm, &mut self.data, root, key, val).unwrap();
        self.s.roots[t] = Some(r);
        if old == Some(val) {
            // An equal overwrite decrements nothing: give the reference back.
            self.data.0.adjust(val, -1).unwrap();
        }
        assert_eq!(old, self.models[t].as_mut().unwrap().insert(key, val));
    }

    fn delete(&mut self, t: usize) {
        if let Some(r) = self.s.roots[t].take() {
            btree::delete_tree::<u64, _>(&mut self.s.tm, &mut self.data, r).unwrap();
            self.models[t] = None;
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Insert { t, key, val } => self.insert(t, key, val),
            Op::InsertRun { t, start, len, val } => {
                for k in start..start + len {
                    self.insert(t, k, (val + k) % DATA_BLOCKS);
                }
            }
            Op::Remove { t, key } => {
                let root = self.root(t);
                let tm = &mut self.s.tm;
                let (r, old) = btree::remove::<u64, _>(tm, &mut self.data, root, key).unwrap();
                self.s.roots[t] = Some(r);
                assert_eq!(old, self.models[t].as_mut().unwrap().remove(&key));
            }
            Op::RemoveRange { t, begin, len } => {
                let root = self.root(t);
                let (tm, end) = (&mut self.s.tm, begin + len);
                let (r, n) =
                    btree::remove_range::<u64, _>(tm, &mut self.data, root, begin, end).unwrap();
                self.s.roots[t] = Some(r);
                let m = self.models[t].as_mut().unwrap();
                let before = m.len();
                m.retain(|k, _| *k < begin || *k >= end);
                assert_eq!(n, (before - m.len()) as u64);
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
            Op::Commit => {
                self.s.commit().unwrap();
                self.committed = (self.data.0.clone(), self.models.clone());
            }
            Op::Abort => {
                self.s.abort().unwrap();
                self.data.0 = self.committed.0.clone();
                self.models = self.committed.1.clone();
            }
        }
    }

    fn check(&self) {
        let tm = &self.s.tm;
        let mut want = vec![0u32; DATA_BLOCKS as usize];
        let mut seen = HashSet::new();
        for (t, root) in self.s.roots.iter().enumerate() {
            let Some(root) = *root else { continue };
            let m = self.models[t].as_ref().unwrap();
            let mut got = Model::new();
            btree::walk::<u64>(tm, root, 0, u64::MAX, &mut |k, v| {
                got.insert(k, v);
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
            assert!(got == *m, "tree {t} differs from its model");
            assert_eq!(check_tree::<u64>(tm, root).entries, m.len());
            // §9: one count per value slot of each distinct leaf.
            btree::walk_nodes::<u64>(tm, root, &mut |blk, n| {
                if !seen.insert(blk) {
                    return Ok(false);
                }
                if n.is_leaf() {
                    for i in 0..n.nr_entries() {
                        want[u64::from_le_bytes(n.value(i).try_into().unwrap()) as usize] += 1;
                    }
                }
                Ok(true)
            })
            .unwrap();
        }
        for (b, &w) in want.iter().enumerate() {
            assert_eq!(self.data.0.get(b as u64), w, "data block {b}");
        }
        self.s.check_counts(None);
    }
}

fn run(cache: usize, ops: &[Op]) {
    let mut h = Harness::new(cache);
    for op in ops {
        h.apply(op);
        h.check();
    }
    for t in 0..SLOTS {
        h.delete(t);
    }
    h.check();
    assert_eq!(h.data.0.nr_allocated(), 0, "data references leaked");
    h.apply(&Op::Commit);
    h.check();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn value_refs_follow_the_lazy_rule(
        cache in prop_oneof![Just(SMALL_CACHE), Just(BIG_CACHE)],
        ops in proptest::collection::vec(op(), 1..50),
    ) {
        run(cache, &ops);
    }
}

/// A snapshot shares every leaf (counts unchanged); the first change to
/// each side copies only the path it touches, adding one count per value of
/// each copied leaf; deleting one side then drops exactly those.
#[test]
fn snapshot_copies_only_touched_leaves() {
    let mut h = Harness::new(BIG_CACHE);
    h.apply(&Op::InsertRun {
        t: 0,
        start: 0,
        len: 2000,
        val: 0,
    });
    h.apply(&Op::Commit);
    let before = h.data.0.clone();
    h.apply(&Op::Snapshot { from: 0, to: 1 });
    h.check();
    assert_eq!(
        h.data.0.iter_nonzero().collect::<Vec<_>>(),
        before.iter_nonzero().collect::<Vec<_>>()
    );
    h.apply(&Op::Remove { t: 1, key: 1000 });
    h.check();
    h.apply(&Op::Insert {
        t: 0,
        key: 5,
        val: 999,
    });
    h.check();
    h.apply(&Op::Delete { t: 0 });
    h.check();
    h.apply(&Op::Abort);
    h.check();
    run(SMALL_CACHE, &[]);
}
