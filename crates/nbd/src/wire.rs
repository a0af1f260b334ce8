//! Decoding of what clients send (option headers and payloads, request
//! headers) and encoding of what the server sends.  Decoders take arbitrary
//! bytes and return [`WireError`] on anything malformed; they never panic
//! (fuzzed through `fuzzing::decoders`).  Byte layouts: see [`crate::proto`].

use crate::proto::*;

/// A malformed client message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A magic number other than the expected one.
    #[error("bad magic {found:#x}")]
    BadMagic {
        /// What the client sent.
        found: u64,
    },
    /// The message ends before a field.
    #[error("truncated message")]
    Truncated,
    /// Bytes left after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A string that is not UTF-8, contains NUL or is longer than 4096 bytes.
    #[error("invalid string")]
    BadString,
    /// More items than the server accepts.
    #[error("too many items ({0})")]
    TooMany(usize),
}

/// Reads big-endian fields from a byte slice.
pub struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { rest: bytes }
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.rest.len() {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A string of `n` bytes.
    pub fn string(&mut self, n: usize) -> Result<String, WireError> {
        decode_string(self.bytes(n)?)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Succeeds when every byte was read.
    pub fn finish(&self) -> Result<(), WireError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

/// A protocol string: UTF-8, no NUL, at most 4096 bytes.
pub fn decode_string(b: &[u8]) -> Result<String, WireError> {
    if b.len() > MAX_STRING || b.contains(&0) {
        return Err(WireError::BadString);
    }
    String::from_utf8(b.to_vec()).map_err(|_| WireError::BadString)
}

/// Length of an option request header.
pub const OPTION_HEADER_LEN: usize = 16;

/// An option request header; `length` bytes of data follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    /// `NBD_OPT_*`.
    pub option: u32,
    /// Length of the option data.
    pub length: u32,
}

impl OptionHeader {
    /// Decodes and checks the `IHAVEOPT` magic.
    pub fn decode(b: &[u8; OPTION_HEADER_LEN]) -> Result<Self, WireError> {
        let mut c = Cursor::new(b);
        let magic = c.u64()?;
        if magic != IHAVEOPT {
            return Err(WireError::BadMagic { found: magic });
        }
        Ok(OptionHeader {
            option: c.u32()?,
            length: c.u32()?,
        })
    }
}

/// Data of `NBD_OPT_INFO` / `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    /// Export name ("" for the default export).
    pub name: String,
    /// `NBD_INFO_*` items asked for.
    pub infos: Vec<u16>,
}

impl InfoRequest {
    /// Decodes `u32 name length, name, u16 count, count x u16`.
    pub fn decode(data: &[u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(data);
        let n = c.u32()? as usize;
        let name = c.string(n)?;
        let count = c.u16()? as usize;
        let mut infos = Vec::with_capacity(count.min(c.remaining() / 2));
        for _ in 0..count {
            infos.push(c.u16()?);
        }
        c.finish()?;
        Ok(InfoRequest { name, infos })
    }
}

/// Most queries accepted in one meta context option.
pub const MAX_META_QUERIES: usize = 128;

/// Data of `NBD_OPT_LIST_META_CONTEXT` / `NBD_OPT_SET_META_CONTEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest {
    /// Export name.
    pub name: String,
    /// Queries such as `base:allocation` or `base:`.
    pub queries: Vec<String>,
}

impl MetaRequest {
    /// Decodes `u32 name length, name, u32 count, count x (u32 length, query)`.
    pub fn decode(data: &[u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(data);
        let n = c.u32()? as usize;
        let name = c.string(n)?;
        let count = c.u32()? as usize;
        if count > MAX_META_QUERIES {
            return Err(WireError::TooMany(count));
        }
        let mut queries = Vec::with_capacity(count);
        for _ in 0..count {
            let n = c.u32()? as usize;
            queries.push(c.string(n)?);
        }
        c.finish()?;
        Ok(MetaRequest { name, queries })
    }
}

/// Length of a transmission request header.
pub const REQUEST_LEN: usize = 28;

/// A transmission request header; a WRITE is followed by `length` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// `NBD_CMD_FLAG_*`.
    pub flags: u16,
    /// `NBD_CMD_*`.
    pub kind: u16,
    /// Opaque client handle, echoed in the reply.
    pub handle: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub length: u32,
}

impl Request {
    /// Decodes and checks the request magic.
    pub fn decode(b: &[u8; REQUEST_LEN]) -> Result<Self, WireError> {
        let mut c = Cursor::new(b);
        let magic = c.u32()?;
        if magic != REQUEST_MAGIC {
            return Err(WireError::BadMagic {
                found: magic.into(),
            });
        }
        Ok(Request {
            flags: c.u16()?,
            kind: c.u16()?,
            handle: c.u64()?,
            offset: c.u64()?,
            length: c.u32()?,
        })
    }

    /// Encodes (for tests and clients).
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// Appends an option reply.
pub fn option_reply(out: &mut Vec<u8>, option: u32, kind: u32, data: &[u8]) {
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// Length of a simple reply header.
pub const SIMPLE_LEN: usize = 16;
/// Length of a structured reply chunk header.
pub const CHUNK_LEN: usize = 20;

/// Writes a simple reply header into `b[..16]`.
pub fn put_simple(b: &mut [u8], error: u32, handle: u64) {
    b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..16].copy_from_slice(&handle.to_be_bytes());
}

/// Writes a structured chunk header into `b[..20]`.
pub fn put_chunk(b: &mut [u8], flags: u16, kind: u16, handle: u64, len: u32) {
    b[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&kind.to_be_bytes());
    b[8..16].copy_from_slice(&handle.to_be_bytes());
    b[16..20].copy_from_slice(&len.to_be_bytes());
}

/// Appends a structured chunk header.
pub fn push_chunk(out: &mut Vec<u8>, flags: u16, kind: u16, handle: u64, len: u32) {
    let at = out.len();
    out.resize(at + CHUNK_LEN, 0);
    put_chunk(&mut out[at..], flags, kind, handle, len);
}

/// Appends a final `NBD_REPLY_TYPE_ERROR` chunk with a message (cut to 256
/// bytes on a character boundary).
pub fn push_error_chunk(out: &mut Vec<u8>, handle: u64, error: u32, msg: &str) {
    let mut end = msg.len().min(256);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    let msg = &msg.as_bytes()[..end];
    push_chunk(
        out,
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        handle,
        6 + msg.len() as u32,
    );
    out.extend_from_slice(&error.to_be_bytes());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_request_round_trip_and_errors() {
        let mut d = vec![0, 0, 0, 3];
        d.extend_from_slice(b"abc");
        d.extend_from_slice(&[0, 2, 0, 3, 0, 1]);
        let r = InfoRequest::decode(&d).unwrap();
        assert_eq!(r.name, "abc");
        assert_eq!(r.infos, vec![3, 1]);
        assert_eq!(
            InfoRequest::decode(&d[..d.len() - 1]),
            Err(WireError::Truncated)
        );
        d.push(0);
        assert_eq!(InfoRequest::decode(&d), Err(WireError::Trailing(1)));
        assert_eq!(
            InfoRequest::decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn meta_request_decodes() {
        let mut d = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 15];
        d.extend_from_slice(b"base:allocation");
        let r = MetaRequest::decode(&d).unwrap();
        assert_eq!(r.queries, vec!["base:allocation".to_string()]);
        let mut bad = vec![0, 0, 0, 1, 0];
        bad.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(MetaRequest::decode(&bad), Err(WireError::BadString));
    }

    #[test]
    fn request_round_trip() {
        let r = Request {
            flags: 1,
            kind: CMD_WRITE,
            handle: 7,
            offset: 1 << 40,
            length: 4096,
        };
        assert_eq!(Request::decode(&r.encode()), Ok(r));
        let mut b = r.encode();
        b[0] = 0;
        assert!(matches!(
            Request::decode(&b),
            Err(WireError::BadMagic { .. })
        ));
    }
}
