//! fio's nbd engine with crc32c verification on two connections at once,
//! each job on its own half of the export, queue depth 32.

mod common;

use common::{require, run, stdout};
use std::sync::Arc;
use uthin_nbd::{Export, FileExport, MemExport};

const MIB: u64 = 1 << 20;

fn fio_verify(uri: &str, rw: &str, bs: &str) {
    let out = run(&[
        "fio",
        "--name=verify",
        "--ioengine=nbd",
        &format!("--uri={uri}"),
        &format!("--rw={rw}"),
        &format!("--bs={bs}"),
        "--size=32M",
        "--offset_increment=32M",
        "--numjobs=2",
        "--iodepth=32",
        "--verify=crc32c",
        "--verify_state_save=0",
        "--verify_fatal=1",
        "--group_reporting",
        "--output-format=terse",
    ]);
    let s = stdout(&out);
    // Terse format v3: field 5 is the error code; 6 and 47 the KiB read
    // (the verify pass) and written.
    let line = s.lines().find(|l| l.starts_with("3;")).expect("terse line");
    let f: Vec<&str> = line.split(';').collect();
    assert_eq!(f[4], "0", "{s}");
    assert_eq!(f[5], "65536", "{s}");
    if !rw.contains("rw") {
        assert_eq!(f[46], "65536", "{s}");
    }
}

#[test]
fn fio_crc32c_two_connections_memory() {
    require("fio");
    let mem: Arc<dyn Export> = Arc::new(MemExport::new(64 * MIB));
    let t = common::start(vec![("vol0", mem)]);
    fio_verify(&t.uri("vol0"), "randwrite", "4k");
    fio_verify(&t.uri("vol0"), "write", "256k");
    fio_verify(&t.tcp_uri("vol0"), "randrw", "16k");
}

#[test]
fn fio_crc32c_two_connections_file() {
    require("fio");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let file: Arc<dyn Export> = Arc::new(FileExport::open(&path, false).unwrap());
    let t = common::start(vec![("vol0", file)]);
    fio_verify(&t.uri("vol0"), "randwrite", "4k");
}
