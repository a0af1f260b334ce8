#!/usr/bin/env bash
# Benchmark (not a test): uthin's thin_check, thin_dump, thin_restore and
# thin_ls against Debian's thin-provisioning-tools 0.9.0 and 1.1.0 (the 1.x
# line; extracted by scripts/install-test-deps.sh into ~/.cache/uthin-tpt1),
# in the same run, on generated metadata of about 33 million mappings (32
# devices of 1M mapped blocks in runs, 8 snapshots sharing 90% of their
# origin).  Prints wall time and peak resident memory of the three side by
# side, uthin's speed-up over 1.1.0 (target: 2x, as over 1.3.3) and over
# 0.9.0 (the issue's multiples of 0.9.0), and checks restore's memory
# (target: at most 64 MiB resident).
#
# Rows: check (thin_check -q), dump (XML to a file), restore (Debian's
# 0.9.0 XML, which all three read, onto a file of the metadata's size),
# ls (default fields: uthin reads MAPPED from the device details, 1.x walks
# every mapping), ls-walk (-o DEV,EXCLUSIVE,SHARED: every tool walks).
#
# Usage: scripts/bench-tools.sh [DEVICES BLOCKS_PER_DEVICE]
# Knobs: BENCH_DIR (default ./bench-results/tools), KEEP=1 keeps the images,
# CARGO_TARGET_DIR (where uthin is built), UTHIN_TPT1_DIR (1.1.0's files).
set -euo pipefail
cd "$(dirname "$0")/.."
devices=${1:-32}
per_dev=${2:-1048576}
dir=${BENCH_DIR:-./bench-results/tools}
target=${CARGO_TARGET_DIR:-$PWD/target}
tpt1=${UTHIN_TPT1_DIR:-$HOME/.cache/uthin-tpt1}/usr/sbin
mkdir -p "$dir/bin"
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
command -v bc >/dev/null || { echo "needs bc (apt-get install bc)" >&2; exit 1; }
[ -x /usr/sbin/thin_check ] || { echo "needs Debian's thin-provisioning-tools 0.9.0: run scripts/install-test-deps.sh" >&2; exit 1; }
[ -x "$tpt1/pdata_tools" ] || { echo "needs thin-provisioning-tools 1.1.0 in $tpt1: run scripts/install-test-deps.sh" >&2; exit 1; }
# (Two builds: with --example alone cargo would build no binary.)
cargo build --release -q -p uthin --bin uthin
cargo build --release -q -p uthin-thin --example gen_bench_metadata
for t in thin_check thin_dump thin_restore thin_ls; do
  ln -sf "$target/release/uthin" "$dir/bin/$t"
done
meta="$dir/bench-$devices-$per_dev.meta"
if [ ! -s "$meta" ]; then
  # Generated under another name: an interrupted run leaves no image to reuse.
  "$target/release/examples/gen_bench_metadata" "$meta.partial" "$devices" "$per_dev"
  mv "$meta.partial" "$meta"
fi
size=$(stat -c %s "$meta")

# run CMD...: prints "seconds peak_kib" (the command's output discarded;
# time's report goes to a file, -o, so it is not discarded with it); a
# failing command is reported on stderr.  runsh 'SHELL COMMAND' for
# commands that redirect their own output.  Dirty pages of the previous run
# are written back first, so no run pays for another's writeback.
run() {
  local rc=0
  sync
  /usr/bin/time -f '%e %M' -o "$dir/time.out" "$@" >/dev/null 2>&1 || rc=$?
  [ "$rc" = 0 ] || echo "bench-tools: exit $rc: $*" >&2
  tail -1 "$dir/time.out"
}
runsh() {
  run sh -c "$1"
}

# The three implementations: label -> directory of thin_* programs.
labels=(deb tpt1 ut)
declare -A bin=([deb]=/usr/sbin [tpt1]="$tpt1" [ut]="$dir/bin")
declare -A res
# Warm the page cache once so every tool reads from memory.
cat "$meta" >/dev/null
for l in "${labels[@]}"; do
  b=${bin[$l]}
  res[$l,check]=$(run "$b/thin_check" -q "$meta")
  res[$l,dump]=$(runsh "'$b/thin_dump' '$meta' > '$dir/$l.xml'")
done
for l in "${labels[@]}"; do
  out="$dir/restored-$l.meta"
  rm -f "$out"
  truncate -s "$size" "$out"
  res[$l,restore]=$(run "${bin[$l]}/thin_restore" -q -i "$dir/deb.xml" -o "$out")
done
for l in "${labels[@]}"; do
  res[$l,ls]=$(run "${bin[$l]}/thin_ls" "$meta")
  res[$l,ls-walk]=$(run "${bin[$l]}/thin_ls" -o DEV,EXCLUSIVE,SHARED "$meta")
done

mappings=$(grep -c 'mapping' "$dir/deb.xml" || true)
echo
echo "tools benchmark: $devices devices x $per_dev blocks + snapshots; metadata $((size >> 20)) MiB; $mappings mapping lines in 0.9.0's dump"
printf '%-8s %9s %8s %9s %8s %9s %8s %10s %8s %10s %8s\n' tool \
  "0.9.0 s" "MiB" "1.1.0 s" "MiB" "uthin s" "MiB" "vs 1.1.0" target "vs 0.9.0" target
declare -A target=([check]=10 [dump]=2.5 [restore]=27 [ls]=3.4 [ls-walk]=3.4)
for t in check dump restore ls ls-walk; do
  read -r ds dk <<<"${res[deb,$t]}"
  read -r ts tk <<<"${res[tpt1,$t]}"
  read -r us uk <<<"${res[ut,$t]}"
  printf '%-8s %9s %8d %9s %8d %9s %8d %9.1fx %7sx %9.1fx %7sx\n' "$t" \
    "$ds" $((dk / 1024)) "$ts" $((tk / 1024)) "$us" $((uk / 1024)) \
    "$(echo "$ts / ($us + 0.0001)" | bc -l)" 2 \
    "$(echo "$ds / ($us + 0.0001)" | bc -l)" "${target[$t]}"
done
echo "(targets: 2x thin-provisioning-tools 1.3.3, measured here against 1.1.0; the issue's multiples of 0.9.0)"
read -r _ uk <<<"${res[ut,restore]}"
if [ $((uk / 1024)) -le 64 ]; then
  echo "uthin's restore peak RSS: $((uk / 1024)) MiB (target at most 64 MiB: met)"
else
  echo "uthin's restore peak RSS: $((uk / 1024)) MiB (target at most 64 MiB: MISSED)"
fi
# The results must be right, not just fast.
if cmp -s "$dir/ut.xml" "$dir/tpt1.xml"; then
  echo "uthin's dump is byte-identical to 1.1.0's: yes"
else
  echo "uthin's dump is byte-identical to 1.1.0's: NO"
fi
for c in /usr/sbin "$tpt1"; do
  if "$c/thin_check" -q "$dir/restored-ut.meta"; then
    echo "$c/thin_check accepts uthin's restore: yes"
  else
    echo "$c/thin_check accepts uthin's restore: NO"
  fi
done
[ "${KEEP:-0}" = 1 ] || rm -f "$dir"/restored-*.meta "$dir"/*.xml "$dir/time.out"
