"""The output directory of a run on Ray: part files, the _SUCCESS manifest, and --resume. Needs pyarrow, fsspec.

Commit protocol (what a reader can rely on):
  * a local part file is written under a hidden temporary name (".part-....tmp", which pyarrow,
    pandas, Spark and DuckDB skip), synced, then renamed onto its final name, part-RUN-NNNNN.EXT;
    on an object store it is sent in one PUT, and the object appears whole or not at all. Either
    way a file with a final name is always complete;
  * each row is in exactly one part file: the driver, the one process that writes, keeps the set
    of paths written and drops any row it already has;
  * _SUCCESS, written last (temporary name, then moved), is a JSON manifest listing every part
    file with its row count and which nodes and processes made its rows. A directory is finished
    when _SUCCESS is there; read the files it lists (pyarrow.dataset on the directory reads the
    same rows: it skips _SUCCESS and the hidden temporary files).
--resume reads every part file with a final name (checking its rows as the local engine checks a
results file) and skips their paths; a run that did not finish leaves only complete part files.
"""
from __future__ import annotations

import io
import json
import os
import posixpath
import time
import uuid
from collections import Counter
from typing import Sequence

from ..core.errors import ConfigError, OutputPathError, first_line
from ..prediction.row_format import ENCODING_ERRORS, csv_cells, csv_header, jsonl_text, kept_paths
from ..runtime.predictor import Prediction
from .sources import is_uri
from .stages import NODE, PROVIDER, WORKER

SUCCESS = "_SUCCESS"
MANIFEST_VERSION = 1


def _fs(output: str):
    """(fsspec filesystem, directory path inside it) for a local folder or a URI. Writes go through
    fsspec: a part file reaches an object store in one PUT (s3fs sends files under 50 MB whole),
    which is atomic: the object appears complete or not at all."""
    import fsspec

    if is_uri(output):
        fs, root = fsspec.core.url_to_fs(output)
        fs.invalidate_cache()  # a listing cached by an earlier run in this process would be stale
        return fs, root.rstrip("/")
    return fsspec.filesystem("file"), os.path.abspath(output)


def _round6(table, top_k: int):
    """Probabilities rounded to 6 decimals, as the local engine's JSONL rows (and CSV's %.6f) give them."""
    import pyarrow.compute as pc

    for name in ["confidence", *(f"top{j}_probability" for j in range(1, top_k + 1))]:
        table = table.set_column(table.schema.get_field_index(name), name, pc.round(table[name], 6))
    return table


def _predictions(rows: list[dict], top_k: int):
    """(path, Prediction or None, error) per row, for the local engine's CSV and JSONL emitters."""
    for r in rows:
        if r["error"] is not None:
            yield r["path"], None, r["error"]
            continue
        tops = tuple((r[f"top{j}"], r[f"top{j}_probability"]) for j in range(1, top_k + 1) if r[f"top{j}"] is not None)
        yield r["path"], Prediction(r["prediction"], -1, r["confidence"], tops, None), ""


def encode(table, fmt: str, top_k: int) -> bytes:
    """Rows (without side columns) as one file's bytes: Parquet, or CSV and JSONL line for line as
    the local engine writes them (its own emitters)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(_round6(table, top_k), buf, compression="zstd")
        return buf.getvalue()
    import csv

    text = io.StringIO(newline="")
    writer = csv.writer(text) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(csv_header(top_k))
    for path, prediction, error in _predictions(table.to_pylist(), top_k):
        if writer is not None:
            writer.writerow(csv_cells(path, prediction, error, top_k))
        else:
            text.write(jsonl_text(path, prediction, error))
    return text.getvalue().encode("utf-8", ENCODING_ERRORS)


class OutputDir:
    """Part files streamed into a directory, committed with _SUCCESS."""

    def __init__(self, output: str, fmt: str, top_k: int, *, resume: bool = False, labels: Sequence[str] = ()):
        self.output, self.fmt, self.top_k, self.labels = str(output), fmt, top_k, list(labels)
        self.fs, self.root = _fs(self.output)
        self.run = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.done: set[str] = set()
        self.parts: list[dict] = []  # the manifest's entries
        self.providers: set[str] = set()  # where the rows were inferred (cpu, cuda, ...)
        self._pending: list = []  # Arrow tables not yet in a part file
        self._pending_rows, self._since = 0, time.monotonic()
        try:
            if self.fs.isfile(self.root):
                raise ConfigError(f"-o {self.output} is a file; --engine ray writes a directory: name a new one")
            entries = self.fs.ls(self.root, detail=True) if self.fs.isdir(self.root) else []
            if entries and not resume:
                raise ConfigError(f"-o {self.output} is not empty: pass --resume to continue the run that wrote it, "
                                  f"or choose a new directory")
            if not entries and not is_uri(self.output) and not os.path.isdir(self.root):
                parent = os.path.dirname(self.root)
                if not os.path.isdir(parent):
                    raise ConfigError(f"folder {parent} for -o {self.output} does not exist; create it first")
        except OSError as exc:
            raise OutputPathError(f"cannot use -o {self.output}: {first_line(exc)}") from None
        self._resume([e["name"] for e in entries if e["type"] == "file"])

    def _resume(self, files: list[str]) -> None:
        """Read the part files of earlier runs: their paths are done."""
        old = {}
        names = {posixpath.basename(f): f for f in files}
        if SUCCESS in names:
            try:
                old = {p["name"]: p for p in json.loads(self._read(names[SUCCESS]))["files"]}
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"{self.output}/{SUCCESS} is not a cnn-edge manifest; use another -o") from None
        for name in sorted(names):
            if not name.startswith("part-"):
                continue
            if not name.endswith("." + self.fmt):
                raise ConfigError(f"{self.output} holds {name}; resume it with --format {name.rsplit('.', 1)[-1]}")
            paths = self._kept(names[name], name)
            if paths & self.done:
                raise ConfigError(f"{self.output}/{name} repeats rows of another part file; it was edited: "
                                  f"remove it and rerun with --resume")
            self.done |= paths
            self.parts.append({**old.get(name, {}), "name": name, "rows": len(paths)})

    def _read(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def _kept(self, path: str, name: str) -> set[str]:
        where = f"{self.output}/{name}"
        if self.fmt != "parquet":
            return kept_paths(self._read(path).decode("utf-8", ENCODING_ERRORS), self.fmt, self.top_k, self.labels, where)
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(self._read(path)))
        except Exception as exc:
            raise ConfigError(f"{where} is not a Parquet file cnn-edge wrote ({first_line(exc)}); remove it") from None
        if table.column_names != csv_header(self.top_k):
            raise ConfigError(f"{where} has columns {table.column_names[:4]}...; it was not written by cnn-edge "
                              f"predict with --top-k {self.top_k}, so it cannot be resumed (use another -o)")
        paths = table["path"].to_pylist()
        if len(set(paths)) != len(paths) or None in paths:
            raise ConfigError(f"{where} repeats a path or lacks one; it was edited: remove it and rerun with --resume")
        return set(paths)

    def add(self, table) -> tuple[int, int]:
        """Rows from the cluster (with side columns); those already written are dropped (a retried
        batch). Returns (new rows, of which failed)."""
        import pyarrow as pa

        paths = table["path"].to_pylist()
        keep = [i for i, p in enumerate(paths) if p not in self.done]
        if len(keep) < len(paths):
            table = table.take(pa.array(keep, pa.int64()))
        self.done.update(paths[i] for i in keep)
        if not keep:
            return 0, 0
        self._pending.append(table)
        self._pending_rows += len(keep)
        self.providers.update(table[PROVIDER].unique().to_pylist())
        return len(keep), len(keep) - table["error"].null_count

    def due(self, rows: int, seconds: float) -> bool:
        return self._pending_rows >= rows or (self._pending_rows > 0 and time.monotonic() - self._since >= seconds)

    def flush(self) -> None:
        """Write the pending rows as one part file (temporary name, then moved onto its name)."""
        import pyarrow as pa

        self._since = time.monotonic()
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        rows = table.drop_columns([NODE, WORKER, PROVIDER])
        name = f"part-{self.run}-{len(self.parts):05d}.{self.fmt}"
        self._put(name, encode(rows, self.fmt, self.top_k))
        ok = rows["error"].null_count  # the error is null exactly when the image was classified
        self.parts.append({"name": name, "rows": len(rows), "ok": ok, "failed": len(rows) - ok,
                           "nodes": dict(Counter(table[NODE].to_pylist())),
                           "workers": dict(Counter(table[WORKER].to_pylist()))})

    def flush_quietly(self) -> None:
        """flush, when the run stops early: the rows in hand are complete, so they are kept;
        a failure to write them (the reason the run stopped, maybe) changes nothing on disk."""
        try:
            self.flush()
        except Exception:
            pass

    def _put(self, name: str, data: bytes) -> None:
        try:
            if is_uri(self.output):
                self.fs.pipe_file(f"{self.root}/{name}", data)  # one PUT: atomic
                return
            os.makedirs(self.root, exist_ok=True)  # with the first file: a run that fails at start leaves nothing
            tmp = f"{self.root}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, f"{self.root}/{name}")
        except OSError as exc:
            raise OutputPathError(f"cannot write {self.output}/{name} ({first_line(exc)}); the part files written so "
                                  f"far are kept: make room and rerun with --resume") from None

    def commit(self, summary: dict) -> None:
        """Flush, then write _SUCCESS: the directory is finished."""
        self.flush()
        manifest = {"version": MANIFEST_VERSION, "engine": "ray", "format": self.fmt, "top_k": self.top_k,
                    "rows": sum(p["rows"] for p in self.parts), **summary, "files": self.parts}
        self._put(SUCCESS, (json.dumps(manifest, indent=1) + "\n").encode())
