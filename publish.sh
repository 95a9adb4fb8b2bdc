#!/usr/bin/env bash
# Builds the qed command as a native executable (Native AOT) into artifacts/qed/qed: what users run, what run.sh
# demonstrates and what test.sh tests. Needs the .NET SDK and a C toolchain (clang or gcc) for the native link.
set -euo pipefail
cd "$(dirname "$0")"
dotnet publish src/Qed.Cli -c Release -r linux-x64 -o artifacts/qed -v q -nologo >/dev/null
