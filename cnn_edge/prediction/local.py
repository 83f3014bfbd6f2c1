"""Batch inference over image files: parallel decoding overlapped with batched inference. Torch-free.

Worker processes decode and preprocess chunks of files while the main process runs ONNX Runtime on
the chunk before and writes its rows. At most a few chunks are in flight, so memory stays flat
whatever the number of files, and rows come out in input order.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from ..runtime.predictor import Prediction, Predictor
from ..runtime.preprocess import preprocess_many
from .config import PredictConfig, resolve_workers
from .workers import DecodePool


@dataclass
class Row:
    path: str
    prediction: Optional[Prediction]
    error: str  # empty when the image was classified


@dataclass
class PredictSummary:
    files: int
    ok: int
    failed: int
    skipped: int  # already in the output file (--resume)
    seconds: float
    images_per_second: float
    provider: str
    workers: int
    model: str
    output: Optional[str] = None
    worker_restarts: int = 0  # decoding processes that died and were replaced
    provider_reason: str = ""  # why that provider: asked for, or what auto tried
    precision: Optional[str] = None  # OpenVINO's inference precision; None: the model's own
    cpu_fallback: list[str] = field(default_factory=list)  # nodes the provider left to the CPU
    engine: str = "local"  # local, or ray (--engine ray)
    first_row_seconds: Optional[float] = None  # --engine ray: from the run's start to the first row back
    passes: int = 1  # --engine ray: pipeline runs it took (more when Ray gave up on one)
    steady_images_per_second: Optional[float] = None  # --engine ray: rate between 10% and 90% of the rows


def _chunks(paths: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(paths), size):
        yield paths[i : i + size]


def _prepared_chunks(paths: list[str], cfg: PredictConfig, pool: Optional[DecodePool]):
    chunks = _chunks(paths, cfg.batch_size)
    if pool is None:
        return ((chunk, *preprocess_many(chunk, cfg.max_pixels)) for chunk in chunks)
    return pool.prepared(chunks)


def iter_rows(predictor: Predictor, paths: list[str], cfg: PredictConfig,
              pool: Optional[DecodePool] = None) -> Iterator[list[Row]]:
    """Rows for `paths`, in order, one list per batch."""
    for chunk, arrays, errors in _prepared_chunks(paths, cfg, pool):
        ok = [i for i, e in enumerate(errors) if not e]
        if pool is not None and pool.model is not None:  # the workers inferred: arrays are probabilities
            predictions = list(predictor.to_predictions(arrays[ok], cfg.top_k)) if ok else []
        else:
            predictions = predictor.predict_prepared(arrays[ok], cfg.top_k) if ok else []
        by_index = dict(zip(ok, predictions))
        yield [Row(path, by_index.get(i), errors[i]) for i, path in enumerate(chunk)]


def load_predictor(model_path: Path, cfg: PredictConfig, n_files: int) -> Predictor:
    """The model, checked against the contract, set up for a run over `n_files` files."""
    # With decoding workers on the same cores, ONNX Runtime's threads must not spin while idle.
    spin = resolve_workers(cfg.workers, n_files) == 0
    return Predictor(model_path, provider=cfg.provider, threads=cfg.threads, max_pixels=cfg.max_pixels, spin=spin,
                     precision=cfg.precision)


def run_predict(predictor: Predictor, paths: list[str], cfg: PredictConfig, writer=None,
                on_batch: Optional[Callable[[list[Row]], None]] = None) -> PredictSummary:
    """Classify `paths`; rows go to `writer` (a ResultWriter) and/or `on_batch`, in input order.

    Paths already in writer.done (--resume) are skipped. A worker process that dies costs only
    the image it was decoding (see workers.py)."""
    skipped = 0
    if writer is not None and writer.done:
        todo = [p for p in paths if p not in writer.done]
        skipped = len(paths) - len(todo)
        paths = todo
    workers = resolve_workers(cfg.workers, len(paths))
    # On the CPU, at ONNX Runtime's default threads, the workers infer too (see workers.py).
    infer = predictor.provider == "cpu" and cfg.threads is None and predictor.model.data
    model = (predictor.model.data, len(predictor.labels)) if infer else None
    pool = DecodePool(workers, cfg.max_pixels, model) if workers > 0 and paths else None
    ok = failed = 0
    start = time.perf_counter()
    try:
        for rows in iter_rows(predictor, paths, cfg, pool):
            for row in rows:
                if writer is not None:
                    writer.write(row.path, row.prediction, row.error)
                ok += row.prediction is not None
                failed += row.prediction is None
            if writer is not None:
                writer.flush()
            if on_batch is not None:
                on_batch(rows)
        seconds = time.perf_counter() - start
    finally:
        if pool is not None:
            pool.close()
    return PredictSummary(files=len(paths) + skipped, ok=ok, failed=failed, skipped=skipped, seconds=seconds,
                          images_per_second=(ok + failed) / seconds if seconds > 0 else 0.0,
                          provider=predictor.provider, workers=workers, model=str(predictor.model.path),
                          output=str(writer.output) if writer is not None else None,
                          worker_restarts=pool.restarts if pool is not None else 0,
                          provider_reason=predictor.model.choice.reason, precision=predictor.model.choice.precision,
                          cpu_fallback=predictor.model.choice.cpu_fallback)
