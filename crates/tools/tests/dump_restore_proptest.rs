//! Random pools made through `PoolMetadata` (thin devices, mappings,
//! snapshots sharing subtrees, deletes, commits), dumped, restored and
//! dumped again: the second dump equals the first byte for byte (def
//! names too: restore puts each def's first leaf at the block it is named
//! after), the restored metadata passes the strict verifier, and the dump
//! has the same devices and mappings as Debian's thin_dump of the pool
//! (checked for a few cases; it is slower).

mod dump_restore_support;

use dump_restore_support::*;
use proptest::prelude::*;
use std::sync::Arc;
use uthin_block_io::BlockDevice;
use uthin_thin::{DevId, VirtBlock};

#[derive(Debug, Clone)]
enum Op {
    Create,
    Snap(usize),
    Map(usize, u64, u64),
    Delete(usize),
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Create),
        2 => (0usize..8).prop_map(Op::Snap),
        6 => (0usize..8, 0u64..3000, 1u64..400).prop_map(|(d, b, n)| Op::Map(d, b, n)),
        1 => (0usize..8).prop_map(Op::Delete),
        1 => Just(Op::Commit),
    ]
}

/// Applies `ops` to a fresh pool; returns its device.
fn build(ops: &[Op]) -> Arc<dyn BlockDevice> {
    let (dev, mut md) = mem_pool(16 << 20, 200_000);
    let mut ids: Vec<u64> = Vec::new();
    let mut next = 0u64;
    for op in ops {
        match op {
            Op::Create => {
                md.create_thin(DevId(next)).unwrap();
                ids.push(next);
                next += 1;
            }
            Op::Snap(i) if !ids.is_empty() => {
                let origin = ids[i % ids.len()];
                md.create_snap(DevId(next), DevId(origin)).unwrap();
                ids.push(next);
                next += 1;
            }
            Op::Map(i, b, n) if !ids.is_empty() => {
                let d = ids[i % ids.len()];
                for v in *b..b + n {
                    // Stride 2 on odd runs: gaps and single mappings.
                    let v = if b % 2 == 1 { v * 2 } else { v };
                    let blk = md.alloc_data_block().unwrap().unwrap();
                    md.insert_block(DevId(d), VirtBlock(v), blk).unwrap();
                }
            }
            Op::Delete(i) if !ids.is_empty() => {
                let d = ids.remove(i % ids.len());
                md.delete_thin(DevId(d)).unwrap();
            }
            Op::Commit => md.commit().unwrap(),
            _ => {}
        }
    }
    md.commit().unwrap();
    dev
}

fn round_trip(ops: &[Op], oracle: bool) {
    let dev = build(ops);
    let d1 = dump(dev.clone());
    let restored = restore_mem(&d1, 16 << 20);
    if let Err(e) = verify::verify(restored.clone()) {
        panic!("verify failed:\n{e}\nfor\n{d1}");
    }
    let d2 = dump(restored.clone());
    assert_eq!(d2, d1);
    if oracle {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta");
        let mut img = vec![0u8; dev.len().unwrap() as usize];
        dev.read_at(&mut img, 0).unwrap();
        std::fs::write(&p, img).unwrap();
        let deb = run_tool("thin_dump", &[p.to_str().unwrap()]);
        assert!(deb.status.success());
        assert_eq!(
            logical(&d1).1,
            logical(&String::from_utf8(deb.stdout).unwrap()).1
        );
        let p2 = dir.path().join("restored");
        to_file(&restored, &p2);
        assert_thin_check(&p2);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn dump_restore_dump_is_stable(ops in prop::collection::vec(op(), 1..40)) {
        round_trip(&ops, false);
    }
}

#[test]
fn against_debian_thin_dump() {
    use Op::*;
    let ops = [
        Create,
        Map(0, 0, 399),
        Map(0, 1, 300),
        Snap(0),
        Map(0, 100, 50),
        Commit,
        Snap(1),
        Map(1, 2000, 399),
        Create,
        Snap(3),
        Map(2, 7, 3),
        Delete(0),
    ];
    round_trip(&ops, true);
}
