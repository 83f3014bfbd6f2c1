"""End-to-end speed, cold start and accuracy of `cnn-edge predict`, against a plain baseline, in one run.

1. Writes MNIST's test images as PNG files (not timed).
2. Baseline: a straightforward single-process loop: Pillow decode, per-image numpy preprocessing,
   ONNX Runtime in batches of 256, CSV rows.
3. `cnn-edge predict MODEL DIR -o results.csv` as a subprocess, fp32 and int8, wall time of the
   whole command (start-up, decode, preprocess, infer, write), median of --repeat runs.
4. Cold start: `cnn-edge predict MODEL one.png`, median and worst of 7, next to `import torch`.
5. Accuracy on the PNGs (against what validate reported, stored in the model) and on user-style
   digits (scripts/user_digits.py).
6. The limit, measured in the same run: per image, predict cannot beat reading the file, inflating
   its zlib stream and the runtime's own inference, so the limit is cores / (read one PNG + inflate
   its zlib stream + one image's share of single-thread ONNX Runtime at batch 256, CPU provider);
   the whole command (`--provider cpu`, best of --repeat) as a fraction of it; next to it, what
   cnn-edge's own decode and preprocessing cost per image, and Pillow's decode.

    python scripts/bench_predict.py --data-dir ../shared/data/mnist          # 30,000 PNGs: the test set 3 times
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from cnn_edge.core import contract as C  # noqa: E402
from cnn_edge.core.artifacts import RELEASE_DIR, released_models  # noqa: E402
from cnn_edge.training.data import load_split  # noqa: E402
from cnn_edge.core.machine import machine_description  # noqa: E402
from cnn_edge.runtime.onnx_model import open_model  # noqa: E402
from cnn_edge.runtime.predictor import Predictor  # noqa: E402
from cnn_edge.runtime.preprocess import preprocess, preprocess_many  # noqa: E402
from user_digits import label_of, make_user_digits  # noqa: E402

CLI = [sys.executable, "-m", "cnn_edge"]


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies from /proc/stat: how much of the CPU the hypervisor took away."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
        return values[7], sum(values)
    except (OSError, IndexError, ValueError):
        return 0, 0


def baseline(model: Path, paths: list[str], out: Path) -> float:
    """Images/s of the straightforward version: one process, one image at a time, batches of 256."""
    start = time.perf_counter()
    m = open_model(model)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        for i in range(0, len(paths), 256):
            chunk = paths[i : i + 256]
            x = np.stack([preprocess(p) for p in chunk])[:, None]
            probs, _ = m.run(x)
            for p, row in zip(chunk, probs):
                w.writerow([p, int(row.argmax()), f"{row.max():.6f}"])
    return len(paths) / (time.perf_counter() - start)


def per_image_us(work, n: int, passes: int = 3) -> float:
    """Microseconds per image of `work()`, which handles n images: the best of `passes` runs."""
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def pillow_decode_us(paths: list[str]) -> float:
    """For scale: Pillow opens each PNG and gives its grey pixels as float32, one thread."""
    def work() -> None:
        for p in paths:
            with Image.open(p) as im:
                np.asarray(im.convert("L"), dtype=np.float32)
    return per_image_us(work, len(paths))


def png_chunks(data: bytes):
    """(type, payload) of each chunk of a PNG file's bytes."""
    pos = 8
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        yield data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        pos += 12 + size


def read_us(paths: list[str]) -> float:
    """The limit's read: open, read and close each file, one thread."""
    def work() -> None:
        for p in paths:
            fd = os.open(p, os.O_RDONLY)
            try:
                os.read(fd, 1 << 20)
            finally:
                os.close(fd)
    return per_image_us(work, len(paths))


def inflate_us(paths: list[str]) -> float:
    """The limit's inflate: zlib alone on each PNG's IDAT stream (taken out of the file beforehand), one thread."""
    streams = []
    for p in paths:
        with open(p, "rb") as f:
            streams.append(b"".join(payload for kind, payload in png_chunks(f.read()) if kind == b"IDAT"))
    return per_image_us(lambda: [zlib.decompress(s) for s in streams], len(streams))


def prepare_us(paths: list[str]) -> float:
    """cnn-edge's own decode and preprocessing (preprocess_many, chunks of 256), one thread."""
    return per_image_us(lambda: [preprocess_many(paths[i : i + 256]) for i in range(0, len(paths), 256)], len(paths))


def infer_us(model: Path, images: np.ndarray) -> float:
    """One image's share of single-thread ONNX Runtime at batch 256 (CPU provider)."""
    m = open_model(model, provider="cpu", threads=1)
    batches = [images[i : i + 256].astype(np.float32)[:, None] for i in range(0, len(images) - 255, 256)]
    m.run(batches[0])  # warm-up: the first run allocates
    return per_image_us(lambda: [m.run(x) for x in batches], 256 * len(batches))


def timed(cmd: list[str], tree: Path = REPO) -> float:
    """Wall seconds of a command run in `tree` (so `python -m cnn_edge` is that tree's cnn-edge)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tree)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    return wall


def other_provider(cmd: list[str], provider: str, repeat: int, n: int) -> dict:
    """The whole command on another provider: best img/s of `repeat` runs, or the one line saying why it cannot run."""
    probe = subprocess.run([*cmd, "--provider", provider], capture_output=True, text=True)  # also a warm-up
    if probe.returncode not in (0, 3):
        return {"error": (probe.stderr.strip().splitlines() or ["exit " + str(probe.returncode)])[-1]}
    walls = [timed([*cmd, "--provider", provider]) for _ in range(repeat)]
    return {"predict_best_images_per_second": n / min(walls), "predict_wall_seconds": walls}


def csv_accuracy(out: Path) -> float:
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    return float(np.mean([r["prediction"] == str(label_of(Path(r["path"]))) for r in rows]))


def main() -> None:
    ap = argparse.ArgumentParser(description="End-to-end predict benchmark")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--models", nargs="+", type=Path, default=released_models(REPO / RELEASE_DIR))
    ap.add_argument("-n", type=int, default=30_000, help="PNG files: MNIST's test images, cycled")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--per-variant", type=int, default=500)
    ap.add_argument("--limit-images", type=int, default=2048, help="images timed for the limit's parts")
    ap.add_argument("--compare-tree", type=Path, default=None,
                    help="another cnn-edge source tree (e.g. an older commit): its predict timed in turn with this one's")
    ap.add_argument("--no-user-digits", action="store_true", help="skip the user-style digits' accuracy")
    ap.add_argument("--also-provider", action="append", default=[], metavar="NAME",
                    help="also time the whole command with --provider NAME (e.g. openvino), best of --repeat")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cnn-edge-bench-"))
    steal0, total0 = cpu_ticks()
    try:
        test = load_split("test", args.data_dir)
        png = work / "png"
        png.mkdir()
        paths = []
        for i in range(args.n):
            j = i % len(test)
            paths.append(str(png / f"{i:05d}_{test.labels[j]}.png"))
            Image.fromarray(test.images[j]).save(paths[-1])
        result = {"images": args.n, "machine": machine_description(), "cores": os.cpu_count(), "models": {}}
        sample = paths[: args.limit_images]
        result["pillow_decode_us"] = pillow_decode_us(sample)
        result["read_us"] = read_us(sample)
        result["inflate_us"] = inflate_us(sample)
        result["cnn_edge_prepare_us"] = prepare_us(sample)
        for model in args.models:
            meta = Predictor(model, provider="cpu").model.metadata
            base = baseline(model, paths, work / "baseline.csv")
            cmd = [*CLI, "predict", str(model.resolve()), str(png), "-o", str(work / "r.csv"), "-q", "--provider", "cpu"]
            walls, other = [], []
            for _ in range(args.repeat):  # in turns, so both meet the same load
                walls.append(timed(cmd))
                if args.compare_tree:
                    other.append(timed(cmd, args.compare_tree))
            wall = statistics.median(walls)
            one = [timed([*CLI, "predict", str(model), paths[0]]) for _ in range(7)]
            infer = infer_us(model, test.images[: max(args.limit_images, 256)])
            limit = os.cpu_count() / ((result["read_us"] + result["inflate_us"] + infer) * 1e-6)
            result["models"][model.name] = {
                "baseline_images_per_second": base,
                "predict_wall_seconds": walls,
                "predict_images_per_second": args.n / wall,
                "speedup_vs_baseline": args.n / wall / base,
                "png_accuracy": csv_accuracy(work / "r.csv"),
                "validate_accuracy": float(meta.get(C.META_TEST_ACCURACY) or "nan"),
                "cold_start_median_s": statistics.median(one),
                "cold_start_max_s": max(one),
                "infer_us_per_image": infer,
                "limit_images_per_second": limit,
                "predict_best_images_per_second": args.n / min(walls),
                "fraction_of_limit": args.n / min(walls) / limit,
            }
            for provider in args.also_provider:
                result["models"][model.name][f"provider_{provider}"] = other_provider(cmd, provider, args.repeat, args.n)
            if other:
                result["models"][model.name]["compare_tree_predict_wall_seconds"] = other
                result["models"][model.name]["compare_tree_fraction_of_limit"] = args.n / min(other) / limit
        steal1, total1 = cpu_ticks()
        # On a shared VM, time the hypervisor gives to other guests; speeds drop with it.
        result["cpu_steal_share"] = (steal1 - steal0) / max(total1 - total0, 1)
        result["import_torch_s"] = timed([sys.executable, "-c", "import torch"])
        result["python_startup_s"] = timed([sys.executable, "-c", "pass"])
        files = {} if args.no_user_digits else make_user_digits(work / "user", args.data_dir, args.per_variant)
        result["user_digits"] = {}
        for model in args.models if files else []:
            predictor = Predictor(model)
            result["user_digits"][model.name] = {
                v: float(np.mean([int(p.label) == label_of(f) for p, f in zip(predictor.predict(fs), fs)]))
                for v, fs in files.items()
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"end to end on {args.n:,} MNIST PNGs (decode, preprocess, infer, write CSV; whole command, median of {args.repeat}):")
    print(f"{'model':<22} {'baseline img/s':>15} {'predict img/s':>14} {'ratio':>7} {'PNG acc':>8} {'validate':>9} {'cold start':>11}")
    for name, r in result["models"].items():
        print(f"{name:<22} {r['baseline_images_per_second']:>15,.0f} {r['predict_images_per_second']:>14,.0f} "
              f"{r['speedup_vs_baseline']:>6.2f}x {r['png_accuracy']:>8.2%} {r['validate_accuracy']:>9.2%} "
              f"{r['cold_start_median_s']:>6.2f} s (max {r['cold_start_max_s']:.2f})")
    print(f"for scale: python -c 'import torch' {result['import_torch_s']:.2f} s, python -c pass {result['python_startup_s']:.2f} s")
    print(f"CPU steal (taken by the hypervisor) during the timed runs: {result['cpu_steal_share']:.1%}")
    print(f"limit on {result['machine']}: {result['cores']} cores / (read one PNG {result['read_us']:.1f} us + inflate "
          f"its zlib stream {result['inflate_us']:.1f} us + one image's share of single-thread ONNX Runtime at batch "
          f"256, CPU provider); for scale, one thread: cnn-edge's decode+preprocess {result['cnn_edge_prepare_us']:.1f} us, "
          f"Pillow's decode to grey {result['pillow_decode_us']:.1f} us per image")
    print(f"{'model':<22} {'infer us/img':>13} {'limit img/s':>14} {'predict best img/s':>19} {'of limit':>11}")
    for name, r in result["models"].items():
        print(f"{name:<22} {r['infer_us_per_image']:>13.1f} {r['limit_images_per_second']:>14,.0f} "
              f"{r['predict_best_images_per_second']:>19,.0f} {r['fraction_of_limit']:>11.2f}"
              + (f"   ({args.compare_tree}: {r['compare_tree_fraction_of_limit']:.2f})" if args.compare_tree else ""))
        print(f"{'':<22} predict walls (s): {', '.join(f'{w:.2f}' for w in r['predict_wall_seconds'])}"
              + (f"; {args.compare_tree}: {', '.join(f'{w:.2f}' for w in r['compare_tree_predict_wall_seconds'])}"
                 if args.compare_tree else ""))
    for name, r in result["models"].items():
        for provider in args.also_provider:
            o = r[f"provider_{provider}"]
            print(f"{name} with --provider {provider}: " + (f"could not run: {o['error']}" if "error" in o else
                  f"{o['predict_best_images_per_second']:,.0f} img/s best of {args.repeat}, against "
                  f"{r['predict_best_images_per_second']:,.0f} on the default provider"))
    if not result["user_digits"]:
        return
    print(f"user-style digits ({args.per_variant} per variant), accuracy:")
    variants = list(next(iter(result["user_digits"].values())))
    print(f"{'variant':<14} " + " ".join(f"{m:>20}" for m in result["user_digits"]))
    for v in variants:
        print(f"{v:<14} " + " ".join(f"{result['user_digits'][m][v]:>20.2%}" for m in result["user_digits"]))


if __name__ == "__main__":
    main()
