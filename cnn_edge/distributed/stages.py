"""What runs on the Ray cluster: decoding tasks and ONNX Runtime actors. Torch-free.

Both work on plain numpy batches (Ray Data's "numpy" batch format), so they can be tested and
timed without Ray. What an actor returns is a RowBatch as columns (to_columns; the driver reads it
back with from_columns): the same rows the local engine makes, plus the side columns node, worker
and provider (which node and which process inferred each row, on what).
"""
from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from pathlib import Path

import numpy as np

from ..core.constants import DEFAULT_MAX_FILE_BYTES, IMAGE_SIZE
from ..core.contract import PREPROCESSING_V1
from ..core.errors import ImageError, ModelOutputError, first_line
from ..core.flag_rule import FLAG_RULE
from ..core.files import atomic_write_bytes
from ..prediction.rows import RowBatch
from ..runtime.flags import batch_flags
from .sources import FileTooLarge, is_uri, read_bytes

Batch = dict[str, np.ndarray]
SIDE = ("node", "worker", "provider")  # RowBatch.side columns an actor adds
# Object-store reads in flight at once per decoding task: a GET waits tens of milliseconds on S3,
# so one at a time would bound a task to a few dozen images per second (docs/scale.md).
READS_IN_FLIGHT = 32
# An object larger than this is not read alongside others but alone, then decoded and let go:
# a task holds at most READS_IN_FLIGHT small objects (32 MiB) or one large one (--max-file-bytes).
SMALL_READ_BYTES = 1024 * 1024
_LATER = "\0read alone"  # _read_one's marker for an object too large to be read in a window


def wire_path(path: str) -> bytes:
    """A path as it travels through Ray Data: bytes, since a file name need not be UTF-8 (Arrow's
    strings must be); the odd bytes are Python's lone surrogates, as the local engine holds them."""
    return path.encode("utf-8", "surrogateescape")


def unwired_path(value) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _read_one(path: str, limit: int, window: int | None = None) -> tuple[bytes | None, str]:
    """(bytes, "") or (None, the row's error): a surprise is this file's error, not the task's.
    With `window`, an object above that many bytes (but within `limit`) is not read: (None, _LATER)."""
    try:
        return read_bytes(path, min(limit, window or limit)), ""
    except FileTooLarge as exc:
        return None, _LATER if exc.size <= limit else str(exc)
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # as in preprocess_many
        return None, f"cannot read: {exc.__class__.__name__}: {first_line(exc, 160)}"


def read_all(paths: list[str], limit: int = DEFAULT_MAX_FILE_BYTES) -> list[tuple[bytes | None, str]]:
    """Every path's (bytes, error), in order; objects on a store are fetched READS_IN_FLIGHT at a time."""
    return [item for _, item in _read_windows(list(enumerate(paths)), limit)]


def _read_windows(items: list[tuple[int, str]], limit: int):
    """(index, (bytes, error)) for each (index, path), READS_IN_FLIGHT small objects fetched at once,
    a large one alone; yielded window by window, so what a caller lets go is gone."""
    from concurrent.futures import ThreadPoolExecutor

    if not items:
        return
    with ThreadPoolExecutor(min(READS_IN_FLIGHT, len(items))) as pool:
        for w in range(0, len(items), READS_IN_FLIGHT):
            window = items[w : w + READS_IN_FLIGHT]
            read = list(pool.map(lambda item: _read_one(item[1], limit, SMALL_READ_BYTES), window))
            yield from ((i, got) for (i, _), got in zip(window, read) if got[1] != _LATER)
            for (i, path), got in zip(window, read):
                if got[1] == _LATER:
                    yield i, _read_one(path, limit)


def decode_batch(batch: Batch, max_pixels: int, max_bytes: int = DEFAULT_MAX_FILE_BYTES,
                 version: str = PREPROCESSING_V1) -> Batch:
    """{"path"} -> {"path", "pixels" (N, 28, 28) float32, "error"}: each file decoded and
    preprocessed (by preprocessing `version`, the model's) by the runtime's own preprocess_many, as
    on the local engine. Never raises for a bad file: its error goes into its row.

    Memory stays bounded by the limits, not by the files: a file above `max_bytes` is refused
    before it is read; a local file is read by the decoder itself, which checks --max-pixels from
    the header before decoding; objects are read a window at a time (see _read_windows)."""
    from ..runtime.preprocess import preprocess_many

    paths = [unwired_path(p) for p in batch["path"]]
    errors = [""] * len(paths)
    pixels = np.zeros((len(paths), IMAGE_SIZE, IMAGE_SIZE), np.float32)

    def decode(members: list[int], sources: list) -> None:
        prepared, decode_errors = preprocess_many(sources, max_pixels, max_file_bytes=max_bytes, version=version)
        pixels[members] = prepared
        for i, error in zip(members, decode_errors):
            errors[i] = error

    if local := [i for i, p in enumerate(paths) if not is_uri(p)]:  # read by the decoder, limits first
        decode(local, [paths[i] for i in local])
    members, sources, held = [], [], 0
    for i, (content, error) in _read_windows([(i, p) for i, p in enumerate(paths) if is_uri(p)], max_bytes):
        errors[i] = error
        if content is None:
            continue
        members.append(i)
        sources.append(content)
        held += len(content)
        if held >= READS_IN_FLIGHT * SMALL_READ_BYTES or len(members) >= READS_IN_FLIGHT:
            decode(members, sources)
            members, sources, held = [], [], 0
    if members:
        decode(members, sources)
    return {"path": np.array([wire_path(p) for p in paths], dtype=object), "pixels": pixels,
            "error": np.array(errors, dtype=object)}


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
        atomic_write_bytes(copy, model)  # actors of one node may write it at once: each renames a whole file
    return copy


class InferActor:
    """One ONNX Runtime session, loaded once per actor, classifying decoded batches.

    `provider` is honoured as in the local engine: one that cannot start raises ConfigError from
    the constructor, which fails the job with that reason (never a silent CPU fall back)."""

    def __init__(self, model: list, original: str, provider: str, threads: int, top_k: int, precision: str = "f32",
                 flag_below: float = FLAG_RULE.low_confidence_below):
        """model: [the model's bytes], or [an ObjectRef to them] (how the engine sends it);
        flag_below: the low_confidence threshold of the rows' flags (--flag-below)."""
        from ..runtime.predictor import Predictor

        data = model[0] if isinstance(model[0], bytes) else _get(model[0])
        self.predictor = Predictor(model_file(data, original), provider=provider, threads=threads, spin=False,
                                   precision=precision)
        self.top_k, self.flag_below = top_k, flag_below
        self.side = {"node": _node_id(), "worker": f"{socket.gethostname()}:{os.getpid()}",
                     "provider": self.predictor.provider}

    def __call__(self, batch: Batch) -> Batch:
        return to_columns(score(self.predictor, batch, self.top_k, self.side, self.flag_below))


def probe(model: list, original: str, provider: str, threads: int, precision: str = "f32") -> str:
    """Open the model as an actor will, on a node with the actors' resources, and return the
    provider that ran. Raises the typed error (ConfigError, ModelFileError), which crosses Ray as
    itself: the driver gets it before any actor starts (an actor's failed start is reported by Ray
    as pages of nested tracebacks)."""
    return InferActor(model, original, provider, threads, 1, precision).predictor.provider


def _get(ref) -> bytes:
    import ray

    return ray.get(ref)


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (tests of the function alone)
        return socket.gethostname()


def score(predictor, batch: Batch, top_k: int, side: dict[str, str],
          flag_below: float = FLAG_RULE.low_confidence_below) -> RowBatch:
    """A decoded batch ({"path", "pixels", "error"}) -> its rows, as the local engine makes them
    (flags included), with `side` (node, worker, provider) on every row."""
    errors = [str(e) for e in batch["error"]]
    pixels = np.asarray(batch["pixels"], np.float32)
    try:
        errors, probabilities = predictor.score(pixels, errors)
    except ModelOutputError as exc:
        # A fault the driver's probe (Predictor, on the CPU) did not show: one that depends on the
        # batch's size or content, or on this provider. Raised here, it would reach the driver as a
        # bare UserCodeException (Ray Data drops its cause), and the engine would retry file by file
        # and report each file as a dead process; the rows say what it was instead.
        errors = [e or f"the model failed on this batch: {exc}" for e in errors]
        probabilities = np.zeros((0, len(predictor.labels)), np.float32)
    rows = RowBatch.scored([unwired_path(p) for p in batch["path"]], errors, probabilities, top_k,
                           batch_flags(pixels, errors, probabilities, flag_below))
    rows.side = {name: [value] * len(rows) for name, value in side.items()}
    return rows


def to_columns(rows: RowBatch) -> Batch:
    """A RowBatch as Ray Data's numpy columns (the top-k as (N, k) tensor columns)."""
    columns = {"path": np.array([wire_path(p) for p in rows.paths], dtype=object), "error": np.array(rows.errors, dtype=object),
               "top_index": rows.top_index, "top_probability": rows.top_probability,
               "flag": np.array(rows.flags, dtype=object)}
    columns.update({name: np.array(values, dtype=object) for name, values in rows.side.items()})
    return columns


def from_columns(columns: Batch) -> RowBatch:
    return RowBatch([unwired_path(p) for p in columns["path"]], [str(e) for e in columns["error"]],
                    np.asarray(columns["top_index"]), np.asarray(columns["top_probability"]),
                    {name: [str(v) for v in columns[name]] for name in SIDE if name in columns},
                    flags=[str(f) for f in columns["flag"]])
