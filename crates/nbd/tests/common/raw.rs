//! A raw NBD client over a unix socket, for protocol and hostile tests.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use uthin_nbd::proto::*;
use uthin_nbd::wire::Request;

pub struct Raw {
    pub s: UnixStream,
}

/// One option reply.
#[derive(Debug)]
pub struct OptReply {
    pub opt: u32,
    pub kind: u32,
    pub data: Vec<u8>,
}

/// One reply message (simple, or a structured chunk).
#[derive(Debug, PartialEq)]
pub enum Reply {
    Simple {
        error: u32,
        handle: u64,
    },
    Chunk {
        flags: u16,
        kind: u16,
        handle: u64,
        payload: Vec<u8>,
    },
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw { s }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        self.s.read_exact(&mut b).unwrap();
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.read_n(2).try_into().unwrap())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.read_n(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.read_n(8).try_into().unwrap())
    }

    /// Read the greeting; returns the handshake flags.
    pub fn greeting(&mut self) -> u16 {
        assert_eq!(self.u64(), NBDMAGIC);
        assert_eq!(self.u64(), IHAVEOPT);
        self.u16()
    }

    /// Greeting and client flags (fixed newstyle, no zeroes).
    pub fn hello(path: &Path) -> Raw {
        let mut r = Raw::connect(path);
        assert_eq!(r.greeting(), FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        r.send(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes());
        r
    }

    pub fn send_opt(&mut self, opt: u32, data: &[u8]) {
        let mut b = IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.send(&b);
    }

    pub fn opt_reply(&mut self) -> OptReply {
        assert_eq!(self.u64(), OPTION_REPLY_MAGIC);
        let opt = self.u32();
        let kind = self.u32();
        let len = self.u32() as usize;
        OptReply {
            opt,
            kind,
            data: self.read_n(len),
        }
    }

    /// Send an option and collect replies up to the final one.
    pub fn opt(&mut self, opt: u32, data: &[u8]) -> Vec<OptReply> {
        self.send_opt(opt, data);
        let mut v = Vec::new();
        loop {
            let r = self.opt_reply();
            assert_eq!(r.opt, opt);
            let last = r.kind == REP_ACK || r.kind & 0x8000_0000 != 0;
            v.push(r);
            if last {
                return v;
            }
        }
    }

    /// Structured replies (optional), base:allocation (optional), GO:
    /// returns (size, transmission flags).
    pub fn go(&mut self, name: &str, structured: bool, meta: bool) -> (u64, u16) {
        if structured {
            assert_eq!(self.opt(OPT_STRUCTURED_REPLY, &[])[0].kind, REP_ACK);
        }
        if meta {
            let r = self.opt(OPT_SET_META_CONTEXT, &meta_data(name, &[BASE_ALLOCATION]));
            assert_eq!(r.len(), 2, "{r:?}");
            assert_eq!(r[0].kind, REP_META_CONTEXT);
        }
        let replies = self.opt(OPT_GO, &info_data(name, &[]));
        let last = replies.last().unwrap();
        assert_eq!(last.kind, REP_ACK, "{replies:?}");
        let export = replies
            .iter()
            .find(|r| r.kind == REP_INFO && r.data[..2] == [0, 0])
            .expect("NBD_INFO_EXPORT");
        let size = u64::from_be_bytes(export.data[2..10].try_into().unwrap());
        let flags = u16::from_be_bytes(export.data[10..12].try_into().unwrap());
        (size, flags)
    }

    /// Connect and enter transmission on `name`.
    pub fn open(path: &Path, name: &str, structured: bool, meta: bool) -> (Raw, u64, u16) {
        let mut r = Raw::hello(path);
        let (size, flags) = r.go(name, structured, meta);
        (r, size, flags)
    }

    pub fn request(&mut self, kind: u16, flags: u16, handle: u64, offset: u64, length: u32) {
        let r = Request {
            flags,
            kind,
            handle,
            offset,
            length,
        };
        self.send(&r.encode());
    }

    /// A simple reply header (READ data, if any, is left unread).
    pub fn simple(&mut self) -> (u32, u64) {
        assert_eq!(self.u32(), SIMPLE_REPLY_MAGIC);
        (self.u32(), self.u64())
    }

    /// Next message with structured replies negotiated.
    pub fn reply(&mut self) -> Reply {
        match self.u32() {
            SIMPLE_REPLY_MAGIC => Reply::Simple {
                error: self.u32(),
                handle: self.u64(),
            },
            STRUCTURED_REPLY_MAGIC => {
                let flags = self.u16();
                let kind = self.u16();
                let handle = self.u64();
                let len = self.u32() as usize;
                Reply::Chunk {
                    flags,
                    kind,
                    handle,
                    payload: self.read_n(len),
                }
            }
            m => panic!("bad reply magic {m:#x}"),
        }
    }

    /// The error of a finished reply: simple error, or an error chunk's.
    pub fn error_of(r: &Reply) -> u32 {
        match r {
            Reply::Simple { error, .. } => *error,
            Reply::Chunk { kind, payload, .. } if kind & 0x8000 != 0 => {
                u32::from_be_bytes(payload[..4].try_into().unwrap())
            }
            _ => 0,
        }
    }

    /// Whether the server closed the connection (read gives EOF or reset).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

pub fn info_data(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

pub fn meta_data(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}
