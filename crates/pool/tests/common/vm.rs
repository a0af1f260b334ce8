//! The real Linux dm-thin under QEMU, through `../shared/tools/dmthin-vm.sh`
//! (see dmthin-vm.md there).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Path of `../shared/tools/dmthin-vm.sh` beside the checkout.
pub fn dmthin_vm_script() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/dmthin-vm.sh");
    assert!(
        p.exists(),
        "{} not found: ../shared must sit beside the checkout",
        p.display()
    );
    p
}

/// Boots the kernel with `meta` and `data` attached (plus `extras` as
/// `$EXTRA1`...), runs `snippet` in the guest and returns the console
/// output; panics with it if the snippet fails.
pub fn run_dmthin_vm(meta: &Path, data: &Path, snippet: &str, extras: &[&Path]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let sn = dir.path().join("snippet.sh");
    std::fs::write(&sn, snippet).unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(dmthin_vm_script()).arg(meta).arg(data).arg(&sn);
    for e in extras {
        cmd.arg(e);
    }
    let out = cmd.output().expect("run dmthin-vm.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "dmthin-vm.sh failed ({:?}); run scripts/install-test-deps.sh if qemu or the kernel are missing\n{text}",
        out.status
    );
    text
}
