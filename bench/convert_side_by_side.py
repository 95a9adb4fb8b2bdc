#!/usr/bin/env python3
"""qemu-img convert and qed convert on the same source files, interleaved, median of REPS runs each.

The source is a 4 GiB image holding 1 GiB of random data (1 MiB every 4 MiB); the QED source is made from the raw one
by qemu-img. Each run writes a fresh target. Peak memory is the maximum resident set size reported by /usr/bin/time -v.
Usage: bench/convert-side-by-side.sh [--reps N] [--dir DIR] [--keep]
"""
import argparse, os, re, shutil, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
QED = os.environ.get("QED_BIN", os.path.join(HERE, "..", "src", "Qed.Cli", "bin", "Release", "net10.0", "qed"))
SIZE = 4 << 30
STEP, CHUNK = 4 << 20, 1 << 20

CASES = [  # name, source file, source format, target format
    ("raw -> qed", "src.raw", "raw", "qed"),
    ("qed -> raw", "src.qed", "qed", "raw"),
    ("qed -> qcow2", "src.qed", "qed", "qcow2"),
]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r


def timed(cmd):
    r = run(["/usr/bin/time", "-v"] + cmd)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    h, m, s = wall.groups()
    seconds = (int(h) if h else 0) * 3600 + int(m) * 60 + float(s)
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    cpu = float(re.search(r"User time \(seconds\): ([\d.]+)", r.stderr).group(1)) + \
        float(re.search(r"System time \(seconds\): ([\d.]+)", r.stderr).group(1))
    return seconds, rss_kib / 1024, cpu


def make_sources(work):
    raw = os.path.join(work, "src.raw")
    if not os.path.exists(raw):
        with open(raw, "wb") as f:
            f.truncate(SIZE)
            for off in range(0, SIZE, STEP):
                f.seek(off)
                f.write(os.urandom(CHUNK))
    qed = os.path.join(work, "src.qed")
    if not os.path.exists(qed):
        run(["qemu-img", "convert", "-f", "raw", "-O", "qed", raw, qed])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="qed-convert-bench-")
    os.makedirs(work, exist_ok=True)
    try:
        make_sources(work)
        results = {}
        for rep in range(args.reps):
            for name, src, sfmt, tfmt in CASES:
                for tool in ("qemu-img", "qed"):
                    dst = os.path.join(work, f"out.{tfmt}")
                    if os.path.exists(dst):
                        os.remove(dst)
                    # No dirty pages left by the run before: the kernel would write them back during this one, and
                    # charge whichever tool runs next for it.
                    os.sync()
                    exe = "qemu-img" if tool == "qemu-img" else QED
                    t = timed([exe, "convert", "-f", sfmt, "-O", tfmt, os.path.join(work, src), dst])
                    results.setdefault((name, tool), []).append(t)
                    if rep == 0 and tool == "qed":  # what qed wrote must equal the source
                        run(["qemu-img", "compare", "-f", sfmt, "-F", tfmt, os.path.join(work, src), dst])
        print(f"{'case':<14} {'qemu-img s':>11} {'qed s':>8} {'ratio':>6} {'ratios min-max':>15} {'qemu-img cpu':>13} {'qed cpu':>8} {'qemu-img MiB':>13} {'qed MiB':>8}")
        for name, _, _, _ in CASES:
            q = results[(name, "qemu-img")]
            o = results[(name, "qed")]
            qt, ot = statistics.median(x[0] for x in q), statistics.median(x[0] for x in o)
            qm, om = max(x[1] for x in q), max(x[1] for x in o)
            qc, oc = statistics.median(x[2] for x in q), statistics.median(x[2] for x in o)
            # Each qed run against the qemu-img run just before it: the spread shows how noisy the machine was.
            pairs = [b[0] / a[0] for a, b in zip(q, o)]
            spread = f"{min(pairs):.2f}-{max(pairs):.2f}"
            print(f"{name:<14} {qt:>11.2f} {ot:>8.2f} {ot / qt:>6.2f} {spread:>15} {qc:>13.2f} {oc:>8.2f} {qm:>13.1f} {om:>8.1f}")
        print(f"(median of {args.reps} interleaved runs: wall seconds, ratio of the medians and the range of the per-pair ratios, user+system CPU seconds; memory is the peak RSS over all runs; files in {work})")
    finally:
        if not args.dir and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
