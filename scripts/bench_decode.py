"""Decode and preprocessing cost per MNIST PNG, for one or more checkouts side by side, in one run.

Each source tree (a checkout of cnn-edge, e.g. this one and an older commit unpacked with
`git archive OLD | tar -x -C /tmp/old`) is timed in its own subprocess, in turns, on the same PNG
files, one thread: Pillow's plain decode to grey (the reference), the tree's decode to grey
(to_grey_any), and its whole decode + preprocessing (preprocess_many, chunks of 256).

    python scripts/bench_decode.py --data-dir ../shared/data/mnist --trees . /tmp/old
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Run inside each tree's subprocess: prints one JSON line of microseconds per image.
PROBE = r"""
import glob, json, sys, time
import numpy as np
from PIL import Image
from cnn_edge.runtime.images import to_grey_any
from cnn_edge.runtime.preprocess import preprocess_many
paths = sorted(glob.glob(sys.argv[1] + "/*.png"))

def us(work):
    best = float("inf")
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best / len(paths) * 1e6

def pillow():
    for p in paths:
        with Image.open(p) as im:
            np.asarray(im.convert("L"), dtype=np.float32)

print(json.dumps({"pillow_grey_us": us(pillow), "to_grey_us": us(lambda: [to_grey_any(p) for p in paths]),
                  "prepare_us": us(lambda: [preprocess_many(paths[i:i + 256]) for i in range(0, len(paths), 256)])}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description="Decode + preprocessing cost per MNIST PNG, trees side by side")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--trees", nargs="+", type=Path, default=[REPO], help="cnn-edge source trees to compare")
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--passes", type=int, default=3, help="best of this many passes over the files")
    ap.add_argument("--rounds", type=int, default=2, help="turns through the trees (the best is kept)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from PIL import Image

    from cnn_edge.training.data import load_split
    from cnn_edge.core.machine import machine_description

    work = Path(tempfile.mkdtemp(prefix="cnn-edge-decode-"))
    try:
        test = load_split("test", args.data_dir)
        for i in range(args.n):
            Image.fromarray(test.images[i]).save(work / f"{i:05d}_{test.labels[i]}.png")
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.rounds):
            for tree in args.trees:
                env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
                out = subprocess.run([sys.executable, "-c", PROBE, str(work), str(args.passes)], env=env, cwd=tree, capture_output=True, text=True, check=True)
                got = json.loads(out.stdout)
                kept = best.setdefault(str(tree), got)
                best[str(tree)] = {k: min(v, kept[k]) for k, v in got.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"machine": machine_description(), "images": args.n, "trees": best}, indent=2))
        return
    print(f"per MNIST PNG, one thread, best of {args.passes} passes x {args.rounds} rounds, on {machine_description()}:")
    print(f"{'tree':<40} {'Pillow grey us':>15} {'to_grey us':>11} {'decode+preprocess us':>21}")
    for tree, r in best.items():
        print(f"{tree:<40} {r['pillow_grey_us']:>15.1f} {r['to_grey_us']:>11.1f} {r['prepare_us']:>21.1f}")


if __name__ == "__main__":
    main()
