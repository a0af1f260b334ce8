//! Tests of the `testing` devices: [`MemDevice`], [`FaultyDevice`] and
//! [`CrashDevice`].  The crate dev-depends on itself with `testing` enabled,
//! so a plain `cargo test -p uthin-block-io` runs these.

use std::io;
use std::sync::Arc;
use uthin_block_io::testing::{mem, CrashDevice, FaultyDevice, MemDevice, Op};
use uthin_block_io::{BlockDevice, SharedDevice};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn devices_are_send_sync() {
    assert_send_sync::<MemDevice>();
    assert_send_sync::<FaultyDevice<MemDevice>>();
    assert_send_sync::<CrashDevice>();
    let _shared: SharedDevice = Arc::new(FaultyDevice::new(mem(4096)));
}

#[test]
fn mem_device_basics() {
    let d = MemDevice::new(8192);
    assert_eq!(d.len().unwrap(), 8192);
    d.write_at(&[1, 2, 3], 4094).unwrap();
    let mut b = [0u8; 3];
    d.read_at(&mut b, 4094).unwrap();
    assert_eq!(b, [1, 2, 3]);
    let err = d.read_at(&mut b, 8190).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(err.to_string().contains("8190"));
    assert_eq!(
        d.write_at(&b, 8190).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    d.discard(4095, 1 << 40).unwrap();
    assert_eq!(&d.snapshot()[4094..4097], &[1, 0, 0]);
    d.set_len(16384);
    assert_eq!(d.len().unwrap(), 16384);
    d.set_len(4095);
    assert_eq!(d.snapshot().len(), 4095);
    let d = MemDevice::from_bytes(vec![5; 10]);
    assert_eq!(d.snapshot(), vec![5; 10]);
}

#[test]
fn faulty_fails_exactly_the_nth_op() {
    let d = FaultyDevice::new(MemDevice::new(4096));
    d.fail_write_at(2);
    d.fail_read_at(1);
    d.fail_flush_at(0);
    d.write_at(&[1], 0).unwrap();
    d.write_at(&[2], 1).unwrap();
    let err = d.write_at(&[3], 2).unwrap_err();
    assert!(err.to_string().contains("injected write fault"), "{err}");
    d.write_at(&[4], 3).unwrap(); // one-shot
    assert_eq!(
        &d.inner().snapshot()[..4],
        &[1, 2, 0, 4],
        "failed write did nothing"
    );
    let mut b = [0u8; 4];
    d.read_at(&mut b, 0).unwrap();
    assert!(d.read_at(&mut b, 0).is_err());
    d.read_at(&mut b, 0).unwrap();
    assert!(d.flush().is_err());
    d.flush().unwrap();
    assert_eq!(d.counts(), (3, 4, 2));
    // Discards: counted on their own, a failed one leaves the bytes.
    d.fail_discard_at(1);
    d.discard(0, 1).unwrap();
    let err = d.discard(1, 1).unwrap_err();
    assert!(err.to_string().contains("injected discard fault"), "{err}");
    d.discard(2, 1).unwrap();
    assert_eq!(&d.inner().snapshot()[..4], &[0, 2, 0, 4]);
    assert_eq!((d.counts(), d.discards()), ((3, 4, 2), 3));
    d.reset_counts();
    assert_eq!(d.discards(), 0);
}

#[test]
fn faulty_sticky_reset_and_clear() {
    let d = FaultyDevice::new(MemDevice::new(4096));
    d.fail_write_at(1);
    d.set_sticky(true);
    d.write_at(&[1], 0).unwrap();
    for _ in 0..3 {
        assert!(d.write_at(&[1], 0).is_err());
    }
    d.clear_faults();
    d.write_at(&[1], 0).unwrap();
    d.reset_counts();
    assert_eq!(d.counts(), (0, 0, 0));
    d.set_sticky(false);
    d.fail_all_from(Op::Flush, 1);
    d.flush().unwrap();
    assert!(d.flush().is_err());
    assert!(d.flush().is_err());
    d.clear_faults();
    d.fail_read_at(0);
    let mut b = [0u8; 1];
    assert!(d.read_at(&mut b, 0).is_err());
    d.read_at(&mut b, 0).unwrap();
    assert_eq!(d.counts(), (2, 0, 3));
}

#[test]
fn crash_unflushed_lost_flushed_kept() {
    let d = CrashDevice::new(8192);
    d.write_at(&[1; 512], 0).unwrap();
    d.flush().unwrap();
    d.write_at(&[2; 512], 512).unwrap();
    assert_eq!(d.pending_writes(), 1);
    let live = d.live_image();
    assert_eq!(&live[..1024], [[1u8; 512], [2u8; 512]].concat().as_slice());
    let dur = d.durable_image();
    assert_eq!(&dur[..512], &[1; 512]);
    assert_eq!(&dur[512..1024], &[0; 512], "unflushed write is not durable");
    assert_eq!(d.flushes(), 1);
    let mut b = [0u8; 512];
    d.read_at(&mut b, 512).unwrap();
    assert_eq!(b, [2; 512], "reads see live data");
    d.discard(0, 256).unwrap();
    d.flush().unwrap();
    let dur = d.durable_image();
    assert_eq!(&dur[..256], &[0; 256]);
    assert_eq!(&dur[256..512], &[1; 256]);
    assert_eq!(&dur[512..1024], &[2; 512]);
    assert_eq!(d.durable_image(), d.live_image());
}

#[test]
fn crash_at_flush_stops_durability() {
    let d = CrashDevice::from_bytes(vec![9; 4096]);
    d.crash_at_flush(1);
    d.write_at(&[1; 16], 0).unwrap();
    d.flush().unwrap(); // flush #0 completes
    d.write_at(&[2; 16], 16).unwrap();
    let err = d.flush().unwrap_err(); // flush #1 dies
    assert!(err.to_string().contains("crash"), "{err}");
    assert!(d.is_dead());
    assert!(d.write_at(&[3; 16], 32).is_err());
    assert!(d.flush().is_err());
    assert!(d.discard(0, 4096).is_err());
    assert_eq!(d.flushes(), 1);
    let dur = d.durable_image();
    assert_eq!(&dur[..16], &[1; 16]);
    assert_eq!(&dur[16..48], &[9; 32]);
    let mut b = [0u8; 16];
    d.read_at(&mut b, 16).unwrap();
    assert_eq!(b, [2; 16]);
}

#[test]
fn crash_at_past_flush_kills_next() {
    let d = CrashDevice::new(512);
    d.flush().unwrap();
    d.flush().unwrap();
    d.crash_at_flush(0);
    assert!(d.flush().is_err());
    assert_eq!(d.flushes(), 2);
}

#[test]
fn torn_image_is_deterministic_and_sector_torn() {
    let d = CrashDevice::new(64 * 1024);
    d.write_at(&[1; 4096], 0).unwrap();
    d.flush().unwrap();
    assert_eq!(
        d.durable_image_torn(7),
        d.durable_image(),
        "nothing pending"
    );
    d.write_at(&[2; 4096], 0).unwrap();
    d.write_at(&[3; 8192], 8192).unwrap();
    d.write_at(&[4; 100], 20000).unwrap();
    let durable = d.durable_image();
    let mut distinct = std::collections::HashSet::new();
    for seed in 0..200u64 {
        let img = d.durable_image_torn(seed);
        assert_eq!(
            img,
            d.durable_image_torn(seed),
            "seed {seed} not deterministic"
        );
        let mut torn = 0;
        for (off, len, byte) in [(0usize, 4096usize, 2u8), (8192, 8192, 3), (20000, 100, 4)] {
            let region = &img[off..off + len];
            let new = region.iter().take_while(|&&b| b == byte).count();
            assert!(region[new..]
                .iter()
                .zip(&durable[off + new..])
                .all(|(a, b)| a == b));
            if new != 0 && new != len {
                assert_eq!(
                    (off + new) % 512,
                    0,
                    "seed {seed}: tear not at a sector boundary"
                );
                torn += 1;
            }
        }
        assert!(torn <= 1, "seed {seed}: more than one torn write");
        distinct.insert(img);
    }
    assert!(distinct.len() > 5, "seeds should give varied images");
    assert!(
        distinct.contains(&d.live_image()),
        "all pending writes may survive"
    );
    assert!(
        distinct.contains(&durable),
        "all pending writes may be lost"
    );
}

#[test]
fn faulty_over_crash_device_composes() {
    let d = FaultyDevice::new(Arc::new(CrashDevice::new(4096)));
    d.fail_flush_at(0);
    d.write_at(&[7; 8], 0).unwrap();
    assert!(d.flush().is_err());
    assert_eq!(d.inner().flushes(), 0);
    d.flush().unwrap();
    assert_eq!(&d.inner().durable_image()[..8], &[7; 8]);
}
