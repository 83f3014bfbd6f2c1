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

from ..core.errors import ConfigError
from ..prediction.config import PredictConfig

# Paths per input block: a decoding task's share of the list (a few ONNX Runtime batches).
PATHS_PER_BLOCK = 1024
# How many times the remaining inputs are run again when Ray gives up on a pass (the nodes that
# held its data died faster than it could recover); each pass only runs what has no row yet.
PASSES = 3


@dataclass(frozen=True)
class RayOptions:
    """What only a run on Ray takes; the rest (batch size, top-k, provider, ...) is PredictConfig,
    whose `workers` are the decoding tasks here."""

    address: Optional[str] = None  # None: RAY_ADDRESS, else a local cluster started for the run
    actors: Optional[int] = None  # ONNX Runtime actors; None: from the cluster (see plan)
    gpus_per_worker: float = 0.0  # GPUs per actor; > 0 places actors on GPU nodes
    paths_per_block: int = PATHS_PER_BLOCK
    passes: int = PASSES
    fuse: bool = False  # let Ray Data run decoding inside the actors (see engine._dataset)

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ConfigError(f"--actors must be at least 1 with --engine ray, got {self.actors}")
        if self.gpus_per_worker < 0 or (self.gpus_per_worker > 1 and self.gpus_per_worker != int(self.gpus_per_worker)):
            raise ConfigError(f"--gpus-per-worker must be a fraction of one GPU or a whole number, got {self.gpus_per_worker}")

    def check(self, cfg: PredictConfig) -> None:
        """What Ray needs of the shared settings: decoding tasks, if given, are at least one."""
        if cfg.workers is not None and cfg.workers < 1:
            raise ConfigError(f"--workers must be at least 1 with --engine ray, got {cfg.workers}")
        if cfg.keep_inputs:
            raise ConfigError("--save-inputs works with the local engine only (--engine ray sends rows back, not "
                              "the inputs the model saw): run the files whose inputs you want to see without --engine ray")


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


def plan(cfg: PredictConfig, opts: RayOptions, cpus: float, gpus: float) -> Plan:
    """The layout for a cluster with `cpus` logical CPUs and `gpus` GPUs (ray.cluster_resources())."""
    cores = max(1, int(cpus))
    if opts.gpus_per_worker > 0:
        if gpus < opts.gpus_per_worker:
            raise ConfigError(f"--gpus-per-worker {opts.gpus_per_worker:g} but the Ray cluster has {gpus:g} GPUs; "
                              f"drop the option to run on CPUs")
        actors = opts.actors or max(1, math.floor(gpus / opts.gpus_per_worker + 1e-9))
        # An actor feeding a GPU takes a core for its host side; decoding gets the other cores.
        decode = cfg.workers or max(1, cores - actors)
        return Plan(actors, 1.0 if cores > actors else 0.5, opts.gpus_per_worker, cfg.threads or 1,
                    decode, min(1.0, max(0.25, (cores - actors) / decode)), cfg.provider)
    actors = opts.actors or cores
    decode = cfg.workers or cores
    # Half the logical CPUs to each stage, whatever the counts: everything is placed at once.
    return Plan(actors, cores / 2 / actors, 0.0, cfg.threads or 1, decode, cores / 2 / decode, cfg.provider)
