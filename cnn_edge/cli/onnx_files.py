"""Commands on ONNX files and the checkpoints they come from: `calibrate`, `export`, `vectors`, `validate`, `quantize`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..core import artifacts
from ..release.quantize import FORMATS, INT8_TARGETS, METHODS, TYPES, QuantConfig, portable_format
from ..runtime.compat import DEFAULT_TARGETS, TARGETS
from .app import DataDirOpt, JsonOpt, Precision, PrecisionOpt, Provider, app, choices, handle_errors, print_json

Target = choices("Target", TARGETS)
Method = choices("Method", METHODS)
QuantFormat = choices("QuantFormat", FORMATS)
QuantType = choices("QuantType", TYPES)
Int8Target = choices("Int8Target", tuple(INT8_TARGETS))
QUANT = QuantConfig()  # the library's defaults are the CLI's
FP32_MODEL = artifacts.RELEASE_DIR / artifacts.fp32_file(artifacts.SPEC_ARCH)


@app.command()
@handle_errors
def export(
    checkpoint: Path = typer.Argument(..., help="A .safetensors checkpoint (its .json beside it)."),
    output: Path = typer.Option(FP32_MODEL, "-o", "--output", help="ONNX file to write."),
    vectors: bool = typer.Option(True, "--vectors/--no-vectors", help="Also write test_vectors.json beside the model (needs MNIST's test set)."),
    data_dir: Optional[str] = DataDirOpt,
    as_json: bool = JsonOpt,
):
    """Export a checkpoint to one self-contained ONNX file, checked with onnx.checker, and its test vectors."""
    from ..release.export import export_onnx
    from ..release.vectors import write_test_vectors
    from ..training.data import load_split
    from .progress import status

    vectors_path = output.parent / artifacts.VECTORS_FILE
    with status("exporting", enabled=not as_json):
        report = export_onnx(checkpoint, output)
        if vectors:
            write_test_vectors(checkpoint, vectors_path, load_split("test", data_dir))
    if as_json:
        print_json({**vars(report), "test_vectors": vectors_path if vectors else None})
        return
    typer.echo(f"wrote {report.output} ({report.size_bytes:,} bytes, opset {report.opset}, IR {report.ir_version}); "
               f"onnx.checker passed; ORT vs PyTorch smoke diff {report.smoke_max_abs_diff:.2g}")
    if vectors:
        typer.echo(f"wrote {vectors_path}: PyTorch's outputs for the test vectors' MNIST test images")


@app.command()
@handle_errors
def calibrate(
    checkpoint: Path = typer.Argument(..., help="A .safetensors checkpoint as training wrote it (its .json beside it)."),
    output: Path = typer.Option(..., "-o", "--output", help="The calibrated checkpoint to write (NAME.safetensors; NAME.json beside it)."),
    data_dir: Optional[str] = DataDirOpt,
    as_json: bool = JsonOpt,
):
    """Fit a temperature on the checkpoint's validation split (NLL) and write the network with its closing fc divided
    by it; `cnn-edge export` makes its calibrated ONNX model. The pipeline does this itself."""
    from ..release.calibrate import calibrate_checkpoint, validation_split
    from ..training.data import load_split
    from .progress import status

    val = validation_split(checkpoint, load_split("train", data_dir))
    with status("calibrating", enabled=not as_json):
        fit = calibrate_checkpoint(checkpoint, output, val)
    if as_json:
        print_json(fit)
        return
    typer.echo(f"wrote {fit.checkpoint}: temperature {fit.temperature:g}, fitted on {fit.samples:,} validation images "
               f"(NLL {fit.nll_before:.4f} -> {fit.nll_after:.4f}, ECE {fit.ece_before:.2%} -> {fit.ece_after:.2%})")


@app.command("vectors")
@handle_errors
def vectors_cmd(
    checkpoint: Path = typer.Argument(..., help="A .safetensors checkpoint."),
    output: Path = typer.Option(artifacts.RELEASE_DIR / artifacts.VECTORS_FILE, "-o", "--output", help="JSON file to write."),
    data_dir: Optional[str] = DataDirOpt,
):
    """Write test vectors only: MNIST test images with the outputs PyTorch computed for them."""
    from ..release.vectors import write_test_vectors
    from ..training.data import load_split

    typer.echo(f"wrote {write_test_vectors(checkpoint, output, load_split('test', data_dir))}")


def _print_validation(report) -> None:
    precision = f", precision {report.precision}" if report.precision else ""
    typer.echo(f"{report.model} on {report.provider}{precision}: accuracy {report.accuracy:.2%} on "
               f"{report.samples:,} test images")
    typer.echo("per class: " + "  ".join(f"{i}:{a:.2%}" for i, a in enumerate(report.per_class_accuracy)))
    typer.echo("confusion matrix (rows true, columns predicted):")
    for i, row in enumerate(report.confusion_matrix):
        typer.echo(f"  {i} " + " ".join(f"{c:5d}" for c in row))
    _print_calibration(report)
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


def _print_calibration(report) -> None:
    c, r = report.calibration, report.robustness
    if c is not None:
        undone = ("not calibrated (no temperature in its metadata)" if c.temperature is None else
                  f"temperature {c.temperature:g} folded in; without it ECE {c.ece_uncalibrated:.2%}, NLL {c.nll_uncalibrated:.4f}")
        typer.echo(f"calibration ({c.bins} confidence bins): ECE {c.ece:.2%}, NLL {c.nll:.4f}, mean confidence "
                   f"{c.mean_confidence:.2%}; {undone}")
    if r is not None:
        typer.echo(f"robustness: {r.samples:,} test digits per transform, fed as they are (seed {r.seed}):")
        width = max(len(t.transform) for t in r.transforms)
        uncal = r.temperature is not None
        typer.echo(f"  {'transform':<{width}}  {'accuracy':>8}  {'ECE':>6}" + ("  ECE without T" if uncal else "")
                   + f"  {'confidence':>10}  what")
        for t in r.transforms:
            typer.echo(f"  {t.transform:<{width}}  {t.accuracy:>8.2%}  {t.ece:>6.2%}"
                       + (f"  {t.ece_uncalibrated:>13.2%}" if uncal else "") + f"  {t.mean_confidence:>10.2%}  {t.what}")


@app.command()
@handle_errors
def validate(
    model: Path = typer.Argument(..., help="ONNX model to validate."),
    checkpoint: Optional[Path] = typer.Option(None, help="Also compare with this PyTorch checkpoint."),
    data_dir: Optional[str] = DataDirOpt,
    limit: Optional[int] = typer.Option(None, help="Use the first N test images only."),
    target: list[Target] = typer.Option(list(DEFAULT_TARGETS), "--target", help="Runtimes the model must load in (warns when its IR version, opset, operators or Q/DQ types are beyond them)."),
    provider: Provider = typer.Option("cpu", "--provider", help="ONNX Runtime provider to validate on: the one you deploy with (auto, cpu, cuda, tensorrt, openvino)."),
    precision: Precision = PrecisionOpt,
    robustness: bool = typer.Option(False, "--robustness", help="Also score the model on the test digits rotated, shifted, scaled, thickened, thinned, blurred and noisy (accuracy and ECE per transform; deterministic)."),
    as_json: bool = JsonOpt,
):
    """Accuracy and calibration (ECE) on the MNIST test set; with --robustness, on transformed test digits too;
    with --checkpoint, parity with PyTorch (exit 1 if it fails), on --provider."""
    from ..release.validate import validate_model
    from ..training.data import load_split
    from .progress import status

    with status("validating", enabled=not as_json):
        report = validate_model(model, load_split("test", data_dir), checkpoint=checkpoint, limit=limit,
                                targets=tuple(t.value for t in target), provider=provider.value,
                                precision=precision.value, robustness=robustness)
    print_json(report) if as_json else _print_validation(report)
    report.raise_for_failures(checkpoint)


def _print_quant_report(r) -> None:
    fp, i8 = r.fp32_speed, r.int8_speed
    typer.echo(f"int8 format: {portable_format(r.config)}")
    typer.echo(f"{'':<28} {'fp32':>12} {'int8':>12}")
    typer.echo(f"{'file size (bytes)':<28} {r.fp32_bytes:>12,} {r.int8_bytes:>12,}   int8 = {r.size_ratio:.1%} of fp32")
    typer.echo(f"{'test accuracy':<28} {r.test.fp32_accuracy:>12.2%} {r.test.int8_accuracy:>12.2%}   drop {r.test.drop_pp:.3f} points")
    if fp is None or i8 is None:
        typer.echo(f"{'speed':<28} {'not measured':>12} {'not measured':>12}   (--speed-seconds 0)")
    else:
        typer.echo(f"{'latency batch 1, p50 (ms)':<28} {fp.batch_1.p50_ms:>12.3f} {i8.batch_1.p50_ms:>12.3f}")
        typer.echo(f"{'throughput batch 256 (img/s)':<28} {fp.batch_256.images_per_second:>12,.0f} "
                   f"{i8.batch_256.images_per_second:>12,.0f}   int8 = {r.throughput_ratio:.2f}x fp32")
    typer.echo(f"top-1 agreement int8 vs fp32 on {r.test.samples:,} test images: {r.test.top1_agreement:.2%}")
    g = r.guard
    typer.echo(f"guard ({g.samples:,} held-out training images): drop {g.drop_pp:.3f} points, limit {g.max_drop_pp:g}, "
               f"{len(g.attempts)} attempt(s)")
    for node, why in r.nodes_in_float.items():
        typer.echo(f"  kept in float: {node}: {why}")
    if r.layer_sqnr_db:
        typer.echo("per-activation SQNR of int8 vs fp32 (dB, higher is better):")
        typer.echo("  " + "  ".join(f"{k} {v:.1f}" for k, v in r.layer_sqnr_db.items()))


@app.command()
@handle_errors
def quantize(
    model: Path = typer.Argument(..., help="The fp32 ONNX model."),
    output: Path = typer.Option(artifacts.RELEASE_DIR / artifacts.int8_file(artifacts.SPEC_ARCH), "-o", "--output", help="int8 ONNX file to write."),
    calibration: int = typer.Option(QUANT.calibration, help="Training images used for calibration."),
    method: Method = typer.Option(QUANT.method, help="How activation ranges are calibrated."),
    per_channel: bool = typer.Option(QUANT.per_channel, "--per-channel/--per-tensor", help="Weight scales per output channel or per tensor."),
    fmt: QuantFormat = typer.Option(QUANT.format, "--format", help="qdq (Q/DQ pairs around float ops, standard ONNX: every runtime) or qoperator (QLinearConv, com.microsoft.QGemm: ONNX Runtime only)."),
    target: Int8Target = typer.Option(QUANT.target, "--target", help="The runtimes the int8 form is made for: ort (ONNX Runtime in Python, Node.js and the browser, and OpenVINO: uint8 activations, the fastest on ONNX Runtime's CPU kernels) or tensorrt (int8 activations with zero points 0, float biases: all TensorRT's Q/DQ takes)."),
    activation_type: Optional[QuantType] = typer.Option(None, help="Activation integer type (default: the target's)."),
    weight_type: QuantType = typer.Option(QUANT.weight_type, help="Weight integer type."),
    symmetric: Optional[bool] = typer.Option(None, "--symmetric/--asymmetric", help="int8 activations with zero points of 0 (TensorRT needs them); uint8 ones are always asymmetric (default: the target's)."),
    quantize_bias: Optional[bool] = typer.Option(None, "--quantize-bias/--float-bias", help="int32 biases behind DequantizeLinear (TensorRT refuses them) or biases in float (default: the target's, float)."),
    dynamic: bool = typer.Option(QUANT.dynamic, "--dynamic", help="Weight-only dynamic quantization instead of static."),
    max_drop: float = typer.Option(QUANT.max_drop, help="Largest accuracy drop allowed on the guard split, in percentage points."),
    guard_size: int = typer.Option(QUANT.guard_size, help="Training images held out for the guard (the split training validated on)."),
    speed_seconds: float = typer.Option(QUANT.speed_seconds, "--speed-seconds", help="Seconds each model is timed per batch size for the report (0: not timed)."),
    data_dir: Optional[str] = DataDirOpt,
    as_json: bool = JsonOpt,
):
    """Quantize to int8 with ONNX Runtime, keeping nodes in float until accuracy holds."""
    from ..release.quantize import quantize_model
    from ..training.data import load_mnist
    from .progress import status

    cfg = QuantConfig.for_target(target.value, calibration=calibration, method=method.value, per_channel=per_channel,
                                 format=fmt.value, activation_type=activation_type and activation_type.value,
                                 weight_type=weight_type.value, symmetric=symmetric, quantize_bias=quantize_bias,
                                 dynamic=dynamic, max_drop=max_drop, guard_size=guard_size, speed_seconds=speed_seconds)
    data = load_mnist(data_dir)
    with status("quantizing", enabled=not as_json):
        report = quantize_model(model, output, cfg, data.train, data.test)
    print_json(report) if as_json else _print_quant_report(report)
