"""Batch inference over image files: parallel decoding overlapped with batched inference. Torch-free.

Worker processes decode and preprocess chunks of files while the main process runs ONNX Runtime on
the chunk before and writes its rows. At most a few chunks are in flight, so memory stays flat
whatever the number of files, and rows come out in input order.
"""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ..errors import ConfigError
from .images import DEFAULT_MAX_PIXELS
from .predictor import Prediction, Predictor
from .preprocess import preprocess_many

# Below this many files a worker pool costs more to start than it saves (cold start matters).
POOL_MIN_FILES = 256
# Chunks queued per worker: enough to keep every core busy while the main process infers.
CHUNKS_PER_WORKER = 2


@dataclass(frozen=True)
class PredictConfig:
    batch_size: int = 256
    workers: Optional[int] = None  # None: one per core for big jobs, none for small ones
    top_k: int = 3
    max_pixels: int = DEFAULT_MAX_PIXELS
    provider: str = "auto"
    threads: Optional[int] = None  # ONNX Runtime intra-op threads; None: its default

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be 0 (decode in this process) or more, got {self.workers}")
        if not 1 <= self.top_k <= 10:
            raise ConfigError(f"--top-k must be between 1 and 10, got {self.top_k}")
        if self.max_pixels < 1:
            raise ConfigError(f"--max-pixels must be positive, got {self.max_pixels}")


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


def resolve_workers(requested: Optional[int], n_files: int) -> int:
    if requested is not None:
        return requested
    return 0 if n_files < POOL_MIN_FILES else (os.cpu_count() or 1)


def _pool(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork starts workers in milliseconds. The executor forks all of them at the first submit(),
    # which comes after the caller has created ONNX Runtime's session: a forked child gets none of
    # its threads (fork copies only the calling thread) and never touches the session. Forcing the
    # fork earlier, before the session, was measured slower (10,000 MNIST PNGs, 2 cores: 7-11%
    # fewer images/s for fp32 and int8), so the executor keeps its own timing.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=_ignore_interrupts)


def _ignore_interrupts() -> None:
    """Ctrl-C reaches every process of the terminal's group; only the main one handles it (it
    keeps the rows written so far and stops the workers), so workers print no tracebacks."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _chunks(paths: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(paths), size):
        yield paths[i : i + size]


def _prepared_chunks(paths: list[str], cfg: PredictConfig, workers: int, pool) -> Iterator[tuple[list[str], np.ndarray, list[str]]]:
    chunks = _chunks(paths, cfg.batch_size)
    if pool is None:
        for chunk in chunks:
            yield (chunk, *preprocess_many(chunk, cfg.max_pixels))
        return
    pending: deque = deque()
    for chunk in chunks:
        pending.append((chunk, pool.submit(preprocess_many, chunk, cfg.max_pixels)))
        if len(pending) >= CHUNKS_PER_WORKER * workers:
            done, future = pending.popleft()
            yield (done, *future.result())
    while pending:
        done, future = pending.popleft()
        yield (done, *future.result())


def iter_rows(predictor: Predictor, paths: list[str], cfg: PredictConfig, workers: int, pool=None) -> Iterator[list[Row]]:
    """Rows for `paths`, in order, one list per batch."""
    for chunk, prepared, errors in _prepared_chunks(paths, cfg, workers, pool):
        ok = [i for i, e in enumerate(errors) if not e]
        predictions = predictor.predict_prepared(prepared[ok], cfg.top_k) if ok else []
        by_index = dict(zip(ok, predictions))
        yield [Row(path, by_index.get(i), errors[i]) for i, path in enumerate(chunk)]


def run_predict(model_path: Path, paths: list[str], cfg: PredictConfig, writer=None,
                on_batch: Optional[Callable[[list[Row]], None]] = None) -> PredictSummary:
    """Classify `paths` with `model_path`; rows go to `writer` (a ResultWriter) and/or `on_batch`.

    Paths already in writer.done (--resume) are skipped."""
    skipped = 0
    if writer is not None and writer.done:
        todo = [p for p in paths if p not in writer.done]
        skipped = len(paths) - len(todo)
        paths = todo
    workers = resolve_workers(cfg.workers, len(paths))
    pool = _pool(workers) if workers > 0 and paths else None
    ok = failed = 0
    try:
        # With decoding workers on the same cores, ONNX Runtime's threads must not spin while idle.
        predictor = Predictor(model_path, provider=cfg.provider, threads=cfg.threads, max_pixels=cfg.max_pixels,
                              spin=pool is None)
        start = time.perf_counter()
        for rows in iter_rows(predictor, paths, cfg, workers, pool):
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
            pool.shutdown(wait=True, cancel_futures=True)
    return PredictSummary(files=len(paths) + skipped, ok=ok, failed=failed, skipped=skipped, seconds=seconds,
                          images_per_second=(ok + failed) / seconds if seconds > 0 else 0.0,
                          provider=predictor.provider, workers=workers, model=str(model_path),
                          output=str(writer.output) if writer is not None else None)
