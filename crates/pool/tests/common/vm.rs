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
///
/// QEMU under TCG sometimes dies of an internal assertion while the guest
/// boots.  When the emulator exits before the snippet started (the disks
/// are untouched), the boot is retried, twice at most, and said so.
pub fn run_dmthin_vm(meta: &Path, data: &Path, snippet: &str, extras: &[&Path]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let sn = dir.path().join("snippet.sh");
    std::fs::write(&sn, snippet).unwrap();
    let mut attempt = 1;
    loop {
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
        let died_booting = !text.contains("---- snippet start ----")
            && text.contains("dmthin-vm: qemu exited with");
        if !out.status.success() && died_booting && attempt < 3 {
            eprintln!(
                "QEMU died before the snippet started (attempt {attempt}); booting again:\n{text}"
            );
            attempt += 1;
            continue;
        }
        assert!(
            out.status.success(),
            "dmthin-vm.sh failed ({:?}); run scripts/install-test-deps.sh if qemu or the kernel are missing\n{text}",
            out.status
        );
        return text;
    }
}
