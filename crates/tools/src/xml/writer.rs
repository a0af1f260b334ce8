//! Writes the IR as XML exactly as thin-provisioning-tools 1.x does (its
//! quick-xml writer with two-space indentation): every element on its own
//! line, no line break before the first nor after the last, attributes in
//! 1.x's order, `flags` only when present, `version` always (2 by default),
//! `metadata_snap` only when present, a run of one as `single_mapping`.

use super::{output_error, push_escaped, push_u64, FLUSH_AT};
use crate::error::Result;
use crate::ir::{Device, Map, MetadataVisitor, Superblock, Visit};
use std::io::Write;

/// Format version written when the IR has none.
const METADATA_VERSION: u32 = 2;

/// An XML writer over any output.
pub struct XmlWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    /// Nesting level of the next element.
    level: usize,
    first: bool,
}

impl<W: Write> XmlWriter<W> {
    /// A writer on `out` (buffered internally).
    pub fn new(out: W) -> Self {
        XmlWriter {
            out,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            level: 0,
            first: true,
        }
    }

    /// Gives the output back (after [`MetadataVisitor::eof`]).
    pub fn into_inner(self) -> W {
        self.out
    }

    #[inline]
    fn line(&mut self) {
        if !self.first {
            self.buf.push(b'\n');
        }
        self.first = false;
        for _ in 0..self.level {
            self.buf.extend_from_slice(b"  ");
        }
    }

    #[inline]
    fn attr(&mut self, name: &[u8], v: u64) {
        self.buf.push(b' ');
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b"=\"");
        push_u64(&mut self.buf, v);
        self.buf.push(b'"');
    }

    fn str_attr(&mut self, name: &[u8], v: &str) {
        self.buf.push(b' ');
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b"=\"");
        push_escaped(&mut self.buf, v);
        self.buf.push(b'"');
    }

    #[inline]
    fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf).map_err(output_error)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn end(&mut self, tag: &[u8]) -> Result<Visit> {
        self.level = self.level.saturating_sub(1);
        self.line();
        self.buf.extend_from_slice(b"</");
        self.buf.extend_from_slice(tag);
        self.buf.push(b'>');
        self.maybe_flush()?;
        Ok(Visit::Continue)
    }
}

impl<W: Write> MetadataVisitor for XmlWriter<W> {
    fn superblock_begin(&mut self, sb: &Superblock) -> Result<Visit> {
        self.line();
        self.buf.extend_from_slice(b"<superblock");
        self.str_attr(b"uuid", &sb.uuid);
        self.attr(b"time", sb.time as u64);
        self.attr(b"transaction", sb.transaction);
        if let Some(f) = sb.flags {
            self.attr(b"flags", f as u64);
        }
        self.attr(b"version", sb.version.unwrap_or(METADATA_VERSION) as u64);
        self.attr(b"data_block_size", sb.data_block_size as u64);
        self.attr(b"nr_data_blocks", sb.nr_data_blocks);
        if let Some(s) = sb.metadata_snap {
            self.attr(b"metadata_snap", s);
        }
        self.buf.push(b'>');
        self.level += 1;
        Ok(Visit::Continue)
    }

    fn superblock_end(&mut self) -> Result<Visit> {
        self.end(b"superblock")
    }

    fn def_begin(&mut self, name: &str) -> Result<Visit> {
        self.line();
        self.buf.extend_from_slice(b"<def");
        self.str_attr(b"name", name);
        self.buf.push(b'>');
        self.level += 1;
        Ok(Visit::Continue)
    }

    fn def_end(&mut self) -> Result<Visit> {
        self.end(b"def")
    }

    fn device_begin(&mut self, d: &Device) -> Result<Visit> {
        self.line();
        self.buf.extend_from_slice(b"<device");
        self.attr(b"dev_id", d.dev_id);
        self.attr(b"mapped_blocks", d.mapped_blocks);
        self.attr(b"transaction", d.transaction);
        self.attr(b"creation_time", d.creation_time as u64);
        self.attr(b"snap_time", d.snap_time as u64);
        self.buf.push(b'>');
        self.level += 1;
        self.maybe_flush()?;
        Ok(Visit::Continue)
    }

    fn device_end(&mut self) -> Result<Visit> {
        self.end(b"device")
    }

    #[inline]
    fn map(&mut self, m: &Map) -> Result<Visit> {
        self.line();
        if m.len == 1 {
            self.buf.extend_from_slice(b"<single_mapping");
            self.attr(b"origin_block", m.thin_begin);
            self.attr(b"data_block", m.data_begin);
            self.attr(b"time", m.time as u64);
        } else {
            self.buf.extend_from_slice(b"<range_mapping");
            self.attr(b"origin_begin", m.thin_begin);
            self.attr(b"data_begin", m.data_begin);
            self.attr(b"length", m.len);
            self.attr(b"time", m.time as u64);
        }
        self.buf.extend_from_slice(b"/>");
        self.maybe_flush()?;
        Ok(Visit::Continue)
    }

    fn ref_shared(&mut self, name: &str) -> Result<Visit> {
        self.line();
        self.buf.extend_from_slice(b"<ref");
        self.str_attr(b"name", name);
        self.buf.extend_from_slice(b"/>");
        self.maybe_flush()?;
        Ok(Visit::Continue)
    }

    fn eof(&mut self) -> Result<Visit> {
        self.out.write_all(&self.buf).map_err(output_error)?;
        self.buf.clear();
        self.out.flush().map_err(output_error)?;
        Ok(Visit::Continue)
    }
}
