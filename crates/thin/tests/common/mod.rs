//! Shared test support: Debian's thin-provisioning-tools as oracles, and a
//! parser for the XML `thin_dump` writes.
//!
//! The oracles are required: if a tool is missing the test fails and says to
//! run `scripts/install-test-deps.sh` (the README's test command does).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Runs a tool from thin-provisioning-tools; panics with a clear message if
/// it is not installed.
pub fn run_tool(tool: &str, args: &[&str]) -> std::process::Output {
    let path = ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{tool} is not installed: run scripts/install-test-deps.sh (apt-get install thin-provisioning-tools)")
        });
    Command::new(path).args(args).output().expect("run tool")
}

/// Debian's `thin_check -q` on `meta`: asserts exit 0 and nothing on stderr
/// (0.9.0 prints progress on stderr unless quiet).  On failure it reruns
/// without `-q` to show what the checker found.
pub fn assert_thin_check(meta: &Path) {
    let out = run_tool("thin_check", &["-q", meta.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stderr.trim().is_empty() {
        return;
    }
    let verbose = run_tool("thin_check", &[meta.to_str().unwrap()]);
    panic!(
        "thin_check -q failed on {}: status {:?}, stderr {:?}\nverbose run:\n{}{}",
        meta.display(),
        out.status,
        stderr,
        String::from_utf8_lossy(&verbose.stdout),
        String::from_utf8_lossy(&verbose.stderr)
    );
}

/// thin-provisioning-tools 1.x's multi-call `pdata_tools` (the Rust line,
/// stricter than Debian 12's 0.9.0: node fill, `mapped_blocks`, exact data
/// counts, a held metadata snapshot's consistency with the live trees).
/// `scripts/install-test-deps.sh` extracts it into `~/.cache/uthin-tpt1`
/// (`UTHIN_TPT1_DIR` overrides); required like the other oracles.
pub fn pdata_tools_1x() -> std::path::PathBuf {
    let dir = std::env::var_os("UTHIN_TPT1_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/uthin-tpt1")
        });
    let p = dir.join("usr/sbin/pdata_tools");
    assert!(
        p.exists(),
        "{} not found: run scripts/install-test-deps.sh (thin-provisioning-tools 1.x)",
        p.display()
    );
    p
}

/// thin-provisioning-tools 1.x's `thin_check -q` on `meta`: exit 0 and
/// nothing on stderr; on failure the verbose rerun says what it found.
pub fn assert_thin_check_1x(meta: &Path) {
    let tool = pdata_tools_1x();
    let out = Command::new(&tool)
        .args(["thin_check", "-q"])
        .arg(meta)
        .output()
        .expect("run pdata_tools");
    if out.status.success() && out.stderr.is_empty() {
        return;
    }
    let verbose = Command::new(&tool)
        .arg("thin_check")
        .arg(meta)
        .output()
        .expect("run pdata_tools");
    panic!(
        "thin_check 1.x failed on {}: status {:?}\n{}{}",
        meta.display(),
        out.status,
        String::from_utf8_lossy(&verbose.stdout),
        String::from_utf8_lossy(&verbose.stderr)
    );
}

/// `thin_check` exit status and combined output, for negative tests.
pub fn thin_check_status(meta: &Path) -> (bool, String) {
    let out = run_tool("thin_check", &[meta.to_str().unwrap()]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// One device as `thin_dump` shows it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DumpDevice {
    pub mapped_blocks: u64,
    pub transaction: u64,
    pub creation_time: u32,
    pub snap_time: u32,
    /// virtual block -> (data block, time)
    pub mappings: BTreeMap<u64, (u64, u32)>,
}

/// A parsed dump.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dump {
    pub time: u32,
    pub transaction: u64,
    pub data_block_size: u32,
    pub nr_data_blocks: u64,
    pub devices: BTreeMap<u64, DumpDevice>,
}

fn attr<T: std::str::FromStr>(line: &str, name: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let key = format!(" {name}=\"");
    let i = line
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + key.len();
    let j = line[i..].find('"').unwrap() + i;
    line[i..j].parse().unwrap()
}

/// Parses `thin_dump` XML (0.9.0 form: no defs).
pub fn parse_dump(xml: &str) -> Dump {
    let mut d = Dump::default();
    let mut cur: Option<(u64, DumpDevice)> = None;
    for line in xml.lines().map(str::trim) {
        if line.starts_with("<superblock") {
            d.time = attr(line, "time");
            d.transaction = attr(line, "transaction");
            d.data_block_size = attr(line, "data_block_size");
            d.nr_data_blocks = attr(line, "nr_data_blocks");
        } else if line.starts_with("<device") {
            cur = Some((
                attr(line, "dev_id"),
                DumpDevice {
                    mapped_blocks: attr(line, "mapped_blocks"),
                    transaction: attr(line, "transaction"),
                    creation_time: attr(line, "creation_time"),
                    snap_time: attr(line, "snap_time"),
                    mappings: BTreeMap::new(),
                },
            ));
        } else if line.starts_with("</device") {
            let (id, dev) = cur.take().expect("device open");
            d.devices.insert(id, dev);
        } else if line.starts_with("<single_mapping") {
            let dev = &mut cur.as_mut().expect("in device").1;
            dev.mappings.insert(
                attr(line, "origin_block"),
                (attr(line, "data_block"), attr(line, "time")),
            );
        } else if line.starts_with("<range_mapping") {
            let dev = &mut cur.as_mut().expect("in device").1;
            let (ob, db, len, t): (u64, u64, u64, u32) = (
                attr(line, "origin_begin"),
                attr(line, "data_begin"),
                attr(line, "length"),
                attr(line, "time"),
            );
            for i in 0..len {
                dev.mappings.insert(ob + i, (db + i, t));
            }
        }
    }
    d
}

/// Debian's `thin_dump` of `meta`, parsed.
pub fn thin_dump(meta: &Path) -> Dump {
    let out = run_tool("thin_dump", &[meta.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "thin_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_dump(&String::from_utf8_lossy(&out.stdout))
}

/// Debian's `thin_restore` of `xml` into `meta` (which must exist, sized).
pub fn thin_restore(xml: &Path, meta: &Path) {
    let out = run_tool(
        "thin_restore",
        &["-i", xml.to_str().unwrap(), "-o", meta.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "thin_restore failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// The real kernel under QEMU: the helpers the pool crate's tests use.
#[path = "../../../pool/tests/common/vm.rs"]
pub mod vm;

// ---------------------------------------------------------------------------
// A model of pool state for the crash and fault tests (tests/crash.rs,
// tests/faults.rs): what the pool should hold, kept independently of the
// implementation, compared with what `PoolMetadata` reads back and with what
// Debian's `thin_dump` sees.

/// One thin device in a [`PoolModel`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelDev {
    pub mapped_blocks: u64,
    pub transaction_id: u64,
    pub creation_time: u32,
    pub snapshotted_time: u32,
    /// virtual block -> (data block, time)
    pub mappings: BTreeMap<u64, (u64, u32)>,
}

/// What a pool holds.  `held` is the content of the metadata snapshot (its
/// devices as of the reserving commit), if one is held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolModel {
    pub time: u32,
    pub trans_id: u64,
    pub data_blocks: u64,
    pub meta_blocks: u64,
    pub needs_check: bool,
    pub held: Option<std::sync::Arc<PoolModel>>,
    pub devices: BTreeMap<u64, ModelDev>,
}

impl PoolModel {
    /// A new thin device (FORMAT.md §5.2).
    pub fn create_thin(&mut self, id: u64) {
        assert!(!self.devices.contains_key(&id), "model: {id} exists");
        self.devices.insert(
            id,
            ModelDev {
                transaction_id: self.trans_id,
                creation_time: self.time,
                snapshotted_time: self.time,
                ..Default::default()
            },
        );
    }

    /// A snapshot: time moves on, both sides are stamped with it.
    pub fn create_snap(&mut self, id: u64, origin: u64) {
        assert!(!self.devices.contains_key(&id), "model: {id} exists");
        self.time += 1;
        let o = self.devices.get_mut(&origin).expect("model: origin");
        o.snapshotted_time = self.time;
        let d = ModelDev {
            mapped_blocks: o.mapped_blocks,
            transaction_id: self.trans_id,
            creation_time: self.time,
            snapshotted_time: self.time,
            mappings: o.mappings.clone(),
        };
        self.devices.insert(id, d);
    }

    pub fn delete(&mut self, id: u64) {
        self.devices.remove(&id).expect("model: delete missing");
    }

    /// Maps `v` to `b`; returns the data block it was mapped to before.
    pub fn insert(&mut self, dev: u64, v: u64, b: u64) -> Option<u64> {
        let t = self.time;
        let d = self.devices.get_mut(&dev).expect("model: dev");
        let old = d.mappings.insert(v, (b, t)).map(|o| o.0);
        if old.is_none() {
            d.mapped_blocks += 1;
        }
        old
    }

    pub fn remove(&mut self, dev: u64, v: u64) -> bool {
        let d = self.devices.get_mut(&dev).expect("model: dev");
        let r = d.mappings.remove(&v).is_some();
        if r {
            d.mapped_blocks -= 1;
        }
        r
    }

    pub fn remove_range(&mut self, dev: u64, begin: u64, end: u64) -> u64 {
        let d = self.devices.get_mut(&dev).expect("model: dev");
        let keys: Vec<u64> = d.mappings.range(begin..end).map(|(k, _)| *k).collect();
        for k in &keys {
            d.mappings.remove(k);
        }
        d.mapped_blocks -= keys.len() as u64;
        keys.len() as u64
    }

    /// Data blocks referenced by a mapping of any device, the held
    /// snapshot's included.
    pub fn data_refs(&self) -> std::collections::HashSet<u64> {
        let mut s: std::collections::HashSet<u64> = self
            .devices
            .values()
            .flat_map(|d| d.mappings.values().map(|m| m.0))
            .collect();
        if let Some(h) = &self.held {
            s.extend(h.data_refs());
        }
        s
    }

    /// What `md` holds now (uncommitted changes included); `held` is only
    /// known to be present or not (an empty model stands for "present").
    pub fn read(md: &uthin_thin::PoolMetadata) -> uthin_thin::Result<PoolModel> {
        use uthin_thin::VirtBlock;
        let mut devices = BTreeMap::new();
        for id in md.device_ids()? {
            let det = md.device_details(id)?;
            let mut mappings = BTreeMap::new();
            md.for_each_mapping(id, VirtBlock(0), VirtBlock(u64::MAX), &mut |v, bt| {
                mappings.insert(v.0, (bt.block.0, bt.time.0));
            })?;
            devices.insert(
                id.0,
                ModelDev {
                    mapped_blocks: det.mapped_blocks,
                    transaction_id: det.transaction_id,
                    creation_time: det.creation_time,
                    snapshotted_time: det.snapshotted_time,
                    mappings,
                },
            );
        }
        Ok(PoolModel {
            time: md.time()?,
            trans_id: md.transaction_id()?,
            data_blocks: md.data_dev_size()?,
            meta_blocks: md.metadata_dev_size()?,
            needs_check: md.needs_check()?,
            held: md.metadata_snap()?.map(|_| Default::default()),
            devices,
        })
    }

    /// The first difference between `self` (expected) and `actual`, or None.
    /// The held snapshots are compared by presence only.
    pub fn diff(&self, actual: &PoolModel) -> Option<String> {
        macro_rules! field {
            ($f:ident) => {
                if self.$f != actual.$f {
                    return Some(format!(
                        "{}: expected {:?}, found {:?}",
                        stringify!($f),
                        self.$f,
                        actual.$f
                    ));
                }
            };
        }
        field!(time);
        field!(trans_id);
        field!(data_blocks);
        field!(meta_blocks);
        field!(needs_check);
        if self.held.is_some() != actual.held.is_some() {
            return Some(format!(
                "held snapshot: expected {}, found {}",
                self.held.is_some(),
                actual.held.is_some()
            ));
        }
        let (ek, ak): (Vec<_>, Vec<_>) = (
            self.devices.keys().collect(),
            actual.devices.keys().collect(),
        );
        if ek != ak {
            return Some(format!("devices: expected {ek:?}, found {ak:?}"));
        }
        for (id, e) in &self.devices {
            let a = &actual.devices[id];
            let (de, da) = (
                (
                    e.mapped_blocks,
                    e.transaction_id,
                    e.creation_time,
                    e.snapshotted_time,
                ),
                (
                    a.mapped_blocks,
                    a.transaction_id,
                    a.creation_time,
                    a.snapshotted_time,
                ),
            );
            if de != da {
                return Some(format!(
                    "device {id} (mapped, trans, ctime, stime): expected {de:?}, found {da:?}"
                ));
            }
            if e.mappings != a.mappings {
                let k = e
                    .mappings
                    .iter()
                    .zip(a.mappings.iter())
                    .find(|(x, y)| x != y)
                    .map(|(x, y)| format!("expected {x:?}, found {y:?}"))
                    .unwrap_or_else(|| {
                        format!(
                            "expected {} mappings, found {}",
                            e.mappings.len(),
                            a.mappings.len()
                        )
                    });
                return Some(format!("device {id} mappings: {k}"));
            }
        }
        None
    }

    /// Panics unless `actual` equals `self` (held snapshot by presence).
    pub fn assert_matches(&self, actual: &PoolModel, what: &str) {
        if let Some(d) = self.diff(actual) {
            panic!("{what}: state differs from the model: {d}");
        }
    }

    /// The first difference between `self` and a `thin_dump` of its pool.
    pub fn diff_dump(&self, d: &Dump) -> Option<String> {
        if (d.time, d.transaction, d.nr_data_blocks) != (self.time, self.trans_id, self.data_blocks)
        {
            return Some(format!(
                "dump superblock (time, transaction, nr_data_blocks) = {:?}, model {:?}",
                (d.time, d.transaction, d.nr_data_blocks),
                (self.time, self.trans_id, self.data_blocks)
            ));
        }
        let dumped: BTreeMap<u64, DumpDevice> = self
            .devices
            .iter()
            .map(|(id, m)| {
                (
                    *id,
                    DumpDevice {
                        mapped_blocks: m.mapped_blocks,
                        transaction: m.transaction_id,
                        creation_time: m.creation_time,
                        snap_time: m.snapshotted_time,
                        mappings: m.mappings.clone(),
                    },
                )
            })
            .collect();
        if dumped != d.devices {
            let ids: Vec<_> = d.devices.keys().collect();
            for (id, m) in &dumped {
                match d.devices.get(id) {
                    None => return Some(format!("dump lacks device {id} (has {ids:?})")),
                    Some(x) if x != m => {
                        return Some(format!(
                            "dump of device {id}: (mapped {}, trans {}, ctime {}, stime {}, {} mappings), model (mapped {}, trans {}, ctime {}, stime {}, {} mappings)",
                            x.mapped_blocks, x.transaction, x.creation_time, x.snap_time, x.mappings.len(),
                            m.mapped_blocks, m.transaction, m.creation_time, m.snap_time, m.mappings.len()
                        ))
                    }
                    _ => {}
                }
            }
            return Some(format!("dump has extra devices: {ids:?}"));
        }
        None
    }
}

/// Debian's `thin_dump -m` (the held metadata snapshot) of `meta`, parsed.
pub fn thin_dump_snap(meta: &Path) -> Dump {
    let out = run_tool("thin_dump", &["-m", meta.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "thin_dump -m failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_dump(&String::from_utf8_lossy(&out.stdout))
}

/// Writes a metadata image to `path` as a sparse file (all-zero 4 KiB blocks
/// are left as holes), so large mostly-empty images are cheap.
pub fn write_image(path: &Path, img: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(img.len() as u64).unwrap();
    for (i, chunk) in img.chunks(4096).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            f.write_all_at(chunk, i as u64 * 4096).unwrap();
        }
    }
}

/// SplitMix64: a tiny deterministic generator for scripted workloads.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49eb_133d_111b);
        z ^ (z >> 31)
    }
    /// In `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

// ---------------------------------------------------------------------------
// On-disk image helpers for the corruption tests (tests/corrupt.rs): block
// access, an independent walker that labels every block the live superblock
// reaches, and byte flips with or without re-sealing the checksum.

pub mod image {
    use std::collections::BTreeMap;
    use uthin_pdata::checksum::{self, BlockKind};
    use uthin_pdata::types::{le32, le64};

    /// Metadata block size.
    pub const BS: usize = 4096;

    /// Block `b` of an image.
    pub fn blk(img: &[u8], b: u64) -> &[u8] {
        &img[b as usize * BS..(b as usize + 1) * BS]
    }

    /// Block `b` of an image, mutably.
    pub fn blk_mut(img: &mut [u8], b: u64) -> &mut [u8] {
        &mut img[b as usize * BS..(b as usize + 1) * BS]
    }

    /// Labels every block reachable from the live superblock, reading the format
    /// directly (FORMAT.md §1.3, §2.1, §3).
    pub fn label_blocks(img: &[u8]) -> BTreeMap<u64, String> {
        let mut m = BTreeMap::new();
        let sb = blk(img, 0);
        m.insert(0, "superblock".to_string());
        let (meta_nr, meta_idx) = (le64(sb, 192), le64(sb, 208));
        m.insert(meta_idx, "metadata index".into());
        for i in 0..meta_nr.div_ceil(16320) as usize {
            m.insert(
                le64(blk(img, meta_idx), 16 + 16 * i),
                "metadata bitmap".into(),
            );
        }
        tree(
            img,
            le64(sb, 216),
            "metadata ref-count",
            &mut m,
            &mut |_| {},
        );
        let mut bitmaps = Vec::new();
        tree(img, le64(sb, 80), "data index", &mut m, &mut |v| {
            bitmaps.push(le64(v, 0))
        });
        for b in bitmaps {
            m.insert(b, "data bitmap".into());
        }
        tree(img, le64(sb, 88), "data ref-count", &mut m, &mut |_| {});
        let mut subs = Vec::new();
        tree(img, le64(sb, 320), "top-level mapping", &mut m, &mut |v| {
            subs.push(le64(v, 0))
        });
        for s in subs {
            tree(img, s, "device mapping", &mut m, &mut |_| {});
        }
        tree(img, le64(sb, 328), "details", &mut m, &mut |_| {});
        m
    }

    /// Labels the nodes of the tree at `b` `"{label} internal"` or
    /// `"{label} leaf"` and calls `f` with every leaf value.
    pub fn tree(
        img: &[u8],
        b: u64,
        label: &str,
        m: &mut BTreeMap<u64, String>,
        f: &mut dyn FnMut(&[u8]),
    ) {
        let d = blk(img, b);
        let (internal, nr, max, vs) = (
            le32(d, 4) == 1,
            le32(d, 16) as usize,
            le32(d, 20) as usize,
            le32(d, 24) as usize,
        );
        let kind = if internal { "internal" } else { "leaf" };
        m.insert(b, format!("{label} {kind}"));
        for i in 0..nr {
            let v = &d[32 + 8 * max + vs * i..][..vs];
            if internal {
                tree(img, le64(v, 0), label, m, f);
            } else {
                f(v);
            }
        }
    }

    /// A copy of `img` with byte `off` of block `b` xor-ed with `x`.
    pub fn flip(img: &[u8], b: u64, off: usize, x: u8) -> Vec<u8> {
        let mut v = img.to_vec();
        v[b as usize * BS + off] ^= x;
        v
    }

    /// Re-seals block `b` with the checksum of the kind it had.
    pub fn reseal(img: &mut [u8], b: u64, kind: BlockKind) {
        let d: &mut [u8; BS] = (&mut img[b as usize * BS..][..BS]).try_into().unwrap();
        checksum::seal(kind, d);
    }
}
