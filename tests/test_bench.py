"""cnn-edge bench: ONNX Runtime and PyTorch eager rows, table, JSON, plot. On the tiny models
(conftest), except where the released pair itself is what is benchmarked."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cnn_edge.tools.bench import BenchConfig, run_bench
from cnn_edge.cli import app
from cnn_edge.core.errors import ConfigError

from cnn_edge.core.artifacts import RELEASE_DIR, released_models
from conftest import REPO, openvino_plugin_devices

MODELS = released_models(REPO / RELEASE_DIR)


@pytest.fixture(scope="module")
def tiny_models(tiny_onnx, tiny_int8):
    return [tiny_onnx, tiny_int8]


def test_rows_for_every_model_batch_and_backend(tiny_models, tiny_run):
    pytest.importorskip("torch")
    report = run_bench(tiny_models, BenchConfig(batch_sizes=(1, 8), seconds=0.05, provider="cpu", checkpoint=tiny_run,
                                                use_openvino=False))
    got = {(r.runtime, r.model_precision, r.batch_size) for r in report.rows}
    assert got == {(b, p, n) for b, p in (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("pytorch", "fp32")) for n in (1, 8)}
    for r in report.rows:
        assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms and r.runs >= 5
        # images/s is batch / mean latency. At least half the runs took p50 or longer, so the mean is at
        # least p50 / 2; one stalled run on a loaded machine can make it any larger, so no lower bound.
        assert 0 < r.images_per_second <= 2 * r.batch_size * 1000 / r.p50_ms
    assert report.machine["cores"] >= 1 and "torch" in report.machine


def test_no_torch_and_bad_options(tiny_models):
    report = run_bench(tiny_models[:1], BenchConfig(use_torch=False, use_openvino=False, batch_sizes=(2,), seconds=0.02))
    assert [(r.runtime, r.provider) for r in report.rows] == [("onnxruntime", "cpu")]
    with pytest.raises(ConfigError, match=r"\[0\]"):
        BenchConfig(batch_sizes=(0,))
    result = CliRunner().invoke(app, ["bench", str(tiny_models[0]), "--batch-sizes", "1,x"])
    assert result.exit_code == 2 and "--batch-sizes" in result.stderr


def test_cli_table_json_and_plot(tmp_path, tiny_models):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    result = CliRunner().invoke(app, ["bench", *map(str, tiny_models), "--no-torch", "--no-openvino", "--seconds", "0.05",
                                      "--batch-sizes", "1,4", "--plot", str(png), "--json", "--provider", "cpu"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["rows"]) == 4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = CliRunner().invoke(app, ["bench", str(tiny_models[1]), "--no-torch", "--seconds", "0.05", "--batch-sizes", "2",
                                     "--provider", "cpu"])
    assert table.exit_code == 0 and "p99 ms" in table.stdout and "model.int8.onnx" in table.stdout


def test_openvino_rows_for_both_released_models_or_a_note_saying_why():
    """The OpenVINO runtime runs the portable release, fp32 and int8, as a peer row; the plugin
    through ONNX Runtime joins where it has a device, and leaves a note naming it where it has not."""
    report = run_bench(MODELS, BenchConfig(use_torch=False, batch_sizes=(4,), seconds=0.02))
    backends = {(r.runtime, r.model_precision, r.provider) for r in report.rows}
    if "openvino" not in report.machine:
        assert any("cnn-edge[openvino]" in n for n in report.notes)
        return
    assert {("openvino", "fp32", "CPU"), ("openvino", "int8", "CPU")} <= backends
    plugin_rows = {p for b, p, d in backends if b == "onnxruntime" and d == "openvino"}
    assert plugin_rows == {"fp32", "int8"} or any("'openvino'" in n for n in report.notes)


def test_each_row_says_what_ran_and_every_model_has_a_cpu_row():
    """Whatever auto picks (OpenVINO for int8 on an Intel CPU with the plugin), each model keeps its
    ONNX Runtime CPU row, and no two groups of rows share runtime, provider, model and precisions."""
    report = run_bench(MODELS, BenchConfig(use_torch=False, batch_sizes=(4,), seconds=0.02))
    groups = [(r.runtime, r.provider, r.model, r.model_precision, r.inference_precision) for r in report.rows]
    assert len(groups) == len(set(groups))
    for model in MODELS:
        assert ("onnxruntime", "cpu", model.name) in {g[:3] for g in groups}
    for r in report.rows:
        assert r.model_precision in ("fp32", "int8")
        assert (r.inference_precision is not None) == (r.runtime == "openvino" or r.provider == "openvino")


def test_precision_applies_to_the_openvino_rows_only(tiny_onnx):
    """--precision bf16 is OpenVINO's: the ONNX Runtime CPU rows still run (the model's own numerics);
    the plugin's rows, where it has a device (an Intel CPU), and the OpenVINO runtime's run bf16."""
    report = run_bench([tiny_onnx], BenchConfig(use_torch=False, precision="bf16", provider="cpu", batch_sizes=(2,),
                                                seconds=0.02))
    plugin = [("openvino", "bf16")] if openvino_plugin_devices() else []
    assert [(r.provider, r.inference_precision) for r in report.rows if r.runtime == "onnxruntime"] == [("cpu", None), *plugin]
    peer = [(r.provider, r.inference_precision) for r in report.rows if r.runtime == "openvino"]
    assert peer == ([("CPU", "bf16")] if "openvino" in report.machine else [])
