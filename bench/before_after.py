#!/usr/bin/env python3
"""Runs two qed builds' `qed bench` on side_by_side.py's workloads, interleaved in one run, and prints their ratio.

For a restructuring: the build before it and the build after it, on the same machine in the same run, so the figures
differ only by the change. Usage: bench/before-after.sh REV [--reps N] [--only NAME]; or directly
bench/before_after.py BEFORE_BIN AFTER_BIN [--reps N] [--only NAME].
"""
import argparse, os, re, shutil, statistics, sys, tempfile

import side_by_side as sbs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    builds = [("before", args.before), ("after", args.after)]
    work = tempfile.mkdtemp(prefix="qed-before-after-")
    times = {}
    try:
        for name, size, prefill, bench_args in sbs.WORKLOADS:
            if args.only and args.only not in name:
                continue
            for rep in range(args.reps):
                # Interleaved, and the order alternates by rep, so neither build always runs first.
                for build, binary in builds if rep % 2 == 0 else builds[::-1]:
                    for fmt in sbs.FORMATS:
                        img = os.path.join(work, f"img.{fmt}")
                        sbs.make_image(img, fmt, size, prefill, reads="-w" not in bench_args.split())
                        os.sync()
                        out = sbs.run([binary, "bench", "-f", fmt, "-t", "writeback"] + bench_args.split() + [img])
                        secs = float(re.search(r"Run completed in ([0-9.]+) seconds", out).group(1))
                        times.setdefault((name, build, fmt), []).append(secs)
                        print(f"  {name:24} rep {rep + 1} {build:6} {fmt:4} {secs:8.3f} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    print()
    print(f"Median of {args.reps} runs, seconds (lower is better); after/before is a time ratio.")
    print()
    print("| workload | before qed | after qed | after/before qed | before raw | after raw | after/before raw |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, *_ in sbs.WORKLOADS:
        if (name, "before", "qed") not in med:
            continue
        bq, aq, br, ar = (med[(name, b, f)] for b, f in [("before", "qed"), ("after", "qed"), ("before", "raw"), ("after", "raw")])
        print(f"| {name} | {bq:.3f} | {aq:.3f} | {aq / bq:.2f} | {br:.3f} | {ar:.3f} | {ar / br:.2f} |")


if __name__ == "__main__":
    main()
