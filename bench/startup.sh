#!/usr/bin/env bash
# Start-up, side by side: wall time of `qed info` and `qemu-img info` on the same small QED image, interleaved,
# RUNS times each (default 30); prints the medians and their ratio. Issue 4's target: qed info within 60 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-img >/dev/null || { echo "qemu-img is missing: apt-get install qemu-utils" >&2; exit 1; }
./publish.sh
exec python3 - "${RUNS:-30}" "$PWD/artifacts/qed/qed" <<'PY'
import os, statistics, subprocess, sys, tempfile, time
runs, qed = int(sys.argv[1]), sys.argv[2]
work = tempfile.mkdtemp(prefix="qed-startup-")
img = os.path.join(work, "small.qed")
subprocess.run(["qemu-img", "create", "-q", "-f", "qed", img, "1G"], check=True)
subprocess.run(["qemu-io", "-f", "qed", "-c", "write -P 1 0 64k", img], check=True, capture_output=True)
tools = {"qed info": [qed, "info", img], "qemu-img info": ["qemu-img", "info", img]}
times = {name: [] for name in tools}
for _ in range(runs):
    for name, cmd in tools.items():
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times[name].append((time.perf_counter() - start) * 1000)
med = {name: statistics.median(t) for name, t in times.items()}
for name, t in times.items():
    print(f"{name:14} median {med[name]:6.1f} ms  (min {min(t):.1f}, max {max(t):.1f}, {runs} runs)")
print(f"qed / qemu-img: {med['qed info'] / med['qemu-img info']:.2f}")
os.remove(img); os.rmdir(work)
PY
