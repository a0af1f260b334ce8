#!/usr/bin/env bash
# Installs what uthin's tests drive: Debian's thin-provisioning-tools (the
# metadata oracles), libnbd-bin, fio, qemu-utils, nbdkit, and the kernel VM
# (qemu-system-x86 plus a Debian kernel, via ../shared/tools/dmthin-vm.sh --setup).
# Idempotent; needs root (apt-get).  Debian 12.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vm="$here/../../shared/tools/dmthin-vm.sh"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive

need=()
for t in thin_check:thin-provisioning-tools nbdinfo:libnbd-bin fio:fio qemu-img:qemu-utils \
         qemu-io:qemu-utils nbdkit:nbdkit openssl:openssl setsid:util-linux; do
  command -v "${t%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${t%%:*}" ] || need+=("${t##*:}")
done

# A qemu-utils from bookworm-backports (as on these machines) conflicts with
# bookworm's qemu-system-x86: take qemu-system from the same suite.
qsuite=""
if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q bpo12; then
  qsuite=bookworm-backports
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo 'deb http://deb.debian.org/debian bookworm-backports main' |
      $SUDO tee /etc/apt/sources.list.d/uthin-backports.list >/dev/null
  fi
fi
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_qemu=1

if [ ${#need[@]} -gt 0 ] || [ -n "${need_qemu:-}" ]; then
  $SUDO apt-get update -qq
  if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [ -n "${need_qemu:-}" ]; then
    if [ -n "$qsuite" ]; then
      $SUDO apt-get install -y -qq -t "$qsuite" qemu-system-x86 >/dev/null
    else
      $SUDO apt-get install -y -qq qemu-system-x86 >/dev/null
    fi
  fi
fi

# >>> thin-provisioning-tools 1.x oracle (crates/tools/tests/oracle_1x.rs) >>>
# Debian sid's thin-provisioning-tools 1.1.0 (the Rust line), extracted -- not
# installed, which would replace bookworm's 0.9.0 that the tests also drive --
# into ~/.cache/uthin-tpt1, so ~/.cache/uthin-tpt1/usr/sbin/pdata_tools runs
# (multi-call: `pdata_tools thin_dump ...`).  Downloaded once; its runtime
# needs (libc6 >= 2.34, libgcc-s1, libudev1) are all in Debian 12.
tpt1_dir="${UTHIN_TPT1_DIR:-$HOME/.cache/uthin-tpt1}"
tpt1_deb="thin-provisioning-tools_1.1.0-5.1_amd64.deb"
tpt1_url="http://deb.debian.org/debian/pool/main/t/thin-provisioning-tools/$tpt1_deb"
if ! "$tpt1_dir/usr/sbin/pdata_tools" thin_dump --version >/dev/null 2>&1; then
  mkdir -p "$tpt1_dir"
  if [ ! -s "$tpt1_dir/$tpt1_deb" ]; then
    curl -fsSL --retry 3 -o "$tpt1_dir/$tpt1_deb.part" "$tpt1_url"
    mv "$tpt1_dir/$tpt1_deb.part" "$tpt1_dir/$tpt1_deb"
  fi
  dpkg-deb -x "$tpt1_dir/$tpt1_deb" "$tpt1_dir"
  "$tpt1_dir/usr/sbin/pdata_tools" thin_dump --version >/dev/null
fi
# <<< thin-provisioning-tools 1.x oracle <<<

# The kernel for the dm-thin interop tests (downloads once into ~/.cache).
if [ -x "$vm" ]; then
  "$vm" --setup
else
  echo "install-test-deps: $vm not found (../shared must sit beside the checkout)" >&2
  exit 1
fi
echo "install-test-deps: ok"
