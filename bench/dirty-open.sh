#!/usr/bin/env bash
# Recovery after a crash, side by side (issue 15): a QED image of SIZE (default 1T) with one cluster in each of its
# L2 tables (512 tables of 256 KiB at 1 TiB), left dirty by a `qed io` writer killed with SIGKILL after writing into
# TOUCH tables (default 4) and flushing. Each run copies the image, drops it from the page cache (fsync, then
# POSIX_FADV_DONTNEED) and times a read-write open (`qed io -c 'read 0 512'` / `qemu-io -c 'read 0 512'`) of:
#   qed clean   the image before the writer ran (no recovery),
#   qed dirty   the killed writer's image: recovery through the recovery record,
#   qed full    the same, with the record's bit cleared first: the full check qed did before the record,
#   qemu dirty  the killed writer's image opened by QEMU (it clears the bit it does not know and checks every table).
# Prints medians over RUNS (default 5) and the ratios the issue asks for. QED=path skips ./publish.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-img >/dev/null || { echo "qemu-img is missing: apt-get install qemu-utils" >&2; exit 1; }
if [ -z "${QED:-}" ]; then ./publish.sh; QED="$PWD/artifacts/qed/qed"; fi
exec python3 - "${SIZE:-1T}" "${TOUCH:-4}" "${RUNS:-5}" "$QED" <<'PY'
import json, os, shutil, statistics, struct, subprocess, sys, tempfile, time
size_arg, touch, runs, qed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
units = {"G": 30, "T": 40}
size = int(size_arg[:-1]) << units[size_arg[-1]]
span = 2 << 30                      # 64 KiB clusters, 4-cluster tables: one L2 table maps 2 GiB
tables = size // span
work = tempfile.mkdtemp(prefix="qed-dirty-open-", dir=os.environ.get("TMPDIR", "/var/tmp"))
clean, dirty, nobit, img = (os.path.join(work, n) for n in ("clean.qed", "dirty.qed", "nobit.qed", "work.qed"))

def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)

def header(path):
    with open(path, "rb") as f:
        h = f.read(64)
    return struct.unpack_from("<Q", h, 16)[0], struct.unpack_from("<Q", h, 32)[0]

print(f"making a {size_arg} image with {tables} L2 tables ({tables * 256 // 1024} MiB of tables) ...", flush=True)
run(["qemu-img", "create", "-q", "-f", "qed", clean, size_arg])
cmds = []
for t in range(tables):
    cmds += ["-c", f"write -P 1 {t * span} 64k"]
run(["qemu-io", "-f", "qed", *cmds, clean])
shutil.copyfile(clean, dirty)  # a plain copy: the tables are data, the rest is small

# The writer: TOUCH tables spread over the image, flushed, then killed while NEED_CHECK is set.
touched = [(t * tables // touch) * span + (64 << 10) for t in range(touch)]
cmds = []
for off in touched:
    cmds += ["-c", f"write -P 5 {off} 64k"]
writer = subprocess.Popen([qed, "io", *cmds, "-c", "flush", "-c", "sleep 60000", dirty],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
deadline = time.time() + 60
while True:
    feats, auto = header(dirty)
    last = subprocess.run(["qemu-io", "-r", "-U", "-f", "qed", "-c", f"read -P 5 {touched[-1]} 64k", dirty],
                          capture_output=True, text=True)
    if feats & 2 and auto & 1 and last.returncode == 0 and "verification failed" not in last.stdout:
        break
    if time.time() > deadline or writer.poll() is not None:
        sys.exit("the writer never reached a flushed, dirty state")
    time.sleep(0.05)
writer.kill(); writer.wait()
print(run([qed, "info", dirty]).stdout.strip().splitlines()[-1], flush=True)
shutil.copyfile(dirty, nobit)
with open(nobit, "r+b") as f:   # the same dirty image without the record's bit: recovery by the full check
    f.seek(32); f.write(struct.pack("<Q", 0))

def cold_copy(src):
    shutil.copyfile(src, img)
    fd = os.open(img, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)

cases = {
    "qed clean": (clean, [qed, "io", "-c", "read 0 512", img]),
    "qed dirty": (dirty, [qed, "io", "-c", "read 0 512", img]),
    "qed full": (nobit, [qed, "io", "-c", "read 0 512", img]),
    "qemu dirty": (dirty, ["qemu-io", "-f", "qed", "-c", "read 0 512", img]),
}
times = {name: [] for name in cases}
for r in range(runs):
    for name, (src, cmd) in cases.items():
        cold_copy(src)
        start = time.perf_counter()
        run(cmd)
        times[name].append(time.perf_counter() - start)
        if name == "qed dirty" and r == 0:
            feats, auto = header(img)
            assert feats & 2 == 0 and auto == 0, f"not recovered: features {feats:#x}, autoclear {auto:#x}"
            check = subprocess.run(["qemu-img", "check", "--output=json", img], capture_output=True, text=True)
            found = json.loads(check.stdout)
            assert found.get("corruptions", 0) == 0 and found.get("check-errors", 0) == 0, check.stdout
            for off in touched:
                run(["qemu-io", "-r", "-f", "qed", "-c", f"read -P 5 {off} 64k", img])
med = {name: statistics.median(t) for name, t in times.items()}
for name, t in times.items():
    print(f"{name:11} median {med[name] * 1000:8.1f} ms  (min {min(t) * 1000:.1f}, max {max(t) * 1000:.1f}, {runs} runs)")
print(f"dirty / clean open (qed):      {med['qed dirty'] / med['qed clean']:.2f}  (target: at most 3)")
print(f"QEMU dirty / qed dirty:        {med['qemu dirty'] / med['qed dirty']:.1f}  (target: at least 5)")
print(f"qed full check / qed record:   {med['qed full'] / med['qed dirty']:.1f}")
print("after recovery: qemu-img check finds no corruption and every flushed write reads back")
shutil.rmtree(work)
PY
