"""Peak memory of `predict --engine ray` (driver + every process of its local cluster, summed) on
large files: N copies of one ~25 MB PNG (5,000 x 5,000 noise, under --max-pixels).

    python scripts/bench_ray_memory.py [--files 40] [--tree CHECKOUT ...]

Each --tree is a checkout run through PYTHONPATH (default: this one); the sum of the resident
sizes of the driver and of the processes with files open in the run's session folder is sampled
every 0.2 s (/proc, Linux)."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def session_pids(tmp: str) -> set[int]:
    found = set()
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{e}/fd"):
                if os.readlink(f"/proc/{e}/fd/{fd}").startswith(tmp):
                    found.add(int(e))
                    break
        except OSError:
            continue
    return found


def measure(tree: str, folder: Path, work: Path) -> tuple[float, int]:
    tmp = tempfile.mkdtemp(prefix="m22-", dir="/tmp")
    # /tmp/ray: where a checkout that does not pick its own session folder puts it
    env = {**os.environ, "PYTHONPATH": tree, "TMPDIR": tmp, "RAY_TMPDIR": tmp}
    out = work / f"out-{time.monotonic_ns()}"
    p = subprocess.Popen([sys.executable, "-m", "cnn_edge", "predict", str(REPO / "exports" / "mnist_cnn.int8.onnx"),
                          str(folder), "-o", str(out), "--engine", "ray", "--format", "csv", "-q"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, pids = 0.0, set()
    while p.poll() is None:
        pids |= session_pids(tmp)  # once seen, a process is followed until it ends
        peak = max(peak, rss_mb(p.pid) + sum(rss_mb(q) for q in pids))
        time.sleep(0.2)
    p.communicate()
    shutil.rmtree(tmp, ignore_errors=True)
    return peak, p.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--tree", action="append", help="checkout to run (default: this one)")
    args = ap.parse_args()
    import numpy as np
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="bench-ray-mem-"))
    try:
        folder = work / "in"
        folder.mkdir()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (5000, 5000), np.uint8)).save(folder / "f000.png",
                                                                                                 compress_level=1)
        for i in range(1, args.files):
            shutil.copyfile(folder / "f000.png", folder / f"f{i:03d}.png")
        size = (folder / "f000.png").stat().st_size
        print(f"{args.files} files of {size / 1e6:.1f} MB")
        for tree in args.tree or [str(REPO)]:
            peak, rc = measure(tree, folder, work)
            print(f"{tree}: peak RSS (driver + cluster) {peak:,.0f} MB, exit {rc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
