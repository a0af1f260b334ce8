//! A state-machine model test of pool metadata (FORMAT.md §5, §9).
//!
//! A plain in-memory model (devices with their details and mappings, the pool
//! time, the transaction id, the data device size, a held metadata snapshot as
//! a frozen copy, open devices and per-transaction change flags, and the last
//! committed state) is driven by the same random operations as
//! [`PoolMetadata`].  The model predicts every result, including which calls
//! fail and with which error; after every operation the whole API view is
//! compared with the model: device ids, details, every mapping, change and
//! aborted-with-changes flags, time, transaction id, data size, the metadata
//! snapshot, and the data space map (a block is free iff nothing maps it, live
//! or in the held snapshot; lazy counts (§9) are bounded, not compared; the
//! allocator never hands out a block in use now or at the last commit).
//!
//! Oracles: the file-backed cases run Debian's `thin_check` (and the stricter
//! 1.x `thin_check`) and `thin_dump` every few commits and compare the dump
//! with the committed model (with a
//! held snapshot also `thin_check -m`, `thin_dump -m` against the frozen copy,
//! and the copy's raw superblock); a quarter of the in-memory cases run them
//! once on the final image.  Every case ends by releasing and deleting
//! everything: the space maps must then be exactly as free as a fresh pool's
//! (no leaked or over-freed metadata block).
//!
//! Deterministic tests: 3-level mapping trees (~90k mappings, snapshots,
//! partial overwrites, range removals, deletes), a 1000-deep chain of
//! snapshots of snapshots, a coverage guard for the random operations, and
//! regression tests for bugs this model found.

mod common;

use common::{assert_thin_check, assert_thin_check_1x, parse_dump, run_tool, thin_dump, Dump};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uthin_block_io::testing::MemDevice;
use uthin_block_io::{FileDevice, SharedDevice};
use uthin_thin::details::DeviceDetails;
use uthin_thin::{DataBlock, DevId, Error, OpenOptions, PoolMetadata, VirtBlock};

const MIB: u64 = 1 << 20;
const DATA_BLOCK_SIZE: u32 = 128;

/// Device ids the random operations use (the last one is out of range).
const ID_POOL: [u64; 9] = [0, 1, 2, 3, 7, 1000, 65_536, (1 << 24) - 1, 1 << 24];

// ---------------------------------------------------------------------------
// The model

#[derive(Clone, Debug, Default)]
struct MDev {
    det: DeviceDetails,
    /// vblock -> (data block, time)
    maps: BTreeMap<u64, (u64, u32)>,
}

/// A held metadata snapshot: the pool as of the reserve.
#[derive(Clone, Debug, Default)]
struct Frozen {
    time: u32,
    trans_id: u64,
    devs: BTreeMap<u64, MDev>,
    /// data block -> number of (device, vblock) pairs mapping it.
    refs: BTreeMap<u64, u32>,
}

#[derive(Clone, Debug, Default)]
struct State {
    devs: BTreeMap<u64, MDev>,
    /// data block -> number of (device, vblock) pairs mapping it.
    refs: BTreeMap<u64, u32>,
    time: u32,
    trans_id: u64,
    nr_data: u64,
    snap: Option<Arc<Frozen>>,
}

fn add_ref(refs: &mut BTreeMap<u64, u32>, b: u64) {
    *refs.entry(b).or_default() += 1;
}

fn drop_ref(refs: &mut BTreeMap<u64, u32>, b: u64) {
    let c = refs.get_mut(&b).expect("model: block is referenced");
    *c -= 1;
    if *c == 0 {
        refs.remove(&b);
    }
}

impl State {
    fn pairs(&self, b: u64) -> u32 {
        self.refs.get(&b).copied().unwrap_or(0)
            + self
                .snap
                .as_ref()
                .and_then(|s| s.refs.get(&b).copied())
                .unwrap_or(0)
    }

    fn map(&mut self, id: u64, v: u64, b: u64) {
        let time = self.time;
        let d = self.devs.get_mut(&id).expect("model: device exists");
        if let Some((old, _)) = d.maps.insert(v, (b, time)) {
            drop_ref(&mut self.refs, old);
        } else {
            d.det.mapped_blocks += 1;
        }
        add_ref(&mut self.refs, b);
    }

    fn unmap_range(&mut self, id: u64, begin: u64, end: u64) -> u64 {
        let d = self.devs.get_mut(&id).expect("model: device exists");
        if begin >= end {
            return 0;
        }
        let keys: Vec<u64> = d.maps.range(begin..end).map(|(k, _)| *k).collect();
        for k in &keys {
            let (b, _) = d.maps.remove(k).unwrap();
            drop_ref(&mut self.refs, b);
        }
        d.det.mapped_blocks -= keys.len() as u64;
        keys.len() as u64
    }
}

/// Expected failures, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
enum E {
    NoSuchDevice,
    DeviceExists,
    DeviceBusy,
    BadDevId,
    TransMismatch,
    SnapExists,
    NoSnap,
    Shrink,
    Invalid,
    Other(String),
}

fn kind(e: &Error) -> E {
    match e {
        Error::NoSuchDevice(_) => E::NoSuchDevice,
        Error::DeviceExists(_) => E::DeviceExists,
        Error::DeviceBusy(_) => E::DeviceBusy,
        Error::BadDevId(_) => E::BadDevId,
        Error::TransactionIdMismatch { .. } => E::TransMismatch,
        Error::MetadataSnapExists(_) => E::SnapExists,
        Error::NoMetadataSnap => E::NoSnap,
        Error::Shrink { .. } => E::Shrink,
        Error::Invalid(_) => E::Invalid,
        other => E::Other(other.to_string()),
    }
}

fn k<T>(r: uthin_thin::Result<T>) -> Result<T, E> {
    r.map_err(|e| kind(&e))
}

// ---------------------------------------------------------------------------
// Backends and oracles

enum Backend {
    Mem(Arc<MemDevice>),
    File {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
}

impl Backend {
    fn mem(bytes: u64) -> Self {
        Backend::Mem(Arc::new(MemDevice::new(bytes)))
    }

    fn file(bytes: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta");
        FileDevice::create(&path, bytes).expect("create image");
        Backend::File { _dir: dir, path }
    }

    fn dev(&self) -> SharedDevice {
        match self {
            Backend::Mem(m) => m.clone(),
            Backend::File { path, .. } => Arc::new(FileDevice::open(path, true).expect("open")),
        }
    }

    /// A file holding the image: the file itself, or a copy of the memory.
    fn image(&self) -> (Option<tempfile::TempDir>, PathBuf) {
        match self {
            Backend::Mem(m) => {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("meta");
                std::fs::write(&path, m.snapshot()).expect("write image");
                (Some(dir), path)
            }
            Backend::File { path, .. } => (None, path.clone()),
        }
    }
}

/// `thin_dump -m` (the held metadata snapshot), parsed.
fn thin_dump_snap(meta: &Path) -> Dump {
    let out = run_tool("thin_dump", &["-m", meta.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "thin_dump -m failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_dump(&String::from_utf8_lossy(&out.stdout))
}

/// `thin_check -m` (checks the held metadata snapshot): exit 0, no stderr.
fn assert_thin_check_snap(meta: &Path) {
    let out = run_tool("thin_check", &["-m", meta.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 0.9.0 reports its progress on stderr when checking the snapshot.
    let unexpected = stderr
        .lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && !l.starts_with("examining ") && l != "checking space map counts");
    assert!(
        out.status.success() && !unexpected,
        "thin_check -m failed: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr
    );
}

fn compare_dump(
    what: &str,
    dump: &Dump,
    devs: &BTreeMap<u64, MDev>,
    time: u32,
    trans: u64,
    nr_data: u64,
) {
    assert_eq!(dump.time, time, "{what}: time");
    assert_eq!(dump.transaction, trans, "{what}: transaction");
    assert_eq!(dump.data_block_size, DATA_BLOCK_SIZE, "{what}: block size");
    assert_eq!(dump.nr_data_blocks, nr_data, "{what}: nr_data_blocks");
    assert_eq!(
        dump.devices.keys().collect::<Vec<_>>(),
        devs.keys().collect::<Vec<_>>(),
        "{what}: device ids"
    );
    for (id, m) in devs {
        let d = &dump.devices[id];
        let got = DeviceDetails {
            mapped_blocks: d.mapped_blocks,
            transaction_id: d.transaction,
            creation_time: d.creation_time,
            snapshotted_time: d.snap_time,
        };
        assert_eq!(got, m.det, "{what}: details of device {id}");
        if d.mappings != m.maps {
            let diff: Vec<_> = d
                .mappings
                .iter()
                .filter(|(k, v)| m.maps.get(k) != Some(v))
                .map(|(k, v)| (*k, Some(*v), m.maps.get(k).copied()))
                .chain(
                    m.maps
                        .iter()
                        .filter(|(k, _)| !d.mappings.contains_key(k))
                        .map(|(k, v)| (*k, None, Some(*v))),
                )
                .take(20)
                .collect();
            panic!("{what}: mappings of device {id} differ (vblock, dump, model): {diff:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// The harness: applies an operation to both, checks the result

struct Harness {
    backend: Backend,
    md: Option<PoolMetadata>,
    cur: State,
    committed: State,
    open: BTreeMap<u64, u32>,
    changed: BTreeSet<u64>,
    aborted: BTreeSet<u64>,
    /// Run the oracles at every n-th commit (0 = never).
    oracle_every: u32,
    commits: u32,
    oracle_runs: u32,
    /// Operations that succeeded, by name (for coverage reports).
    stats: BTreeMap<&'static str, u32>,
}

impl Harness {
    fn new(backend: Backend, oracle_every: u32) -> Self {
        let md =
            PoolMetadata::open(backend.dev(), OpenOptions::new(DATA_BLOCK_SIZE)).expect("format");
        Harness {
            backend,
            md: Some(md),
            cur: State::default(),
            committed: State::default(),
            open: BTreeMap::new(),
            changed: BTreeSet::new(),
            aborted: BTreeSet::new(),
            oracle_every,
            commits: 0,
            oracle_runs: 0,
            stats: BTreeMap::new(),
        }
    }

    fn md(&mut self) -> &mut PoolMetadata {
        self.md.as_mut().expect("open")
    }

    fn count(&mut self, op: &'static str) {
        *self.stats.entry(op).or_default() += 1;
    }

    fn exists(&self, id: u64) -> bool {
        self.cur.devs.contains_key(&id)
    }

    fn is_open(&self, id: u64) -> bool {
        self.open.get(&id).is_some_and(|&c| c > 0)
    }

    // --- device management

    fn create_thin(&mut self, id: u64) {
        let want = if id > DevId::MAX.0 {
            Err(E::BadDevId)
        } else if self.exists(id) {
            Err(E::DeviceExists)
        } else {
            Ok(())
        };
        let got = k(self.md().create_thin(DevId(id)));
        assert_eq!(got, want, "create_thin({id})");
        if want.is_ok() {
            let det = DeviceDetails {
                mapped_blocks: 0,
                transaction_id: self.cur.trans_id,
                creation_time: self.cur.time,
                snapshotted_time: self.cur.time,
            };
            self.cur.devs.insert(
                id,
                MDev {
                    det,
                    maps: BTreeMap::new(),
                },
            );
            self.changed.insert(id);
            self.count("create_thin");
        }
    }

    fn create_snap(&mut self, id: u64, origin: u64) {
        let want = if id > DevId::MAX.0 {
            Err(E::BadDevId)
        } else if self.exists(id) {
            Err(E::DeviceExists)
        } else if !self.exists(origin) {
            Err(E::NoSuchDevice)
        } else {
            Ok(())
        };
        let got = k(self.md().create_snap(DevId(id), DevId(origin)));
        assert_eq!(got, want, "create_snap({id}, {origin})");
        if want.is_ok() {
            self.cur.time += 1;
            let t = self.cur.time;
            let o = self.cur.devs.get_mut(&origin).unwrap();
            o.det.snapshotted_time = t;
            let maps = o.maps.clone();
            let det = DeviceDetails {
                mapped_blocks: o.det.mapped_blocks,
                transaction_id: self.cur.trans_id,
                creation_time: t,
                snapshotted_time: t,
            };
            for (b, _) in maps.values() {
                add_ref(&mut self.cur.refs, *b);
            }
            self.cur.devs.insert(id, MDev { det, maps });
            self.changed.insert(id);
            self.changed.insert(origin);
            self.count("create_snap");
        }
    }

    fn delete(&mut self, id: u64) {
        let want = if !self.exists(id) {
            Err(E::NoSuchDevice)
        } else if self.is_open(id) {
            Err(E::DeviceBusy)
        } else {
            Ok(())
        };
        let got = k(self.md().delete_thin(DevId(id)));
        assert_eq!(got, want, "delete_thin({id})");
        if want.is_ok() {
            let d = self.cur.devs.remove(&id).unwrap();
            for (b, _) in d.maps.values() {
                drop_ref(&mut self.cur.refs, *b);
            }
            self.changed.remove(&id);
            self.aborted.remove(&id);
            self.count("delete_thin");
        }
    }

    fn open_device(&mut self, id: u64) {
        let want = if self.exists(id) {
            Ok(())
        } else {
            Err(E::NoSuchDevice)
        };
        let got = k(self.md().open_device(DevId(id)));
        assert_eq!(got, want, "open_device({id})");
        if want.is_ok() {
            *self.open.entry(id).or_default() += 1;
            self.count("open_device");
        }
    }

    fn close_device(&mut self, id: u64) {
        self.md().close_device(DevId(id));
        if let Some(c) = self.open.get_mut(&id) {
            *c -= 1;
            if *c == 0 {
                self.open.remove(&id);
            }
            self.count("close_device");
        }
    }

    // --- mappings

    /// The set of data blocks the allocator may hand out now.
    fn allocatable(&self, b: u64) -> bool {
        b < self.cur.nr_data && self.cur.pairs(b) == 0 && self.committed.pairs(b) == 0
    }

    fn alloc(&mut self) -> Option<u64> {
        let got = self.md().alloc_data_block().expect("alloc_data_block");
        match got {
            Some(b) => {
                assert!(
                    self.allocatable(b.0),
                    "alloc_data_block returned {b}, which is in use now or at the last commit"
                );
                Some(b.0)
            }
            None => {
                if let Some(b) = (0..self.cur.nr_data).find(|&b| self.allocatable(b)) {
                    panic!("alloc_data_block found nothing, but {b} is free");
                }
                None
            }
        }
    }

    /// Maps `v` of `id` to a newly allocated block (remaps if mapped).
    /// Returns false when the data device is full.
    fn insert(&mut self, id: u64, v: u64) -> bool {
        if !self.exists(id) {
            let got = k(self
                .md()
                .insert_block(DevId(id), VirtBlock(v), DataBlock(0)));
            assert_eq!(got, Err(E::NoSuchDevice), "insert_block({id}, {v})");
            return false;
        }
        let Some(b) = self.alloc() else {
            return false;
        };
        let got = k(self
            .md()
            .insert_block(DevId(id), VirtBlock(v), DataBlock(b)));
        assert_eq!(got, Ok(()), "insert_block({id}, {v}, {b})");
        if self.cur.devs[&id].maps.contains_key(&v) {
            self.count("remap");
        } else {
            self.count("insert_block");
        }
        self.cur.map(id, v, b);
        self.changed.insert(id);
        true
    }

    fn insert_bad_block(&mut self, id: u64, v: u64) {
        let want = if self.exists(id) {
            Err(E::Invalid)
        } else {
            Err(E::NoSuchDevice)
        };
        let got = k(self
            .md()
            .insert_block(DevId(id), VirtBlock(v), DataBlock(1 << 40)));
        assert_eq!(got, want, "insert_block({id}, {v}, 2^40)");
    }

    fn remove(&mut self, id: u64, v: u64) {
        let want = if !self.exists(id) {
            Err(E::NoSuchDevice)
        } else {
            Ok(self.cur.devs[&id].maps.contains_key(&v))
        };
        let got = k(self.md().remove_block(DevId(id), VirtBlock(v)));
        assert_eq!(got, want, "remove_block({id}, {v})");
        if want == Ok(true) {
            self.cur.unmap_range(id, v, v + 1);
            self.changed.insert(id);
            self.count("remove_block");
        }
    }

    fn remove_range(&mut self, id: u64, begin: u64, end: u64) {
        let want = if !self.exists(id) {
            Err(E::NoSuchDevice)
        } else if begin >= end {
            Ok(0)
        } else {
            Ok(self.cur.devs[&id].maps.range(begin..end).count() as u64)
        };
        let got = k(self
            .md()
            .remove_range(DevId(id), VirtBlock(begin), VirtBlock(end)));
        assert_eq!(got, want, "remove_range({id}, {begin}, {end})");
        if let Ok(n) = want {
            assert_eq!(self.cur.unmap_range(id, begin, end), n);
            if n > 0 {
                self.changed.insert(id);
                self.count("remove_range");
            }
        }
    }

    fn find_block(&mut self, id: u64, v: u64) {
        let want = match self.cur.devs.get(&id) {
            None => Err(E::NoSuchDevice),
            Some(d) => Ok(d
                .maps
                .get(&v)
                .map(|&(b, t)| (b, d.det.snapshotted_time > t))),
        };
        let got = k(self.md().find_block(DevId(id), VirtBlock(v)))
            .map(|o| o.map(|l| (l.block.0, l.shared)));
        assert_eq!(got, want, "find_block({id}, {v})");
        if let Ok(Some((_, shared))) = want {
            self.count(if shared {
                "find_block(shared)"
            } else {
                "find_block(unshared)"
            });
        }
    }

    fn find_mapped_range(&mut self, id: u64, begin: u64, end: u64) {
        let want = match self.cur.devs.get(&id) {
            None => Err(E::NoSuchDevice),
            Some(_) if begin >= end => Ok(None),
            Some(d) => {
                let st = d.det.snapshotted_time;
                let mut it = d.maps.range(begin..end);
                Ok(it.next().map(|(&k0, &(b0, t0))| {
                    let shared = st > t0;
                    let mut e = k0 + 1;
                    for (&k, &(b, t)) in it {
                        if k != e || b != b0 + (e - k0) || (st > t) != shared {
                            break;
                        }
                        e += 1;
                    }
                    (k0, e, b0, shared)
                }))
            }
        };
        let got = k(self
            .md()
            .find_mapped_range(DevId(id), VirtBlock(begin), VirtBlock(end)))
        .map(|o| o.map(|r| (r.thin_begin.0, r.thin_end.0, r.data_begin.0, r.maybe_shared)));
        assert_eq!(got, want, "find_mapped_range({id}, {begin}, {end})");
        if let Ok(Some((b, e, _, _))) = want {
            self.count(if e - b > 1 {
                "find_mapped_range(run)"
            } else {
                "find_mapped_range(single)"
            });
        }
    }

    /// Walks a whole device run by run with `find_mapped_range`, as a
    /// reader or discard of the full device does.
    fn sweep_ranges(&mut self, id: u64) {
        let mut b = 0;
        let mut runs = 0;
        loop {
            self.find_mapped_range(id, b, u64::MAX);
            let r = self
                .md()
                .find_mapped_range(DevId(id), VirtBlock(b), VirtBlock(u64::MAX));
            match r {
                Ok(Some(r)) => {
                    b = r.thin_end.0;
                    runs += 1;
                }
                _ => break,
            }
        }
        if runs > 0 {
            self.count("sweep_ranges");
        }
    }

    // --- pool

    fn set_transaction_id(&mut self, matching: bool, new: u64) {
        let cur = if matching {
            self.cur.trans_id
        } else {
            self.cur.trans_id.wrapping_add(1 + new % 5)
        };
        let want = if matching {
            Ok(())
        } else {
            Err(E::TransMismatch)
        };
        let got = k(self.md().set_transaction_id(cur, new));
        assert_eq!(got, want, "set_transaction_id({cur}, {new})");
        if matching {
            self.cur.trans_id = new;
            self.count("set_transaction_id");
        } else {
            self.count("set_transaction_id(mismatch)");
        }
    }

    fn resize(&mut self, nr: u64) {
        let want = if nr < self.cur.nr_data {
            Err(E::Shrink)
        } else {
            Ok(())
        };
        let got = k(self.md().resize_data_dev(nr));
        assert_eq!(got, want, "resize_data_dev({nr}) from {}", self.cur.nr_data);
        if want.is_ok() {
            self.cur.nr_data = nr;
            self.count("resize_data_dev");
        } else {
            self.count("resize_data_dev(shrink)");
        }
    }

    fn model_commit(&mut self) {
        self.committed = self.cur.clone();
        self.changed.clear();
        let open = &self.open;
        self.aborted.retain(|id| open.contains_key(id));
        self.commits += 1;
    }

    fn commit(&mut self) {
        k(self.md().commit()).expect("commit");
        self.model_commit();
        self.count("commit");
        self.after_commit();
    }

    fn abort(&mut self) {
        k(self.md().abort()).expect("abort");
        for id in &self.changed {
            if self.open.contains_key(id) {
                self.aborted.insert(*id);
            }
        }
        self.changed.clear();
        let open = &self.open;
        self.aborted.retain(|id| open.contains_key(id));
        self.cur = self.committed.clone();
        self.count("abort");
    }

    fn reserve(&mut self) {
        let want = if self.cur.snap.is_some() {
            Err(E::SnapExists)
        } else {
            Ok(())
        };
        let got = k(self.md().reserve_metadata_snap()).map(|_| ());
        assert_eq!(got, want, "reserve_metadata_snap");
        if want.is_ok() {
            // The reserve commits first; the held root reaches disk with the
            // next commit.
            self.model_commit();
            self.cur.snap = Some(Arc::new(Frozen {
                time: self.cur.time,
                trans_id: self.cur.trans_id,
                devs: self.cur.devs.clone(),
                refs: self.cur.refs.clone(),
            }));
            self.count("reserve_metadata_snap");
            self.after_commit();
        } else {
            self.count("reserve_metadata_snap(twice)");
        }
    }

    fn release(&mut self) {
        let want = if self.cur.snap.is_some() {
            Ok(())
        } else {
            Err(E::NoSnap)
        };
        let got = k(self.md().release_metadata_snap());
        assert_eq!(got, want, "release_metadata_snap");
        if want.is_ok() {
            self.cur.snap = None;
            self.count("release_metadata_snap");
        } else {
            self.count("release_metadata_snap(none)");
        }
    }

    fn reopen_md(&mut self) {
        let md = PoolMetadata::open(self.backend.dev(), OpenOptions::new(DATA_BLOCK_SIZE))
            .expect("reopen");
        self.md = Some(md);
        self.open.clear();
        self.changed.clear();
        self.aborted.clear();
    }

    /// `close` and open again; refused (and the pool dropped) while devices
    /// are open, in which case only the last commit survives.
    fn close_reopen(&mut self) {
        let md = self.md.take().expect("open");
        let got = k(md.close());
        if self.open.is_empty() {
            assert_eq!(got, Ok(()), "close");
            self.model_commit();
            self.count("close+reopen");
        } else {
            assert_eq!(got, Err(E::DeviceBusy), "close with open devices");
            self.cur = self.committed.clone();
            self.count("close(busy)+reopen");
        }
        self.reopen_md();
        self.after_commit();
    }

    /// Drop without close (a crash): the last commit survives.
    fn crash_reopen(&mut self) {
        drop(self.md.take());
        self.cur = self.committed.clone();
        self.reopen_md();
        self.count("crash+reopen");
    }

    fn after_commit(&mut self) {
        if self.oracle_every > 0 && self.commits.is_multiple_of(self.oracle_every) {
            self.oracle();
        }
    }

    // --- checks

    /// Debian's tools on the committed image (file backends only).
    fn oracle(&mut self) {
        let (_tmp, path) = self.backend.image();
        let path = path.as_path();
        let c = &self.committed;
        assert_thin_check(path);
        // 1.x takes half a second of wall time per run (a progress thread):
        // every other oracle run.
        if self.oracle_runs.is_multiple_of(2) {
            assert_thin_check_1x(path);
        }
        let dump = thin_dump(path);
        compare_dump("thin_dump", &dump, &c.devs, c.time, c.trans_id, c.nr_data);
        let img = std::fs::read(path).unwrap();
        let held = le64(&img, 56);
        assert_eq!(held != 0, c.snap.is_some(), "held_root in the superblock");
        if let Some(f) = &c.snap {
            // The copy (FORMAT.md §5.5): its own location, no held root, no
            // space-map roots.
            let copy = &img[held as usize * 4096..(held as usize + 1) * 4096];
            assert_eq!(le64(copy, 8), held, "blocknr of the snapshot copy");
            assert_eq!(le64(copy, 56), 0, "held_root of the snapshot copy");
            assert!(
                copy[64..320].iter().all(|&b| b == 0),
                "space-map roots of the snapshot copy are not zero"
            );
            assert_thin_check_snap(path);
            let dump = thin_dump_snap(path);
            compare_dump("thin_dump -m", &dump, &f.devs, f.time, f.trans_id, 0);
            *self.stats.entry("oracle(metadata snap)").or_default() += 1;
        }
        self.oracle_runs += 1;
        *self.stats.entry("oracle").or_default() += 1;
    }

    /// Compares everything the API reports with the model.
    fn verify(&mut self) {
        let md = self.md.as_ref().expect("open");
        let st = &self.cur;
        let ids: Vec<u64> = md.device_ids().unwrap().iter().map(|d| d.0).collect();
        assert_eq!(
            ids,
            st.devs.keys().copied().collect::<Vec<_>>(),
            "device_ids"
        );
        for (&id, d) in &st.devs {
            assert_eq!(d.det.mapped_blocks, d.maps.len() as u64, "model self-check");
            assert!(md.device_exists(DevId(id)).unwrap());
            assert_eq!(
                md.device_details(DevId(id)).unwrap(),
                d.det,
                "details of {id}"
            );
            let mut got = BTreeMap::new();
            md.for_each_mapping(
                DevId(id),
                VirtBlock(0),
                VirtBlock(u64::MAX),
                &mut |v, bt| {
                    got.insert(v.0, (bt.block.0, bt.time.0));
                },
            )
            .unwrap();
            assert!(got == d.maps, "mappings of {id} differ from the model");
            assert_eq!(
                md.highest_mapped(DevId(id)).unwrap().map(|v| v.0),
                d.maps.keys().next_back().copied(),
                "highest_mapped({id})"
            );
            assert_eq!(
                md.changed_this_transaction(DevId(id)),
                self.changed.contains(&id),
                "changed_this_transaction({id})"
            );
        }
        assert_eq!(
            md.any_changed_this_transaction(),
            !self.changed.is_empty(),
            "any_changed_this_transaction"
        );
        for id in ID_POOL.iter().chain(self.open.keys()).chain(&self.aborted) {
            assert_eq!(
                md.aborted_with_changes(DevId(*id)),
                self.aborted.contains(id),
                "aborted_with_changes({id})"
            );
            if !st.devs.contains_key(id) {
                assert!(!md.device_exists(DevId(*id)).unwrap(), "{id} exists");
                assert_eq!(
                    k(md.device_details(DevId(*id))),
                    Err(E::NoSuchDevice),
                    "details of missing {id}"
                );
                assert_eq!(
                    k(md.find_block(DevId(*id), VirtBlock(0))).map(|_| ()),
                    Err(E::NoSuchDevice)
                );
            }
        }
        assert_eq!(md.time().unwrap(), st.time, "time");
        assert_eq!(md.transaction_id().unwrap(), st.trans_id, "transaction id");
        assert_eq!(md.data_dev_size().unwrap(), st.nr_data, "data_dev_size");
        assert_eq!(
            md.metadata_snap().unwrap().is_some(),
            st.snap.is_some(),
            "metadata_snap"
        );
        // Data space map: free iff unmapped everywhere; lazy counts are
        // bounded by the number of mapping pairs.
        let mut free = 0;
        let mut allocatable = 0;
        for b in 0..st.nr_data {
            let c = md.data_block_count(DataBlock(b)).unwrap();
            let pairs = st.pairs(b);
            if pairs == 0 {
                assert_eq!(c, 0, "data block {b} is unmapped but has count {c}");
                free += 1;
                if self.committed.pairs(b) == 0 {
                    allocatable += 1;
                }
            } else {
                assert!(
                    (1..=pairs).contains(&c),
                    "data block {b}: count {c}, mapped by {pairs} pairs"
                );
                if pairs == 1 {
                    assert!(!md.data_block_is_shared(DataBlock(b)).unwrap());
                }
            }
        }
        assert_eq!(
            md.data_block_count(DataBlock(st.nr_data)).unwrap(),
            0,
            "beyond the end"
        );
        assert_eq!(md.free_data_blocks().unwrap(), free, "free_data_blocks");
        assert_eq!(
            md.allocatable_data_blocks().unwrap(),
            allocatable,
            "allocatable_data_blocks"
        );
        assert!(!md.needs_abort());
    }
}

impl Harness {
    /// Releases the snapshot, deletes every device and commits; then the
    /// metadata and data space maps must be as free as in a fresh pool of the
    /// same sizes (nothing leaked).
    fn teardown_without_leaks(&mut self) {
        let ids: Vec<u64> = self.open.keys().copied().collect();
        for id in ids {
            while self.is_open(id) {
                self.close_device(id);
            }
        }
        if self.cur.snap.is_some() {
            self.release();
        }
        let ids: Vec<u64> = self.cur.devs.keys().copied().collect();
        for id in ids {
            self.delete(id);
        }
        self.commit();
        self.verify();
        let md = self.md.as_ref().unwrap();
        let meta_blocks = md.metadata_dev_size().unwrap();
        let fresh_dev = Arc::new(MemDevice::new(meta_blocks * 4096));
        let mut fresh =
            PoolMetadata::open(fresh_dev, OpenOptions::new(DATA_BLOCK_SIZE)).expect("format");
        fresh.resize_data_dev(self.cur.nr_data).unwrap();
        fresh.commit().unwrap();
        assert_eq!(fresh.metadata_dev_size().unwrap(), meta_blocks);
        assert_eq!(
            md.raw_free_metadata_blocks().unwrap(),
            fresh.raw_free_metadata_blocks().unwrap(),
            "metadata blocks leaked (or over-freed)"
        );
        assert_eq!(md.free_data_blocks().unwrap(), self.cur.nr_data);
    }
}

// ---------------------------------------------------------------------------
// Random operations

#[derive(Clone, Debug)]
enum DevSel {
    Existing(Index),
    Pool(Index),
    /// An open device (falls back to an existing one).
    Open(Index),
}

#[derive(Clone, Debug)]
enum VSel {
    Mapped(Index),
    /// Just past the highest mapped block: sequential writes.
    Append,
    Dense(u64),
    Medium(u64),
    Huge(u64),
}

#[derive(Clone, Debug)]
enum Op {
    CreateThin(DevSel),
    CreateSnap(DevSel, DevSel),
    Delete(DevSel),
    Insert(DevSel, VSel),
    InsertRun(DevSel, VSel, u64),
    InsertBadBlock(DevSel, VSel),
    Remove(DevSel, VSel),
    RemoveRange(DevSel, VSel, u64),
    FindBlock(DevSel, VSel),
    FindRange(DevSel, VSel, u64),
    SweepRanges(DevSel),
    SetTransId(bool, u64),
    Commit,
    Abort,
    Reserve,
    Release,
    Resize(i64),
    OpenDev(DevSel),
    CloseDev(DevSel),
    CloseReopen,
    CrashReopen,
}

fn dev_sel() -> impl Strategy<Value = DevSel> {
    prop_oneof![
        3 => any::<Index>().prop_map(DevSel::Existing),
        1 => any::<Index>().prop_map(DevSel::Pool),
    ]
}

fn new_dev_sel() -> impl Strategy<Value = DevSel> {
    prop_oneof![
        1 => any::<Index>().prop_map(DevSel::Existing),
        6 => any::<Index>().prop_map(DevSel::Pool),
    ]
}

fn v_sel() -> impl Strategy<Value = VSel> {
    prop_oneof![
        4 => any::<Index>().prop_map(VSel::Mapped),
        2 => Just(VSel::Append),
        4 => (0u64..96).prop_map(VSel::Dense),
        2 => (0u64..4000).prop_map(VSel::Medium),
        1 => ((1u64 << 32)..(1u64 << 40)).prop_map(VSel::Huge),
    ]
}

/// Mostly mapped blocks: for lookups and removals.
fn v_sel_mapped() -> impl Strategy<Value = VSel> {
    prop_oneof![
        8 => any::<Index>().prop_map(VSel::Mapped),
        2 => (0u64..96).prop_map(VSel::Dense),
        1 => (0u64..4000).prop_map(VSel::Medium),
        1 => ((1u64 << 32)..(1u64 << 40)).prop_map(VSel::Huge),
    ]
}

fn range_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => 0u64..3,
        3 => 1u64..64,
        2 => 1u64..5000,
        1 => Just(u64::MAX / 2),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => new_dev_sel().prop_map(Op::CreateThin),
        3 => (new_dev_sel(), dev_sel()).prop_map(|(a, b)| Op::CreateSnap(a, b)),
        2 => dev_sel().prop_map(Op::Delete),
        12 => (dev_sel(), v_sel()).prop_map(|(d, v)| Op::Insert(d, v)),
        2 => (dev_sel(), v_sel(), 1u64..400).prop_map(|(d, v, n)| Op::InsertRun(d, v, n)),
        1 => (dev_sel(), v_sel()).prop_map(|(d, v)| Op::InsertBadBlock(d, v)),
        4 => (dev_sel(), v_sel_mapped()).prop_map(|(d, v)| Op::Remove(d, v)),
        4 => (dev_sel(), v_sel_mapped(), range_len())
            .prop_map(|(d, v, n)| Op::RemoveRange(d, v, n)),
        6 => (dev_sel(), v_sel_mapped()).prop_map(|(d, v)| Op::FindBlock(d, v)),
        4 => (dev_sel(), v_sel_mapped(), range_len())
            .prop_map(|(d, v, n)| Op::FindRange(d, v, n)),
        1 => dev_sel().prop_map(Op::SweepRanges),
        2 => (any::<bool>(), 0u64..1000).prop_map(|(m, n)| Op::SetTransId(m, n)),
        4 => Just(Op::Commit),
        2 => Just(Op::Abort),
        2 => Just(Op::Reserve),
        2 => Just(Op::Release),
        2 => (-300i64..600).prop_map(Op::Resize),
        1 => dev_sel().prop_map(Op::OpenDev),
        1 => prop_oneof![
            4 => any::<Index>().prop_map(DevSel::Open),
            1 => dev_sel(),
        ].prop_map(Op::CloseDev),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
    ]
}

impl Harness {
    fn pick_dev(&self, s: &DevSel) -> u64 {
        match s {
            DevSel::Existing(i) if !self.cur.devs.is_empty() => *self
                .cur
                .devs
                .keys()
                .nth(i.index(self.cur.devs.len()))
                .unwrap(),
            DevSel::Open(i) if !self.open.is_empty() => {
                *self.open.keys().nth(i.index(self.open.len())).unwrap()
            }
            DevSel::Open(i) => self.pick_dev(&DevSel::Existing(*i)),
            DevSel::Existing(i) | DevSel::Pool(i) => ID_POOL[i.index(ID_POOL.len())],
        }
    }

    fn pick_v(&self, id: u64, s: &VSel) -> u64 {
        match s {
            VSel::Mapped(i) => match self.cur.devs.get(&id) {
                Some(d) if !d.maps.is_empty() => *d.maps.keys().nth(i.index(d.maps.len())).unwrap(),
                _ => i.index(96) as u64,
            },
            VSel::Append => self
                .cur
                .devs
                .get(&id)
                .and_then(|d| d.maps.keys().next_back())
                .map_or(0, |v| v + 1),
            VSel::Dense(v) | VSel::Medium(v) | VSel::Huge(v) => *v,
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::CreateThin(d) => self.create_thin(self.pick_dev(d)),
            Op::CreateSnap(d, o) => {
                let (d, o) = (self.pick_dev(d), self.pick_dev(o));
                self.create_snap(d, o)
            }
            Op::Delete(d) => self.delete(self.pick_dev(d)),
            Op::Insert(d, v) => {
                let id = self.pick_dev(d);
                self.insert(id, self.pick_v(id, v));
            }
            Op::InsertRun(d, v, n) => {
                let id = self.pick_dev(d);
                let v = self.pick_v(id, v);
                for i in 0..*n {
                    if !self.insert(id, v + i) {
                        break;
                    }
                }
            }
            Op::InsertBadBlock(d, v) => {
                let id = self.pick_dev(d);
                self.insert_bad_block(id, self.pick_v(id, v))
            }
            Op::Remove(d, v) => {
                let id = self.pick_dev(d);
                self.remove(id, self.pick_v(id, v))
            }
            Op::RemoveRange(d, v, n) => {
                let id = self.pick_dev(d);
                let b = self.pick_v(id, v);
                // A few empty/inverted ranges too.
                let e = if *n == 0 { b / 2 } else { b.saturating_add(*n) };
                self.remove_range(id, b, e)
            }
            Op::FindBlock(d, v) => {
                let id = self.pick_dev(d);
                self.find_block(id, self.pick_v(id, v))
            }
            Op::FindRange(d, v, n) => {
                let id = self.pick_dev(d);
                let b = self.pick_v(id, v);
                let e = if *n == 0 { b / 2 } else { b.saturating_add(*n) };
                self.find_mapped_range(id, b, e)
            }
            Op::SweepRanges(d) => self.sweep_ranges(self.pick_dev(d)),
            Op::SetTransId(m, n) => self.set_transaction_id(*m, *n),
            Op::Commit => self.commit(),
            Op::Abort => self.abort(),
            Op::Reserve => self.reserve(),
            Op::Release => self.release(),
            Op::Resize(d) => {
                let nr = self.cur.nr_data.saturating_add_signed(*d);
                self.resize(nr)
            }
            Op::OpenDev(d) => self.open_device(self.pick_dev(d)),
            Op::CloseDev(d) => self.close_device(self.pick_dev(d)),
            Op::CloseReopen => self.close_reopen(),
            Op::CrashReopen => self.crash_reopen(),
        }
    }
}

/// Runs `ops` from a fresh pool of `nr_data` data blocks, checking the model
/// after each; the oracles run every `oracle_every` commits and, if
/// `final_oracle`, once at the end.
fn run_case(
    backend: Backend,
    oracle_every: u32,
    final_oracle: bool,
    nr_data: u64,
    ops: &[Op],
) -> Harness {
    let mut h = Harness::new(backend, oracle_every);
    h.verify();
    h.resize(nr_data);
    h.verify();
    for op in ops {
        h.apply(op);
        h.verify();
    }
    // Finish with a commit and a reopen, then the oracle once more.
    h.commit();
    h.verify();
    h.close_reopen();
    h.verify();
    if final_oracle {
        h.oracle();
    }
    h.teardown_without_leaks();
    h
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// In memory, the model checked after every operation.
    #[test]
    fn model_in_memory(
        meta_mib in 8u64..=16,
        nr_data in prop_oneof![0u64..64, 200u64..3000],
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        // The oracles on a copy of the final image, for a quarter of the cases.
        run_case(Backend::mem(meta_mib * MIB), 0, ops.len() % 4 == 0, nr_data, &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// On a file, with thin_check and thin_dump (and -m) every few commits.
    #[test]
    fn model_with_oracle(
        nr_data in 100u64..2000,
        every in 1u32..=3,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run_case(Backend::file(16 * MIB), every, true, nr_data, &ops);
    }
}

// ---------------------------------------------------------------------------
// Deterministic tests

/// A small deterministic pseudo-random generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every operation, on every kind of case, many times: guards the random
/// generator's coverage.
#[test]
fn random_operations_cover_everything() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut total: BTreeMap<&'static str, u32> = BTreeMap::new();
    for case in 0..8 {
        let ops = proptest::collection::vec(op(), 250)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let backend = if case == 0 {
            Backend::file(16 * MIB)
        } else {
            Backend::mem(16 * MIB)
        };
        let h = run_case(backend, if case == 0 { 2 } else { 0 }, true, 1500, &ops);
        for (k, v) in h.stats {
            *total.entry(k).or_default() += v;
        }
    }
    for op in [
        "create_thin",
        "create_snap",
        "delete_thin",
        "insert_block",
        "remap",
        "remove_block",
        "remove_range",
        "find_block(shared)",
        "find_block(unshared)",
        "find_mapped_range(run)",
        "find_mapped_range(single)",
        "sweep_ranges",
        "set_transaction_id",
        "set_transaction_id(mismatch)",
        "commit",
        "abort",
        "reserve_metadata_snap",
        "reserve_metadata_snap(twice)",
        "release_metadata_snap",
        "release_metadata_snap(none)",
        "resize_data_dev",
        "resize_data_dev(shrink)",
        "open_device",
        "close_device",
        "close+reopen",
        "crash+reopen",
        "oracle",
        "oracle(metadata snap)",
    ] {
        assert!(
            total.get(op).copied().unwrap_or(0) >= 3,
            "{op} ran less than 3 times: {total:?}"
        );
    }
    eprintln!("{total:?}");
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// Levels of device `id`'s committed mapping sub-tree, read from the raw
/// image (FORMAT.md §1.3, §2.1): follows first children down to a leaf.
fn subtree_levels(image: &Path, id: u64) -> u32 {
    let img = std::fs::read(image).unwrap();
    let node = |b: u64| &img[b as usize * 4096..(b as usize + 1) * 4096];
    let value = |n: &[u8], i: usize| le64(n, 32 + 8 * le32(n, 20) as usize + 8 * i);
    // The top level: find the device's entry.
    let mut n = node(le64(&img, 320));
    while le32(n, 4) != 2 {
        let nr = le32(n, 16) as usize;
        let i = (0..nr).rev().find(|&i| le64(n, 32 + 8 * i) <= id).unwrap();
        n = node(value(n, i));
    }
    let nr = le32(n, 16) as usize;
    let i = (0..nr).find(|&i| le64(n, 32 + 8 * i) == id).unwrap();
    let mut n = node(value(n, i));
    let mut levels = 1;
    while le32(n, 4) != 2 {
        n = node(value(n, 0));
        levels += 1;
    }
    levels
}

/// Multi-level trees: ~20k mappings over 3 devices with snapshots, partial
/// overwrites, removals and deletes; thin_check and thin_dump after commits,
/// with and without a held metadata snapshot.
#[test]
fn multi_level_trees() {
    let mut h = Harness::new(Backend::file(32 * MIB), 1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    h.resize(120_000);
    h.create_thin(0);
    // Sequential inserts leave nearly full leaves (sibling sharing, §2.5):
    // 70k mappings need more leaves than one internal node holds, so the
    // origin's mapping tree has three levels.
    for v in 0..70_000 {
        assert!(h.insert(0, v));
    }
    h.commit();
    h.verify();
    let (_tmp, image) = h.backend.image();
    assert_eq!(subtree_levels(&image, 0), 3, "levels of device 0");
    h.create_snap(1, 0);
    // Partial overwrites of the snapshot: a dense run and scattered blocks.
    for v in 2000..3500 {
        h.insert(1, v);
    }
    for _ in 0..1500 {
        let v = rng.below(12_000);
        h.insert(1, v);
    }
    h.create_snap(2, 1);
    for _ in 0..2000 {
        let v = rng.below(20_000);
        h.insert(2, v);
    }
    // The origin diverges too.
    for v in (100..4000).step_by(3) {
        h.insert(0, v);
    }
    h.remove_range(0, 5000, 5600);
    for _ in 0..300 {
        let v = rng.below(9000);
        h.remove(2, v);
    }
    h.verify();
    h.commit();
    h.verify();
    let total: usize = h.cur.devs.values().map(|d| d.maps.len()).sum();
    assert!(total > 90_000, "only {total} mappings");
    h.reserve();
    for v in 70_000..72_000 {
        h.insert(0, v);
    }
    h.remove_range(1, 1000, 7000);
    h.delete(2);
    h.commit();
    h.verify();
    h.release();
    h.remove_range(0, 0, 30_000);
    h.create_snap(3, 1);
    h.delete(1);
    h.commit();
    h.verify();
    h.close_reopen();
    h.verify();
    h.remove_range(3, 0, u64::MAX);
    h.delete(0);
    h.commit();
    h.verify();
    h.delete(3);
    h.commit();
    h.verify();
    assert_eq!(h.md().free_data_blocks().unwrap(), 120_000);
    assert!(h.oracle_runs >= 7);
}

/// Snapshots of snapshots to any depth: a chain of 1000, each writing one
/// block; the deepest sees every block, with the right shared flags.
#[test]
fn snapshot_chain_1000_deep() {
    const DEPTH: u64 = 1000;
    let mut h = Harness::new(Backend::file(64 * MIB), 0);
    h.resize(2 * DEPTH);
    h.create_thin(0);
    assert!(h.insert(0, 0));
    for i in 1..=DEPTH {
        h.create_snap(i, i - 1);
        assert_eq!(h.cur.time, i as u32);
        assert!(h.insert(i, i));
        if i % 100 == 0 {
            h.commit();
        }
    }
    h.verify();
    assert_eq!(h.md().time().unwrap(), DEPTH as u32);
    // Lookups in the deepest device: everything is mapped, only its own
    // block is unshared.
    for v in 0..=DEPTH {
        let l = h.md().find_block(DevId(DEPTH), VirtBlock(v)).unwrap();
        let want = h.cur.devs[&DEPTH].maps[&v].0;
        assert_eq!(
            l.map(|l| (l.block.0, l.shared)),
            Some((want, v != DEPTH)),
            "vblock {v}"
        );
        h.find_block(DEPTH, v);
    }
    assert_eq!(h.md().mapped_count(DevId(DEPTH)).unwrap(), DEPTH + 1);
    h.find_mapped_range(DEPTH, 0, DEPTH + 1);
    h.commit();
    h.oracle();
    h.close_reopen();
    h.verify();
    // Unwind from the top: deleting the origins leaves the deepest intact.
    for i in 0..DEPTH {
        h.delete(i);
    }
    h.commit();
    h.verify();
    h.oracle();
}

// ---------------------------------------------------------------------------
// Regression tests for bugs the model found

/// Regression: `abort` re-read the details of open devices through the
/// device table itself (`read_details` answers from the table first), so an
/// open device kept the aborted transaction's details: a device created in
/// the aborted transaction still "existed" (with no mapping tree behind it),
/// and an open device kept its aborted `mapped_blocks`.
#[test]
fn abort_rereads_details_of_open_devices() {
    let mut h = Harness::new(Backend::mem(8 * MIB), 0);
    h.resize(100);
    h.create_thin(1);
    h.commit();
    // Uncommitted: a new device and a mapping in an existing one, both open.
    h.create_thin(0);
    h.open_device(0);
    h.open_device(1);
    assert!(h.insert(1, 5));
    h.verify();
    h.abort();
    h.verify();
    let md = h.md();
    assert!(!md.device_exists(DevId(0)).unwrap());
    assert_eq!(md.device_details(DevId(1)).unwrap().mapped_blocks, 0);
    assert!(md.aborted_with_changes(DevId(0)));
    assert!(md.aborted_with_changes(DevId(1)));
    // The id of the aborted device is free again; a new device with it works.
    h.create_thin(0);
    assert!(h.insert(0, 3));
    h.close_device(0);
    h.close_device(1);
    h.commit();
    h.verify();
    h.close_reopen();
    h.verify();
}

/// Regression: a commit with nothing to write returned before dropping
/// closed devices from the device table, so a device opened, aborted with
/// changes and closed still reported `aborted_with_changes` after the commit
/// (and would again when reopened), unlike after any other commit.
#[test]
fn clean_commit_forgets_closed_devices() {
    let mut h = Harness::new(Backend::mem(8 * MIB), 0);
    h.resize(1);
    h.create_thin(0);
    h.commit();
    h.open_device(0);
    assert!(h.insert(0, 0));
    h.abort();
    h.verify();
    assert!(h.md().aborted_with_changes(DevId(0)));
    h.close_device(0);
    h.commit();
    h.verify();
    assert!(!h.md().aborted_with_changes(DevId(0)));
    h.open_device(0);
    h.verify();
    assert!(!h.md().aborted_with_changes(DevId(0)));
    h.close_device(0);
}

/// Regression (found by thin-provisioning-tools 1.x, not by 0.9.0): removing
/// an unmapped block, or an empty range, from a device whose mapping tree
/// is shared (here with a snapshot) shadowed the tree's root although
/// nothing changed, and the device's details were not rewritten.  With a
/// metadata snapshot held, the device's root then differed between the live
/// and the held top-level trees while both shared one details leaf, which
/// 1.x's thin_check rejects ("metadata snap: unexpected thin ids"): the
/// kernel rewrites a device's details whenever its mapping root moves.
#[test]
fn removing_nothing_leaves_a_shared_tree_alone() {
    let mut h = Harness::new(Backend::file(8 * MIB), 1);
    h.resize(100);
    h.create_thin(0);
    assert!(h.insert(0, 7));
    h.create_snap(1, 0);
    h.create_snap(2, 0);
    h.commit();
    h.reserve();
    let roots = |h: &mut Harness| {
        let (_tmp, path) = h.backend.image();
        let img = std::fs::read(&path).unwrap();
        let sb = le64(&img, 320);
        let node = &img[sb as usize * 4096..][..4096];
        let nr = le32(node, 16) as usize;
        (0..nr)
            .map(|i| le64(node, 32 + 8 * 252 + 8 * i))
            .collect::<Vec<_>>()
    };
    let before = roots(&mut h);
    h.remove(1, 3);
    h.remove_range(2, 10, 20);
    h.remove_range(2, 8, 8);
    h.verify();
    h.commit();
    h.verify();
    assert_eq!(roots(&mut h), before, "a mapping root moved");
    assert_thin_check_1x(&h.backend.image().1);
    h.release();
    h.commit();
    h.verify();
}
