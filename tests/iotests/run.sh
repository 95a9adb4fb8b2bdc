#!/usr/bin/env bash
# Runs QEMU's own qemu-iotests for the qed format with `qed` standing in for QEMU's tools.
#
#   tests/iotests/run.sh [--qed PATH] [--mode img|io|io-only|real]... [TEST...]
#
# Modes (default: img then io):
#   img   qed as qemu-img, QEMU's real qemu-io
#   io    qed as qemu-img and, through a one-line wrapper running `qed io "$@"`, as qemu-io
#   io-only  QEMU's real qemu-img, qed as qemu-io (isolates `qed io`)
#   real  QEMU's own tools (checks the harness and the suite: every test should pass)
# TEST defaults to the 41 qed tests that need no qemu-system. PATH defaults to artifacts/qed/qed.
#
# The suite is fetched once (see fetch.sh) and never modified: each mode runs in a fresh copy under
# ${QED_IOTESTS_WORK:-/tmp/qed-iotests}/<mode>, where the diffs of failed tests stay for inspection
# (<mode>/scratch/NNN.out.bad). Exits non-zero when a test listed in expected-pass-<mode>.txt fails (or is
# not run); other failures are reported but do not fail the run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
qed=$repo/artifacts/qed/qed
modes=()
tests=()
while [ $# -gt 0 ]; do
  case $1 in
    --qed) qed=$2; shift 2 ;;
    --mode) modes+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option '$1'" >&2; exit 2 ;;
    *) tests+=("$1"); shift ;;
  esac
done
[ ${#modes[@]} -gt 0 ] || modes=(img io)
[ ${#tests[@]} -gt 0 ] || read -r -a tests <"$here/tests.txt"
for m in "${modes[@]}"; do
  case $m in img|io|io-only|real) ;; *) echo "run.sh: unknown mode '$m' (img, io, io-only or real)" >&2; exit 2 ;; esac
done
if [[ " ${modes[*]} " != " real " ]]; then
  [ -x "$qed" ] || { echo "run.sh: no qed executable at '$qed' (run ./publish.sh or pass --qed)" >&2; exit 2; }
  qed=$(cd "$(dirname "$qed")" && pwd)/$(basename "$qed")
fi
for tool in qemu-img qemu-io qemu-nbd python3; do
  command -v $tool >/dev/null || { echo "run.sh: '$tool' is missing (qemu-utils, python3)" >&2; exit 2; }
done

suite=$("$here/fetch.sh")
work_root=${QED_IOTESTS_WORK:-/tmp/qed-iotests}
status=0
summary=()
for mode in "${modes[@]}"; do
  work=$work_root/$mode
  rm -rf "$work"
  mkdir -p "$work"
  cp -a "$suite/." "$work/"
  # qed, as qemu-img, starts its errors with the name it was run by: a link named qemu-img makes them "qemu-img: ...".
  mkdir -p "$work/bin"
  ln -s "$qed" "$work/bin/qemu-img"
  case $mode in
    real) img=$(command -v qemu-img); io=$(command -v qemu-io) ;;
    img) img=$work/bin/qemu-img; io=$(command -v qemu-io) ;;
    io|io-only)
      img=$work/bin/qemu-img; [ "$mode" = io-only ] && img=$(command -v qemu-img)
      io=$work/qed-io
      printf '#!/bin/sh\nexec %q io "$@"\n' "$qed" >"$io"
      chmod +x "$io" ;;
  esac
  echo "== iotests, mode $mode: qemu-img=$img qemu-io=$io (${#tests[@]} tests)"
  start=$SECONDS
  (cd "$work/tests/qemu-iotests" &&
    QEMU_PROG=/bin/true QSD_PROG=/bin/true QEMU_IMG_PROG=$img QEMU_IO_PROG=$io \
      QEMU_NBD_PROG=$(command -v qemu-nbd) TEST_DIR=$work/scratch SOCK_DIR=$work/sock \
      python3 ./check -tap -qed "${tests[@]}" >"$work/check.tap" 2>&1) || true
  declare -A result=()
  # TAP lines: "ok qed 001", "not ok qed 001", "ok qed 001 # SKIP reason".
  while read -r line; do
    if [[ $line =~ ^(not\ )?ok\ qed\ ([^ ]+)(\ \#\ SKIP)? ]]; then
      if [ -n "${BASH_REMATCH[3]}" ]; then result[${BASH_REMATCH[2]}]="not run"
      elif [ -n "${BASH_REMATCH[1]}" ]; then result[${BASH_REMATCH[2]}]=fail
      else result[${BASH_REMATCH[2]}]=pass; fi
    fi
  done <"$work/check.tap"
  expected=()
  [ -f "$here/expected-pass-$mode.txt" ] && mapfile -t expected < <(grep -v '^#' "$here/expected-pass-$mode.txt" | tr -s ' \t' '\n\n' | grep .)
  pass=0 fail=0 regress=()
  for t in "${tests[@]}"; do
    r=${result[$t]:-"not run"}
    note=
    if [[ " ${expected[*]} " == *" $t "* && $r != pass ]]; then regress+=("$t"); note="  (expected to pass)"; fi
    if [ "$r" = pass ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
    if [ "$r" = fail ] && [ -f "$work/scratch/$t.out.bad" ]; then note="$note  diff: $work/scratch/$t.out.bad"; fi
    printf '%s %-8s%s\n' "$t" "$r" "$note"
  done
  unset result
  line="mode $mode: $pass passed, $fail failed of ${#tests[@]} ($((SECONDS - start))s)"
  if [ ${#regress[@]} -gt 0 ]; then
    line="$line; expected to pass but did not: ${regress[*]}"
    status=1
  fi
  echo "$line"
  summary+=("$line")
done
echo "== iotests summary"
printf '%s\n' "${summary[@]}"
exit $status
