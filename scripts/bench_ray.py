"""`predict --engine ray` against local `predict` on the same files, in one run, and its rows
checked against local predict's, row by row.

1. Writes N PNGs (MNIST's test images, cycled; not timed).
2. Local `predict DIR -o local.csv` (whole command, and its own images/s).
3. `predict DIR --engine ray -o DIR --format csv` with a local cluster started by the command:
   whole command, time to the first row (the command's start-up, measured as `cnn-edge --version`,
   plus the engine's first_row_seconds), steady state (rows between the 10% and 90% marks).
4. The same on a cluster started beforehand (`ray start --head`): the whole command without the
   cluster's start.
5. Every row of 3. and 4. compared with local predict's (CSV lines, order aside).

    python scripts/bench_ray.py --data-dir ../shared/data/mnist --n 100000
    python scripts/bench_ray.py --data-dir ../shared/data/mnist --n 10000     # the 10,000-PNG parity check
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnn_edge.training.data import load_split  # noqa: E402
from cnn_edge.core.machine import machine_description  # noqa: E402

CLI = [sys.executable, "-m", "cnn_edge"]


def timed(args: list[str], env=None) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run(CLI + args, capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 3):
        sys.exit(f"failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout)


def csv_rows(path_or_dir: Path) -> list[str]:
    files = [path_or_dir] if path_or_dir.is_file() else sorted(glob.glob(f"{path_or_dir}/part-*.csv"))
    rows = []
    for f in files:
        rows += Path(f).read_text().splitlines()[1:]
    return sorted(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=os.environ.get("CNN_EDGE_DATA"))
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--model", type=Path, default=REPO / "exports" / "mnist_cnn.int8.onnx")
    ap.add_argument("--no-started-cluster", action="store_true", help="skip 4 (needs the `ray` command)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnn-edge-bench-ray-"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        test = load_split("test", args.data_dir)
        png = work / "png"
        png.mkdir()
        for i in range(args.n):
            j = i % len(test.images)
            Image.fromarray(test.images[j]).save(png / f"{i:06d}_{test.labels[j]}.png")
        print(f"{machine_description()}; {args.n:,} MNIST PNGs; {args.model.name}")
        start = time.perf_counter()
        for _ in range(3):
            subprocess.run(CLI + ["--version"], capture_output=True, cwd=REPO)
        cold = (time.perf_counter() - start) / 3
        wall_local, local = timed(["predict", str(args.model), str(png), "-o", str(work / "local.csv"), "-q", "--json"], env)
        want = csv_rows(work / "local.csv")
        results = [("local predict", wall_local, local, True)]
        base = ["predict", str(args.model), str(png), "--engine", "ray", "--format", "csv", "-q", "--json"]
        wall, ray_local = timed(base + ["-o", str(work / "ray1")], env)
        results.append(("ray, cluster started by the command", wall, ray_local, csv_rows(work / "ray1") == want))
        if not args.no_started_cluster and shutil.which("ray"):
            cpus = str(os.cpu_count())
            subprocess.run(["ray", "start", "--head", "--num-cpus", cpus, "--include-dashboard=false",
                            "--disable-usage-stats"], capture_output=True, check=True, env=env)
            try:
                wall, ray_started = timed(base + ["-o", str(work / "ray2"), "--ray-address", "auto"], env)
                results.append(("ray, cluster already running", wall, ray_started, csv_rows(work / "ray2") == want))
            finally:
                subprocess.run(["ray", "stop", "--force"], capture_output=True)
        print(f"{'engine':<38} {'whole cmd s':>11} {'img/s whole':>11} {'img/s run':>10} {'steady img/s':>12} "
              f"{'1st row s':>9} {'rows = local':>12}")
        for name, wall, s, same in results:
            figures = s.get("engine_figures") or {}  # the Ray engine's own (cnn-edge-predict/2)
            steady = figures.get("steady_images_per_second")
            first = figures.get("first_row_seconds")
            print(f"{name:<38} {wall:>11.1f} {args.n / wall:>11,.0f} {s['images_per_second']:>10,.0f} "
                  f"{(f'{steady:,.0f}' if steady else '-'):>12} {(f'{first + cold:.1f}' if first is not None else '-'):>9} "
                  f"{str(same):>12}")
        print(f"time to first row = command start-up ({cold:.2f} s, `cnn-edge --version`) + the engine's first_row_seconds")
        for name, _, s, _ in results[1:]:
            print(f"{name}: steady state / local predict's images/s = "
                  f"{s['engine_figures']['steady_images_per_second'] / local['images_per_second']:.2f} (target >= 0.70)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
