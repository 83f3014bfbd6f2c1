"""Architectures through the whole pipeline, and `cnn-edge compare --quick` end to end."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cnn_edge.core.arch import NAMED, total_params
from cnn_edge.cli import app
from cnn_edge.tools.compare import COMPARE_FILE, DEFAULT_ARCHS, SCHEMA, CompareConfig
from cnn_edge.core.errors import ConfigError
from cnn_edge.core.references import NOTEBOOK_LOGREG_ACCURACY

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("arch", list(NAMED))
def test_info_for_every_architecture(arch):
    data = json.loads(invoke("info", "--arch", arch, "--json").stdout)
    assert data["total_params"] == total_params(arch)
    text = invoke("info", "--arch", arch).stdout
    assert f"{total_params(arch):,}" in text and "(n+1)*m" in text


@pytest.mark.slow
def test_a_baseline_releases_under_its_own_name(tiny_mnist, tmp_path):
    out = tmp_path / "exports"
    result = invoke("pipeline", "--arch", "logreg", "--data-dir", tiny_mnist, "--run-dir", tmp_path / "run",
                    "--out-dir", out, "--epochs", "1", "--batch-size", "64", "--val-size", "64", "-q", "--json",
                    "--speed-seconds", "0")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["arch"] == "logreg" and summary["params"] == 7_850
    names = {p.name for p in out.iterdir()}
    assert {"mnist_logreg.onnx", "mnist_logreg.int8.onnx", "mnist_logreg.test_vectors.json",
            "mnist_logreg.pipeline.json", "mnist_logreg.MODEL_CARD.md"} <= names
    assert not any(n.startswith("mnist_cnn") for n in names)  # the spec release is never touched
    assert not {"test_vectors.json", "pipeline.json", "MODEL_CARD.md"} & names
    card = (out / "mnist_logreg.MODEL_CARD.md").read_text()
    assert "`logreg`" in card and "--arch logreg" in summary["reproduce"] and summary["reproduce"] in card
    # The ONNX contract is the same for every architecture: predict runs it.
    assert invoke("validate", out / "mnist_logreg.onnx", "--data-dir", tiny_mnist).exit_code == 0


@pytest.mark.slow
def test_quick_compare_end_to_end(tiny_mnist, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "compare.png"
    result = invoke("compare", "--quick", "--data-dir", tiny_mnist, "--run-dir", tmp_path / "cmp",
                    "--plot", png, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {r["arch"]: r for r in report["results"]}
    assert list(rows) == list(DEFAULT_ARCHS) == ["spec", "notebook-cnn", "mlp", "logreg"]
    for arch, r in rows.items():
        assert r["params"] == total_params(arch) and r["parity_passed"]
        assert 0 <= r["test_accuracy"] <= 1 and len(r["epoch_seconds"]) == 1 and r["train_seconds"] > 0
        assert 0 < r["int8_bytes"] < r["onnx_bytes"] and r["latency_batch1_ms"] > 0 and r["throughput_batch256"] > 0
    assert rows["spec"]["onnx_bytes"] > rows["mlp"]["onnx_bytes"] > rows["logreg"]["onnx_bytes"]
    assert report["schema"] == SCHEMA and report["train"]["epochs"] == 1 and report["train"]["recipe"] == "seed"
    assert json.loads((tmp_path / "cmp" / COMPARE_FILE).read_text())["results"][0]["arch"] == "spec"
    assert rows["logreg"]["notebook_accuracy"] == NOTEBOOK_LOGREG_ACCURACY
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = invoke("compare", "--quick", "--archs", "logreg", "--data-dir", tiny_mnist, "--run-dir", tmp_path / "cmp",
                   "--resume", "-q")
    assert table.exit_code == 0 and "logreg" in table.stdout and f"{NOTEBOOK_LOGREG_ACCURACY:.1%}" in table.stdout


def test_unknown_architecture():
    with pytest.raises(ConfigError, match="'vgg'"):
        CompareConfig(archs=("spec", "vgg"))
    result = invoke("compare", "--archs", "spec,vgg")
    assert result.exit_code == 2 and "'vgg'" in result.stderr and "Traceback" not in result.output
