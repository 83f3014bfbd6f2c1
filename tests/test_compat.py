"""IR version and opset read from the ONNX header, checked against runtime limits."""
from __future__ import annotations

import pytest

from cnn_edge import contract as C
from cnn_edge.runtime.compat import TARGETS, check_targets, model_versions
from cnn_edge.errors import ConfigError, ModelFileError

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
    assert released == {"node": True, "web": True, "ort-1.17": False, "ort-1.14": False}


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="'tflite'"):
        check_targets(MODEL, ("tflite",))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xff\xff")
    with pytest.raises(ModelFileError, match="junk.onnx"):
        model_versions(junk)
