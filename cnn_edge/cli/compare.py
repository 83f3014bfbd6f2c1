"""`cnn-edge compare`: every architecture through the same pipeline, one table."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..core.references import NOTEBOOK_CNN_ACCURACY, NOTEBOOK_LOGREG_ACCURACY
from ..tools.compare import CompareConfig
from .app import DataDirOpt, JsonOpt, QuietOpt, app, handle_errors, print_json, stage_printer
from .training import Device, DeviceOpt, EpochsOpt, Recipe, SeedOpt

COMPARE = CompareConfig()  # the library's defaults are the CLI's


def _print_compare(report) -> None:
    t = report.train
    typer.echo(f"recipe {t.recipe}: {t.epochs} epoch(s), batch {t.batch_size}, lr {t.lr:g}; {report.machine}")
    width = max([13, *(len(r.arch) for r in report.results)])
    typer.echo(f"{'arch':<{width}} {'params':>9} {'test acc':>9} {'int8 acc':>9} {'s/epoch':>8} {'train s':>8} "
               f"{'fp32 KB':>8} {'int8 KB':>8} {'b1 ms':>7} {'b256 img/s':>11} {'int8 img/s':>11}")
    for r in report.results:
        typer.echo(f"{r.arch:<{width}} {r.params:>9,} {r.test_accuracy:>9.2%} {r.int8_test_accuracy:>9.2%} "
                   f"{r.train_seconds / len(r.epoch_seconds):>8.1f} {r.train_seconds:>8.1f} {r.onnx_bytes / 1024:>8,.0f} "
                   f"{r.int8_bytes / 1024:>8,.0f} {r.latency_batch1_ms:>7.3f} {r.throughput_batch256:>11,.0f} "
                   f"{r.int8_throughput_batch256:>11,.0f}")
    typer.echo(f"the seed notebook reported: logistic regression {NOTEBOOK_LOGREG_ACCURACY:.1%}, "
               f"its 2-conv CNN {NOTEBOOK_CNN_ACCURACY:.2%} after 3 epochs")


@app.command()
@handle_errors
def compare(
    archs: str = typer.Option(",".join(COMPARE.archs), "--archs", help="Comma-separated architectures: names, layer strings (conv8-pool-fc10) or .json/.toml files (docs/architectures.md)."),
    recipe: Recipe = typer.Option(COMPARE.recipe, help="Training recipe for all: seed (the notebook's: Adam 1e-3, batch 100, 3 epochs) or default."),
    epochs: Optional[int] = EpochsOpt, seed: int = SeedOpt, device: Device = DeviceOpt,
    quick: bool = typer.Option(False, "--quick", help="Smoke run: 2,000 training images, one epoch, each model timed 0.25 s per batch size."),
    run_dir: Path = typer.Option(Path("runs/compare"), "--run-dir", help="Each architecture's run and release go to RUN_DIR/ARCH."),
    data_dir: Optional[str] = DataDirOpt,
    plot: Optional[Path] = typer.Option(None, "--plot", help="Accuracy against training time and against parameters, as PNG."),
    resume: bool = typer.Option(False, "--resume", help="Continue the runs in --run-dir (after Ctrl-C, or to re-report)."),
    quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Train, export, validate and quantize each architecture the same way; one table of the results."""
    from ..core.files import atomic_write_bytes, check_writable
    from ..tools.compare import plot_png, run_compare
    from ..training.data import load_mnist
    from ..training.recipes import make_config
    from .progress import training_progress

    cfg = CompareConfig(archs=tuple(a.strip() for a in archs.split(",") if a.strip()), recipe=recipe.value,
                        epochs=epochs, seed=seed, quick=quick, device=device.value, resume=resume)
    if plot is not None:
        check_writable(plot)
    data = load_mnist(data_dir)  # read once, shared by every architecture's pipeline
    epochs = 1 if quick else make_config(recipe.value, epochs=epochs).epochs
    with training_progress(epochs=epochs, enabled=not quiet and not as_json) as tp:
        report = run_compare(cfg, data, run_dir, progress=tp and tp.step, on_epoch=tp and tp.epoch_end,
                             on_stage=stage_printer(not (as_json or quiet)))
    if plot is not None:
        atomic_write_bytes(plot, plot_png(report))
    print_json(report) if as_json else _print_compare(report)
