//! Block access for the checker: positional reads straight from the device,
//! without a cache (each block is read once), one block at a time or in runs
//! of adjacent blocks (leaves written together usually sit together), and the
//! few writes `--auto-repair` and `--clear-needs-check-flag` make.

use crate::error::{Error, Result};
use uthin_block_io::{SharedDevice, BLOCK_SIZE};
use uthin_pdata::types::BlockData;

/// Longest run of adjacent blocks read at once.
pub const MAX_RUN: usize = 64;

/// The metadata device.
pub struct Disk {
    dev: SharedDevice,
    nr_blocks: u64,
}

fn io_err(what: String, e: std::io::Error) -> Error {
    Error::msg(format!("{what}: {e}"))
}

impl Disk {
    /// Wraps a device.
    pub fn new(dev: SharedDevice) -> Result<Self> {
        let len = dev
            .len()
            .map_err(|e| io_err("cannot get the metadata device size".into(), e))?;
        Ok(Disk {
            dev,
            nr_blocks: len / BLOCK_SIZE as u64,
        })
    }

    /// Number of whole blocks on the device.
    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// Reads block `b` into `buf`.
    pub fn read(&self, b: u64, buf: &mut BlockData) -> std::io::Result<()> {
        self.read_run(b, &mut buf[..])
    }

    /// Reads `buf.len() / 4096` blocks starting at `b`.
    pub fn read_run(&self, b: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let n = (buf.len() / BLOCK_SIZE) as u64;
        if b.checked_add(n).is_none_or(|end| end > self.nr_blocks) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "beyond the end of the metadata device",
            ));
        }
        self.dev.read_at(buf, b * BLOCK_SIZE as u64)
    }

    /// Reads block `b` into a new buffer.
    pub fn read_new(&self, b: u64) -> std::io::Result<Box<BlockData>> {
        let mut buf = Box::new([0u8; BLOCK_SIZE]);
        self.read(b, &mut buf)?;
        Ok(buf)
    }

    /// Writes block `b` (already sealed).
    pub fn write(&self, b: u64, data: &BlockData) -> Result<()> {
        self.dev
            .write_at(&data[..], b * BLOCK_SIZE as u64)
            .map_err(|e| io_err(format!("cannot write metadata block {b}"), e))
    }

    /// Makes the writes durable.
    pub fn flush(&self) -> Result<()> {
        self.dev
            .flush()
            .map_err(|e| io_err("cannot flush the metadata device".into(), e))
    }
}

/// Groups sorted block numbers into runs of adjacent blocks, at most
/// [`MAX_RUN`] long: returns (first block, length) pairs.
pub fn runs(sorted: &[u64]) -> Vec<(u64, usize)> {
    let mut out: Vec<(u64, usize)> = Vec::new();
    for &b in sorted {
        match out.last_mut() {
            Some((s, n)) if *s + *n as u64 == b && *n < MAX_RUN => *n += 1,
            _ => out.push((b, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_split_on_gaps_and_length() {
        let v: Vec<u64> = (10..80).chain([90, 91, 93]).collect();
        let r = super::runs(&v);
        assert_eq!(r, vec![(10, 64), (74, 6), (90, 2), (93, 1)]);
    }
}
