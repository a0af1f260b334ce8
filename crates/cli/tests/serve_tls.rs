//! TLS (NBD_OPT_STARTTLS) with real clients: nbdinfo, nbdcopy and qemu-io
//! (x509 credentials) over TCP on 127.0.0.1 with a certificate from a test
//! CA made by openssl; with --tls-require a plain client gets nothing.

mod serve_common;

use serve_common::*;
use std::path::Path;

/// A CA (in `dir/certs/ca-cert.pem`, the layout libnbd and qemu read) and a
/// server certificate for 127.0.0.1 signed by it.
fn make_certs(dir: &Path) -> (String, String) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let ca = certs.join("ca-cert.pem").to_str().unwrap().to_string();
    run(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        &p("ca-key.pem"),
        "-out",
        &ca,
        "-subj",
        "/CN=uthin test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("server-key.pem"),
        "-out",
        &p("server.csr"),
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "openssl",
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &ca,
        "-CAkey",
        &p("ca-key.pem"),
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        &p("server-cert.pem"),
        "-extfile",
        &p("ext.cnf"),
    ]);
    (p("server-cert.pem"), p("server-key.pem"))
}

/// The TCP port from the banner's `nbds://127.0.0.1:PORT/vol0`.
fn port(s: &Served) -> u16 {
    let l = s
        .banner
        .iter()
        .find(|l| l.contains("nbdinfo nbds://127.0.0.1:"))
        .unwrap_or_else(|| panic!("{:?}", s.banner));
    let rest = &l[l.find("127.0.0.1:").unwrap() + 10..];
    rest[..rest.find('/').unwrap()].parse().unwrap()
}

#[test]
fn tls_required_with_real_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = make_certs(tmp.path());
    let s = Served::small(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-require",
    ]);
    let port = port(&s);
    let certs = tmp.path().join("certs");
    let uri = format!(
        "nbds://127.0.0.1:{port}/vol0?tls-certificates={}",
        certs.display()
    );
    let info = run(&["nbdinfo", &uri]);
    assert!(info.contains("newstyle-fixed with TLS"), "{info}");
    // qemu-io with x509 credentials.
    let creds = format!(
        "tls-creds-x509,id=tls0,dir={},endpoint=client",
        certs.display()
    );
    let img = format!("driver=nbd,host=127.0.0.1,port={port},export=vol0,tls-creds=tls0");
    let out = run(&[
        "qemu-io",
        "--object",
        &creds,
        "--image-opts",
        &img,
        "-c",
        "write -P 0x61 0 1M",
        "-c",
        "flush",
        "-c",
        "read -P 0x61 0 1M",
    ]);
    assert!(!out.contains("failed") && !out.contains("Pattern"), "{out}");
    // nbdcopy out over TLS: the bytes written above.
    let back = read_volume(&uri, s.tmp.path(), "tls");
    assert!(back[..1 << 20].iter().all(|&b| b == 0x61));
    assert!(back[1 << 20..].iter().all(|&b| b == 0));
    // Without TLS: refused (on TCP and on the unix socket alike).
    let plain = try_run(&["nbdinfo", &format!("nbd://127.0.0.1:{port}/vol0")]);
    assert!(!plain.status.success());
    let plain = try_run(&["nbdinfo", &s.uri("vol0")]);
    assert!(!plain.status.success());
    // A client that does not trust the CA gets nothing either.
    let stranger = tempfile::tempdir().unwrap();
    let (_, _) = make_certs(stranger.path());
    let bad = format!(
        "nbds://127.0.0.1:{port}/vol0?tls-certificates={}",
        stranger.path().join("certs").display()
    );
    assert!(!try_run(&["nbdinfo", &bad]).status.success());
    // The daemon still serves.
    run(&["nbdinfo", &uri]);
}

#[test]
fn tls_offered_not_required() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = make_certs(tmp.path());
    let s = Served::small(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let port = port(&s);
    let uri = format!(
        "nbds://127.0.0.1:{port}/vol0?tls-certificates={}",
        tmp.path().join("certs").display()
    );
    assert!(run(&["nbdinfo", &uri]).contains("with TLS"));
    let plain = run(&["nbdinfo", &format!("nbd://127.0.0.1:{port}/vol0")]);
    assert!(plain.contains("without TLS"), "{plain}");
}

#[test]
fn bad_tls_files_are_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let j = junk.to_str().unwrap();
    let o = std::process::Command::new(bin())
        .args([
            "serve",
            "--listen",
            "none",
            "--tls-cert",
            j,
            "--tls-key",
            j,
            "--dir",
        ])
        .arg(tmp.path().join("pool"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("junk.pem"), "{err}");
    let o = std::process::Command::new(bin())
        .args(["serve", "--tls-require", "--dir"])
        .arg(tmp.path().join("pool"))
        .output()
        .unwrap();
    assert!(!o.status.success());
}
