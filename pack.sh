#!/usr/bin/env bash
# Packs the NuGet packages into artifacts/packages/: Qed.Core (the library), Qed.Nbd (the NBD server) and Qed.Cli (the
# qed command as a dotnet tool), each with its .snupkg symbols package. Version and metadata: src/Directory.Build.props.
# Try the tool with: dotnet tool install --tool-path /tmp/qed-tool --add-source artifacts/packages Qed.Cli
set -euo pipefail
cd "$(dirname "$0")"
out=artifacts/packages
mkdir -p "$out"
projects=(Qed.Core Qed.Nbd Qed.Cli)
for i in "${!projects[@]}"; do
  p=${projects[$i]}
  echo "[$((i + 1))/${#projects[@]}] packing $p"
  dotnet pack "src/$p" -c Release -o "$out" -v q -nologo
done
echo "packages in $out:"
ls -1 "$out"
