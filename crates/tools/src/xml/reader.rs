//! Streams thin XML into a [`MetadataVisitor`] (never holds the document).
//!
//! Accepts what thin-provisioning-tools 0.9.0 and 1.x write.  Grammar
//! checked here: one `superblock`; `def` and `device` directly inside it;
//! mappings inside a `def` or `device`; `ref` inside a `device` only;
//! nothing inside a mapping or `ref`; every attribute known, every required
//! attribute present, numbers in range.  An element written `<a/>` is the
//! same as `<a></a>`.  Text, comments and declarations are ignored.  What
//! the content means (sorted mappings, block sizes, def names) is the
//! visitor's to check; its errors get the position of the element that
//! caused them.
//!
//! Errors carry a byte offset ([`XmlError`]); [`read_file`] turns it into
//! `file:line:column`.

use crate::error::{Error, Result};
use crate::ir::{Device, Map, MetadataVisitor, Superblock, Visit};
use crate::report::Report;
use quick_xml::events::{BytesStart, Event};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// A parse error at a byte offset of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    /// Where the offending element (or syntax error) starts.
    pub offset: u64,
    /// What is wrong.
    pub msg: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Open {
    Superblock,
    Def,
    Device,
    /// A mapping or ref written with a start and an end tag.
    Item(&'static str),
}

struct Parser<'v> {
    visitor: &'v mut dyn MetadataVisitor,
    stack: Vec<Open>,
    seen_superblock: bool,
}

type PResult<T> = std::result::Result<T, String>;

/// Parses a decimal number no greater than `max`.
fn num(tag: &str, attr: &str, v: &[u8], max: u64) -> PResult<u64> {
    let digits = v.strip_prefix(b"+").unwrap_or(v);
    let bad = |why: &str| {
        Err(format!(
            "bad value '{}' for attribute '{attr}' of tag '{tag}': {why}",
            String::from_utf8_lossy(v)
        ))
    };
    if digits.is_empty() {
        return bad("not a number");
    }
    let mut n: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return bad("not a number");
        }
        n = match n
            .checked_mul(10)
            .and_then(|x| x.checked_add((c - b'0') as u64))
        {
            Some(x) => x,
            None => return bad("too large"),
        };
    }
    if n > max {
        return bad(&format!("larger than {max}"));
    }
    Ok(n)
}

/// The attributes of `e` named in `names`, in that order; unknown
/// attributes are errors.
fn attrs<'a, const N: usize>(
    e: &'a BytesStart<'a>,
    tag: &str,
    names: [&str; N],
) -> PResult<[Option<Cow<'a, [u8]>>; N]> {
    let mut out: [Option<Cow<'a, [u8]>>; N] = std::array::from_fn(|_| None);
    // Duplicates are caught below, without the iterator's allocating check.
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|err| format!("bad attribute in tag '{tag}': {err}"))?;
        let key = a.key.as_ref();
        match names.iter().position(|n| n.as_bytes() == key) {
            Some(i) if out[i].is_some() => {
                return Err(format!("duplicate attribute '{}' in tag '{tag}'", names[i]))
            }
            Some(i) => out[i] = Some(a.value),
            None => {
                return Err(format!(
                    "unknown attribute '{}' in tag '{tag}'",
                    String::from_utf8_lossy(key)
                ))
            }
        }
    }
    Ok(out)
}

fn required<'a>(v: &'a Option<Cow<'a, [u8]>>, tag: &str, attr: &str) -> PResult<&'a [u8]> {
    v.as_deref()
        .ok_or_else(|| format!("missing attribute '{attr}' for tag '{tag}'"))
}

fn req_num(v: &Option<Cow<'_, [u8]>>, tag: &str, attr: &str, max: u64) -> PResult<u64> {
    num(tag, attr, required(v, tag, attr)?, max)
}

fn opt_num(v: &Option<Cow<'_, [u8]>>, tag: &str, attr: &str, max: u64) -> PResult<Option<u64>> {
    v.as_deref().map(|b| num(tag, attr, b, max)).transpose()
}

fn text(v: &[u8], tag: &str, attr: &str) -> PResult<String> {
    let s = std::str::from_utf8(v)
        .map_err(|_| format!("attribute '{attr}' of tag '{tag}' is not UTF-8"))?;
    quick_xml::escape::unescape(s)
        .map(|c| c.into_owned())
        .map_err(|e| format!("attribute '{attr}' of tag '{tag}': {e}"))
}

const U32: u64 = u32::MAX as u64;
const U64: u64 = u64::MAX;

fn parse_superblock(e: &BytesStart) -> PResult<Superblock> {
    const T: &str = "superblock";
    let [uuid, time, trans, flags, version, dbs, nr, snap] = attrs(
        e,
        T,
        [
            "uuid",
            "time",
            "transaction",
            "flags",
            "version",
            "data_block_size",
            "nr_data_blocks",
            "metadata_snap",
        ],
    )?;
    Ok(Superblock {
        uuid: text(required(&uuid, T, "uuid")?, T, "uuid")?,
        time: req_num(&time, T, "time", U32)? as u32,
        transaction: req_num(&trans, T, "transaction", U64)?,
        flags: opt_num(&flags, T, "flags", U32)?.map(|v| v as u32),
        version: opt_num(&version, T, "version", U32)?.map(|v| v as u32),
        data_block_size: req_num(&dbs, T, "data_block_size", U32)? as u32,
        nr_data_blocks: req_num(&nr, T, "nr_data_blocks", U64)?,
        metadata_snap: opt_num(&snap, T, "metadata_snap", U64)?,
    })
}

fn parse_device(e: &BytesStart) -> PResult<Device> {
    const T: &str = "device";
    let [id, mapped, trans, ctime, stime] = attrs(
        e,
        T,
        [
            "dev_id",
            "mapped_blocks",
            "transaction",
            "creation_time",
            "snap_time",
        ],
    )?;
    Ok(Device {
        dev_id: req_num(&id, T, "dev_id", U32)?,
        mapped_blocks: req_num(&mapped, T, "mapped_blocks", U64)?,
        transaction: req_num(&trans, T, "transaction", U64)?,
        creation_time: req_num(&ctime, T, "creation_time", U32)? as u32,
        snap_time: req_num(&stime, T, "snap_time", U32)? as u32,
    })
}

fn parse_single(e: &BytesStart) -> PResult<Map> {
    const T: &str = "single_mapping";
    let [o, d, t] = attrs(e, T, ["origin_block", "data_block", "time"])?;
    Ok(Map {
        thin_begin: req_num(&o, T, "origin_block", U64)?,
        data_begin: req_num(&d, T, "data_block", U64)?,
        time: req_num(&t, T, "time", U32)? as u32,
        len: 1,
    })
}

fn parse_range(e: &BytesStart) -> PResult<Map> {
    const T: &str = "range_mapping";
    let [o, d, l, t] = attrs(e, T, ["origin_begin", "data_begin", "length", "time"])?;
    Ok(Map {
        thin_begin: req_num(&o, T, "origin_begin", U64)?,
        data_begin: req_num(&d, T, "data_begin", U64)?,
        len: req_num(&l, T, "length", U64)?,
        time: req_num(&t, T, "time", U32)? as u32,
    })
}

fn parse_name(e: &BytesStart, tag: &str) -> PResult<String> {
    let [name] = attrs(e, tag, ["name"])?;
    text(required(&name, tag, "name")?, tag, "name")
}

fn visited(r: Result<Visit>) -> PResult<Visit> {
    r.map_err(|e| e.to_string())
}

impl Parser<'_> {
    fn start(&mut self, e: &BytesStart) -> PResult<Visit> {
        let name = e.name();
        let tag = || String::from_utf8_lossy(name.as_ref()).into_owned();
        let top = self.stack.last().copied();
        if let Some(Open::Item(outer)) = top {
            return Err(format!("<{}> is not allowed inside <{outer}>", tag()));
        }
        let in_section = matches!(top, Some(Open::Def | Open::Device));
        match name.as_ref() {
            b"superblock" => {
                if self.seen_superblock {
                    return Err("duplicated superblock".into());
                }
                let sb = parse_superblock(e)?;
                self.seen_superblock = true;
                self.stack.push(Open::Superblock);
                visited(self.visitor.superblock_begin(&sb))
            }
            b"def" | b"device" => {
                if let Some(outer @ (Open::Def | Open::Device)) = top {
                    let outer = if outer == Open::Def { "def" } else { "device" };
                    return Err(format!(
                        "nested <{}> inside <{outer}>: nested subtrees are not allowed",
                        tag()
                    ));
                }
                if top != Some(Open::Superblock) {
                    return Err(format!(
                        "<{}> outside <superblock>: missing superblock",
                        tag()
                    ));
                }
                if name.as_ref() == b"def" {
                    let n = parse_name(e, "def")?;
                    self.stack.push(Open::Def);
                    visited(self.visitor.def_begin(&n))
                } else {
                    let d = parse_device(e)?;
                    self.stack.push(Open::Device);
                    visited(self.visitor.device_begin(&d))
                }
            }
            b"single_mapping" | b"range_mapping" => {
                if !in_section {
                    return Err("mapping tags must appear within a <def> or <device> tag".into());
                }
                let (m, t) = if name.as_ref() == b"single_mapping" {
                    (parse_single(e)?, "single_mapping")
                } else {
                    (parse_range(e)?, "range_mapping")
                };
                self.stack.push(Open::Item(t));
                visited(self.visitor.map(&m))
            }
            b"ref" => {
                if top != Some(Open::Device) {
                    return Err("<ref> tags may only occur within <device> sections".into());
                }
                let n = parse_name(e, "ref")?;
                self.stack.push(Open::Item("ref"));
                visited(self.visitor.ref_shared(&n))
            }
            _ => Err(format!("unknown tag <{}>", tag())),
        }
    }

    fn end(&mut self) -> PResult<Visit> {
        match self.stack.pop() {
            Some(Open::Superblock) => visited(self.visitor.superblock_end()),
            Some(Open::Def) => visited(self.visitor.def_end()),
            Some(Open::Device) => visited(self.visitor.device_end()),
            Some(Open::Item(_)) => Ok(Visit::Continue),
            None => Err("unbalanced end tag".into()),
        }
    }

    fn eof(&mut self) -> PResult<Visit> {
        if !self.seen_superblock {
            return Err("incomplete source metadata: no <superblock> found".into());
        }
        if !self.stack.is_empty() {
            return Err("incomplete source metadata: <superblock> is not closed".into());
        }
        visited(self.visitor.eof())
    }
}

/// Reads XML from `input` into `visitor`, calling `progress` with the byte
/// position now and then.
pub fn read<R: BufRead>(
    input: R,
    visitor: &mut dyn MetadataVisitor,
    progress: &mut dyn FnMut(u64),
) -> std::result::Result<(), XmlError> {
    let mut reader = quick_xml::Reader::from_reader(input);
    reader.config_mut().trim_text(true);
    let mut p = Parser {
        visitor,
        stack: Vec::new(),
        seen_superblock: false,
    };
    let mut buf = Vec::with_capacity(512);
    let mut events = 0u32;
    loop {
        let at = reader.buffer_position();
        buf.clear();
        let ev = reader.read_event_into(&mut buf).map_err(|e| XmlError {
            offset: reader.error_position(),
            msg: format!("XML syntax error: {e}"),
        })?;
        let r = match ev {
            Event::Start(e) => p.start(&e),
            Event::Empty(e) => match p.start(&e) {
                Ok(Visit::Continue) => p.end(),
                other => other,
            },
            Event::End(_) => p.end(),
            Event::Eof => {
                p.eof().map_err(|msg| XmlError { offset: at, msg })?;
                return Ok(());
            }
            _ => Ok(Visit::Continue),
        };
        match r {
            Ok(Visit::Continue) => {}
            Ok(Visit::Stop) => return Ok(()),
            Err(msg) => return Err(XmlError { offset: at, msg }),
        }
        events = events.wrapping_add(1);
        if events.is_multiple_of(1 << 16) {
            progress(reader.buffer_position());
        }
    }
}

/// Line and column (both from 1) of the first non-blank byte at or after
/// `offset` in the file.
fn line_col(path: &Path, offset: u64) -> Option<(u64, u64)> {
    let mut f = BufReader::with_capacity(1 << 16, File::open(path).ok()?);
    let (mut line, mut col, mut pos) = (1u64, 1u64, 0u64);
    let mut chunk = [0u8; 1 << 16];
    loop {
        let n = f.read(&mut chunk).ok()?;
        if n == 0 {
            return Some((line, col));
        }
        for &c in &chunk[..n] {
            if pos >= offset && !c.is_ascii_whitespace() {
                return Some((line, col));
            }
            if c == b'\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            pos += 1;
        }
    }
}

/// Reads the XML file at `path` into `visitor`; errors say
/// `path:line:column: what`.  Progress (in bytes) goes to `report`.
pub fn read_file(path: &Path, visitor: &mut dyn MetadataVisitor, report: &Report) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::File {
        path: path.display().to_string(),
        source: e,
    })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    report.start("Restoring", len);
    let mut last = 0u64;
    let r = read(
        BufReader::with_capacity(1 << 18, file),
        visitor,
        &mut |pos| {
            report.inc(pos.saturating_sub(last));
            last = pos;
        },
    );
    report.finish();
    r.map_err(|e| {
        let at = match line_col(path, e.offset) {
            Some((l, c)) => format!("{}:{l}:{c}", path.display()),
            None => format!("{}: byte {}", path.display(), e.offset),
        };
        Error::msg(format!("{at}: {}", e.msg))
    })
}

/// The names of the `<def>`s at the start of an XML file (defs come before
/// devices), for placing their leaves where the names say.  Reads up to
/// the first `<device>`; any problem just ends the list (the real read
/// reports it).
pub fn scan_def_names(path: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(f) = File::open(path) else {
        return names;
    };
    let mut reader = quick_xml::Reader::from_reader(BufReader::with_capacity(1 << 18, f));
    reader.config_mut().trim_text(true);
    let mut buf = Vec::with_capacity(512);
    loop {
        buf.clear();
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.name().as_ref() {
                b"def" => match parse_name(&e, "def") {
                    Ok(n) => names.push(n),
                    Err(_) => return names,
                },
                b"device" => return names,
                _ => {}
            },
            Ok(Event::Eof) | Err(_) => return names,
            _ => {}
        }
    }
}
