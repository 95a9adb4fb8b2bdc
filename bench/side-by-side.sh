#!/usr/bin/env bash
# Builds qed (native, as users get it) and runs bench/side_by_side.py: qemu-img bench vs qed bench, same workloads, one run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-img >/dev/null || { echo "qemu-img is missing: apt-get install qemu-utils" >&2; exit 1; }
./publish.sh
exec python3 bench/side_by_side.py "$@"
