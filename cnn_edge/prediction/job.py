"""A prediction job: inputs, a model, a config and a sink in; rows out; a summary back. Torch-free.

    run_prediction(model, paths, cfg, sink, engine)

is the one place a run is orchestrated, whichever engine makes the rows:

    engine.open(model)         the model checked, before the sink is touched; its labels
    sink.open(schema)          --resume: the paths already written
    engine.start(todo)         the local engine's worker pool, or the Ray cluster joined or started
    engine.rows(todo)          RowBatch after RowBatch (local worker processes, or Ray Data)
      sink.write(batch)        each path once: a repeated row (a retried batch) is dropped
    sink.commit(manifest)      or, when anything stops the run, sink.abort(): the rows so far stay
    engine.close()

An engine (prediction/local.py, distributed/engine.py) only produces rows; a sink (sinks.py) owns its
resume, abort and commit; the caller (the CLI) prints.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

from ..core.errors import CnnEdgeError
from ..core.flag_rule import REASONS
from .config import PredictConfig
from .rows import RowBatch, RowSchema
from .saved_inputs import SavedInputs
from .sinks import Sink

# The version of the summary's JSON layout (docs/reports.md). 2: engine-specific figures moved
# into `engine_figures`, and this field.
SCHEMA = "cnn-edge-predict/2"


@dataclass
class EngineReport:
    """What an engine says of the run it made, once it is over."""

    provider: str  # what ran the model (several, comma-separated, when the nodes differed)
    provider_reason: str
    precision: Optional[str]
    cpu_fallback: list[str]
    workers: int  # decoding processes (local) or ONNX Runtime actors (Ray)
    model: str
    figures: Any  # the engine's own figures (a dataclass), the summary's engine_figures


class Engine(Protocol):
    name: str

    def open(self, model: Path, cfg: PredictConfig, n_inputs: int) -> Sequence[str]:
        """Check the model (raising the typed error that says what is wrong); return its labels."""

    def start(self, paths: list[str]) -> None:
        """Get ready to make the rows of `paths` (Ray: join or start the cluster); not timed."""

    def rows(self, paths: list[str]) -> Iterator[RowBatch]:
        """The rows of `paths`, a batch at a time; each path at least once."""

    def close(self) -> None: ...

    def report(self) -> EngineReport: ...


class MissingRowsError(CnnEdgeError):
    """An engine ended without a row for some inputs (never committed as finished)."""

    exit_code = 1


@dataclass
class PredictSummary:
    files: int
    ok: int
    failed: int
    skipped: int  # already in the output (--resume)
    seconds: float
    images_per_second: float
    provider: str
    workers: int
    model: str
    output: Optional[str] = None
    provider_reason: str = ""  # why that provider: asked for, or what auto tried
    precision: Optional[str] = None  # OpenVINO's inference precision; None: the model's own
    cpu_fallback: list[str] = field(default_factory=list)  # nodes the provider left to the CPU
    engine: str = "local"  # local, or ray (--engine ray)
    engine_figures: Any = None  # what only that engine measures: LocalFigures or RayFigures (docs/reports.md)
    skipped_failed: int = 0  # of the skipped rows, the failures (the finished output holds failed + these)
    # Of this run's classified rows, those flagged for a person (--flag-below; runtime/flags.py), and
    # for each reason the rows that carry it (a row flagged for both counts for both).
    flagged: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    schema: str = SCHEMA


def run_prediction(model: Path, paths: list[str], cfg: PredictConfig, sink: Optional[Sink], engine: Engine, *,
                   on_start: Callable[[RowSchema, int], None] = lambda schema, todo: None,
                   on_rows: Callable[[RowBatch], None] = lambda batch: None,
                   saved_inputs: Optional[SavedInputs] = None) -> PredictSummary:
    """Classify `paths` with `engine`; rows go to `sink` (None: only to on_rows), in the order the
    engine makes them (input order, on the local engine). Paths the sink holds already (--resume)
    are skipped. `on_start(schema, rows to make)` comes once the sink is open, `on_rows(batch)` after each
    batch is written. `saved_inputs` (with cfg.keep_inputs): each row's input the model saw, as a
    file. Whatever stops the run, the sink is aborted (the rows so far stay) and the error goes on
    to the caller; the engine is always closed."""
    try:
        labels = engine.open(Path(model), cfg, len(paths))
        schema = RowSchema(tuple(labels), cfg.top_k)
        if sink is not None:
            sink.open(schema)
        done = sink.done if sink is not None else set()
        todo = [p for p in paths if p not in done]
        seen: set[str] = set()
        ok = failed = 0
        flags: Counter = Counter()
        try:  # from here on the sink is open (its lock held): whatever stops the run aborts it
            on_start(schema, len(todo))
            engine.start(todo)
            start = time.perf_counter()  # the run's own rate, without the engine's start (a cluster's)
            for batch in engine.rows(todo):
                fresh = [i for i, p in enumerate(batch.paths) if p not in seen]
                if len(fresh) < len(batch):  # a batch the engine ran again: its rows are written already
                    batch = batch.take(fresh)
                if not len(batch):
                    continue
                seen.update(batch.paths)
                if sink is not None:
                    sink.write(batch)
                if saved_inputs is not None:
                    saved_inputs.write(batch)
                failures = batch.failures
                ok, failed = ok + len(batch) - failures, failed + failures
                flags.update(batch.flag_counts())
                on_rows(batch)
            seconds = time.perf_counter() - start
            if missing := set(todo) - seen:
                raise MissingRowsError(f"{len(missing):,} inputs got no row (e.g. {sorted(missing)[0]}); "
                                       f"rerun with --resume")
            skipped = len(paths) - len(todo)
            report = engine.report()
            if sink is not None:
                sink.commit({"engine": engine.name, "model": report.model, "ok": ok, "failed": failed,
                             "skipped": skipped})
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
    finally:
        engine.close()
    return PredictSummary(files=len(paths), ok=ok, failed=failed, skipped=skipped, seconds=seconds,
                          images_per_second=(ok + failed) / seconds if seconds > 0 else 0.0,
                          provider=report.provider, workers=report.workers, model=report.model,
                          output=sink.where if sink is not None else None, provider_reason=report.provider_reason,
                          precision=report.precision, cpu_fallback=report.cpu_fallback, engine=engine.name,
                          engine_figures=report.figures, skipped_failed=sink.done_failed if sink is not None else 0,
                          flagged=flags.pop("flagged", 0), flags={r: flags[r] for r in REASONS})
