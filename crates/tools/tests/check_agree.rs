//! uthin's thin_check and Debian's 0.9.0 agree on randomly damaged pools:
//! a flipped byte in any block the metadata uses fails both, in a free
//! block passes both.

mod check_common;
use check_common::*;
use uthin_tools::check::{check_path, CheckOptions};
use uthin_tools::report::Report;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn uthin_passes(p: &std::path::Path) -> bool {
    check_path(p, CheckOptions::default(), &Report::silent()).is_ok_and(|o| o.passed())
}

#[test]
fn random_byte_flips_agree_with_debian() {
    let dir = tempfile::tempdir().unwrap();
    let p = build(
        dir.path(),
        "p",
        &Spec {
            mappings: 20_000,
            snapshots: 2,
            held_snap: true,
            ..Spec::default()
        },
    );
    let bm = meta_bitmap0(&p);
    let nr = sb(&p).meta_sm[0].min(16320);
    let used: Vec<u64> = (0..nr)
        .filter(|&b| bitmap_entry(&p, bm, 0, b) != 0)
        .collect();
    let free: Vec<u64> = (0..nr)
        .filter(|&b| bitmap_entry(&p, bm, 0, b) == 0)
        .collect();
    assert!(used.len() > 50, "{} used blocks", used.len());
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut tried = 0;
    for round in 0..30 {
        let (b, should_pass) = if round % 3 == 2 {
            (free[rng.next() as usize % free.len()], true)
        } else {
            (used[rng.next() as usize % used.len()], false)
        };
        let off = rng.next() as usize % BS;
        let orig = read(&p, b);
        patch(&p, b, None, |d| d[off] ^= 1 << (rng.next() % 8));
        let (u, d) = (uthin_passes(&p), debian_passes(&p));
        assert_eq!(u, should_pass, "uthin on block {b} byte {off}");
        assert_eq!(d, should_pass, "0.9.0 on block {b} byte {off}");
        write(&p, b, &orig);
        tried += 1;
    }
    assert_eq!(tried, 30);
    assert!(uthin_passes(&p) && debian_passes(&p));
}

#[test]
fn metadata_written_by_debian_thin_restore_passes() {
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("m.xml");
    let mut s = String::from(
        "<superblock uuid=\"\" time=\"1\" transaction=\"2\" data_block_size=\"128\" nr_data_blocks=\"40000\">\n",
    );
    for d in 1..=3 {
        s += &format!("<device dev_id=\"{d}\" mapped_blocks=\"6000\" transaction=\"0\" creation_time=\"0\" snap_time=\"1\">\n");
        s += "<range_mapping origin_begin=\"0\" data_begin=\"0\" length=\"5000\" time=\"0\"/>\n";
        for i in 0..1000u64 {
            s += &format!(
                "<single_mapping origin_block=\"{}\" data_block=\"{}\" time=\"1\"/>\n",
                10_000 + 3 * i,
                5000 + d * 1000 + i
            );
        }
        s += "</device>\n";
    }
    s += "</superblock>\n";
    std::fs::write(&xml, s).unwrap();
    let meta = dir.path().join("meta");
    std::fs::write(&meta, vec![0u8; 8 << 20]).unwrap();
    let tool = ["/usr/sbin/thin_restore", "/sbin/thin_restore"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("thin_restore 0.9.0");
    let st = std::process::Command::new(tool)
        .args(["-i", xml.to_str().unwrap(), "-o", meta.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let o = check_ok(&meta);
    assert!(o.passed() && o.problems.is_empty(), "{}", text(&o));
    assert!(debian_passes(&meta));
    // Shared data blocks counted 3 live in the data ref-count tree.
    let (_, keys, _) = node(&meta, sb(&meta).data_sm[3]);
    assert!(!keys.is_empty());
}
