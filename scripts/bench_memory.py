"""Peak memory (RSS) of `cnn-edge predict` and `validate` on hostile inputs, measured with
/usr/bin/time -v, for this checkout and, with --before DIR, another checkout in the same run.

    python scripts/bench_memory.py [--before /path/to/older/checkout]

Cases (the hardening issue's targets): sixteen 16-megapixel PNGs of about 20 KB each, one
40-megapixel RGBA PNG, a 100-megapixel PNG that --max-pixels refuses from its header, and
`validate` on a gzip bomb (a test-images file declaring 10,000 images that inflates to 1 GiB).
"""
from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnn_edge.training.data import FILES  # noqa: E402
from cnn_edge.core.machine import cpu_name  # noqa: E402

MODEL = REPO / "exports" / "mnist_cnn.onnx"
TARGETS_MB = {"16 x 16-Mpixel PNGs": 700, "one 40-Mpixel RGBA PNG": 700, "100-Mpixel PNG refused": 400,
              "validate on a gzip bomb": 700}


def peak_mb(cmd: list[str], root: Path) -> tuple[float, int]:
    """(peak RSS in MB, exit code) of a command run with /usr/bin/time -v, the code from `root`."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, cwd=root, env=env)
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return kb / 1024, int(re.search(r"Exit status: (\d+)", proc.stderr).group(1))


def make_cases(work: Path) -> dict[str, list[str]]:
    digit = np.zeros((4000, 4000), np.uint8)
    digit[800:3200, 1800:2200] = 255
    sixteen = work / "sixteen"
    sixteen.mkdir()
    Image.fromarray(digit).convert("RGB").save(sixteen / "00.png", compress_level=9)
    for i in range(1, 16):
        shutil.copy(sixteen / "00.png", sixteen / f"{i:02d}.png")
    rgba = np.zeros((5000, 8000, 4), np.uint8)
    rgba[1000:4000, 3800:4200] = (20, 20, 20, 255)  # dark ink on a transparent layer
    Image.fromarray(rgba, "RGBA").save(work / "rgba40.png", compress_level=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 10_000, 10_000, 8, 0, 0, 0, 0)
    (work / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(10_001) * 64))
                                    + chunk(b"IEND", b""))
    mnist = work / "mnist"
    mnist.mkdir()
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (10_000, 28, 28))
    with gzip.open(mnist / (FILES[("test", "images")] + ".gz"), "wb", compresslevel=1) as f:
        f.write(header)
        block = bytes(1 << 24)
        for _ in range(64):  # 1 GiB of zeros
            f.write(block)
    with gzip.open(mnist / (FILES[("test", "labels")] + ".gz"), "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (10_000).to_bytes(4, "big") + bytes(10_000))
    predict = [sys.executable, "-m", "cnn_edge", "predict", str(MODEL)]
    return {
        "16 x 16-Mpixel PNGs": [*predict, str(sixteen), "-o", str(work / "a.csv"), "-q"],
        "one 40-Mpixel RGBA PNG": [*predict, str(work / "rgba40.png"), "-o", str(work / "b.csv"), "-q"],
        "100-Mpixel PNG refused": [*predict, str(work / "huge.png"), "-o", str(work / "c.csv"), "-q"],
        "validate on a gzip bomb": [sys.executable, "-m", "cnn_edge", "validate", str(MODEL), "--data-dir", str(mnist)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, help="another checkout to measure in the same run (e.g. a git worktree)")
    args = ap.parse_args()
    roots = {"this checkout": REPO, **({"before": args.before} if args.before else {})}
    with tempfile.TemporaryDirectory(prefix="cnn-edge-mem-") as tmp:
        cases = make_cases(Path(tmp))
        print(f"peak RSS, MB (/usr/bin/time -v); {cpu_name()}, {os.cpu_count()} cores")
        print(f"{'case':<26}" + "".join(f"{name:>20}" for name in roots) + f"{'target':>10}")
        for case, cmd in cases.items():
            cells = []
            for root in roots.values():
                for f in Path(tmp).glob("*.csv*"):
                    f.unlink()
                mb, code = peak_mb(cmd, root)
                cells.append(f"{mb:>12,.0f} (exit {code})")
            print(f"{case:<26}" + "".join(f"{c:>20}" for c in cells) + f"{'< ' + str(TARGETS_MB[case]):>10}")


if __name__ == "__main__":
    main()
