//! A sector-level model of what thin volumes may read back, for the crash
//! and fault tests.
//!
//! Every write stamps each 512-byte sector it covers with a fresh tag: the
//! sector's bytes encode (tag, sector index) in their first 8 bytes and a
//! pattern derived from both in the rest, so a sector read back names the
//! write it came from, and a sector written elsewhere or torn inside shows.
//! Tag 0 is zeros (never written, or discarded).
//!
//! For each sector the model keeps two sets of tags:
//! * `possible`: what a read may return now;
//! * `durable`: what a read may return after a crash (or a reopen).
//!
//! A successful write sets `possible = {t}` and adds `t` to `durable`; a
//! failed one adds `t` to both (it may have landed, wholly or partly).  A
//! completed flush of a volume sets its `durable = possible`; a successful
//! pool message commits everything, so every volume's `durable = possible`.
//! An abort or a crash falls back: `possible = durable`.  So "every write
//! acknowledged before the last completed flush reads back" is the case
//! where the set holds one tag, and "nothing reads back that was never
//! written" is membership.

use std::collections::BTreeMap;

pub const SECTOR: u64 = 512;

/// The bytes of sector `s` stamped with `tag`.
pub fn sector_bytes(tag: u32, s: u64) -> [u8; SECTOR as usize] {
    let mut b = [0u8; SECTOR as usize];
    if tag == 0 {
        return b;
    }
    let head = ((tag as u64) << 32) | (s & 0xffff_ffff);
    b[..8].copy_from_slice(&head.to_le_bytes());
    let mut x = head.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in b[8..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    b
}

/// The bytes of `n` sectors from sector `s`, all stamped with `tag`.
pub fn write_bytes(tag: u32, s: u64, n: u64) -> Vec<u8> {
    (s..s + n).flat_map(|i| sector_bytes(tag, i)).collect()
}

/// The tag a sector read back carries, or why it is no written sector.
pub fn decode(bytes: &[u8], s: u64) -> Result<u32, String> {
    if bytes.iter().all(|&b| b == 0) {
        return Ok(0);
    }
    let head = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let (tag, from) = ((head >> 32) as u32, head & 0xffff_ffff);
    if from != s & 0xffff_ffff {
        return Err(format!("holds sector {from}'s data (tag {tag})"));
    }
    if tag == 0 || bytes != sector_bytes(tag, s) {
        return Err(format!("is torn or garbage (head {head:#x})"));
    }
    Ok(tag)
}

fn add(set: &mut Vec<u32>, t: u32) {
    if !set.contains(&t) {
        set.push(t);
    }
}

/// One volume.
#[derive(Clone, Debug)]
pub struct Vol {
    /// Whether it surely exists (false: a message about it was in flight
    /// at a crash).
    pub certain: bool,
    pub possible: Vec<Vec<u32>>,
    pub durable: Vec<Vec<u32>>,
}

/// The model of every volume.
#[derive(Clone, Debug)]
pub struct History {
    pub sectors: u64,
    pub vols: BTreeMap<u64, Vol>,
    next_tag: u32,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Failed: it may have taken effect, wholly or partly.
    Failed,
}

impl History {
    /// Volumes of `sectors` sectors each.
    pub fn new(sectors: u64) -> Self {
        History {
            sectors,
            vols: BTreeMap::new(),
            next_tag: 1,
        }
    }

    pub fn tag(&mut self) -> u32 {
        let t = self.next_tag;
        self.next_tag += 1;
        t
    }

    fn vol(&mut self, dev: u64) -> &mut Vol {
        self.vols.get_mut(&dev).expect("model: no such volume")
    }

    /// Sectors `[s, s + n)` of `dev` were written with `tag` (or zeroed,
    /// tag 0).
    pub fn wrote(&mut self, dev: u64, s: u64, n: u64, tag: u32, out: Outcome) {
        let v = self.vol(dev);
        for i in s..s + n {
            let i = i as usize;
            if out == Outcome::Ok {
                v.possible[i] = vec![tag];
            } else {
                add(&mut v.possible[i], tag);
            }
            add(&mut v.durable[i], tag);
        }
    }

    /// A flush of `dev` completed.
    pub fn flushed(&mut self, dev: u64) {
        let v = self.vol(dev);
        v.durable = v.possible.clone();
    }

    /// A commit of everything completed (a pool message).
    pub fn committed(&mut self) {
        for v in self.vols.values_mut() {
            v.durable = v.possible.clone();
        }
    }

    /// A transaction abort (or a crash): what was not durable may be gone.
    pub fn fell_back(&mut self) {
        for v in self.vols.values_mut() {
            for (p, d) in v.possible.iter_mut().zip(&v.durable) {
                for &t in d {
                    add(p, t);
                }
            }
        }
    }

    /// After a crash: only the durable sets remain.
    pub fn crashed(&mut self) {
        for v in self.vols.values_mut() {
            v.possible = v.durable.clone();
        }
    }

    /// `create_thin dev` (Failed: it may or may not exist now).
    pub fn created(&mut self, dev: u64, out: Outcome) {
        let n = self.sectors as usize;
        let vol = Vol {
            certain: out == Outcome::Ok,
            possible: vec![vec![0]; n],
            durable: vec![vec![0]; n],
        };
        self.vols.insert(dev, vol);
        if out == Outcome::Ok {
            self.committed();
        }
    }

    /// `create_snap dev origin`.
    pub fn snapshotted(&mut self, dev: u64, origin: u64, out: Outcome) {
        let o = self.vol(origin).clone();
        let vol = Vol {
            certain: out == Outcome::Ok,
            possible: o.possible.clone(),
            durable: o.possible,
        };
        self.vols.insert(dev, vol);
        if out == Outcome::Ok {
            self.committed();
        }
    }

    /// `delete dev`.
    pub fn deleted(&mut self, dev: u64, out: Outcome) {
        if out == Outcome::Ok {
            self.vols.remove(&dev);
            self.committed();
        } else {
            self.vol(dev).certain = false;
        }
    }

    /// Checks that `devs` (the pool's device ids) agree with the model.
    pub fn check_devices(&self, devs: &[u64]) -> Result<(), String> {
        for (id, v) in &self.vols {
            if v.certain && !devs.contains(id) {
                return Err(format!("volume {id} is missing"));
            }
        }
        for id in devs {
            if !self.vols.contains_key(id) {
                return Err(format!("volume {id} should not exist"));
            }
        }
        Ok(())
    }

    /// Checks a volume's bytes against `possible`.
    pub fn check_volume(&self, dev: u64, bytes: &[u8]) -> Result<(), String> {
        self.check_range(dev, 0, bytes)
    }

    /// Checks bytes read from sector `first` on against `possible`.
    pub fn check_range(&self, dev: u64, first: u64, bytes: &[u8]) -> Result<(), String> {
        let v = &self.vols[&dev];
        for (i, sec) in bytes.chunks(SECTOR as usize).enumerate() {
            let s = first + i as u64;
            let ok = &v.possible[s as usize];
            match decode(sec, s) {
                Ok(t) if ok.contains(&t) => {}
                Ok(t) => {
                    return Err(format!(
                        "volume {dev} sector {s} (block {}) holds tag {t}, expected one of {ok:?}",
                        s * SECTOR / 65536
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "volume {dev} sector {s} {e}, expected one of {ok:?}"
                    ))
                }
            }
        }
        Ok(())
    }
}
