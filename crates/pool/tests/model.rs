//! Model test: a proptest state machine drives the pool with random steps
//! and compares it with a byte-level model of every volume.
//!
//! Steps: batches of up to three I/O requests run on parallel threads
//! (writes at any offset and length, FUA writes, reads, discards,
//! write-zeroes with and without unmapping; requests touching the same
//! blocks of a volume run one after the other), creating volumes, snapshots
//! (of snapshots), deletes, flushes, growing the data device, and reopening
//! the pool.  A background commit runs every 10 ms meanwhile.  One volume
//! reads through an external origin, and so do its snapshots.
//!
//! Every read must equal the model.  After each flush step every volume is
//! read whole, Debian's thin_check passes on the metadata, and every data
//! block is referenced by a mapping exactly when its count is non-zero
//! (blocks freed by discards are free).  At the end of each case the
//! stricter thin_check 1.x passes too.

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use uthin_block_io::testing::MemDevice;
use uthin_block_io::SharedDevice;
use uthin_pool::{DataBlock, DevId, Pool, PoolConfig, Thin, VirtBlock};

const VOL_BLOCKS: u64 = 8;
const VOL_BYTES: u64 = VOL_BLOCKS * BLOCK;
const MAX_VOLS: usize = 6;
const ORIGIN_BYTES: usize = (2 * BLOCK + BLOCK / 2 + 123) as usize;

#[derive(Clone, Debug)]
enum Io {
    Write {
        vol: u8,
        off: u64,
        len: u64,
        seed: u64,
        fua: bool,
    },
    Read {
        vol: u8,
        off: u64,
        len: u64,
    },
    Discard {
        vol: u8,
        off: u64,
        len: u64,
    },
    Zero {
        vol: u8,
        off: u64,
        len: u64,
        unmap: bool,
    },
}

#[derive(Clone, Debug)]
enum Step {
    Io(Vec<Io>),
    Create,
    Snap(u8),
    Delete(u8),
    Flush,
    Grow,
    Reopen,
}

fn range() -> impl Strategy<Value = (u64, u64)> {
    (0..VOL_BYTES, 1..(5 * BLOCK / 2)).prop_map(|(off, len)| (off, len.min(VOL_BYTES - off)))
}

fn io() -> impl Strategy<Value = Io> {
    prop_oneof![
        5 => (any::<u8>(), range(), any::<u64>(), prop::bool::weighted(0.15))
            .prop_map(|(vol, (off, len), seed, fua)| Io::Write { vol, off, len, seed, fua }),
        // Block-aligned writes, so whole blocks get written (no zeroing).
        2 => (any::<u8>(), 0..VOL_BLOCKS, 1..5u64, any::<u64>())
            .prop_map(|(vol, b, n, seed)| Io::Write {
                vol,
                off: b * BLOCK,
                len: (n * BLOCK).min(VOL_BYTES - b * BLOCK),
                seed,
                fua: false
            }),
        3 => (any::<u8>(), range()).prop_map(|(vol, (off, len))| Io::Read { vol, off, len }),
        2 => (any::<u8>(), range()).prop_map(|(vol, (off, len))| Io::Discard { vol, off, len }),
        1 => (any::<u8>(), range(), any::<bool>())
            .prop_map(|(vol, (off, len), unmap)| Io::Zero { vol, off, len, unmap }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        30 => prop::collection::vec(io(), 1..=3).prop_map(Step::Io),
        2 => Just(Step::Create),
        4 => any::<u8>().prop_map(Step::Snap),
        2 => any::<u8>().prop_map(Step::Delete),
        3 => Just(Step::Flush),
        1 => Just(Step::Grow),
        2 => Just(Step::Reopen),
    ]
}

/// One volume of the model.
struct Vol {
    bytes: Vec<u8>,
    origin: bool,
}

struct Harness {
    meta: Arc<MemDevice>,
    data: Arc<MemDevice>,
    origin: Arc<MemDevice>,
    origin_bytes: Vec<u8>,
    cfg: PoolConfig,
    pool: Arc<Pool>,
    thins: BTreeMap<u64, Thin>,
    model: BTreeMap<u64, Vol>,
    next_id: u64,
}

impl Harness {
    /// A pool whose cells and cached mappings live in `tables`.
    fn new(tables: Tables) -> Self {
        let mut cfg = cfg();
        cfg.mapping_cache_entries = tables.hashed_cache;
        cfg.dense_table_bytes = tables.dense_bytes;
        cfg.dense_leaf_blocks = tables.leaf_blocks;
        cfg.commit_period = Duration::from_millis(10);
        cfg.features.error_if_no_space = true;
        let meta = Arc::new(MemDevice::new(4 << 20));
        // Garbage, so a block used without zeroing shows.
        let data = Arc::new(MemDevice::from_bytes(vec![0xa5; 56 * BLOCK as usize]));
        let origin_bytes = pattern(0x0819, 0, ORIGIN_BYTES);
        let origin = Arc::new(MemDevice::from_bytes(origin_bytes.clone()));
        let pool = Pool::open(meta.clone(), data.clone(), cfg.clone()).unwrap();
        let mut h = Harness {
            meta,
            data,
            origin,
            origin_bytes,
            cfg,
            pool,
            thins: BTreeMap::new(),
            model: BTreeMap::new(),
            next_id: 0,
        };
        h.create(true);
        h.create(false);
        h
    }

    fn origin_view(&self) -> Vec<u8> {
        let mut v = self.origin_bytes.clone();
        v.resize(VOL_BYTES as usize, 0);
        v
    }

    fn open(&self, id: u64) -> Thin {
        let origin = self.model[&id]
            .origin
            .then(|| self.origin.clone() as SharedDevice);
        self.pool.thin(DevId(id), origin).unwrap()
    }

    fn create(&mut self, with_origin: bool) {
        let id = self.next_id;
        self.next_id += 1;
        self.pool.message(&format!("create_thin {id}")).unwrap();
        let bytes = if with_origin {
            self.origin_view()
        } else {
            vec![0; VOL_BYTES as usize]
        };
        self.model.insert(
            id,
            Vol {
                bytes,
                origin: with_origin,
            },
        );
        self.thins.insert(id, self.open(id));
    }

    fn pick(&self, k: u8) -> u64 {
        let ids: Vec<u64> = self.model.keys().copied().collect();
        ids[k as usize % ids.len()]
    }

    fn step(&mut self, s: &Step) {
        match s {
            Step::Io(ios) => self.io_batch(ios),
            Step::Create if self.model.len() < MAX_VOLS => self.create(false),
            Step::Snap(k) if self.model.len() < MAX_VOLS => {
                let o = self.pick(*k);
                let id = self.next_id;
                self.next_id += 1;
                self.pool.message(&format!("create_snap {id} {o}")).unwrap();
                let v = Vol {
                    bytes: self.model[&o].bytes.clone(),
                    origin: self.model[&o].origin,
                };
                self.model.insert(id, v);
                self.thins.insert(id, self.open(id));
            }
            Step::Delete(k) if self.model.len() > 1 => {
                let id = self.pick(*k);
                self.thins.remove(&id);
                self.pool.delete_thin(DevId(id)).unwrap();
                self.model.remove(&id);
            }
            Step::Flush => self.flush_and_check(),
            Step::Grow => {
                self.data
                    .set_len(self.data.snapshot().len() as u64 + 8 * BLOCK);
                self.pool.resize_data().unwrap();
            }
            Step::Reopen => {
                self.thins.clear();
                self.pool.close().unwrap();
                self.pool =
                    Pool::open(self.meta.clone(), self.data.clone(), self.cfg.clone()).unwrap();
                let ids: Vec<u64> = self.model.keys().copied().collect();
                for id in ids {
                    self.thins.insert(id, self.open(id));
                }
                self.check_all("after reopen");
            }
            _ => {}
        }
    }

    /// Runs a batch; in parallel unless two requests touch the same blocks.
    fn io_batch(&mut self, ios: &[Io]) {
        let reqs: Vec<(u64, Io)> = ios
            .iter()
            .map(|io| (self.pick(vol_of(io)), io.clone()))
            .collect();
        let span = |(id, io): &(u64, Io)| {
            let (off, len) = off_len(io);
            (*id, off / BLOCK, (off + len - 1) / BLOCK)
        };
        let overlap = reqs.iter().enumerate().any(|(i, a)| {
            reqs[i + 1..].iter().any(|b| {
                let (x, y) = (span(a), span(b));
                x.0 == y.0 && x.1 <= y.2 && y.1 <= x.2
            })
        });
        let results: Vec<Option<Vec<u8>>> = if overlap || reqs.len() == 1 {
            reqs.iter()
                .map(|(id, io)| {
                    let r = run_io(&self.thins[id], io);
                    self.apply(*id, io, r.as_deref());
                    r
                })
                .collect::<Vec<_>>()
        } else {
            let thins = &self.thins;
            let out: Vec<Option<Vec<u8>>> = std::thread::scope(|s| {
                let hs: Vec<_> = reqs
                    .iter()
                    .map(|(id, io)| s.spawn(move || run_io(&thins[id], io)))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for ((id, io), r) in reqs.iter().zip(&out) {
                self.apply(*id, io, r.as_deref());
            }
            out
        };
        drop(results);
    }

    /// Updates the model after `io` on volume `id` (`read`: what it read).
    fn apply(&mut self, id: u64, io: &Io, read: Option<&[u8]>) {
        let origin = self.origin_view();
        let v = self.model.get_mut(&id).unwrap();
        let (off, len) = off_len(io);
        let r = off as usize..(off + len) as usize;
        match io {
            Io::Write { seed, .. } => {
                v.bytes[r].copy_from_slice(&pattern(*seed, off, len as usize))
            }
            Io::Read { .. } => assert_bytes(
                read.unwrap(),
                &v.bytes[r],
                &format!("read of volume {id} at {off}+{len}"),
            ),
            Io::Zero { .. } => v.bytes[r].fill(0),
            Io::Discard { .. } => {
                let (b, e) = (off.div_ceil(BLOCK), (off + len) / BLOCK);
                for blk in b..e {
                    let br = (blk * BLOCK) as usize..((blk + 1) * BLOCK) as usize;
                    if v.origin {
                        v.bytes[br.clone()].copy_from_slice(&origin[br]);
                    } else {
                        v.bytes[br].fill(0);
                    }
                }
            }
        }
    }

    fn check_all(&self, what: &str) {
        let mut buf = vec![0u8; VOL_BYTES as usize];
        for (id, v) in &self.model {
            self.thins[id].read(0, &mut buf).unwrap();
            assert_bytes(&buf, &v.bytes, &format!("volume {id} {what}"));
        }
    }

    fn flush_and_check(&mut self) {
        for t in self.thins.values() {
            t.flush().unwrap();
        }
        self.check_all("after flush");
        assert_thin_check_image(&self.meta.snapshot());
        self.pool.inspect_metadata(|md| {
            let mut refs = HashSet::new();
            for dev in md.device_ids().unwrap() {
                md.for_each_mapping(dev, VirtBlock(0), VirtBlock(u64::MAX), &mut |_, bt| {
                    refs.insert(bt.block.0);
                })
                .unwrap();
            }
            for b in 0..md.data_dev_size().unwrap() {
                let c = md.data_block_count(DataBlock(b)).unwrap();
                assert_eq!(c > 0, refs.contains(&b), "data block {b}: count {c}");
            }
        });
    }
}

fn vol_of(io: &Io) -> u8 {
    match io {
        Io::Write { vol, .. }
        | Io::Read { vol, .. }
        | Io::Discard { vol, .. }
        | Io::Zero { vol, .. } => *vol,
    }
}

fn off_len(io: &Io) -> (u64, u64) {
    match io {
        Io::Write { off, len, .. }
        | Io::Read { off, len, .. }
        | Io::Discard { off, len, .. }
        | Io::Zero { off, len, .. } => (*off, *len),
    }
}

/// Runs one request; returns what a read read.
fn run_io(t: &Thin, io: &Io) -> Option<Vec<u8>> {
    match io {
        Io::Write {
            off,
            len,
            seed,
            fua,
            ..
        } => t
            .write(*off, &pattern(*seed, *off, *len as usize), *fua)
            .unwrap(),
        Io::Read { off, len, .. } => {
            let mut b = vec![0u8; *len as usize];
            t.read(*off, &mut b).unwrap();
            return Some(b);
        }
        Io::Discard { off, len, .. } => t.discard(*off, *len).unwrap(),
        Io::Zero {
            off, len, unmap, ..
        } => t.write_zeroes(*off, *len, *unmap).unwrap(),
    }
    None
}

/// Where cells and cached mappings live.
#[derive(Clone, Copy, Debug)]
struct Tables {
    hashed_cache: usize,
    dense_bytes: usize,
    leaf_blocks: u32,
}

fn tables() -> impl Strategy<Value = Tables> {
    let t = |hashed_cache, dense_bytes, leaf_blocks| Tables {
        hashed_cache,
        dense_bytes,
        leaf_blocks,
    };
    prop_oneof![
        // The hash table alone: no cache; one entry a shard (evicting all
        // the time).
        Just(t(0, 0, 256)),
        Just(t(64, 0, 256)),
        // Both: room for the mid arrays of two devices and a few leaves of
        // two blocks, so devices and blocks are split between the tables
        // (and the budget comes back when a reopen closes the devices).
        Just(t(64, (48 << 10) + 160, 2)),
        // The defaults: every block in the dense tables.
        Just(t(1 << 18, PoolConfig::default().dense_table_bytes, 256)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(24),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]
    #[test]
    fn pool_matches_model(
        steps in prop::collection::vec(step(), 10..45),
        tables in tables(),
    ) {
        let mut h = Harness::new(tables);
        for s in &steps {
            h.step(s);
        }
        h.flush_and_check();
        assert_thin_check_1x_image(&h.meta.snapshot());
        h.thins.clear();
        h.pool.close().unwrap();
    }
}
