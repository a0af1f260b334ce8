//! Test devices for the layers above (feature `testing`).
//!
//! * [`MemDevice`]: a zero-filled in-memory device.
//! * [`FaultyDevice`]: wraps any device and fails chosen reads, writes,
//!   flushes or discards, counted from creation.
//! * [`CrashDevice`]: separates what reads see (the *live* image) from what
//!   survives a power cut (the *durable* image), can die at a chosen flush,
//!   and can produce torn crash images.
//!
//! All are `Send + Sync` (state behind a [`Mutex`]).  Out-of-range reads fail
//! with `UnexpectedEof` and out-of-range writes with `InvalidInput`, like
//! [`crate::FileDevice`]; discards are clipped to the device's length.

use crate::file::{in_range, read_past_end, write_past_end};
use crate::BlockDevice;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

mod crash;
pub use crash::CrashDevice;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge every other user of the device.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_from(img: &[u8], what: &str, buf: &mut [u8], offset: u64) -> io::Result<()> {
    if !in_range(offset, buf.len(), img.len() as u64) {
        return Err(read_past_end(what, offset, buf.len(), img.len() as u64));
    }
    let o = offset as usize;
    buf.copy_from_slice(&img[o..o + buf.len()]);
    Ok(())
}

fn check_write(img: &[u8], what: &str, len: usize, offset: u64) -> io::Result<()> {
    if in_range(offset, len, img.len() as u64) {
        Ok(())
    } else {
        Err(write_past_end(what, offset, len, img.len() as u64))
    }
}

/// Clip a discard to `dev_len`; `None` if nothing is left.
fn clip(offset: u64, len: u64, dev_len: u64) -> Option<(usize, usize)> {
    let end = offset.saturating_add(len).min(dev_len);
    (offset < end).then_some((offset as usize, end as usize))
}

// ---------------------------------------------------------------------------

/// A zero-filled in-memory device.  `flush` is a no-op; `discard` zeroes.
#[derive(Debug, Default)]
pub struct MemDevice {
    data: Mutex<Vec<u8>>,
}

impl MemDevice {
    /// A zero-filled device of `len_bytes`.
    pub fn new(len_bytes: u64) -> Self {
        Self::from_bytes(vec![0; len_bytes as usize])
    }
    /// A device holding exactly `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        MemDevice {
            data: Mutex::new(bytes),
        }
    }
    /// A copy of the current contents.
    pub fn snapshot(&self) -> Vec<u8> {
        lock(&self.data).clone()
    }
    /// Grow (with zeroes) or shrink the device to `n` bytes.
    pub fn set_len(&self, n: u64) {
        lock(&self.data).resize(n as usize, 0);
    }
}

/// A shared zero-filled [`MemDevice`] of `len` bytes.
pub fn mem(len: u64) -> Arc<MemDevice> {
    Arc::new(MemDevice::new(len))
}

impl BlockDevice for MemDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_from(&lock(&self.data), "mem", buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut d = lock(&self.data);
        check_write(&d, "mem", buf.len(), offset)?;
        let o = offset as usize;
        d[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.data).len() as u64)
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut d = lock(&self.data);
        if let Some((s, e)) = clip(offset, len, d.len() as u64) {
            d[s..e].fill(0);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------

/// The kinds of operation [`FaultyDevice`] counts and can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// [`BlockDevice::read_at`].
    Read,
    /// [`BlockDevice::write_at`].
    Write,
    /// [`BlockDevice::flush`].
    Flush,
    /// [`BlockDevice::discard`].
    Discard,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    at: u64,
    sticky: bool,
}

#[derive(Debug, Default)]
struct FaultState {
    counts: [u64; 4],
    faults: [Option<Fault>; 4],
    sticky: bool,
}

/// Wraps a device and injects errors into chosen operations.
///
/// Reads, writes, flushes and discards are counted separately, 0-based, from
/// creation (or the last [`FaultyDevice::reset_counts`]); every attempt
/// counts, failed or not.  `fail_write_at(n)` makes the write whose index is
/// `n` return `io::Error::other("injected write fault ...")` without touching
/// the inner device.  A fault is one-shot (cleared once it fires) unless
/// sticky, in which case every operation of that kind with index `>= n`
/// fails.  `write_zeroes` goes through the default (writes of zeroes), so it
/// counts, and fails, as writes.
#[derive(Debug)]
pub struct FaultyDevice<D: BlockDevice> {
    inner: D,
    state: Mutex<FaultState>,
}

impl<D: BlockDevice> FaultyDevice<D> {
    /// Wrap `inner` with no faults armed.
    pub fn new(inner: D) -> Self {
        FaultyDevice {
            inner,
            state: Mutex::new(FaultState::default()),
        }
    }
    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }
    /// Unwrap.
    pub fn into_inner(self) -> D {
        self.inner
    }
    /// Arm a fault on the `n`-th (0-based) operation of kind `op`.
    pub fn fail_at(&self, op: Op, n: u64) {
        let mut s = lock(&self.state);
        let sticky = s.sticky;
        s.faults[op as usize] = Some(Fault { at: n, sticky });
    }
    /// Fail every operation of kind `op` from the `n`-th on (a sticky fault
    /// regardless of [`FaultyDevice::set_sticky`]).
    pub fn fail_all_from(&self, op: Op, n: u64) {
        lock(&self.state).faults[op as usize] = Some(Fault {
            at: n,
            sticky: true,
        });
    }
    /// Fail the `n`-th read.
    pub fn fail_read_at(&self, n: u64) {
        self.fail_at(Op::Read, n)
    }
    /// Fail the `n`-th write.
    pub fn fail_write_at(&self, n: u64) {
        self.fail_at(Op::Write, n)
    }
    /// Fail the `n`-th flush.
    pub fn fail_flush_at(&self, n: u64) {
        self.fail_at(Op::Flush, n)
    }
    /// Fail the `n`-th discard.
    pub fn fail_discard_at(&self, n: u64) {
        self.fail_at(Op::Discard, n)
    }
    /// Make armed faults, and faults armed later, sticky (or one-shot).
    pub fn set_sticky(&self, sticky: bool) {
        let mut s = lock(&self.state);
        s.sticky = sticky;
        for f in s.faults.iter_mut().flatten() {
            f.sticky = sticky;
        }
    }
    /// Disarm every fault.
    pub fn clear_faults(&self) {
        lock(&self.state).faults = [None; 4];
    }
    /// Operations attempted so far: `(reads, writes, flushes)`.
    pub fn counts(&self) -> (u64, u64, u64) {
        let c = lock(&self.state).counts;
        (c[0], c[1], c[2])
    }
    /// Discards attempted so far.
    pub fn discards(&self) -> u64 {
        lock(&self.state).counts[Op::Discard as usize]
    }
    /// Restart counting from zero (armed faults keep their indices).
    pub fn reset_counts(&self) {
        lock(&self.state).counts = [0; 4];
    }

    /// Count one `op`; error if it is to fail.
    fn tick(&self, op: Op) -> io::Result<()> {
        let mut s = lock(&self.state);
        let i = op as usize;
        let n = s.counts[i];
        s.counts[i] += 1;
        match s.faults[i] {
            Some(f) if n == f.at || (f.sticky && n > f.at) => {
                if !f.sticky {
                    s.faults[i] = None;
                }
                let name = ["read", "write", "flush", "discard"][i];
                Err(io::Error::other(format!(
                    "injected {name} fault ({name} #{n})"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl<D: BlockDevice> BlockDevice for FaultyDevice<D> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.tick(Op::Read)?;
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.tick(Op::Write)?;
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.tick(Op::Flush)?;
        self.inner.flush()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.tick(Op::Discard)?;
        self.inner.discard(offset, len)
    }
}
