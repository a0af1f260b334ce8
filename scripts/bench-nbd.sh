#!/usr/bin/env bash
# Benchmark (not a test): `uthin serve` against qemu-nbd (raw and qcow2) and
# nbdkit file, in one run, with ../shared/tools/bench-nbd.sh (fio's nbd
# engine over unix sockets; 4 GiB volume; 64 KiB blocks; iodepth 32; one and
# two jobs).  Prints the merged table and uthin's ratios against the bars:
# >= 0.9x nbdkit file on overwrites, reads and sequential I/O, >= 2x qemu-nbd
# qcow2 on 4k writes into fresh space.
#
# Usage: scripts/bench-nbd.sh            (about 25 minutes)
# Knobs: PEERS (default qnbd-raw-none,qnbd-qcow2-fresh,nbdkit-file),
#        WORKLOADS, RUNTIME, SIZE (see ../shared/tools/bench-nbd.md),
#        OUT (default ./bench-results/nbd-<time>), WORK (scratch on a real disk).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
bench=$here/../shared/tools/bench-nbd.sh
[ -x "$bench" ] || { echo "$bench not found: ../shared must sit beside the checkout" >&2; exit 1; }
export OUT=${OUT:-$here/bench-results/nbd-$(date +%Y%m%d-%H%M%S)}
export WORK=${WORK:-/var/tmp/uthin-bench}
export SIZE=${SIZE:-4G}
PEERS=${PEERS:-qnbd-raw-none,qnbd-qcow2-fresh,nbdkit-file}
mkdir -p "$OUT" "$WORK"

cargo build --release -q -p uthin
pool=$WORK/uthin-pool
rm -rf "$pool"
# The data file holds the whole volume plus room; 64 KiB blocks.
./target/release/uthin serve --dir "$pool" --listen none --data-size 8G --metadata-size 256M \
  --block-size 64k --first-volume vol --first-volume-size "$SIZE" >"$OUT/uthin.server.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$pool"' EXIT
for _ in $(seq 100); do [ -S "$pool/nbd.sock" ] && break; sleep 0.1; done
[ -S "$pool/nbd.sock" ] || { cat "$OUT/uthin.server.log"; exit 1; }

SERVER_PID=$pid "$bench" "nbd+unix:///vol?socket=$pool/nbd.sock" uthin
kill -TERM $pid; wait $pid || true
rm -rf "$pool"
TARGETS=$PEERS "$bench"

python3 "$here/../shared/tools/bench-nbd-summarize.py" "$OUT/summary.tsv" | tee "$OUT/table.md"
python3 - "$OUT/summary.tsv" <<'PY' | tee "$OUT/ratios.txt"
import csv, sys
rows = {}
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    rows[(r["target"], r["workload"])] = r
def val(t, w):
    r = rows.get((t, w))
    if r is None:
        return None
    return float(r["MBps"]) if w in ("fill", "sw1m", "sr1m") else float(r["iops"])
print("\nuthin against the bars (same run):")
checks = [("rw4k-fresh", "qnbd-qcow2-fresh", 2.0)] + [
    (w, "nbdkit-file", 0.9) for w in ("rw4k-j1", "rw4k-j2", "rr4k-j1", "rr4k-j2", "sw1m", "sr1m")]
for w, peer, bar in checks:
    u, p = val("uthin", w), val(peer, w)
    if u is None or p is None or p == 0:
        print(f"  {w:11s} vs {peer:17s}: missing")
        continue
    ok = "ok" if u / p >= bar else "BELOW"
    print(f"  {w:11s} vs {peer:17s}: {u:10.0f} / {p:10.0f} = {u/p:5.2f}x (bar {bar}x) {ok}")
for w in ("rw4k-fresh", "rr4k-j1", "sw1m"):
    u, p = val("uthin", w), val("qnbd-raw-none", w)
    if u and p:
        print(f"  {w:11s} vs {'qnbd-raw-none':17s}: {u/p:5.2f}x")
PY
echo "results: $OUT"
