"""The Ray engine: rows made on a Ray cluster (the job, prediction/job.py, writes them).

    paths ─ from_arrow (blocks of PATHS_PER_BLOCK) ─ map_batches(decode_batch)    CPU tasks
          ─ map_batches(InferActor)      actor pool: one ONNX Runtime session per actor, SPREAD
          ─ iter_batches on the driver   RowBatch after RowBatch, to the job and its sink

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
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ..core.errors import CnnEdgeError, ConfigError, first_line
from ..core.files import captured_stderr
from ..prediction.config import PredictConfig
from ..prediction.job import EngineReport
from ..prediction.rows import RowBatch
from .config import Plan, RayOptions, plan

RAY_EXTRA_HINT = "pip install 'cnn-edge[ray]'"


class RayRunError(CnnEdgeError):
    """The cluster failed the run for a reason that is not the user's input (nodes lost past every retry)."""

    exit_code = 1


def connect(address: Optional[str]) -> Optional["LocalCluster"]:
    """Connect to `address` (or RAY_ADDRESS), else start a local cluster: returned when started here
    (and so to be shut down by the caller). A Ray already initialised in this process is used."""
    import ray

    if ray.is_initialized():
        return None
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    # Ray's core logs an "E" line to stderr for every actor pool Ray Data creates (its constructor
    # arguments live in the object store: ray-project/ray#53727); it stays in the session's logs.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    local = LocalCluster() if address is None else None
    # ray.init makes SIGTERM exit the process at once (sys.exit(15)); the caller's handler stays.
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with captured_stderr(), (local.marked() if local else contextlib.nullcontext()):
            ray.init(address=address or "local", **quiet, **(local.init_args() if local else {}))
    except SystemExit as exc:
        if exc.code != signal.SIGTERM:
            raise
        # SIGTERM while Ray started, where its own handler (sys.exit(15)) ran: stopped as the
        # caller's handler stops a run, which the signal is sent again to, once it is back.
        ray.shutdown()
        if local:
            local.close()
        signal.signal(signal.SIGTERM, sigterm)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    except (ConnectionError, ValueError, RuntimeError) as exc:
        if local:
            local.close()
        raise ConfigError(f"cannot connect to the Ray cluster at {address!r} (--ray-address / RAY_ADDRESS): "
                          f"{first_line(exc)}") from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)
    return local


class LocalCluster:
    """The local Ray cluster a run starts: its session folder is a temporary folder of ours, and a
    watchdog (distributed/watchdog.py) kills its processes and removes the folder when the driver
    ends, even by `kill -9`."""

    def __init__(self):
        import subprocess
        import sys
        import tempfile
        import uuid

        from .watchdog import ENV

        self.env, self.token = ENV, uuid.uuid4().hex
        # Ray's unix sockets live under it (session_<date>_<pid>/sockets/plasma_store, ~75 bytes),
        # and a socket path holds 107 bytes at most: a long TMPDIR (macOS's) gives way to /tmp.
        base = tempfile.gettempdir()
        self.temp_dir = tempfile.mkdtemp(prefix="cnn-edge-ray-", dir=base if len(base) <= 24 else "/tmp")
        env = {k: v for k, v in os.environ.items() if k != ENV}
        self.watchdog = subprocess.Popen([sys.executable, "-m", "cnn_edge.distributed.watchdog", self.token,
                                          self.temp_dir, str(os.getpid())], stdin=subprocess.PIPE, env=env, start_new_session=True)

    @contextlib.contextmanager
    def marked(self):
        """The environment Ray's processes start with marks them as this run's (only while starting:
        a later subprocess of the caller's is not marked)."""
        os.environ[self.env] = self.token
        try:
            yield
        finally:
            os.environ.pop(self.env, None)

    def init_args(self) -> dict:
        return {"_temp_dir": self.temp_dir}

    def close(self, timeout: float = 15.0) -> None:
        """Let the watchdog clean up now (the cluster was shut down), and wait for it."""
        import subprocess

        if self.watchdog.stdin and not self.watchdog.stdin.closed:
            self.watchdog.stdin.close()
        try:
            self.watchdog.wait(timeout)
        except subprocess.TimeoutExpired:
            pass


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


def user_error(exc: BaseException) -> Optional[CnnEdgeError]:
    """Our typed error behind a Ray error (an actor on some node that could not start its
    provider), if any. Our errors are picklable and cross Ray as themselves: Ray raises them as a
    subclass of both its error and ours, or holds them as the `cause` of the error it raises."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, CnnEdgeError):
            return _unwrapped(e)
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None


def _unwrapped(e: CnnEdgeError) -> CnnEdgeError:
    """Ours as itself: Ray's wrapper class (RayTaskError(ConfigError)) prints the remote traceback
    too, so the ConfigError it holds is taken out of it."""
    if type(e).__module__.startswith("cnn_edge"):
        return e
    cause = getattr(e, "cause", None)
    if isinstance(cause, CnnEdgeError):
        return cause
    kind = next(k for k in type(e).__mro__ if issubclass(k, CnnEdgeError) and k.__module__.startswith("cnn_edge"))
    return kind(first_line(e, 1000))


def check_provider(model, model_path: str, p: Plan, precision: str = "f32") -> str:
    """Start the model on the requested provider once, where an actor would start, before the run:
    an explicit provider that cannot start there fails the run at once, with ONNX Runtime's reason."""
    import ray

    from .stages import probe

    try:
        return ray.get(ray.remote(probe).options(num_cpus=0, num_gpus=p.actor_gpus or None, max_retries=0)
                       .remote([model], model_path, p.provider, p.threads, precision))
    except Exception as exc:
        if (mine := user_error(exc)) is not None:
            raise mine from None
        raise


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


def _retries(map_batches, retries: int) -> dict:
    """map_batches' keyword for a task's retries: `max_retries` once Ray Data names it; until then
    (Ray 2.60 names only label_selector ... runtime_env, ray-project/ray#65227) it goes through
    **ray_remote_args, whose deprecation warning would print on every run: it is silenced for that
    one call, by its message. The cap matters: Ray Data retries a dead task forever by default."""
    import inspect

    if "max_retries" not in inspect.signature(map_batches).parameters:
        warnings.filterwarnings("ignore", message=r"`ray_remote_args` is deprecated", module=__name__)
    return {"max_retries": retries}


def _dataset(paths: list[str], model, model_path: str, cfg: PredictConfig, opts: RayOptions, p: Plan,
             preprocessing: str, isolate: bool = False):
    import pyarrow as pa
    import ray.data

    from .stages import InferActor, decode_batch, wire_path

    # Enough blocks for every decoding task to have two, at most paths_per_block paths each; the
    # first block of each task holds a single batch, so the first rows come back early.
    # With `isolate`, one path per block and per decoding task: a file that kills its task costs only itself.
    step = 1 if isolate else max(1, min(opts.paths_per_block, -(-len(paths) // (2 * p.decode_tasks))))
    cuts, i = [], 0
    while i < len(paths):
        size = min(step, cfg.batch_size) if len(cuts) < p.decode_tasks else step
        cuts.append((i, i + size))
        i += size
    blocks = [pa.table({"path": pa.array([wire_path(p) for p in paths[a:b]], pa.binary())}) for a, b in cuts]
    ds = ray.data.from_arrow(blocks)
    # Ray Data fuses a task stage into the actor stage after it when both reserve the same
    # resources: decoding then runs inside the actors. Unless opts.fuse, the decoding tasks reserve
    # a hair less CPU, which keeps them separate tasks (what a GPU node needs: the GPU actors infer
    # while the CPUs decode).
    decode_cpus = p.decode_cpus if opts.fuse else p.decode_cpus * 0.999
    ds = ds.map_batches(decode_batch, fn_kwargs={"max_pixels": cfg.max_pixels, "max_bytes": cfg.max_file_bytes,
                                                 "version": preprocessing},
                        batch_size=1 if isolate else cfg.batch_size, batch_format="numpy", num_cpus=decode_cpus,
                        concurrency=p.decode_tasks, **_retries(ds.map_batches, DECODE_RETRIES))
    # The model travels once through the object store, in a list so that Ray hands the actor the
    # reference (resolved in the constructor) rather than keeping a large constructor argument.
    return ds.map_batches(InferActor, fn_constructor_kwargs=dict(model=[model], original=model_path, provider=p.provider,
                                                                  threads=p.threads, top_k=cfg.top_k, precision=cfg.precision,
                                                                  flag_below=cfg.flag_below),
                          batch_size=cfg.batch_size, batch_format="numpy", num_cpus=p.actor_cpus,
                          num_gpus=p.actor_gpus or None, concurrency=(p.actors, p.actors))  # a fixed pool


@dataclass
class RayFigures:
    """What only the Ray engine measures (the summary's `engine_figures`)."""

    first_row_seconds: Optional[float] = None  # from the command's start to the first row back
    passes: int = 1  # pipeline runs it took (more when Ray gave up on one)
    steady_images_per_second: Optional[float] = None  # the rate between 10% and 90% of the rows


class RayEngine:
    """Rows for a list of local paths and object-store URIs, made on a Ray cluster: `address` (or
    RAY_ADDRESS), else a local cluster started for the run and shut down at its end.

    `started`: the command's start (time.perf_counter()), from which first_row_seconds counts."""

    name = "ray"

    def __init__(self, opts: RayOptions = RayOptions(), started: Optional[float] = None):
        for name in ("ray", "ray.data", "pyarrow"):
            try:
                __import__(name)
            except ImportError:
                raise ConfigError(f"--engine ray needs {name}, which the base install leaves out: {RAY_EXTRA_HINT}") from None
        self.opts, self.started = opts, started or time.perf_counter()
        self.local: Optional[LocalCluster] = None  # the cluster this engine started, if it did
        self._running = None  # the pass's Ray Data iterator, while one runs
        self.providers: set[str] = set()
        self.figures = RayFigures()
        self.plan: Optional[Plan] = None

    def open(self, model: Path, cfg: PredictConfig, n_inputs: int) -> tuple[str, ...]:
        """The model read once and checked here, on the CPU, before anything is started or written;
        the actors open the same bytes on the requested provider."""
        from ..runtime.predictor import Predictor

        self.opts.check(cfg)
        self.cfg, self.model_path = cfg, str(model)
        checked = Predictor(model, provider="cpu", threads=1, max_pixels=cfg.max_pixels, max_file_bytes=cfg.max_file_bytes,
                            preprocessing=cfg.preprocessing)
        self.data, self.preprocessing = checked.model.data, checked.preprocessing
        return tuple(checked.labels)

    def start(self, paths: list[str]) -> None:
        """Join or start the cluster, plan the run on it, and check the provider where actors run."""
        import ray

        self.local = connect(self.opts.address)
        self.model = ray.put(self.data)
        resources = ray.cluster_resources()
        self.plan = plan(self.cfg, self.opts, resources.get("CPU", 1.0), resources.get("GPU", 0.0))
        _quiet_data()
        # auto and cpu always start (the driver opened the model on the CPU): no probe, a faster first row.
        if self.plan.provider not in ("auto", "cpu"):
            self.providers.add(check_provider(self.model, self.model_path, self.plan, self.cfg.precision))

    def rows(self, paths: list[str]) -> Iterator[RowBatch]:
        """Each path's row, in the order the cluster finishes them. When Ray gives up on a pass, what
        has no row yet runs again, each file in a decoding task of its own (opts.passes in all); a file
        whose task dies on every retry gets the local engine's WORKER_DIED row."""
        from ..prediction.workers import WORKER_DIED
        from .stages import from_columns

        start = time.perf_counter()
        made: set[str] = set()
        marks: dict[float, tuple[float, int]] = {}  # share of the rows made -> (when, rows): the steady state
        expected = max(1, len(paths))
        isolate = False  # after a failed pass: one file per decoding task, lost blocks allowed
        passes = 0

        def note(batch: RowBatch) -> RowBatch:
            now = time.perf_counter()
            if self.figures.first_row_seconds is None and len(batch):
                self.figures.first_row_seconds = now - self.started
            made.update(batch.paths)
            self.providers.update(batch.side.get("provider", ()))
            for share in (0.1, 0.9):
                if share not in marks and len(made) >= share * expected:
                    marks[share] = (now, len(made))
            return batch

        while todo := [x for x in paths if x not in made]:
            passes += 1
            try:
                with _lost_blocks_allowed(isolate):
                    self._running = iter(_dataset(todo, self.model, self.model_path, self.cfg, self.opts, self.plan,
                                                  self.preprocessing, isolate).iter_batches(batch_size=None,
                                                                                            batch_format="numpy"))
                    for columns in self._running:
                        yield note(from_columns(columns))
                if isolate and (lost := [x for x in todo if x not in made]):
                    yield note(RowBatch.failed(lost, WORKER_DIED))  # each killed its own task on every retry
            except Exception as exc:
                if (mine := user_error(exc)) is not None:
                    raise mine from None
                isolate = True
                if passes == self.opts.passes:
                    raise RayRunError(f"the Ray cluster failed the run {self.opts.passes} times, last with: "
                                      f"{first_line(exc)}; the rows so far are kept: rerun with --resume") from None
        end = time.perf_counter()
        # The steady state: the rate between the 10% and 90% marks, clear of the start (cluster, actors)
        # and of the tail (the last batches draining).
        (t1, n1), (t2, n2) = marks.get(0.1, (start, 0)), marks.get(0.9, (end, len(made)))
        self.figures.passes = passes
        self.figures.steady_images_per_second = (n2 - n1) / (t2 - t1) if t2 > t1 else 0.0

    def close(self) -> None:
        """Stop the local cluster this engine started (a cluster it joined keeps running)."""
        if self._running is not None and hasattr(self._running, "close"):
            # A run stopped early (SIGTERM, Ctrl-C, a sink's error): Ray Data's executor is stopped
            # first, so that its threads do not meet a cluster being shut down (a native abort).
            with contextlib.suppress(Exception):
                self._running.close()
            self._running = None
        if self.local is not None:
            import ray

            sigterm = signal.getsignal(signal.SIGTERM)
            ray.shutdown()
            self.local.close()
            self.local = None
            # Ray's native shutdown puts back the default SIGTERM action underneath Python's
            # handler: install Python's again, so that a SIGTERM while the summary is written
            # stops the command as one mid-run does. (During the shutdown itself, about a second
            # after the output was committed, a SIGTERM ends the process as SIGTERM does.)
            if threading.current_thread() is threading.main_thread() and sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)

    def report(self) -> EngineReport:
        p = self.plan
        provider = ",".join(sorted(self.providers)) or (p.provider if p else self.cfg.provider)
        return EngineReport(provider=provider, provider_reason="", precision=None, cpu_fallback=[],
                            workers=p.actors if p else 0, model=self.model_path, figures=self.figures)
