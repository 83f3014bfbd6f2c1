import json
import re

import onnx
import pytest

from cnn_edge.core import contract as C
from cnn_edge.core.artifacts import RELEASE_DIR, fp32_file
from cnn_edge.core.constants import SPEC_ARCH
from cnn_edge.training.data import load_mnist
from cnn_edge.core.errors import ConfigError, ModelFileError
from cnn_edge.release.quantize import QuantConfig
from cnn_edge.release.quantize import quantize_model
from cnn_edge.runtime.compat import is_int8_model
from cnn_edge.release.validate import validate_model
from cnn_edge.runtime.onnx_model import open_model
from conftest import REPO, real_mnist

QDQ_SMALL = QuantConfig(calibration=200, guard_size=128, speed_seconds=0.05)  # the release's defaults: portable QDQ


@pytest.fixture(scope="module")
def int8_model(tiny_quant):
    assert tiny_quant.config == QDQ_SMALL  # conftest quantizes the tiny model so
    return tiny_quant


def ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_static_qdq_puts_int8_around_conv_and_gemm(int8_model):
    types = ops(int8_model.int8_model)
    assert types.count("QuantizeLinear") >= 6 and types.count("DequantizeLinear") >= 6
    assert types.count("Conv") == 4 and types.count("Gemm") == 2  # float ops fed by DequantizeLinear
    weights = [i for i in onnx.load(str(int8_model.int8_model)).graph.initializer if i.name.endswith("weight_quantized")]
    assert weights and all(w.data_type == onnx.TensorProto.INT8 for w in weights)


def test_int8_stays_close_to_fp32(int8_model):
    assert int8_model.test.top1_agreement >= 0.97
    assert abs(int8_model.test.drop_pp) <= 3
    assert int8_model.guard.drop_pp <= QDQ_SMALL.max_drop


def test_default_release_is_standard_domain_uint8_activations_int8_weights(int8_model):
    """The release's form (--target ort): QDQ in the standard domain, uint8 activations (asymmetric),
    int8 weights with zero points of 0, biases in float."""
    proto = onnx.load(str(int8_model.int8_model))
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx"}  # no declared-but-unused contrib domains
    zero_points = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer if i.name.endswith("zero_point")}
    activation = [z for n, z in zero_points.items() if z.dtype.name == "uint8"]
    assert activation and any(z.any() for z in activation)  # asymmetric: zero points where the range puts them
    assert all(z.dtype.name in ("uint8", "int8") for z in zero_points.values())
    assert all(not z.any() for z in zero_points.values() if z.dtype.name == "int8")  # int8 weights: symmetric
    assert not [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT32]  # biases stay float


def test_metadata_carries_fp32_contract_and_settings(int8_model, tiny_onnx):
    props = {p.key: p.value for p in onnx.load(str(int8_model.int8_model)).metadata_props}
    fp32 = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    assert props[C.META_CHECKPOINT_SHA256] == fp32[C.META_CHECKPOINT_SHA256]
    assert json.loads(props[C.META_QUANTIZATION])["format"] == "qdq"
    assert props[C.META_INT8_FORMAT].startswith("QDQ")
    assert float(props[C.META_TEST_ACCURACY]) == pytest.approx(int8_model.test.int8_accuracy, abs=1e-6)
    assert "speed_seconds" not in json.loads(props[C.META_QUANTIZATION])  # how long it was timed: not the model's


def test_qoperator_option_gives_qlinear_ops(tiny_onnx, tiny_data, tmp_path):
    cfg = QuantConfig(calibration=100, guard_size=128, format="qoperator", per_channel=False, activation_type="uint8",
                      speed_seconds=0)
    res = quantize_model(tiny_onnx, tmp_path / "q.onnx", cfg, tiny_data.train, tiny_data.test)
    assert "QLinearConv" in ops(res.int8_model) and "QGemm" in ops(res.int8_model)
    assert res.layer_sqnr_db  # measured on the QDQ twin
    # speed_seconds 0: not timed, and the report says so rather than inventing figures.
    assert res.fp32_speed is None and res.int8_speed is None and res.throughput_ratio is None


def test_dynamic_quantization(tiny_dynamic, tiny_onnx, tiny_data):
    assert is_int8_model(tiny_dynamic)
    assert {"ConvInteger", "MatMulInteger"} & set(ops(tiny_dynamic))
    fp32, int8 = (open_model(m).run_batched(tiny_data.test.images)[0].argmax(1) for m in (tiny_onnx, tiny_dynamic))
    assert (fp32 == int8).mean() >= 0.97


@pytest.mark.slow
@pytest.mark.skipif(real_mnist() is None, reason="set CNN_EDGE_DATA to the real MNIST folder")
def test_guard_keeps_nodes_in_float_and_says_why(tmp_path):
    # The released model on real digits (the tiny synthetic set is too easy to lose anything).
    # One calibration image, drawn from images dimmed to an eighth of their ink (the guard's own
    # images untouched), gives ranges far too narrow: int8 loses accuracy, and the guard, with an
    # impossible limit of 0 points, must keep nodes in float until nothing is lost.
    from cnn_edge.training.data import MnistSplit, split_indices

    data = load_mnist(real_mnist())
    calibration_pool, _ = split_indices(len(data.train), 1000)
    dimmed = data.train.images.copy()
    dimmed[calibration_pool] //= 8
    train = MnistSplit(dimmed, data.train.labels, data.train.source)
    res = quantize_model(REPO / RELEASE_DIR / fp32_file(SPEC_ARCH), tmp_path / "g.onnx",
                         QuantConfig(calibration=1, guard_size=1000, max_drop=0, speed_seconds=0), train, data.test)
    assert res.guard.attempts[0].drop_pp > 0
    assert res.nodes_in_float and res.guard.drop_pp <= 0
    # Each node kept in float comes with the accuracy its quantization cost, in points.
    assert all(re.search(r"\d\.\d{3} points", why) for why in res.nodes_in_float.values())


def test_report_has_sizes_speed_and_layer_errors(int8_model, tiny_onnx):
    assert int8_model.fp32_bytes == tiny_onnx.stat().st_size and int8_model.size_ratio < 0.3
    assert int8_model.int8_speed.batch_256.images_per_second > 0 and int8_model.throughput_ratio > 0
    assert C.OUTPUT_LOGITS in int8_model.layer_sqnr_db and int8_model.layer_sqnr_db[C.OUTPUT_LOGITS] > 10


def test_validate_applies_int8_tolerances(int8_model, tiny_run, tiny_data):
    report = validate_model(int8_model.int8_model, tiny_data.test, checkpoint=tiny_run)
    assert report.parity.kind == "int8" and report.parity.tolerance is None
    assert report.parity.max_accuracy_drop_pp == C.INT8_MAX_ACCURACY_DROP_PP


def test_already_quantized_model_is_refused(int8_model, tiny_data, tmp_path):
    with pytest.raises(ModelFileError, match=re.escape(str(int8_model.int8_model))):
        quantize_model(int8_model.int8_model, tmp_path / "again.onnx", QDQ_SMALL, tiny_data.train, tiny_data.test)
    assert not (tmp_path / "again.onnx").exists()


def test_calibration_larger_than_the_data(tiny_onnx, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="--calibration 100000.* 512 "):  # the value, and how many there are
        quantize_model(tiny_onnx, tmp_path / "q.onnx", QuantConfig(calibration=100000, guard_size=128), tiny_data.train,
                       tiny_data.test)
    assert not (tmp_path / "q.onnx").exists()


def test_unknown_method_names_the_choices():
    with pytest.raises(ConfigError, match="'fast'.*minmax"):
        QuantConfig(method="fast")


def test_negative_speed_seconds_is_named():
    with pytest.raises(ConfigError, match="--speed-seconds .*got -1"):
        QuantConfig(speed_seconds=-1)


def test_a_guard_larger_than_the_data_names_guard_size(tiny_onnx, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="--guard-size 5000 .* 640 .*e.g. 64"):  # not --val-size: quantize has none
        quantize_model(tiny_onnx, tmp_path / "q.onnx", QuantConfig(speed_seconds=0), tiny_data.train, tiny_data.test)
    assert not (tmp_path / "q.onnx").exists()


def test_a_layer_kept_in_float_is_named_with_its_sqnr(tiny_onnx, tiny_data, tmp_path, monkeypatch):
    """The guard's report names each layer it kept in float, with what quantizing it cost and the
    SQNR its output had when everything was quantized. (The tiny model quantizes cleanly, so the
    criterion is made to want one layer in float.)"""
    from cnn_edge.release import quantize as Q

    monkeypatch.setattr(Q._Attempts, "holds", lambda self, step: len(step.excluded) >= 1)
    r = quantize_model(tiny_onnx, tmp_path / "q.onnx", QuantConfig(calibration=64, guard_size=128, speed_seconds=0),
                       tiny_data.train, tiny_data.test)
    assert len(r.nodes_in_float) == 1
    (reason,) = r.nodes_in_float.values()
    assert "top-1 agreement" in reason and "SQNR quantized:" in reason and reason.endswith(" dB")
