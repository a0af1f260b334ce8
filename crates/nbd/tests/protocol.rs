//! Protocol conformance with a raw client: option haggling, simple and
//! structured replies, holes, block status, errors the spec prescribes,
//! pipelining and DISC.

mod common;

use common::raw::{info_data, meta_data, Raw, Reply};
use std::sync::Arc;
use uthin_nbd::proto::*;
use uthin_nbd::{BlockSizes, Export, MemExport};

const MIB: u64 = 1 << 20;

fn two_exports() -> common::TestServer {
    let rw = MemExport::new(16 * MIB).with_description("scratch");
    let ro = MemExport::new(MIB).read_only();
    common::start(vec![("rw", Arc::new(rw)), ("ro", Arc::new(ro))])
}

#[test]
fn list_info_and_unknown_options() {
    let t = two_exports();
    let mut r = Raw::hello(&t.sock);
    let list = r.opt(OPT_LIST, &[]);
    assert_eq!(list.len(), 3);
    assert_eq!(&list[0].data[4..], b"ro");
    assert_eq!(&list[1].data[4..6], b"rw");
    assert_eq!(&list[1].data[6..], b"scratch");
    assert_eq!(r.opt(OPT_LIST, b"x")[0].kind, REP_ERR_INVALID);
    for opt in [
        OPT_STARTTLS,
        OPT_PEEK_EXPORT,
        OPT_EXTENDED_HEADERS,
        12,
        0,
        0xdead_beef,
    ] {
        assert_eq!(r.opt(opt, b"junk")[0].kind, REP_ERR_UNSUP, "option {opt}");
    }
    // Meta contexts need structured replies first.
    let m = meta_data("rw", &[BASE_ALLOCATION]);
    assert_eq!(r.opt(OPT_SET_META_CONTEXT, &m)[0].kind, REP_ERR_INVALID);
    assert_eq!(r.opt(OPT_STRUCTURED_REPLY, &[])[0].kind, REP_ACK);
    let listed = r.opt(OPT_LIST_META_CONTEXT, &meta_data("rw", &[]));
    assert_eq!(listed[0].kind, REP_META_CONTEXT);
    assert_eq!(&listed[0].data[4..], BASE_ALLOCATION.as_bytes());
    let other = r.opt(
        OPT_LIST_META_CONTEXT,
        &meta_data("rw", &["qemu:dirty-bitmap:x"]),
    );
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].kind, REP_ACK);
    assert_eq!(
        r.opt(OPT_SET_META_CONTEXT, &m[..m.len() - 1])[0].kind,
        REP_ERR_INVALID
    );
    assert_eq!(
        r.opt(OPT_SET_META_CONTEXT, &meta_data("nope", &[]))[0].kind,
        REP_ERR_UNKNOWN
    );
    // INFO: export, name, description, block sizes; unknown export.
    let info = r.opt(OPT_INFO, &info_data("", &[INFO_NAME, INFO_DESCRIPTION, 77]));
    let types: Vec<u16> = info
        .iter()
        .filter(|x| x.kind == REP_INFO)
        .map(|x| u16::from_be_bytes([x.data[0], x.data[1]]))
        .collect();
    assert_eq!(
        types,
        vec![INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE]
    );
    assert_eq!(
        &info[1].data[2..],
        b"rw",
        "the default export's canonical name"
    );
    assert_eq!(info.last().unwrap().kind, REP_ACK);
    assert_eq!(
        r.opt(OPT_INFO, &info_data("nope", &[]))[0].kind,
        REP_ERR_UNKNOWN
    );
    assert_eq!(r.opt(OPT_GO, &[0, 0, 0, 9])[0].kind, REP_ERR_INVALID);
    // Still usable after all that.
    let (size, flags) = r.go("ro", false, false);
    assert_eq!(size, MIB);
    assert_ne!(flags & FLAG_READ_ONLY, 0);
    assert_eq!(flags & (FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES), 0);
}

#[test]
fn abort_and_export_name() {
    let t = two_exports();
    let mut r = Raw::hello(&t.sock);
    assert_eq!(r.opt(OPT_ABORT, &[])[0].kind, REP_ACK);
    assert!(r.closed());
    // NBD_OPT_EXPORT_NAME with and without the 124 zero bytes.
    for no_zeroes in [true, false] {
        let mut r = Raw::connect(&t.sock);
        r.greeting();
        let cf = FLAG_C_FIXED_NEWSTYLE | if no_zeroes { FLAG_C_NO_ZEROES } else { 0 };
        r.send(&cf.to_be_bytes());
        r.send_opt(OPT_EXPORT_NAME, b"rw");
        let b = r.read_n(10 + if no_zeroes { 0 } else { 124 });
        assert_eq!(u64::from_be_bytes(b[..8].try_into().unwrap()), 16 * MIB);
        r.request(CMD_WRITE, 0, 1, 0, 4);
        r.send(b"abcd");
        assert_eq!(r.simple(), (0, 1));
        r.request(CMD_READ, 0, 2, 0, 4);
        assert_eq!(r.simple(), (0, 2));
        assert_eq!(r.read_n(4), b"abcd");
    }
    // An unknown export cannot be refused politely: the server hangs up.
    let mut r = Raw::hello(&t.sock);
    r.send_opt(OPT_EXPORT_NAME, b"nope");
    assert!(r.closed());
}

#[test]
fn simple_replies_and_errors() {
    let t = two_exports();
    let (mut r, size, flags) = Raw::open(&t.sock, "rw", false, false);
    assert_eq!(flags & FLAG_SEND_DF, 0, "DF needs structured replies");
    let data: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
    r.request(CMD_WRITE, CMD_FLAG_FUA, 1, 4096, 8192);
    r.send(&data);
    assert_eq!(r.simple(), (0, 1));
    r.request(CMD_READ, 0, 2, 4096, 8192);
    assert_eq!(r.simple(), (0, 2));
    assert_eq!(r.read_n(8192), data);
    let cases: &[(u16, u16, u64, u32, Errno)] = &[
        (CMD_READ, 0, size - 1, 2, Errno::Inval),
        (CMD_READ, 0, u64::MAX, 1, Errno::Inval),
        (CMD_READ, 0, 0, (32 << 20) + 1, Errno::Inval),
        (CMD_READ, CMD_FLAG_DF, 0, 1, Errno::Inval),
        (CMD_TRIM, 0, size, 1, Errno::Inval),
        (CMD_WRITE_ZEROES, 0, size - 1, 512, Errno::NoSpc),
        (
            CMD_WRITE_ZEROES,
            CMD_FLAG_FAST_ZERO | CMD_FLAG_NO_HOLE,
            0,
            4096,
            Errno::NotSup,
        ),
        (CMD_FLUSH, 0, 1, 0, Errno::Inval),
        (CMD_BLOCK_STATUS, 0, 0, 4096, Errno::Inval),
        (CMD_CACHE, 0, size, 4096, Errno::Inval),
        (9, 0, 0, 0, Errno::Inval),
        (CMD_TRIM, 1 << 7, 0, 512, Errno::Inval),
    ];
    for (i, &(kind, fl, off, len, errno)) in cases.iter().enumerate() {
        r.request(kind, fl, 100 + i as u64, off, len);
        assert_eq!(r.simple(), (errno.code(), 100 + i as u64), "case {i}");
    }
    // A write beyond the end: payload consumed, ENOSPC, stream in step.
    r.request(CMD_WRITE, 0, 7, size - 2, 4);
    r.send(b"wxyz");
    assert_eq!(r.simple(), (Errno::NoSpc.code(), 7));
    for (kind, len) in [
        (CMD_FLUSH, 0),
        (CMD_TRIM, 4096),
        (CMD_CACHE, 4096),
        (CMD_WRITE_ZEROES, 0),
    ] {
        r.request(kind, CMD_FLAG_FUA, 8, 0, len);
        assert_eq!(r.simple(), (0, 8));
    }
    let (mut ro, ..) = Raw::open(&t.sock, "ro", false, false);
    ro.request(CMD_WRITE, 0, 1, 0, 3);
    ro.send(b"abc");
    assert_eq!(ro.simple(), (Errno::Perm.code(), 1));
    ro.request(CMD_TRIM, 0, 2, 0, 512);
    assert_eq!(ro.simple(), (Errno::Perm.code(), 2));
}

#[test]
fn structured_reads_send_holes() {
    let t = two_exports();
    let (mut r, _, flags) = Raw::open(&t.sock, "rw", true, true);
    assert_ne!(flags & FLAG_SEND_DF, 0);
    r.request(CMD_WRITE, 0, 1, MIB + 65536, 4096);
    r.send(&[0x5a; 4096]);
    assert_eq!(
        r.reply(),
        Reply::Simple {
            error: 0,
            handle: 1
        }
    );
    // 1 MiB of hole, 64 KiB of data (the chunk holding the write), hole.
    r.request(CMD_READ, 0, 2, MIB / 2, MIB as u32 + 65536 * 4);
    let mut covered = 0u64;
    let mut kinds = Vec::new();
    loop {
        let Reply::Chunk {
            flags,
            kind,
            handle,
            payload,
        } = r.reply()
        else {
            panic!()
        };
        assert_eq!(handle, 2);
        let off = u64::from_be_bytes(payload[..8].try_into().unwrap());
        assert_eq!(off, MIB / 2 + covered, "chunks in order");
        let n = match kind {
            REPLY_TYPE_OFFSET_HOLE => {
                u64::from(u32::from_be_bytes(payload[8..12].try_into().unwrap()))
            }
            REPLY_TYPE_OFFSET_DATA => {
                let d = &payload[8..];
                assert_eq!(d[..4096], [0x5a; 4096]);
                d.len() as u64
            }
            k => panic!("chunk type {k}"),
        };
        kinds.push(kind);
        covered += n;
        if flags & REPLY_FLAG_DONE != 0 {
            break;
        }
    }
    assert_eq!(covered, MIB + 65536 * 4);
    assert_eq!(
        kinds,
        [
            REPLY_TYPE_OFFSET_HOLE,
            REPLY_TYPE_OFFSET_DATA,
            REPLY_TYPE_OFFSET_HOLE
        ]
    );
    // DF: one data chunk with the zeroes in it.
    r.request(CMD_READ, CMD_FLAG_DF, 3, 0, MIB as u32 * 2);
    let Reply::Chunk {
        flags,
        kind,
        payload,
        ..
    } = r.reply()
    else {
        panic!()
    };
    assert_eq!((flags, kind), (REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA));
    assert_eq!(payload.len(), 8 + 2 * MIB as usize);
    // Errors of reads come as error chunks.
    r.request(CMD_READ, 0, 4, 16 * MIB, 1);
    let reply = r.reply();
    assert!(matches!(
        reply,
        Reply::Chunk {
            kind: REPLY_TYPE_ERROR,
            flags: REPLY_FLAG_DONE,
            ..
        }
    ));
    assert_eq!(Raw::error_of(&reply), Errno::Inval.code());
    r.request(CMD_READ, 0, 5, 0, 0);
    assert!(matches!(
        r.reply(),
        Reply::Chunk {
            kind: REPLY_TYPE_NONE,
            flags: REPLY_FLAG_DONE,
            ..
        }
    ));
}

fn extents(r: &mut Raw, handle: u64, flags: u16, off: u64, len: u32) -> Vec<(u32, u32)> {
    r.request(CMD_BLOCK_STATUS, flags, handle, off, len);
    let Reply::Chunk {
        flags,
        kind,
        payload,
        ..
    } = r.reply()
    else {
        panic!()
    };
    assert_eq!((flags, kind), (REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS));
    assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), 1);
    payload[4..]
        .chunks(8)
        .map(|c| {
            (
                u32::from_be_bytes(c[..4].try_into().unwrap()),
                u32::from_be_bytes(c[4..].try_into().unwrap()),
            )
        })
        .collect()
}

#[test]
fn block_status_trim_and_zero() {
    let t = two_exports();
    let (mut r, ..) = Raw::open(&t.sock, "rw", true, true);
    const H: u32 = STATE_HOLE | STATE_ZERO;
    assert_eq!(extents(&mut r, 1, 0, 0, 4 << 20), [(4 << 20, H)]);
    r.request(CMD_WRITE, 0, 2, MIB, 1);
    r.send(&[1]);
    assert_eq!(
        r.reply(),
        Reply::Simple {
            error: 0,
            handle: 2
        }
    );
    let e = extents(&mut r, 3, 0, 0, 4 << 20);
    assert_eq!(e, [(1 << 20, H), (65536, 0), ((3 << 20) - 65536, H)]);
    assert_eq!(
        extents(&mut r, 4, CMD_FLAG_REQ_ONE, 0, 4 << 20),
        [(1 << 20, H)]
    );
    assert_eq!(extents(&mut r, 5, 0, MIB + 100, 10), [(10, 0)]);
    // WRITE_ZEROES without NO_HOLE may punch; with it, the range is allocated.
    r.request(CMD_WRITE_ZEROES, CMD_FLAG_FAST_ZERO, 6, MIB, 65536);
    assert_eq!(
        r.reply(),
        Reply::Simple {
            error: 0,
            handle: 6
        }
    );
    assert_eq!(extents(&mut r, 7, 0, 0, 2 << 20), [(2 << 20, H)]);
    r.request(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 8, 0, 65536);
    assert_eq!(
        r.reply(),
        Reply::Simple {
            error: 0,
            handle: 8
        }
    );
    assert_eq!(extents(&mut r, 9, 0, 0, 131072), [(65536, 0), (65536, H)]);
    r.request(CMD_TRIM, 0, 10, 0, 65536);
    assert_eq!(
        r.reply(),
        Reply::Simple {
            error: 0,
            handle: 10
        }
    );
    assert_eq!(extents(&mut r, 11, 0, 0, 131072), [(131072, H)]);
    r.request(CMD_BLOCK_STATUS, 0, 12, 16 * MIB - 1, 2);
    assert_eq!(Raw::error_of(&r.reply()), Errno::Inval.code());
}

#[test]
fn minimum_block_size_is_enforced() {
    let sizes = BlockSizes {
        minimum: 4096,
        preferred: 4096,
        maximum: 1 << 20,
    };
    let e = MemExport::new(MIB).with_block_sizes(sizes);
    let t = common::start(vec![("a", Arc::new(e))]);
    let mut r = Raw::hello(&t.sock);
    let replies = r.opt(OPT_GO, &info_data("a", &[INFO_BLOCK_SIZE]));
    let bs = replies
        .iter()
        .find(|x| x.kind == REP_INFO && x.data[1] == 3)
        .unwrap();
    assert_eq!(bs.data[2..], [0, 0, 16, 0, 0, 0, 16, 0, 0, 16, 0, 0]);
    r.request(CMD_READ, 0, 1, 512, 4096);
    assert_eq!(r.simple(), (Errno::Inval.code(), 1));
    r.request(CMD_READ, 0, 2, 0, 2 << 20);
    assert_eq!(r.simple(), (Errno::Inval.code(), 2));
    r.request(CMD_READ, 0, 3, 4096, 4096);
    assert_eq!(r.simple(), (0, 3));
}

#[test]
fn pipelined_requests_all_answered_then_disc() {
    let mem = Arc::new(MemExport::new(64 * MIB));
    let t = common::start(vec![("m", mem.clone() as Arc<dyn Export>)]);
    let (mut r, ..) = Raw::open(&t.sock, "m", true, false);
    // 200 writes sent back to back, then 200 reads, then a flush and DISC.
    let mut batch = Vec::new();
    for i in 0..200u64 {
        let req = uthin_nbd::wire::Request {
            flags: 0,
            kind: CMD_WRITE,
            handle: i,
            offset: i * 65536,
            length: 4096,
        };
        batch.extend_from_slice(&req.encode());
        batch.extend_from_slice(&[i as u8; 4096]);
    }
    r.send(&batch);
    let mut seen = [false; 200];
    for _ in 0..200 {
        let Reply::Simple { error: 0, handle } = r.reply() else {
            panic!()
        };
        assert!(!std::mem::replace(&mut seen[handle as usize], true));
    }
    for i in 0..200u64 {
        r.request(CMD_READ, 0, 1000 + i, i * 65536, 4096);
    }
    for _ in 0..200 {
        let Reply::Chunk {
            handle, payload, ..
        } = r.reply()
        else {
            panic!()
        };
        assert_eq!(payload[8..], [(handle - 1000) as u8; 4096]);
    }
    r.request(CMD_FLUSH, 0, 5000, 0, 0);
    assert_eq!(
        r.reply(),
        Reply::Simple {
            error: 0,
            handle: 5000
        }
    );
    assert_eq!(mem.flushes(), 1);
    r.request(CMD_DISC, 0, 5001, 0, 0);
    assert!(r.closed());
}
