//! MemExport against a byte-vector model: random writes, trims, zeroes and
//! reads; block status must agree with the data (holes read as zeroes).

use proptest::prelude::*;
use uthin_nbd::{Export, Extent, MemExport, ZeroOptions};

const SIZE: u64 = 1 << 20;

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    Trim(u64, u64),
    Zero(u64, u64, bool),
    Read(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let range = (0..SIZE).prop_flat_map(|o| (Just(o), 0..=(SIZE - o).min(300_000)));
    prop_oneof![
        (0..SIZE - 1, prop::collection::vec(any::<u8>(), 1..5000))
            .prop_map(|(o, d)| Op::Write(o.min(SIZE - d.len() as u64), d)),
        range.clone().prop_map(|(o, n)| Op::Trim(o, n)),
        (range.clone(), any::<bool>()).prop_map(|((o, n), t)| Op::Zero(o, n, t)),
        range.prop_map(|(o, n)| Op::Read(o, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mem_export_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let m = MemExport::new(SIZE);
        let mut model = vec![0u8; SIZE as usize];
        for op in ops {
            match op {
                Op::Write(o, d) => {
                    m.write_at(o, &d, false).unwrap();
                    model[o as usize..o as usize + d.len()].copy_from_slice(&d);
                }
                Op::Trim(o, n) => {
                    m.trim(o, n, false).unwrap();
                    model[o as usize..(o + n) as usize].fill(0);
                }
                Op::Zero(o, n, may_trim) => {
                    let how = ZeroOptions { may_trim, ..Default::default() };
                    m.write_zeroes(o, n, how).unwrap();
                    model[o as usize..(o + n) as usize].fill(0);
                }
                Op::Read(o, n) => {
                    let mut b = vec![1u8; n as usize];
                    m.read_at(o, &mut b).unwrap();
                    prop_assert_eq!(&b[..], &model[o as usize..(o + n) as usize]);
                }
            }
        }
        let extents = m.block_status(0, SIZE).unwrap();
        prop_assert_eq!(extents.iter().map(|e| e.len).sum::<u64>(), SIZE);
        let mut pos = 0usize;
        for e in extents {
            if e.flags & Extent::ZERO != 0 {
                prop_assert!(model[pos..pos + e.len as usize].iter().all(|&x| x == 0));
            }
            pos += e.len as usize;
        }
    }
}
