"""Peak memory of what a Ray decoding task runs (`cnn_edge.distributed.stages.decode_batch`) on
large files, for this checkout and, with --before DIR, another one (e.g. `git worktree add
/tmp/before ed985ad`, the code before issue 22's round 2), each case in a fresh process.

    python scripts/bench_ray_memory.py [--before DIR] [--run]

Cases: a batch of 40 PNGs of random noise (2900 x 2900 RGB, ~25 MB each: incompressible, so the
decoder does real work), a batch of 2 of them, and a batch of 40 junk files of ~25 MB (random
bytes named .png: no image is made, only reading costs memory). The figure is the child's peak
resident size (ru_maxrss), with what it held after its imports, before decoding, in brackets.

Why not the whole run: a local Ray cluster's own processes hold ~2 GB, which hides a task's
reads. With --run, the whole `predict --engine ray` on the 40 noise PNGs is measured too, as the
proportional set size (PSS, /proc/PID/smaps_rollup: Linux) summed over the command's process tree
(driver, cluster, workers), sampled every 0.2 s: a peak that may miss a short spike, Ray's own
share included.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnn_edge.core.machine import cpu_name  # noqa: E402

FILES, SIDE = 40, 2900  # 2900 x 2900 RGB = 25.2 MB of noise, under the 64 MiB --max-file-bytes
# Run in the child, with PYTHONPATH the checkout measured. The paths go in as str, which the
# code before round 2 (decode_batch(batch, max_pixels), whole files read first) and after accept.
CHILD = """
import json, resource, sys
import numpy as np
import cnn_edge, cnn_edge.runtime.preprocess
from cnn_edge.core.constants import DEFAULT_MAX_PIXELS
from cnn_edge.distributed.stages import decode_batch
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = decode_batch({"path": np.array(sys.argv[1:], dtype=object)}, max_pixels=DEFAULT_MAX_PIXELS)
print(json.dumps({"imported_kb": imported, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "decoded": sum(1 for e in out["error"] if not e), "code": cnn_edge.__file__}))
"""


def make_cases(work: Path) -> dict[str, list[str]]:
    """The batches, as lists of paths. Copies are hard links: same bytes, read once per path."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    noise, junk = work / "noise", work / "junk"
    noise.mkdir()
    junk.mkdir()
    Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), np.uint8)).save(noise / "n00.png", compress_level=1)
    size = (noise / "n00.png").stat().st_size
    (junk / "j00.png").write_bytes(rng.bytes(size))
    for i in range(1, FILES):
        os.link(noise / "n00.png", noise / f"n{i:02d}.png")
        os.link(junk / "j00.png", junk / f"j{i:02d}.png")
    mb = f"{size / 1e6:.0f} MB"
    noise_paths = sorted(map(str, noise.iterdir()))
    return {f"{FILES} noise PNGs of {mb}": noise_paths, f"2 noise PNGs of {mb}": noise_paths[:2],
            f"{FILES} junk files of {mb}": sorted(map(str, junk.iterdir()))}


def decode_peak(root: Path, paths: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    # cwd too: `python -c` puts the current folder first on sys.path
    proc = subprocess.run([sys.executable, "-c", CHILD, *paths], capture_output=True, text=True, env=env, cwd=root)
    if proc.returncode != 0:
        return {"failed": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    result = json.loads(proc.stdout.splitlines()[-1])
    assert Path(result["code"]).is_relative_to(root), f"measured {result['code']}, not {root}"
    return result


def tree_pids(root: int) -> list[int]:
    """`root` and every process below it (/proc/PID/stat's parent field)."""
    children: dict[int, list[int]] = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])  # after the name, which may hold spaces
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(e))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def pss_kb(pid: int) -> int:
    """The process's proportional set size: its own pages, plus its share of pages it shares (Ray's
    object store, libraries), so that a sum over processes counts each page once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):  # ended meanwhile
        return 0


def run_pss_peak(root: Path, folder: Path, work: Path) -> tuple[float, int]:
    """(peak PSS in MB summed over the process tree, exit code) of `predict --engine ray` on `folder`."""
    tmp = tempfile.mkdtemp(prefix="m22-", dir="/tmp")  # short: Ray's socket paths
    env = {**os.environ, "PYTHONPATH": str(root), "TMPDIR": tmp, "RAY_TMPDIR": tmp}
    out = work / f"out-{time.monotonic_ns()}"
    p = subprocess.Popen([sys.executable, "-m", "cnn_edge", "predict", str(root / "exports" / "mnist_cnn.int8.onnx"),
                          str(folder), "-o", str(out), "--engine", "ray", "--format", "csv", "-q"], env=env, cwd=root,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while p.poll() is None:
        peak = max(peak, sum(pss_kb(pid) for pid in tree_pids(p.pid)) / 1024)
        time.sleep(0.2)
    shutil.rmtree(tmp, ignore_errors=True)
    return peak, p.returncode


def cell(result: dict) -> str:
    if "failed" in result:
        return result["failed"][:28]
    return f"{result['peak_kb'] / 1024:,.0f} ({result['imported_kb'] / 1024:,.0f}), {result['decoded']} ok"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, help="another checkout to measure in the same run (e.g. a git worktree)")
    ap.add_argument("--run", action="store_true", help="also the whole predict --engine ray run's PSS (slow)")
    args = ap.parse_args()
    roots = {**({"before": args.before.resolve()} if args.before else {}), "this checkout": REPO}
    with tempfile.TemporaryDirectory(prefix="bench-ray-mem-") as tmp:
        work = Path(tmp)
        cases = make_cases(work)
        print(f"peak RSS of one decoding task, MB (after imports in brackets); {cpu_name()}, {os.cpu_count()} cores")
        print(f"{'decode_batch on':<26}" + "".join(f"{name:>30}" for name in roots))
        for case, paths in cases.items():
            print(f"{case:<26}" + "".join(f"{cell(decode_peak(root, paths)):>30}" for root in roots.values()), flush=True)
        if args.run:
            cells = []
            for root in roots.values():
                mb, code = run_pss_peak(root, work / "noise", work)
                cells.append(f"{mb:,.0f} (exit {code})")
            print(f"{'whole run, PSS summed':<26}" + "".join(f"{c:>30}" for c in cells))


if __name__ == "__main__":
    main()
