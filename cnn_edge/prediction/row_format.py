"""The rows of a results file, CSV or JSONL: how each is written, and how a kept one is checked. Torch-free.

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
from pathlib import Path
from typing import Optional, Sequence

from ..core.errors import ConfigError

FORMATS = ("csv", "jsonl")
ENCODING_ERRORS = "surrogateescape"  # lossless for names that are not valid UTF-8
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
JSONL_KEYS = ("path", "prediction", "confidence", "top_k", "error")


EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def format_for(path: Path, fmt: Optional[str]) -> str:
    """--format wins; else the extension (.csv, or .jsonl/.ndjson/.json); `-` (stdout) is CSV.
    Another extension is an error naming --format: a file called out.txt holding CSV surprises."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {fmt!r}; choose csv or jsonl")
        return fmt
    if str(path) == "-":
        return "csv"
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ConfigError(f"-o {path}: cnn-edge writes CSV or JSONL; name the file .csv or .jsonl, or give "
                          f"--format csv|jsonl")
    return EXTENSIONS[suffix]


def csv_header(top_k: int) -> list[str]:
    tops = [c for i in range(1, top_k + 1) for c in (f"top{i}", f"top{i}_probability")]
    return ["path", "prediction", "confidence", *tops, "error"]


def neutralise(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs."""
    return "'" + cell if cell[:1] in FORMULA_STARTS or cell[:1] == "'" else cell


def restore(cell: str) -> str:
    return cell[1:] if cell[:1] == "'" else cell


def csv_cells(path: str, prediction, error: str, top_k: int) -> list[str]:
    """A row's cells; the ones that come from outside (the path, the error, the model's labels) are
    neutralised, the numbers written here need not be."""
    if prediction is None:
        return [neutralise(path), "", "", *([""] * (2 * top_k)), neutralise(error)]
    tops = [v for label, p in prediction.top_k for v in (neutralise(label), f"{p:.6f}")]
    tops += [""] * (2 * top_k - len(tops))
    return [neutralise(path), neutralise(prediction.label), f"{prediction.confidence:.6f}", *tops, ""]


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def jsonl_text(path: str, prediction, error: str) -> str:
    """One JSONL line; a name that is not valid UTF-8 is written with \\udcXX escapes."""
    row = {"path": path, "prediction": None, "confidence": None, "top_k": [], "error": error or None}
    if prediction is not None:
        row.update(prediction=prediction.label, confidence=round(prediction.confidence, 6),
                   top_k=[{"label": label, "probability": round(p, 6)} for label, p in prediction.top_k])
    line = json.dumps(row, ensure_ascii=False)
    return (line if encodable(line) else json.dumps(row)) + "\n"


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


def _check_prediction(label, confidence, tops: list, labels: Sequence[str], top_k: int) -> None:
    if labels and label not in labels:
        raise KeptRowError(f"prediction {label!r} is not one of the model's labels")
    _probability(confidence, "confidence")
    if len(tops) != min(top_k, len(labels) or top_k):
        raise KeptRowError(f"{len(tops)} top-k entries, expected {min(top_k, len(labels) or top_k)}")
    for top_label, p in tops:
        if labels and top_label not in labels:
            raise KeptRowError(f"top-k label {top_label!r} is not one of the model's labels")
        _probability(p, "top-k probability")


def _csv_row(cells: list[str], header: list[str], labels: Sequence[str], top_k: int) -> str:
    if len(cells) != len(header):
        raise KeptRowError(f"{len(cells)} cells, expected {len(header)}")
    path, label, confidence, error = restore(cells[0]), restore(cells[1]), restore(cells[2]), restore(cells[-1])
    pairs = [(restore(cells[i]), restore(cells[i + 1])) for i in range(3, 3 + 2 * top_k, 2)]
    if label:
        if error:
            raise KeptRowError("both a prediction and an error")
        _check_prediction(label, confidence, [p for p in pairs if p[0]], labels, top_k)
    elif not error or confidence or any(a or b for a, b in pairs):
        raise KeptRowError("no prediction, but no error either, or figures without a prediction")
    return path


def _jsonl_row(line: str, labels: Sequence[str], top_k: int) -> str:
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
        _check_prediction(label, row["confidence"], [(t["label"], t["probability"]) for t in tops], labels, top_k)
    elif not (label is None and isinstance(error, str) and error and row["confidence"] is None and not tops):
        raise KeptRowError("neither a prediction nor an error")
    if not isinstance(path, str):
        raise KeptRowError("path is not a string")
    return path


def kept_paths(text: str, fmt: str, top_k: int, labels: Sequence[str], source: Path) -> set[str]:
    """The paths of the complete rows of a results file being resumed, after checking every row.
    Raises ConfigError naming the file and line when one was not written by cnn-edge predict with
    these settings."""
    done: set[str] = set()
    if fmt == "csv":
        lines = list(csv.reader(io.StringIO(text)))
        if lines and lines[0] != csv_header(top_k):
            raise ConfigError(f"{source} has columns {lines[0][:4]}...; it was not written by cnn-edge predict "
                              f"with --top-k {top_k} in CSV, so it cannot be resumed (use another -o)")
        rows = ((n, lambda cells=cells: _csv_row(cells, lines[0], labels, top_k)) for n, cells in enumerate(lines[1:], 2))
    else:
        rows = ((n, lambda line=line: _jsonl_row(line, labels, top_k)) for n, line in enumerate(text.splitlines(), 1))
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
