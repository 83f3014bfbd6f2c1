"""What a batch prediction run takes: PredictConfig, and how many decoding workers it gets. Torch-free.

Light on purpose (no numpy, no Pillow): the CLI reads its defaults at start-up.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ..core.constants import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS
from ..core.contract import check_preprocessing
from ..core.errors import ConfigError
from ..core.flag_rule import FLAG_RULE

# Below this many files a worker pool costs more to start than it saves (cold start matters).
POOL_MIN_FILES = 256


@dataclass(frozen=True)
class PredictConfig:
    batch_size: int = 256
    workers: Optional[int] = None  # None: one per core for big jobs, none for small ones
    top_k: int = 3
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    provider: str = "auto"
    threads: Optional[int] = None  # ONNX Runtime intra-op threads; None: its default
    precision: str = "f32"  # OpenVINO's inference precision (f32|bf16|f16); other providers run the model's own
    preprocessing: Optional[str] = None  # mnist-v1|mnist-v2 in place of the model's own; None: the model's
    keep_inputs: bool = False  # each RowBatch carries the (N, 28, 28) inputs the model saw (--save-inputs)
    # A classified row whose top-1 probability is below this is flagged low_confidence (0: never);
    # the default is the flag rule's (core/flag_rule.json).
    flag_below: float = FLAG_RULE.low_confidence_below

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be 0 (decode in this process) or more, got {self.workers}")
        if not 1 <= self.top_k <= 10:
            raise ConfigError(f"--top-k must be between 1 and 10, got {self.top_k}")
        self.read_limits  # checks --max-pixels and --max-file-bytes
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1 (or left out: one per core), got {self.threads}")
        check_preprocessing(self.preprocessing)
        if not 0.0 <= self.flag_below <= 1.0:
            raise ConfigError(f"--flag-below is a probability between 0 (flag no row for its confidence) and 1, "
                              f"got {self.flag_below}")

    @property
    def read_limits(self):
        """The limits on each input image (core.files.ReadLimits)."""
        from ..core.files import ReadLimits

        return ReadLimits(self.max_pixels, self.max_file_bytes)


def cores() -> int:
    return os.cpu_count() or 1


def resolve_workers(requested: Optional[int], n_files: int) -> int:
    """Decoding processes for a run: at most one per core (each is a whole process with its own
    memory; more only queue for the same cores), none for small runs unless asked."""
    if requested is not None:
        return min(requested, cores())
    return 0 if n_files < POOL_MIN_FILES else cores()
