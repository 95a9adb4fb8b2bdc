#!/usr/bin/env bash
# Fetches QEMU's qemu-iotests once, from Debian's `qemu` source package of the same version as the installed
# qemu-utils, and prints the directory that holds them. The suite is cached outside the repository in
# ${QED_IOTESTS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qed}/qemu-iotests-<version>; a second call only prints it.
#
# apt is pointed at a private sources list (deb-src lines derived from the machine's own `deb` sources), private
# package lists and a private cache, so the system's apt configuration and state are not changed. Needs apt-get,
# dpkg-source (package dpkg-dev) and network access to the Debian mirrors the machine already uses.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${QED_IOTESTS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qed}
version=$(dpkg-query -W -f='${source:Version}' qemu-utils 2>/dev/null) ||
  { echo "fetch.sh: qemu-utils is not installed; install it first" >&2; exit 1; }
dir=$cache_root/qemu-iotests-${version//:/_}
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi

command -v dpkg-source >/dev/null || { echo "fetch.sh: dpkg-source is missing (apt-get install dpkg-dev)" >&2; exit 1; }
mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/apt/parts" "$work/src"
python3 "$here/deb-src-lines.py" >"$work/apt/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=$work/apt/parts"
  -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -o "APT::Sandbox::User=root")

echo "iotests: reading the source indexes of $(wc -l <"$work/apt/sources.list") deb-src entries" >&2
apt-get "${apt_opts[@]}" -q update >&2
echo "iotests: downloading Debian source package qemu=$version" >&2
(cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only "qemu=$version" >&2)
echo "iotests: unpacking (and applying Debian's patches)" >&2
(cd "$work/src" && dpkg-source --no-check -x qemu_*.dsc tree >&2)
# Keep only what ./check uses: the suite itself and QEMU's python package (iotests.py imports it).
mkdir -p "$work/keep/tests"
mv "$work/src/tree/tests/qemu-iotests" "$work/keep/tests/"
mv "$work/src/tree/python" "$work/keep/"
rm -rf "$dir"
mv "$work/keep" "$dir"
echo "$version" >"$dir/.complete"
echo "iotests: cached in $dir" >&2
echo "$dir"
