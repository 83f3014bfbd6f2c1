"""Result files: CSV and JSONL rows as they come, complete when finished, resumable when not."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cnn_edge.core.errors import ConfigError
from cnn_edge.runtime.predictor import Prediction
from cnn_edge.prediction.results import ResultWriter
from cnn_edge.prediction.row_format import csv_header, format_for


def pred(label: int) -> Prediction:
    probs = np.full(10, 0.01, np.float32)
    probs[label] = 0.91
    top = ((str(label), 0.91), ("0" if label else "1", 0.01), ("2", 0.01))
    return Prediction(str(label), label, 0.91, top, probs)


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
    w = ResultWriter(out, "csv", 3)
    w.write("a.png", pred(7), "")
    w.write("b.png", None, "empty file (0 bytes)")
    w.flush()
    assert out.read_text() == "old results\n"  # untouched while running
    assert w.partial.read_text().count("\n") == 3
    w.finish()
    rows = list(csv.DictReader(out.open()))
    assert not w.partial.exists()
    assert [r["path"] for r in rows] == ["a.png", "b.png"]
    assert rows[0]["prediction"] == "7" and rows[0]["top1"] == "7" and rows[0]["error"] == ""
    assert rows[1]["prediction"] == "" and rows[1]["error"] == "empty file (0 bytes)"
    assert list(rows[0]) == csv_header(3)


def test_jsonl_rows(tmp_path):
    w = ResultWriter(tmp_path / "r.jsonl", "jsonl", 3)
    w.write("a.png", pred(3), "")
    w.write("b.png", None, "blank image")
    rows = [json.loads(l) for l in w.finish().read_text().splitlines()]
    assert rows[0]["prediction"] == "3" and rows[0]["top_k"][0] == {"label": "3", "probability": 0.91}
    assert rows[1]["prediction"] is None and rows[1]["error"] == "blank image"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_drops_a_cut_row_and_reports_what_is_done(tmp_path, fmt):
    out = tmp_path / f"r.{fmt}"
    w = ResultWriter(out, fmt, 3)
    for name in ("a.png", "b.png"):
        w.write(name, pred(1), "")
    w.abort()
    with open(w.partial, "a") as f:
        f.write('c.png,1,0.9')  # a crash in the middle of a row
    w2 = ResultWriter(out, fmt, 3, resume=True)
    assert w2.done == {"a.png", "b.png"}
    w2.write("c.png", pred(2), "")
    text = w2.finish().read_text()
    assert text.count("c.png") == 1 and text.count("a.png") == 1


def test_resume_refuses_a_file_with_other_columns(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("name,score\nx,1\n")
    with pytest.raises(ConfigError, match="r.csv"):
        ResultWriter(out, "csv", 3, resume=True)
    assert out.read_text() == "name,score\nx,1\n"
