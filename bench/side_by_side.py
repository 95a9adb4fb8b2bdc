#!/usr/bin/env python3
"""Runs qemu-img bench and qed bench on the same workloads, interleaved in one run, and prints a table of ratios.

Every cell is the median of REPS runs; each run gets a freshly made (or freshly prefilled) image so that both tools see
the same starting state. Usage: bench/side-by-side.sh [--reps N] [--dir DIR] [--only NAME]
"""
import argparse, os, re, shutil, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
QED = os.environ.get("QED_BIN", os.path.join(HERE, "..", "artifacts", "qed", "qed"))  # the native build users run

# name, image size, prefill?, bench arguments (reads also get their page cache rebuilt after the prefill: recache).
# Steps for "random" in-place I/O are a prime number of 4 KiB blocks,
# so offsets (taken modulo the image size, as qemu-img bench does) scatter over the whole image.
WORKLOADS = [
    ("alloc 4k QD1",      "4G", False, "-w -c 40000 -d 1 -s 4k -S 64k"),
    ("alloc 4k QD16",     "4G", False, "-w -c 40000 -d 16 -s 4k -S 64k"),
    ("in-place write 4k QD16", "1G", True, "-w -c 200000 -d 16 -s 4k -S 4280320"),
    ("in-place read 4k QD16",  "1G", True, "-c 400000 -d 16 -s 4k -S 4280320"),
    ("seq write 1M (alloc)",   "2G", False, "-w -c 2048 -d 4 -s 1M"),
    ("seq read 1M",            "1G", True, "-c 12288 -d 4 -s 1M"),
]
TOOLS = [("qemu-img", ["qemu-img", "bench"]), ("qed", [QED, "bench"])]
FORMATS = ["qed", "raw"]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r.stdout


def make_image(path, fmt, size, prefill, reads):
    if os.path.exists(path):
        os.remove(path)
    run(["qemu-img", "create", "-q", "-f", fmt, path, size])
    if prefill:  # every cluster allocated, written the same way for both tools
        blocks = int(size[:-1]) * 1024
        run(["qemu-img", "bench", "-q", "-f", fmt, "-w", "-c", str(blocks), "-d", "4", "-s", "1M", "--pattern", "90", path])
        if reads:
            recache(path)


def recache(path):
    """Rebuilds the file's page cache by one sequential read, so both formats start from the same cache state.

    The prefill's writes leave page-cache folios shaped by where they landed: 1 MiB-aligned in a raw file, 64 KiB-aligned
    in a QED file (its data starts after the header and tables). Smaller folios made every cached read of the QED
    file slower in the kernel (deeper page-cache lookups), about 5% of a 4 KiB read, whatever tool reads it. Dropping
    the file's clean pages and reading it once gives both files readahead-built caches, as after a reboot.
    Only for read workloads: readahead builds large folios, and 4 KiB writes into them made in-place writes several
    times slower for both tools (each dirties a whole folio).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, 1 << 20):
            pass
    finally:
        os.close(fd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="qed-bench-")
    os.makedirs(work, exist_ok=True)
    times = {}
    for name, size, prefill, bench_args in WORKLOADS:
        if args.only and args.only not in name:
            continue
        for rep in range(args.reps):
            for tool, cmd in TOOLS:          # interleaved: every rep runs each tool on each format
                for fmt in FORMATS:
                    img = os.path.join(work, f"img.{fmt}")
                    make_image(img, fmt, size, prefill, reads="-w" not in bench_args.split())
                    # Each run starts with no dirty pages: otherwise the kernel writes back the prefill (and the run
                    # before) during the timed run, and whichever run comes next pays for it.
                    os.sync()
                    out = run(cmd + ["-f", fmt, "-t", "writeback"] + bench_args.split() + [img])
                    secs = float(re.search(r"Run completed in ([0-9.]+) seconds", out).group(1))
                    times.setdefault((name, tool, fmt), []).append(secs)
                    print(f"  {name:24} rep {rep + 1} {tool:8} {fmt:4} {secs:8.3f} s", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True) if not args.dir else None

    med = {k: statistics.median(v) for k, v in times.items()}
    print()
    print(f"Median of {args.reps} runs, seconds (lower is better); ratios are time ratios.")
    print()
    print("| workload | qemu-img qed | qed qed | qemu-img raw | qed raw | qed/qemu-img on QED | qed-on-QED / qed-on-raw |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, *_ in WORKLOADS:
        if (name, "qed", "qed") not in med:
            continue
        qq, oq, qr, orw = (med[(name, t, f)] for t, f in [("qemu-img", "qed"), ("qed", "qed"), ("qemu-img", "raw"), ("qed", "raw")])
        print(f"| {name} | {qq:.3f} | {oq:.3f} | {qr:.3f} | {orw:.3f} | {oq / qq:.2f} | {oq / orw:.2f} |")


if __name__ == "__main__":
    main()
