"""Stream prediction rows to CSV or JSONL, resumably. Torch-free.

Rows go to OUTPUT.partial as they come, flushed after every batch, so a million rows never sit in
memory and a crash loses at most one batch. When the run ends, the partial file is renamed onto
OUTPUT: a finished file is always complete, and the previous OUTPUT is untouched until then.
`resume` continues OUTPUT.partial (or OUTPUT itself, to add new inputs) and reports the paths
already written, which the run then skips.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

from ..errors import ConfigError
from ..io_utils import check_writable

FORMATS = ("csv", "jsonl")


def format_for(path: Path, fmt: str | None) -> str:
    """--format wins; else the extension (.jsonl/.ndjson/.json -> jsonl); else CSV."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {fmt!r}; choose csv or jsonl")
        return fmt
    return "jsonl" if Path(path).suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"


def csv_header(top_k: int) -> list[str]:
    tops = [c for i in range(1, top_k + 1) for c in (f"top{i}", f"top{i}_probability")]
    return ["path", "prediction", "confidence", *tops, "error"]


def _complete_lines(path: Path) -> bytes:
    """The file's bytes up to its last newline: a row cut by a crash is dropped, then rewritten."""
    data = path.read_bytes()
    return data[: data.rfind(b"\n") + 1]


class ResultWriter:
    def __init__(self, output: Path, fmt: str, top_k: int, *, resume: bool = False):
        self.output = check_writable(Path(output))
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.fmt, self.top_k = fmt, top_k
        self.done: set[str] = set()
        self.written = 0
        source = self.partial if self.partial.exists() else self.output if self.output.exists() else None
        self._fresh = not (resume and source is not None)  # a new partial file, ours to remove on abort
        if not self._fresh:
            kept = _complete_lines(source)
            self.done = self._read_done(kept, source)
            if source != self.partial:
                shutil.copyfile(source, self.partial)
            with open(self.partial, "r+b") as f:
                f.truncate(len(kept))
            self._file = open(self.partial, "a", encoding="utf-8", newline="")
            if not kept and fmt == "csv":
                self._write_header()
        else:
            self._file = open(self.partial, "w", encoding="utf-8", newline="")
            if fmt == "csv":
                self._write_header()
        self._csv = csv.writer(self._file) if fmt == "csv" else None

    def _write_header(self) -> None:
        csv.writer(self._file).writerow(csv_header(self.top_k))

    def _read_done(self, kept: bytes, source: Path) -> set[str]:
        text = kept.decode("utf-8", "replace")
        if self.fmt == "jsonl":
            try:
                return {json.loads(line)["path"] for line in text.splitlines() if line.strip()}
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"{source} is not a cnn-edge JSONL results file; cannot --resume it") from None
        rows = list(csv.reader(io.StringIO(text)))
        if rows and rows[0] != csv_header(self.top_k):
            raise ConfigError(f"{source} has columns {rows[0][:4]}...; it was not written by cnn-edge predict "
                              f"with --top-k {self.top_k} in CSV, so it cannot be resumed (use another -o)")
        return {r[0] for r in rows[1:] if r}

    def write(self, path: str, prediction, error: str) -> None:
        self.written += 1
        if self.fmt == "csv":
            tops = [] if prediction is None else [v for label, p in prediction.top_k for v in (label, f"{p:.6f}")]
            tops += [""] * (2 * self.top_k - len(tops))
            if prediction is None:
                self._csv.writerow([path, "", "", *tops, error])
            else:
                self._csv.writerow([path, prediction.label, f"{prediction.confidence:.6f}", *tops, error])
        else:
            row = {"path": path, "prediction": None, "confidence": None, "top_k": [], "error": error or None}
            if prediction is not None:
                row.update(prediction=prediction.label, confidence=round(prediction.confidence, 6),
                           top_k=[{"label": l, "probability": round(p, 6)} for l, p in prediction.top_k])
            self._file.write(json.dumps(row, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def finish(self) -> Path:
        """Close and move the complete file into place."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.output)
        return self.output

    def abort(self) -> None:
        """Keep the partial file for --resume; a run that wrote nothing leaves nothing behind."""
        if not self._file.closed:
            self._file.flush()
            self._file.close()
        if self._fresh and self.written == 0:
            self.partial.unlink(missing_ok=True)
