"""Stream prediction rows to CSV or JSONL, resumably, without ever damaging a file. Torch-free.

Rows go to OUTPUT.partial as they come, flushed after every batch, so a million rows never sit in
memory and a crash loses at most one batch. When the run ends, the partial file is renamed onto
OUTPUT: a finished file is always complete, and the previous OUTPUT is untouched until then.
`resume` continues OUTPUT.partial (or OUTPUT itself, to add new inputs) after checking every row
it keeps, and reports the paths already written, which the run then skips. Without `resume`, an
OUTPUT.partial left by an earlier run is refused, never clobbered; a partial file that is a
symbolic link is never written through. Row formats: row_format.py.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, Sequence

from ..core.errors import ConfigError, OutputPathError
from ..core.files import check_writable
from .row_format import ENCODING_ERRORS, csv_cells, csv_header, jsonl_text, kept_paths


def partial_path(output: Path) -> Path:
    return Path(output).with_name(Path(output).name + ".partial")


def refuse_overwriting(output: Path, protected: Iterable[str]) -> None:
    """ConfigError when -o (or its partial file) is the model or one of the inputs: compared by
    absolute path, with symbolic links on the output's side resolved (an -o that links to an input)."""
    targets = {}
    for target in (Path(output), partial_path(output)):
        targets[os.path.abspath(target)] = target
        targets[os.path.realpath(target)] = target
    for p in protected:
        if os.path.abspath(p) in targets:
            raise ConfigError(f"-o {output} would overwrite {p}, which this run reads; choose another output file")


def _complete_lines(path: Path) -> bytes:
    """The file's bytes up to its last newline: a row cut by a crash is dropped, then rewritten."""
    with open(path, "rb") as f:
        data = f.read()
    return data[: data.rfind(b"\n") + 1]


def _emit(csv_writer, stream, path: str, prediction, error: str, top_k: int) -> None:
    """One row, in CSV (through `csv_writer`) or JSONL (onto `stream`)."""
    if csv_writer is not None:
        csv_writer.writerow(csv_cells(path, prediction, error, top_k))
    else:
        stream.write(jsonl_text(path, prediction, error))


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a single call may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _open_new(path: Path):
    """A new file, created here and now: never an existing one, never through a symbolic link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except FileExistsError:
        raise ConfigError(f"{path} appeared while starting; is another run writing it?") from None
    return fd


class ResultWriter:
    def __init__(self, output: Path, fmt: str, top_k: int, *, resume: bool = False, labels: Sequence[str] = ()):
        self.output = check_writable(Path(output))
        self.partial = partial_path(self.output)
        self.fmt, self.top_k = fmt, top_k
        self.done: set[str] = set()
        self.written = 0
        if self.partial.is_symlink():
            raise ConfigError(f"{self.partial} is a symbolic link; cnn-edge does not write through links: remove it")
        if self.partial.exists() and not resume:
            raise ConfigError(f"{self.partial} holds the rows of an earlier, unfinished run: pass --resume to "
                              f"continue it, or delete it to start afresh")
        source = self.partial if self.partial.exists() else self.output if resume and self.output.exists() else None
        kept = b""
        self._fresh = source is None  # a new partial file, ours to remove when the run writes nothing
        if self._fresh:
            fd = _open_new(self.partial)
        else:
            kept = _complete_lines(source)
            self.done = kept_paths(kept.decode("utf-8", ENCODING_ERRORS), fmt, top_k, labels, source)
            fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
            os.ftruncate(fd, 0)
            _write_all(fd, kept)  # the checked rows only: a row cut by a crash goes
        self._file = os.fdopen(fd, "a", encoding="utf-8", errors=ENCODING_ERRORS, newline="")
        self._csv = csv.writer(self._file) if fmt == "csv" else None
        if fmt == "csv" and (self._fresh or not kept):
            self._guard(lambda: self._csv.writerow(csv_header(top_k)))

    def _guard(self, write) -> None:
        """Run a write; a failure (disk full, quota, a file size limit) becomes one clear error that
        says the rows so far are kept and how to go on."""
        try:
            write()
        except OSError as exc:
            raise OutputPathError(f"cannot write {self.partial} ({exc.strerror or exc}); the {self.written:,} rows "
                                  f"written so far are kept there: make room and rerun with --resume") from None

    def write(self, path: str, prediction, error: str) -> None:
        self._guard(lambda: _emit(self._csv, self._file, path, prediction, error, self.top_k))
        self.written += 1

    def flush(self) -> None:
        self._guard(self._file.flush)

    def finish(self) -> Path:
        """Close and move the complete file into place."""
        self.flush()
        self._guard(lambda: os.fsync(self._file.fileno()))
        self._file.close()
        os.replace(self.partial, self.output)
        return self.output

    def abort(self) -> None:
        """Keep the partial file for --resume; a run that wrote nothing leaves nothing behind."""
        try:
            if not self._file.closed:
                self._file.close()
        except OSError:  # the same full disk that stopped the run: what is on disk stays
            pass
        if self._fresh and self.written == 0:
            self.partial.unlink(missing_ok=True)


class StreamWriter:
    """Rows to an open text stream (stdout, for `-o -` or `--json` without -o), in the same
    formats; nothing to resume, nothing to rename."""

    def __init__(self, stream, fmt: str, top_k: int):
        self.stream, self.fmt, self.top_k = stream, fmt, top_k
        self.done: set[str] = set()
        self.output, self.partial = "-", None
        self.written = 0
        self._csv = csv.writer(stream) if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(csv_header(top_k))

    def write(self, path: str, prediction, error: str) -> None:
        _emit(self._csv, self.stream, path, prediction, error, self.top_k)
        self.written += 1

    def flush(self) -> None:
        self.stream.flush()

    def finish(self) -> str:
        self.flush()
        return self.output

    def abort(self) -> None:
        pass
