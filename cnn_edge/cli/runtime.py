"""The runtime commands, `predict`, `bench` and `demo`: torch-free (bench's PyTorch rows aside)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ..core import artifacts
from ..core.contract import PREPROCESSINGS
from ..core.errors import ConfigError
from ..prediction.config import PredictConfig, cores
from ..prediction.rows import FILE_FORMATS
from ..runtime.demo import DEFAULT_HOST, DEFAULT_PORT
from ..tools.bench import BenchConfig
from .app import (JsonOpt, Precision, PrecisionOpt, Provider, QuietOpt, app, choices, handle_errors, plural, print_json,
                  sigterm_stops, stdout_is_open)
from .summary import EXIT_SOME_FAILED, print_summary  # noqa: F401  (EXIT_SOME_FAILED: tests import it here)

ResultFormat = choices("ResultFormat", (*FILE_FORMATS, "parquet"))  # parquet: --engine ray only
Engine = choices("Engine", ("local", "ray"))
Preprocessing = choices("Preprocessing", ("auto", *PREPROCESSINGS))
PREDICT = PredictConfig()  # the library's defaults are the CLI's
BENCH = BenchConfig()
ProviderOpt = typer.Option(PREDICT.provider, "--provider", help="auto (best that starts; it says which and why), cpu, cuda, tensorrt or openvino (the 'openvino' extra). An explicit one that cannot run is an error, never a silent CPU fall back.")
ThreadsOpt = typer.Option(None, "--threads", help="ONNX Runtime threads (default: one per core).")


@app.command()
@handle_errors
@sigterm_stops()  # from the first line: a SIGTERM while the model or a cluster starts stops cleanly too
def predict(
    model: Path = typer.Argument(..., help="ONNX model (cnn-edge contract), e.g. exports/mnist_cnn.onnx."),
    inputs: list[str] = typer.Argument(..., help="Image files, folders and glob patterns ('scans/*.png')."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Results file (.csv or .jsonl; - for stdout); without it, a table on screen (JSON lines with --json). --engine ray: a directory of part files, local or s3://... (or one local .csv/.jsonl results file)"),
    fmt: Optional[ResultFormat] = typer.Option(None, "--format", help="Results format (default: from the -o extension, else csv)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Go into sub-folders (and let ** in patterns match them)."),
    top_k: int = typer.Option(PREDICT.top_k, "--top-k", help="How many most likely classes each row lists."),
    batch_size: int = typer.Option(PREDICT.batch_size, "--batch-size", help="Images per ONNX Runtime call."),
    workers: Optional[int] = typer.Option(PREDICT.workers, "--workers", help="Decoding processes (default: one per core for 256+ files; 0: none)."),
    threads: Optional[int] = ThreadsOpt,
    provider: Provider = ProviderOpt,
    precision: Precision = PrecisionOpt,
    max_pixels: int = typer.Option(PREDICT.max_pixels, "--max-pixels", help="Refuse images above this many pixels (decompression bombs)."),
    max_file_bytes: int = typer.Option(PREDICT.max_file_bytes, "--max-file-bytes", help="Refuse image files above this many bytes, before reading them (default 64 MiB)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted -o file: skip paths already written."),
    quiet: bool = QuietOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (without -o, the rows too, as JSON lines)."),
    engine: Engine = typer.Option("local", "--engine", help="local (this machine), or ray: a Ray cluster, -o a directory of part files (docs/ray.md)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="--engine ray: the cluster (default: $RAY_ADDRESS, else a local cluster started for the run)."),
    actors: Optional[int] = typer.Option(None, "--actors", help="--engine ray: ONNX Runtime actors (default: one per CPU, or per --gpus-per-worker share of the GPUs)."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="--engine ray: GPUs per ONNX Runtime actor (e.g. 1, or 0.5 to share one)."),
    preprocessing: Preprocessing = typer.Option("auto", "--preprocessing", help="auto: the one the model's metadata names; mnist-v2 finds the digit in a cluttered photo (or says there is none), mnist-v1 crops to all the ink (docs/prediction.md)."),
    save_inputs: Optional[Path] = typer.Option(None, "--save-inputs", help="Write the 28x28 input the model saw for each row into this folder (ROW_NAME.png, 16-bit grey); local engine only."),
    flag_below: float = typer.Option(PREDICT.flag_below, "--flag-below", help="Flag a row low_confidence when its confidence is below this (0: never); rows whose input is unlike MNIST are flagged unlike_mnist. The flag column and the summary count them (docs/prediction.md)."),
):
    """Classify images: one row per input, in order, with prediction, confidence, top-k, error and flag.

    Exit codes: 0 every input classified; 3 finished, but some inputs failed (their rows say why);
    2 bad options, model or output path; 1 the engine failed the run (Ray: the cluster, past its
    retries), the rows so far kept (rerun with --resume); 130 interrupted, 143 stopped by SIGTERM
    (rerun with --resume); 141 the reader of the output went away."""
    started = time.perf_counter()
    to_stdout = output is None or str(output) == "-"
    if (to_stdout or as_json or _names_stdout(output)) and not stdout_is_open():  # before any work, not after
        raise ConfigError("standard output is closed (>&-), and this run prints its rows or its --json summary "
                          "there: give -o FILE without --json (-o /dev/null to discard the rows)")
    _check_argument_order(model, inputs, output)
    cfg = PredictConfig(batch_size=batch_size, workers=workers, top_k=top_k, max_pixels=max_pixels,
                        max_file_bytes=max_file_bytes,
                        provider=provider.value, threads=threads, precision=precision.value,
                        preprocessing=None if preprocessing.value == "auto" else preprocessing.value,
                        keep_inputs=save_inputs is not None, flag_below=flag_below)
    if engine.value == "ray":
        from ..distributed.config import RayOptions
        from ..distributed.engine import RayEngine
        from ..distributed.output import check_writable_output, one_results_file
        from ..distributed.sources import collect
        from ..prediction.sinks import PartFolder

        if to_stdout:
            raise ConfigError("--engine ray writes a directory of part files: give -o DIR (a folder or s3://bucket/prefix/)")

        runner = RayEngine(RayOptions(address=ray_address, actors=actors, gpus_per_worker=gpus_per_worker), started)
        paths = collect(inputs, recursive=recursive)
        if one_results_file(output):  # -o results.csv: the one file the local engine writes, rows in the order made
            sink = _local_sink(output, fmt.value if fmt else None, resume=resume, as_json=False,
                               protected=[str(model), *paths])
        else:
            check_writable_output(output)
            sink = PartFolder(output, fmt.value if fmt else "parquet", resume=resume)
    else:
        from ..prediction.inputs import collect_inputs, is_uri
        from ..prediction.local import LocalEngine

        if ray_address is not None or actors is not None or gpus_per_worker:
            raise ConfigError("--ray-address, --actors and --gpus-per-worker go with --engine ray")
        if fmt is not None and fmt.value == "parquet":
            raise ConfigError("--format parquet is written by --engine ray (a directory of Parquet files); "
                              "the local engine writes csv or jsonl")
        if resume and to_stdout:
            raise ConfigError("--resume needs -o FILE: it continues a results file")
        if uris := [i for i in inputs if is_uri(i)]:
            raise ConfigError(f"{uris[0]} is an object-store URI, and the local engine reads local files: add "
                              f"--engine ray, which reads s3:// and the other fsspec URIs (docs/ray.md)")
        runner = LocalEngine()
        paths = collect_inputs(inputs, recursive=recursive)
        if workers is not None and workers > cores() and not quiet:
            typer.echo(f"note: --workers {workers} capped at {cores()}, the cores this machine has", err=True)
        sink = _local_sink(output, fmt.value if fmt else None, resume=resume, as_json=as_json,
                           protected=[str(model), *paths])
    saved = None
    if save_inputs is not None and engine.value == "local":  # --engine ray refuses it (RayOptions.check)
        from ..prediction.saved_inputs import SavedInputs

        saved = SavedInputs(save_inputs, paths)
    table = output is None and not as_json  # rows on screen, one line each
    bar = not quiet and not to_stdout
    summary = _run_with_progress(model, paths, cfg, sink, runner, show_rows=table, bar=bar,
                                 say_provider=not quiet and engine.value == "local", chosen=not (as_json or to_stdout),
                                 saved_inputs=saved)
    if saved is not None and not quiet:
        typer.echo(f"inputs the model saw: {plural(saved.written, 'file')} in {saved.folder}", err=True)
    rows_on_stdout = to_stdout or _is_stdout(output)  # -o /dev/stdout too: the summary must not join the rows
    print_summary(summary, None if output is None else sink.where, as_json=as_json, rows_on_stdout=rows_on_stdout)
    if summary.failed or summary.skipped_failed:  # the finished output, earlier runs' rows included
        raise typer.Exit(EXIT_SOME_FAILED)


def _is_stdout(output: Optional[str]) -> bool:
    """Whether -o names what standard output is (a link to /dev/stdout, or the file stdout was sent to)."""
    import os

    try:
        a, b = os.stat(output), os.fstat(1)
    except (OSError, ValueError, TypeError):  # no such file yet
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


STDOUT_NAMES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def _names_stdout(output: Optional[str]) -> bool:
    """Whether -o is /dev/stdout by name or through symbolic links (followed one at a time: with stdout
    closed, /dev/stdout leads to the /dev/null that stands in for it, and only its name tells)."""
    import os

    if output is None or output == "-":
        return False
    path = os.path.abspath(output)
    for _ in range(40):  # the kernel's own limit on links followed
        if path in STDOUT_NAMES or path == f"/proc/{os.getpid()}/fd/1":
            return True
        if not os.path.islink(path):
            return False
        try:
            path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
        except OSError:
            return False
    return False


RESULT_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json", ".partial", ".parquet", ".lock")


def _check_argument_order(model: Path, inputs: list[str], output: Optional[str]) -> None:
    """ConfigError naming the likely swap when the MODEL argument is a folder or a results file (the
    order is predict MODEL INPUTS... -o RESULTS), instead of what opening it would say ("Is a directory")."""
    usage = "the order is: cnn-edge predict MODEL.onnx IMAGES... -o RESULTS"
    if model.is_dir():
        raise ConfigError(f"the model argument {model} is a folder, not an ONNX model; were the arguments swapped? "
                          f"{usage}")
    if model.suffix.lower() in RESULT_SUFFIXES:
        onnx = next((i for i in inputs if i.lower().endswith(".onnx")), None)
        hint = f" ({onnx}, given as an input, looks like the model)" if onnx else ""
        raise ConfigError(f"the model argument {model} is named like a results file, not an ONNX model{hint}; "
                          f"were the arguments swapped? {usage}")


def _say_provider(choice, *, chosen: bool = True) -> None:
    """On stderr: which provider runs the model and why (`chosen`), and any nodes it left to the CPU."""
    precision = f", precision {choice.precision}" if choice.precision else ""
    if chosen:
        typer.echo(f"provider: {choice.provider}{precision} ({choice.reason})", err=True)
    if choice.cpu_fallback:
        typer.echo(f"warning: {plural(len(choice.cpu_fallback), 'node')} of the model run on the CPU provider, not "
                   f"{choice.provider}: {', '.join(choice.cpu_fallback[:8])}", err=True)


def _local_sink(output: Optional[str], fmt: Optional[str], *, resume: bool, as_json: bool, protected: list[str]):
    """Where the local engine's rows go: a results file (-o FILE, which must be none of the files the
    run reads), stdout (-o -, or --json without -o: JSONL), or nowhere but the on-screen table."""
    from ..core.files import special_kind
    from ..prediction.rows import EXTENSIONS, format_for
    from ..prediction.sinks import ResultFile, Stream

    if output is None:
        return Stream(sys.stdout, "jsonl") if as_json else None
    if output == "-":
        return Stream(sys.stdout, format_for(Path(output), fmt))
    path = Path(output)
    if fmt is None and path.suffix.lower() not in EXTENSIONS and (path.is_dir() or special_kind(path)):
        fmt = "csv"  # /dev/null, a FIFO: no extension to read, as for -o - (a folder: refused by ResultFile)
    return ResultFile(path, format_for(path, fmt), resume=resume, protected=protected)


def _print_rows(batch, labels, top_k: int) -> None:
    for row in batch.rows(labels):
        if row.label is None:
            typer.echo(f"{row.path}\t-\terror: {row.error}")
            continue
        tops = "  ".join(f"{label}:{p:.3f}" for label, p in row.top[:top_k])
        typer.echo(f"{row.path}\t{row.label}\t{row.confidence:.4f}\t{tops}" + (f"\tflag: {row.flag}" if row.flag else ""))


def _run_with_progress(model: Path, paths: list[str], cfg: PredictConfig, sink, runner, *, show_rows: bool, bar: bool,
                       say_provider: bool, chosen: bool, saved_inputs=None):
    """run_prediction with a progress bar for long runs (or the rows on screen). Whatever stops it,
    the rows written so far stay, and the user is told how to resume."""
    import contextlib

    from ..prediction.job import run_prediction
    from .progress import count_bar

    started, counts = time.perf_counter(), {"done": 0, "failed": 0}
    with contextlib.ExitStack() as stack:
        advance, labels = None, ()

        def on_start(schema, todo: int) -> None:
            nonlocal advance, labels
            labels = schema.labels
            if say_provider:  # with rows on stdout, only a warning: the provider is in the summary line
                _say_provider(runner.choice, chosen=chosen)
            advance = stack.enter_context(count_bar(todo, "predict", enabled=bar and todo >= 1000))

        def on_rows(batch) -> None:
            counts["done"] += len(batch)
            counts["failed"] += batch.failures
            advance(len(batch), failed=counts["failed"], ips=counts["done"] / max(time.perf_counter() - started, 1e-9))
            if show_rows:
                _print_rows(batch, labels, cfg.top_k)

        try:
            return run_prediction(model, paths, cfg, sink, runner, on_start=on_start, on_rows=on_rows,
                                  saved_inputs=saved_inputs)
        except BaseException:
            if sink is not None and sink.kept_in is not None:
                typer.echo(f"{sink.kept:,} rows kept in {sink.kept_in}; rerun with --resume to continue", err=True)
            raise


def _print_bench(report) -> None:
    m = report.machine
    typer.echo(f"{m['cpu']}, {m['cores']} cores; onnxruntime {m['onnxruntime']}" +
               (f", openvino {m['openvino']}" if "openvino" in m else "") +
               (f", torch {m['torch']}" if "torch" in m else "") + f"; {report.seconds_per_point:g} s per point after warm-up")
    typer.echo(f"{'runtime':<12} {'provider':<9} {'model':<26} {'model':<6} {'infers':<6} {'batch':>5} {'p50 ms':>9} "
               f"{'p90 ms':>9} {'p99 ms':>9} {'images/s':>10}")
    for r in report.rows:
        typer.echo(f"{r.runtime:<12} {r.provider[:9]:<9} {r.model[:26]:<26} {r.model_precision:<6} "
                   f"{r.inference_precision or '-':<6} {r.batch_size:>5} {r.p50_ms:>9.3f} "
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
