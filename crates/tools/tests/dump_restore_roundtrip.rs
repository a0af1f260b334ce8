//! Round trips: restore then dump gives back the input XML byte for byte
//! (both forms 1.3.3 writes: plain, and with `<def>`/`<ref>`); dumps of
//! pools with snapshots survive dump -> restore -> dump; what restore
//! writes passes Debian's thin_check.

mod dump_restore_support;

use dump_restore_support::*;

/// 1.3.3's form without sharing: no flags, version 2, no trailing newline.
const PLAIN: &str = r#"<superblock uuid="" time="4" transaction="7" version="2" data_block_size="128" nr_data_blocks="100000">
  <device dev_id="1" mapped_blocks="4" transaction="2" creation_time="1" snap_time="4">
    <range_mapping origin_begin="0" data_begin="10" length="3" time="1"/>
    <single_mapping origin_block="100" data_block="20" time="2"/>
  </device>
  <device dev_id="2" mapped_blocks="0" transaction="7" creation_time="4" snap_time="4">
  </device>
  <device dev_id="7" mapped_blocks="1001" transaction="3" creation_time="2" snap_time="2">
    <range_mapping origin_begin="5" data_begin="1000" length="1000" time="0"/>
    <single_mapping origin_block="1006" data_block="1" time="2"/>
  </device>
</superblock>"#;

#[test]
fn plain_xml_round_trips_byte_for_byte() {
    let dev = restore_mem(PLAIN, 16 << 20);
    assert_eq!(dump(dev.clone()), PLAIN);
    verify::verify(dev.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("meta");
    to_file(&dev, &p);
    assert_thin_check(&p);
}

/// A pool with snapshots sharing parts of their origin, on a file.
fn snapshot_pool(path: &std::path::Path) {
    let dev = file_dev(path, 16 << 20);
    let mut md = uthin_thin::PoolMetadata::open(dev, uthin_thin::OpenOptions::new(128)).unwrap();
    md.resize_data_dev(100_000).unwrap();
    md.create_thin(uthin_thin::DevId(0)).unwrap();
    map_run(&mut md, 0, 0, 1000);
    md.create_snap(uthin_thin::DevId(1), uthin_thin::DevId(0))
        .unwrap();
    map_run(&mut md, 0, 500, 10);
    map_run(&mut md, 1, 2000, 300);
    md.create_snap(uthin_thin::DevId(2), uthin_thin::DevId(1))
        .unwrap();
    md.create_thin(uthin_thin::DevId(3)).unwrap();
    md.create_snap(uthin_thin::DevId(4), uthin_thin::DevId(3))
        .unwrap();
    md.commit().unwrap();
}

#[test]
fn snapshots_dump_with_defs_and_survive_a_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("meta");
    snapshot_pool(&p);
    let d1 = dump(std::sync::Arc::new(
        uthin_block_io::FileDevice::open(&p, false).unwrap(),
    ));
    println!("{d1}");
    assert!(d1.contains("<def name="), "{d1}");
    // Same devices and mappings as Debian's thin_dump.
    let deb = run_tool("thin_dump", &[p.to_str().unwrap()]);
    assert!(deb.status.success());
    let (_, want) = logical(&String::from_utf8(deb.stdout).unwrap());
    let (_, got) = logical(&d1);
    assert_eq!(got, want);
    // Restore, dump again: the same text, def names included.
    let dev = restore_mem(&d1, 16 << 20);
    let d2 = dump(dev.clone());
    assert_eq!(d2, d1);
    verify::verify(dev.clone()).unwrap();
    let p2 = dir.path().join("meta2");
    to_file(&dev, &p2);
    assert_thin_check(&p2);
}

/// 1.3.3's form with defs: a def of two leaves shared by two devices (one
/// with mappings of its own after it), a one-leaf def that is two devices'
/// whole tree, and an empty def two empty devices share.  Defs are named
/// after their first leaf's block and come in that order.
const DEFS: &str = r#"<superblock uuid="" time="2" transaction="5" version="2" data_block_size="256" nr_data_blocks="4096">
  <def name="37">
    <range_mapping origin_begin="0" data_begin="100" length="400" time="0"/>
  </def>
  <def name="52">
    <single_mapping origin_block="1000" data_block="7" time="1"/>
  </def>
  <def name="90">
  </def>
  <device dev_id="1" mapped_blocks="502" transaction="1" creation_time="0" snap_time="1">
    <ref name="37"/>
    <range_mapping origin_begin="400" data_begin="600" length="100" time="1"/>
    <range_mapping origin_begin="500" data_begin="700" length="2" time="2"/>
  </device>
  <device dev_id="2" mapped_blocks="400" transaction="1" creation_time="1" snap_time="1">
    <ref name="37"/>
  </device>
  <device dev_id="3" mapped_blocks="1" transaction="2" creation_time="1" snap_time="2">
    <ref name="52"/>
  </device>
  <device dev_id="4" mapped_blocks="1" transaction="5" creation_time="2" snap_time="2">
    <ref name="52"/>
  </device>
  <device dev_id="5" mapped_blocks="0" transaction="5" creation_time="2" snap_time="2">
    <ref name="90"/>
  </device>
  <device dev_id="6" mapped_blocks="0" transaction="5" creation_time="2" snap_time="2">
    <ref name="90"/>
  </device>
</superblock>"#;

#[test]
fn xml_with_defs_round_trips_byte_for_byte() {
    let dev = restore_mem(DEFS, 16 << 20);
    assert_eq!(dump(dev.clone()), DEFS);
    verify::verify(dev.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("meta");
    to_file(&dev, &p);
    assert_thin_check(&p);
    // Through files and the command's code path too (trailing newline
    // accepted on input).
    let input = dir.path().join("in.xml");
    std::fs::write(&input, format!("{DEFS}\n")).unwrap();
    let out = dir.path().join("meta2");
    std::fs::write(&out, vec![0u8; 4 << 20]).unwrap();
    let report = uthin_tools::report::Report::silent();
    uthin_tools::restore::restore(&input, &out, Default::default(), &report).unwrap();
    let xml = dir.path().join("out.xml");
    uthin_tools::dump::dump(&out, Some(&xml), &Default::default(), &report).unwrap();
    assert_eq!(std::fs::read_to_string(&xml).unwrap(), DEFS);
}

/// What 0.9.0 writes (flags="0", version 1, a trailing newline) restores
/// to the same devices and mappings, and dumps as 1.3.3 writes it.
#[test]
fn xml_written_by_0_9_0_restores() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.xml");
    std::fs::write(&src, PLAIN).unwrap();
    let deb_meta = dir.path().join("deb");
    std::fs::write(&deb_meta, vec![0u8; 16 << 20]).unwrap();
    let out = run_tool(
        "thin_restore",
        &[
            "-i",
            src.to_str().unwrap(),
            "-o",
            deb_meta.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let deb = run_tool("thin_dump", &[deb_meta.to_str().unwrap()]);
    let deb_xml = String::from_utf8(deb.stdout).unwrap();
    assert!(deb_xml.contains(r#"flags="0""#));
    // uthin reads Debian's image as Debian does.
    let ours = dump(std::sync::Arc::new(
        uthin_block_io::FileDevice::open(&deb_meta, false).unwrap(),
    ));
    assert_eq!(format!("{ours}\n"), deb_xml.replace(r#" flags="0""#, ""));
    // And restores Debian's XML.
    let dev = restore_mem(&deb_xml, 16 << 20);
    assert_eq!(dump(dev.clone()), PLAIN);
    assert_eq!(logical(&deb_xml).1, logical(PLAIN).1);
}

/// An empty pool, and a device with more mappings than a leaf holds
/// twice over (internal nodes), round trip too.
#[test]
fn empty_and_deep() {
    let empty = r#"<superblock uuid="" time="0" transaction="0" version="2" data_block_size="128" nr_data_blocks="0">
</superblock>"#;
    let dev = restore_mem(empty, 1 << 20);
    assert_eq!(dump(dev.clone()), empty);
    verify::verify(dev).unwrap();
    let mut big = String::from(
        r#"<superblock uuid="" time="0" transaction="0" version="2" data_block_size="128" nr_data_blocks="200000">
  <device dev_id="0" mapped_blocks="70000" transaction="0" creation_time="0" snap_time="0">"#,
    );
    for i in 0..70_000u64 {
        big.push_str(&format!(
            "\n    <single_mapping origin_block=\"{}\" data_block=\"{}\" time=\"0\"/>",
            i * 2,
            i * 2
        ));
    }
    big.push_str("\n  </device>\n</superblock>");
    let dev = restore_mem(&big, 16 << 20);
    assert_eq!(dump(dev.clone()), big);
    verify::verify(dev).unwrap();
}
