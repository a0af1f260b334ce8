//! [`CrashDevice`]: a volatile write cache and power loss, for crash tests.
//!
//! Reads see the *live* image; only flushed writes reach the *durable* image
//! that survives a crash.  [`CrashDevice::durable_image_torn`] builds the other
//! images a crash could leave: some unflushed writes survive, one may be torn
//! at a sector boundary.

use super::{check_write, clip, lock, read_from};
use crate::{BlockDevice, SECTOR_SIZE};
use std::io;
use std::sync::Mutex;

#[derive(Debug)]
struct CrashState {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<(u64, Vec<u8>)>,
    flushes: u64,
    crash_at: Option<u64>,
    dead: bool,
}

/// A device that models a volatile write cache and power loss.
///
/// Writes (and discards, modelled as writes of zeroes) update the *live*
/// image, which is what reads see, and are queued as pending.  A successful
/// `flush` applies the pending writes, in order, to the *durable* image.
/// After [`CrashDevice::crash_at_flush`]`(n)`, flush number `n` (0-based,
/// counted from creation) fails and the device is dead: that flush and every
/// later write, discard and flush fail and nothing more becomes durable.
/// Reads keep working on the live image.
#[derive(Debug)]
pub struct CrashDevice {
    state: Mutex<CrashState>,
}

impl CrashDevice {
    /// A zero-filled device of `len_bytes`, all of it durable.
    pub fn new(len_bytes: u64) -> Self {
        Self::from_bytes(vec![0; len_bytes as usize])
    }
    /// A device whose live and durable images both start as `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        CrashDevice {
            state: Mutex::new(CrashState {
                durable: bytes.clone(),
                live: bytes,
                pending: Vec::new(),
                flushes: 0,
                crash_at: None,
                dead: false,
            }),
        }
    }
    /// Die at flush number `n` (0-based, counted since creation).  If `n`
    /// flushes have already completed, the next flush is the one that dies.
    pub fn crash_at_flush(&self, n: u64) {
        lock(&self.state).crash_at = Some(n);
    }
    /// Number of flushes that completed (made writes durable).
    pub fn flushes(&self) -> u64 {
        lock(&self.state).flushes
    }
    /// Whether the device has died at its crash point.
    pub fn is_dead(&self) -> bool {
        lock(&self.state).dead
    }
    /// Number of writes issued since the last completed flush.
    pub fn pending_writes(&self) -> usize {
        lock(&self.state).pending.len()
    }
    /// What reads see now.
    pub fn live_image(&self) -> Vec<u8> {
        lock(&self.state).live.clone()
    }
    /// What survives a crash now if no unflushed write reached the media.
    pub fn durable_image(&self) -> Vec<u8> {
        lock(&self.state).durable.clone()
    }

    /// A possible post-crash image in which unflushed writes partly survive.
    ///
    /// Starting from the durable image, the pending writes are visited in
    /// issue order with a SplitMix64 generator seeded by `seed`:
    /// * one pending write, chosen uniformly, may be *torn*: only its bytes up
    ///   to a cut point are applied.  The cut is drawn uniformly from the
    ///   write's start, every absolute 512-byte sector boundary strictly inside
    ///   it, and its end; so it lands nothing, a prefix of whole sectors, or
    ///   everything, and a write within one sector is all or nothing;
    /// * every other pending write is applied in full with probability 1/2.
    ///
    /// So at most one write is partial, and any subset of the others survives.
    ///
    /// With no pending writes this equals [`CrashDevice::durable_image`].  The
    /// result depends only on the device's state and `seed`.
    pub fn durable_image_torn(&self, seed: u64) -> Vec<u8> {
        let s = lock(&self.state);
        let mut img = s.durable.clone();
        if s.pending.is_empty() {
            return img;
        }
        let mut rng = SplitMix64(seed);
        let torn = rng.below(s.pending.len() as u64) as usize;
        for (i, (off, data)) in s.pending.iter().enumerate() {
            let o = *off as usize;
            if i == torn {
                let end = off + data.len() as u64;
                let first = off / SECTOR_SIZE + 1; // first boundary after `off`
                let last = (end - 1) / SECTOR_SIZE; // last boundary before `end`
                let inner = (last + 1).saturating_sub(first);
                let cut = match rng.below(inner + 2) {
                    0 => *off,
                    p if p <= inner => (first + p - 1) * SECTOR_SIZE,
                    _ => end,
                };
                let n = (cut - off) as usize;
                img[o..o + n].copy_from_slice(&data[..n]);
            } else if rng.next() & 1 == 1 {
                img[o..o + data.len()].copy_from_slice(data);
            }
        }
        img
    }

    /// Resize the device to `n` bytes, as growing (or shrinking) the
    /// underlying volume would: the change of size is itself durable at once.
    /// Growing adds zeroes to both the live and the durable image.  Shrinking
    /// cuts both images and drops (or clips) pending writes beyond the new
    /// end.  Works on a dead device too (it only models the volume's size).
    pub fn set_len(&self, n: u64) {
        let mut s = lock(&self.state);
        let n = n as usize;
        s.live.resize(n, 0);
        s.durable.resize(n, 0);
        s.pending.retain_mut(|(off, data)| {
            let o = *off as usize;
            if o >= n {
                return false;
            }
            data.truncate(n - o);
            true
        });
    }

    fn dead_error(what: &str) -> io::Error {
        io::Error::other(format!("crash device is dead: {what} refused"))
    }

    /// Apply `data` at `offset` to the live image and queue it as pending.
    /// The caller has checked the range.
    fn record(s: &mut CrashState, data: Vec<u8>, offset: u64) {
        let o = offset as usize;
        s.live[o..o + data.len()].copy_from_slice(&data);
        if !data.is_empty() {
            s.pending.push((offset, data));
        }
    }
}

impl BlockDevice for CrashDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_from(&lock(&self.state).live, "crash", buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = lock(&self.state);
        if s.dead {
            return Err(Self::dead_error("write"));
        }
        check_write(&s.live, "crash", buf.len(), offset)?;
        Self::record(&mut s, buf.to_vec(), offset);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        let mut s = lock(&self.state);
        if s.dead {
            return Err(Self::dead_error("flush"));
        }
        if s.crash_at.is_some_and(|n| s.flushes >= n) {
            s.dead = true;
            return Err(io::Error::other(format!(
                "injected crash at flush #{}",
                s.flushes
            )));
        }
        let CrashState {
            durable, pending, ..
        } = &mut *s;
        for (off, data) in pending.drain(..) {
            let o = off as usize;
            durable[o..o + data.len()].copy_from_slice(&data);
        }
        s.flushes += 1;
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.state).live.len() as u64)
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut s = lock(&self.state);
        if s.dead {
            return Err(Self::dead_error("discard"));
        }
        if let Some((start, end)) = clip(offset, len, s.live.len() as u64) {
            Self::record(&mut s, vec![0; end - start], start as u64);
        }
        Ok(())
    }
}

/// SplitMix64: tiny, deterministic, good enough to pick crash scenarios.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49eb_133d_111b);
        z ^ (z >> 31)
    }
    /// Uniform-ish in `0..n` (`n > 0`); modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_len_grows_durably_and_clips_pending() {
        let d = CrashDevice::new(1024);
        d.write_at(&[1; 512], 0).unwrap();
        d.flush().unwrap();
        d.write_at(&[2; 512], 512).unwrap();
        d.set_len(4096);
        assert_eq!(d.len().unwrap(), 4096);
        assert_eq!(d.durable_image().len(), 4096);
        d.write_at(&[3; 512], 3584).unwrap();
        d.flush().unwrap();
        let img = d.durable_image();
        assert!(img[..512].iter().all(|&b| b == 1));
        assert!(img[512..1024].iter().all(|&b| b == 2));
        assert!(img[1024..3584].iter().all(|&b| b == 0));
        assert!(img[3584..].iter().all(|&b| b == 3));
        // Shrinking drops pending writes past the end and clips straddlers.
        d.write_at(&[4; 1024], 512).unwrap();
        d.write_at(&[5; 512], 2048).unwrap();
        d.set_len(1024);
        assert_eq!(d.pending_writes(), 1);
        d.flush().unwrap();
        let img = d.durable_image();
        assert_eq!(img.len(), 1024);
        assert!(img[512..].iter().all(|&b| b == 4));
    }
}
