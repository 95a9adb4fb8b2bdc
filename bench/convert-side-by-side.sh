#!/usr/bin/env bash
# Builds qed (native, as shipped) and runs bench/convert_side_by_side.py: qemu-img convert vs qed convert on the same files,
# interleaved, wall time and peak memory (from /usr/bin/time -v). Usage: bench/convert-side-by-side.sh [--reps N] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-img >/dev/null || { echo "qemu-img is missing: apt-get install qemu-utils" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install time" >&2; exit 1; }
./publish.sh   # the native binary, as run.sh ships it
QED_BIN=${QED_BIN:-$PWD/artifacts/qed/qed} exec python3 bench/convert_side_by_side.py "$@"
