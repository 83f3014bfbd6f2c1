"""Run `predict` on a Ray cluster: connect (or start one), stream the pipeline, write, summarise.

    paths ─ from_arrow (blocks of PATHS_PER_BLOCK) ─ map_batches(decode_batch)    CPU tasks
          ─ map_batches(InferActor)      actor pool: one ONNX Runtime session per actor, SPREAD
          ─ iter_batches on the driver   OutputDir: part files, then _SUCCESS

The driver writes: rows are ~150 bytes (10^9 a day is under 2 MB/s), and one writer makes
"exactly one row per input" a set lookup. Ray retries the tasks and actors of a node that died;
if it gives up on a pass, the inputs still without a row are run again (PASSES in all), each
file in a decoding task of its own, and a file whose task dies on every retry (a decoder that
crashes its process, the OOM killer) gets the local engine's error row instead of failing the run.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..core.errors import CnnEdgeError, ConfigError, first_line
from ..prediction.local import PredictSummary
from .config import Plan, RayConfig, plan
from .outputs import OutputDir


class RayRunError(CnnEdgeError):
    """The cluster failed the run for a reason that is not the user's input (nodes lost past every retry)."""

    exit_code = 1


def connect(address: Optional[str]) -> bool:
    """Connect to `address` (or RAY_ADDRESS), else start a local cluster. True when started here
    (and so to be shut down by the caller). A Ray already initialised in this process is used."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    # Ray's core logs an "E" line to stderr for every actor pool Ray Data creates (its constructor
    # arguments live in the object store: ray-project/ray#53727); it stays in the session's logs.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        with _stderr_to_log():  # Ray's core announces the log level it read from the environment
            ray.init(address=address or "local", **quiet)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at {address!r} (--ray-address / RAY_ADDRESS): "
                          f"{first_line(exc)}") from None
    return address is None


@contextlib.contextmanager
def _stderr_to_log():
    """What native code writes to fd 2 meanwhile goes to a file in the temporary folder, not the terminal."""
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="cnn-edge-ray-init-", suffix=".log", delete=False) as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _quiet_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    # Ray Data logs to the console as well as to the session's ray-data.log: keep the file only.
    data_logger = logging.getLogger("ray.data")
    for handler in list(data_logger.handlers):
        if type(handler).__name__ != "SessionFileHandler":
            data_logger.removeHandler(handler)
    # Ray Data's advice on block counts and concurrency for small runs: not the user's concern.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data\..*")


_OURS = re.compile(r"cnn_edge\.errors\.(\w+): ([^\n]+)")


def user_error(exc: BaseException) -> Optional[CnnEdgeError]:
    """Our typed error behind a Ray error (an actor on some node that could not start its
    provider), if any: found in the exception chain, or named in the remote traceback Ray quotes."""
    from ..core import errors

    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, CnnEdgeError):
            return ConfigError(first_line(e, 1000)) if not type(e).__module__.startswith("cnn_edge") else e
        if (m := _OURS.search(str(e))) and isinstance(kind := getattr(errors, m.group(1), None), type) \
                and issubclass(kind, CnnEdgeError) and kind is not errors.ParityError:
            return kind(m.group(2).strip())
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None


def check_provider(model, model_path: str, p: Plan, precision: str = "f32") -> str:
    """Start the model on the requested provider once, where an actor would start, before the run:
    an explicit provider that cannot start there fails the run at once, with ONNX Runtime's reason."""
    import ray

    from ..core import errors
    from .stages import probe

    kind, text = ray.get(ray.remote(probe).options(num_cpus=0, num_gpus=p.actor_gpus or None, max_retries=1)
                         .remote([model], model_path, p.provider, p.threads, precision))
    if kind:
        raise getattr(errors, kind, ConfigError)(text)
    return text


# A decoding task whose process dies is run again this many times (Ray Data's default is forever:
# one file that crashes its decoder would hang the run).
DECODE_RETRIES = 3


@contextlib.contextmanager
def _lost_blocks_allowed(allowed: bool):
    """While `allowed`, a block whose task failed past its retries is dropped, not the run failed."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    saved = ctx.max_errored_blocks
    ctx.max_errored_blocks = -1 if allowed else saved
    try:
        yield
    finally:
        ctx.max_errored_blocks = saved


def _dataset(paths: list[str], model, model_path: str, cfg: RayConfig, p: Plan, isolate: bool = False):
    import pyarrow as pa
    import ray.data

    from .stages import InferActor, decode_batch

    # Enough blocks for every decoding task to have two, at most PATHS_PER_BLOCK paths each; the
    # first block of each task holds a single batch, so the first rows come back early.
    # With `isolate`, one path per block and per decoding task: a file that kills its task costs only itself.
    step = 1 if isolate else max(1, min(cfg.paths_per_block, -(-len(paths) // (2 * p.decode_tasks))))
    cuts, i = [], 0
    while i < len(paths):
        size = min(step, cfg.batch_size) if len(cuts) < p.decode_tasks else step
        cuts.append((i, i + size))
        i += size
    blocks = [pa.table({"path": pa.array(paths[a:b], pa.string())}) for a, b in cuts]
    ds = ray.data.from_arrow(blocks)
    # Ray Data fuses a task stage into the actor stage after it when both reserve the same
    # resources: decoding then runs inside the actors. Unless cfg.fuse, the decoding tasks reserve
    # a hair less CPU, which keeps them separate tasks (what a GPU node needs: the GPU actors infer
    # while the CPUs decode).
    decode_cpus = p.decode_cpus if cfg.fuse else p.decode_cpus * 0.999
    ds = ds.map_batches(decode_batch, fn_kwargs={"max_pixels": cfg.max_pixels}, batch_size=1 if isolate else cfg.batch_size,
                        batch_format="numpy", num_cpus=decode_cpus, concurrency=p.decode_tasks,
                        max_retries=DECODE_RETRIES)
    # The model travels once through the object store, in a list so that Ray hands the actor the
    # reference (resolved in the constructor) rather than keeping a large constructor argument.
    return ds.map_batches(InferActor, fn_constructor_kwargs=dict(model=[model], original=model_path, provider=p.provider,
                                                                  threads=p.threads, top_k=cfg.top_k, precision=cfg.precision),
                          batch_size=cfg.batch_size, batch_format="numpy", num_cpus=p.actor_cpus,
                          num_gpus=p.actor_gpus or None, concurrency=(p.actors, p.actors))  # a fixed pool


@dataclass(frozen=True)
class Job:
    """A run's cluster-side set-up, made before any row: the model in the object store, the
    layout, and the provider its actors run on (checked)."""

    model: object  # ObjectRef to the model's bytes
    model_path: str
    plan: Plan
    provider: str


def prepare(model_path: Path, cfg: RayConfig) -> Job:
    """Plan the run on the connected cluster and check that the model starts on the requested
    provider where the actors will run. Raises ConfigError (provider), ModelFileError."""
    import ray

    from ..runtime.model_file import read_model_bytes

    model = ray.put(read_model_bytes(Path(model_path)))
    resources = ray.cluster_resources()
    p = plan(cfg, resources.get("CPU", 1.0), resources.get("GPU", 0.0))
    _quiet_data()
    # auto and cpu always start (the driver opened the model on the CPU): no probe, a faster first row.
    explicit = p.provider not in ("auto", "cpu")
    return Job(model, str(model_path), p, check_provider(model, str(model_path), p, cfg.precision) if explicit else p.provider)


def run_ray_predict(job: Job, paths: list[str], cfg: RayConfig, out: OutputDir,
                    on_rows: Optional[Callable[[int, int], None]] = None, started: Optional[float] = None) -> PredictSummary:
    """Classify `paths` on the cluster; rows go to `out`, and paths it holds already (--resume)
    are skipped. `on_rows(new rows, of which failed)` follows progress. `started`: the command's
    start (time.perf_counter()), from which first_row_seconds counts (default: this call's)."""
    p = job.plan
    wanted = set(paths)
    skipped = len(wanted & out.done)
    start = time.perf_counter()
    first_row: Optional[float] = None  # perf_counter() when the first row came back
    marks: dict[float, tuple[float, int]] = {}  # share of the rows done -> (when, rows): the steady state
    expected = max(1, len(wanted - out.done))
    ok = failed = passes = 0
    isolate = False  # after a failed pass: one file per decoding task, lost blocks allowed

    def take(table) -> None:
        nonlocal ok, failed, first_row
        new, bad = out.add(table)
        ok, failed = ok + new - bad, failed + bad
        now = time.perf_counter()
        first_row = now if first_row is None and new else first_row
        for share in (0.1, 0.9):
            if share not in marks and ok + failed >= share * expected:
                marks[share] = (now, ok + failed)
        if out.due(cfg.rows_per_file, cfg.seconds_per_file):
            out.flush()
        if on_rows is not None and new:
            on_rows(new, bad)

    while todo := [x for x in paths if x not in out.done]:
        passes += 1
        try:
            with _lost_blocks_allowed(isolate):
                for table in _dataset(todo, job.model, job.model_path, cfg, p, isolate).iter_batches(
                        batch_size=None, batch_format="pyarrow"):
                    take(table)
            if isolate:  # what still has no row killed its own decoding task on every retry
                from ..prediction.workers import WORKER_DIED
                from .stages import error_rows

                if lost := [x for x in todo if x not in out.done]:
                    take(error_rows(lost, WORKER_DIED, cfg.top_k, job.provider))
        except Exception as exc:
            if (mine := user_error(exc)) is not None:
                raise mine from None
            isolate = True
            if passes == cfg.passes:
                out.flush()  # what is done is kept for --resume
                raise RayRunError(f"the Ray cluster failed the run {cfg.passes} times, last with: {first_line(exc)}; "
                                  f"the rows so far are kept in {out.output}: rerun with --resume") from None
    end = time.perf_counter()
    seconds = end - start
    # The steady state: the rate between the 10% and 90% marks, clear of the start (cluster, actors)
    # and of the tail (the last batches draining).
    (t1, n1), (t2, n2) = marks.get(0.1, (start, 0)), marks.get(0.9, (end, ok + failed))
    steady = (n2 - n1) / (t2 - t1) if t2 > t1 else 0.0
    missing = wanted - out.done
    if missing:  # cannot happen while Ray returns every batch; never committed as finished
        out.flush()
        raise RayRunError(f"{len(missing):,} inputs got no row (e.g. {sorted(missing)[0]}); rerun with --resume")
    summary = PredictSummary(files=len(paths), ok=ok, failed=failed, skipped=skipped, seconds=seconds,
                             images_per_second=(ok + failed) / seconds if seconds > 0 else 0.0,
                             provider=",".join(sorted(out.providers)) or job.provider, workers=p.actors,
                             model=job.model_path, output=out.output,
                             engine="ray", passes=passes, steady_images_per_second=steady,
                             first_row_seconds=first_row - (started or start) if first_row is not None else None)
    out.commit({"model": job.model_path, "ok": ok, "failed": failed, "skipped": skipped})
    return summary
