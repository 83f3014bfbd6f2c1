"""Decoding in worker processes that may die, without losing an image, the order, or the run. Torch-free.

A decoder can crash its process, and the kernel's OOM killer can end one. Each worker here has
its own pair of pipes, so a death is seen at once as the end of that worker's result pipe (never
as a half-read message in a queue shared by all, where concurrent.futures can hang), and only the
chunks sent to that worker are affected: the one it was decoding is decoded again one file at a
time, in a fresh process, so that a file that kills its process again gets an error row
(WORKER_DIED) and the others their rows; the chunks queued behind it go to its replacement.
Chunks go to the workers in turn and come back in the same order, so rows keep input order.

On the CPU provider the workers also run the model, each with its own single-thread ONNX Runtime
session of the bytes the main process checked: decoding and inference then share the cores with no
hand-over, and the main process only writes rows (one thread per core is also the most work ONNX
Runtime gets from a core for this model; 2-core machine, issue 13).
"""
from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from collections import deque
from typing import Iterable, Iterator, NamedTuple, Optional

import numpy as np

from ..core.constants import IMAGE_SIZE
from ..core.contract import PREPROCESSING_V1
from ..core.errors import CnnEdgeError
from ..core.files import ReadLimits
from ..runtime import preprocess
from ..runtime.flags import batch_flags
from ..runtime.onnx_model import run_session
from ..runtime.predictor import finite_rows

# Chunks queued per worker: enough to keep every core busy while the main process infers.
CHUNKS_PER_WORKER = 2
WORKER_DIED = ("the process decoding this file died (killed by a signal, or out of memory); "
               "the file was skipped, and the run went on")
PARENT_CHECK_S = 1.0  # how often an idle worker checks that the run it serves is still alive

class Decoded(NamedTuple):
    """What a decoding worker returns for a chunk: the model inputs and each file's error."""

    pixels: np.ndarray  # (N, 28, 28) float32, zero where a file failed
    errors: list[str]  # '' when the file was decoded


class Scored(NamedTuple):
    """What a scoring worker (decode, then infer, then flag) returns for a chunk."""

    probabilities: np.ndarray  # (N, classes) float32, zero where a file failed
    errors: list[str]
    flags: list[str]  # each row's flag (runtime/flags.py), '' where none or the file failed


# What a scoring worker needs: the model's bytes as the main process checked them, its class count,
# its name (for errors) and the low_confidence threshold of the rows' flags (--flag-below).
Model = Optional[tuple[bytes, int, str, float]]


def _session(model: bytes):
    """A single-thread CPU session of the model's bytes, in a worker."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # as in onnx_model.open_model
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _work(chunk: list[str], limits: ReadLimits, model: Model, sessions: list,
          version: str = PREPROCESSING_V1) -> Decoded | Scored:
    """Decode and preprocess a chunk by preprocessing `version`; with a model, score it too
    (through runtime.onnx_model's run_session: the outputs checked as the main process checks its own)."""
    # Looked up at each call (not bound at import): the preprocessing module's current function.
    prepared, errors = preprocess.preprocess_many(chunk, limits.max_pixels, max_file_bytes=limits.max_file_bytes,
                                                  version=version)
    if model is None:
        return Decoded(prepared, errors)
    data, classes, name, flag_below = model
    probs = np.zeros((len(chunk), classes), np.float32)
    ok = [i for i, e in enumerate(errors) if not e]
    flags = [""] * len(chunk)
    if ok:
        if not sessions:
            sessions.append(_session(data))
        x = np.ascontiguousarray(prepared[ok])[:, None]  # (B, 1, 28, 28), as Predictor.probabilities
        errors, scored = finite_rows(errors, ok, run_session(sessions[0], name, x, classes)[0])
        probs[[i for i in ok if not errors[i]]] = scored
        flags = batch_flags(prepared, errors, scored, flag_below)
    return Scored(probs, errors, flags)


def _serve(tasks, results, limits: ReadLimits, parent: int, model: Model = None, version: str = PREPROCESSING_V1) -> None:
    """A worker: decode and preprocess each chunk it is sent (and with `model`, infer), until told
    to stop, or until the run that started it is gone (so a killed run leaves no orphans)."""
    sessions: list = []  # the worker's session, made at its first chunk
    # Ctrl-C reaches every process of the terminal's group; only the main one handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            if not tasks.poll(PARENT_CHECK_S):
                if os.getppid() != parent:
                    return
                continue
            chunk = tasks.recv()
            if chunk is None:
                return
            try:
                result = _work(chunk, limits, model, sessions, version)
            except CnnEdgeError as exc:  # the model broke the contract: the run stops, in the main process
                result = exc
            results.send(result)
        except (EOFError, OSError):
            return


class _Worker:
    """One decoding process, its two pipes, and a thread that sends its chunks (so the main
    process never blocks on a full pipe while the worker blocks on sending a result)."""

    def __init__(self, limits: ReadLimits, model: Model = None, version: str = PREPROCESSING_V1):
        import multiprocessing

        # fork starts a worker in milliseconds, after the caller created ONNX Runtime's session:
        # the child gets none of its threads (fork copies only the calling thread) and never uses
        # it. Forcing the fork before the session was measured slower (10,000 MNIST PNGs, 2 cores:
        # 7-11% fewer images/s for fp32 and int8).
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        tasks_r, tasks_w = ctx.Pipe(duplex=False)
        results_r, results_w = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_serve, args=(tasks_r, results_w, limits, os.getpid(), model, version),
                                       daemon=True)
        self.process.start()
        tasks_r.close()  # the child's ends: with ours closed, the child's death is EOF on results
        results_w.close()
        self._tasks, self.results = tasks_w, results_r
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_loop, daemon=True)
        self._sender.start()

    def _send_loop(self) -> None:
        while (item := self._outbox.get()) is not None:
            try:
                self._tasks.send(item)
            except OSError:  # the worker died; receive() reports it
                return
        try:
            self._tasks.send(None)
        except OSError:
            pass

    def send(self, chunk: list[str]) -> None:
        self._outbox.put(chunk)

    def receive(self) -> Decoded | Scored | None:
        """The next result, or None when the worker died. Raises the error (a ModelOutputError) that
        stopped the worker's chunk: a faulty model is not a dead process, and every chunk would hit it."""
        try:
            result = self.results.recv()
        except (EOFError, OSError):
            return None
        if isinstance(result, BaseException):
            raise result
        return result

    def stop(self, timeout: float = 5.0) -> None:
        self._outbox.put(None)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._tasks.close()
        self.results.close()


class DecodePool:
    """`workers` processes that decode and preprocess (by preprocessing `version`) chunks of files,
    replaced when one dies. Each chunk comes back as Decoded; with `model` (bytes, classes) the
    workers also infer, and each chunk comes back as Scored."""

    def __init__(self, workers: int, limits: ReadLimits, model: Model = None, version: str = PREPROCESSING_V1):
        self.workers, self.limits, self.model, self.version = workers, limits, model, version
        self.restarts = 0  # how many workers died and were replaced
        self._slots: list[_Worker] = []

    def close(self) -> None:
        for worker in self._slots:
            worker.stop()
        self._slots = []

    def _replace(self, slot: int) -> None:
        self._slots[slot].stop(timeout=0)
        self._slots[slot] = _Worker(self.limits, self.model, self.version)
        self.restarts += 1

    def _one_by_one(self, chunk: list[str]) -> Decoded | Scored:
        """Decode each file of a chunk alone, in a fresh process, so that a file that kills its
        process is found; the process is replaced after each death."""
        shape = (self.model[1],) if self.model else (IMAGE_SIZE, IMAGE_SIZE)
        out = np.zeros((len(chunk), *shape), np.float32)
        errors, flags = [""] * len(chunk), [""] * len(chunk)
        worker = _Worker(self.limits, self.model, self.version)
        try:
            for i, path in enumerate(chunk):
                worker.send([path])
                result = worker.receive()
                if result is None:
                    errors[i] = WORKER_DIED
                    worker.stop(timeout=0)
                    worker = _Worker(self.limits, self.model, self.version)
                    self.restarts += 1
                    continue
                out[i], errors[i] = result[0][0], result[1][0]
                if isinstance(result, Scored):
                    flags[i] = result.flags[0]
        finally:
            worker.stop()
        return Scored(out, errors, flags) if self.model else Decoded(out, errors)

    def results(self, chunks: Iterable[list[str]]) -> Iterator[tuple[list[str], Decoded | Scored]]:
        """(chunk, its Decoded or Scored) for each chunk, in order, with at most CHUNKS_PER_WORKER
        chunks per worker in flight."""
        self._slots = self._slots or [_Worker(self.limits, self.model, self.version) for _ in range(self.workers)]
        todo = iter(chunks)
        pending: deque = deque()  # (chunk, slot), in input order
        turn = 0

        def top_up() -> None:
            nonlocal turn
            while len(pending) < CHUNKS_PER_WORKER * self.workers:
                chunk = next(todo, None)
                if chunk is None:
                    return
                self._slots[turn].send(chunk)
                pending.append((chunk, turn))
                turn = (turn + 1) % self.workers

        top_up()
        while pending:
            chunk, slot = pending.popleft()
            result = self._slots[slot].receive()
            if result is None:  # the worker died: its current chunk alone, file by file; its queue again
                self._replace(slot)
                result = self._one_by_one(chunk)
                for queued, queued_slot in pending:
                    if queued_slot == slot:
                        self._slots[slot].send(queued)
            yield chunk, result
            top_up()
