//! The fixed newstyle handshake: greeting, client flags, then option
//! haggling until `NBD_OPT_GO` / `NBD_OPT_EXPORT_NAME` enter transmission or
//! the client aborts.
//!
//! [`Haggle::option`] is the option state machine without I/O (fuzzed by
//! `fuzzing::handshake`); [`negotiate`] drives it over a stream.  Every
//! malformed option gets an error reply; only a bad magic, unknown client
//! flags, an unknown export in `NBD_OPT_EXPORT_NAME` (which cannot be
//! answered with an error) or an endless stream of options end the session.

use crate::export::{Export, Exports};
use crate::proto::*;
use crate::transmission::Session;
use crate::wire::{decode_string, option_reply, InfoRequest, MetaRequest, OptionHeader};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest option payload read; longer ones are skipped with `NBD_REP_ERR_TOO_BIG`.
pub const MAX_OPTION_DATA: u32 = 64 << 10;
/// Options accepted on one connection before the client is deemed hostile.
pub const MAX_OPTIONS: usize = 4096;
/// Context id of `base:allocation` in `NBD_REP_META_CONTEXT`.
pub const BASE_ALLOCATION_ID: u32 = 1;

/// What the server offers (from [`crate::Server`]).
pub(crate) struct Policy<'a> {
    pub exports: &'a dyn Exports,
    pub default_export: Option<&'a str>,
    pub max_request: u32,
    pub sparse_reads: bool,
    pub stopping: &'a AtomicBool,
    /// `STARTTLS` is offered.
    pub tls_offered: bool,
    /// Nothing is served before `STARTTLS`.
    pub tls_required: bool,
    /// This session already runs over TLS.
    pub tls_active: bool,
}

/// What to do after an option.
pub(crate) enum Step {
    /// Wait for the next option.
    Next,
    /// Send the replies, then enter transmission.
    Transmit(Box<Session>),
    /// Send the replies, then close (`NBD_OPT_ABORT`).
    Abort,
    /// Send the replies, then start TLS and haggle again over it.
    StartTls,
    /// Close without reply: the client broke the protocol.
    Disconnect(&'static str),
}

/// How a handshake ended.
pub(crate) enum Negotiated {
    /// Enter transmission.
    Session(Box<Session>),
    /// The client aborted.
    Abort,
    /// The client asked for TLS and got the go-ahead.
    StartTls,
}

/// Option haggling state.
pub(crate) struct Haggle<'a> {
    policy: &'a Policy<'a>,
    no_zeroes: bool,
    structured: bool,
    /// Export whose `base:allocation` context the last SET_META_CONTEXT chose.
    meta: Option<String>,
    options: usize,
}

/// Transmission flags for `export`.
pub(crate) fn transmission_flags(export: &dyn Export, structured: bool) -> u16 {
    let mut f = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_CACHE;
    if export.read_only() {
        f |= FLAG_READ_ONLY;
    } else {
        f |= FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FAST_ZERO;
    }
    if export.can_multi_conn() {
        f |= FLAG_CAN_MULTI_CONN;
    }
    if structured {
        f |= FLAG_SEND_DF;
    }
    f
}

fn info(out: &mut Vec<u8>, opt: u32, kind: u16, payload: &[u8]) {
    let mut d = Vec::with_capacity(2 + payload.len());
    d.extend_from_slice(&kind.to_be_bytes());
    d.extend_from_slice(payload);
    option_reply(out, opt, REP_INFO, &d);
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl<'a> Haggle<'a> {
    /// State after the client flags.
    pub(crate) fn new(policy: &'a Policy<'a>, client_flags: u32) -> Self {
        Haggle {
            policy,
            no_zeroes: client_flags & FLAG_C_NO_ZEROES != 0,
            structured: false,
            meta: None,
            options: 0,
        }
    }

    fn resolve(&self, name: &str) -> Option<(String, Arc<dyn Export>)> {
        let canonical = match name {
            "" => self.policy.default_export?.to_string(),
            n => n.to_string(),
        };
        let export = self.policy.exports.get(&canonical)?;
        Some((canonical, export))
    }

    fn session(&self, name: String, export: Arc<dyn Export>) -> Box<Session> {
        let meta = self.meta.as_deref() == Some(name.as_str());
        Box::new(Session::new(
            export,
            name,
            self.structured,
            meta,
            self.policy.max_request,
            self.policy.sparse_reads,
        ))
    }

    /// Handle one option; replies are appended to `out`.
    pub(crate) fn option(&mut self, opt: u32, data: &[u8], out: &mut Vec<u8>) -> Step {
        self.options += 1;
        if self.options > MAX_OPTIONS {
            return Step::Disconnect("too many options");
        }
        let err = |out: &mut Vec<u8>, kind: u32, msg: &str| {
            option_reply(out, opt, kind, msg.as_bytes());
            Step::Next
        };
        if self.policy.stopping.load(Ordering::Relaxed) && opt != OPT_ABORT {
            return err(out, REP_ERR_SHUTDOWN, "server is shutting down");
        }
        let p = self.policy;
        if p.tls_required && !p.tls_active && !matches!(opt, OPT_STARTTLS | OPT_ABORT) {
            if opt == OPT_EXPORT_NAME {
                return Step::Disconnect("TLS is required (NBD_OPT_EXPORT_NAME before STARTTLS)");
            }
            return err(
                out,
                REP_ERR_TLS_REQD,
                "TLS is required: send NBD_OPT_STARTTLS first",
            );
        }
        match opt {
            OPT_EXPORT_NAME => {
                let Ok(name) = decode_string(data) else {
                    return Step::Disconnect("malformed export name");
                };
                let Some((name, export)) = self.resolve(&name) else {
                    return Step::Disconnect("unknown export");
                };
                let s = self.session(name, export);
                out.extend_from_slice(&s.size.to_be_bytes());
                out.extend_from_slice(&s.flags.to_be_bytes());
                if !self.no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                Step::Transmit(s)
            }
            OPT_ABORT => {
                option_reply(out, opt, REP_ACK, &[]);
                Step::Abort
            }
            OPT_LIST => {
                if !data.is_empty() {
                    return err(out, REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
                }
                for name in self.policy.exports.names() {
                    if name.len() > MAX_STRING {
                        continue;
                    }
                    let mut d = (name.len() as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(name.as_bytes());
                    if let Some(desc) = self.policy.exports.get(&name).and_then(|e| e.description())
                    {
                        d.extend_from_slice(clip(&desc).as_bytes());
                    }
                    option_reply(out, opt, REP_SERVER, &d);
                }
                option_reply(out, opt, REP_ACK, &[]);
                Step::Next
            }
            OPT_INFO | OPT_GO => self.info_go(opt, data, out),
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    return err(
                        out,
                        REP_ERR_INVALID,
                        "NBD_OPT_STRUCTURED_REPLY takes no data",
                    );
                }
                self.structured = true;
                option_reply(out, opt, REP_ACK, &[]);
                Step::Next
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => self.meta_context(opt, data, out),
            OPT_STARTTLS if !p.tls_offered => err(out, REP_ERR_UNSUP, "TLS is not configured"),
            OPT_STARTTLS if p.tls_active => err(out, REP_ERR_INVALID, "TLS is already active"),
            OPT_STARTTLS if !data.is_empty() => {
                err(out, REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data")
            }
            OPT_STARTTLS => {
                option_reply(out, opt, REP_ACK, &[]);
                Step::StartTls
            }
            _ => err(out, REP_ERR_UNSUP, "option not supported"),
        }
    }

    fn info_go(&mut self, opt: u32, data: &[u8], out: &mut Vec<u8>) -> Step {
        let req = match InfoRequest::decode(data) {
            Ok(r) => r,
            Err(e) => {
                option_reply(out, opt, REP_ERR_INVALID, e.to_string().as_bytes());
                return Step::Next;
            }
        };
        let Some((name, export)) = self.resolve(&req.name) else {
            let msg = format!("no export named {:?}", clip(&req.name));
            option_reply(out, opt, REP_ERR_UNKNOWN, clip(&msg).as_bytes());
            return Step::Next;
        };
        let s = self.session(name, export);
        let mut d = s.size.to_be_bytes().to_vec();
        d.extend_from_slice(&s.flags.to_be_bytes());
        info(out, opt, INFO_EXPORT, &d);
        if req.infos.contains(&INFO_NAME) {
            info(out, opt, INFO_NAME, clip(&s.name).as_bytes());
        }
        if req.infos.contains(&INFO_DESCRIPTION) {
            if let Some(desc) = s.export.description() {
                info(out, opt, INFO_DESCRIPTION, clip(&desc).as_bytes());
            }
        }
        let mut b = s.sizes.minimum.to_be_bytes().to_vec();
        b.extend_from_slice(&s.sizes.preferred.to_be_bytes());
        b.extend_from_slice(&s.sizes.maximum.to_be_bytes());
        info(out, opt, INFO_BLOCK_SIZE, &b);
        option_reply(out, opt, REP_ACK, &[]);
        if opt == OPT_GO {
            Step::Transmit(s)
        } else {
            Step::Next
        }
    }

    fn meta_context(&mut self, opt: u32, data: &[u8], out: &mut Vec<u8>) -> Step {
        let set = opt == OPT_SET_META_CONTEXT;
        if set {
            // A SET replaces the selection even when it fails.
            self.meta = None;
        }
        let fail = |out: &mut Vec<u8>, kind: u32, msg: &str| {
            option_reply(out, opt, kind, msg.as_bytes());
            Step::Next
        };
        if !self.structured {
            return fail(out, REP_ERR_INVALID, "negotiate structured replies first");
        }
        let req = match MetaRequest::decode(data) {
            Ok(r) => r,
            Err(e) => return fail(out, REP_ERR_INVALID, &e.to_string()),
        };
        if req.queries.iter().any(|q| !q.contains(':')) {
            return fail(out, REP_ERR_INVALID, "a query lacks a namespace");
        }
        let Some((name, _)) = self.resolve(&req.name) else {
            return fail(out, REP_ERR_UNKNOWN, "unknown export");
        };
        let found = if set {
            req.queries.iter().any(|q| q == BASE_ALLOCATION)
        } else {
            req.queries.is_empty()
                || req
                    .queries
                    .iter()
                    .any(|q| q == "base:" || q == BASE_ALLOCATION)
        };
        if found {
            let id = if set { BASE_ALLOCATION_ID } else { 0 };
            let mut d = id.to_be_bytes().to_vec();
            d.extend_from_slice(BASE_ALLOCATION.as_bytes());
            option_reply(out, opt, REP_META_CONTEXT, &d);
            if set {
                self.meta = Some(name);
            }
        }
        option_reply(out, opt, REP_ACK, &[]);
        Step::Next
    }
}

fn protocol(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The greeting and the client's flags.
pub(crate) fn greet<R: Read, W: Write>(r: &mut R, w: &mut W) -> io::Result<u32> {
    let mut greeting = Vec::with_capacity(18);
    greeting.extend_from_slice(&NBDMAGIC.to_be_bytes());
    greeting.extend_from_slice(&IHAVEOPT.to_be_bytes());
    greeting.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    w.write_all(&greeting)?;
    let mut cf = [0u8; 4];
    r.read_exact(&mut cf)?;
    let client_flags = u32::from_be_bytes(cf);
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(protocol("unknown client flags"));
    }
    Ok(client_flags)
}

/// Haggle over options on `r`/`w` after [`greet`] (again after STARTTLS,
/// with everything negotiated before forgotten, as the spec asks).
pub(crate) fn negotiate<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    policy: &Policy<'_>,
    client_flags: u32,
) -> io::Result<Negotiated> {
    let mut h = Haggle::new(policy, client_flags);
    let mut out = Vec::new();
    loop {
        let mut hb = [0u8; 16];
        r.read_exact(&mut hb)?;
        let head = OptionHeader::decode(&hb).map_err(|_| protocol("bad option magic"))?;
        out.clear();
        let step = if head.length > MAX_OPTION_DATA {
            if head.option == OPT_EXPORT_NAME {
                return Err(protocol("export name too long"));
            }
            let skipped = io::copy(&mut r.take(head.length.into()), &mut io::sink())?;
            if skipped < head.length.into() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            option_reply(
                &mut out,
                head.option,
                REP_ERR_TOO_BIG,
                b"option data too long",
            );
            Step::Next
        } else {
            let mut data = vec![0u8; head.length as usize];
            r.read_exact(&mut data)?;
            h.option(head.option, &data, &mut out)
        };
        match step {
            Step::Disconnect(why) => return Err(protocol(why)),
            step => {
                w.write_all(&out)?;
                match step {
                    Step::Transmit(s) => return Ok(Negotiated::Session(s)),
                    Step::Abort => return Ok(Negotiated::Abort),
                    Step::StartTls => return Ok(Negotiated::StartTls),
                    _ => {}
                }
            }
        }
    }
}
