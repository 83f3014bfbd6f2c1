"""SIGTERM at a random moment of `predict --engine ray` (or --engine local), then --resume: how each
run ended, by when the signal came. A benchmark-style script, not a test (each trial is a whole
cluster start); tests/test_hostile_ray.py holds one such run.

    python scripts/sigterm_trials.py --trials 8 [--engine ray] [--seed 5]

A trial is clean when a SIGTERM that came mid-run ended with exit 143, no traceback, no native
abort on stderr, and --resume then completed the output with every input exactly once.
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAD_SIGNS = ("Aborted", "Traceback", "core dumped", "Fatal Python error")


def images(folder: Path, n: int) -> list[str]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 12:16] = 255
    Image.fromarray(pixels).save(folder / "d00000.png")
    for i in range(1, n):
        shutil.copyfile(folder / "d00000.png", folder / f"d{i:05d}.png")
    return sorted(str(p) for p in folder.iterdir())


def rows_of(out: Path) -> list[str]:
    parts = sorted(out.glob("part-*.csv")) if out.is_dir() else [out]
    rows = []
    for part in parts:
        with open(part, newline="") as f:
            rows += [row["path"] for row in csv.DictReader(f)]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--engine", choices=("ray", "local"), default="ray")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--after", type=float, nargs=2, default=(3.0, 12.0), help="SIGTERM between these seconds")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cnn-edge-sigterm-"))
    want = images(base / "in", args.images)
    model = REPO / "exports" / "mnist_cnn.int8.onnx"
    rng = random.Random(args.seed)
    outcomes: dict[str, list[bool]] = {"mid-run": [], "after the commit": [], "after the exit": []}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        for t in range(args.trials):
            out = base / (f"out{t}" if args.engine == "ray" else f"out{t}.csv")
            cmd = [sys.executable, "-m", "cnn_edge", "predict", str(model), str(base / "in"), "-o", str(out),
                   "--format", "csv", "-q", "--engine", args.engine]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            delay = rng.uniform(*args.after)
            time.sleep(delay)
            ended = p.poll() is not None
            committed = (out / "_SUCCESS").exists() if args.engine == "ray" else out.exists()
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=180)
            err = err.decode(errors="replace")
            when = "after the exit" if ended else "after the commit" if committed else "mid-run"
            resumed = subprocess.run(cmd + ["--resume"], capture_output=True, env=env, timeout=300)
            once = sorted(rows_of(out)) == want
            clean = not any(s in err for s in BAD_SIGNS) and resumed.returncode == 0 and once
            if when == "mid-run":
                clean = clean and p.returncode == 143
            outcomes[when].append(clean)
            print(f"trial {t}: SIGTERM at {delay:4.1f} s ({when}): exit {p.returncode}, resume exit "
                  f"{resumed.returncode}, every input once: {once} -> {'clean' if clean else 'NOT CLEAN'}", flush=True)
            if not clean:
                print("  stderr:", err[-1500:].strip(), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"\n{args.engine} engine, {args.images:,} images, {cpu}, {os.cpu_count()} cores")
    for when, results in outcomes.items():
        print(f"  SIGTERM {when:<17} {sum(results)}/{len(results)} clean")


if __name__ == "__main__":
    main()
