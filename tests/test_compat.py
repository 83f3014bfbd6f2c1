"""IR version, opsets and operators read from an ONNX file, checked against each runtime's limits."""
from __future__ import annotations

import pytest

from cnn_edge.core import contract as C
from cnn_edge.runtime.compat import TARGETS, check_targets, model_versions
from cnn_edge.core.errors import ConfigError, ModelFileError

from conftest import REPO

MODEL = REPO / "exports" / "mnist_cnn.onnx"


def test_reads_the_released_header():
    ir, opsets = model_versions(MODEL)
    assert (ir, opsets["ai.onnx"]) == (10, C.OPSET)


def test_warns_for_runtimes_that_would_refuse_it(tmp_path):
    onnx = pytest.importorskip("onnx")
    m = onnx.load(MODEL)
    m.ir_version = 14
    m.opset_import[0].version = 27
    newer = tmp_path / "newer.onnx"
    onnx.save(m, newer)
    assert model_versions(newer)[0] == 14
    by_target = {c.target: c for c in check_targets(newer, tuple(TARGETS))}
    assert not by_target["node"].ok and "14" in by_target["node"].message and "13" in by_target["node"].message
    assert "opset 27 > 26" in by_target["web"].message
    released = {c.target: c.ok for c in check_targets(MODEL, tuple(TARGETS))}
    assert released == {"ort": True, "node": True, "web": True, "openvino": True, "tensorrt": True, "ort-1.17": False,
                        "ort-1.14": False}


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="'tflite'"):
        check_targets(MODEL, ("tflite",))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xff\xff")
    with pytest.raises(ModelFileError, match="junk.onnx"):
        model_versions(junk)


def _quantized(tiny_onnx, tiny_data, path, **settings):
    from cnn_edge.release.quantize import QuantConfig
    from cnn_edge.release.quantize import quantize_model

    cfg = QuantConfig(calibration=64, guard_size=128, max_drop=100.0, **settings)
    return quantize_model(tiny_onnx, path, cfg, tiny_data.train, tiny_data.test, speed_seconds=0.01).int8_model


@pytest.mark.parametrize("settings, refused_by, names", [
    ("tiny_int8", set(), ()),  # the release's portable QDQ (conftest's fixture)
    (dict(format="qoperator", activation_type="uint8"), {"openvino", "tensorrt"}, ("com.microsoft.QGemm", "QLinearConv")),
    (dict(activation_type="uint8"), {"tensorrt"}, ("uint8",)),
    (dict(quantize_bias=True), {"tensorrt"}, ("int32",)),
    ("tiny_dynamic", {"tensorrt"}, ("ConvInteger", "MatMulInteger")),  # dynamic, uint8 weights (conftest's fixture)
])
def test_operators_are_checked_against_each_runtime(request, tiny_onnx, tiny_data, tmp_path, settings, refused_by, names):
    pytest.importorskip("onnx")
    if isinstance(settings, str):  # a model conftest makes once for the session
        model = request.getfixturevalue(settings)
    else:
        model = _quantized(tiny_onnx, tiny_data, tmp_path / "q.onnx", **settings)
    by_target = {c.target: c for c in check_targets(model, ("ort", "node", "web", "openvino", "tensorrt"))}
    assert {t for t, c in by_target.items() if not c.ok} == refused_by
    for target in refused_by:
        assert any(n in by_target[target].message for n in names)
