//! Preparing a newly allocated block before it is mapped (FORMAT.md §6.4,
//! §6.5): its content is the source (zeros, the old shared block, or the
//! external origin with zeros past its end) with the write laid over it.
//! Large blocks go through a bounded buffer; a part the write covers
//! entirely is written straight from the caller's buffer.

use crate::error::{Error, Result};
use crate::pool::Pool;
use uthin_block_io::BlockDevice;
use uthin_thin::DataBlock;

/// Bytes prepared per data-device write.
const CHUNK: u64 = 1 << 20;

/// Where a new block's bytes come from, outside the write.
pub(crate) enum Source<'a> {
    Zeros,
    /// Copy of a data block (breaking sharing).
    Block(DataBlock),
    /// The external origin at virtual byte offset `at`, `len` bytes long.
    Origin {
        dev: &'a dyn BlockDevice,
        len: u64,
        at: u64,
    },
}

/// Reads the origin at `at`; bytes past `origin_len` read as zeros.
pub(crate) fn read_origin(
    origin: &dyn BlockDevice,
    origin_len: u64,
    at: u64,
    buf: &mut [u8],
) -> Result<()> {
    let n = origin_len.saturating_sub(at).min(buf.len() as u64) as usize;
    if n > 0 {
        origin
            .read_at(&mut buf[..n], at)
            .map_err(|source| Error::OriginIo {
                offset: at,
                len: n as u64,
                source,
            })?;
    }
    buf[n..].fill(0);
    Ok(())
}

impl Pool {
    /// Fills new block `new` from `src`, with `data` at byte `off`.
    pub(crate) fn prepare_block(
        &self,
        new: DataBlock,
        src: Source<'_>,
        off: u64,
        data: &[u8],
    ) -> Result<()> {
        match src {
            Source::Zeros => self.zero_around(new, off, data),
            Source::Block(old) => {
                self.copy_with(new, off, data, |cs, buf| self.read_data(old, cs, buf))
            }
            Source::Origin { dev, len, at } => self.copy_with(new, off, data, |cs, buf| {
                read_origin(dev, len, at + cs, buf)
            }),
        }
    }

    /// Zeroes the block, then writes the data.  Zeroing goes through
    /// [`BlockDevice::write_zeroes`]: on a data file one hole punch, which
    /// allocates nothing.
    fn zero_around(&self, new: DataBlock, off: u64, data: &[u8]) -> Result<()> {
        let base = new.0 * self.block_bytes;
        self.data
            .write_zeroes(base, self.block_bytes)
            .map_err(|err| Error::data_io("write_zeroes", base, self.block_bytes, err))?;
        self.write_data(new, off, data)
    }

    /// Copies the block chunk by chunk from `fill(chunk_offset, buf)`, with
    /// the write laid over; chunks the write covers come from `data` alone.
    fn copy_with(
        &self,
        new: DataBlock,
        off: u64,
        data: &[u8],
        fill: impl Fn(u64, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let bb = self.block_bytes;
        let (ws, we) = (off, off + data.len() as u64);
        let mut buf = Vec::new();
        let mut cs = 0;
        while cs < bb {
            let ce = (cs + CHUNK).min(bb);
            if ws <= cs && ce <= we {
                let s = (cs - ws) as usize;
                self.write_data(new, cs, &data[s..s + (ce - cs) as usize])?;
                cs = ce;
                continue;
            }
            buf.clear();
            buf.resize((ce - cs) as usize, 0);
            fill(cs, &mut buf)?;
            let (os, oe) = (ws.max(cs), we.min(ce));
            if os < oe {
                buf[(os - cs) as usize..(oe - cs) as usize]
                    .copy_from_slice(&data[(os - ws) as usize..(oe - ws) as usize]);
            }
            self.write_data(new, cs, &buf)?;
            cs = ce;
        }
        Ok(())
    }
}
