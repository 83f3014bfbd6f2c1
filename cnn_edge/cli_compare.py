"""`cnn-edge compare`: registered on the `cnn-edge` app."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli import DataDirOpt, DeviceOpt, EpochsOpt, JsonOpt, QuietOpt, SeedOpt, _print_json, app, handle_errors


def _print_compare(report) -> None:
    t = report.config["train"]
    typer.echo(f"recipe {t['recipe']}: {t['epochs']} epoch(s), batch {t['batch_size']}, lr {t['lr']:g}; {report.machine}")
    typer.echo(f"{'arch':<13} {'params':>9} {'test acc':>9} {'int8 acc':>9} {'s/epoch':>8} {'train s':>8} "
               f"{'fp32 KB':>8} {'int8 KB':>8} {'b1 ms':>7} {'b256 img/s':>11} {'int8 img/s':>11}")
    for r in report.results:
        typer.echo(f"{r.arch:<13} {r.params:>9,} {r.test_accuracy:>9.2%} {r.int8_test_accuracy:>9.2%} "
                   f"{r.train_seconds / len(r.epoch_seconds):>8.1f} {r.train_seconds:>8.1f} {r.onnx_bytes / 1024:>8,.0f} "
                   f"{r.int8_bytes / 1024:>8,.0f} {r.latency_batch1_ms:>7.3f} {r.throughput_batch256:>11,.0f} "
                   f"{r.int8_throughput_batch256:>11,.0f}")
    typer.echo("the seed notebook reported: logistic regression 91.4%, its 2-conv CNN 98.74% after 3 epochs")


@app.command()
@handle_errors
def compare(
    archs: str = typer.Option("spec,notebook-cnn,mlp,logreg", "--archs", help="Comma-separated architectures."),
    recipe: str = typer.Option("seed", help="Training recipe for all: seed (the notebook's: Adam 1e-3, batch 100, 3 epochs) or default."),
    epochs: Optional[int] = EpochsOpt, seed: int = SeedOpt, device: str = DeviceOpt,
    quick: bool = typer.Option(False, "--quick", help="Smoke run: 2,000 training images, one epoch."),
    run_dir: Path = typer.Option(Path("runs/compare"), "--run-dir", help="Each architecture's run and release go to RUN_DIR/ARCH."),
    data_dir: Optional[str] = DataDirOpt,
    plot: Optional[Path] = typer.Option(None, "--plot", help="Accuracy against training time and against parameters, as PNG."),
    resume: bool = typer.Option(False, "--resume", help="Continue the runs in --run-dir (after Ctrl-C, or to re-report)."),
    quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Train, export, validate and quantize each architecture the same way; one table of the results."""
    from .compare import CompareConfig, plot_png, run_compare
    from .io_utils import atomic_write_bytes, check_writable
    from .progress import training_bar

    cfg = CompareConfig(archs=tuple(a.strip() for a in archs.split(",") if a.strip()), recipe=recipe, epochs=epochs,
                        seed=seed, quick=quick)
    if plot is not None:
        check_writable(plot)
    say = (lambda s: None) if as_json or quiet else (lambda s: typer.echo(f"== {s}", err=True))
    with training_bar(not quiet and not as_json) as bar:
        report = run_compare(cfg, run_dir, data_dir, device, resume=resume, progress=bar, on_stage=say)
    if plot is not None:
        atomic_write_bytes(plot, plot_png(report))
    _print_json(report.to_dict()) if as_json else _print_compare(report)
