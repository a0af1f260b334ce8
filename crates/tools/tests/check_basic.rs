//! thin_check on healthy pools: uthin and Debian's 0.9.0 agree they pass,
//! and every option behaves on them.

mod check_common;
use check_common::*;

#[test]
fn healthy_pools_pass_both_checkers() {
    let dir = tempfile::tempdir().unwrap();
    let specs = [
        Spec {
            devices: 1,
            mappings: 0,
            snapshots: 0,
            ..Spec::default()
        },
        Spec::default(),
        Spec {
            devices: 2,
            mappings: 30_000,
            snapshots: 3,
            ..Spec::default()
        },
        Spec {
            held_snap: true,
            ..Spec::default()
        },
    ];
    for (i, s) in specs.iter().enumerate() {
        let p = build(dir.path(), &format!("p{i}"), s);
        let o = check_ok(&p);
        assert!(o.passed(), "pool {i} {s:?}:\n{}", text(&o));
        assert!(o.problems.is_empty(), "{}", text(&o));
        assert!(debian_passes(&p), "0.9.0 rejects pool {i}");
        if i == 2 {
            // Snapshots whose leaves were copied: data counts of 3 and more.
            let (_, keys, _) = node(&p, sb(&p).data_sm[3]);
            assert!(!keys.is_empty(), "no data ref-count tree entries");
        }
    }
}

#[test]
fn cycles_and_unbalanced_trees_are_caught() {
    use uthin_pdata::checksum::BlockKind;
    use uthin_pdata::types::put64;
    let dir = tempfile::tempdir().unwrap();
    let p = build(
        dir.path(),
        "p",
        &Spec {
            mappings: 40_000,
            ..Spec::default()
        },
    );
    let root = dev_root(&p, 1);
    let (leaf, keys, _) = node(&p, root);
    assert!(!leaf);
    // The root's last child pointer points back at the root.
    patch(&p, root, Some(BlockKind::Node), |d| {
        put64(d, 32 + 8 * 252 + 8 * (keys.len() - 1), root)
    });
    let o = check_ok(&p);
    assert_fails_with(
        &o,
        &[
            &format!("node {root} (child of node {root})"),
            "unbalanced tree or a cycle",
        ],
    );
    assert!(!debian_passes(&p));
}

#[test]
fn space_map_root_sanity() {
    use uthin_pdata::checksum::BlockKind;
    use uthin_pdata::types::put64;
    let dir = tempfile::tempdir().unwrap();
    let p = small(dir.path(), "p");
    let n = sb(&p).meta_sm[0];
    patch(&p, 0, Some(BlockKind::Superblock), |d| {
        put64(d, 192 + 8, n + 1)
    });
    assert_fails_with(&check_ok(&p), &["metadata space map root says"]);

    // The metadata space map ends before the last block in use.
    let p = small(dir.path(), "q");
    let bm = meta_bitmap0(&p);
    let last = (0..16320)
        .rev()
        .find(|&b| bitmap_entry(&p, bm, 0, b) != 0)
        .unwrap();
    patch(&p, 0, Some(BlockKind::Superblock), |d| {
        put64(d, 192, last);
        put64(d, 192 + 8, 10);
    });
    assert_fails_with(
        &check_ok(&p),
        &[&format!(
            "metadata block {last} is in use but beyond the metadata space map's {last} blocks"
        )],
    );
}
