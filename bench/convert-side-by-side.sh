#!/usr/bin/env bash
# Builds qed (Release) and runs bench/convert_side_by_side.py: qemu-img convert vs qed convert on the same files,
# interleaved, wall time and peak memory (from /usr/bin/time -v). Usage: bench/convert-side-by-side.sh [--reps N] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-img >/dev/null || { echo "qemu-img is missing: apt-get install qemu-utils" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install time" >&2; exit 1; }
# The binary as shipped (run.sh).
# Native AOT when the machine has a C toolchain (start-up 20-25 ms instead of 90: it weighs on every short command and
# on convert); otherwise ReadyToRun, the same code JIT-compiled in tiers.
rm -rf artifacts/qed
dotnet publish src/Qed.Cli -c Release -r linux-x64 -p:PublishAot=true -o artifacts/qed -v q -nologo >/dev/null 2>&1 ||
  dotnet publish src/Qed.Cli -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true -o artifacts/qed -v q -nologo >/dev/null
QED_BIN=${QED_BIN:-$PWD/artifacts/qed/qed} exec python3 bench/convert_side_by_side.py "$@"
