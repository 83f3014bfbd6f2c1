"""The runtime commands, `predict`, `bench` and `demo`: torch-free (bench's PyTorch rows aside)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ..core import artifacts
from ..core.errors import ConfigError
from ..prediction.config import PredictConfig
from ..prediction.row_format import FORMATS
from ..runtime.demo import DEFAULT_HOST, DEFAULT_PORT
from ..tools.bench import BenchConfig
from .app import JsonOpt, Precision, PrecisionOpt, Provider, QuietOpt, app, choices, handle_errors, plural, print_json
from .summary import EXIT_SOME_FAILED, print_summary  # noqa: F401  (EXIT_SOME_FAILED: tests import it here)

ResultFormat = choices("ResultFormat", (*FORMATS, "parquet"))  # parquet: --engine ray only
Engine = choices("Engine", ("local", "ray"))
PREDICT = PredictConfig()  # the library's defaults are the CLI's
BENCH = BenchConfig()
ProviderOpt = typer.Option(PREDICT.provider, "--provider", help="auto (best that starts; it says which and why), cpu, cuda, tensorrt or openvino (the 'openvino' extra). An explicit one that cannot run is an error, never a silent CPU fall back.")
ThreadsOpt = typer.Option(None, "--threads", help="ONNX Runtime threads (default: one per core).")


def _print_row(row, top_k: int) -> None:
    if row.prediction is None:
        typer.echo(f"{row.path}\t-\terror: {row.error}")
        return
    tops = "  ".join(f"{label}:{p:.3f}" for label, p in row.prediction.top_k[:top_k])
    typer.echo(f"{row.path}\t{row.prediction.label}\t{row.prediction.confidence:.4f}\t{tops}")


@app.command()
@handle_errors
def predict(
    model: Path = typer.Argument(..., help="ONNX model (cnn-edge contract), e.g. exports/mnist_cnn.onnx."),
    inputs: list[str] = typer.Argument(..., help="Image files, folders and glob patterns ('scans/*.png')."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Results file (.csv or .jsonl; - for stdout); without it, a table on screen (JSON lines with --json). --engine ray: a directory, local or s3://..."),
    fmt: Optional[ResultFormat] = typer.Option(None, "--format", help="Results format (default: from the -o extension, else csv)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Go into sub-folders (and let ** in patterns match them)."),
    top_k: int = typer.Option(PREDICT.top_k, "--top-k", help="How many most likely classes each row lists."),
    batch_size: int = typer.Option(PREDICT.batch_size, "--batch-size", help="Images per ONNX Runtime call."),
    workers: Optional[int] = typer.Option(PREDICT.workers, "--workers", help="Decoding processes (default: one per core for 256+ files; 0: none)."),
    threads: Optional[int] = ThreadsOpt,
    provider: Provider = ProviderOpt,
    precision: Precision = PrecisionOpt,
    max_pixels: int = typer.Option(PREDICT.max_pixels, "--max-pixels", help="Refuse images above this many pixels (decompression bombs)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted -o file: skip paths already written."),
    quiet: bool = QuietOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (without -o, the rows too, as JSON lines)."),
    engine: Engine = typer.Option("local", "--engine", help="local (this machine), or ray: a Ray cluster, -o a directory of part files (docs/ray.md)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="--engine ray: the cluster (default: $RAY_ADDRESS, else a local cluster started for the run)."),
    actors: Optional[int] = typer.Option(None, "--actors", help="--engine ray: ONNX Runtime actors (default: one per CPU, or per --gpus-per-worker share of the GPUs)."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="--engine ray: GPUs per ONNX Runtime actor (e.g. 1, or 0.5 to share one)."),
):
    """Classify images: one row per input, in order, with prediction, confidence, top-k and error.

    Exit codes: 0 every input classified; 3 finished, but some inputs failed (their rows say why);
    2 bad options, model or output path; 130 interrupted (rerun with --resume); 141 the reader of the
    output went away."""
    if engine.value == "ray":
        from ..distributed.config import RayConfig
        from .ray_predict import predict_on_ray

        cfg = RayConfig(address=ray_address, batch_size=batch_size, actors=actors, decode_tasks=workers,
                        gpus_per_worker=gpus_per_worker, threads=threads, provider=provider.value,
                        precision=precision.value, top_k=top_k, max_pixels=max_pixels, fmt=fmt.value if fmt else "parquet")
        return predict_on_ray(model, inputs, output, cfg, recursive=recursive, resume=resume, quiet=quiet, as_json=as_json)
    if ray_address is not None or actors is not None or gpus_per_worker:
        raise ConfigError("--ray-address, --actors and --gpus-per-worker go with --engine ray")
    if fmt is not None and fmt.value == "parquet":
        raise ConfigError("--format parquet is written by --engine ray (a directory of Parquet files); "
                          "the local engine writes csv or jsonl")
    from ..prediction.inputs import collect_inputs
    from ..prediction.local import load_predictor
    from ..prediction.row_format import format_for

    output = Path(output) if output is not None else None
    cfg = PredictConfig(batch_size=batch_size, workers=workers, top_k=top_k, max_pixels=max_pixels,
                        provider=provider.value, threads=threads, precision=precision.value)
    if resume and (output is None or str(output) == "-"):
        raise ConfigError("--resume needs -o FILE: it continues a results file")
    paths = collect_inputs(inputs, recursive=recursive)
    to_stdout = output is None or str(output) == "-"
    out_format = format_for(output, fmt.value if fmt else None) if output is not None else "jsonl"
    if not to_stdout:
        _check_output(output, [str(model), *paths])
    # Every argument is checked (the model too) before a results file is touched.
    predictor = load_predictor(model, cfg, len(paths))
    writer = _writer(output, out_format, top_k, resume=resume, as_json=as_json, labels=predictor.labels)
    if not quiet:  # with rows on stdout, only a warning: the provider is in the summary line
        _say_provider(predictor.model.choice, chosen=not (as_json or to_stdout))
    table = output is None and not as_json  # rows on screen, one line each
    summary = _run_with_progress(predictor, paths, cfg, writer, show_rows=table, bar=not quiet and not to_stdout)
    print_summary(summary, None if output is None else str(output), as_json=as_json, rows_on_stdout=to_stdout)
    if summary.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def _say_provider(choice, *, chosen: bool = True) -> None:
    """On stderr: which provider runs the model and why (`chosen`), and any nodes it left to the CPU."""
    precision = f", precision {choice.precision}" if choice.precision else ""
    if chosen:
        typer.echo(f"provider: {choice.provider}{precision} ({choice.reason})", err=True)
    if choice.cpu_fallback:
        typer.echo(f"warning: {plural(len(choice.cpu_fallback), 'node')} of the model run on the CPU provider, not "
                   f"{choice.provider}: {', '.join(choice.cpu_fallback[:8])}", err=True)


def _check_output(output: Path, protected: list[str]) -> None:
    """-o FILE: its folder exists, and it is none of the files this run reads."""
    from ..prediction.results import refuse_overwriting

    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"folder {parent} for -o {output} does not exist; create it first (mkdir -p {parent})")
    refuse_overwriting(output, protected)


def _writer(output: Optional[Path], fmt: str, top_k: int, *, resume: bool, as_json: bool, labels):
    """Where rows go: a results file (-o FILE), stdout (-o -, or --json without -o: JSONL), or
    nowhere but the on-screen table."""
    from ..prediction.results import ResultWriter, StreamWriter

    if output is None:
        return StreamWriter(sys.stdout, fmt, top_k) if as_json else None
    if str(output) == "-":
        return StreamWriter(sys.stdout, fmt, top_k)
    return ResultWriter(output, fmt, top_k, resume=resume, labels=labels)


def _run_with_progress(predictor, paths: list[str], cfg: PredictConfig, writer, *, show_rows: bool, bar: bool):
    """run_predict with a progress bar for long runs (or the rows on screen). Whatever stops it,
    the rows written so far stay in the partial file, and the user is told how to resume."""
    from ..prediction.local import run_predict
    from .progress import count_bar

    todo = len(paths) - (len(writer.done & set(paths)) if writer is not None else 0)
    started, counts = time.perf_counter(), {"done": 0, "failed": 0}
    try:
        with count_bar(todo, "predict", enabled=bar and todo >= 1000) as advance:
            def on_batch(rows):
                counts["done"] += len(rows)
                counts["failed"] += sum(r.prediction is None for r in rows)
                advance(len(rows), failed=counts["failed"], ips=counts["done"] / max(time.perf_counter() - started, 1e-9))
                if show_rows:
                    for row in rows:
                        _print_row(row, cfg.top_k)

            summary = run_predict(predictor, paths, cfg, writer, on_batch)
    except BaseException:
        if writer is not None:
            writer.abort()
            if counts["done"] and writer.partial is not None:
                typer.echo(f"{counts['done']:,} rows kept in {writer.partial}; rerun with --resume to continue", err=True)
        raise
    if writer is not None:
        writer.finish()
    return summary


def _print_bench(report) -> None:
    m = report.machine
    typer.echo(f"{m['cpu']}, {m['cores']} cores; onnxruntime {m['onnxruntime']}" +
               (f", openvino {m['openvino']}" if "openvino" in m else "") +
               (f", torch {m['torch']}" if "torch" in m else "") + f"; {report.seconds_per_point:g} s per point after warm-up")
    typer.echo(f"{'backend':<12} {'model':<30} {'device':<15} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'images/s':>10}")
    for r in report.rows:
        typer.echo(f"{r.backend:<12} {r.model[:30]:<30} {r.device[:15]:<15} {r.batch_size:>5} {r.p50_ms:>9.3f} "
                   f"{r.p90_ms:>9.3f} {r.p99_ms:>9.3f} {r.images_per_second:>10,.0f}")
    for note in report.notes:
        typer.echo(f"note: {note}")


@app.command()
@handle_errors
def bench(
    models: Optional[list[Path]] = typer.Argument(None, help="ONNX models (default: exports/mnist_cnn.onnx and exports/mnist_cnn.int8.onnx)."),
    checkpoint: Optional[Path] = typer.Option(None, help="PyTorch checkpoint for the eager rows (default: the .safetensors beside the first model)."),
    use_torch: Optional[bool] = typer.Option(None, "--torch/--no-torch", help="Include PyTorch eager (default: when torch and a checkpoint are there)."),
    batch_sizes: str = typer.Option(",".join(map(str, BENCH.batch_sizes)), "--batch-sizes", help="Comma-separated batch sizes."),
    seconds: float = typer.Option(BENCH.seconds, help="Timed seconds per batch size, after warm-up."),
    provider: Provider = ProviderOpt,
    precision: Precision = PrecisionOpt,
    use_openvino: Optional[bool] = typer.Option(None, "--openvino/--no-openvino", help="Include the OpenVINO rows: its plugin through ONNX Runtime, and the OpenVINO runtime as a peer (default: when installed)."),
    threads: Optional[int] = ThreadsOpt,
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw the results into this PNG (needs the 'plot' extra: matplotlib)."),
    as_json: bool = JsonOpt,
):
    """Latency (p50/p90/p99) and throughput per batch size: ONNX Runtime fp32 and int8, PyTorch eager."""
    from ..core.files import atomic_write_bytes, check_writable
    from ..tools.bench import plot_png, run_bench
    from .progress import status

    try:
        sizes = tuple(int(b) for b in batch_sizes.split(","))
    except ValueError:
        raise ConfigError(f"--batch-sizes must be integers separated by commas, got {batch_sizes!r}") from None
    cfg = BenchConfig(batch_sizes=sizes, seconds=seconds, provider=provider.value, threads=threads,
                      checkpoint=checkpoint, use_torch=use_torch, use_openvino=use_openvino, precision=precision.value)
    models = models or artifacts.released_models()
    if plot is not None:
        check_writable(plot)
    with status("benchmarking", enabled=not as_json):
        report = run_bench(list(models), cfg)
    if plot is not None:
        atomic_write_bytes(plot, plot_png(report))
    print_json(report) if as_json else _print_bench(report)
    if plot is not None and not as_json:
        typer.echo(f"plot: {plot}")


@app.command()
@handle_errors
def demo(
    model: Path = typer.Option(artifacts.RELEASE_DIR / artifacts.fp32_file(artifacts.SPEC_ARCH), "--model", help="ONNX model the page runs."),
    vectors: Optional[Path] = typer.Option(None, "--vectors", help="Test vectors (default: test_vectors.json beside the model)."),
    host: str = typer.Option(DEFAULT_HOST, help="Address to listen on (this machine only by default)."),
    port: int = typer.Option(DEFAULT_PORT, help="Port (0: any free port)."),
):
    """Serve the browser demo: draw a digit, see the ten probabilities; the page checks the test vectors."""
    from ..runtime.demo import is_loopback, make_server

    if not is_loopback(host):
        typer.secho(f"WARNING: serving on {host}, not on this machine alone: anyone who can reach it can load the "
                    f"page and download the model. Use --host 127.0.0.1 unless that is what you want.",
                    err=True, fg="red", bold=True)
    server = make_server(model, vectors, host, port)
    address = f"http://{server.server_address[0]}:{server.server_address[1]}/"
    typer.echo(f"serving the cnn-edge demo ({model.name}) at {address}  (Ctrl-C to stop)")
    sys.stdout.flush()  # the address must reach a pipe (tests, scripts) before serving blocks
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        server.server_close()
