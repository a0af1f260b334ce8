//! Hostile and broken clients against `uthin serve`: truncated handshakes,
//! unknown options, oversized lengths, reads past the end, garbage after
//! the handshake, block status on holes, and hundreds of idle connections,
//! while a real client keeps working and the daemon keeps serving.  (The
//! protocol layer alone is tested far more widely in crates/nbd/tests.)

#[path = "../../nbd/tests/common/raw.rs"]
#[allow(dead_code)]
mod raw;
mod serve_common;

use raw::Raw;
use serve_common::*;
use std::io::Write;
use std::os::unix::net::UnixStream;
use uthin_nbd::proto::*;

const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;
const EPERM: u32 = 1;

/// A clean handshake prefix: greeting read, client flags, one GO option.
fn handshake_bytes() -> Vec<u8> {
    let mut b = (FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
        .to_be_bytes()
        .to_vec();
    let data = raw::info_data("vol0", &[]);
    b.extend_from_slice(&IHAVEOPT.to_be_bytes());
    b.extend_from_slice(&OPT_GO.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(&data);
    b
}

fn still_serves(s: &Served) {
    qemu_io(
        &s.uri("vol0"),
        &["write -P 0x3c 0 64k", "read -P 0x3c 0 64k"],
    );
}

#[test]
fn truncated_handshakes_and_garbage() {
    let s = Served::small(&[]);
    let hs = handshake_bytes();
    for cut in 0..hs.len() {
        let mut c = UnixStream::connect(s.sock()).unwrap();
        let _ = c.write_all(&hs[..cut]);
        drop(c);
    }
    for garbage in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0xff; 300], &[0; 7]] {
        let mut c = UnixStream::connect(s.sock()).unwrap();
        let _ = c.write_all(garbage);
        drop(c);
    }
    still_serves(&s);
    // Garbage after the handshake: the connection is closed, others go on.
    let (mut r, _, _) = Raw::open(&s.sock(), "vol0", false, false);
    r.send(&[0xde; 64]);
    assert!(r.closed());
    still_serves(&s);
}

#[test]
fn unknown_options_and_exports() {
    let s = Served::small(&[]);
    let mut r = Raw::hello(&s.sock());
    assert_eq!(r.opt(999, b"junk")[0].kind, REP_ERR_UNSUP);
    assert_eq!(r.opt(OPT_STARTTLS, &[])[0].kind, REP_ERR_UNSUP);
    let no = r.opt(OPT_GO, &raw::info_data("no-such-volume", &[]));
    assert_eq!(no.last().unwrap().kind, REP_ERR_UNKNOWN);
    // The connection is still usable for a good GO.
    let (size, flags) = r.go("vol0", true, true);
    assert_eq!(size, 64 * MIB);
    assert!(flags & FLAG_SEND_TRIM != 0 && flags & FLAG_CAN_MULTI_CONN != 0);
    // Block status on a fresh volume: one hole.
    r.request(CMD_BLOCK_STATUS, 0, 1, 0, 1 << 20);
    match r.reply() {
        raw::Reply::Chunk { kind, payload, .. } => {
            assert_eq!(kind, REPLY_TYPE_BLOCK_STATUS);
            assert_eq!(&payload[4..8], &(1u32 << 20).to_be_bytes());
            assert_eq!(&payload[8..12], &3u32.to_be_bytes());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_requests_get_errors() {
    let s = Served::small(&[]);
    s.cli(&["snapshot", "vol0", "ro", "--read-only"]);
    let (mut r, size, _) = Raw::open(&s.sock(), "vol0", false, false);
    // Read past the end, straddling the end, too long, write past the end.
    r.request(CMD_READ, 0, 1, size, 4096);
    assert_eq!(r.simple(), (EINVAL, 1));
    r.request(CMD_READ, 0, 2, size - 512, 4096);
    assert_eq!(r.simple(), (EINVAL, 2));
    r.request(CMD_READ, 0, 3, 0, 64 << 20);
    assert_eq!(r.simple(), (EINVAL, 3));
    r.request(CMD_WRITE, 0, 4, size - 512, 4096);
    r.send(&[7u8; 4096]);
    assert_eq!(r.simple(), (ENOSPC, 4));
    r.request(CMD_TRIM, 0, 5, u64::MAX - 10, 4096);
    assert_eq!(r.simple(), (EINVAL, 5));
    // An unknown command and an unknown flag.
    r.request(42, 0, 6, 0, 0);
    assert_eq!(r.simple(), (EINVAL, 6));
    r.request(CMD_READ, 1 << 12, 7, 0, 512);
    assert_eq!(r.simple(), (EINVAL, 7));
    // Still in step: a good read returns zeroes.
    r.request(CMD_READ, 0, 8, 0, 512);
    assert_eq!(r.simple(), (0, 8));
    assert_eq!(r.read_n(512), vec![0u8; 512]);
    // Writes to a read-only snapshot.
    let (mut ro, _, flags) = Raw::open(&s.sock(), "ro", false, false);
    assert!(flags & FLAG_READ_ONLY != 0);
    ro.request(CMD_WRITE, 0, 9, 0, 512);
    ro.send(&[1u8; 512]);
    assert_eq!(ro.simple(), (EPERM, 9));
    still_serves(&s);
}

#[test]
fn hundreds_of_idle_connections() {
    let s = Served::small(&[]);
    let mut idle = Vec::new();
    for i in 0..300 {
        let c = UnixStream::connect(s.sock()).unwrap();
        if i % 2 == 0 {
            idle.push(c); // never says a word
        } else {
            let (r, _, _) = Raw::open(&s.sock(), "vol0", false, false);
            idle.push(r.s); // in transmission, sending nothing
            drop(c);
        }
    }
    still_serves(&s);
    let st = s.cli(&["status"]);
    assert!(st.contains("NBD connection(s)"), "{st}");
    drop(idle);
    still_serves(&s);
}
