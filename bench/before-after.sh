#!/usr/bin/env bash
# Builds qed (native) at REV in a temporary worktree and at the working tree, then runs bench/before_after.py:
# the two builds' qed bench on the same workloads, interleaved in one run.  Usage: bench/before-after.sh REV [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/before-after.sh REV [--reps N] [--only NAME]" >&2; exit 2; }
command -v qemu-img >/dev/null || { echo "qemu-img is missing: apt-get install qemu-utils" >&2; exit 1; }
rev=$1; shift
tree=$(mktemp -d /tmp/qed-before.XXXXXX)
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true; rm -rf "$tree"' EXIT
git worktree add -q --detach "$tree" "$rev"
echo "before-after.sh: building $rev" >&2
(cd "$tree" && ./publish.sh >/dev/null)
echo "before-after.sh: building the working tree" >&2
./publish.sh >/dev/null
exec python3 bench/before_after.py "$tree/artifacts/qed/qed" artifacts/qed/qed "$@"
