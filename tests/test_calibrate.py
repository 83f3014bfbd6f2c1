"""Calibration (release/calibrate.py): the temperature fit, ECE and NLL by hand, the fold into the
closing fc, validate's figures, and the pipeline releasing a calibrated network whose temperature
its metadata, its checkpoint and pipeline.json record."""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from cnn_edge.cli import app
from cnn_edge.core import contract as C
from cnn_edge.release import calibrate as K
from conftest import assert_one_line_error

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def calibrated_logits(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): calibrated by construction (T = 1)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.5, (n, 10))
    p = K.softmax(logits)
    labels = (rng.random((n, 1)) > np.cumsum(p, 1)).sum(1)
    return logits, np.minimum(labels, 9)


def test_ece_and_nll_by_hand():
    # Top-1 confidences 0.95 (right), 0.95 (wrong), 0.55 (right), 0.25 (wrong) fall in bins 15, 15, 9
    # and 4 of 15: (2/4)|0.5 - 0.95| + (1/4)|1 - 0.55| + (1/4)|0 - 0.25| = 0.225 + 0.1125 + 0.0625.
    probs = np.array([[0.95, 0.05, 0, 0], [0.05, 0.95, 0, 0], [0.55, 0.45, 0, 0], [0.25, 0.25, 0.25, 0.25]])
    labels = np.array([0, 0, 0, 3])  # the last: argmax is class 0, wrong
    assert K.expected_calibration_error(probs, labels) == pytest.approx(0.4)
    assert K.expected_calibration_error(probs[:1], labels[:1]) == pytest.approx(0.05)
    assert K.nll(np.array([[0.0, 0.0], [math.log(3), 0.0]]), np.array([0, 0])) == pytest.approx(
        (math.log(2) + math.log(4 / 3)) / 2)
    assert K.nll(np.array([[2.0, 0.0]]), np.array([0]), temperature=2.0) == pytest.approx(math.log(1 + math.exp(-1)))


def test_an_overconfident_network_gets_a_temperature_above_one_and_lower_nll_and_ece():
    logits, labels = calibrated_logits()
    over = 3 * logits  # three times too sure
    t = K.fit_temperature(over, labels)
    assert 2.7 < t < 3.3
    assert K.nll(over, labels, t) < K.nll(over, labels)
    before, after = (K.expected_calibration_error(K.softmax(over, temp), labels) for temp in (1.0, t))
    assert after < before / 3
    # The fit is the minimum: a little either side is worse.
    assert K.nll(over, labels, t) < min(K.nll(over, labels, t * 0.97), K.nll(over, labels, t * 1.03))
    assert 0.45 < K.fit_temperature(logits / 2, labels) < 0.55  # an underconfident one gets T < 1
    assert K.fit_temperature(over, labels) == t and len(f"{t}".replace(".", "").lstrip("0")) <= K.TEMPERATURE_DIGITS


def test_a_network_right_by_a_wide_margin_everywhere_gets_the_smallest_temperature():
    labels = np.arange(100) % 10
    logits = np.eye(10)[labels] * 50.0
    assert K.fit_temperature(logits, labels) == K.MIN_TEMPERATURE


def test_folding_divides_the_logits_by_the_temperature():
    import torch

    from cnn_edge.training.model import MnistNet, ModelConfig

    torch.manual_seed(0)
    net = MnistNet(ModelConfig.of("conv4-bn-pool-fc16-fc10")).eval()
    x = torch.rand(5, 1, 28, 28) * 255
    with torch.no_grad():
        before = net(x)
        K.fold_temperature(net, 2.5)
        after = net(x)
    assert torch.allclose(after, before / 2.5, atol=1e-6)


def test_validate_reports_calibration_and_undoes_a_stated_temperature(tiny_onnx, tiny_data, tmp_path):
    from cnn_edge.release.validate import validate_model
    from cnn_edge.runtime.onnx_model import open_model

    plain = validate_model(tiny_onnx, tiny_data.test)
    c = plain.calibration
    assert c.temperature is None and c.ece_uncalibrated is None and c.nll_uncalibrated is None
    assert c.samples == len(tiny_data.test) and c.bins == K.ECE_BINS and 0 <= c.ece <= 1 and c.nll > 0
    proto = onnx.load(str(tiny_onnx))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, C.META_TEMPERATURE: "2.0"})
    stated = tmp_path / "stated.onnx"
    onnx.save(proto, str(stated))
    c = validate_model(stated, tiny_data.test).calibration
    probs, logits = open_model(tiny_onnx).run_batched(tiny_data.test.images)
    assert c.temperature == 2.0 and c.ece == plain.calibration.ece
    assert c.ece_uncalibrated == pytest.approx(K.expected_calibration_error(K.softmax(logits * 2.0), tiny_data.test.labels))
    assert c.nll_uncalibrated == pytest.approx(K.nll(logits * 2.0, tiny_data.test.labels))


@pytest.mark.parametrize("value", ["0", "-1.5", "inf"])
def test_a_temperature_that_is_not_a_positive_number_is_refused(tiny_onnx, tiny_mnist, tmp_path, value):
    proto = onnx.load(str(tiny_onnx))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, C.META_TEMPERATURE: value})
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    assert_one_line_error(invoke("validate", bad, "--data-dir", tiny_mnist), 2, C.META_TEMPERATURE)


def test_the_calibrate_command_fits_on_the_checkpoints_own_validation_split(tiny_run, tiny_mnist, tmp_path):
    out = tmp_path / "cal.safetensors"
    result = invoke("calibrate", tiny_run, "-o", out, "--data-dir", tiny_mnist, "--json")
    assert result.exit_code == 0, result.output
    fit = json.loads(result.stdout)
    assert fit["samples"] == 64 and fit["source"] == str(tiny_run)  # tiny_run held out 64 images
    assert json.loads(out.with_suffix(".json").read_text())["temperature"] == fit["temperature"]
    assert_one_line_error(invoke("calibrate", out, "-o", tmp_path / "again.safetensors", "--data-dir", tiny_mnist),
                          2, "calibrated already")
    assert_one_line_error(invoke("calibrate", tiny_run, "-o", tiny_run, "--data-dir", tiny_mnist), 2, "overwrite")
    assert_one_line_error(invoke("calibrate", tiny_run, "-o", tmp_path / "x.onnx", "--data-dir", tiny_mnist), 2, ".safetensors")


@pytest.mark.slow
def test_the_exported_graph_computes_softmax_of_the_logits_over_t(tiny_run, tiny_data, tmp_path):
    """Calibrate training's checkpoint on a held-out split, export the calibrated one: ONNX Runtime's
    probabilities are softmax(logits / T) of the uncalibrated PyTorch network, and the metadata says T."""
    from cnn_edge.release.export import export_onnx
    from cnn_edge.runtime.onnx_model import open_model
    from cnn_edge.training.checkpoint import load_checkpoint
    from cnn_edge.training.data import MnistSplit
    from cnn_edge.training.train import predict_logits

    val = MnistSplit(tiny_data.train.images[-200:], tiny_data.train.labels[-200:], "tiny")
    fit = K.calibrate_checkpoint(tiny_run, tmp_path / "calibrated.safetensors", val)
    assert fit.checkpoint == tmp_path / "calibrated.safetensors" and fit.samples == 200
    assert fit.nll_after <= fit.nll_before and fit.temperature != 1.0
    export_onnx(fit.checkpoint, tmp_path / "model.onnx")
    model = open_model(tmp_path / "model.onnx")
    assert model.metadata_float(C.META_TEMPERATURE) == fit.temperature
    raw, _ = load_checkpoint(tiny_run)
    logits = predict_logits(raw, tiny_data.test.images)
    probs, got_logits = model.run_batched(tiny_data.test.images)
    assert np.abs(probs - K.softmax(logits, fit.temperature)).max() < C.FP32_TOLERANCE
    assert np.abs(got_logits - logits / fit.temperature).max() < C.FP32_TOLERANCE
    with pytest.raises(Exception, match="calibrated already"):  # twice would compound
        K.calibrate_checkpoint(fit.checkpoint, tmp_path / "twice.safetensors", val)


@pytest.fixture(scope="module")
def calibrated_release(tiny_mnist, tmp_path_factory):
    """One pipeline on the tiny set (calibrated, the default): (run folder, release folder, its summary)."""
    tmp = tmp_path_factory.mktemp("calibrated")
    result = invoke("pipeline", "--data-dir", tiny_mnist, "--run-dir", tmp / "run", "--out-dir", tmp / "out",
                    "--epochs", "1", "--batch-size", "64", "--val-size", "64", "--speed-seconds", "0", "-q", "--json")
    assert result.exit_code == 0, result.output
    return tmp / "run", tmp / "out", json.loads(result.stdout)


@pytest.mark.slow
def test_the_pipeline_releases_a_calibrated_network_and_records_its_temperature(calibrated_release, tiny_data):
    from cnn_edge.training.checkpoint import load_checkpoint
    from cnn_edge.training.train import predict_logits

    run, out, s = calibrated_release
    t = s["calibration"]["temperature"]
    assert t > 0 and s["not_calibrated"] is None and s["calibration"]["samples"] == 64
    assert json.loads((out / "pipeline.json").read_text())["calibration"]["temperature"] == t
    for name in ("mnist_cnn.onnx", "mnist_cnn.int8.onnx"):
        props = {p.key: p.value for p in onnx.load(str(out / name)).metadata_props}
        assert float(props[C.META_TEMPERATURE]) == t and props[C.META_PREPROCESSING] == C.PREPROCESSING_V2
    assert json.loads((out / "mnist_cnn.json").read_text())["temperature"] == t
    # Parity held against the calibrated network, fp32 and int8; the released weights are it.
    assert s["validation"]["passed"] and s["validation"]["parity"]["top1_agreement"] == 1.0
    assert s["int8_validation"]["passed"] and s["int8_not_released"] is None
    released, _ = load_checkpoint(out / "mnist_cnn.safetensors")
    trained, _ = load_checkpoint(run / "model.safetensors")
    images = tiny_data.test.images[:32]
    assert np.abs(predict_logits(released, images) - predict_logits(trained, images) / t).max() < 1e-5
    v = s["validation"]
    assert v["calibration"]["temperature"] == t and v["calibration"]["ece_uncalibrated"] is not None
    assert len(v["robustness"]["transforms"]) == 10 and len(s["int8_validation"]["robustness"]["transforms"]) == 10
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Limitations" in card and f"temperature of {t:g}" in card and "mnist-v2" in card
    weakest = sorted((x for x in v["robustness"]["transforms"] if x["transform"] != "none"), key=lambda x: x["accuracy"])[0]
    assert f"{weakest['transform']} {weakest['accuracy']:.2%} (ECE {weakest['ece']:.2%})" in card


@pytest.mark.slow
def test_no_calibrate_releases_the_network_as_trained(calibrated_release, tiny_mnist, tmp_path):
    """--no-calibrate (here on the finished run, re-released without training): no temperature
    anywhere, the reason recorded, the reproduce command carrying the option."""
    run, _, _ = calibrated_release
    out = tmp_path / "plain"
    result = invoke("pipeline", "--data-dir", tiny_mnist, "--run-dir", run, "--out-dir", out, "--resume", "--no-calibrate",
                    "--epochs", "1", "--batch-size", "64", "--val-size", "64", "--speed-seconds", "0", "-q", "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["calibration"] is None and s["not_calibrated"] == "--no-calibrate" and "--no-calibrate" in s["reproduce"]
    props = {p.key: p.value for p in onnx.load(str(out / "mnist_cnn.onnx")).metadata_props}
    assert props[C.META_TEMPERATURE] == "" and "temperature" not in json.loads((out / "mnist_cnn.json").read_text())
    assert s["validation"]["passed"] and s["validation"]["calibration"]["temperature"] is None
    assert "Confidence is not calibrated (--no-calibrate)" in (out / "MODEL_CARD.md").read_text()
