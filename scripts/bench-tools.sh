#!/usr/bin/env bash
# Benchmark (not a test): uthin's thin_check, thin_dump, thin_restore and
# thin_ls against Debian's thin-provisioning-tools 0.9.0, in the same run, on
# generated metadata of about 33 million mappings (32 devices of 1M mapped
# blocks in runs, 8 snapshots sharing 90% of their origin).  Prints wall time
# and peak resident memory side by side, with the speed-up and the target.
#
# Usage: scripts/bench-tools.sh [DEVICES BLOCKS_PER_DEVICE]
# Knobs: BENCH_DIR (default ./bench-results/tools), KEEP=1 keeps the images.
set -euo pipefail
cd "$(dirname "$0")/.."
devices=${1:-32}
per_dev=${2:-1048576}
dir=${BENCH_DIR:-./bench-results/tools}
mkdir -p "$dir/bin"
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
cargo build --release -q -p uthin -p uthin-thin --example gen_bench_metadata
for t in thin_check thin_dump thin_restore thin_ls; do
  ln -sf "$PWD/target/release/uthin" "$dir/bin/$t"
done
meta="$dir/bench-$devices-$per_dev.meta"
if [ ! -s "$meta" ]; then
  ./target/release/examples/gen_bench_metadata "$meta" "$devices" "$per_dev"
fi
size=$(stat -c %s "$meta")

# run LABEL CMD... : prints "seconds peak_kib", output to /dev/null unless redirected by the command.
run() {
  local out
  out=$( { /usr/bin/time -f '%e %M' "$@" >/dev/null 2>/dev/null; } 2>&1 | tail -1 )
  echo "$out"
}
runsh() {
  local out
  out=$( { /usr/bin/time -f '%e %M' sh -c "$1" >/dev/null 2>/dev/null; } 2>&1 | tail -1 )
  echo "$out"
}

declare -A deb ut
# Warm the page cache once so both sides read from memory.
cat "$meta" >/dev/null
deb[check]=$(run /usr/sbin/thin_check -q "$meta")
ut[check]=$(run "$dir/bin/thin_check" -q "$meta")
deb[dump]=$(runsh "/usr/sbin/thin_dump '$meta' > '$dir/debian.xml'")
ut[dump]=$(runsh "'$dir/bin/thin_dump' '$meta' > '$dir/uthin.xml'")
truncate -s "$size" "$dir/restored-debian.meta" "$dir/restored-uthin.meta"
deb[restore]=$(run /usr/sbin/thin_restore -q -i "$dir/debian.xml" -o "$dir/restored-debian.meta")
ut[restore]=$(run "$dir/bin/thin_restore" -q -i "$dir/debian.xml" -o "$dir/restored-uthin.meta")
deb[ls]=$(run /usr/sbin/thin_ls "$meta")
ut[ls]=$(run "$dir/bin/thin_ls" "$meta")

mappings=$(grep -c 'mapping' "$dir/debian.xml" || true)
echo
echo "tools benchmark: $devices devices x $per_dev blocks + snapshots; metadata $((size >> 20)) MiB; $mappings mapping lines in the dump"
printf '%-8s %12s %12s %12s %12s %9s %9s\n' tool "0.9.0 s" "0.9.0 MiB" "uthin s" "uthin MiB" speedup target
declare -A target=([check]=10 [dump]=2.5 [restore]=27 [ls]=3.4)
for t in check dump restore ls; do
  read -r ds dk <<<"${deb[$t]}"
  read -r us uk <<<"${ut[$t]}"
  printf '%-8s %12s %12d %12s %12d %8.1fx %8sx\n' "$t" "$ds" $((dk / 1024)) "$us" $((uk / 1024)) \
    "$(echo "$ds / ($us + 0.0001)" | bc -l)" "${target[$t]}"
done
echo "(target: 2x thin-provisioning-tools 1.3.3, i.e. these multiples of 0.9.0; restore also at most 64 MiB resident)"
/usr/sbin/thin_check -q "$dir/restored-uthin.meta" && echo "Debian thin_check accepts uthin's restore: yes"
[ "${KEEP:-0}" = 1 ] || rm -f "$dir"/restored-*.meta "$dir"/*.xml
