//! Fuzz-target bodies (feature `fuzzing`), shared by the cargo-fuzz targets
//! in `fuzz/` and by the proptest smoke run `tests/decoder_smoke.rs`.
//!
//! Every body takes arbitrary bytes and must not panic, hang or allocate
//! without bound.  The first input byte is a mode byte.
//!
//! * [`decoders`]: option header, INFO/GO and meta context payloads, request
//!   header; decoded requests must re-encode to the same bytes.
//! * [`session`]: a whole client byte stream (handshake options, then
//!   transmission requests, either built from the input or raw) served by a
//!   real connection over an in-memory stream; with structured replies the
//!   server's output must parse as well-formed replies.

use crate::conn;
use crate::export::{Export, ExportMap};
use crate::mem::MemExport;
use crate::proto::*;
use crate::server::{ServerOptions, Shared};
use crate::stream::Stream;
use crate::wire::{Cursor, InfoRequest, MetaRequest, OptionHeader, Request, REQUEST_LEN};
use std::io;
use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Size of the fuzzed exports.
pub const EXPORT_SIZE: u64 = 1 << 20;
/// Output beyond this fails the stream (bounds memory on huge reads).
const MAX_OUTPUT: usize = 64 << 20;

/// Decoders on arbitrary bytes.
pub fn decoders(data: &[u8]) {
    let mut h = [0u8; 16];
    let n = data.len().min(16);
    h[..n].copy_from_slice(&data[..n]);
    let _ = OptionHeader::decode(&h);
    let body = data.get(1..).unwrap_or(&[]);
    if let Ok(r) = InfoRequest::decode(body) {
        assert!(r.name.len() <= MAX_STRING);
    }
    if let Ok(r) = MetaRequest::decode(body) {
        assert!(r.queries.iter().all(|q| q.len() <= MAX_STRING));
    }
    let mut b = [0u8; REQUEST_LEN];
    let n = body.len().min(REQUEST_LEN);
    b[..n].copy_from_slice(&body[..n]);
    if let Ok(r) = Request::decode(&b) {
        assert_eq!(r.encode(), b, "request re-encodes to its bytes");
    }
}

/// An in-memory [`Stream`]: reads the client bytes, collects the server's.
pub struct MemStream {
    input: Mutex<(Vec<u8>, usize)>,
    output: Mutex<Vec<u8>>,
}

impl MemStream {
    /// A stream whose client sends `input` and then closes.
    pub fn new(input: Vec<u8>) -> Self {
        MemStream {
            input: Mutex::new((input, 0)),
            output: Mutex::new(Vec::new()),
        }
    }

    /// What the server sent.
    pub fn output(&self) -> Vec<u8> {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Stream for MemStream {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut g = self.input.lock().unwrap_or_else(|e| e.into_inner());
        let (data, pos) = &mut *g;
        let n = buf.len().min(data.len() - *pos);
        buf[..n].copy_from_slice(&data[*pos..*pos + n]);
        *pos += n;
        Ok(n)
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let mut out = self.output.lock().unwrap_or_else(|e| e.into_inner());
        if out.len() + buf.len() > MAX_OUTPUT {
            return Err(io::ErrorKind::WriteZero.into());
        }
        out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Write {
            let mut g = self.input.lock().unwrap_or_else(|e| e.into_inner());
            g.1 = g.0.len();
        }
        Ok(())
    }
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn set_write_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn peer(&self) -> String {
        "fuzz".into()
    }
}

fn option(out: &mut Vec<u8>, opt: u32, data: &[u8]) {
    out.extend_from_slice(&IHAVEOPT.to_be_bytes());
    out.extend_from_slice(&opt.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

fn name_and_queries(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}

/// Client bytes for `data`: mode bit 0 = raw input after the client flags;
/// otherwise bits 1-3 pick structured replies, `base:allocation` and the
/// read-only export, and the input becomes requests of 12 bytes each
/// (type, flags, offset, length; a WRITE takes its payload from what follows).
fn client_bytes(mode: u8, data: &[u8]) -> Vec<u8> {
    let mut c = (FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
        .to_be_bytes()
        .to_vec();
    if mode & 1 != 0 {
        c.extend_from_slice(data);
        return c;
    }
    if mode & 2 != 0 {
        option(&mut c, OPT_STRUCTURED_REPLY, &[]);
    }
    let name = if mode & 8 != 0 { "ro" } else { "" };
    if mode & 4 != 0 {
        option(
            &mut c,
            OPT_SET_META_CONTEXT,
            &name_and_queries(name, &[BASE_ALLOCATION]),
        );
    }
    let mut go = name_and_queries(name, &[]);
    go.truncate(4 + name.len());
    go.extend_from_slice(&[0, 1, 0, INFO_BLOCK_SIZE as u8]);
    option(&mut c, OPT_GO, &go);
    let mut cur = Cursor::new(data);
    let mut handle = 0u64;
    while let Ok(b) = cur.bytes(12) {
        let kind = u16::from(b[0] % 9);
        let flags = u16::from(b[1]) & 0x1f;
        let offset =
            u64::from(u32::from_be_bytes([b[2], b[3], b[4], b[5]])) * 512 % (2 * EXPORT_SIZE);
        let length = u32::from_be_bytes([b[6], b[7], b[8], b[9]]) % (3 * EXPORT_SIZE as u32);
        handle += 1;
        let r = Request {
            flags,
            kind,
            handle,
            offset,
            length,
        };
        c.extend_from_slice(&r.encode());
        if kind == CMD_WRITE {
            let n = (length as usize).min(cur.remaining());
            c.extend_from_slice(cur.bytes(n).unwrap_or(&[]));
            c.resize(c.len() + length as usize - n, 0xa5);
        }
    }
    c
}

/// Parse the server's output; with `structured`, check every reply.
fn check_output(out: &[u8], structured: bool) {
    let mut c = Cursor::new(out);
    assert_eq!(c.u64(), Ok(NBDMAGIC));
    assert_eq!(c.u64(), Ok(IHAVEOPT));
    assert!(c.u16().is_ok());
    loop {
        let Ok(magic) = c.u64() else { return };
        assert_eq!(magic, OPTION_REPLY_MAGIC, "option reply magic");
        let (opt, kind, len) = (c.u32(), c.u32(), c.u32());
        let (Ok(opt), Ok(kind), Ok(len)) = (opt, kind, len) else {
            panic!("truncated option reply")
        };
        assert!(c.bytes(len as usize).is_ok(), "truncated option data");
        if opt == OPT_GO && kind == REP_ACK {
            break;
        }
    }
    if !structured {
        return;
    }
    while c.remaining() > 0 {
        let magic = c.u32().expect("reply magic");
        if magic == SIMPLE_REPLY_MAGIC {
            assert!(c.bytes(12).is_ok(), "truncated simple reply");
            continue;
        }
        assert_eq!(magic, STRUCTURED_REPLY_MAGIC, "reply magic");
        let (_flags, kind) = (c.u16().unwrap(), c.u16().expect("chunk type"));
        let _handle = c.u64().expect("handle");
        let len = c.u32().expect("chunk length") as usize;
        let mut p = Cursor::new(c.bytes(len).expect("truncated chunk"));
        match kind {
            REPLY_TYPE_NONE => assert_eq!(len, 0),
            REPLY_TYPE_OFFSET_DATA => assert!(len >= 9),
            REPLY_TYPE_OFFSET_HOLE => {
                assert_eq!(len, 12);
                let _ = p.u64();
                assert_ne!(p.u32(), Ok(0), "empty hole");
            }
            REPLY_TYPE_BLOCK_STATUS => {
                assert!(
                    len >= 12 && (len - 4).is_multiple_of(8),
                    "block status length"
                );
                let _ = p.u32();
                while p.remaining() > 0 {
                    assert_ne!(p.u32(), Ok(0), "empty extent");
                    let _ = p.u32();
                }
            }
            REPLY_TYPE_ERROR => {
                assert_ne!(p.u32(), Ok(0), "error chunk without error");
                let m = p.u16().expect("message length") as usize;
                assert_eq!(m, p.remaining(), "error message length");
            }
            k => panic!("unexpected chunk type {k:#x}"),
        }
    }
}

/// A whole connection over an in-memory stream.
pub fn session(data: &[u8]) {
    let mode = data.first().copied().unwrap_or(0);
    check_output(&session_output(data), mode & 3 == 2);
}

/// What the server sends for the client bytes [`session`] makes of `data`.
pub fn session_output(data: &[u8]) -> Vec<u8> {
    let mode = data.first().copied().unwrap_or(0);
    let input = client_bytes(mode, data.get(1..).unwrap_or(&[]));
    let exports = ExportMap::new();
    let rw = MemExport::new(EXPORT_SIZE);
    let _ = rw.write_at(4096, &[1u8; 8192], false);
    exports.insert("rw", Arc::new(rw));
    exports.insert("ro", Arc::new(MemExport::new(EXPORT_SIZE).read_only()));
    let opts = ServerOptions {
        max_in_flight: 1,
        handshake_timeout: None,
        ..ServerOptions::default()
    };
    let shared = Shared::new(Arc::new(exports), Some("rw"), opts);
    let stream = Arc::new(MemStream::new(input));
    conn::serve(shared, 0, stream.clone());
    stream.output()
}
