//! Restore rejects what thin-provisioning-tools 1.x rejects, saying where
//! (file:line:column) and what; the output keeps a zeroed superblock.

mod dump_restore_support;

use std::path::Path;
use uthin_tools::ir::SuperblockOverrides;
use uthin_tools::report::Report;

const HEAD: &str =
    r#"<superblock uuid="" time="1" transaction="1" data_block_size="128" nr_data_blocks="1000">"#;

/// Restores `xml` (from a file) and returns the error text.
fn reject(xml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.xml");
    std::fs::write(&input, xml).unwrap();
    let out = dir.path().join("meta");
    std::fs::write(&out, vec![0u8; 1 << 20]).unwrap();
    let e = uthin_tools::restore::restore(
        &input,
        &out,
        SuperblockOverrides::default(),
        &Report::silent(),
    )
    .expect_err("must be rejected")
    .to_string();
    let sb = std::fs::read(&out).unwrap();
    assert!(
        sb[..4096].iter().all(|&b| b == 0),
        "superblock written after: {e}"
    );
    let prefix = format!("{}:", input.display());
    assert!(e.starts_with(&prefix), "no location in {e:?}");
    e[prefix.len()..].to_string()
}

fn doc(body: &str) -> String {
    format!("{HEAD}\n{body}\n</superblock>")
}

#[test]
fn unsorted_mappings() {
    let e = reject(&doc(
        r#"  <device dev_id="1" mapped_blocks="2" transaction="0" creation_time="0" snap_time="0">
    <single_mapping origin_block="5" data_block="1" time="0"/>
    <single_mapping origin_block="5" data_block="2" time="0"/>
  </device>"#,
    ));
    assert_eq!(e, "4:5: keys out of order: origin block 5 follows 5");
    let e = reject(&doc(
        r#"  <device dev_id="1" mapped_blocks="2" transaction="0" creation_time="0" snap_time="0">
    <range_mapping origin_begin="5" data_begin="1" length="10" time="0"/>
    <single_mapping origin_block="14" data_block="20" time="0"/>
  </device>"#,
    ));
    assert!(e.starts_with("4:5: keys out of order"), "{e}");
}

#[test]
fn refs_out_of_order() {
    let e = reject(&doc(r#"  <def name="a">
    <single_mapping origin_block="1" data_block="1" time="0"/>
  </def>
  <device dev_id="1" mapped_blocks="2" transaction="0" creation_time="0" snap_time="0">
    <single_mapping origin_block="3" data_block="2" time="0"/>
    <ref name="a"/>
  </device>"#));
    assert!(e.starts_with("7:5: keys out of order: def 'a'"), "{e}");
}

#[test]
fn unknown_and_missing_attributes() {
    let e = reject(&doc(
        r#"  <device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0" colour="red">
  </device>"#,
    ));
    assert_eq!(e, "2:3: unknown attribute 'colour' in tag 'device'");
    let e = reject(&doc(
        r#"  <device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0">
  </device>"#,
    ));
    assert_eq!(e, "2:3: missing attribute 'snap_time' for tag 'device'");
    let e = reject(
        r#"<superblock uuid="" time="x" transaction="1" data_block_size="128" nr_data_blocks="1"></superblock>"#,
    );
    assert!(
        e.starts_with("1:1: bad value 'x' for attribute 'time'"),
        "{e}"
    );
    let e = reject(&doc(
        r#"  <device dev_id="4294967296" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0">
  </device>"#,
    ));
    assert!(e.contains("attribute 'dev_id'"), "{e}");
}

#[test]
fn bad_block_sizes() {
    for bs in ["0", "64", "129", "4194304"] {
        let e = reject(&format!(
            r#"<superblock uuid="" time="1" transaction="1" data_block_size="{bs}" nr_data_blocks="10">
</superblock>"#
        ));
        assert!(e.starts_with("1:1: invalid data block size"), "{bs}: {e}");
    }
}

#[test]
fn structure() {
    let dev =
        r#"<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0">"#;
    // A def inside a device.
    let e = reject(&doc(&format!(
        "  {dev}\n    <def name=\"x\">\n    </def>\n  </device>"
    )));
    assert!(e.starts_with("3:5: nested <def> inside <device>"), "{e}");
    // A ref in a def, or outside any device.
    let e = reject(&doc("  <def name=\"x\">\n    <ref name=\"y\"/>\n  </def>"));
    assert_eq!(e, "3:5: <ref> tags may only occur within <device> sections");
    let e = reject(&doc("  <ref name=\"y\"/>"));
    assert_eq!(e, "2:3: <ref> tags may only occur within <device> sections");
    // A mapping outside a def or device, a ref to nothing, unknown tags.
    let e = reject(&doc(
        "  <single_mapping origin_block=\"1\" data_block=\"1\" time=\"0\"/>",
    ));
    assert!(e.starts_with("2:3: mapping tags must appear within"), "{e}");
    let e = reject(&doc(&format!(
        "  {dev}\n    <ref name=\"nope\"/>\n  </device>"
    )));
    assert_eq!(e, "3:5: Couldn't find sub tree 'nope'.");
    let e = reject(&doc("  <pool/>"));
    assert_eq!(e, "2:3: unknown tag <pool>");
    // Devices and defs twice, two superblocks, no superblock, cut short.
    let e = reject(&doc(&format!("  {dev}\n  </device>\n  {dev}\n  </device>")));
    assert_eq!(e, "4:3: device 1 is defined twice");
    let e = reject(&format!("{HEAD}\n</superblock>\n{HEAD}\n</superblock>"));
    assert_eq!(e, "3:1: duplicated superblock");
    let e = reject(&format!("  {dev}\n  </device>"));
    assert!(e.contains("missing superblock"), "{e}");
    let e = reject(&format!("{HEAD}\n  {dev}\n"));
    assert!(e.contains("incomplete source metadata"), "{e}");
    let e = reject("");
    assert!(e.contains("incomplete source metadata"), "{e}");
    // Not XML at all, or mismatched tags.
    let e = reject(&format!("{HEAD}\n  {dev}\n  </def>\n</superblock>"));
    assert!(e.contains("XML syntax error"), "{e}");
}

#[test]
fn data_blocks_and_times_in_range() {
    let dev = r#"  <device dev_id="1" mapped_blocks="1" transaction="0" creation_time="0" snap_time="0">"#;
    let e = reject(&doc(&format!(
        "{dev}\n    <range_mapping origin_begin=\"0\" data_begin=\"995\" length=\"10\" time=\"0\"/>\n  </device>"
    )));
    assert_eq!(e, "3:5: data block 1004 is beyond nr_data_blocks 1000");
    let e = reject(&doc(&format!(
        "{dev}\n    <single_mapping origin_block=\"0\" data_block=\"1\" time=\"16777216\"/>\n  </device>"
    )));
    assert_eq!(e, "3:5: mapping time 16777216 does not fit in 24 bits");
}

#[test]
fn input_missing_or_output_too_small() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("meta");
    std::fs::write(&out, vec![0u8; 4096]).unwrap();
    let missing = Path::new("/nonexistent/in.xml");
    let e = uthin_tools::restore::restore(
        missing,
        &out,
        SuperblockOverrides::default(),
        &Report::silent(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("No such file"), "{e}");
    // 8 blocks: room for the superblock, not for a metadata space map of
    // this many data blocks.
    let input = dir.path().join("in.xml");
    std::fs::write(&input, doc("")).unwrap();
    std::fs::write(&out, vec![0u8; 8 * 4096]).unwrap();
    let big = format!(
        r#"<superblock uuid="" time="1" transaction="1" data_block_size="128" nr_data_blocks="{}">
</superblock>"#,
        16320 * 20
    );
    std::fs::write(&input, big).unwrap();
    let e = uthin_tools::restore::restore(
        &input,
        &out,
        SuperblockOverrides::default(),
        &Report::silent(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("Output file too small"), "{e}");
}
