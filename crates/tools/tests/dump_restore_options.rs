//! thin_dump's options through the library: the human-readable format,
//! --dev-id, --skip-mappings, metadata snapshots (-m, -m=BLOCK), --repair
//! over a damaged leaf, the superblock overrides, the NEEDS_CHECK flag and
//! root overrides.  (The fixture is a fixed point of restore + dump: a
//! device's own mappings after a def fill a leaf at least a third full.)

mod dump_restore_support;

use dump_restore_support::*;
use std::sync::Arc;
use uthin_block_io::BlockDevice;
use uthin_thin::DevId;
use uthin_tools::dump::{dump_reader, DumpOptions};
use uthin_tools::ir::SuperblockOverrides;
use uthin_tools::reader::{Reader, SbChoice};
use uthin_tools::report::Report;
use uthin_tools::xml::HumanReadableWriter;

const XML: &str = r#"<superblock uuid="" time="4" transaction="7" version="2" data_block_size="128" nr_data_blocks="1000">
  <def name="20">
    <range_mapping origin_begin="0" data_begin="10" length="300" time="1"/>
  </def>
  <device dev_id="1" mapped_blocks="400" transaction="2" creation_time="1" snap_time="4">
    <ref name="20"/>
    <range_mapping origin_begin="900" data_begin="500" length="100" time="2"/>
  </device>
  <device dev_id="2" mapped_blocks="300" transaction="7" creation_time="4" snap_time="4">
    <ref name="20"/>
  </device>
  <device dev_id="3" mapped_blocks="0" transaction="7" creation_time="4" snap_time="4">
  </device>
</superblock>"#;

fn opts() -> DumpOptions {
    DumpOptions::default()
}

#[test]
fn human_readable() {
    let dev = restore_mem(XML, 4 << 20);
    let r = Reader::from_device(dev, SbChoice::Live, 64).unwrap();
    let mut w = HumanReadableWriter::new(Vec::new());
    dump_reader(&r, &opts(), &mut w, &Report::silent()).unwrap();
    let text = String::from_utf8(w.into_inner()).unwrap();
    assert_eq!(
        text,
        "begin superblock: \"\", 4, 7, 0, 2, 128, 1000
def: 20
    (0..299) -> (10..309), 1

device: 1
mapped_blocks: 400
transaction: 2
creation time: 1
snap time: 4
    ref: 20
    (900..999) -> (500..599), 2

device: 2
mapped_blocks: 300
transaction: 7
creation time: 4
snap time: 4
    ref: 20

device: 3
mapped_blocks: 0
transaction: 7
creation time: 4
snap time: 4

end superblock
"
    );
}

#[test]
fn selected_devices_and_skipped_mappings() {
    let dev = restore_mem(XML, 4 << 20);
    let one = dump_with(
        dev.clone(),
        &DumpOptions {
            dev_ids: Some(vec![2]),
            ..opts()
        },
    )
    .unwrap();
    // Alone, device 2 shares nothing: no def.
    assert_eq!(
        one,
        r#"<superblock uuid="" time="4" transaction="7" version="2" data_block_size="128" nr_data_blocks="1000">
  <device dev_id="2" mapped_blocks="300" transaction="7" creation_time="4" snap_time="4">
    <range_mapping origin_begin="0" data_begin="10" length="300" time="1"/>
  </device>
</superblock>"#
    );
    let two = dump_with(
        dev.clone(),
        &DumpOptions {
            dev_ids: Some(vec![1, 2, 99]),
            ..opts()
        },
    )
    .unwrap();
    assert!(
        two.contains("<def name=\"20\">") && !two.contains("dev_id=\"3\""),
        "{two}"
    );
    let skip = dump_with(
        dev.clone(),
        &DumpOptions {
            skip_mappings: true,
            ..opts()
        },
    )
    .unwrap();
    assert!(
        !skip.contains("mapping") && !skip.contains("<def"),
        "{skip}"
    );
    assert_eq!(skip.matches("<device ").count(), 3);
    // 1.3.3 ignores --dev-id with --skip-mappings.
    let o = DumpOptions {
        skip_mappings: true,
        dev_ids: Some(vec![2]),
        ..opts()
    };
    assert_eq!(dump_with(dev, &o).unwrap(), skip);
}

#[test]
fn overrides_and_flags() {
    let dev = restore_mem(XML, 4 << 20);
    let o = |t, b, n| DumpOptions {
        overrides: SuperblockOverrides {
            transaction_id: t,
            data_block_size: b,
            nr_data_blocks: n,
        },
        ..opts()
    };
    let x = dump_with(dev.clone(), &o(Some(2345), Some(8192), Some(234_500))).unwrap();
    assert!(x.starts_with(r#"<superblock uuid="" time="4" transaction="2345" version="2" data_block_size="8192" nr_data_blocks="234500">"#), "{x}");
    // The transaction id and the data size never go down.
    let x = dump_with(dev.clone(), &o(Some(1), None, Some(5))).unwrap();
    assert!(x.contains(r#"transaction="7""#) && x.contains(r#"nr_data_blocks="1000""#));
    // Roots can be overridden: the details root for the mapping tree's
    // fails as a details tree (wrong value size).
    let r = Reader::from_device(dev.clone(), SbChoice::Live, 64).unwrap();
    let details = r.sb.device_details_root.0;
    let x = dump_with(
        dev.clone(),
        &DumpOptions {
            details_root: Some(details),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(x, XML);
    let mapping = r.sb.data_mapping_root.0;
    assert!(dump_with(
        dev,
        &DumpOptions {
            details_root: Some(mapping),
            ..opts()
        }
    )
    .is_err());
}

#[test]
fn needs_check_shows_as_flags() {
    let (dev, mut md) = mem_pool(4 << 20, 100);
    md.create_thin(DevId(1)).unwrap();
    md.commit().unwrap();
    md.set_needs_check().unwrap();
    let x = dump(dev);
    assert!(x.starts_with(r#"<superblock uuid="" time="0" transaction="0" flags="1" version="2" data_block_size="128" nr_data_blocks="100">"#), "{x}");
}

#[test]
fn metadata_snapshots() {
    let (dev, mut md) = mem_pool(8 << 20, 10_000);
    md.create_thin(DevId(1)).unwrap();
    map_run(&mut md, 1, 0, 500);
    let held = md.reserve_metadata_snap().unwrap();
    map_run(&mut md, 1, 1000, 10);
    md.create_thin(DevId(2)).unwrap();
    md.commit().unwrap();
    let live = dump(dev.clone());
    assert!(live.contains("dev_id=\"2\"") && live.contains("origin_begin=\"1000\""));
    let snap = dump_with(
        dev.clone(),
        &DumpOptions {
            sb: SbChoice::MetadataSnap,
            ..opts()
        },
    )
    .unwrap();
    assert!(
        !snap.contains("dev_id=\"2\"") && !snap.contains("origin_begin=\"1000\""),
        "{snap}"
    );
    // The copy has no space maps; overrides are not applied to it.
    assert!(snap.contains(r#"nr_data_blocks="0""#), "{snap}");
    let at = dump_with(
        dev.clone(),
        &DumpOptions {
            sb: SbChoice::At(held.0),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(at, snap);
    let o = DumpOptions {
        sb: SbChoice::MetadataSnap,
        overrides: SuperblockOverrides {
            transaction_id: Some(99),
            ..Default::default()
        },
        ..opts()
    };
    assert_eq!(dump_with(dev.clone(), &o).unwrap(), snap);
    md.release_metadata_snap().unwrap();
    md.commit().unwrap();
    let e = dump_with(
        dev,
        &DumpOptions {
            sb: SbChoice::MetadataSnap,
            ..opts()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("no current metadata snap"), "{e}");
}

#[test]
fn repair_skips_a_damaged_leaf() {
    let (dev, mut md) = mem_pool(8 << 20, 10_000);
    md.create_thin(DevId(1)).unwrap();
    map_run(&mut md, 1, 0, 1000);
    md.create_thin(DevId(2)).unwrap();
    map_run(&mut md, 2, 0, 10);
    md.commit().unwrap();
    drop(md);
    let good = dump(dev.clone());
    // Damage the leaf holding device 1's block 500.
    let r = Reader::from_device(dev.clone(), SbChoice::Live, 64).unwrap();
    let root = uthin_pdata::btree::lookup::<u64>(&r.tm, r.sb.data_mapping_root, 1)
        .unwrap()
        .unwrap();
    let mut blk = uthin_pdata::MetaBlock(root);
    loop {
        let d = uthin_pdata::btree::read_node(&r.tm, blk, 8).unwrap();
        let n = uthin_pdata::btree::node::Node::new(&d);
        if n.is_leaf() {
            break;
        }
        blk = n.child(n.lower_bound(500).unwrap());
    }
    drop(r);
    let mut b = [0u8; 4096];
    dev.read_at(&mut b, blk.byte_offset()).unwrap();
    b[100] ^= 0xff;
    dev.write_at(&b, blk.byte_offset()).unwrap();
    let e = dump_with(dev.clone(), &opts()).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{blk}")) && e.contains("checksum"),
        "{e}"
    );
    let fixed = dump_with(
        dev.clone(),
        &DumpOptions {
            repair: true,
            ..opts()
        },
    )
    .unwrap();
    let (_, want) = logical(&good);
    let (_, got) = logical(&fixed);
    assert_eq!(got[&2], want[&2]);
    let lost = want[&1].1.len() - got[&1].1.len();
    assert!(lost > 0 && lost <= 252 && got[&1].1.iter().all(|m| want[&1].1.contains(m)));
    let _: Arc<dyn BlockDevice> = dev;
}
