"""`cnn-edge diagnose`: it names the layer that was broken, first; its repro replays; bad input is one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from cnn_edge.cli import app
from cnn_edge.release.diagnose import INT8_MIN_SQNR_DB, diagnose
from conftest import REPO

FP32 = REPO / "exports" / "mnist_cnn.onnx"
INT8 = REPO / "exports" / "mnist_cnn.int8.onnx"
CKPT = REPO / "exports" / "mnist_cnn.safetensors"
MNIST = Path("/work/shared/data/mnist")
WEIGHTS = ("conv1", "conv2", "conv3", "conv4", "linear1", "linear2")
runner = CliRunner()


def nudged(src: Path, out: Path, initializer: str, factor: float, seed: int = 0, weight_noise: bool = True) -> Path:
    """A copy of `src` with one initializer nudged: noise of factor x its std added, or its values x factor."""
    m = onnx.load(str(src))
    for init in m.graph.initializer:
        if init.name == initializer:
            w = numpy_helper.to_array(init)
            if weight_noise:
                w = w + np.random.default_rng(seed).normal(0, factor * w.std(), w.shape).astype(w.dtype)
            else:
                w = (w * factor).astype(w.dtype)
            init.CopyFrom(numpy_helper.from_array(w, initializer))
            break
    else:
        raise AssertionError(f"no initializer {initializer}")
    onnx.save(m, str(out))
    return out


@pytest.fixture(scope="module")
def test_images():
    if not MNIST.is_dir():
        pytest.skip("MNIST not at /work/shared/data/mnist")
    from cnn_edge.training.data import load_split

    return load_split("test", MNIST).images[:300]


def test_tiny_export_agrees_and_a_nudged_layer_is_named(tiny_run, tiny_onnx, tiny_data, tmp_path):
    images = tiny_data.test.images[:64]
    clean = diagnose(tiny_onnx, images, checkpoint=tiny_run)
    assert clean.first_diverging_layer is None and [r.layer for r in clean.layers][:2] == ["normalize", "conv1"]
    bad = nudged(tiny_onnx, tmp_path / "bad.onnx", "net.layers.conv3.weight", 0.3)
    assert diagnose(bad, images, checkpoint=tiny_run).first_diverging_layer == "conv3"


def test_cli_json_and_bad_input_is_one_line(tiny_run, tiny_onnx, tiny_int8, tiny_mnist, tmp_path):
    args = ["diagnose", str(tiny_onnx), str(tiny_int8), "--samples", "32", "--data-dir", str(tiny_mnist)]
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    assert "first_diverging_layer" in json.loads(out.stdout)
    other = onnx.load(str(tiny_onnx))
    for p in other.metadata_props:
        if p.key == "cnn_edge.architecture":
            p.value = "mlp"
    onnx.save(other, str(tmp_path / "other.onnx"))
    full = tmp_path / "full"
    (full / "x").mkdir(parents=True)
    for bad in (["diagnose", str(tmp_path / "other.onnx"), str(tiny_int8)],  # two architectures
                ["diagnose", str(tiny_int8), str(tiny_onnx)],  # int8 as the reference
                ["diagnose", str(tiny_onnx), str(tiny_int8), "--checkpoint", str(tiny_run)],
                [*args, "--repro", str(full)]):
        res = runner.invoke(app, [*bad, "--samples", "32", "--data-dir", str(tiny_mnist)])
        assert res.exit_code == 2, res.output
        assert res.output.count("\n") == 1 and "Traceback" not in res.output, res.output


def test_validate_names_the_diagnose_command():
    from cnn_edge.release.validate import diagnose_hint

    assert diagnose_hint("m.onnx", "c.safetensors") == (
        "find the first diverging layer with: cnn-edge diagnose m.onnx --checkpoint c.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("layer", WEIGHTS)
def test_a_nudged_layer_is_named_first(layer, test_images, tmp_path):
    for factor in (0.1, 1.0):
        bad = nudged(FP32, tmp_path / f"{factor}.onnx", f"net.layers.{layer}.weight", factor)
        assert diagnose(bad, test_images, checkpoint=CKPT).first_diverging_layer == layer
        got = diagnose(bad, test_images, reference_model=FP32)
        assert got.first_diverging_tensor == next(r.tensor for r in diagnose(
            FP32, test_images[:10], checkpoint=CKPT).layers if r.layer == layer)


@pytest.mark.slow
@pytest.mark.parametrize("tensor", ["relu", "relu_1", "relu_2", "relu_3", "relu_4", "logits", "add_5"])
def test_a_coarser_int8_scale_is_named(tensor, test_images, tmp_path):
    factors = (16,) if tensor == "add_5" else (4, 16)  # add_5 is 47 dB healthy: 4x leaves it over 33 dB
    for k in factors:
        bad = nudged(INT8, tmp_path / f"{k}.onnx", f"{tensor}_scale", k, weight_noise=False)
        assert diagnose(bad, test_images, reference_model=FP32).first_diverging_layer == tensor


@pytest.mark.slow
def test_the_repro_replays(test_images, tmp_path):
    from onnx.reference import ReferenceEvaluator
    import onnxruntime as ort

    bad = nudged(INT8, tmp_path / "bad.onnx", "relu_2_scale", 8, weight_noise=False)
    report = diagnose(bad, test_images, reference_model=FP32, repro=tmp_path / "repro")
    row = next(r for r in report.layers if r.layer == report.first_diverging_layer)
    folder = tmp_path / "repro"
    x = numpy_helper.to_array(onnx.load_tensor(str(folder / "test_data_set_0" / "input_0.pb")))
    want = numpy_helper.to_array(onnx.load_tensor(str(folder / "test_data_set_0" / "output_0.pb")))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    by_ort = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"]).run(None, {"pixels": x})[0]
    by_ref = ReferenceEvaluator(str(folder / "model.onnx")).run(None, {"pixels": x})[0]
    for got in (by_ort, by_ref):
        err = got.astype(np.float64) - want
        db = 10 * np.log10((want.astype(np.float64) ** 2).sum() / (err**2).sum())
        # far from the expected, as the table said: under the SQNR threshold, the worst images' diff
        assert db < INT8_MIN_SQNR_DB
        assert 0.5 * row.max_abs_diff <= np.abs(err).max() <= row.max_abs_diff * 1.001
    np.testing.assert_allclose(by_ort, by_ref, atol=1e-4)
    assert "ReferenceEvaluator" in (folder / "README.md").read_text()


def test_one_model_on_two_providers(tiny_onnx, tiny_mnist):
    """The third mode: MODEL on --provider against MODEL on --against-provider, every float tensor
    against itself. The CPU against itself parts nowhere; a provider that cannot start here is one line."""
    from typer.testing import CliRunner

    from cnn_edge.cli import app
    from conftest import assert_one_line_error
    from cnn_edge.runtime.providers import available

    def run(*args):
        return CliRunner().invoke(app, ["diagnose", str(tiny_onnx), "--samples", "64", "--data-dir", str(tiny_mnist),
                                        *args, "--json"])

    same = run("--provider", "cpu", "--against-provider", "cpu")
    assert same.exit_code == 0, same.output
    report = json.loads(same.stdout)
    assert report["mode"] == "providers" and report["first_diverging_layer"] is None
    assert len(report["layers"]) >= 5 and all(r["max_abs_diff"] == 0 for r in report["layers"])
    assert_one_line_error(run("--provider", "cpu"), 2, "--against-provider")
    if "cuda" not in available():
        assert_one_line_error(run("--provider", "cuda", "--against-provider", "cpu"), 2, "cuda")
