//! A deterministic multi-volume workload and its executor, recording what
//! each request did in a [`History`] (crash and fault tests).

use super::history::{write_bytes, History, Outcome, SECTOR};
use super::{Rng, BLOCK};
use std::collections::BTreeMap;
use std::sync::Arc;
use uthin_pool::{DevId, Pool, PoolMode, Thin};

/// Blocks per volume.
pub const VOL_BLOCKS: u64 = 8;
/// Sectors per volume.
pub const SECTORS: u64 = VOL_BLOCKS * BLOCK / SECTOR;

/// One request.
#[derive(Clone, Debug)]
pub enum Req {
    Create(u64),
    Snap(u64, u64),
    Delete(u64),
    Write { dev: u64, s: u64, n: u64, fua: bool },
    Read { dev: u64, s: u64, n: u64 },
    Discard { dev: u64, off: u64, len: u64 },
    Flush(u64),
    Commit,
}

/// `len` requests over up to 5 volumes: provisioning, partial, full-block
/// and FUA writes, overwrites, reads, snapshots of snapshots, deletes,
/// aligned and unaligned discards, flushes and commits.
pub fn workload(seed: u64, len: usize) -> Vec<Req> {
    let mut rng = Rng(seed);
    let mut vols: Vec<u64> = vec![];
    let mut next = 1;
    let mut out = vec![];
    let spb = BLOCK / SECTOR;
    while out.len() < len {
        let pick = |rng: &mut Rng, v: &Vec<u64>| v[rng.below(v.len() as u64) as usize];
        let r = rng.below(100);
        let req = if vols.is_empty() || (r < 5 && vols.len() < 4) {
            vols.push(next);
            next += 1;
            Req::Create(next - 1)
        } else if r < 12 && vols.len() < 5 {
            let o = pick(&mut rng, &vols);
            vols.push(next);
            next += 1;
            Req::Snap(next - 1, o)
        } else if r < 15 && vols.len() > 2 {
            let d = pick(&mut rng, &vols);
            vols.retain(|&v| v != d);
            Req::Delete(d)
        } else if r < 62 {
            let dev = pick(&mut rng, &vols);
            let (s, n) = match rng.below(4) {
                // One to three whole blocks (several take the run path).
                0 => (rng.below(VOL_BLOCKS - 2) * spb, spb * (1 + rng.below(3))),
                1 => (rng.below(SECTORS - 2 * spb), 1 + rng.below(2 * spb)),
                _ => (rng.below(SECTORS - 8), 1 + rng.below(8)),
            };
            Req::Write {
                dev,
                s,
                n,
                fua: rng.below(7) == 0,
            }
        } else if r < 70 {
            let dev = pick(&mut rng, &vols);
            let s = rng.below(SECTORS - spb);
            Req::Read {
                dev,
                s,
                n: 1 + rng.below(spb),
            }
        } else if r < 80 {
            let dev = pick(&mut rng, &vols);
            let off = rng.below(VOL_BLOCKS * BLOCK - 1);
            let len = 1 + rng.below((VOL_BLOCKS * BLOCK - off).min(3 * BLOCK));
            Req::Discard { dev, off, len }
        } else if r < 93 {
            Req::Flush(pick(&mut rng, &vols))
        } else {
            Req::Commit
        };
        out.push(req);
    }
    out
}

/// Open volumes.
pub type Thins = BTreeMap<u64, Thin>;

fn outcome<T>(r: &uthin_pool::Result<T>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        Err(_) => Outcome::Failed,
    }
}

/// Runs one request, records it in `h`; panics if a read returns bytes the
/// history does not allow.  Requests on volumes that do not exist (an
/// earlier request failed) are skipped (`None`).
pub fn exec(pool: &Arc<Pool>, thins: &mut Thins, h: &mut History, req: &Req) -> Option<Outcome> {
    let mode = pool.mode();
    let o = match req {
        Req::Create(d) => {
            let r = pool.create_thin(DevId(*d));
            h.created(*d, outcome(&r));
            if r.is_ok() {
                thins.insert(*d, pool.thin(DevId(*d), None).unwrap());
            }
            outcome(&r)
        }
        Req::Snap(d, o) => {
            if !h.vols.contains_key(o) {
                return None;
            }
            let r = pool.create_snap(DevId(*d), DevId(*o));
            h.snapshotted(*d, *o, outcome(&r));
            if r.is_ok() {
                thins.insert(*d, pool.thin(DevId(*d), None).unwrap());
            }
            outcome(&r)
        }
        Req::Delete(d) => {
            if !h.vols.contains_key(d) {
                return None;
            }
            thins.remove(d);
            let r = pool.delete_thin(DevId(*d));
            h.deleted(*d, outcome(&r));
            outcome(&r)
        }
        Req::Write { dev, s, n, fua } => {
            let t = thins.get(dev)?;
            let tag = h.tag();
            let r = t.write(s * SECTOR, &write_bytes(tag, *s, *n), *fua);
            h.wrote(*dev, *s, *n, tag, outcome(&r));
            if r.is_ok() && *fua {
                h.flushed(*dev);
            }
            outcome(&r)
        }
        Req::Read { dev, s, n } => {
            let t = thins.get(dev)?;
            let mut buf = vec![0u8; (n * SECTOR) as usize];
            let r = t.read(s * SECTOR, &mut buf);
            if r.is_ok() {
                if let Err(e) = h.check_range(*dev, *s, &buf) {
                    panic!("live read: {e}");
                }
            }
            outcome(&r)
        }
        Req::Discard { dev, off, len } => {
            let t = thins.get(dev)?;
            let r = t.discard(*off, *len);
            let (b, e) = (off.div_ceil(BLOCK), (off + len) / BLOCK);
            let spb = BLOCK / SECTOR;
            // Read-only modes complete discards without doing anything.
            if b < e && mode.metadata_writable() {
                h.wrote(*dev, b * spb, (e - b) * spb, 0, outcome(&r));
            }
            outcome(&r)
        }
        Req::Flush(d) => {
            let t = thins.get(d)?;
            let r = t.flush();
            if r.is_ok() {
                h.flushed(*d);
            }
            outcome(&r)
        }
        Req::Commit => outcome(&pool.commit()),
    };
    if pool.mode() >= PoolMode::ReadOnly && mode < PoolMode::ReadOnly {
        // The transaction was aborted: reads fall back to the last commit.
        h.fell_back();
    }
    Some(o)
}

/// Reads every volume of the pool and checks it against `h`.
pub fn verify_pool(pool: &Arc<Pool>, h: &History, what: &str) {
    let devs: Vec<u64> =
        pool.inspect_metadata(|md| md.device_ids().unwrap().iter().map(|d| d.0).collect());
    if let Err(e) = h.check_devices(&devs) {
        panic!("{what}: {e}");
    }
    let mut buf = vec![0u8; (SECTORS * SECTOR) as usize];
    for d in devs {
        let t = pool.thin(DevId(d), None).unwrap();
        t.read(0, &mut buf).unwrap();
        if let Err(e) = h.check_volume(d, &buf) {
            panic!("{what}: {e}");
        }
    }
}
