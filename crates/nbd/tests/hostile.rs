//! Hostile and broken clients: truncated handshakes, bad magic, unknown
//! options, oversized lengths, garbage, clients that never read, hundreds
//! of idle connections.  Each gets an error reply or a disconnect; the
//! server keeps serving everyone else and frees every connection.

mod common;

use common::raw::{info_data, Raw, Reply};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use uthin_nbd::proto::*;
use uthin_nbd::{Export, MemExport, ServerOptions};

const MIB: u64 = 1 << 20;

fn server_with(opts: ServerOptions) -> common::TestServer {
    common::start_with(
        vec![("v", Arc::new(MemExport::new(64 * MIB)) as Arc<dyn Export>)],
        opts,
    )
}

/// A well-behaved client still gets correct service.
fn healthy(t: &common::TestServer) {
    let (mut r, size, _) = Raw::open(&t.sock, "v", true, true);
    assert_eq!(size, 64 * MIB);
    r.request(CMD_WRITE, CMD_FLAG_FUA, 1, 4096, 4);
    r.send(b"ok!!");
    assert_eq!(
        r.reply(),
        Reply::Simple {
            error: 0,
            handle: 1
        }
    );
    r.request(CMD_READ, 0, 2, 4096, 4);
    let Reply::Chunk { payload, .. } = r.reply() else {
        panic!()
    };
    assert_eq!(&payload[8..], b"ok!!");
}

/// Wait until the server holds no more than `n` connections.
fn settle(t: &common::TestServer, n: usize) {
    let t0 = Instant::now();
    while t.server.connections() > n {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{} connections left",
            t.server.connections()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// The byte stream of a complete, valid client session.
fn good_session() -> Vec<u8> {
    let mut b = (FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
        .to_be_bytes()
        .to_vec();
    for (opt, data) in [
        (OPT_STRUCTURED_REPLY, vec![]),
        (OPT_GO, info_data("v", &[INFO_BLOCK_SIZE])),
    ] {
        b.extend_from_slice(&IHAVEOPT.to_be_bytes());
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(&data);
    }
    let w = uthin_nbd::wire::Request {
        flags: 0,
        kind: CMD_WRITE,
        handle: 1,
        offset: 0,
        length: 8,
    };
    b.extend_from_slice(&w.encode());
    b.extend_from_slice(b"12345678");
    b
}

#[test]
fn truncated_sessions_at_every_byte() {
    let t = server_with(ServerOptions::default());
    let full = good_session();
    for cut in 0..full.len() {
        let mut s = UnixStream::connect(&t.sock).unwrap();
        s.write_all(&full[..cut]).unwrap();
        drop(s);
    }
    settle(&t, 0);
    healthy(&t);
    settle(&t, 0);
}

#[test]
fn protocol_violations_disconnect() {
    let t = server_with(ServerOptions::default());
    // Unknown client flags.
    let mut r = Raw::connect(&t.sock);
    r.greeting();
    r.send(&0x8000_0001u32.to_be_bytes());
    assert!(r.closed());
    // Bad option magic.
    let mut r = Raw::hello(&t.sock);
    r.send(&[0xffu8; 16]);
    assert!(r.closed());
    // Garbage after the handshake.
    let (mut r, ..) = Raw::open(&t.sock, "v", true, false);
    r.send(b"GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
    assert!(r.closed());
    // A write announcing 4 GiB, then hanging up part way.
    let (mut r, ..) = Raw::open(&t.sock, "v", false, false);
    r.request(CMD_WRITE, 0, 1, 0, u32::MAX);
    r.send(&[0u8; 100_000]);
    drop(r);
    // Endless unknown options: answered, then cut.
    let mut r = Raw::hello(&t.sock);
    let mut n = 0;
    let mut burst = Vec::new();
    for _ in 0..5000 {
        burst.extend_from_slice(&IHAVEOPT.to_be_bytes());
        burst.extend_from_slice(&[0, 0, 0x77, 0x77, 0, 0, 0, 0]);
    }
    let _ = r.s.write_all(&burst);
    while !r.closed() {
        n += 1;
    }
    assert!(n > 1000, "{n} replies before the cut");
    settle(&t, 0);
    healthy(&t);
}

#[test]
fn oversized_lengths_get_errors() {
    let t = server_with(ServerOptions::default());
    // Option data over the limit is skipped with NBD_REP_ERR_TOO_BIG.
    let mut r = Raw::hello(&t.sock);
    assert_eq!(
        r.opt(OPT_INFO, &vec![0u8; 100_000])[0].kind,
        REP_ERR_TOO_BIG
    );
    assert_eq!(
        r.opt(OPT_GO, &[0, 0, 0, 0xff, 0, 0])[0].kind,
        REP_ERR_INVALID
    );
    r.go("v", true, false);
    // A 33 MiB write: payload skipped, EINVAL, connection still in step.
    r.request(CMD_WRITE, 0, 1, 0, (33 << 20) as u32);
    r.send(&vec![0xee; 33 << 20]);
    assert_eq!(Raw::error_of(&r.reply()), Errno::Inval.code());
    for (h, off, len) in [
        (2u64, 0u64, u32::MAX),
        (3, u64::MAX - 10, 4096),
        (4, 64 * MIB, 1),
        (5, 1 << 62, 512),
    ] {
        r.request(CMD_READ, 0, h, off, len);
        let reply = r.reply();
        assert_eq!(
            Raw::error_of(&reply),
            Errno::Inval.code(),
            "read {off:#x}+{len:#x}"
        );
        r.request(CMD_WRITE_ZEROES, 0, h + 100, off, len);
        assert_ne!(Raw::error_of(&r.reply()), 0);
    }
    r.request(CMD_READ, 0, 9, 0, 4096);
    assert!(matches!(
        r.reply(),
        Reply::Chunk {
            handle: 9,
            kind: REPLY_TYPE_OFFSET_DATA,
            ..
        }
    ));
}

#[test]
fn idle_connections_while_clients_work() {
    let t = server_with(ServerOptions::default());
    let mut idle = Vec::new();
    for i in 0..300 {
        if i % 2 == 0 {
            idle.push(Raw::open(&t.sock, "v", true, false).0);
        } else {
            let mut r = Raw::connect(&t.sock);
            r.greeting();
            idle.push(r);
        }
    }
    settle(&t, 300);
    assert_eq!(t.server.connections(), 300);
    common::require("qemu-io");
    let img = t.qemu("v");
    let o = common::run(&[
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "write -P 7 0 8M",
        "-c",
        "read -P 7 0 8M",
        &img,
    ]);
    assert!(!common::stdout(&o).contains("failed"));
    for _ in 0..20 {
        healthy(&t);
    }
    drop(idle);
    settle(&t, 0);
}

#[test]
fn handshake_timeout_and_connection_limit() {
    let t = server_with(ServerOptions {
        handshake_timeout: Some(Duration::from_millis(300)),
        max_connections: 4,
        ..ServerOptions::default()
    });
    let mut slow = Raw::connect(&t.sock);
    slow.greeting();
    let t0 = Instant::now();
    assert!(slow.closed());
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Transmission has no idle timeout.
    let mut held: Vec<Raw> = (0..4)
        .map(|_| Raw::open(&t.sock, "v", false, false).0)
        .collect();
    let mut extra = Raw::connect(&t.sock);
    assert!(extra.closed(), "a fifth connection is refused");
    thread::sleep(Duration::from_millis(500));
    held[0].request(CMD_FLUSH, 0, 1, 0, 0);
    assert_eq!(held[0].simple(), (0, 1));
    held.clear();
    settle(&t, 0);
    healthy(&t);
}

#[test]
fn client_that_never_reads_is_cut() {
    let t = server_with(ServerOptions {
        buffer_budget: 8 << 20,
        max_request: 1 << 20,
        reply_timeout: Some(Duration::from_secs(1)),
        ..ServerOptions::default()
    });
    // Pin the whole budget with replies nobody reads.
    let (mut hog, ..) = Raw::open(&t.sock, "v", false, false);
    let mut burst = Vec::new();
    for h in 0..400u64 {
        let r = uthin_nbd::wire::Request {
            flags: 0,
            kind: CMD_READ,
            handle: h,
            offset: 0,
            length: 1 << 20,
        };
        burst.extend_from_slice(&r.encode());
    }
    hog.send(&burst);
    thread::sleep(Duration::from_millis(200));
    // Another client's large read waits for the budget, then goes through.
    let t0 = Instant::now();
    let (mut r, ..) = Raw::open(&t.sock, "v", false, false);
    r.request(CMD_READ, 0, 1, 0, 1 << 20);
    assert_eq!(r.simple(), (0, 1));
    r.read_n(1 << 20);
    assert!(t0.elapsed() < Duration::from_secs(10));
    drop(hog);
    healthy(&t);
}
