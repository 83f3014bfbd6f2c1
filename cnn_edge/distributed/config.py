"""What a run on Ray takes, and the plan derived from the cluster's resources. Light (no Ray).

Every core runs a share of both stages: decoding tasks and ONNX Runtime actors each reserve half
a logical CPU, so on C cores up to C decoding tasks and C single-threaded actors are placed, and
the operating system shares the cores between whichever stage has work, as the local engine's
decoding processes share them with its ONNX Runtime threads (no spinning, so an idle stage costs
nothing). With --gpus-per-worker, one actor per GPU share runs the model there and decoding gets
the CPUs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ..core.constants import DEFAULT_MAX_PIXELS
from ..core.errors import ConfigError

OUTPUT_FORMATS = ("parquet", "csv", "jsonl")
# Rows per part file, and the longest a row waits for its file: what an interruption costs at
# most, since --resume skips whole part files.
ROWS_PER_FILE = 100_000
SECONDS_PER_FILE = 30.0
# Paths per input block: a decoding task's share of the list (a few ONNX Runtime batches).
PATHS_PER_BLOCK = 1024
# How many times the remaining inputs are run again when Ray gives up on a pass (the nodes that
# held its data died faster than it could recover); each pass only runs what has no row yet.
PASSES = 3


@dataclass(frozen=True)
class RayConfig:
    address: Optional[str] = None  # None: RAY_ADDRESS, else a local cluster started for the run
    batch_size: int = 256  # images per ONNX Runtime call (and per decoding batch)
    actors: Optional[int] = None  # ONNX Runtime actors; None: from the cluster (see plan)
    decode_tasks: Optional[int] = None  # decoding tasks at once; None: from the cluster
    gpus_per_worker: float = 0.0  # GPUs per actor; > 0 places actors on GPU nodes
    threads: Optional[int] = None  # ONNX Runtime threads per actor; None: 1 on CPU
    provider: str = "auto"
    precision: str = "f32"  # OpenVINO's inference precision (--provider openvino)
    top_k: int = 3
    max_pixels: int = DEFAULT_MAX_PIXELS
    fmt: str = "parquet"
    rows_per_file: int = ROWS_PER_FILE
    seconds_per_file: float = SECONDS_PER_FILE
    paths_per_block: int = PATHS_PER_BLOCK
    passes: int = PASSES
    fuse: bool = False  # let Ray Data run decoding inside the actors (see engine._dataset)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        for name, value in (("--actors", self.actors), ("--workers", self.decode_tasks)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 with --engine ray, got {value}")
        if self.gpus_per_worker < 0 or (self.gpus_per_worker > 1 and self.gpus_per_worker != int(self.gpus_per_worker)):
            raise ConfigError(f"--gpus-per-worker must be a fraction of one GPU or a whole number, got {self.gpus_per_worker}")
        if self.fmt not in OUTPUT_FORMATS:
            raise ConfigError(f"unknown format {self.fmt!r} for --engine ray; choose {', '.join(OUTPUT_FORMATS)}")
        if not 1 <= self.top_k <= 10:
            raise ConfigError(f"--top-k must be between 1 and 10, got {self.top_k}")


@dataclass(frozen=True)
class Plan:
    """How the pipeline is laid out on this cluster."""

    actors: int
    actor_cpus: float  # logical CPUs each actor reserves
    actor_gpus: float
    threads: int  # ONNX Runtime intra-op threads per actor
    decode_tasks: int
    decode_cpus: float  # logical CPUs each decoding task reserves
    provider: str


def plan(cfg: RayConfig, cpus: float, gpus: float) -> Plan:
    """The layout for a cluster with `cpus` logical CPUs and `gpus` GPUs (ray.cluster_resources())."""
    cores = max(1, int(cpus))
    if cfg.gpus_per_worker > 0:
        if gpus < cfg.gpus_per_worker:
            raise ConfigError(f"--gpus-per-worker {cfg.gpus_per_worker:g} but the Ray cluster has {gpus:g} GPUs; "
                              f"drop the option to run on CPUs")
        actors = cfg.actors or max(1, math.floor(gpus / cfg.gpus_per_worker + 1e-9))
        # An actor feeding a GPU takes a core for its host side; decoding gets the other cores.
        decode = cfg.decode_tasks or max(1, cores - actors)
        return Plan(actors, 1.0 if cores > actors else 0.5, cfg.gpus_per_worker, cfg.threads or 1,
                    decode, min(1.0, max(0.25, (cores - actors) / decode)), cfg.provider)
    actors = cfg.actors or cores
    decode = cfg.decode_tasks or cores
    # Half the logical CPUs to each stage, whatever the counts: everything is placed at once.
    return Plan(actors, cores / 2 / actors, 0.0, cfg.threads or 1, decode, cores / 2 / decode, cfg.provider)
