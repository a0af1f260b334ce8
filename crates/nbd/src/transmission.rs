//! The transmission phase without I/O: [`Session::check`] validates a request
//! against what was negotiated (flags, bounds, alignment, read-only), and
//! [`Session::execute`] runs it on the export and encodes the reply.
//!
//! Replies are written into a caller-owned buffer that keeps its largest
//! size between requests, so a read's data goes straight from the export
//! into the reply behind its header without zero-filling on every request.

use crate::export::{BlockSizes, Export, ExportError, Extent, ZeroOptions};
use crate::handshake::{transmission_flags, BASE_ALLOCATION_ID};
use crate::proto::*;
use crate::wire::{put_chunk, put_simple, Request, CHUNK_LEN, SIMPLE_LEN};
use std::sync::Arc;

/// Reads at least this long look for holes to send as `OFFSET_HOLE` chunks.
const SPARSE_READ_MIN: u32 = 64 << 10;
/// Shortest zero run sent as a hole chunk.
const MIN_HOLE: u64 = 4096;
/// Most chunks in one sparse read reply.
const MAX_READ_CHUNKS: usize = 64;
/// Most descriptors in one block status reply.
const MAX_DESCRIPTORS: usize = 1024;

/// What the handshake settled for one connection.
pub(crate) struct Session {
    pub export: Arc<dyn Export>,
    pub name: String,
    pub size: u64,
    /// Transmission flags sent to the client.
    pub flags: u16,
    pub structured: bool,
    /// `base:allocation` was selected for this export.
    pub meta: bool,
    pub sizes: BlockSizes,
    pub sparse_reads: bool,
}

/// A request that passed [`Session::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Read { df: bool },
    Write { fua: bool },
    Disc,
    Flush,
    Trim { fua: bool },
    Cache,
    WriteZeroes(ZeroOptions),
    BlockStatus { req_one: bool },
}

/// A refused request: the error value and a message for the client.
pub(crate) type Refusal = (Errno, &'static str);

/// The reply under construction: `buf[..len]` is sent.
struct Out<'a> {
    buf: &'a mut Vec<u8>,
    len: usize,
}

impl Out<'_> {
    /// `n` more bytes at the end of the reply, to be filled.
    fn space(&mut self, n: usize) -> &mut [u8] {
        let end = self.len + n;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        let s = &mut self.buf[self.len..end];
        self.len = end;
        s
    }

    fn put(&mut self, bytes: &[u8]) {
        self.space(bytes.len()).copy_from_slice(bytes);
    }

    fn chunk(&mut self, flags: u16, kind: u16, handle: u64, len: u32) {
        put_chunk(self.space(CHUNK_LEN), flags, kind, handle, len);
    }
}

impl Session {
    pub(crate) fn new(
        export: Arc<dyn Export>,
        name: String,
        structured: bool,
        meta: bool,
        max_request: u32,
        sparse_reads: bool,
    ) -> Self {
        Session {
            size: export.size(),
            flags: transmission_flags(&*export, structured),
            sizes: export.block_sizes().sanitized(max_request),
            export,
            name,
            structured,
            meta: meta && structured,
            sparse_reads,
        }
    }

    /// Validate `r` against the negotiated session.
    pub(crate) fn check(&self, r: &Request) -> Result<Command, Refusal> {
        let f = r.flags;
        let allowed = match r.kind {
            CMD_DISC => return Ok(Command::Disc),
            CMD_READ if self.structured => CMD_FLAG_FUA | CMD_FLAG_DF,
            CMD_READ | CMD_WRITE | CMD_FLUSH | CMD_TRIM | CMD_CACHE => CMD_FLAG_FUA,
            CMD_WRITE_ZEROES => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
            CMD_BLOCK_STATUS => CMD_FLAG_FUA | CMD_FLAG_REQ_ONE,
            _ => return Err((Errno::Inval, "unknown command")),
        };
        if f & !allowed != 0 {
            return Err((Errno::Inval, "command flag not valid for this command"));
        }
        let fua = f & CMD_FLAG_FUA != 0;
        let len = u64::from(r.length);
        let beyond = r.offset.checked_add(len).is_none_or(|end| end > self.size);
        let min = u64::from(self.sizes.minimum);
        let aligned = r.offset.is_multiple_of(min) && len.is_multiple_of(min);
        let ro = self.flags & FLAG_READ_ONLY != 0;
        let too_long = r.length > self.sizes.maximum;
        let writing = matches!(r.kind, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
        if writing && ro {
            return Err((Errno::Perm, "export is read-only"));
        }
        if matches!(r.kind, CMD_READ | CMD_WRITE) && too_long {
            return Err((Errno::Inval, "request longer than the maximum block size"));
        }
        if r.kind == CMD_FLUSH {
            if r.offset != 0 || r.length != 0 {
                return Err((Errno::Inval, "flush with nonzero offset or length"));
            }
            return Ok(Command::Flush);
        }
        if beyond {
            let e = if matches!(r.kind, CMD_WRITE | CMD_WRITE_ZEROES) {
                Errno::NoSpc
            } else {
                Errno::Inval
            };
            return Err((e, "request beyond the end of the export"));
        }
        if !aligned {
            return Err((
                Errno::Inval,
                "request not aligned to the minimum block size",
            ));
        }
        Ok(match r.kind {
            CMD_READ => Command::Read {
                df: f & CMD_FLAG_DF != 0,
            },
            CMD_WRITE => Command::Write { fua },
            CMD_TRIM => Command::Trim { fua },
            CMD_CACHE => Command::Cache,
            CMD_WRITE_ZEROES => Command::WriteZeroes(ZeroOptions {
                may_trim: f & CMD_FLAG_NO_HOLE == 0,
                fast: f & CMD_FLAG_FAST_ZERO != 0,
                fua,
            }),
            _ => {
                if !self.meta {
                    return Err((Errno::Inval, "no metadata context was negotiated"));
                }
                if r.length == 0 {
                    return Err((Errno::Inval, "block status of an empty range"));
                }
                Command::BlockStatus {
                    req_one: f & CMD_FLAG_REQ_ONE != 0,
                }
            }
        })
    }

    /// Run `r` (with its WRITE payload) and encode the reply into `buf`;
    /// returns the reply's length (0 for DISC, which has none).
    pub(crate) fn execute(&self, r: &Request, payload: &[u8], buf: &mut Vec<u8>) -> usize {
        let mut out = Out { buf, len: 0 };
        let cmd = match self.check(r) {
            Ok(c) => c,
            Err((errno, msg)) => {
                self.error(&mut out, r.handle, errno, msg);
                return out.len;
            }
        };
        let (off, len) = (r.offset, u64::from(r.length));
        let done = match cmd {
            Command::Disc => return 0,
            Command::Read { df } => return self.read(r, df, out),
            Command::BlockStatus { req_one } => return self.block_status(r, req_one, out),
            Command::Write { .. } if payload.len() as u64 != len => {
                Err(ExportError::Invalid("payload length mismatch".into()))
            }
            Command::Write { fua } => self.export.write_at(off, payload, fua),
            Command::Flush => self.export.flush(),
            Command::Trim { fua } if len > 0 => self.export.trim(off, len, fua),
            Command::WriteZeroes(how) if len > 0 => self.export.write_zeroes(off, len, how),
            Command::Trim { .. } | Command::WriteZeroes(_) | Command::Cache => Ok(()),
        };
        match done {
            Ok(()) => put_simple(out.space(SIMPLE_LEN), 0, r.handle),
            Err(e) => self.export_error(&mut out, r.handle, &e),
        }
        out.len
    }

    fn error(&self, out: &mut Out<'_>, handle: u64, errno: Errno, msg: &str) {
        if self.structured {
            let mut end = msg.len().min(256);
            while !msg.is_char_boundary(end) {
                end -= 1;
            }
            let m = &msg.as_bytes()[..end];
            out.chunk(
                REPLY_FLAG_DONE,
                REPLY_TYPE_ERROR,
                handle,
                6 + m.len() as u32,
            );
            out.put(&errno.code().to_be_bytes());
            out.put(&(m.len() as u16).to_be_bytes());
            out.put(m);
        } else {
            put_simple(out.space(SIMPLE_LEN), errno.code(), handle);
        }
    }

    fn export_error(&self, out: &mut Out<'_>, handle: u64, e: &ExportError) {
        log::debug!("export {}: {e}", self.name);
        self.error(out, handle, e.errno(), &e.to_string());
    }

    fn read(&self, r: &Request, df: bool, mut out: Out<'_>) -> usize {
        let len = r.length as usize;
        let result = if !self.structured {
            put_simple(out.space(SIMPLE_LEN), 0, r.handle);
            self.export.read_at(r.offset, out.space(len))
        } else if len == 0 {
            out.chunk(REPLY_FLAG_DONE, REPLY_TYPE_NONE, r.handle, 0);
            Ok(())
        } else if let Some(segs) = self.holes(r, df) {
            self.read_sparse(r, &segs, &mut out)
        } else {
            out.chunk(
                REPLY_FLAG_DONE,
                REPLY_TYPE_OFFSET_DATA,
                r.handle,
                8 + r.length,
            );
            out.put(&r.offset.to_be_bytes());
            self.export.read_at(r.offset, out.space(len))
        };
        if let Err(e) = result {
            out.len = 0;
            self.export_error(&mut out, r.handle, &e);
        }
        out.len
    }

    /// Data and zero runs of a large read, when it has holes worth skipping:
    /// `(offset, length, zero)`.
    fn holes(&self, r: &Request, df: bool) -> Option<Vec<(u64, u64, bool)>> {
        if df || !self.sparse_reads || r.length < SPARSE_READ_MIN {
            return None;
        }
        let extents = self.export.block_status(r.offset, r.length.into()).ok()?;
        let end = r.offset + u64::from(r.length);
        let mut segs: Vec<(u64, u64, bool)> = Vec::new();
        let mut pos = r.offset;
        for e in extents {
            let n = e.len.min(end - pos);
            if n == 0 {
                break;
            }
            let zero = e.flags & Extent::ZERO != 0 && n >= MIN_HOLE;
            match segs.last_mut() {
                Some(last) if last.2 == zero => last.1 += n,
                _ => segs.push((pos, n, zero)),
            }
            pos += n;
        }
        if pos < end {
            match segs.last_mut() {
                Some(last) if !last.2 => last.1 += end - pos,
                _ => segs.push((pos, end - pos, false)),
            }
        }
        if segs.len() > MAX_READ_CHUNKS {
            let (at, ..) = segs[MAX_READ_CHUNKS - 1];
            segs.truncate(MAX_READ_CHUNKS - 1);
            segs.push((at, end - at, false));
        }
        segs.iter().any(|s| s.2).then_some(segs)
    }

    fn read_sparse(
        &self,
        r: &Request,
        segs: &[(u64, u64, bool)],
        out: &mut Out<'_>,
    ) -> Result<(), ExportError> {
        for (i, &(at, n, zero)) in segs.iter().enumerate() {
            let flags = if i + 1 == segs.len() {
                REPLY_FLAG_DONE
            } else {
                0
            };
            if zero {
                out.chunk(flags, REPLY_TYPE_OFFSET_HOLE, r.handle, 12);
                out.put(&at.to_be_bytes());
                out.put(&(n as u32).to_be_bytes());
            } else {
                out.chunk(flags, REPLY_TYPE_OFFSET_DATA, r.handle, 8 + n as u32);
                out.put(&at.to_be_bytes());
                self.export.read_at(at, out.space(n as usize))?;
            }
        }
        Ok(())
    }

    fn block_status(&self, r: &Request, req_one: bool, mut out: Out<'_>) -> usize {
        let len = u64::from(r.length);
        let extents = match self.export.block_status(r.offset, len) {
            Ok(e) => e,
            Err(e) => {
                self.export_error(&mut out, r.handle, &e);
                return out.len;
            }
        };
        let mut descs: Vec<(u32, u32)> = Vec::new();
        let mut pos = 0u64;
        for e in extents {
            let n = e.len.min(len - pos);
            if n == 0 {
                break;
            }
            let flags = e.flags & (STATE_HOLE | STATE_ZERO);
            let full = descs.len() == MAX_DESCRIPTORS;
            match descs.last_mut() {
                Some(last) if last.1 == flags => last.0 += n as u32,
                _ if full => break,
                _ => descs.push((n as u32, flags)),
            }
            pos += n;
        }
        if descs.is_empty() {
            descs.push((r.length, 0));
        }
        if req_one {
            descs.truncate(1);
        }
        let payload = 4 + 8 * descs.len() as u32;
        out.chunk(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, r.handle, payload);
        out.put(&BASE_ALLOCATION_ID.to_be_bytes());
        for (n, flags) in descs {
            out.put(&n.to_be_bytes());
            out.put(&flags.to_be_bytes());
        }
        out.len
    }
}
