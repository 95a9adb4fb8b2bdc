#!/usr/bin/env bash
# Installs what the tests need (QEMU's tools, libnbd's tools, fio) when missing, then runs every test: the dotnet
# tests, then QEMU's own qemu-iotests for qed with qed standing in for qemu-img and qemu-io (tests/iotests/run.sh;
# it fails only when a test listed in tests/iotests/expected-pass-*.txt fails).
set -euo pipefail
cd "$(dirname "$0")"
need=()
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v nbdinfo >/dev/null || need+=(libnbd-bin)
command -v fio >/dev/null || need+=(fio)
command -v nbdkit >/dev/null || need+=(nbdkit)
command -v openssl >/dev/null || need+=(openssl)
command -v dpkg-source >/dev/null || need+=(dpkg-dev) # unpacks QEMU's source package for its iotests
command -v python3 >/dev/null || need+=(python3)      # runs QEMU's iotests
if [ ${#need[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
dotnet build Qed.slnx -c Release -v q -nologo
# The CLI tests run the native build users get; the library tests use the JIT build.
./publish.sh
QED_EXE=$PWD/artifacts/qed/qed dotnet test Qed.slnx -c Release --no-build -v q -nologo "$@"
# Mode io-only (real qemu-img) guards qed io on its own while qed create lacks qemu-img's "Formatting" line.
tests/iotests/run.sh --qed "$PWD/artifacts/qed/qed" --mode img --mode io --mode io-only
