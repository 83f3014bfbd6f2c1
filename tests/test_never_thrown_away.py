"""The main job never throws a trained model away: when no int8 model meets the int8 criterion
(the guard judges what the int8 validation judges: accuracy drop and top-1 agreement), the fp32
model is released alone, the card and pipeline.json say why, and the command exits 4."""
from __future__ import annotations

import json

import pytest

from typer.testing import CliRunner

from cnn_edge.cli import app
from cnn_edge.cli.app import EXIT_FP32_ONLY
from cnn_edge.core import contract as C
from cnn_edge.release import validate  # noqa: F401  (imported first: its limits are read from the contract once)


def run(tiny_mnist, tmp_path, *extra):
    return CliRunner().invoke(app, ["pipeline", "--data-dir", str(tiny_mnist), "--run-dir", str(tmp_path / "run"),
                                    "--out-dir", str(tmp_path / "out"), "--epochs", "1", "--batch-size", "64",
                                    "--val-size", "64", "--speed-seconds", "0", *extra])


@pytest.mark.slow
def test_an_int8_model_that_cannot_meet_parity_leaves_the_fp32_release(tiny_mnist, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mnist_cnn.int8.onnx").write_bytes(b"an int8 model of an earlier release")
    monkeypatch.setattr(C, "INT8_MIN_TOP1_AGREEMENT", 1.01)  # no int8 model can agree more than always
    result = run(tiny_mnist, tmp_path)
    assert result.exit_code == EXIT_FP32_ONLY == 4, result.output
    assert "int8 NOT released" in result.stdout and "even with" in result.stdout  # the guard's own criterion failed
    names = {p.name for p in out.iterdir()}
    assert {"mnist_cnn.onnx", "mnist_cnn.safetensors", "pipeline.json", "MODEL_CARD.md"} <= names
    assert "mnist_cnn.int8.onnx" not in names  # the old one does not pose as this release's
    summary = json.loads((out / "pipeline.json").read_text())
    assert summary["quantization"] is None and "agreement" in summary["int8_not_released"]
    assert {f["name"] for f in summary["files"]} == names - {"pipeline.json", "MODEL_CARD.md"}
    assert "int8 model: not released" in (out / "MODEL_CARD.md").read_text()


@pytest.mark.slow
def test_the_log_tells_each_stage_its_duration(tiny_mnist, tmp_path):
    result = run(tiny_mnist, tmp_path)
    assert result.exit_code == 0, result.output
    stages = [line for line in result.stderr.splitlines() if line.startswith("== ")]
    assert stages[0] == "== train" and stages[-1].startswith("== done (release took ")
    assert all(" took " in line for line in stages[1:])
    assert "(train took" in stages[1]
