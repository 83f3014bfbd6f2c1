"""Fuzz `cnn-edge predict` with seeded mutations of valid images of every supported format.

    python scripts/fuzz_predict.py [--cases 10000] [--seed 0] [--rounds 1]

Each round writes --cases mutated files (scripts/hostile_files.py: bit flips, truncations, spliced
bytes, overwritten headers) plus one surely broken file, runs the real command over the folder, and
checks what the hardening issue promises: no traceback, one row per file in input order, exit
code 3, and every row either a prediction or an error. Prints the error kinds seen.
"""
from __future__ import annotations

import argparse
import collections
import csv
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from hostile_files import FORMATS, write_fuzz_cases  # noqa: E402

MODEL = REPO / "exports" / "mnist_cnn.int8.onnx"


def fuzz_round(folder: Path, cases: int, seed: int) -> dict:
    paths = write_fuzz_cases(folder / "in", cases, seed)
    out = folder / "r.csv"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cnn_edge", "predict", str(MODEL), str(folder / "in"), "-o", str(out),
                           "-q"], capture_output=True, text=True, cwd=REPO, timeout=3600)
    seconds = time.perf_counter() - t0
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.DictReader(f))
    problems = []
    if proc.returncode != 3:
        problems.append(f"exit code {proc.returncode}, expected 3")
    if "Traceback" in proc.stderr:
        problems.append("a traceback on stderr")
    if [r["path"] for r in rows] != [str(p) for p in sorted(paths)]:
        problems.append(f"{len(rows)} rows for {len(paths)} files, or out of order")
    if any(bool(r["prediction"]) == bool(r["error"]) for r in rows):
        problems.append("a row with both or neither of prediction and error")
    kinds = collections.Counter(re.sub(r"\d[\d.x]*", "N", r["error"].split("(")[0]).strip()[:60] or "classified"
                                for r in rows)
    return {"files": len(paths), "seconds": seconds, "problems": problems, "kinds": kinds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    failed = 0
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="cnn-edge-fuzz-") as tmp:
            result = fuzz_round(Path(tmp), args.cases, args.seed + r)
        verdict = "OK" if not result["problems"] else "FAILED: " + "; ".join(result["problems"])
        print(f"round {r + 1}: {result['files']:,} files ({len(FORMATS)} formats, seed {args.seed + r}) in "
              f"{result['seconds']:.1f} s: {verdict}")
        for kind, n in result["kinds"].most_common():
            print(f"  {n:>6,}  {kind}")
        failed += bool(result["problems"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
