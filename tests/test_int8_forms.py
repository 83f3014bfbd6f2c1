"""The int8 forms: the release's runs integer kernels on ONNX Runtime's CPU provider (read from the
graph ONNX Runtime optimized), the TensorRT form is made on request, and each file says what it is
made for, which validate --target reads."""
from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from cnn_edge.cli import app
from cnn_edge.core import contract as C
from cnn_edge.core.artifacts import RELEASE_DIR
from cnn_edge.core.errors import ConfigError
from cnn_edge.release.quantize import INT8_TARGETS, QuantConfig, quantize_model
from cnn_edge.runtime.compat import check_targets
from conftest import REPO

RELEASED_INT8 = REPO / RELEASE_DIR / "mnist_cnn.int8.onnx"
LAYER_OPS = {"Conv", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul"}  # float kernels of a weighted layer
INTEGER_OPS = {"QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


def optimized_ops(model, tmp_path) -> list[str]:
    """The op types of the graph ONNX Runtime's CPU provider runs, as it writes it out."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]


def kept_in_float(model) -> list[str]:
    props = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    return json.loads(props[C.META_QUANTIZATION])["nodes_in_float"]


def weighted_layers(model) -> int:
    return sum(n.op_type in LAYER_OPS for n in onnx.load(str(model)).graph.node)


def test_the_released_int8_model_runs_every_layer_on_integer_kernels(tmp_path):
    """Every convolution and matrix product of the release runs as an integer operator in ONNX
    Runtime's optimized graph (none was kept in float by the guard), not dequantize-then-float."""
    assert kept_in_float(RELEASED_INT8) == []
    ops = optimized_ops(RELEASED_INT8, tmp_path)
    assert not LAYER_OPS & set(ops), ops
    assert sum(op in INTEGER_OPS for op in ops) == weighted_layers(REPO / RELEASE_DIR / "mnist_cnn.onnx") == 6


def test_the_check_sees_float_layers(tmp_path):
    """The same reading of the fp32 model finds its float layers: the test above can fail."""
    assert LAYER_OPS & set(optimized_ops(REPO / RELEASE_DIR / "mnist_cnn.onnx", tmp_path))


def test_the_release_says_what_it_is_made_for():
    props = {p.key: p.value for p in onnx.load(str(RELEASED_INT8), load_external_data=False).metadata_props}
    assert props[C.META_INT8_TARGETS].split(",") == list(INT8_TARGETS["ort"])
    by_target = {c.target: c for c in check_targets(RELEASED_INT8)}
    assert all(by_target[t].ok for t in INT8_TARGETS["ort"])
    assert not by_target["tensorrt"].ok and "--target tensorrt" in by_target["tensorrt"].message


@pytest.fixture(scope="module")
def tensorrt_form(tiny_onnx, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "model.int8.onnx"
    cfg = QuantConfig.for_target("tensorrt", calibration=200, guard_size=128, speed_seconds=0)
    return quantize_model(tiny_onnx, out, cfg, tiny_data.train, tiny_data.test)


def test_the_tensorrt_form_on_request(tensorrt_form, tiny_int8):
    """int8 activations with zero points of 0 and float biases: TensorRT loads it; its metadata says
    so; validate --target ort on it names the form that is fastest there."""
    c = tensorrt_form.config
    assert (c.target, c.activation_type, c.symmetric, c.quantize_bias) == ("tensorrt", "int8", True, False)
    by_target = {x.target: x for x in check_targets(tensorrt_form.int8_model)}
    assert by_target["tensorrt"].ok and by_target["ort"].ok
    assert "made for tensorrt" in by_target["ort"].message and "--target ort" in by_target["ort"].message
    assert not {x.target: x for x in check_targets(tiny_int8)}["tensorrt"].ok  # the default form is not TensorRT's


def test_quantize_target_on_the_command_line(tiny_onnx, tiny_mnist, tmp_path):
    out = tmp_path / "trt.onnx"
    result = CliRunner().invoke(app, ["quantize", str(tiny_onnx), "-o", str(out), "--target", "tensorrt", "--calibration",
                                      "100", "--guard-size", "128", "--speed-seconds", "0", "--data-dir", str(tiny_mnist),
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config"]["target"] == "tensorrt"
    bad = CliRunner().invoke(app, ["quantize", str(tiny_onnx), "-o", str(tmp_path / "x.onnx"), "--target", "tensorrt",
                                   "--activation-type", "uint8", "--data-dir", str(tiny_mnist)])
    assert bad.exit_code == 2 and "--target tensorrt" in bad.stderr and not (tmp_path / "x.onnx").exists()


def test_pipeline_names_a_bad_int8_target(tiny_mnist, tmp_path):
    from conftest import assert_one_line_error

    result = CliRunner().invoke(app, ["pipeline", "--int8-target", "jetson", "--data-dir", str(tiny_mnist), "--run-dir",
                                      str(tmp_path / "run"), "-q"])
    assert_one_line_error(result, 2, "'jetson'")
    assert not (tmp_path / "run").exists()


def test_targets_are_checked():
    with pytest.raises(ConfigError, match="'jetson'"):
        QuantConfig(target="jetson")
    with pytest.raises(ConfigError, match="tensorrt"):
        QuantConfig(target="tensorrt")  # uint8 activations are not TensorRT's form
    assert QuantConfig.for_target("tensorrt").made_for == ("tensorrt",)
