#!/usr/bin/env bash
# Installs what the tests need (QEMU's tools, libnbd's tools, fio) when missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")"
need=()
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v nbdinfo >/dev/null || need+=(libnbd-bin)
command -v fio >/dev/null || need+=(fio)
command -v nbdkit >/dev/null || need+=(nbdkit)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
dotnet build Qed.slnx -c Release -v q -nologo
# The CLI tests run the native build users get; the library tests use the JIT build.
./publish.sh
QED_EXE=$PWD/artifacts/qed/qed dotnet test Qed.slnx -c Release --no-build -v q -nologo "$@"
