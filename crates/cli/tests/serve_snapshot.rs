//! A snapshot taken while fio writes to its origin over two connections is
//! consistent: every 4 KiB block of the snapshot holds one whole fio write
//! (its verify header names the block's offset and both crc32c sums
//! match, so no write is torn or mixed), and the snapshot does not change
//! afterwards while the origin keeps changing.  Clients stay connected
//! throughout.

mod serve_common;

use serve_common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const REGION: u64 = 16 * MIB;

/// fio's verify header (fio 3.x `struct verify_header`, little-endian):
/// magic u16 = 0xacca, verify type u16, len u32, rand_seed u64, offset u64,
/// time_sec u32, time_nsec u32, thread u16, numberio u16, crc32c of the
/// 36 bytes before it u32; then the crc32c of the data that follows the
/// 44-byte header (`vhdr_crc32`).  fio's crc32c leaves out the final
/// inversion.
fn check_block(b: &[u8], offset: u64) -> Result<(), String> {
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    if u16_at(0) != 0xacca {
        return Err(format!("block {offset:#x}: no fio header"));
    }
    if u32_at(4) as usize != b.len() {
        return Err(format!("block {offset:#x}: length {}", u32_at(4)));
    }
    if u64_at(16) != offset {
        return Err(format!("block {offset:#x}: written for {:#x}", u64_at(16)));
    }
    if !crc32c::crc32c(&b[..36]) != u32_at(36) {
        return Err(format!("block {offset:#x}: header checksum"));
    }
    if !crc32c::crc32c(&b[44..]) != u32_at(40) {
        return Err(format!("block {offset:#x}: torn (data checksum)"));
    }
    Ok(())
}

fn check_image(img: &[u8]) {
    for (i, b) in img[..REGION as usize].chunks(4096).enumerate() {
        if let Err(e) = check_block(b, i as u64 * 4096) {
            panic!("{e}");
        }
    }
}

fn fio(uri: &str, extra: &[&str]) -> Command {
    let mut c = Command::new("fio");
    c.args([
        "--name=snapload",
        "--ioengine=nbd",
        &format!("--uri={uri}"),
        "--bs=4k",
        "--size=8M",
        "--offset_increment=8M",
        "--numjobs=2",
        "--iodepth=16",
        "--verify=crc32c",
        "--verify_state_save=0",
        "--do_verify=0",
    ]);
    c.args(extra);
    c
}

#[test]
fn snapshot_while_fio_writes_is_consistent() {
    need("fio");
    let s = Served::small(&["--first-volume-size", "16M"]);
    let uri = s.uri("vol0");
    // Fill the region once, so every block carries a fio header.
    let st = fio(&uri, &["--rw=write"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let before = read_volume(&uri, s.tmp.path(), "filled");
    check_image(&before); // the checker itself agrees with fio
                          // Random overwrites on two connections while snapshots are taken.
    let mut load = fio(&uri, &["--rw=randwrite", "--time_based", "--runtime=600"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut snaps = Vec::new();
    for i in 0..3 {
        let name = format!("s{i}");
        s.cli(&["snapshot", "vol0", &name, "--read-only"]);
        snaps.push((
            name.clone(),
            read_volume(&s.uri(&name), s.tmp.path(), &name),
        ));
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(load.try_wait().unwrap().is_none(), "fio stopped early");
    signal(&load, "TERM");
    load.wait().unwrap();
    let after = read_volume(&uri, s.tmp.path(), "after");
    check_image(&after);
    for (name, first) in &snaps {
        check_image(first);
        let again = read_volume(&s.uri(name), s.tmp.path(), name);
        assert!(
            again == *first,
            "snapshot {name} changed after it was taken"
        );
        assert!(
            *first != before && *first != after,
            "snapshot {name} was not taken mid-run"
        );
    }
}
