import json
import os
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cnn_edge.core import contract as C
from cnn_edge.core.errors import CheckpointError, OutputPathError
from cnn_edge.release.export import export_onnx
from cnn_edge.core.files import sha256_file


def test_one_self_contained_file_that_passes_the_checker(tiny_onnx):
    assert sorted(p.name for p in tiny_onnx.parent.iterdir()) == ["model.onnx"]  # no .data beside it
    model = onnx.load(str(tiny_onnx), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == C.OPSET


def test_contract_in_graph_and_metadata(tiny_onnx, tiny_run):
    model = onnx.load(str(tiny_onnx))
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == C.INPUT_NAME and dims == list(C.INPUT_SHAPE) == ["batch", 1, 28, 28]
    assert [o.name for o in model.graph.output] == list(C.OUTPUT_NAMES)
    props = {p.key: p.value for p in model.metadata_props}
    assert props[C.META_CHECKPOINT_SHA256] == sha256_file(tiny_run)
    assert json.loads(props[C.META_CLASS_LABELS]) == [str(i) for i in range(10)]
    assert json.loads(props[C.META_INPUT])["range"] == list(C.INPUT_RANGE) == [0.0, 255.0]
    assert props[C.META_PREPROCESSING] == C.PREPROCESSING
    assert float(props[C.META_TEST_ACCURACY]) > 0.5
    assert "torch" in json.loads(props[C.META_TOOL_VERSIONS])
    assert model.graph.node[-1].op_type == "Softmax"


def test_dynamic_batch_runs_at_1_2_and_7(tiny_onnx):
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    for b in (1, 2, 7):
        probs, logits = sess.run(list(C.OUTPUT_NAMES), {C.INPUT_NAME: np.zeros((b, *C.INPUT_SHAPE[1:]), np.float32)})
        assert probs.shape == logits.shape == (b, 10)


def test_unwritable_output_leaves_nothing(tiny_run, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        with pytest.raises(OutputPathError, match="locked"):
            export_onnx(tiny_run, locked / "m.onnx")
    finally:
        os.chmod(locked, 0o700)


def test_output_that_is_a_folder(tiny_run, tmp_path):
    with pytest.raises(OutputPathError, match=re.escape(str(tmp_path))):
        export_onnx(tiny_run, tmp_path)


def test_bad_checkpoint_keeps_existing_output(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    with pytest.raises(CheckpointError):
        export_onnx(tmp_path / "missing.safetensors", out)
    assert out.read_bytes() == b"precious"


def test_output_under_a_file_is_refused(tiny_run, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputPathError, match="file.txt"):
        export_onnx(tiny_run, blocker / "m.onnx")
    assert blocker.read_text() == "x"
