"""cnn-edge bench: ONNX Runtime and PyTorch eager rows, table, JSON, plot."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cnn_edge.tools.bench import BenchConfig, run_bench
from cnn_edge.cli import app
from cnn_edge.core.errors import ConfigError

from cnn_edge.core.artifacts import RELEASE_DIR, released_models
from conftest import REPO

MODELS = released_models(REPO / RELEASE_DIR)


def test_rows_for_every_model_batch_and_backend():
    pytest.importorskip("torch")
    report = run_bench(MODELS, BenchConfig(batch_sizes=(1, 8), seconds=0.05, use_openvino=False))
    got = {(r.backend, r.precision, r.batch_size) for r in report.rows}
    assert got == {(b, p, n) for b, p in (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("pytorch", "fp32")) for n in (1, 8)}
    for r in report.rows:
        assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms and r.runs >= 5
        assert r.images_per_second == pytest.approx(r.batch_size * 1000 / r.p50_ms, rel=0.9)
    assert report.machine["cores"] >= 1 and "torch" in report.machine


def test_no_torch_and_bad_options():
    report = run_bench(MODELS[:1], BenchConfig(use_torch=False, use_openvino=False, batch_sizes=(2,), seconds=0.02))
    assert [r.backend for r in report.rows] == ["onnxruntime"]
    with pytest.raises(ConfigError, match=r"\[0\]"):
        BenchConfig(batch_sizes=(0,))
    result = CliRunner().invoke(app, ["bench", str(MODELS[0]), "--batch-sizes", "1,x"])
    assert result.exit_code == 2 and "--batch-sizes" in result.stderr


def test_cli_table_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    result = CliRunner().invoke(app, ["bench", *map(str, MODELS), "--no-torch", "--no-openvino", "--seconds", "0.05",
                                      "--batch-sizes", "1,4", "--plot", str(png), "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["rows"]) == 4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = CliRunner().invoke(app, ["bench", str(MODELS[1]), "--no-torch", "--seconds", "0.05", "--batch-sizes", "2"])
    assert table.exit_code == 0 and "p99 ms" in table.stdout and "mnist_cnn.int8.onnx" in table.stdout


def test_openvino_rows_for_both_released_models_or_a_note_saying_why():
    """The OpenVINO runtime runs the portable release, fp32 and int8, as a peer row; the plugin
    through ONNX Runtime joins where it has a device, and leaves a note naming it where it has not."""
    report = run_bench(MODELS, BenchConfig(use_torch=False, batch_sizes=(4,), seconds=0.02))
    backends = {(r.backend, r.precision, r.device.split()[0]) for r in report.rows}
    if "openvino" not in report.machine:
        assert any("cnn-edge[openvino]" in n for n in report.notes)
        return
    assert {("openvino", "fp32", "CPU"), ("openvino", "int8", "CPU")} <= backends
    plugin_rows = {p for b, p, d in backends if b == "onnxruntime" and d == "openvino"}
    assert plugin_rows == {"fp32", "int8"} or any("'openvino'" in n for n in report.notes)


def test_precision_applies_to_the_openvino_rows_only():
    """--precision bf16 is OpenVINO's: the ONNX Runtime CPU rows still run (the model's own numerics)."""
    report = run_bench(MODELS[:1], BenchConfig(use_torch=False, precision="bf16", batch_sizes=(2,), seconds=0.02))
    assert [r.device for r in report.rows if r.backend == "onnxruntime"] == ["cpu"]
    assert all(r.device == "CPU (bf16)" for r in report.rows if r.backend == "openvino")
