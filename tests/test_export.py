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
    assert props[C.META_PREPROCESSING] == C.PREPROCESSING_V2  # new exports; the committed release says mnist-v1
    assert (props[C.META_ARCHITECTURE], props[C.META_LAYERS]) == ("spec", "conv32-conv32-pool-conv64-conv64-pool-fc256-fc10")
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


@pytest.mark.slow
def test_batch_normalization_is_folded_and_dropout_gone(tmp_path):
    """Batch normalization after a conv or an fc is folded into it in the exported graph (by the
    exporter's optimizer, docs/export-validation.md); one after a ReLU has nothing to fold into and
    stays. Dropout, a training-only layer, leaves nothing. The graph still equals PyTorch."""
    import torch

    from cnn_edge.training.checkpoint import save_checkpoint
    from cnn_edge.training.model import ExportWrapper, MnistNet, ModelConfig

    torch.manual_seed(0)
    net = MnistNet(ModelConfig.of("conv8-bn-relu-pool-conv8g2-relu-bn-drop0.3-gap-fc16-bn-relu-drop0.5-fc10"))
    with torch.no_grad():  # statistics and affine terms far from the initial ones: folding them must show
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-2, 2), m.running_var.uniform_(0.2, 3)
                m.weight.uniform_(0.5, 2), m.bias.uniform_(-1, 1)
    save_checkpoint(tmp_path / "m.safetensors", net.eval(), {})
    export_onnx(tmp_path / "m.safetensors", tmp_path / "m.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    made_by = {o: n.op_type for n in model.graph.node for o in n.output}
    bns = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert [made_by.get(n.input[0]) for n in bns] == ["Relu"]  # the one after conv2's ReLU, and only it
    assert [n.op_type for n in model.graph.node].count("Conv") == 2 and "Dropout" not in made_by.values()
    props = {p.key: p.value for p in model.metadata_props}
    assert props[C.META_LAYERS] == net.config.layers and props[C.META_ARCHITECTURE] == net.config.arch
    x = (np.random.default_rng(1).random((5, 1, 28, 28)) * 255).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {C.INPUT_NAME: x})
    with torch.no_grad():
        want = [t.numpy() for t in ExportWrapper(net.eval())(torch.from_numpy(x))]
    assert max(float(np.abs(g - w).max()) for g, w in zip(got, want)) <= C.FP32_TOLERANCE
