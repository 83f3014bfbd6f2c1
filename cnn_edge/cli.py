"""The `cnn-edge` command: parse options, call one library function, print the result.

Heavy libraries (torch, onnxruntime) are imported inside the commands that need them, so
`--help` and `info` answer at once.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Optional

import typer

from .constants import DEFAULT_VAL_SIZE
from .contract import INT8_MAX_ACCURACY_DROP_PP
from .errors import CnnEdgeError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Train the spec MNIST CNN, export it to ONNX, validate it, and run it anywhere.",
)

DataDirOpt = typer.Option(None, "--data-dir", help="MNIST folder (4 IDX files, gzipped or not). Default: $CNN_EDGE_DATA, then ./datasets (downloaded).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(fn):
    """Our errors become one line on stderr and their exit code; Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CnnEdgeError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except OSError as exc:  # disk full, permissions changed mid-run: still one line
            raise _fail(f"{exc.strerror or exc} ({exc.filename or 'file system'})", 2) from None
        except KeyboardInterrupt:
            raise _fail("interrupted; rerun the same command with --resume to continue where it stopped", 130) from None

    return wrapper


def _print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


@app.command()
@handle_errors
def info(
    arch: str = typer.Option("spec", "--arch", help="Architecture to describe: spec, notebook-cnn, mlp or logreg."),
    as_json: bool = JsonOpt,
):
    """Per-layer output shape and trainable parameters, with the formulas."""
    from dataclasses import asdict

    from .arch import layer_table

    rows = layer_table(arch)
    total = sum(r.params for r in rows)
    if as_json:
        _print_json({"arch": arch, "layers": [asdict(r) for r in rows], "total_params": total})
        return
    typer.echo(f"{'layer':<10} {'output shape':<14} {'parameters':>10}  formula")
    for r in rows:
        shape = "x".join(str(d) for d in r.output_shape)
        typer.echo(f"{r.name:<10} {shape:<14} {r.params:>10,}  {r.formula}")
    typer.echo(f"{'total':<10} {'':<14} {total:>10,}  trainable parameters")
    typer.echo("conv: ((k*k*d)+1)*n  (kernel k, input channels d, filters n); fc: (n+1)*m; w_out = (w_in - k + 2p)/s + 1")


def _train_config(recipe, epochs, batch_size, lr, seed, limit_train, val_size):
    from .train import make_config

    return make_config(recipe, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                       limit_train=limit_train, val_size=val_size)


RecipeOpt = typer.Option("default", help="'default' (best recipe) or 'seed' (the notebook: Adam 1e-3, batch 100, 3 epochs).")
EpochsOpt = typer.Option(None, help="Epochs (default: the recipe's).")
BatchOpt = typer.Option(None, "--batch-size", help="Batch size (default: the recipe's).")
LrOpt = typer.Option(None, help="Peak learning rate (default: the recipe's).")
SeedOpt = typer.Option(0, help="Random seed: same seed, same device, same result.")
DeviceOpt = typer.Option("auto", help="auto, cpu or cuda.")
LimitOpt = typer.Option(None, "--limit-train", help="Train on the first N images only (smoke runs).")
ValOpt = typer.Option(None, "--val-size", help="Images held out of the training set for model selection (default: the recipe's; 0: none, the last epoch wins).")
ResumeOpt = typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bar.")
ArchOpt = typer.Option("spec", "--arch", help="Architecture: spec (the 4-conv spec CNN), notebook-cnn, mlp or logreg.")


@app.command("train")
@handle_errors
def train_cmd(
    out: Path = typer.Option(Path("runs/latest"), "--out", help="Run folder: checkpoints land here."),
    arch: str = ArchOpt, recipe: str = RecipeOpt, epochs: Optional[int] = EpochsOpt, batch_size: Optional[int] = BatchOpt,
    lr: Optional[float] = LrOpt, seed: int = SeedOpt, device: str = DeviceOpt,
    data_dir: Optional[str] = DataDirOpt, limit_train: Optional[int] = LimitOpt,
    val_size: Optional[int] = ValOpt, resume: bool = ResumeOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Train a network (--arch); writes OUT/model.safetensors (+ .json) and OUT/last.* each epoch."""
    from dataclasses import asdict

    from .model import ModelConfig
    from .progress import training_bar
    from .train import train

    model_config = ModelConfig(arch)
    cfg = _train_config(recipe, epochs, batch_size, lr, seed, limit_train, val_size)
    with training_bar(not quiet) as bar:
        result = train(cfg, out, data_dir, device, model_config, resume=resume, progress=bar)
    if as_json:
        _print_json({"checkpoint": str(result.checkpoint), "test_accuracy": result.test_accuracy,
                     "best_epoch": result.best_epoch, "history": [asdict(h) for h in result.history]})
    else:
        typer.echo(f"checkpoint {result.checkpoint} (epoch {result.best_epoch}): test accuracy {result.test_accuracy:.2%}")


@app.command()
@handle_errors
def export(
    checkpoint: Path = typer.Argument(..., help="A .safetensors checkpoint (its .json beside it)."),
    output: Path = typer.Option(Path("exports/mnist_cnn.onnx"), "-o", "--output", help="ONNX file to write."),
    vectors: bool = typer.Option(True, "--vectors/--no-vectors", help="Also write test_vectors.json beside the model (needs MNIST's test set)."),
    data_dir: Optional[str] = DataDirOpt,
    as_json: bool = JsonOpt,
):
    """Export a checkpoint to one self-contained ONNX file, checked with onnx.checker, and its test vectors."""
    from dataclasses import asdict

    from .export import export_onnx
    from .progress import status
    from .vectors import write_test_vectors

    vectors_path = output.parent / "test_vectors.json"
    with status("exporting", enabled=not as_json):
        report = export_onnx(checkpoint, output)
        if vectors:
            write_test_vectors(checkpoint, vectors_path, data_dir)
    if as_json:
        _print_json({**asdict(report), "test_vectors": str(vectors_path) if vectors else None})
    else:
        typer.echo(f"wrote {report.output} ({report.size_bytes:,} bytes, opset {report.opset}, IR {report.ir_version}); "
                   f"onnx.checker passed; ORT vs PyTorch smoke diff {report.smoke_max_abs_diff:.2g}")
        if vectors:
            typer.echo(f"wrote {vectors_path}: PyTorch's outputs for 40 MNIST test images")


@app.command("vectors")
@handle_errors
def vectors_cmd(
    checkpoint: Path = typer.Argument(..., help="A .safetensors checkpoint."),
    output: Path = typer.Option(Path("exports/test_vectors.json"), "-o", "--output", help="JSON file to write."),
    data_dir: Optional[str] = DataDirOpt,
):
    """Write test vectors only: MNIST test images with the outputs PyTorch computed for them."""
    from .vectors import write_test_vectors

    typer.echo(f"wrote {write_test_vectors(checkpoint, output, data_dir)}")


def _print_validation(report) -> None:
    typer.echo(f"{report.model}: accuracy {report.accuracy:.2%} on {report.samples:,} test images")
    typer.echo("per class: " + "  ".join(f"{i}:{a:.2%}" for i, a in enumerate(report.per_class_accuracy)))
    typer.echo("confusion matrix (rows true, columns predicted):")
    for i, row in enumerate(report.confusion_matrix):
        typer.echo(f"  {i} " + " ".join(f"{c:5d}" for c in row))
    p = report.parity
    if p is not None:
        limits = (f"tolerance {p.tolerance:g}" if p.tolerance is not None else
                  f"int8: top-1 agreement >= {p.min_top1_agreement:.2%}, accuracy drop <= {p.max_accuracy_drop_pp:g} points")
        typer.echo(f"parity with PyTorch ({limits}): PyTorch accuracy {p.torch_accuracy:.2%}, "
                   f"drop {p.accuracy_drop_pp:.3f} points")
        for r in p.per_batch_size:
            typer.echo(f"  batch {r.batch_size:>3}: top-1 agreement {r.top1_agreement:.2%}, max abs diff "
                       f"probabilities {r.max_abs_diff_probabilities:.2g}, logits {r.max_abs_diff_logits:.2g}")
        typer.echo("parity: " + ("PASSED" if not p.failures else "FAILED"))
    for c in report.compatibility:
        typer.echo(f"{'compatible' if c.ok else 'warning'}: {c.message}", err=not c.ok)


@app.command()
@handle_errors
def validate(
    model: Path = typer.Argument(..., help="ONNX model to validate."),
    checkpoint: Optional[Path] = typer.Option(None, help="Also compare with this PyTorch checkpoint."),
    data_dir: Optional[str] = DataDirOpt,
    limit: Optional[int] = typer.Option(None, help="Use the first N test images only."),
    target: list[str] = typer.Option(["node", "web"], "--target", help="Runtimes the model must load in (warns when it exceeds their IR version or opset): node, web, ort-1.17, ort-1.14."),
    as_json: bool = JsonOpt,
):
    """Accuracy on the MNIST test set; with --checkpoint, parity with PyTorch (exit 1 if it fails)."""
    from .progress import status
    from .validate import validate_model

    with status("validating", enabled=not as_json):
        report = validate_model(model, checkpoint, data_dir, limit, tuple(target))
    _print_json(report.to_dict()) if as_json else _print_validation(report)
    report.raise_for_failures()


def _print_quant_report(r: dict) -> None:
    sp = r["speed"]
    typer.echo(f"{'':<28} {'fp32':>12} {'int8':>12}")
    typer.echo(f"{'file size (bytes)':<28} {r['size_bytes']['fp32']:>12,} {r['size_bytes']['int8']:>12,}   int8 = {r['size_ratio']:.1%} of fp32")
    typer.echo(f"{'test accuracy':<28} {r['test_accuracy']['fp32']:>12.2%} {r['test_accuracy']['int8']:>12.2%}   drop {r['test_accuracy_drop_pp']:.3f} points")
    typer.echo(f"{'latency batch 1, p50 (ms)':<28} {sp['fp32']['batch_1']['p50_ms']:>12.3f} {sp['int8']['batch_1']['p50_ms']:>12.3f}")
    typer.echo(f"{'throughput batch 256 (img/s)':<28} {sp['fp32']['batch_256']['images_per_second']:>12,.0f} "
               f"{sp['int8']['batch_256']['images_per_second']:>12,.0f}   int8 = {r['throughput_ratio_batch_256']:.2f}x fp32")
    typer.echo(f"top-1 agreement int8 vs fp32 on {r['test_samples']:,} test images: {r['test_top1_agreement']:.2%}")
    g = r["guard"]
    typer.echo(f"guard ({g['samples']:,} held-out training images): drop {g['drop_pp']:.3f} points, limit {g['max_drop_pp']:g}, {g['attempts']} attempt(s)")
    for node, why in r["nodes_in_float"].items():
        typer.echo(f"  kept in float: {node}: {why}")
    if r["layer_sqnr_db"]:
        typer.echo("per-activation SQNR of int8 vs fp32 (dB, higher is better):")
        typer.echo("  " + "  ".join(f"{k} {v:.1f}" for k, v in r["layer_sqnr_db"].items()))


@app.command()
@handle_errors
def quantize(
    model: Path = typer.Argument(..., help="The fp32 ONNX model."),
    output: Path = typer.Option(Path("exports/mnist_cnn.int8.onnx"), "-o", "--output", help="int8 ONNX file to write."),
    calibration: int = typer.Option(3000, help="Training images used for calibration."),
    method: str = typer.Option("minmax", help="Calibration: minmax, entropy or percentile."),
    per_channel: bool = typer.Option(False, "--per-channel/--per-tensor", help="Weight scales per output channel or per tensor."),
    fmt: str = typer.Option("qoperator", "--format", help="qoperator or qdq."),
    activation_type: str = typer.Option("uint8", help="uint8 or int8."),
    weight_type: str = typer.Option("int8", help="uint8 or int8."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Weight-only dynamic quantization instead of static."),
    max_drop: float = typer.Option(INT8_MAX_ACCURACY_DROP_PP, help="Largest accuracy drop allowed on the guard split, in percentage points."),
    guard_size: int = typer.Option(DEFAULT_VAL_SIZE, help="Training images held out for the guard (the split training validated on)."),
    data_dir: Optional[str] = DataDirOpt,
    as_json: bool = JsonOpt,
):
    """Quantize to int8 with ONNX Runtime, keeping nodes in float until accuracy holds."""
    from .progress import status
    from .quantize import QuantConfig, quant_report, quantize_model

    cfg = QuantConfig(calibration=calibration, method=method, per_channel=per_channel, format=fmt,
                      activation_type=activation_type, weight_type=weight_type, dynamic=dynamic, max_drop=max_drop,
                      guard_size=guard_size)
    with status("quantizing", enabled=not as_json):
        result = quantize_model(model, output, cfg, data_dir)
        report = quant_report(model, result)
    _print_json(report) if as_json else _print_quant_report(report)


@app.command()
@handle_errors
def pipeline(
    out_dir: Path = typer.Option(Path("exports"), "--out-dir", help="Where the released files go."),
    run_dir: Path = typer.Option(Path("runs/pipeline"), "--run-dir", help="Training run folder."),
    arch: str = ArchOpt, recipe: str = RecipeOpt, epochs: Optional[int] = EpochsOpt, batch_size: Optional[int] = BatchOpt,
    lr: Optional[float] = LrOpt, seed: int = SeedOpt, device: str = DeviceOpt,
    data_dir: Optional[str] = DataDirOpt, limit_train: Optional[int] = LimitOpt,
    val_size: Optional[int] = ValOpt, resume: bool = ResumeOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Train, export, validate, quantize; release into --out-dir only when parity holds."""
    from .model import ModelConfig
    from .pipeline import run_pipeline
    from .progress import training_bar

    model_config = ModelConfig(arch)
    cfg = _train_config(recipe, epochs, batch_size, lr, seed, limit_train, val_size)
    say = (lambda s: None) if as_json or quiet else (lambda s: typer.echo(f"== {s}", err=True))
    with training_bar(not quiet) as bar:
        summary = run_pipeline(cfg, run_dir, out_dir, data_dir, device, model_config, resume=resume,
                               progress=bar, on_stage=say)
    if as_json:
        _print_json(summary)
    else:
        v = summary["validation"]
        typer.echo(f"released {', '.join(f['name'] for f in summary['files'])} and the model card in {out_dir}: "
                   f"test accuracy {v['accuracy']:.2%}, parity top-1 {v['parity']['top1_agreement']:.2%}, "
                   f"max abs diff {v['parity']['max_abs_diff_probabilities']:.2g}; int8 test accuracy "
                   f"{summary['quantization']['test_accuracy']['int8']:.2%}, {summary['quantization']['size_ratio']:.1%} of the fp32 size")




# The other commands live in their own modules; importing them registers them on `app`.
from . import cli_compare, cli_runtime  # noqa: E402,F401

def main() -> None:
    app()
