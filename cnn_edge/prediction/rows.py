"""The rows of a prediction run: one schema for every engine, every sink and the Python API. Torch-free.

An engine hands over a RowBatch: each input's path, its error ('' when it was classified), its k
most likely classes (index and probability, best first, ranked by runtime.predictor.top_classes,
as Predictor.predict ranks them) and its flag ('' unless a person should look at it:
runtime/flags.py). A RowSchema (the model's labels, --top-k) turns rows into CSV, JSONL or Parquet,
always the same columns:

    path, prediction, confidence, top1, top1_probability, ..., topK, topK_probability, error, flag

and reads rows back for --resume, checking that each was written by this command with these
settings. A file written before the flag column existed (its last column is error) is resumed in
its own layout: its new rows leave the flag out too (RowSchema.flag), since a file's rows share
one header.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np

from ..core.errors import ConfigError
from ..core.flag_rule import REASONS
from ..runtime.predictor import top_classes

FILE_FORMATS = ("csv", "jsonl")  # a results file
FOLDER_FORMATS = ("parquet", "csv", "jsonl")  # part files in a folder (--engine ray)
ENCODING_ERRORS = "surrogateescape"  # lossless for names that are not valid UTF-8
PATH_BYTES = "path_bytes"  # Parquet's column for a name that is not UTF-8 (see RowSchema.arrow)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
JSONL_KEYS = ("path", "prediction", "confidence", "top_k", "error", "flag")
JSONL_KEYS_BEFORE_FLAG = JSONL_KEYS[:-1]  # a row written before the flag existed
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
    flag: str = ""  # '' unless flagged: its reasons joined by '+' (runtime/flags.py); '' in a failed row


@dataclass
class RowBatch:
    """A batch of rows, column by column (what every engine yields)."""

    paths: list[str]
    errors: list[str]  # '' where the input was classified
    top_index: np.ndarray  # (N, k) class indices, best first; -1 in a failed row
    top_probability: np.ndarray  # (N, k) float32 probabilities; 0 in a failed row
    side: dict[str, list[str]] = field(default_factory=dict)  # an engine's own columns (Ray: node, worker, provider)
    inputs: Optional[np.ndarray] = None  # (N, 28, 28) float32 what the model saw, zeros in a failed row (--save-inputs)
    flags: list[str] = field(default_factory=list)  # each row's flag ('' none, and in a failed row); [] = all ''

    def __post_init__(self) -> None:
        if not self.flags:
            self.flags = [""] * len(self.paths)

    @classmethod
    def scored(cls, paths: Sequence[str], errors: Sequence[str], probabilities: np.ndarray, top_k: int,
               flags: Sequence[str] = ()) -> "RowBatch":
        """Rows from the (M, C) probabilities of the M inputs whose error is '' (in order), and
        every row's flag (runtime.flags.batch_flags; none given: no row flagged)."""
        ok = np.flatnonzero([not e for e in errors])
        k = min(top_k, probabilities.shape[1]) if probabilities.ndim == 2 else top_k
        index = np.full((len(paths), k), -1, np.int64)
        probs = np.zeros((len(paths), k), np.float32)
        if len(ok):
            index[ok], probs[ok] = top_classes(probabilities, top_k)
        return cls(list(paths), list(errors), index, probs, flags=list(flags))

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

    def flag_counts(self) -> dict[str, int]:
        """How many rows are flagged ("flagged"), and for each reason (core.flag_rule.REASONS) how
        many rows carry it (a row flagged for both counts for both)."""
        counts = dict.fromkeys(("flagged", *REASONS), 0)
        for flag in self.flags:
            if flag:
                counts["flagged"] += 1
                for reason in flag.split("+"):
                    counts[reason] = counts.get(reason, 0) + 1
        return counts

    def take(self, keep: Sequence[int]) -> "RowBatch":
        """The rows at positions `keep`, in that order."""
        keep = list(keep)
        return RowBatch([self.paths[i] for i in keep], [self.errors[i] for i in keep], self.top_index[keep],
                        self.top_probability[keep], {name: [col[i] for i in keep] for name, col in self.side.items()},
                        None if self.inputs is None else self.inputs[keep], [self.flags[i] for i in keep])

    def rows(self, labels: Sequence[str]) -> Iterator[Row]:
        for path, error, index, probs, flag in zip(self.paths, self.errors, self.top_index.tolist(),
                                                   self.top_probability, self.flags):
            if error:
                yield Row(path, None, None, (), error)
                continue
            top = tuple((labels[j], float(p)) for j, p in zip(index, probs))
            yield Row(path, top[0][0], top[0][1], top, "", flag)


def csv_header(top_k: int, flag: bool = True) -> list[str]:
    """The CSV columns; `flag` False: those of a file written before the flag column existed."""
    tops = [c for i in range(1, top_k + 1) for c in (f"top{i}", f"top{i}_probability")]
    return ["path", "prediction", "confidence", *tops, "error", *(["flag"] if flag else [])]


def check_flag(flag: str) -> None:
    """A flag cell as the writer writes one: '' or reasons of core.flag_rule.REASONS, in that order,
    each once, joined by '+'."""
    reasons = flag.split("+")
    if flag and not (set(reasons) <= set(REASONS) and reasons == sorted(set(reasons), key=REASONS.index)):
        raise KeptRowError(f"flag {flag!r} is not one cnn-edge writes ({' or '.join(REASONS)}, joined by '+')")


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
    """How rows are written and read back: the model's labels, how many classes each row lists, and
    whether rows carry the flag column (False: continuing a file written before it existed)."""

    labels: tuple[str, ...]
    top_k: int
    flag: bool = True

    def csv_cells(self, row: Row) -> list[str]:
        """A row's cells; the ones that come from outside (the path, the error, the model's labels) are
        neutralised, the numbers written here need not be."""
        flag = [row.flag] if self.flag else []  # the writer's own reason codes: nothing to neutralise
        if row.label is None:
            return [neutralise(row.path), "", "", *([""] * (2 * self.top_k)), neutralise(row.error), *flag]
        tops = [v for label, p in row.top for v in (neutralise(label), f"{p:.{DECIMALS}f}")]
        tops += [""] * (2 * self.top_k - len(tops))
        return [neutralise(row.path), neutralise(row.label), f"{row.confidence:.{DECIMALS}f}", *tops, "", *flag]

    def jsonl_line(self, row: Row) -> str:
        """One JSONL line; a name that is not valid UTF-8 is written with \\udcXX escapes."""
        out = {"path": row.path, "prediction": None, "confidence": None, "top_k": [], "error": row.error or None}
        if self.flag:
            out["flag"] = row.flag or None
        if row.label is not None:
            out.update(prediction=row.label, confidence=round(row.confidence, DECIMALS),
                       top_k=[{"label": label, "probability": round(p, DECIMALS)} for label, p in row.top])
        line = json.dumps(out, ensure_ascii=False)
        return (line if encodable(line) else json.dumps(out)) + "\n"

    def header_text(self) -> str:
        """The CSV header line (a CSV file or stream starts with it; JSONL has none)."""
        buf = io.StringIO(newline="")
        csv.writer(buf).writerow(csv_header(self.top_k, self.flag))
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

        # Parquet's strings are UTF-8: a name that is not (a Linux file name may hold any bytes) is
        # shown in `path` with U+FFFD for its odd bytes, and kept exactly in `path_bytes` (null for
        # every other row), which --resume reads back.
        raw = [p.encode("utf-8", ENCODING_ERRORS) for p in batch.paths]
        columns = {"path": pa.array([r.decode("utf-8", "replace") for r in raw], pa.string()),
                   "prediction": pa.array(tops[:, 0], pa.string()), "confidence": probability(0)}
        for j in range(self.top_k):
            columns[f"top{j + 1}"] = pa.array(tops[:, j], pa.string())
            columns[f"top{j + 1}_probability"] = probability(j)
        columns["error"] = pa.array([e or None for e in batch.errors], pa.string())
        columns["flag"] = pa.array([f or None for f in batch.flags], pa.string())
        columns[PATH_BYTES] = pa.array([None if encodable(p) else r for p, r in zip(batch.paths, raw)], pa.binary())
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
        """The paths of the rows of a whole file (a part file, written in one piece), after checking
        every row. Raises ConfigError naming the file and line when one was not written by cnn-edge
        predict with these settings, or was cut off."""
        return self.kept_rows(data, fmt, source).paths

    def kept_rows(self, data: bytes, fmt: str, source: str, *, may_be_cut: bool = False) -> "Kept":
        """The rows of a file being resumed, split into records exactly as the writer ended them, each
        checked. `may_be_cut`: the file was being appended to when the run stopped (a crash, a full
        disk), so a last record the writer never ended is dropped (Kept.data stops before it) rather
        than refused, provided what is there could start a record of ours. Raises ConfigError naming
        the file and line of a record cnn-edge predict did not write with these settings."""
        if fmt == "parquet":
            return self._kept_parquet(data, source)
        text = data.decode("utf-8", ENCODING_ERRORS)
        records = _csv_records(text) if fmt == "csv" else _jsonl_records(text)
        done: set[str] = set()
        failed = 0
        end, header, number = 0, None, 1
        flag_column: Optional[bool] = None  # the file's layout, once a header or row shows it
        try:
            for number, record, record_end in records:
                if record_end is None:  # the writer never ended it: cut where the run stopped
                    if not may_be_cut:
                        raise KeptRowError("the file ends inside this row (cut off)")
                    self._check_cut(record, fmt, header, alone=end == 0)
                    break
                if fmt == "csv" and header is None:
                    header = record
                    if header not in (csv_header(self.top_k), csv_header(self.top_k, flag=False)):
                        raise ConfigError(f"{source} has columns {header[:4]}...; it was not written by cnn-edge "
                                          f"predict with --top-k {self.top_k} in CSV, so it cannot be resumed "
                                          f"(use another -o)")
                    flag_column = header[-1] == "flag"
                else:
                    if fmt == "csv":
                        path, error = self._csv_row(record, flag_column)
                    else:
                        path, error, has_flag = self._jsonl_row(record)
                        if flag_column is not None and has_flag != flag_column:
                            raise KeptRowError(f"a row {'with' if has_flag else 'without'} a flag among rows "
                                               f"{'with' if flag_column else 'without'} one")
                        flag_column = has_flag
                    if not path or path in done:
                        raise KeptRowError("an empty path" if not path else f"{path!r} a second time")
                    done.add(path)
                    failed += error
                end = record_end
        except KeptRowError as exc:
            raise ConfigError(f"{source} line {exc.line or number}: {exc}; it was not written by cnn-edge predict (or was "
                              f"edited), so it cannot be resumed: fix or remove it, or use another -o") from None
        return Kept(done, text[:end].encode("utf-8", ENCODING_ERRORS), failed,
                    flag_column if end else None)  # a file cut before its first record keeps nothing

    def _check_cut(self, raw: str, fmt: str, header: Optional[list[str]], alone: bool) -> None:
        """A record cut off at the end must look like the start of one the writer writes, so that a
        file that is not ours is refused, never emptied: alone in the file, the start of the CSV
        header or of a JSONL row; after the header, a row of no more cells than the header."""
        if fmt == "jsonl":
            start = '{"path": '
            if alone and not (raw.startswith(start) or start.startswith(raw)):
                raise KeptRowError("the file's only line is not the start of a row")
        elif header is None:
            if not any(replace(self, flag=flag).header_text().startswith(raw) for flag in (True, False)):
                raise KeptRowError(f"{raw[:40]!r} is not the start of cnn-edge predict's CSV header")
        else:
            cells = next(csv.reader(io.StringIO(raw)), [])  # lenient: the last cell may be cut inside its quotes
            if len(cells) > len(header):
                raise KeptRowError(f"{len(cells)} cells, expected {len(header)}")

    def _kept_parquet(self, data: bytes, source: str) -> "Kept":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:
            from ..core.errors import first_line

            raise ConfigError(f"{source} is not a Parquet file cnn-edge wrote ({first_line(exc)}); remove it") from None
        if table.column_names not in [[*csv_header(self.top_k, flag), *tail] for flag in (True, False)
                                      for tail in ((), (PATH_BYTES,))]:
            raise ConfigError(f"{source} has columns {table.column_names[:4]}...; it was not written by cnn-edge "
                              f"predict with --top-k {self.top_k}, so it cannot be resumed (use another -o)")
        paths = table["path"].to_pylist()
        if PATH_BYTES in table.column_names:  # the exact name where it is not UTF-8
            paths = [p if b is None else b.decode("utf-8", ENCODING_ERRORS)
                     for p, b in zip(paths, table[PATH_BYTES].to_pylist())]
        if len(set(paths)) != len(paths) or None in paths:
            raise ConfigError(f"{source} repeats a path or lacks one; it was edited: remove it and rerun with --resume")
        return Kept(set(paths), data, sum(e is not None for e in table["error"].to_pylist()), "flag" in table.column_names)

    def _check_prediction(self, label, confidence: float, tops: list[tuple[object, float]]) -> None:
        """A classified row as the writer makes it: labels of the model (the empty string too, when
        the model has it), the k = min(--top-k, classes) best classes, distinct and best first, the
        first being the prediction and its confidence. Scores need not be probabilities (a model may
        answer logits); they are finite numbers."""
        labels, top_k = self.labels, self.top_k
        expected = min(top_k, len(labels) or top_k)
        if len(tops) != expected:
            raise KeptRowError(f"{len(tops)} top-k entries, expected {expected}")
        for top_label, _ in tops:
            if labels and top_label not in labels:
                raise KeptRowError(f"top-k label {top_label!r} is not one of the model's labels")
        if len({t for t, _ in tops}) != len(tops):
            raise KeptRowError("a label twice in the top-k")
        if (label, confidence) != tops[0]:
            raise KeptRowError(f"prediction {label!r} ({confidence!r}) is not the first of the top-k {tops[0]!r}")
        scores = [p for _, p in tops]
        if any(a < b for a, b in zip(scores, scores[1:])):
            raise KeptRowError(f"top-k scores {scores} are not best first")

    def _csv_row(self, cells: list[str], flag_column: bool = True) -> tuple[str, bool]:
        """(path, whether it is an error row) of a CSV record under a header with or without the flag
        column, checked."""
        header = csv_header(self.top_k, flag_column)
        if len(cells) != len(header):
            raise KeptRowError(f"{len(cells)} cells, expected {len(header)}")
        flag = cells.pop() if flag_column else ""
        check_flag(flag)
        path, label, confidence, error = restore(cells[0]), restore(cells[1]), cells[2], restore(cells[-1])
        pairs = [(restore(cells[i]), cells[i + 1]) for i in range(3, 3 + 2 * self.top_k, 2)]
        # The error cell tells the two kinds apart: a label may be the empty string.
        if error:
            if label or confidence or any(a or b for a, b in pairs) or flag:
                raise KeptRowError("both an error and a prediction" if not flag else "both an error and a flag")
            return path, True
        listed = sum(1 for _, p in pairs if p)  # the writer pads the top-k with empty pairs
        if any(a or b for a, b in pairs[listed:]):
            raise KeptRowError("top-k cells after the padding")
        self._check_prediction(label, _csv_number(confidence, "confidence"),
                               [(t, _csv_number(p, "top-k score")) for t, p in pairs[:listed]])
        return path, False

    def _jsonl_row(self, line: str) -> tuple[str, bool, bool]:
        """(path, whether it is an error row, whether it has the flag key) of a JSONL line, checked."""
        try:
            row = json.loads(line)
        except ValueError:
            raise KeptRowError("not JSON") from None
        if not isinstance(row, dict) or tuple(row) not in (JSONL_KEYS, JSONL_KEYS_BEFORE_FLAG):
            raise KeptRowError(f"not a row with the keys {', '.join(JSONL_KEYS)}")
        flag = row.get("flag")
        if flag is not None:
            if not isinstance(flag, str) or not flag:
                raise KeptRowError(f"flag {flag!r} is not one cnn-edge writes")
            check_flag(flag)
            if row["error"] is not None:
                raise KeptRowError("both an error and a flag")
        path, label, error, tops = row["path"], row["prediction"], row["error"], row["top_k"]
        if not isinstance(tops, list) or not all(isinstance(t, dict) and tuple(t) == ("label", "probability")
                                                 and isinstance(t["label"], str) for t in tops):
            raise KeptRowError("top_k is not a list of {label, probability}")
        if isinstance(label, str) and error is None:
            self._check_prediction(label, _json_number(row["confidence"], "confidence"),
                                   [(t["label"], _json_number(t["probability"], "top-k score")) for t in tops])
        elif not (label is None and isinstance(error, str) and error and row["confidence"] is None and not tops):
            raise KeptRowError("neither a prediction nor an error")
        if not isinstance(path, str):
            raise KeptRowError("path is not a string")
        return path, error is not None, "flag" in row


class Kept(NamedTuple):
    """What --resume keeps of a file: the paths of its rows, its bytes up to the last whole record,
    how many of its rows are failures (a finished run's exit code counts them), and whether its
    rows carry the flag column (None: nothing kept tells; new rows then get it)."""

    paths: set[str]
    data: bytes
    failed: int = 0
    flag_column: Optional[bool] = None


class KeptRowError(ValueError):
    """A row of a results file that cnn-edge predict did not write (or that was edited); `line`
    where the splitting itself found it."""

    def __init__(self, message: str, line: Optional[int] = None):
        super().__init__(message)
        self.line = line


def _csv_records(text: str) -> Iterator[tuple[int, object, Optional[int]]]:
    """(line number, cells, offset just past it) of each record, split by the csv module's quoting
    rules as the writer quoted them: a name holding a newline is one quoted cell, and only a line end
    outside quotes ends a record (U+2028, U+2029, U+0085 end nothing). A last record the writer never
    ended (no line end after it, or the file ends inside a quoted cell: the writer's quotes are
    always paired) comes as (line number, its raw text, None)."""
    offset = lines_read = 0

    def lines():
        nonlocal offset, lines_read
        for line in io.StringIO(text):  # split at "\n" only: StringIO's default newline
            offset += len(line)
            lines_read += 1
            yield line

    reader = csv.reader(lines(), strict=True)
    open_quote_at_end = text.count('"') % 2 == 1
    start, number = 0, 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if offset == len(text) and open_quote_at_end:
                yield number, text[start:], None
                return
            raise KeptRowError(f"not CSV as cnn-edge writes it ({exc})", number) from None
        if offset == len(text) and (open_quote_at_end or not text.endswith("\n")):
            yield number, text[start:], None
            return
        yield number, cells, offset
        start, number = offset, lines_read + 1


def _jsonl_records(text: str) -> Iterator[tuple[int, str, Optional[int]]]:
    """(line number, line, offset just past it) of each line, ended by "\\n" only, as json writes
    them (it escapes a newline in a string, and leaves U+2028, U+2029, U+0085 as they are, which
    str.splitlines would split at). A last line with no "\\n" comes with None."""
    end = 0
    pieces = text.split("\n")
    for number, line in enumerate(pieces[:-1], 1):
        end += len(line) + 1
        yield number, line, end
    if pieces[-1]:
        yield len(pieces), pieces[-1], None


def _csv_number(cell: str, what: str) -> float:
    """A score cell exactly as the writer formats one (f"{x:.6f}" of a finite float)."""
    try:
        value = float(cell)
    except ValueError:
        raise KeptRowError(f"{what} {cell!r} is not a number") from None
    if not math.isfinite(value) or f"{value:.{DECIMALS}f}" != cell:
        raise KeptRowError(f"{what} {cell!r} is not a score as cnn-edge writes one ({DECIMALS} decimals)")
    return value


def _json_number(value, what: str) -> float:
    """A score as the writer writes one in JSON: a finite float (json writes round(x, 6) as 0.5, 1.0)."""
    if not isinstance(value, float) or not math.isfinite(value):
        raise KeptRowError(f"{what} {value!r} is not a score as cnn-edge writes one")
    return value
