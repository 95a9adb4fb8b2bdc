#!/usr/bin/env bash
# Side-by-side NBD throughput: the same raw image served by nbdkit's file plugin and by `qed serve`, and the same
# QED image served by qemu-nbd and by `qed serve`. fio (ioengine=nbd) runs 4 KiB random reads at QD32 and 1 MiB
# sequential reads at QD8 against each, interleaved, ROUNDS times; the table shows medians and qed's ratios.
# Targets (issue 5): raw >= 1.0x nbdkit, QED >= 2.0x qemu-nbd.
# Env: SIZE (default 1G), RUNTIME seconds per run (10), ROUNDS (3), WORKDIR (a temp dir).
set -euo pipefail
SIZE=${SIZE:-1G}
RUNTIME=${RUNTIME:-10}
ROUNDS=${ROUNDS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for tool in fio nbdkit qemu-nbd qemu-img python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: sudo apt-get install -y fio nbdkit qemu-utils python3" >&2; exit 1; }
done
WORK=${WORKDIR:-$(mktemp -d /tmp/nbd-bench.XXXXXX)}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -z "${WORKDIR:-}" ] && rm -rf "$WORK"; }
trap cleanup EXIT

"$ROOT/publish.sh"   # the native build users run
QED="$ROOT/artifacts/qed/qed"

echo "preparing $SIZE images in $WORK" >&2
head -c "$SIZE" /dev/urandom > "$WORK/disk.raw"
qemu-img convert -f raw -O qed "$WORK/disk.raw" "$WORK/disk.qed"
cat "$WORK/disk.raw" "$WORK/disk.qed" > /dev/null   # into the page cache, as in the reference measurement

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
nbdkit -f -i 127.0.0.1 -p 10811 -e disk file file="$WORK/disk.raw" & PIDS+=($!)
$QED serve -f raw -x disk -p 10812 -e 8 "$WORK/disk.raw" >/dev/null & PIDS+=($!)
qemu-nbd -f qed -x disk -b 127.0.0.1 -p 10813 -t -e 8 "$WORK/disk.qed" & PIDS+=($!)
# A second copy of the QED image so the two servers never share a file.
cp "$WORK/disk.qed" "$WORK/disk2.qed"
$QED serve -f qed -x disk -p 10814 -e 8 "$WORK/disk2.qed" >/dev/null & PIDS+=($!)
for p in 10811 10812 10813 10814; do wait_port $p; done

declare -A NAME=([10811]="nbdkit-file(raw)" [10812]="qed-serve(raw)" [10813]="qemu-nbd(qed)" [10814]="qed-serve(qed)")
: > "$WORK/results.txt"
for round in $(seq "$ROUNDS"); do
  for wl in rr sr; do
    for port in 10811 10812 10813 10814; do
      if [ $wl = rr ]; then args=(--rw=randread --bs=4k --iodepth=32); else args=(--rw=read --bs=1M --iodepth=8); fi
      fio --name=$wl --ioengine=nbd --uri=nbd://127.0.0.1:$port/disk "${args[@]}" --runtime="$RUNTIME" --time_based \
          --output-format=json --output="$WORK/out.json" >/dev/null
      python3 - "$WORK/out.json" "$round" "$wl" "${NAME[$port]}" >> "$WORK/results.txt" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["read"]
print(sys.argv[2], sys.argv[3], sys.argv[4], j["iops"], j["bw_bytes"] / 1048576)
PY
      echo "round $round $wl ${NAME[$port]}: $(tail -1 "$WORK/results.txt" | cut -d' ' -f4-)" >&2
    done
  done
done

python3 - "$WORK/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for wl, key, idx in (("rr", "IOPS", 3), ("sr", "MiB/s", 4)):
    for name in dict.fromkeys(r[2] for r in rows):
        vals = [float(r[idx]) for r in rows if r[1] == wl and r[2] == name]
        med[(wl, name)] = (statistics.median(vals), min(vals), max(vals))
print(f"{'server':18} {'randread 4k QD32 IOPS median (min-max)':40} {'seqread 1M QD8 MiB/s median (min-max)':40}")
for name in dict.fromkeys(r[2] for r in rows):
    a, b = med[("rr", name)], med[("sr", name)]
    print(f"{name:18} {a[0]:>10.0f} ({a[1]:.0f}-{a[2]:.0f}){'':14} {b[0]:>10.0f} ({b[1]:.0f}-{b[2]:.0f})")
print()
for ours, theirs, target in (("qed-serve(raw)", "nbdkit-file(raw)", 1.0), ("qed-serve(qed)", "qemu-nbd(qed)", 2.0)):
    r1 = med[("rr", ours)][0] / med[("rr", theirs)][0]
    r2 = med[("sr", ours)][0] / med[("sr", theirs)][0]
    print(f"{ours} / {theirs}: randread {r1:.2f}x, seqread {r2:.2f}x (target >= {target:.1f}x)")
PY
