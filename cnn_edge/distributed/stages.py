"""What runs on the Ray cluster: decoding tasks and ONNX Runtime actors. Torch-free.

Both work on plain numpy batches (Ray Data's "numpy" batch format), so they can be tested and
timed without Ray. Columns whose names start with "_" are side data: the driver takes them out of
the rows and into the manifest (which node and which process inferred each row).
"""
from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from pathlib import Path

import numpy as np

from ..core.constants import IMAGE_SIZE
from ..core.errors import ImageError, first_line
from .sources import is_uri, read_bytes

Batch = dict[str, np.ndarray]
NODE, WORKER, PROVIDER = "_node", "_worker", "_provider"
# Object-store reads in flight at once per decoding task: a GET waits tens of milliseconds on S3,
# so one at a time would bound a task to a few dozen images per second (docs/scale.md).
READS_IN_FLIGHT = 32


def _read_one(path: str) -> tuple[bytes | None, str]:
    """(bytes, "") or (None, the row's error): a surprise is this file's error, not the task's."""
    try:
        return read_bytes(path), ""
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # as in preprocess_many
        return None, f"cannot read: {exc.__class__.__name__}: {first_line(exc, 160)}"


def read_all(paths: list[str]) -> list[tuple[bytes | None, str]]:
    """Every path's (bytes, error), in order; objects on a store are fetched READS_IN_FLIGHT at a time."""
    if len(paths) > 1 and any(is_uri(p) for p in paths):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(READS_IN_FLIGHT, len(paths))) as pool:
            return list(pool.map(_read_one, paths))
    return [_read_one(p) for p in paths]


def decode_batch(batch: Batch, max_pixels: int) -> Batch:
    """{"path"} -> {"path", "pixels" (N, 28, 28) float32, "error"}: each file's bytes read, then
    decoded and preprocessed by the runtime's own preprocess_many. Never raises for a bad file:
    its error goes into its row."""
    from ..runtime.preprocess import preprocess_many

    paths = [str(p) for p in batch["path"]]
    read = read_all(paths)
    errors = [error for _, error in read]
    data = {i: content for i, (content, _) in enumerate(read) if content is not None}
    pixels = np.zeros((len(paths), IMAGE_SIZE, IMAGE_SIZE), np.float32)
    if data:
        members = list(data)
        prepared, decode_errors = preprocess_many([data[i] for i in members], max_pixels)
        pixels[members] = prepared
        for i, error in zip(members, decode_errors):
            errors[i] = error
    return {"path": np.array(paths, dtype=object), "pixels": pixels, "error": np.array(errors, dtype=object)}


def model_file(model: bytes, original: str) -> Path:
    """A path holding `model`: the user's file when this node sees it unchanged, else a copy in
    this node's temporary folder (a worker node need not share the driver's disk)."""
    digest = hashlib.sha256(model).hexdigest()
    try:
        if hashlib.sha256(Path(original).read_bytes()).hexdigest() == digest:
            return Path(original)
    except OSError:
        pass
    copy = Path(tempfile.gettempdir()) / f"cnn-edge-model-{digest[:16]}.onnx"
    if not copy.exists():
        tmp = copy.with_name(f".{copy.name}.{os.getpid()}")
        tmp.write_bytes(model)
        os.replace(tmp, copy)
    return copy


class InferActor:
    """One ONNX Runtime session, loaded once per actor, classifying decoded batches.

    `provider` is honoured as in the local engine: one that cannot start raises ConfigError from
    the constructor, which fails the job with that reason (never a silent CPU fall back)."""

    def __init__(self, model: list, original: str, provider: str, threads: int, top_k: int, precision: str = "f32"):
        """model: [the model's bytes], or [an ObjectRef to them] (how the engine sends it)."""
        from ..runtime.predictor import Predictor

        data = model[0] if isinstance(model[0], bytes) else _get(model[0])
        self.predictor = Predictor(model_file(data, original), provider=provider, threads=threads, spin=False,
                                   precision=precision)
        self.top_k = top_k
        self.node = _node_id()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: Batch) -> Batch:
        return classify(self.predictor, batch, self.top_k, self.node, self.worker)


def probe(model: list, original: str, provider: str, threads: int, precision: str = "f32") -> tuple[str, str]:
    """Open the model as an actor will, on a node with the actors' resources: ("", provider that
    ran) or (error class name, its message). Returned, not raised: the driver turns it into the
    one-line error, before any actor starts (an actor's failed start is reported by Ray as pages
    of nested tracebacks)."""
    from ..core.errors import CnnEdgeError

    try:
        return "", InferActor(model, original, provider, threads, 1, precision).predictor.provider
    except CnnEdgeError as exc:
        return type(exc).__name__, str(exc)


def _get(ref) -> bytes:
    import ray

    return ray.get(ref)


def error_rows(paths: list[str], error: str, top_k: int, provider: str):
    """Rows for inputs that reached no model (the process decoding them died): classify's rows,
    every one failed with `error`, so no model runs."""
    from types import SimpleNamespace

    batch = {"path": np.array(paths, dtype=object), "pixels": np.zeros((len(paths), IMAGE_SIZE, IMAGE_SIZE), np.float32),
             "error": np.array([error] * len(paths), dtype=object)}
    return classify(SimpleNamespace(labels=(), provider=provider), batch, top_k)


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (tests of the function alone)
        return socket.gethostname()


def classify(predictor, batch: Batch, top_k: int, node: str = "", worker: str = ""):
    """Decoded batch -> a pyarrow Table of rows: path, prediction, confidence, top1,
    top1_probability, ..., error (null where not applicable), then the side columns.
    Probabilities are ONNX Runtime's float32 values as float64, unrounded (the writer rounds them
    as the local engine's formats do)."""
    import pyarrow as pa

    errors = [str(e) for e in batch["error"]]
    n = len(errors)
    failed = np.array([bool(e) for e in errors], dtype=bool)
    ok = np.flatnonzero(~failed)
    k = top_k  # fewer when the model has fewer classes (only rows with a prediction have any)
    tops = np.full((n, top_k), None, dtype=object)
    probs = np.zeros((n, top_k))
    if len(ok):
        k = min(top_k, len(predictor.labels))
        labels = np.array(predictor.labels, dtype=object)
        p = predictor.probabilities(np.asarray(batch["pixels"], np.float32)[ok])
        order = np.argsort(-p, axis=1, kind="stable")[:, :k]  # as Predictor.to_predictions
        tops[ok[:, None], np.arange(k)] = labels[order]
        probs[ok[:, None], np.arange(k)] = np.take_along_axis(p, order, axis=1).astype(np.float64)
    columns = {"path": pa.array([str(x) for x in batch["path"]], pa.string()),
               "prediction": pa.array(tops[:, 0], pa.string()),
               "confidence": pa.array(probs[:, 0], pa.float64(), mask=failed)}
    for j in range(top_k):
        columns[f"top{j + 1}"] = pa.array(tops[:, j], pa.string())
        columns[f"top{j + 1}_probability"] = pa.array(probs[:, j], pa.float64(), mask=failed | (j >= k))
    columns["error"] = pa.array([e or None for e in errors], pa.string())
    columns[NODE] = pa.array([node] * n, pa.string())
    columns[WORKER] = pa.array([worker] * n, pa.string())
    columns[PROVIDER] = pa.array([predictor.provider] * n, pa.string())
    return pa.table(columns)
