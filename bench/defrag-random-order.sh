#!/usr/bin/env bash
# Defragmenting an image whose clusters were written in random order: 256 MiB (SIZE_MB) of 64 KiB writes in a shuffled
# order by qemu-io, plus a variant where a tenth of the clusters were then discarded by qed (leaked space). Prints, before
# and after `qed defrag`: discontiguities when reading in guest order (from qemu-img map --output=json offsets), file
# size against referenced size, and the time taken; then qemu-img check and compare against a raw copy.
# Usage: bench/defrag-random-order.sh   (env SIZE_MB, WORKDIR)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MB=${SIZE_MB:-256}
for tool in qemu-img qemu-io python3; do command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install qemu-utils python3" >&2; exit 1; }; done
WORK=${WORKDIR:-$(mktemp -d /tmp/defrag-bench.XXXXXX)}
[ -z "${WORKDIR:-}" ] && trap 'rm -rf "$WORK"' EXIT
dotnet build -c Release "$ROOT/src/Qed.Cli" -v q -nologo >/dev/null
QED="dotnet $ROOT/src/Qed.Cli/bin/Release/net10.0/qed.dll"
cd "$WORK"

layout() { # prints: discontiguities, extents, referenced bytes (this layer), file bytes
  qemu-img map --output=json "$1" | python3 -c '
import json, os, sys
m = [e for e in json.load(sys.stdin) if e["data"] and "offset" in e and e["depth"] == 0]
breaks = sum(1 for a, b in zip(m, m[1:]) if b["offset"] != a["offset"] + a["length"])
data = sum(e["length"] for e in m)
print(f"discontiguities {breaks:5d}  extents {len(m):5d}  data {data:>10d} B  file {os.path.getsize(sys.argv[1]):>10d} B")' "$1"
}

run() { # name
  echo "== $1"
  qemu-img convert -f qed -O raw "$1.qed" "$1.raw"
  echo -n "before: "; layout "$1.qed"
  local start end
  start=$(date +%s.%N); $QED defrag "$1.qed" >/dev/null; end=$(date +%s.%N)
  echo -n "after:  "; layout "$1.qed"
  python3 -c "print(f'defrag took {$end - $start:.2f} s')"
  qemu-img check "$1.qed" | head -1
  qemu-img compare -f qed -F raw "$1.qed" "$1.raw"
}

clusters=$((SIZE_MB * 16))
python3 -c "
import random
r = random.Random(1); l = list(range($clusters)); r.shuffle(l)
for c in l: print(f'write -P {c % 251 + 1} {c * 65536} 64k')" > writes
qemu-img create -f qed shuffled.qed "${SIZE_MB}M" >/dev/null
qemu-io -f qed shuffled.qed < writes >/dev/null
cp shuffled.qed leaky.qed
python3 -c "
import random
r = random.Random(2)
for c in r.sample(range($clusters), $clusters // 10): print(f'discard {c * 65536} 64k')" > discards
args=(); while read -r line; do args+=(-c "$line"); done < discards
$QED io "${args[@]}" leaky.qed >/dev/null
run shuffled
run leaky
