//! The rules of opening and the superblock flags, as the kernel settled them:
//! format only an all-zero device (never when read-only), refuse another data
//! block size, refuse unknown incompat flags, go read-only on unknown
//! compat_ro flags, cap a huge metadata device at the format's maximum,
//! needs_check set/clear (and resize refused while set), the edge-triggered
//! metadata low-water callback, and the pre-commit (data flush) hook.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use uthin_block_io::testing::MemDevice;
use uthin_block_io::{BlockDevice, FileDevice};
use uthin_pdata::checksum::{seal, BlockKind};
use uthin_pdata::types::put32;
use uthin_thin::superblock::probe;
use uthin_thin::{DevId, Error, OpenOptions, PoolMetadata, VirtBlock};

fn fresh(bytes: u64) -> (Arc<MemDevice>, PoolMetadata) {
    let dev = Arc::new(MemDevice::new(bytes));
    let md = PoolMetadata::open(dev.clone(), OpenOptions::new(128)).unwrap();
    (dev, md)
}

fn reopen(dev: &Arc<MemDevice>, opts: OpenOptions) -> Result<PoolMetadata, Error> {
    PoolMetadata::open(dev.clone(), opts)
}

/// Rewrites a superblock field (u32 at `off`) and re-seals the checksum.
fn patch_sb(dev: &MemDevice, off: usize, v: u32) {
    let mut b = Box::new([0u8; 4096]);
    dev.read_at(&mut b[..], 0).unwrap();
    put32(&mut b[..], off, v);
    seal(BlockKind::Superblock, &mut b);
    dev.write_at(&b[..], 0).unwrap();
}

#[test]
fn formats_only_zeroed_devices_and_never_read_only() {
    let dev = Arc::new(MemDevice::new(4 << 20));
    let mut ro = OpenOptions::new(128);
    ro.read_only = true;
    assert!(matches!(reopen(&dev, ro.clone()), Err(Error::Unformatted)));
    let mut noformat = OpenOptions::new(128);
    noformat.format_if_empty = false;
    assert!(matches!(reopen(&dev, noformat), Err(Error::Unformatted)));
    let md = reopen(&dev, OpenOptions::new(128)).unwrap();
    md.close().unwrap();
    let sb = probe(dev.as_ref()).unwrap().unwrap();
    assert_eq!(
        (sb.version, sb.metadata_block_size, sb.data_block_size),
        (2, 8, 128)
    );
    assert_eq!(sb.metadata_nr_blocks, 1024);
    // Garbage in block 0 is an error, not a reason to format.
    dev.write_at(&[0xAB; 512], 0).unwrap();
    let e = reopen(&dev, OpenOptions::new(128))
        .err()
        .expect("garbage refused");
    assert!(e.to_string().contains("superblock"), "{e}");
}

#[test]
fn data_block_size_can_never_change() {
    let (dev, md) = fresh(4 << 20);
    md.close().unwrap();
    match reopen(&dev, OpenOptions::new(256)) {
        Err(Error::BlockSizeMismatch {
            stored: 128,
            requested: 256,
        }) => {}
        other => panic!("expected a block size mismatch, got {:?}", other.err()),
    }
    for bad in [0u32, 64, 129, 4_194_304] {
        assert!(matches!(
            reopen(&dev, OpenOptions::new(bad)),
            Err(Error::BadBlockSize(_))
        ));
    }
}

#[test]
fn incompat_flags_refuse_and_compat_ro_flags_mean_read_only() {
    let (dev, md) = fresh(4 << 20);
    md.close().unwrap();
    patch_sb(&dev, 360, 1);
    assert!(matches!(
        reopen(&dev, OpenOptions::new(128)),
        Err(Error::IncompatFeatures(1))
    ));
    patch_sb(&dev, 360, 0);
    patch_sb(&dev, 356, 4);
    let mut md = reopen(&dev, OpenOptions::new(128)).unwrap();
    assert!(md.is_read_only());
    assert!(matches!(md.create_thin(DevId(1)), Err(Error::ReadOnly)));
    assert!(md.device_ids().unwrap().is_empty());
}

#[test]
fn huge_metadata_device_is_used_up_to_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("meta");
    // 17 GiB sparse: above the 16 GiB warning and the 15.87 GiB maximum.
    let dev = Arc::new(FileDevice::create(&p, 17 << 30).unwrap());
    let md = PoolMetadata::open(dev.clone(), OpenOptions::new(128)).unwrap();
    assert_eq!(md.metadata_dev_size().unwrap(), 4_161_600);
    md.close().unwrap();
    assert_eq!(
        probe(dev.as_ref()).unwrap().unwrap().metadata_nr_blocks,
        4_161_600
    );
    common::assert_thin_check(&p);
}

#[test]
fn needs_check_persists_and_blocks_resize() {
    let (dev, mut md) = fresh(4 << 20);
    md.create_thin(DevId(1)).unwrap();
    md.commit().unwrap();
    md.set_needs_check().unwrap();
    assert!(probe(dev.as_ref()).unwrap().unwrap().needs_check());
    assert!(matches!(md.resize_data_dev(100), Err(Error::NeedsCheck(_))));
    drop(md);
    let mut md = reopen(&dev, OpenOptions::new(128)).unwrap();
    assert!(md.needs_check().unwrap());
    assert_eq!(md.device_ids().unwrap(), vec![DevId(1)]);
    md.clear_needs_check().unwrap();
    assert!(!probe(dev.as_ref()).unwrap().unwrap().needs_check());
    md.resize_data_dev(100).unwrap();
    md.commit().unwrap();
}

#[test]
fn data_space_never_shrinks() {
    let (_dev, mut md) = fresh(4 << 20);
    md.resize_data_dev(1000).unwrap();
    assert!(matches!(md.resize_data_dev(999), Err(Error::Shrink { .. })));
    md.resize_data_dev(1000).unwrap();
    assert_eq!(md.data_dev_size().unwrap(), 1000);
}

#[test]
fn metadata_low_water_callback_is_edge_triggered() {
    // 1 MiB of metadata: 256 blocks.  Fill it, then free it, then fill it
    // again; after every change the free count is compared with the
    // threshold to predict the fires: one per crossing from above to at or
    // below, none while it stays below.
    let (_dev, mut md) = fresh(1 << 20);
    md.resize_data_dev(100_000).unwrap();
    md.create_thin(DevId(1)).unwrap();
    md.commit().unwrap();
    let threshold = md.raw_free_metadata_blocks().unwrap() - 20;
    let fired = Arc::new(Mutex::new(Vec::new()));
    let f = fired.clone();
    md.set_metadata_threshold(threshold, move |n| f.lock().unwrap().push(n));
    let mut expected = Vec::new();
    let mut above = true;
    let mut observe = |md: &PoolMetadata, expected: &mut Vec<u64>| {
        let free = md.raw_free_metadata_blocks().unwrap();
        if free <= threshold && above {
            expected.push(free);
        }
        above = free > threshold;
    };
    let mut below_steps = 0;
    for round in 0..2u64 {
        let dev = DevId(1 + round);
        if round == 1 {
            md.delete_thin(DevId(1)).unwrap();
            observe(&md, &mut expected);
            md.commit().unwrap();
            md.create_thin(dev).unwrap();
            observe(&md, &mut expected);
            assert!(
                md.raw_free_metadata_blocks().unwrap() > threshold,
                "delete freed the space"
            );
        }
        for v in 0..6000u64 {
            let b = md.alloc_data_block().unwrap().unwrap();
            md.insert_block(dev, VirtBlock(v * 7), b).unwrap();
            observe(&md, &mut expected);
            below_steps += u64::from(md.raw_free_metadata_blocks().unwrap() <= threshold);
            if v % 300 == 299 {
                md.commit().unwrap();
            }
        }
        md.commit().unwrap();
    }
    let got = fired.lock().unwrap().clone();
    assert!(
        expected.len() >= 2,
        "the threshold was crossed twice: {expected:?}"
    );
    assert!(
        below_steps > 2 * expected.len() as u64,
        "it stayed below for a while without firing"
    );
    assert_eq!(got, expected);
}

#[test]
fn pre_commit_hook_runs_first_and_its_failure_fails_the_commit() {
    let (dev, mut md) = fresh(4 << 20);
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    md.set_pre_commit_hook(move || {
        if c.fetch_add(1, Ordering::SeqCst) == 1 {
            Err(std::io::Error::other("data device flush failed"))
        } else {
            Ok(())
        }
    });
    md.create_thin(DevId(1)).unwrap();
    md.commit().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Nothing changed: no commit, no hook.
    md.commit().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    md.create_thin(DevId(2)).unwrap();
    let before = dev.snapshot();
    let e = md.commit().unwrap_err();
    assert!(e.to_string().contains("flush"), "{e}");
    assert!(
        dev.snapshot() == before,
        "a failed data flush must leave the metadata untouched"
    );
    assert!(matches!(md.create_thin(DevId(3)), Err(Error::NeedsAbort)));
    md.abort().unwrap();
    assert_eq!(md.device_ids().unwrap(), vec![DevId(1)]);
}

#[test]
fn set_transaction_id_is_compare_and_swap() {
    let (dev, mut md) = fresh(4 << 20);
    assert!(matches!(
        md.set_transaction_id(5, 6),
        Err(Error::TransactionIdMismatch {
            expected: 5,
            actual: 0
        })
    ));
    md.set_transaction_id(0, 6).unwrap();
    md.commit().unwrap();
    drop(md);
    let md = reopen(&dev, OpenOptions::new(128)).unwrap();
    assert_eq!(md.transaction_id().unwrap(), 6);
}

#[test]
fn device_ids_beyond_24_bits_are_refused() {
    let (_dev, mut md) = fresh(4 << 20);
    md.create_thin(DevId((1 << 24) - 1)).unwrap();
    assert!(matches!(
        md.create_thin(DevId(1 << 24)),
        Err(Error::BadDevId(_))
    ));
    assert!(matches!(
        md.create_thin(DevId((1 << 24) - 1)),
        Err(Error::DeviceExists(_))
    ));
    assert!(matches!(
        md.create_snap(DevId(3), DevId(4)),
        Err(Error::NoSuchDevice(_))
    ));
}
