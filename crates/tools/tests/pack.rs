//! thin_metadata_pack / unpack: round trips give the metadata image back
//! byte for byte (blocks that are not metadata come back as zeroes), the
//! file has 1.x's header and chunk framing, chunks may come in any order as
//! 1.x's threads write them, and bad pack files are errors, never panics.

mod ls_fixtures;

use ls_fixtures::{Pool, Rng};
use std::os::unix::fs::FileExt;
use std::path::Path;
use uthin_tools::pack::{pack, unpack, MAGIC};
use uthin_tools::report::Report;

fn pool() -> Pool {
    let mut p = Pool::new(16, 100_000);
    let mut rng = Rng(11);
    p.thin(1).write(1, 0..20_000);
    let vs: Vec<u64> = (0..5000).map(|_| rng.below(1 << 34)).collect();
    p.write(1, vs).snap(2, 1).write(2, 0..500).commit();
    p.md.reserve_metadata_snap().unwrap();
    p.commit();
    p.discard(1, 100..3000).commit();
    p
}

fn roundtrip(meta: &Path, dir: &Path) -> Vec<u8> {
    let (pk, out) = (dir.join("pack"), dir.join("out"));
    let st = pack(meta, &pk, &Report::silent()).unwrap();
    let st2 = unpack(&pk, &out, &Report::silent()).unwrap();
    assert_eq!(st, st2);
    std::fs::read(out).unwrap()
}

#[test]
fn roundtrip_is_identical() {
    let p = pool();
    let orig = std::fs::read(&p.meta).unwrap();
    let back = roundtrip(&p.meta, p.dir.path());
    assert_eq!(back.len(), orig.len());
    assert!(back == orig, "unpacked image differs");
    let packed = std::fs::metadata(p.dir.path().join("pack")).unwrap().len();
    assert!(packed * 20 < orig.len() as u64, "packed to {packed} bytes");
    // Packing is deterministic.
    let again = p.dir.path().join("pack2");
    pack(&p.meta, &again, &Report::silent()).unwrap();
    assert_eq!(
        std::fs::read(again).unwrap(),
        std::fs::read(p.dir.path().join("pack")).unwrap()
    );
}

#[test]
fn non_metadata_blocks_come_back_as_zeroes() {
    let p = pool();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p.meta)
        .unwrap();
    let junk_at = 4000 * 4096;
    f.write_all_at(&[0x5A; 4096], junk_at).unwrap();
    let mut orig = std::fs::read(&p.meta).unwrap();
    let back = roundtrip(&p.meta, p.dir.path());
    orig[junk_at as usize..junk_at as usize + 4096].fill(0);
    assert!(back == orig);
}

/// (header, chunks) of a pack file.
fn split(bytes: &[u8]) -> ([u64; 4], Vec<Vec<u8>>) {
    let u = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let hdr = [u(0), u(8), u(16), u(24)];
    let mut chunks = Vec::new();
    let mut o = 32;
    while o < bytes.len() {
        let n = u(o) as usize;
        chunks.push(bytes[o + 8..o + 8 + n].to_vec());
        o += 8 + n;
    }
    (hdr, chunks)
}

#[test]
fn format_framing_and_chunk_order() {
    // Several chunks: more than 1024 metadata blocks (a leaf per device).
    let mut p = Pool::new(32, 10_000);
    for id in 0..2500 {
        p.thin(id).write(id, [id]);
    }
    p.commit();
    let pk = p.dir.path().join("pack");
    let st = pack(&p.meta, &pk, &Report::silent()).unwrap();
    assert!(st.packed > 1024);
    let bytes = std::fs::read(&pk).unwrap();
    let (hdr, mut chunks) = split(&bytes);
    assert_eq!(hdr, [MAGIC, 3, 4096, 32 << 8]);
    assert_eq!(chunks.len() as u64, st.packed.div_ceil(1024));
    // Reversed chunk order (as 1.x's threads may write them) unpacks the same.
    chunks.reverse();
    let mut rev = bytes[..32].to_vec();
    for c in &chunks {
        rev.extend_from_slice(&(c.len() as u64).to_le_bytes());
        rev.extend_from_slice(c);
    }
    let rp = p.dir.path().join("rev");
    std::fs::write(&rp, rev).unwrap();
    let out = p.dir.path().join("out");
    unpack(&rp, &out, &Report::silent()).unwrap();
    assert!(std::fs::read(out).unwrap() == std::fs::read(&p.meta).unwrap());
}

#[test]
fn bad_pack_files_are_errors() {
    let p = pool();
    let pk = p.dir.path().join("pack");
    pack(&p.meta, &pk, &Report::silent()).unwrap();
    let good = std::fs::read(&pk).unwrap();
    let out = p.dir.path().join("out");
    let bad = p.dir.path().join("bad");
    let try_unpack = |bytes: &[u8]| {
        std::fs::write(&bad, bytes).unwrap();
        unpack(&bad, &out, &Report::silent())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(try_unpack(b"hello"), "Not a pack file");
    assert_eq!(try_unpack(&[0u8; 64]), "Not a pack file");
    let mut v = good.clone();
    v[8] = 2;
    assert!(try_unpack(&v).contains("version"));
    let mut v = good.clone();
    v[16] = 0;
    v[17] = 2;
    assert!(try_unpack(&v).contains("block size"));
    assert!(try_unpack(&good[..good.len() - 10]).contains("truncated"));
    let mut v = good.clone();
    let n = v.len();
    v[n / 2..n / 2 + 64].fill(0xEE);
    assert!(try_unpack(&v).contains("corrupt") || try_unpack(&v).contains("truncated"));
    let mut v = good.clone();
    v[24..32].copy_from_slice(&1u64.to_le_bytes());
    assert!(try_unpack(&v).contains("beyond the end"));
    // A missing input.
    assert!(pack(&p.dir.path().join("none"), &bad, &Report::silent()).is_err());
}
