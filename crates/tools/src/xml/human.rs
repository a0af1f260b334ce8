//! thin-provisioning-tools 1.x's `thin_dump -f human_readable` text.

use super::{output_error, push_u64, FLUSH_AT};
use crate::error::Result;
use crate::ir::{Device, Map, MetadataVisitor, Superblock, Visit};
use std::io::Write;

/// Writes the IR as 1.x's human-readable text.
pub struct HumanReadableWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> HumanReadableWriter<W> {
    /// A writer on `out` (buffered internally).
    pub fn new(out: W) -> Self {
        HumanReadableWriter {
            out,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
        }
    }

    /// Gives the output back (after [`MetadataVisitor::eof`]).
    pub fn into_inner(self) -> W {
        self.out
    }

    fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf).map_err(output_error)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn text(&mut self, s: &str) -> Result<Visit> {
        self.buf.extend_from_slice(s.as_bytes());
        self.maybe_flush()?;
        Ok(Visit::Continue)
    }
}

impl<W: Write> MetadataVisitor for HumanReadableWriter<W> {
    fn superblock_begin(&mut self, sb: &Superblock) -> Result<Visit> {
        let mut s = format!(
            "begin superblock: \"{}\", {}, {}, {}, {}, {}, {}",
            sb.uuid,
            sb.time,
            sb.transaction,
            sb.flags.unwrap_or(0),
            sb.version.unwrap_or(2),
            sb.data_block_size,
            sb.nr_data_blocks
        );
        if let Some(b) = sb.metadata_snap {
            s.push_str(&format!(", {b}"));
        }
        s.push('\n');
        self.text(&s)
    }

    fn superblock_end(&mut self) -> Result<Visit> {
        self.text("end superblock\n")
    }

    fn def_begin(&mut self, name: &str) -> Result<Visit> {
        self.text(&format!("def: {name}\n"))
    }

    fn def_end(&mut self) -> Result<Visit> {
        self.text("\n")
    }

    fn device_begin(&mut self, d: &Device) -> Result<Visit> {
        // "mapped_blocks" keeps its underscore, as in 1.x.
        self.text(&format!(
            "device: {}\nmapped_blocks: {}\ntransaction: {}\ncreation time: {}\nsnap time: {}\n",
            d.dev_id, d.mapped_blocks, d.transaction, d.creation_time, d.snap_time
        ))
    }

    fn device_end(&mut self) -> Result<Visit> {
        self.text("\n")
    }

    fn map(&mut self, m: &Map) -> Result<Visit> {
        let b = &mut self.buf;
        b.extend_from_slice(b"    (");
        push_u64(b, m.thin_begin);
        b.extend_from_slice(b"..");
        push_u64(b, m.thin_begin + m.len - 1);
        b.extend_from_slice(b") -> (");
        push_u64(b, m.data_begin);
        b.extend_from_slice(b"..");
        push_u64(b, m.data_begin + m.len - 1);
        b.extend_from_slice(b"), ");
        push_u64(b, m.time as u64);
        b.push(b'\n');
        self.maybe_flush()?;
        Ok(Visit::Continue)
    }

    fn ref_shared(&mut self, name: &str) -> Result<Visit> {
        self.text(&format!("    ref: {name}\n"))
    }

    fn eof(&mut self) -> Result<Visit> {
        self.out.write_all(&self.buf).map_err(output_error)?;
        self.buf.clear();
        self.out.flush().map_err(output_error)?;
        Ok(Visit::Continue)
    }
}
