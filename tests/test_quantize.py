import json

import onnx
import pytest

from cnn_edge.errors import ConfigError, ModelFileError
from cnn_edge.quantize import QuantConfig, is_quantized, quant_report, quantize_model
from cnn_edge.validate import validate_model
from conftest import REPO, real_mnist

QDQ_SMALL = QuantConfig(calibration=200, guard_size=128, format="qdq", per_channel=True)


@pytest.fixture(scope="module")
def int8_model(tiny_onnx, tiny_mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    return quantize_model(tiny_onnx, out, QDQ_SMALL, str(tiny_mnist))


def ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_static_qdq_puts_int8_around_conv_and_gemm(int8_model):
    types = ops(int8_model.output)
    assert types.count("QuantizeLinear") >= 6 and types.count("DequantizeLinear") >= 6
    assert types.count("Conv") == 4 and types.count("Gemm") == 2  # float ops fed by DequantizeLinear
    weights = [i for i in onnx.load(str(int8_model.output)).graph.initializer if i.name.endswith("weight_quantized")]
    assert weights and all(w.data_type == onnx.TensorProto.INT8 for w in weights)


def test_int8_stays_close_to_fp32(int8_model):
    assert int8_model.test_top1_agreement >= 0.97
    assert abs(int8_model.fp32_test_accuracy - int8_model.int8_test_accuracy) <= 0.03
    assert int8_model.drop_pp <= QDQ_SMALL.max_drop


def test_metadata_carries_fp32_contract_and_settings(int8_model, tiny_onnx):
    props = {p.key: p.value for p in onnx.load(str(int8_model.output)).metadata_props}
    fp32 = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    assert props["cnn_edge.checkpoint_sha256"] == fp32["cnn_edge.checkpoint_sha256"]
    assert json.loads(props["cnn_edge.quantization"])["format"] == "qdq"
    assert float(props["cnn_edge.test_accuracy"]) == pytest.approx(int8_model.int8_test_accuracy, abs=1e-6)


def test_default_qoperator_format_gives_qlinear_ops(tiny_onnx, tiny_mnist, tmp_path):
    # The default format.
    res = quantize_model(tiny_onnx, tmp_path / "q.onnx", QuantConfig(calibration=100, guard_size=128), str(tiny_mnist))
    assert "QLinearConv" in ops(res.output) and "QGemm" in ops(res.output)
    assert res.layer_sqnr_db  # measured on the QDQ twin


def test_dynamic_quantization(tiny_onnx, tiny_mnist, tmp_path):
    res = quantize_model(tiny_onnx, tmp_path / "d.onnx", QuantConfig(dynamic=True, guard_size=128, weight_type="uint8"),
                         str(tiny_mnist))
    assert is_quantized(onnx.load(str(res.output)))
    assert res.test_top1_agreement >= 0.97


@pytest.mark.slow
@pytest.mark.skipif(real_mnist() is None, reason="set CNN_EDGE_DATA to the real MNIST folder")
def test_guard_keeps_nodes_in_float_and_says_why(tmp_path):
    # The released model on real digits (the tiny synthetic set is too easy to lose anything).
    # One calibration image gives ranges far too narrow: int8 loses accuracy, and the guard,
    # with an impossible limit of 0 points, must keep nodes in float until nothing is lost.
    res = quantize_model(REPO / "exports" / "mnist_cnn.onnx", tmp_path / "g.onnx",
                         QuantConfig(calibration=1, guard_size=1000, max_drop=0), str(real_mnist()))
    assert res.attempts[0].drop_pp > 0
    assert res.nodes_in_float and res.drop_pp <= 0
    assert all("cost" in why for why in res.nodes_in_float.values())


def test_report_has_sizes_speed_and_layer_errors(int8_model, tiny_onnx):
    r = quant_report(tiny_onnx, int8_model, speed_seconds=0.2)
    assert r["size_ratio"] < 0.3
    assert r["speed"]["int8"]["batch_256"]["images_per_second"] > 0
    assert "logits" in r["layer_sqnr_db"] and r["layer_sqnr_db"]["logits"] > 10


def test_validate_applies_int8_tolerances(int8_model, tiny_run, tiny_mnist):
    report = validate_model(int8_model.output, tiny_run, str(tiny_mnist))
    assert report.parity.kind == "int8" and report.parity.tolerance is None
    assert report.parity.max_accuracy_drop_pp == 0.1


def test_already_quantized_model_is_refused(int8_model, tiny_mnist, tmp_path):
    with pytest.raises(ModelFileError, match="already quantized"):
        quantize_model(int8_model.output, tmp_path / "again.onnx", QDQ_SMALL, str(tiny_mnist))
    assert not (tmp_path / "again.onnx").exists()


def test_calibration_larger_than_the_data(tiny_onnx, tiny_mnist, tmp_path):
    with pytest.raises(ConfigError, match="--calibration 100000 is larger than the 512"):
        quantize_model(tiny_onnx, tmp_path / "q.onnx", QuantConfig(calibration=100000, guard_size=128), str(tiny_mnist))
    assert not (tmp_path / "q.onnx").exists()


def test_unknown_method_names_the_choices():
    with pytest.raises(ConfigError, match="unexpected method 'fast'.*minmax"):
        QuantConfig(method="fast").check()
