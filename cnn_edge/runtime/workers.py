"""Decoding in worker processes that may die, without losing an image or the run. Torch-free.

A decoder can crash its process, and the kernel's OOM killer can end one. ProcessPoolExecutor
then fails every task in flight with BrokenProcessPool. DecodePool starts a new pool and decodes
the chunk that broke one file at a time: a file whose decoding kills the process again gets an
error row (WORKER_DIED), the others their rows, and the chunks that were waiting are sent again.
"""
from __future__ import annotations

import sys
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from typing import Iterable, Iterator

import numpy as np

from ..constants import IMAGE_SIZE
from ..errors import first_line
from . import preprocess

# Chunks queued per worker: enough to keep every core busy while the main process infers.
CHUNKS_PER_WORKER = 2
WORKER_DIED = ("the process decoding this file died (killed by a signal, or out of memory); "
               "the file was skipped, and the run went on")

Prepared = tuple[np.ndarray, list[str]]  # (N, 28, 28) model inputs, the error of each ('' when fine)


def _ignore_interrupts() -> None:
    """Ctrl-C reaches every process of the terminal's group; only the main one handles it (it
    keeps the rows written so far and stops the workers), so workers print no tracebacks."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _executor(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork starts workers in milliseconds. The executor forks all of them at the first submit(),
    # which comes after the caller has created ONNX Runtime's session: a forked child gets none of
    # its threads (fork copies only the calling thread) and never touches the session. Forcing the
    # fork earlier, before the session, was measured slower (10,000 MNIST PNGs, 2 cores: 7-11%
    # fewer images/s for fp32 and int8), so the executor keeps its own timing.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=_ignore_interrupts)


class DecodePool:
    """`workers` processes that decode and preprocess chunks of files, restarted when one dies."""

    def __init__(self, workers: int, max_pixels: int):
        self.workers, self.max_pixels = workers, max_pixels
        self.restarts = 0  # how many times a dead worker broke the pool
        self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _restart(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        self.restarts += 1

    def _submit(self, chunk: list[str]):
        for _ in range(2):  # a pool broken since the last call is restarted once
            if self._pool is None:
                self._pool = _executor(self.workers)
            try:
                # Looked up at each call (not bound at import), so the function the workers run
                # is the preprocessing module's current one.
                return self._pool.submit(preprocess.preprocess_many, chunk, self.max_pixels)
            except BrokenProcessPool:
                self._restart()
        raise BrokenProcessPool("the decoding processes could not be restarted")

    def _one_by_one(self, chunk: list[str]) -> Prepared:
        """Decode each file of a chunk alone, so that a file that kills its process is found."""
        out = np.zeros((len(chunk), IMAGE_SIZE, IMAGE_SIZE), np.float32)
        errors = [""] * len(chunk)
        for i, path in enumerate(chunk):
            try:
                prepared, (errors[i],) = self._submit([path]).result()
                out[i] = prepared[0]
            except BrokenProcessPool:
                self._restart()
                errors[i] = WORKER_DIED
            except Exception as exc:  # e.g. a result that could not be sent back
                errors[i] = f"cannot read: {exc.__class__.__name__}: {first_line(exc, 160)}"
        return out, errors

    def prepared(self, chunks: Iterable[list[str]]) -> Iterator[tuple[list[str], np.ndarray, list[str]]]:
        """(chunk, model inputs, errors) for each chunk, in order, with at most
        CHUNKS_PER_WORKER chunks per worker in flight."""
        todo = iter(chunks)
        pending: deque = deque()

        def top_up() -> None:
            while len(pending) < CHUNKS_PER_WORKER * self.workers:
                chunk = next(todo, None)
                if chunk is None:
                    return
                pending.append((chunk, self._submit(chunk)))

        top_up()
        while pending:
            chunk, future = pending.popleft()
            try:
                result = future.result()
            except Exception:  # BrokenProcessPool above all: a worker died
                if self._pool is not None:
                    self._restart()
                waiting = [c for c, _ in pending]
                pending.clear()
                result = self._one_by_one(chunk)
                pending.extend((c, self._submit(c)) for c in waiting)
            yield (chunk, *result)
            top_up()
