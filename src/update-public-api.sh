#!/usr/bin/env bash
# Rewrites src/Qed.Core/PublicAPI.Unshipped.txt and src/Qed.Nbd/PublicAPI.Unshipped.txt from the public API
# analyzer's own findings (RS0016, "symbol is not part of the declared public API"), so the files list exactly the
# public surface the code declares. Run it after changing the public API on purpose, then review the diff: the diff
# is the change of surface. Nothing has shipped yet (PublicAPI.Shipped.txt is empty); at a release, move the
# Unshipped lines to Shipped.
set -euo pipefail
cd "$(dirname "$0")/.."
for project in Qed.Core Qed.Nbd; do
    file="src/$project/PublicAPI.Unshipped.txt"
    printf '#nullable enable\n' > "$file"
    log=$(dotnet build "src/$project" -c Release -nologo -v q -p:TreatWarningsAsErrors=false -p:WarningsAsErrors= 2>&1 || true)
    # Only this project's own findings: a referenced project's were settled on its own turn.
    printf '%s\n' "$log" | grep -F "[$PWD/src/$project/$project.csproj]" | grep -oP "RS0016: Symbol '\K.*(?=' is not part of the declared public API)" \
        | LC_ALL=C sort -u >> "$file" || true
    echo "$file: $(($(wc -l < "$file") - 1)) public symbols"
done
# The build the analyzer now accepts.
dotnet build src/Qed.Nbd -c Release -nologo -v q
