"""`diagnose`: the first layer where two forms of one model part."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import DataDirOpt, JsonOpt, Precision, PrecisionOpt, Provider, app, handle_errors, print_json


def _print(report) -> None:
    typer.echo(f"{report.model} ({report.precision}) vs {report.reference} on {report.samples:,} test images; "
               f"final top-1 differs on {report.top1_disagreement:.2%}")
    typer.echo(f"threshold: {report.rule}")
    typer.echo(f"{'layer':<16} {'shape':<16} {'max abs diff':>12} {'SQNR dB':>8} {'over':>6} {'top-1 differs':>13}")
    for r in report.layers:
        mark = "  <- first diverging" if r.layer == report.first_diverging_layer else ""
        typer.echo(f"{r.layer:<16} {'x'.join(map(str, r.shape)):<16} {r.max_abs_diff:>12.3g} {r.sqnr_db:>8.1f} "
                   f"{r.diverged_share:>6.1%} {r.top1_differs_share:>13.2%}{mark}")
    if report.unmapped:
        typer.echo(f"not in the diagnosed model (fused or folded): {', '.join(report.unmapped)}")
    if report.first_diverging_layer is None:
        typer.echo("first diverging layer: none (every layer within its threshold)")
    else:
        typer.echo(f"first diverging layer: {report.first_diverging_layer} (tensor {report.first_diverging_tensor})")
    if report.repro:
        typer.echo(f"wrote the repro to {report.repro} (see its README.md)")


@app.command()
@handle_errors
def diagnose(
    model: Path = typer.Argument(..., help="The ONNX model to diagnose (the fp32 one with --checkpoint)."),
    other: Optional[Path] = typer.Argument(None, help="Its int8 (or other) form: MODEL is then the fp32 reference."),
    checkpoint: Optional[Path] = typer.Option(None, help="Compare MODEL with this PyTorch checkpoint, layer by layer."),
    samples: int = typer.Option(1000, help="MNIST test images to compare on."),
    provider: Optional[Provider] = typer.Option(None, "--provider", help="With --against-provider: run MODEL on this provider..."),
    against_provider: Optional[Provider] = typer.Option(None, "--against-provider", help="...and compare it with MODEL on this one (cpu, cuda, tensorrt, openvino)."),
    precision: Precision = PrecisionOpt,
    repro: Optional[Path] = typer.Option(None, "--repro", help="Write the subgraph up to the first diverging layer, its input and expected output here (a new or empty folder)."),
    data_dir: Optional[str] = DataDirOpt,
    as_json: bool = JsonOpt,
):
    """Find the first layer where two forms of one model part: PyTorch vs ONNX, fp32 vs int8 ONNX, or one model on two providers."""
    from ..core.errors import ConfigError
    from ..release.diagnose import diagnose as run
    from ..training.data import load_split
    from .progress import status

    if (provider is None) != (against_provider is None):
        raise ConfigError("--provider and --against-provider go together: MODEL on one, compared with MODEL on the other")
    if sum(x is not None for x in (other, checkpoint, provider)) != 1:
        raise ConfigError("give one of --checkpoint CKPT (PyTorch vs MODEL), a second model (MODEL vs OTHER), or "
                          "--provider A --against-provider B (MODEL on two providers)")
    if samples < 1:
        raise ConfigError(f"--samples must be at least 1, got {samples}")
    images = load_split("test", data_dir).images[:samples]
    with status("diagnosing", enabled=not as_json):
        if checkpoint is not None:
            report = run(model, images, checkpoint=checkpoint, repro=repro)
        elif provider is not None:
            report = run(model, images, providers=(provider.value, against_provider.value), precision=precision.value,
                         repro=repro)
        else:
            report = run(other, images, reference_model=model, repro=repro)
    print_json(report) if as_json else _print(report)
