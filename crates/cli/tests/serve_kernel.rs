//! After `uthin serve` stops, the real kernel's dm-thin (under QEMU, through
//! `../shared/tools/dmthin-vm.sh`) activates the pool's files and reads
//! every volume with the same bytes the volumes gave over NBD.

mod serve_common;
#[path = "../../pool/tests/common/vm.rs"]
mod vm;

use serve_common::*;

fn md5(bytes: &[u8], tmp: &std::path::Path) -> String {
    let p = tmp.join("sum.bin");
    std::fs::write(&p, bytes).unwrap();
    run(&["md5sum", p.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn kernel_reads_what_nbd_served() {
    let mut s = Served::small(&["--first-volume-size", "8M"]);
    let src = s.tmp.path().join("src.img");
    pattern_file(&src, 8 << 20, 5);
    run(&["nbdcopy", src.to_str().unwrap(), &s.uri("vol0")]);
    s.cli(&["snapshot", "vol0", "snap"]);
    qemu_io(
        &s.uri("vol0"),
        &[
            "write -P 0x11 100000 300000",
            "discard 2M 1M",
            "write -z 5M 64k",
        ],
    );
    qemu_io(&s.uri("snap"), &["write -P 0x22 6M 4k"]);
    s.cli(&["create", "sparse", "--size", "4M"]);
    qemu_io(&s.uri("sparse"), &["write -P 0x33 1M 10k"]);
    let vols = ["vol0", "snap", "sparse"];
    let list: serde_json::Value =
        serde_json::from_str(&s.cli(&["list", "--json", "--no-exclusive"])).unwrap();
    let mut expect = Vec::new();
    for v in vols {
        let bytes = read_volume(&s.uri(v), s.tmp.path(), v);
        let info = list
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == v)
            .unwrap();
        expect.push((
            v,
            info["dev_id"].as_u64().unwrap(),
            bytes.len() as u64 / 512,
            md5(&bytes, s.tmp.path()),
        ));
    }
    let table = s.cli(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&table).unwrap();
    let block_sectors = st["block_size"].as_u64().unwrap() / 512;
    s.stop();

    let mut snippet = format!(
        "set -e\n\
         dmsetup create pool --table \"0 $DATA_SECTORS thin-pool $META $DATA {block_sectors} 0\"\n"
    );
    for (name, id, sectors, _) in &expect {
        snippet.push_str(&format!(
            "dmsetup create {name} --table \"0 {sectors} thin /dev/mapper/pool {id}\"\n\
             echo \"SUM {name} $(md5sum < /dev/mapper/{name} | cut -d' ' -f1)\"\n"
        ));
    }
    let out = vm::run_dmthin_vm(&s.metadata(), &s.data(), &snippet, &[]);
    for (name, _, _, sum) in &expect {
        let line = format!("SUM {name} {sum}");
        assert!(
            out.contains(&line),
            "kernel read {name} differently: want {line}\n{out}"
        );
    }
    // The kernel's commit on removal leaves metadata Debian's tools accept.
    run(&["thin_check", s.metadata().to_str().unwrap()]);
}
