"""The rows of a prediction run: one schema for every engine, every sink and the Python API. Torch-free.

An engine hands over a RowBatch: each input's path, its error ('' when it was classified) and its k
most likely classes (index and probability, best first, ranked by runtime.predictor.top_classes,
as Predictor.predict ranks them). A RowSchema (the model's labels, --top-k) turns rows into CSV,
JSONL or Parquet, always the same columns:

    path, prediction, confidence, top1, top1_probability, ..., topK, topK_probability, error

and reads rows back for --resume, checking that each was written by this command with these
settings.

CSV cells that a spreadsheet would run as a formula (OWASP's rule: a first character of =, +, -, @,
tab or carriage return) get a leading apostrophe, and so does a cell that already starts with one,
so the path column reads back exactly: drop one leading apostrophe. JSONL keeps every name as it is.

File names need not be valid UTF-8 on Linux. Python holds the odd bytes as lone surrogates
(os.fsdecode); CSV writes them back as the original bytes (the file is UTF-8 apart from them, and
`open(f, encoding="utf-8", errors="surrogateescape")` reads them back); JSONL writes such a row
with \\udcXX escapes, which json.loads plus os.fsencode turn back into the original bytes.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np

from ..core.errors import ConfigError
from ..runtime.predictor import top_classes

FILE_FORMATS = ("csv", "jsonl")  # a results file
FOLDER_FORMATS = ("parquet", "csv", "jsonl")  # part files in a folder (--engine ray)
ENCODING_ERRORS = "surrogateescape"  # lossless for names that are not valid UTF-8
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
JSONL_KEYS = ("path", "prediction", "confidence", "top_k", "error")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
DECIMALS = 6  # probabilities in every format


def format_for(path: Path, fmt: Optional[str]) -> str:
    """--format wins; else the extension (.csv, or .jsonl/.ndjson/.json); `-` (stdout) is CSV.
    Another extension is an error naming --format: a file called out.txt holding CSV surprises."""
    if fmt is not None:
        if fmt not in FILE_FORMATS:
            raise ConfigError(f"unknown format {fmt!r}; choose csv or jsonl")
        return fmt
    if str(path) == "-":
        return "csv"
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ConfigError(f"-o {path}: cnn-edge writes CSV or JSONL; name the file .csv or .jsonl, or give "
                          f"--format csv|jsonl")
    return EXTENSIONS[suffix]


class Row(NamedTuple):
    """One input's row, as the formats write it."""

    path: str
    label: Optional[str]  # None when the input failed
    confidence: Optional[float]
    top: tuple[tuple[str, float], ...]  # (label, probability), best first
    error: str  # '' when classified


@dataclass
class RowBatch:
    """A batch of rows, column by column (what every engine yields)."""

    paths: list[str]
    errors: list[str]  # '' where the input was classified
    top_index: np.ndarray  # (N, k) class indices, best first; -1 in a failed row
    top_probability: np.ndarray  # (N, k) float32 probabilities; 0 in a failed row
    side: dict[str, list[str]] = field(default_factory=dict)  # an engine's own columns (Ray: node, worker, provider)

    @classmethod
    def scored(cls, paths: Sequence[str], errors: Sequence[str], probabilities: np.ndarray, top_k: int) -> "RowBatch":
        """Rows from the (M, C) probabilities of the M inputs whose error is '' (in order)."""
        ok = np.flatnonzero([not e for e in errors])
        k = min(top_k, probabilities.shape[1]) if probabilities.ndim == 2 else top_k
        index = np.full((len(paths), k), -1, np.int64)
        probs = np.zeros((len(paths), k), np.float32)
        if len(ok):
            index[ok], probs[ok] = top_classes(probabilities, top_k)
        return cls(list(paths), list(errors), index, probs)

    @classmethod
    def failed(cls, paths: Sequence[str], error: str) -> "RowBatch":
        """Rows for inputs that reached no model, each failed with `error`."""
        return cls(list(paths), [error] * len(paths), np.full((len(paths), 1), -1, np.int64),
                   np.zeros((len(paths), 1), np.float32))

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def failures(self) -> int:
        return sum(bool(e) for e in self.errors)

    def take(self, keep: Sequence[int]) -> "RowBatch":
        """The rows at positions `keep`, in that order."""
        keep = list(keep)
        return RowBatch([self.paths[i] for i in keep], [self.errors[i] for i in keep], self.top_index[keep],
                        self.top_probability[keep], {name: [col[i] for i in keep] for name, col in self.side.items()})

    def rows(self, labels: Sequence[str]) -> Iterator[Row]:
        for path, error, index, probs in zip(self.paths, self.errors, self.top_index.tolist(), self.top_probability):
            if error:
                yield Row(path, None, None, (), error)
                continue
            top = tuple((labels[j], float(p)) for j, p in zip(index, probs))
            yield Row(path, top[0][0], top[0][1], top, "")


def csv_header(top_k: int) -> list[str]:
    tops = [c for i in range(1, top_k + 1) for c in (f"top{i}", f"top{i}_probability")]
    return ["path", "prediction", "confidence", *tops, "error"]


def neutralise(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs."""
    return "'" + cell if cell[:1] in FORMULA_STARTS or cell[:1] == "'" else cell


def restore(cell: str) -> str:
    return cell[1:] if cell[:1] == "'" else cell


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@dataclass(frozen=True)
class RowSchema:
    """How rows are written and read back: the model's labels and how many classes each row lists."""

    labels: tuple[str, ...]
    top_k: int

    def csv_cells(self, row: Row) -> list[str]:
        """A row's cells; the ones that come from outside (the path, the error, the model's labels) are
        neutralised, the numbers written here need not be."""
        if row.label is None:
            return [neutralise(row.path), "", "", *([""] * (2 * self.top_k)), neutralise(row.error)]
        tops = [v for label, p in row.top for v in (neutralise(label), f"{p:.{DECIMALS}f}")]
        tops += [""] * (2 * self.top_k - len(tops))
        return [neutralise(row.path), neutralise(row.label), f"{row.confidence:.{DECIMALS}f}", *tops, ""]

    @staticmethod
    def jsonl_line(row: Row) -> str:
        """One JSONL line; a name that is not valid UTF-8 is written with \\udcXX escapes."""
        out = {"path": row.path, "prediction": None, "confidence": None, "top_k": [], "error": row.error or None}
        if row.label is not None:
            out.update(prediction=row.label, confidence=round(row.confidence, DECIMALS),
                       top_k=[{"label": label, "probability": round(p, DECIMALS)} for label, p in row.top])
        line = json.dumps(out, ensure_ascii=False)
        return (line if encodable(line) else json.dumps(out)) + "\n"

    def header_text(self) -> str:
        """The CSV header line (a CSV file or stream starts with it; JSONL has none)."""
        buf = io.StringIO(newline="")
        csv.writer(buf).writerow(csv_header(self.top_k))
        return buf.getvalue()

    def text(self, batch: RowBatch, fmt: str) -> str:
        """The batch's rows as CSV lines (no header) or JSONL text."""
        buf = io.StringIO(newline="")
        if fmt == "csv":
            csv.writer(buf).writerows(self.csv_cells(row) for row in batch.rows(self.labels))
        else:
            buf.writelines(self.jsonl_line(row) for row in batch.rows(self.labels))
        return buf.getvalue()

    def arrow(self, batch: RowBatch):
        """The batch as a pyarrow Table of the row columns (null where not applicable), probabilities
        as float64 rounded to DECIMALS places, as the text formats give them."""
        import pyarrow as pa
        import pyarrow.compute as pc

        n, k = len(batch), batch.top_index.shape[1]
        failed = np.array([bool(e) for e in batch.errors], dtype=bool)
        ok = np.flatnonzero(~failed)
        labels = np.array(self.labels, dtype=object)
        tops = np.full((n, self.top_k), None, dtype=object)
        probs = np.zeros((n, self.top_k))
        if len(ok):
            tops[ok[:, None], np.arange(k)] = labels[batch.top_index[ok]]
            probs[ok[:, None], np.arange(k)] = batch.top_probability[ok].astype(np.float64)

        def probability(j: int):
            return pc.round(pa.array(probs[:, j], pa.float64(), mask=failed | (j >= k)), DECIMALS)

        columns = {"path": pa.array(batch.paths, pa.string()), "prediction": pa.array(tops[:, 0], pa.string()),
                   "confidence": probability(0)}
        for j in range(self.top_k):
            columns[f"top{j + 1}"] = pa.array(tops[:, j], pa.string())
            columns[f"top{j + 1}_probability"] = probability(j)
        columns["error"] = pa.array([e or None for e in batch.errors], pa.string())
        return pa.table(columns)

    def encode(self, batch: RowBatch, fmt: str) -> bytes:
        """One whole file of rows: Parquet, or CSV (with its header) or JSONL."""
        if fmt == "parquet":
            import pyarrow.parquet as pq

            buf = io.BytesIO()
            pq.write_table(self.arrow(batch), buf, compression="zstd")
            return buf.getvalue()
        text = (self.header_text() if fmt == "csv" else "") + self.text(batch, fmt)
        return text.encode("utf-8", ENCODING_ERRORS)

    # --- reading rows back (--resume) ---

    def kept_paths(self, data: bytes, fmt: str, source: str) -> set[str]:
        """The paths of the complete rows of a file being resumed, after checking every row.
        Raises ConfigError naming the file and line when one was not written by cnn-edge predict
        with these settings."""
        if fmt == "parquet":
            return self._kept_parquet(data, source)
        text = data.decode("utf-8", ENCODING_ERRORS)
        done: set[str] = set()
        if fmt == "csv":
            lines = list(csv.reader(io.StringIO(text)))
            if lines and lines[0] != csv_header(self.top_k):
                raise ConfigError(f"{source} has columns {lines[0][:4]}...; it was not written by cnn-edge predict "
                                  f"with --top-k {self.top_k} in CSV, so it cannot be resumed (use another -o)")
            rows = ((n, lambda cells=cells: self._csv_row(cells, lines[0])) for n, cells in enumerate(lines[1:], 2))
        else:
            rows = ((n, lambda line=line: self._jsonl_row(line)) for n, line in enumerate(text.splitlines(), 1))
        for number, read in rows:
            try:
                path = read()
                if not path or path in done:
                    raise KeptRowError("an empty path" if not path else f"{path!r} a second time")
            except KeptRowError as exc:
                raise ConfigError(f"{source} line {number}: {exc}; it was not written by cnn-edge predict (or was "
                                  f"edited), so it cannot be resumed: fix or remove it, or use another -o") from None
            done.add(path)
        return done

    def _kept_parquet(self, data: bytes, source: str) -> set[str]:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:
            from ..core.errors import first_line

            raise ConfigError(f"{source} is not a Parquet file cnn-edge wrote ({first_line(exc)}); remove it") from None
        if table.column_names != csv_header(self.top_k):
            raise ConfigError(f"{source} has columns {table.column_names[:4]}...; it was not written by cnn-edge "
                              f"predict with --top-k {self.top_k}, so it cannot be resumed (use another -o)")
        paths = table["path"].to_pylist()
        if len(set(paths)) != len(paths) or None in paths:
            raise ConfigError(f"{source} repeats a path or lacks one; it was edited: remove it and rerun with --resume")
        return set(paths)

    def _check_prediction(self, label, confidence, tops: list) -> None:
        labels, top_k = self.labels, self.top_k
        if labels and label not in labels:
            raise KeptRowError(f"prediction {label!r} is not one of the model's labels")
        _probability(confidence, "confidence")
        if len(tops) != min(top_k, len(labels) or top_k):
            raise KeptRowError(f"{len(tops)} top-k entries, expected {min(top_k, len(labels) or top_k)}")
        for top_label, p in tops:
            if labels and top_label not in labels:
                raise KeptRowError(f"top-k label {top_label!r} is not one of the model's labels")
            _probability(p, "top-k probability")

    def _csv_row(self, cells: list[str], header: list[str]) -> str:
        if len(cells) != len(header):
            raise KeptRowError(f"{len(cells)} cells, expected {len(header)}")
        path, label, confidence, error = restore(cells[0]), restore(cells[1]), restore(cells[2]), restore(cells[-1])
        pairs = [(restore(cells[i]), restore(cells[i + 1])) for i in range(3, 3 + 2 * self.top_k, 2)]
        if label:
            if error:
                raise KeptRowError("both a prediction and an error")
            self._check_prediction(label, confidence, [p for p in pairs if p[0]])
        elif not error or confidence or any(a or b for a, b in pairs):
            raise KeptRowError("no prediction, but no error either, or figures without a prediction")
        return path

    def _jsonl_row(self, line: str) -> str:
        try:
            row = json.loads(line)
        except ValueError:
            raise KeptRowError("not JSON") from None
        if not isinstance(row, dict) or tuple(row) != JSONL_KEYS:
            raise KeptRowError(f"not a row with the keys {', '.join(JSONL_KEYS)}")
        path, label, error, tops = row["path"], row["prediction"], row["error"], row["top_k"]
        if not isinstance(tops, list) or not all(isinstance(t, dict) and set(t) == {"label", "probability"} for t in tops):
            raise KeptRowError("top_k is not a list of {label, probability}")
        if isinstance(label, str) and error is None:
            self._check_prediction(label, row["confidence"], [(t["label"], t["probability"]) for t in tops])
        elif not (label is None and isinstance(error, str) and error and row["confidence"] is None and not tops):
            raise KeptRowError("neither a prediction nor an error")
        if not isinstance(path, str):
            raise KeptRowError("path is not a string")
        return path


class KeptRowError(ValueError):
    """A row of a results file that cnn-edge predict did not write (or that was edited)."""


def _probability(value, what: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise KeptRowError(f"{what} {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0) or math.isnan(value):
        raise KeptRowError(f"{what} {value!r} is not a probability")
    return float(value)
