"""`cnn-edge predict --engine ray`: the options checked, the cluster joined, the run, the summary.

Imported only when --engine ray is given, so `predict` on the local engine never loads Ray."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from ..core.errors import ConfigError

if TYPE_CHECKING:
    from ..distributed.config import RayConfig
from .summary import EXIT_SOME_FAILED, print_summary

RAY_EXTRA_HINT = "pip install 'cnn-edge[ray]'"


def _imports() -> None:
    """Ray, pyarrow and fsspec, or one line saying which extra brings them."""
    for name in ("ray", "ray.data", "pyarrow"):
        try:
            __import__(name)
        except ImportError:
            raise ConfigError(f"--engine ray needs {name}, which the base install leaves out: {RAY_EXTRA_HINT}") from None


def predict_on_ray(model: Path, inputs: list[str], output: Optional[str], cfg: "RayConfig", *, recursive: bool,
                   resume: bool, quiet: bool, as_json: bool) -> None:
    started = time.perf_counter()
    if output is None or str(output) == "-":
        raise ConfigError("--engine ray writes a directory of part files: give -o DIR (a folder or s3://bucket/prefix/)")
    _imports()
    from ..distributed.engine import connect, prepare, run_ray_predict
    from ..distributed.outputs import OutputDir
    from ..distributed.sources import collect
    from ..runtime.predictor import Predictor
    from .progress import count_bar

    # The model is checked here, on the CPU, before anything is started or written; the actors
    # open it again on the requested provider.
    labels = Predictor(model, provider="cpu", threads=1, max_pixels=cfg.max_pixels).labels
    paths = collect(inputs, recursive=recursive)
    out = OutputDir(output, cfg.fmt, cfg.top_k, resume=resume, labels=labels)
    todo = len(set(paths) - out.done)
    started_here = connect(cfg.address)
    try:
        job = prepare(model, cfg)
    except BaseException:
        _shutdown(started_here)
        raise
    counts = {"done": 0, "failed": 0}
    start = time.perf_counter()
    try:
        with count_bar(todo, "predict", enabled=not quiet and todo >= 1000) as advance:
            def on_rows(new: int, failed: int) -> None:
                counts["done"] += new
                counts["failed"] += failed
                advance(new, failed=counts["failed"], ips=counts["done"] / max(time.perf_counter() - start, 1e-9))

            summary = run_ray_predict(job, paths, cfg, out, on_rows, started)
    except BaseException:
        out.flush_quietly()
        if counts["done"]:
            typer.echo(f"{counts['done']:,} rows kept in part files of {out.output}; rerun with --resume to continue",
                       err=True)
        raise
    finally:
        _shutdown(started_here)
    print_summary(summary, out.output, as_json=as_json, rows_on_stdout=False)
    if summary.failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def _shutdown(started_here: bool) -> None:
    """Stop the local cluster this command started (a cluster it joined keeps running)."""
    if started_here:
        import ray

        ray.shutdown()
