#!/usr/bin/env bash
# The main job: builds qed (Release, Native AOT, or ReadyToRun without a C toolchain) into artifacts/qed and runs it on a sample image it makes itself:
# create, write, inspect, check, convert, compare. Nothing outside a temporary folder is touched.
set -euo pipefail
cd "$(dirname "$0")"
# Native AOT when the machine has a C toolchain (start-up 20-25 ms instead of 90: it weighs on every short command and
# on convert); otherwise ReadyToRun, the same code JIT-compiled in tiers.
rm -rf artifacts/qed
dotnet publish src/Qed.Cli -c Release -r linux-x64 -p:PublishAot=true -o artifacts/qed -v q -nologo >/dev/null 2>&1 ||
  dotnet publish src/Qed.Cli -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true -o artifacts/qed -v q -nologo >/dev/null
qed=$PWD/artifacts/qed/qed
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
step() { printf '\n$ %s\n' "$*"; "$@"; }

step "$qed" create -f qed disk.qed 1G
step "$qed" io -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 300M 64k' -c 'write -z 512M 128M' -c flush disk.qed
step "$qed" info disk.qed
step "$qed" map --output=json disk.qed
step "$qed" check disk.qed
step "$qed" create -f qed -b disk.qed -F qed overlay.qed
step "$qed" io -c 'write -P 0x11 64k 4k' -c 'read -P 0xab 0 64k' -c 'read -P 0x11 64k 4k' overlay.qed
step "$qed" map overlay.qed
step "$qed" convert -p -O raw overlay.qed flat.raw
step "$qed" compare overlay.qed flat.raw
step "$qed" bench -w -c 20000 -d 16 -s 4k -S 64k overlay.qed
echo
echo "Done: every command above ran against images made here."
