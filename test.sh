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
# Windows and macOS builds of the library, the NBD server and the tool, so their native calls and the platform
# analyzers are checked here (docs/platforms.md). They go to artifacts/cross (bin and obj), leaving the Linux build's
# obj/ alone. The tool is built JIT for them: the native-AOT compiler pack for osx is not on the package mirror.
for rid in win-x64 osx-arm64; do
  for project in src/Qed.Core src/Qed.Nbd src/Qed.Cli; do
    echo "test.sh: dotnet build $project -r $rid"
    dotnet build "$project" -c Release -r "$rid" -p:PublishAot=false --artifacts-path artifacts/cross -v q -nologo
  done
done
# The CLI tests run the native build users get; the library tests use the JIT build.
./publish.sh
if [ $# -eq 0 ]; then
  # The NBD denial-of-service tests time answers (a new client served within 5 s while others misbehave): they run
  # alone first, as their collection says, not beside the other test assemblies' start-up.
  dotnet test tests/Qed.Nbd.Tests -c Release --no-build -v q -nologo --filter "FullyQualifiedName~Qed.Nbd.Tests.DenialOfServiceTests"
  QED_EXE=$PWD/artifacts/qed/qed dotnet test Qed.slnx -c Release --no-build -v q -nologo \
    --filter "FullyQualifiedName!~Qed.Nbd.Tests.DenialOfServiceTests"
else
  QED_EXE=$PWD/artifacts/qed/qed dotnet test Qed.slnx -c Release --no-build -v q -nologo "$@"
fi
# The fallbacks other hosts run, here: QED_PORTABLE_IO=1 turns every Linux-only call off (docs/platforms.md). The
# storage tests (files, locks, capabilities), the tests that kill qed mid-write and the locking interop tests must
# pass as they are. The crash harness runs over memory, so no host call is under it: it runs here with fewer
# workloads, to show the switch does not reach it; the main run above has the full count.
echo "test.sh: the storage, crash and locking tests with QED_PORTABLE_IO=1"
QED_PORTABLE_IO=1 QED_CRASH_WORKLOADS=12 dotnet test tests/Qed.Tests -c Release --no-build -v q -nologo \
  --filter "FullyQualifiedName~Qed.Tests.Storage|FullyQualifiedName~Qed.Tests.Crash|FullyQualifiedName~Qed.Tests.Defrag.DefragTests|FullyQualifiedName~CommitInterruptTests"
QED_PORTABLE_IO=1 QED_EXE=$PWD/artifacts/qed/qed dotnet test tests/Qed.Interop.Tests -c Release --no-build -v q -nologo \
  --filter "FullyQualifiedName~Qed.Interop.Tests.Locking|FullyQualifiedName~Qed.Interop.Tests.Recovery|FullyQualifiedName~CommitKillInteropTests"
# Mode io-only (real qemu-img) guards qed io on its own while qed create lacks qemu-img's "Formatting" line.
tests/iotests/run.sh --qed "$PWD/artifacts/qed/qed" --mode img --mode io --mode io-only
