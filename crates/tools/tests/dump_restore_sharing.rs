//! Restore's sharing of def leaves, on random 1.x-form documents: defs of
//! every size (empty, one short leaf, many leaves), devices mixing refs and
//! their own mappings of every length.  Checked: the restored metadata
//! passes the strict verifier (fill rule, exact reference counts), holds
//! the same devices and mappings as the document, and dumping it is a
//! fixed point of restore + dump.  A few cases also go through Debian's
//! thin_check.

mod dump_restore_support;

use dump_restore_support::*;
use proptest::prelude::*;
use std::fmt::Write;

/// Keys of slot `s` are `s * SLOT ..`.
const SLOT: u64 = 1000;

#[derive(Debug, Clone)]
enum Part {
    Nothing,
    Own(u64),
    Ref,
}

/// Mapping counts that hit the interesting sizes.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..84, 84u64..260, 260u64..900]
}

fn doc() -> impl Strategy<Value = (Vec<Option<u64>>, Vec<Vec<Part>>, bool)> {
    let slots = prop::collection::vec(prop::option::of(size()), 1..6);
    slots.prop_flat_map(|defs| {
        let n = defs.len();
        let part = prop_oneof![
            Just(Part::Nothing),
            (1u64..300).prop_map(Part::Own),
            size().prop_map(Part::Own),
            Just(Part::Ref),
            Just(Part::Ref),
        ];
        let dev = prop::collection::vec(part, n);
        (Just(defs), prop::collection::vec(dev, 0..5), any::<bool>())
    })
}

fn mapping(out: &mut String, indent: &str, k: u64, d: u64, t: u32) {
    writeln!(
        out,
        r#"{indent}<single_mapping origin_block="{k}" data_block="{d}" time="{t}"/>"#
    )
    .unwrap();
}

fn build(defs: &[Option<u64>], devs: &[Vec<Part>], reuse: bool) -> String {
    let mut x = String::from(
        r#"<superblock uuid="" time="9" transaction="3" data_block_size="128" nr_data_blocks="100000">
"#,
    );
    let mut data = 1u64;
    let mut def_data = vec![0u64; defs.len()];
    for (s, d) in defs.iter().enumerate() {
        if let Some(n) = d {
            writeln!(x, r#"  <def name="d{s}">"#).unwrap();
            def_data[s] = data;
            for i in 0..*n {
                mapping(&mut x, "    ", s as u64 * SLOT + i, data, 1);
                data += 1;
            }
            x.push_str("  </def>\n");
        }
    }
    for (id, parts) in devs.iter().enumerate() {
        writeln!(
            x,
            r#"  <device dev_id="{id}" mapped_blocks="0" transaction="1" creation_time="2" snap_time="3">"#
        )
        .unwrap();
        for (s, p) in parts.iter().enumerate() {
            match p {
                Part::Nothing => {}
                Part::Ref if defs[s].is_some() => writeln!(x, r#"    <ref name="d{s}"/>"#).unwrap(),
                Part::Ref => {}
                Part::Own(n) => {
                    // Sometimes point at a def's data too: counts of 3 and more.
                    let base = if reuse && defs[s].is_some() {
                        def_data[s]
                    } else {
                        data
                    };
                    for i in 0..*n {
                        mapping(&mut x, "    ", s as u64 * SLOT + i, base + i, 2);
                    }
                    if base == data {
                        data += n;
                    }
                }
            }
        }
        x.push_str("  </device>\n");
    }
    x.push_str("</superblock>");
    fix_mapped_blocks(&x)
}

/// Sets every device's mapped_blocks to its number of mappings.
fn fix_mapped_blocks(x: &str) -> String {
    let (_, devs) = logical(x);
    let mut out = String::new();
    for line in x.lines() {
        if let Some(rest) = line.strip_prefix(r#"  <device dev_id=""#) {
            let id: u64 = rest[..rest.find('"').unwrap()].parse().unwrap();
            let n = devs[&id].1.len();
            out.push_str(&line.replace(r#"mapped_blocks="0""#, &format!(r#"mapped_blocks="{n}""#)));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn check(xml: &str, thin_check: bool) {
    let dev = restore_mem(xml, 8 << 20);
    if let Err(e) = verify::verify(dev.clone()) {
        panic!("verify failed:\n{e}\nfor\n{xml}");
    }
    let d1 = dump(dev.clone());
    assert_eq!(logical(&d1).1, logical(xml).1);
    let dev2 = restore_mem(&d1, 8 << 20);
    verify::verify(dev2.clone()).unwrap();
    assert_eq!(dump(dev2), d1, "not a fixed point:\n{d1}");
    if thin_check {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta");
        to_file(&dev, &p);
        assert_thin_check(&p);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn restore_shares_defs_correctly((defs, devs, reuse) in doc()) {
        let xml = build(&defs, &devs, reuse);
        check(&xml, false);
    }
}

/// Cases named after what once needed care, each also through thin_check.
#[test]
fn named_cases() {
    use Part::*;
    type Case = (Vec<Option<u64>>, Vec<Vec<Part>>);
    let cases: Vec<Case> = vec![
        // A short def that is both devices' whole tree: a shared root.
        (vec![Some(10)], vec![vec![Ref], vec![Ref]]),
        // A short def in the middle of a device: copied.
        (
            vec![None, Some(10), None],
            vec![vec![Own(300), Ref, Own(300)], vec![Nothing, Ref, Nothing]],
        ),
        // A short stretch of own mappings between big defs.
        (
            vec![Some(600), None, Some(600)],
            vec![vec![Ref, Own(5), Ref], vec![Ref, Nothing, Ref]],
        ),
        // Short own mappings after the last def, and before the first.
        (
            vec![Some(500), None],
            vec![vec![Ref, Own(3)], vec![Ref, Nothing]],
        ),
        (
            vec![None, Some(500)],
            vec![vec![Own(3), Ref], vec![Nothing, Ref]],
        ),
        // Empty defs: a shared empty root, or nothing inside a device.
        (
            vec![Some(0), None],
            vec![vec![Ref, Nothing], vec![Ref, Nothing], vec![Ref, Own(7)]],
        ),
        // Defs nobody uses, or one device uses.
        (vec![Some(300), Some(40)], vec![vec![Nothing, Ref]]),
        (vec![Some(300)], vec![]),
        // Adjacent defs used together everywhere.
        (
            vec![Some(300), Some(300)],
            vec![vec![Ref, Ref], vec![Ref, Ref], vec![Ref, Nothing]],
        ),
    ];
    for (defs, devs) in cases {
        check(&build(&defs, &devs, false), true);
        check(&build(&defs, &devs, true), true);
    }
}

/// The verifier is not vacuous: a wrong mapped_blocks, restored verbatim
/// as 1.x does, is caught.
#[test]
fn verifier_catches_a_wrong_mapped_blocks() {
    let xml = build(&[Some(100)], &[vec![Part::Ref]], false)
        .replace(r#"mapped_blocks="100""#, r#"mapped_blocks="99""#);
    let dev = restore_mem(&xml, 8 << 20);
    let e = verify::verify(dev).unwrap_err();
    assert!(e.contains("device 0: 100 mappings"), "{e}");
}
