"""The local engine: this machine's cores decode while ONNX Runtime infers. Torch-free.

Worker processes decode and preprocess chunks of files while the main process runs ONNX Runtime on
the chunk before (or, on the CPU provider at ONNX Runtime's default threads, the workers infer too;
see workers.py). At most a few chunks are in flight, so memory stays flat whatever the number of
files, and rows come out in input order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..runtime.flags import batch_flags
from ..runtime.predictor import Predictor
from ..runtime.preprocess import preprocess_many
from .config import PredictConfig, resolve_workers
from .job import EngineReport
from .rows import RowBatch
from .workers import DecodePool, Decoded


@dataclass
class LocalFigures:
    """What only the local engine measures (the summary's `engine_figures`)."""

    worker_restarts: int = 0  # decoding processes that died and were replaced


class LocalEngine:
    """Rows for a list of files, in order, from worker processes on this machine."""

    name = "local"

    def __init__(self) -> None:
        self.predictor: Optional[Predictor] = None
        self.pool: Optional[DecodePool] = None
        self.workers = 0

    def open(self, model: Path, cfg: PredictConfig, n_inputs: int) -> tuple[str, ...]:
        """Load and check the model for a run over `n_inputs` files; returns its labels."""
        self.cfg = cfg
        # With decoding workers on the same cores, ONNX Runtime's threads must not spin while idle.
        spin = resolve_workers(cfg.workers, n_inputs) == 0
        self.predictor = Predictor(model, provider=cfg.provider, threads=cfg.threads, max_pixels=cfg.max_pixels,
                                   max_file_bytes=cfg.max_file_bytes,
                                   spin=spin, precision=cfg.precision, preprocessing=cfg.preprocessing)
        return tuple(self.predictor.labels)

    @property
    def choice(self):
        """The provider that runs the model, and why (runtime.providers.Choice)."""
        return self.predictor.model.choice

    def start(self, paths: list[str]) -> None:
        """The worker pool for `paths` (its processes start with the first chunks)."""
        cfg, predictor = self.cfg, self.predictor
        self.workers = resolve_workers(cfg.workers, len(paths))
        # On the CPU, at ONNX Runtime's default threads, the workers infer too (see workers.py);
        # not when the rows carry their inputs (--save-inputs): those come back from decoding workers.
        scoring = predictor.provider == "cpu" and cfg.threads is None and predictor.model.data and not cfg.keep_inputs
        model = (predictor.model.data, len(predictor.labels), str(predictor.model.path), cfg.flag_below) if scoring else None
        if self.workers and paths:
            self.pool = DecodePool(self.workers, cfg.read_limits, model, predictor.preprocessing)

    def rows(self, paths: list[str]) -> Iterator[RowBatch]:
        cfg, predictor = self.cfg, self.predictor
        chunks = (paths[i : i + cfg.batch_size] for i in range(0, len(paths), cfg.batch_size))
        if self.pool is not None:
            results = self.pool.results(chunks)
        else:
            results = ((chunk, Decoded(*preprocess_many(chunk, cfg.max_pixels, max_file_bytes=cfg.max_file_bytes,
                                                        version=predictor.preprocessing))) for chunk in chunks)
        for chunk, result in results:
            # Decoded: the model runs here; Scored: the worker ran it (and checked its outputs alike, and
            # flagged the rows: batch_flags, as here).
            if isinstance(result, Decoded):
                errors, probabilities = predictor.score(result.pixels, result.errors)
                flags = batch_flags(result.pixels, errors, probabilities, cfg.flag_below)
            else:
                errors, flags = result.errors, result.flags
                probabilities = result.probabilities[[i for i, e in enumerate(errors) if not e]]
            batch = RowBatch.scored(chunk, errors, probabilities, cfg.top_k, flags)
            if cfg.keep_inputs:  # Decoded (no scoring workers then): zeros where the row failed
                batch.inputs = np.where(np.array([not e for e in errors])[:, None, None], result.pixels, 0.0)
            yield batch

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def report(self) -> EngineReport:
        choice = self.choice
        return EngineReport(provider=self.predictor.provider, provider_reason=choice.reason, precision=choice.precision,
                            cpu_fallback=choice.cpu_fallback, workers=self.workers, model=str(self.predictor.model.path),
                            figures=LocalFigures(self.pool.restarts if self.pool is not None else 0))
