"""Recipe ablation: the default recipe, then one ingredient changed at a time, trained at a reduced
budget over several seeds, in one run; prints a markdown table (docs/training.md holds one).

Each row trains the spec network with `train()` (the real loop) on the first --limit-train
training images (--val-size of them held out for the validation figure) for --epochs epochs (the
schedule rows scale that), and scores the selected model on the MNIST test images (all 10,000, or
the first --test-size). The
figures are for choosing ingredients, not for quoting as the recipe's accuracy: at a small budget
strong augmentation pays less than over a full run, and the weight average (EMA) is still in its
warm-up ramp.

    python scripts/ablate_recipe.py --data-dir ../shared/data/mnist [--limit-train 4000]
        [--val-size 400] [--epochs 3] [--test-size N] [--seeds 0 1 2] [--only baseline shear] [--json-out F]
    python scripts/ablate_recipe.py --data-dir ../shared/data/mnist --cost [--limit-train 6000]

--cost times one training epoch (augmentation, forward, backward, optimizer; no evaluation) of
the default recipe against each new ingredient and all of them, alternating, in process CPU
seconds (on a shared machine the wall clock measures the neighbours as much as the loop).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnn_edge.core.machine import machine_description  # noqa: E402
from cnn_edge.training.data import MnistSplit, load_mnist  # noqa: E402
from cnn_edge.training.model import ModelConfig  # noqa: E402
from cnn_edge.training.recipes import make_config  # noqa: E402
from cnn_edge.training.train import train  # noqa: E402

SHEAR = dict(max_shear=15.0)
ELASTIC = dict(elastic_alpha=34.0, elastic_sigma=4.0)
STROKE = dict(stroke_prob=0.5)
ERASE = dict(erase_prob=0.5, erase_area=0.15)
NOISE = dict(noise_prob=0.5, noise_sigma=32.0)

# name -> (what it changes, overrides of the default recipe; "epochs" as a factor of --epochs)
ROWS: dict[str, tuple[str, dict]] = {
    "baseline": ("the default recipe (rotation 10°, shift 2 px, scale 10%, EMA 0.999)", {}),
    "shear": ("+ shear ±15°", SHEAR),
    "elastic": ("+ elastic alpha 34, sigma 4", ELASTIC),
    "stroke": ("+ stroke width, p 0.5", STROKE),
    "erase": ("+ random erasing, p 0.5, area ≤ 15%", ERASE),
    "smoothing": ("label smoothing 0.1", dict(label_smoothing=0.1)),
    "longer": ("epochs × 5/3", dict(epochs=5 / 3)),
    "shorter": ("epochs × 2/3", dict(epochs=2 / 3)),
    "no-ema": ("EMA off", dict(ema_decay=0.0)),
    "shear+elastic+stroke": ("+ shear, elastic, stroke width together", {**SHEAR, **ELASTIC, **STROKE}),
    "shear+stroke": ("+ shear and stroke width (at --epochs)", {**SHEAR, **STROKE}),
    "noise": ("+ pixel noise, p 0.5, sigma up to 32", NOISE),
    "v2": ("+ shear, stroke width and pixel noise (recipe v2's ingredients, at --epochs)", {**SHEAR, **STROKE, **NOISE}),
}


def config(row: str, args: argparse.Namespace, seed: int):
    overrides = dict(ROWS[row][1])
    epochs = max(1, round(args.epochs * overrides.pop("epochs", 1)))
    return make_config("default", epochs=epochs, limit_train=args.limit_train, val_size=args.val_size,
                       seed=seed, **overrides)


def ablate(args: argparse.Namespace, data) -> list[dict]:
    results = []
    for row in args.only or ROWS:
        runs = []
        for seed in args.seeds:
            cfg = config(row, args, seed)
            t0, c0 = time.perf_counter(), time.process_time()
            with tempfile.TemporaryDirectory() as out:
                r = train(cfg, Path(out), data, device="cpu", model_config=ModelConfig())
            runs.append(dict(seed=seed, epochs=cfg.epochs, test=r.test_accuracy, val=r.best_val_accuracy,
                             wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0,
                             train_wall_s=sum(h.seconds for h in r.history)))
            print(f"  {row} seed {seed}: test {r.test_accuracy:.2%} val {r.best_val_accuracy:.2%} "
                  f"({runs[-1]['wall_s']:.0f} s)", file=sys.stderr, flush=True)
        results.append(dict(row=row, what=ROWS[row][0], runs=runs))
    return results


def sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def table(results: list[dict]) -> str:
    base = next((r for r in results if r["row"] == "baseline"), None)
    base_mean = statistics.mean(x["test"] for x in base["runs"]) if base else None
    lines = ["| row | change | epochs | test acc mean ± sd | Δ vs baseline | test acc per seed | val acc mean ± sd | train wall s/run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        test, val = [x["test"] for x in r["runs"]], [x["val"] for x in r["runs"]]
        delta = "" if base_mean is None or r is base else f"{(statistics.mean(test) - base_mean) * 100:+.2f} pt"
        lines.append(f"| {r['row']} | {r['what']} | {r['runs'][0]['epochs']} | {statistics.mean(test):.2%} ± {sd(test) * 100:.2f} "
                     f"| {delta} | {' / '.join(f'{t:.2%}' for t in test)} | {statistics.mean(val):.2%} ± {sd(val) * 100:.2f} "
                     f"| {statistics.mean(x['train_wall_s'] for x in r['runs']):.0f} |")
    return "\n".join(lines)


def cost(args: argparse.Namespace, data, rounds: int = 3) -> str:
    """CPU seconds of one training epoch per configuration, the configurations alternating."""
    from cnn_edge.training.train import _split_train_val, _start, _train_epoch

    names = {"baseline": {}, "shear": SHEAR, "elastic": ELASTIC, "stroke": STROKE, "erase": ERASE, "noise": NOISE,
             "v2's three": {**SHEAR, **STROKE, **NOISE}, "all five": {**SHEAR, **ELASTIC, **STROKE, **ERASE, **NOISE}}
    secs: dict[str, list[float]] = {n: [] for n in names}
    split, _ = _split_train_val(data.train, make_config("default", limit_train=args.limit_train, val_size=0))
    for i in range(rounds):
        for name, overrides in names.items():
            cfg = make_config("default", limit_train=args.limit_train, val_size=0, **overrides)
            with tempfile.TemporaryDirectory() as out:
                run = _start(cfg, Path(out), torch.device("cpu"), ModelConfig(), resume=False)
                c0 = time.process_time()
                _train_epoch(run, cfg, i, split, torch.device("cpu"), None)
                secs[name].append(time.process_time() - c0)
    base = statistics.median(secs["baseline"])
    lines = [f"| configuration | CPU s per epoch of {len(split):,} images (median of {rounds}) | vs baseline |", "| --- | --- | --- |"]
    lines += [f"| {n} | {statistics.median(s):.1f} | {statistics.median(s) / base - 1:+.1%} |" for n, s in secs.items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--limit-train", type=int, default=4000)
    ap.add_argument("--val-size", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--test-size", type=int, default=None, help="score on the first N test images (default: all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="+", choices=list(ROWS))
    ap.add_argument("--cost", action="store_true", help="time an epoch of each ingredient instead")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    data = load_mnist(args.data_dir)
    if args.test_size:  # the same first N for every row and seed
        data = replace(data, test=MnistSplit(data.test.images[: args.test_size], data.test.labels[: args.test_size],
                                             data.test.source))
    print(f"command: python scripts/ablate_recipe.py {' '.join(sys.argv[1:])}")
    print(f"machine: {machine_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    if args.cost:
        print(cost(args, data))
    else:
        results = ablate(args, data)
        print(f"spec network, first {args.limit_train:,} training images ({args.val_size:,} of them held out for "
              f"validation), test on the first {len(data.test):,} test images, seeds {' '.join(map(str, args.seeds))}")
        print(table(results))
        if args.json_out:
            args.json_out.write_text(json.dumps(results, indent=1))
    print(f"total wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
