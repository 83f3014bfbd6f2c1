"""Result files: CSV and JSONL rows as they come, complete when finished, resumable when not."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cnn_edge.core.errors import ConfigError
from cnn_edge.core.constants import CLASS_LABELS
from cnn_edge.prediction.rows import RowBatch, RowSchema, csv_header, format_for
from cnn_edge.prediction.sinks import ResultFile

SCHEMA = RowSchema(tuple(CLASS_LABELS), 3)


def batch_of(*items) -> RowBatch:
    """A batch from (path, label or None, error): a label gets 0.91, the others 0.01."""
    paths, errors, probs = [], [], []
    for path, label, error in items:
        paths.append(path)
        errors.append(error)
        if label is not None:
            p = np.full(10, 0.01, np.float32)
            p[label] = 0.91
            probs.append(p)
    return RowBatch.scored(paths, errors, np.array(probs, np.float32).reshape(-1, 10), 3)


def opened(out, fmt, resume=False) -> ResultFile:
    sink = ResultFile(out, fmt, resume=resume)
    sink.open(SCHEMA)
    return sink


def test_format_from_flag_or_extension(tmp_path):
    assert format_for(tmp_path / "r.jsonl", None) == "jsonl"
    assert format_for(tmp_path / "r.csv", None) == "csv"
    with pytest.raises(ConfigError, match="--format"):
        format_for(tmp_path / "r.txt", None)
    assert format_for(tmp_path / "r.csv", "jsonl") == "jsonl"
    with pytest.raises(ConfigError, match="'xml'"):
        format_for(tmp_path / "r.csv", "xml")


def test_csv_rows_appear_only_in_the_partial_file_until_finished(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("old results\n")
    w = opened(out, "csv")
    w.write(batch_of(("a.png", 7, ""), ("b.png", None, "empty file (0 bytes)")))
    assert out.read_text() == "old results\n"  # untouched while running
    assert w.partial.read_text().count("\n") == 3
    w.commit({})
    rows = list(csv.DictReader(out.open()))
    assert not w.partial.exists()
    assert [r["path"] for r in rows] == ["a.png", "b.png"]
    assert rows[0]["prediction"] == "7" and rows[0]["top1"] == "7" and rows[0]["error"] == ""
    assert rows[1]["prediction"] == "" and rows[1]["error"] == "empty file (0 bytes)"
    assert list(rows[0]) == csv_header(3)


def test_jsonl_rows(tmp_path):
    w = opened(tmp_path / "r.jsonl", "jsonl")
    w.write(batch_of(("a.png", 3, ""), ("b.png", None, "blank image")))
    w.commit({})
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert lines[0]["prediction"] == "3" and lines[0]["top_k"][0] == {"label": "3", "probability": 0.91}
    assert lines[1]["prediction"] is None and lines[1]["error"] == "blank image"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_drops_a_cut_row_and_reports_what_is_done(tmp_path, fmt):
    out = tmp_path / f"r.{fmt}"
    w = opened(out, fmt)
    w.write(batch_of(("a.png", 1, ""), ("b.png", 1, "")))
    w.abort()
    assert w.kept_in == str(w.partial)
    with open(w.partial, "a") as f:
        f.write('c.png,1,0.9')  # a crash in the middle of a row
    w2 = opened(out, fmt, resume=True)
    assert w2.done == {"a.png", "b.png"}
    w2.write(batch_of(("c.png", 2, "")))
    w2.commit({})
    text = out.read_text()
    assert text.count("c.png") == 1 and text.count("a.png") == 1


def test_resume_refuses_a_file_with_other_columns(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("name,score\nx,1\n")
    with pytest.raises(ConfigError, match="r.csv"):
        opened(out, "csv", resume=True)
    assert out.read_text() == "name,score\nx,1\n"
