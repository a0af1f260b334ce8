//! thin_metadata_pack / thin_metadata_unpack command lines: -i/--input,
//! -o/--output, -f/--force, the overwrite question, the multi-call names, a
//! byte-identical round trip, and bad inputs.

mod ls_fixtures;

use ls_fixtures::{bad_inputs, fails, pool, tool, uthin};

#[test]
fn roundtrip_by_name_and_subcommand() {
    let (dir, meta, _md) = pool();
    let pk = dir.path().join("meta.pack");
    let out = dir.path().join("meta.out");
    tool(dir.path(), "thin_metadata_pack")
        .arg("-i")
        .arg(&meta)
        .arg("-o")
        .arg(&pk)
        .assert()
        .success()
        .stdout("");
    tool(dir.path(), "thin_metadata_unpack")
        .arg("-i")
        .arg(&pk)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&meta).unwrap());
    let pk2 = dir.path().join("meta2.pack");
    uthin("metadata-pack")
        .arg("--input")
        .arg(&meta)
        .arg("--output")
        .arg(&pk2)
        .assert()
        .success();
    assert_eq!(std::fs::read(&pk2).unwrap(), std::fs::read(&pk).unwrap());
    let out2 = dir.path().join("meta2.out");
    uthin("metadata-unpack")
        .arg("--input")
        .arg(&pk2)
        .arg("--output")
        .arg(&out2)
        .assert()
        .success();
    assert!(std::fs::read(&out2).unwrap() == std::fs::read(&meta).unwrap());
}

#[test]
fn overwrite_question_and_force() {
    let (dir, meta, _md) = pool();
    let pk = dir.path().join("pack");
    uthin("metadata-pack")
        .arg("-i")
        .arg(&meta)
        .arg("-o")
        .arg(&pk)
        .assert()
        .success();
    // The output holds metadata: asked, "n" keeps it, "y" or -f overwrite.
    let target = dir.path().join("target");
    std::fs::copy(&meta, &target).unwrap();
    let e = fails(
        uthin("metadata-unpack")
            .arg("-i")
            .arg(&pk)
            .arg("-o")
            .arg(&target)
            .write_stdin("n\n"),
        64,
    );
    // The question and the answer on stderr, as 1.x.
    assert_eq!(
        e,
        "The destination appears to already contain metadata, are you sure? [y/n]: \
         Output file not overwritten\n"
    );
    uthin("metadata-unpack")
        .arg("-i")
        .arg(&pk)
        .arg("-o")
        .arg(&target)
        .write_stdin("y\n")
        .assert()
        .success()
        .stdout("")
        .stderr(predicates::str::contains(
            "appears to already contain metadata",
        ));
    uthin("metadata-unpack")
        .args(["-f", "-i"])
        .arg(&pk)
        .arg("-o")
        .arg(&target)
        .assert()
        .success()
        .stdout("");
    let e = fails(
        uthin("metadata-pack")
            .arg("-i")
            .arg(&meta)
            .arg("-o")
            .arg(&target)
            .write_stdin(""),
        64,
    );
    assert_eq!(
        e,
        "The destination appears to already contain metadata, are you sure? [y/n]: \
         Output file not overwritten\n"
    );
    uthin("metadata-pack")
        .args(["--force", "-i"])
        .arg(&meta)
        .arg("-o")
        .arg(&target)
        .assert()
        .success();
}

#[test]
fn bad_inputs_and_arguments() {
    let (dir, meta, _md) = pool();
    let out = dir.path().join("out");
    for (path, msg) in bad_inputs(dir.path()) {
        if msg.contains("superblock") || msg.contains("zeroes") {
            // Like 1.x, a file without metadata packs to an empty pack.
            uthin("metadata-pack")
                .arg("-i")
                .arg(&path)
                .arg("-o")
                .arg(&out)
                .assert()
                .success();
            assert_eq!(std::fs::metadata(&out).unwrap().len(), 32);
            continue;
        }
        let e = fails(
            uthin("metadata-pack")
                .arg("-i")
                .arg(&path)
                .arg("-o")
                .arg(&out),
            64,
        );
        assert!(e.contains(msg), "{path:?}: {e}");
    }
    let xml = dir.path().join("x.xml");
    std::fs::write(&xml, format!("<superblock uuid=\"\">{}", " ".repeat(5000))).unwrap();
    let e = fails(
        uthin("metadata-pack")
            .arg("-i")
            .arg(&xml)
            .arg("-o")
            .arg(&out),
        64,
    );
    assert!(e.contains("This looks like XML"), "{e}");
    let e = fails(
        uthin("metadata-unpack")
            .arg("-i")
            .arg(&meta)
            .arg("-o")
            .arg(&out),
        64,
    );
    assert_eq!(e, "Not a pack file\n");
    let e = fails(
        uthin("metadata-unpack")
            .arg("-i")
            .arg(dir.path().join("none"))
            .arg("-o")
            .arg(&out),
        64,
    );
    assert!(e.contains("Couldn't find input file"), "{e}");
    fails(uthin("metadata-pack").arg("-i").arg(&meta), 2);
    fails(uthin("metadata-unpack").arg("-o").arg(&out), 2);
    fails(uthin("metadata-pack").arg(&meta), 2);
}
