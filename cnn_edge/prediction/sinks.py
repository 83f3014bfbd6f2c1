"""Where a prediction run's rows go. Each sink owns its resume, its abort and its commit. Torch-free.

    ResultFile   -o FILE (.csv, .jsonl): rows stream to FILE.partial, flushed after every batch, so
                 a million rows never sit in memory and a crash loses at most one batch; commit
                 renames the partial file onto FILE (a finished file is always complete, and the
                 previous FILE is untouched until then). --resume continues FILE.partial (or FILE
                 itself, to add new inputs) after checking every row it keeps. Without --resume, a
                 FILE.partial left by an earlier run is refused, never clobbered; a partial file that
                 is a symbolic link is never written through. One run at a time: FILE.lock (flock)
                 is held from open to commit or abort. A device or a FIFO (or a link to one, such as
                 /dev/null or /dev/stdout) is written through as a stream, never replaced.
    Stream       -o - (or --json without -o): rows to stdout; nothing to resume, nothing to rename.
    PartFolder   -o DIR or s3://bucket/prefix (--engine ray): part files, then a _SUCCESS manifest; a
                 local DIR is held by one run at a time (DIR.lock beside it).

A sink is made by the caller (cheap checks of the path only), opened by the job once the model is
known (its labels check the rows kept for --resume), written batch by batch, then committed, or
aborted when the run stops early (the rows written so far stay, for --resume).

PartFolder's commit protocol (what a reader can rely on):
  * a local part file is written under a hidden temporary name (".part-....tmp", which pyarrow,
    pandas, Spark and DuckDB skip), synced, then renamed onto its final name, part-RUN-NNNNN.EXT;
    on an object store it is sent in one PUT, and the object appears whole or not at all. Either
    way a file with a final name is always complete;
  * each row is in exactly one part file (the job drops any row it already has);
  * _SUCCESS, written last (temporary name, then moved), is a JSON manifest listing every part
    file with its row count and which nodes and processes made its rows. A directory is finished
    when _SUCCESS is there; read the files it lists (pyarrow.dataset on the directory reads the
    same rows: it skips _SUCCESS and the hidden temporary files).
--resume reads every part file with a final name (checking its rows as a results file's are
checked) and skips their paths; a run that did not finish leaves only complete part files.
"""
from __future__ import annotations

import json
import os
import posixpath
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Optional, TextIO

from ..core.errors import ConfigError, OutputPathError, first_line
from ..core import files
from ..core.files import atomic_write_bytes, check_writable
from .inputs import is_uri
from .rows import ENCODING_ERRORS, FOLDER_FORMATS, Kept, RowBatch, RowSchema

SUCCESS = "_SUCCESS"
MANIFEST_VERSION = 1
# Rows per part file, and the longest a row waits for its file: what an interruption costs at
# most, since --resume skips whole part files.
ROWS_PER_FILE = 100_000
SECONDS_PER_FILE = 30.0


class Sink:
    """What the job needs of a sink. `where` names it for the user; `done` holds the paths already
    written (--resume), known once opened, and `done_failed` how many of them are failures;
    `written` counts this run's rows; after abort,
    `kept_in` says where the rows written so far wait for --resume (None: nothing kept), and `kept`
    how many there are."""

    where: str
    done: set[str]
    done_failed: int = 0
    written: int = 0
    kept: int = 0  # after abort: the complete rows kept for --resume (earlier runs' too)
    kept_in: Optional[str] = None

    def open(self, schema: RowSchema) -> None:
        raise NotImplementedError

    def write(self, batch: RowBatch) -> None:
        raise NotImplementedError

    def commit(self, manifest: dict) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


def partial_path(output: Path) -> Path:
    return Path(output).with_name(Path(output).name + ".partial")


def refuse_overwriting(output: Path, protected: Iterable[str]) -> None:
    """ConfigError when -o, its partial file or its lock file is the model or one of the inputs."""
    protected = list(protected)
    for target in (Path(output), partial_path(output), files.lock_path(output)):
        files.refuse_overwriting(target, protected)


def _kept_rows(path: Path, schema: RowSchema, fmt: str) -> Kept:
    """The checked rows of a results file being resumed, and its bytes up to the last record the
    writer ended: a row cut by a crash or a full disk is dropped, then rewritten. Records are split
    as the writer ended them (RowSchema.kept_rows), never at the last newline: a CSV name may hold
    one inside its quotes."""
    with open(path, "rb") as f:
        data = f.read()
    return schema.kept_rows(data, fmt, str(path), may_be_cut=True)


def _open_new(path: Path) -> int:
    """A new file, created here and now: never an existing one, never through a symbolic link."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except FileExistsError:
        raise ConfigError(f"{path} appeared while starting; is another run writing it?") from None


class ResultFile(Sink):
    """-o FILE: rows in FILE.partial until the run commits (see the module's docstring). One run at a
    time: FILE.lock is held from open to commit or abort. -o naming a device or a FIFO (or a link to
    one: /dev/null, /dev/stdout) is written through as a stream: no partial file, no rename, no
    --resume."""

    def __init__(self, output: Path, fmt: str, *, resume: bool = False, protected: Iterable[str] = ()):
        output = Path(output)
        parent = output.parent if str(output.parent) else Path(".")
        if output.is_dir():
            raise ConfigError(f"-o {output} is a folder; the local engine writes one results file: give a file name "
                              f"such as {output / ('results.' + fmt)} (a folder of part files is --engine ray's)")
        if not parent.is_dir():
            raise ConfigError(f"folder {parent} for -o {output} does not exist; create it first (mkdir -p {parent})")
        self.stream_kind = files.special_kind(output)  # a device or FIFO: written through
        if self.stream_kind is not None:
            if resume:
                raise ConfigError(f"--resume continues a results file, and -o {output} is {self.stream_kind}, "
                                  f"written as a stream: run without --resume, or give -o FILE")
            if self.stream_kind == "a socket":
                raise ConfigError(f"-o {output} is a socket; give a results file, a device or a FIFO")
        refuse_overwriting(output, protected)
        self.output = check_writable(output)
        self.where = str(output)
        self.partial = partial_path(self.output)
        self.fmt, self.resume = fmt, resume
        self.done = set()
        self.written = 0
        self.kept = 0
        self._file = None
        self._lock: Optional[files.OutputLock] = None
        self._fresh = False

    def open(self, schema: RowSchema) -> None:
        self.schema = schema
        if self.stream_kind is not None:
            # Opening a FIFO waits for its reader, as `cat > fifo` does.
            fd = os.open(self.output, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            self._file = os.fdopen(fd, "a", encoding="utf-8", errors=ENCODING_ERRORS, newline="")
            if self.fmt == "csv":
                self._guard(lambda: self._file.write(schema.header_text()))
            return
        self._lock = files.OutputLock(self.output)  # before the partial file is looked at: one writer
        try:
            self._open_partial(schema)
        except BaseException:
            self._lock.release()
            raise

    def _open_partial(self, schema: RowSchema) -> None:
        if self.partial.is_symlink():
            raise ConfigError(f"{self.partial} is a symbolic link; cnn-edge does not write through links: remove it")
        if self.partial.exists() and not self.resume:
            raise ConfigError(f"{self.partial} holds the rows of an earlier, unfinished run: pass --resume to "
                              f"continue it, or delete it to start afresh")
        source = self.partial if self.partial.exists() else self.output if self.resume and self.output.exists() else None
        kept = b""
        self._fresh = source is None  # a new partial file, ours to remove when the run writes nothing
        if self._fresh:
            fd = _open_new(self.partial)
        else:
            self.done, kept, self.done_failed, flag_column = _kept_rows(source, schema, self.fmt)
            if flag_column is False:  # written before the flag column existed: its rows share one header
                self.schema = replace(schema, flag=False)
            fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
            os.ftruncate(fd, 0)
            files.write_all(fd, kept)  # the checked rows only: a row cut by a crash goes
        self._file = os.fdopen(fd, "a", encoding="utf-8", errors=ENCODING_ERRORS, newline="")
        if self.fmt == "csv" and (self._fresh or not kept):
            self._guard(lambda: self._file.write(self.schema.header_text()))

    def _guard(self, write) -> None:
        """Run a write; a failure (disk full, quota, a file size limit) closes the file (what reached
        the disk stays as it is) and becomes one clear error that says how many complete rows the
        partial file keeps (counted in the file) and how to go on."""
        try:
            write()
        except OSError as exc:
            self._close()
            if self.stream_kind is not None:
                raise OutputPathError(f"cannot write {self.output} ({exc.strerror or exc}); it is "
                                      f"{self.stream_kind}, with nothing to resume") from None
            self.kept = count_rows(self.partial, self.schema, self.fmt)
            raise OutputPathError(f"cannot write {self.partial} ({exc.strerror or exc}); the {self.kept:,} complete "
                                  f"rows written so far are kept there: make room and rerun with --resume") from None

    def _close(self) -> None:
        try:
            if self._file is not None and not self._file.closed:
                self._file.close()
        except OSError:  # the same full disk that stopped the run: what is on disk stays
            pass

    def write(self, batch: RowBatch) -> None:
        text = self.schema.text(batch, self.fmt)
        self._guard(lambda: self._file.write(text))
        self.written += len(batch)
        self._guard(self._file.flush)

    def commit(self, manifest: dict) -> None:
        """Close and move the complete file into place (a stream: flush and close)."""
        self._guard(self._file.flush)
        if self.stream_kind is not None:
            self._guard(self._file.close)
            return
        self._guard(lambda: os.fsync(self._file.fileno()))
        self._file.close()
        os.replace(self.partial, self.output)
        self._lock.release()

    def abort(self) -> None:
        """Keep the partial file for --resume; a run that wrote nothing leaves nothing behind."""
        if self._file is None:
            return
        self._close()
        if self.stream_kind is not None:
            return
        self.kept = count_rows(self.partial, self.schema, self.fmt)
        if self._fresh and self.kept == 0:
            self.partial.unlink(missing_ok=True)
        elif self.kept:
            self.kept_in = str(self.partial)
        if self._lock is not None:
            self._lock.release()


def count_rows(path: Path, schema: RowSchema, fmt: str) -> int:
    """The rows of a results file that --resume will keep: counted by the reader --resume uses
    (RowSchema.kept_rows), so a name holding a newline or a quote counts once and a row cut by a
    full disk not at all. 0 for a file that cannot be read or that --resume would refuse."""
    try:
        return len(_kept_rows(path, schema, fmt).paths)
    except (OSError, ConfigError):
        return 0


class Stream(Sink):
    """Rows to an open text stream (stdout, for `-o -` or `--json` without -o), in the same formats."""

    def __init__(self, stream: TextIO, fmt: str):
        self.stream, self.fmt, self.where = stream, fmt, "-"
        self.done = set()
        self.written = 0

    def open(self, schema: RowSchema) -> None:
        self.schema = schema
        if self.fmt == "csv":
            self.stream.write(schema.header_text())

    def write(self, batch: RowBatch) -> None:
        self.stream.write(self.schema.text(batch, self.fmt))
        self.written += len(batch)
        self.stream.flush()

    def commit(self, manifest: dict) -> None:
        self.stream.flush()

    def abort(self) -> None:
        pass


def _fs(output: str):
    """(fsspec filesystem, directory path inside it) for a local folder or a URI. Writes go through
    fsspec: a part file reaches an object store in one PUT (s3fs sends files under 50 MB whole),
    which is atomic: the object appears complete or not at all. (pyarrow's multipart upload failed
    against moto's S3 server.)"""
    import fsspec

    if is_uri(output):
        fs, root = fsspec.core.url_to_fs(output)
        fs.invalidate_cache()  # a listing cached by an earlier run in this process would be stale
        return fs, root.rstrip("/")
    return fsspec.filesystem("file"), os.path.abspath(output)


class PartFolder(Sink):
    """-o DIR (local or s3://...): part files streamed into a directory, committed with _SUCCESS.
    Needs pyarrow and fsspec (the `ray` extra). Side columns `node` and `worker` of the batches
    (which node and which process made each row) are counted per part file in the manifest."""

    def __init__(self, output: str, fmt: str, *, resume: bool = False, rows_per_file: int = ROWS_PER_FILE,
                 seconds_per_file: float = SECONDS_PER_FILE):
        if fmt not in FOLDER_FORMATS:
            raise ConfigError(f"unknown format {fmt!r} for a folder of part files; choose {', '.join(FOLDER_FORMATS)}")
        self.output = self.where = str(output)
        self.fmt, self.resume = fmt, resume
        self.rows_per_file, self.seconds_per_file = rows_per_file, seconds_per_file
        self.run = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.done = set()
        self.written = 0
        self.parts: list[dict] = []  # the manifest's entries
        self._pending: list[RowBatch] = []  # rows not yet in a part file
        self._pending_rows, self._since = 0, time.monotonic()
        self._lock: Optional[files.OutputLock] = None
        self._entries = self._check()

    def _check(self) -> list[str]:
        """The directory's files; refused when it is a file, or not empty without --resume."""
        self.fs, self.root = _fs(self.output)
        try:
            if self.fs.isfile(self.root):
                raise ConfigError(f"-o {self.output} is a file; --engine ray writes a directory: name a new one")
            entries = self.fs.ls(self.root, detail=True) if self.fs.isdir(self.root) else []
            if entries and not self.resume:
                raise ConfigError(f"-o {self.output} is not empty: pass --resume to continue the run that wrote it, "
                                  f"or choose a new directory")
            if not entries and not is_uri(self.output) and not os.path.isdir(self.root):
                parent = os.path.dirname(self.root)
                if not os.path.isdir(parent):
                    raise ConfigError(f"folder {parent} for -o {self.output} does not exist; create it first")
        except OSError as exc:
            raise OutputPathError(f"cannot use -o {self.output}: {first_line(exc)}") from None
        return [e["name"] for e in entries if e["type"] == "file"]

    def open(self, schema: RowSchema) -> None:
        """Take the folder's lock (a local folder: DIR.lock beside it, one run at a time), then read
        the part files of earlier runs: their paths are done."""
        self.schema = schema
        if not is_uri(self.output):
            self._lock = files.OutputLock(self.root)
            try:
                self._read_parts(schema)
            except BaseException:
                self._lock.release()
                raise
        else:
            self._read_parts(schema)

    def _read_parts(self, schema: RowSchema) -> None:
        old = {}
        names = {posixpath.basename(f): f for f in self._entries}
        if SUCCESS in names:
            try:
                old = {p["name"]: p for p in json.loads(self.fs.cat_file(names[SUCCESS]))["files"]}
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"{self.output}/{SUCCESS} is not a cnn-edge manifest; use another -o") from None
        for name in sorted(names):
            if not name.startswith("part-"):
                continue
            if not name.endswith("." + self.fmt):
                raise ConfigError(f"{self.output} holds {name}; resume it with --format {name.rsplit('.', 1)[-1]}")
            paths, _, failed, _ = schema.kept_rows(self.fs.cat_file(names[name]), self.fmt, f"{self.output}/{name}")
            if paths & self.done:
                raise ConfigError(f"{self.output}/{name} repeats rows of another part file; it was edited: "
                                  f"remove it and rerun with --resume")
            self.done |= paths
            self.done_failed += failed
            self.parts.append({**old.get(name, {}), "name": name, "rows": len(paths)})

    def write(self, batch: RowBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += len(batch)
        if self._pending_rows >= self.rows_per_file or time.monotonic() - self._since >= self.seconds_per_file:
            self.flush()

    def flush(self) -> None:
        """Write the pending rows as one part file (temporary name, then moved onto its name)."""
        self._since = time.monotonic()
        if not self._pending:
            return
        batches, self._pending, self._pending_rows = self._pending, [], 0
        rows = RowBatch([p for b in batches for p in b.paths], [e for b in batches for e in b.errors],
                        *_stacked(batches), flags=[f for b in batches for f in b.flags])
        name = f"part-{self.run}-{len(self.parts):05d}.{self.fmt}"
        self._put(name, self.schema.encode(rows, self.fmt))
        self.written += len(rows)
        failed = rows.failures
        self.parts.append({"name": name, "rows": len(rows), "ok": len(rows) - failed, "failed": failed,
                           "nodes": dict(Counter(v for b in batches for v in b.side.get("node", ()))),
                           "workers": dict(Counter(v for b in batches for v in b.side.get("worker", ())))})

    def _put(self, name: str, data: bytes) -> None:
        try:
            if is_uri(self.output):
                self.fs.pipe_file(f"{self.root}/{name}", data)  # one PUT: atomic
                return
            os.makedirs(self.root, exist_ok=True)  # with the first file: a run that fails at start leaves nothing
            atomic_write_bytes(Path(self.root) / name, data)  # under a hidden temporary name until renamed
        except OSError as exc:
            raise OutputPathError(f"cannot write {self.output}/{name} ({first_line(exc)}); the part files written so "
                                  f"far are kept: make room and rerun with --resume") from None

    def commit(self, manifest: dict) -> None:
        """Flush, then write _SUCCESS: the directory is finished."""
        self.flush()
        manifest = {"version": MANIFEST_VERSION, "engine": "ray", "format": self.fmt, "top_k": self.schema.top_k,
                    "rows": sum(p["rows"] for p in self.parts), **manifest, "files": self.parts}
        self._put(SUCCESS, (json.dumps(manifest, indent=1) + "\n").encode())
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def abort(self) -> None:
        """The rows in hand are complete, so they are kept; a failure to write them (the reason the
        run stopped, maybe) changes nothing on disk."""
        try:
            self.flush()
        except Exception:
            pass
        self.kept = sum(p["rows"] for p in self.parts)
        if self.written:
            self.kept_in = f"part files of {self.output}"
        self._release()


def _stacked(batches: list[RowBatch]):
    """The top-k columns of several batches as one: padded to the widest k (a failed-only batch has k = 1)."""
    import numpy as np

    k = max(b.top_index.shape[1] for b in batches)

    def pad(a, fill):
        return a if a.shape[1] == k else np.concatenate([a, np.full((len(a), k - a.shape[1]), fill, a.dtype)], 1)

    return (np.concatenate([pad(b.top_index, -1) for b in batches]),
            np.concatenate([pad(b.top_probability, 0) for b in batches]))
