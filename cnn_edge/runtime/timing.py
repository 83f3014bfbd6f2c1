"""Latency and throughput: time a callable, or an ONNX model on random MNIST-shaped batches. Torch-free."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..core.constants import CHANNELS, IMAGE_SIZE, PIXEL_MAX

if TYPE_CHECKING:  # numpy and the model loader are imported when something is timed, not before
    import numpy as np

    from .onnx_model import OnnxModel


@dataclass
class Speed:
    batch_size: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_second: float  # batch_size / mean latency


def random_batch(batch_size: int) -> "np.ndarray":
    import numpy as np

    return (np.random.default_rng(0).random((batch_size, CHANNELS, IMAGE_SIZE, IMAGE_SIZE)) * PIXEL_MAX).astype(np.float32)


def measure(model: "OnnxModel", batch_size: int, seconds: float = 2.0, warmup: int = 3, min_runs: int = 5) -> Speed:
    """Run random MNIST-shaped batches through an ONNX model for about `seconds` after `warmup` runs.
    The first run is checked against the contract (ModelOutputError: timing a model that answers
    the wrong shape, or NaN, measures nothing useful); the timed ones are not, so the figures are
    the model's alone."""
    x = random_batch(batch_size)
    model.run_strict(x)
    return measure_fn(lambda: model.run(x, checked=False), batch_size, seconds, warmup, min_runs)


def measure_fn(run: Callable[[], object], batch_size: int, seconds: float = 2.0, warmup: int = 3,
               min_runs: int = 5) -> Speed:
    """Time `run()` (one batch of `batch_size`) for about `seconds` after `warmup` calls."""
    import numpy as np

    for _ in range(warmup):
        run()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    return Speed(batch_size, len(times), float(np.percentile(ms, 50)), float(np.percentile(ms, 90)),
                 float(np.percentile(ms, 99)), batch_size / float(np.mean(times)))
