"""Commands for the C export: `export-c`, `validate-c`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..core import artifacts
from .app import DataDirOpt, JsonOpt, app, choices, handle_errors, print_json

INT8_MODEL = artifacts.RELEASE_DIR / artifacts.int8_file(artifacts.SPEC_ARCH)
CTarget = choices("CTarget", ("host", "cortex-m4"))


def _print_export(r) -> None:
    typer.echo(f"wrote {len(r.files)} files to {r.output_dir}: {r.architecture}, {r.activation_type} activations, "
               f"{len(r.steps)} steps, {r.macs:,} multiply-adds per image")
    typer.echo(f"weights (const arrays, flash): {r.const_bytes:,} bytes (int8 weights + int32 biases: {r.int8_weight_bytes:,})")
    typer.echo(f"activation arena (static RAM): {r.arena_bytes:,} bytes; convolution windows on the stack: "
               f"{r.patch_bytes:,} bytes (two int16 windows of the largest)")
    typer.echo(f"logits: {r.activation_type}, logit = (q - {r.logit_zero_point}) * {r.logit_scale:.9g}")
    sample = r.output_dir / "digit.pgm" if "digit.pgm" in r.files else "DIGIT.pgm"
    typer.echo(f"build: make -C {r.output_dir}   then: {r.output_dir}/cnn_edge_main {sample}")


def _print_agreement(a) -> None:
    where = f" (test images {', '.join(map(str, a.top1_differs_at))})" if a.top1_differs_at else ""
    typer.echo(f"  {a.first} vs {a.second} on {a.images:,} images: {a.differing_values:,} differing logit values "
               f"({a.differing_images:,} images, at most {a.max_abs_diff} code), top-1 differs on {a.differing_top1:,}{where}")


def _print_validate(r) -> None:
    typer.echo(f"{r.compiler}: {' '.join(r.cflags)}")
    typer.echo(f"accuracy on {r.images:,} test images: C {r.accuracy_c:.2%}, ONNX Runtime {r.accuracy_ort:.2%}")
    for a in r.agreements:
        _print_agreement(a)
    s = r.speed
    if s is not None:
        typer.echo(f"speed, one thread, best of {s.rounds} turns ({s.cpu}): C {s.c_images_per_second:,.0f} images/s (one at a time); ONNX Runtime int8 "
                   f"{s.ort_batch1_images_per_second:,.0f} at batch 1, {s.ort_batch256_images_per_second:,.0f} at batch 256; "
                   f"C / ONNX Runtime {s.ratio_batch1:.2f}x (batch 1), {s.ratio_best:.2f}x (its best)")
    typer.echo("C vs reference and ONNX Runtime: " + ("PASSED" if r.passed else "FAILED: " + "; ".join(r.failures)))


def _print_cortex_m(r) -> None:
    s = r.sizes
    typer.echo(f"{r.compiler}: {' '.join(r.cflags)}")
    typer.echo(f"{r.machine}: {r.images} images ({r.image_source})")
    for a in (r.qemu_vs_host, r.qemu_vs_reference):
        _print_agreement(a)
    typer.echo(f"flash: weights {s.weights_bytes:,} bytes (export's estimate {r.export_const_bytes:,}; int8 weights + "
               f"int32 biases {r.int8_weight_bytes:,}), classifier code {s.code_bytes:,} bytes; whole ELF text {s.elf_text:,} "
               f"(with newlib's stdio for main.c)")
    typer.echo(f"RAM: arena {s.arena_bytes:,} bytes (export's estimate {r.export_arena_bytes:,}); stack of cnn_edge_predict "
               f"{s.stack_bytes:,} bytes (-fstack-usage); whole ELF data {s.elf_data:,}, bss {s.elf_bss:,}")
    low, high = r.latency_ms_estimate
    typer.echo(f"latency, an estimate (QEMU counts no cycles): {r.macs:,} multiply-adds x {r.cycles_per_mac[0]:g}-"
               f"{r.cycles_per_mac[1]:g} cycles at {r.clock_hz / 1e6:.0f} MHz = {low:.0f}-{high:.0f} ms per image")
    typer.echo("QEMU vs host and reference: " + ("PASSED" if r.passed else "FAILED: " + "; ".join(r.failures)))


@app.command("export-c")
@handle_errors
def export_c_cmd(
    model: Path = typer.Argument(INT8_MODEL, help="An int8 QDQ model (cnn-edge quantize)."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the C sources (new, empty, or one export-c wrote)."),
    as_json: bool = JsonOpt,
):
    """Write the int8 model as dependency-free, integer-only C99: cnn_edge.h/.c, weights, main.c (docs/embedding-c.md)."""
    from ..release.export_c import export_c

    report = export_c(model, output)
    print_json(report) if as_json else _print_export(report)


@app.command("validate-c")
@handle_errors
def validate_c_cmd(
    folder: Path = typer.Argument(..., help="A folder written by export-c."),
    model: Optional[Path] = typer.Option(None, "--model", help="The int8 model it was exported from (default: the one its cnn_edge_export.json names)."),
    target: CTarget = typer.Option("host", "--target", help="host: compile with the system C compiler and compare on the MNIST test set; cortex-m4: cross-compile for QEMU's mps2-an386 and run the test vectors there."),
    limit: Optional[int] = typer.Option(None, help="Use the first N test images only (cortex-m4: the first N test vectors)."),
    spec_images: int = typer.Option(1000, "--spec-images", help="Images also run through onnx.reference (the ONNX specification's Q/DQ semantics; about 10 ms each)."),
    cflags: str = typer.Option("", "--cflags", help="Extra compiler flags for the host build, e.g. -march=native (the required flags stay)."),
    speed_seconds: float = typer.Option(3.0, "--speed-seconds", help="Seconds ONNX Runtime is timed per batch size, over 3 turns with the C program (0: no speed comparison)."),
    data_dir: Optional[str] = DataDirOpt,
    as_json: bool = JsonOpt,
):
    """Compile the exported C and prove it: bit for bit against the NumPy reference, top-1 against ONNX Runtime (exit 1 if not)."""
    from ..training.data import load_split
    from .progress import status

    if target.value == "cortex-m4":
        from ..release.cortex_m import validate_cortex_m4
        from ..release.export_c import vector_images
        from ..release.validate_c import model_of

        needs_mnist = vector_images(model_of(folder, model)) is None
        images = load_split("test", data_dir).images if needs_mnist else None
        with status("building and running on QEMU", enabled=not as_json):
            report = validate_cortex_m4(folder, model=model, test_images=images, limit=limit)
        print_json(report) if as_json else _print_cortex_m(report)
        report.raise_for_failures()
        return
    from ..release.validate_c import validate_c

    test = load_split("test", data_dir)
    with status("validating the C export", enabled=not as_json):
        report = validate_c(folder, test, model=model, limit=limit, spec_images=spec_images,
                            extra_flags=tuple(cflags.split()), speed_seconds=speed_seconds)
    print_json(report) if as_json else _print_validate(report)
    report.raise_for_failures()
