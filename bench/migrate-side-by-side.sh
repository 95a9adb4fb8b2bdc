#!/usr/bin/env bash
# qed migrate -j 2 beside the hand-written qemu-img script it replaces, on one vault, in one run.
#
# The vault (issue 16): 100 three-layer QED chains with relative backing names in subfolders, plus standalone, dirty
# (NEED_CHECK left by a killed qemu-io writer), 4 KiB-cluster/16-cluster-table, and raw-backed (NO_PROBE) images:
# 500 images at MIGRATE_SCALE=1 (the default); MIGRATE_SCALE=0.1 makes 50. Images are made with qemu-img and qemu-io
# (one of each kind, then copied). The script side: find QED images with `qemu-img info --output=json`, order them by
# chain depth, and for each depth, 2 at a time (as -j 2): `qemu-img convert -O qcow2 [-B backing -F fmt]`, then
# `qemu-img check` and `qemu-img compare`; raw backing files copied sparsely. Wall times and their ratio are printed.
#
# Usage: bench/migrate-side-by-side.sh [DIR]   (QED_BIN: the qed to run; default the native build, made by publish.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-img >/dev/null || { echo "qemu-img is missing: apt-get install qemu-utils" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is missing: apt-get install python3" >&2; exit 1; }
if [ -z "${QED_BIN:-}" ]; then ./publish.sh; QED_BIN=$PWD/artifacts/qed/qed; fi
SCALE=${MIGRATE_SCALE:-1}
WORK=${1:-$(mktemp -d /tmp/qed-migrate-bench.XXXXXX)}
mkdir -p "$WORK"
cd "$WORK"
rm -rf vault out-qed out-script templates
n() { python3 -c "import math,sys; print(max(1, round($1 * $SCALE)))"; }
CHAINS=$(n 100); STANDALONE=$(n 80); DIRTY=$(n 40); SMALL=$(n 40); RAWBACKED=$(n 40)

# One template of each kind, made by the real tools.
mkdir -p templates/chain/sub
qemu-img create -q -f qed templates/chain/base.qed 256M
qemu-io -c 'write -q -P 0x11 0 8M' -c 'write -q -P 0x12 64M 4M' templates/chain/base.qed
qemu-img create -q -f qed -b ../base.qed -F qed templates/chain/sub/mid.qed
qemu-io -c 'write -q -P 0x21 4M 4M' -c 'write -q -z 0 1M' templates/chain/sub/mid.qed
qemu-img create -q -f qed -b mid.qed -F qed templates/chain/sub/top.qed
qemu-io -c 'write -q -P 0x31 6M 2M' templates/chain/sub/top.qed
qemu-img create -q -f qed templates/standalone.qed 256M
qemu-io -c 'write -q -P 0x41 0 12M' templates/standalone.qed
qemu-img create -q -f qed templates/dirty.qed 256M
qemu-io -c 'write -q -P 0x51 0 8M' -c 'sigraise 9' templates/dirty.qed >/dev/null 2>&1 || true
qemu-img create -q -f qed -o cluster_size=4096,table_size=16 templates/small.qed 64M
qemu-io -c 'write -q -P 0x61 0 4M' templates/small.qed
qemu-img create -q -f raw templates/base.raw 64M
qemu-io -f raw -c 'write -q -P 0x71 0 4M' templates/base.raw
qemu-img create -q -f qed -b base.raw -F raw templates/overraw.qed
qemu-io -c 'write -q -P 0x72 1M 2M' templates/overraw.qed

mkdir -p vault/chains vault/standalone vault/dirty vault/small vault/rawbacked
for i in $(seq 1 "$CHAINS"); do cp -r --sparse=always templates/chain "vault/chains/c$i"; done
for i in $(seq 1 "$STANDALONE"); do cp --sparse=always templates/standalone.qed "vault/standalone/s$i.qed"; done
for i in $(seq 1 "$DIRTY"); do cp --sparse=always templates/dirty.qed "vault/dirty/d$i.qed"; done
for i in $(seq 1 "$SMALL"); do cp --sparse=always templates/small.qed "vault/small/k$i.qed"; done
for i in $(seq 1 "$RAWBACKED"); do
    mkdir -p "vault/rawbacked/r$i"
    cp --sparse=always templates/base.raw "vault/rawbacked/r$i/base.raw"
    cp --sparse=always templates/overraw.qed "vault/rawbacked/r$i/overraw.qed"
done
IMAGES=$((CHAINS * 3 + STANDALONE + DIRTY + SMALL + RAWBACKED))
echo "vault: $IMAGES QED images ($CHAINS three-layer chains, $STANDALONE standalone, $DIRTY dirty, $SMALL 4k-cluster, $RAWBACKED raw-backed), $(du -sh vault | cut -f1) on disk"

# The hand-written script: what a user writes around qemu-img today.
cat > script.sh <<'SCRIPT'
#!/usr/bin/env bash
set -euo pipefail
SRC=$1 DST=$2
one() { # convert one layer over its converted backing file, then check and compare it
    local src=$1 rel=${1#"$SRC"/} dst
    dst="$DST/${rel%.*}.qcow2"
    mkdir -p "$(dirname "$dst")"
    local info backing bfmt
    info=$(qemu-img info --output=json -f qed "$src")
    backing=$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("backing-filename",""))' <<<"$info")
    if [ -n "$backing" ]; then
        # QED records a backing format only under NO_PROBE (raw); otherwise the backing file is probed.
        bfmt=$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("backing-filename-format",""))' <<<"$info")
        [ -n "$bfmt" ] || bfmt=$(qemu-img info --output=json "$(dirname "$src")/$backing" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])')
        if [ "$bfmt" = qed ]; then
            qemu-img convert -O qcow2 -B "${backing%.*}.qcow2" -F qcow2 "$src" "$dst"
        else
            cp --sparse=always "$(dirname "$src")/$backing" "$(dirname "$dst")/$backing"
            qemu-img convert -O qcow2 -B "$backing" -F "$bfmt" "$src" "$dst"
        fi
    else
        qemu-img convert -O qcow2 "$src" "$dst"
    fi
    qemu-img check -q "$dst"
    qemu-img compare -q "$src" "$dst"
}
export -f one; export SRC DST
# Find QED images by probing, and their depth in their chain; then run depth by depth, 2 at a time.
find "$SRC" -type f | while read -r f; do
    qemu-img info --output=json --backing-chain "$f" 2>/dev/null | python3 -c '
import json, sys
chain = json.load(sys.stdin)
if chain[0]["format"] == "qed": print(sum(1 for l in chain if l["format"] == "qed"), sys.argv[1])' "$f"
done | sort -n > "$DST.order"
for depth in $(cut -d' ' -f1 "$DST.order" | sort -un); do
    awk -v d="$depth" '$1 == d { print $2 }' "$DST.order" | xargs -P 2 -I{} bash -c 'one "$@"' _ {}
done
SCRIPT
chmod +x script.sh

sync
t0=$(date +%s.%N)
./script.sh "$WORK/vault" "$WORK/out-script"
t1=$(date +%s.%N)
sync
t2=$(date +%s.%N)
set +e
"$QED_BIN" migrate -j 2 vault out-qed
code=$?
set -e
t3=$(date +%s.%N)
[ "$code" -eq 0 ] || { echo "qed migrate exited $code" >&2; exit 1; }
script=$(python3 -c "print(f'{$t1 - $t0:.2f}')"); qed=$(python3 -c "print(f'{$t3 - $t2:.2f}')")
echo "qemu-img script: ${script} s; qed migrate -j 2: ${qed} s; qed/script = $(python3 -c "print(f'{($t3 - $t2) / ($t1 - $t0):.2f}')") ($IMAGES images, scale $SCALE)"
