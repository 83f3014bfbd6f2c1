"""Any architecture through every stage: a layer string or a file goes through train, export (batch
normalization folded, dropout gone), validate with parity, quantize with its guard, test vectors,
release, diagnose, requantize, compare, and torch-free predict; the checkpoint alone rebuilds it.

Three small networks of the grammar cover batch normalization after a conv and after an fc (folded)
and after a ReLU or a pooling (kept), stride, groups, global and plain average pooling, dropout and
an explicit ReLU. Each runs one pipeline on the tiny synthetic set (module-scoped), then the tests
read what it released.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from cnn_edge.cli import app
from cnn_edge.core import contract as C
from cnn_edge.core.arch import resolve_arch, total_params
from conftest import assert_one_line_error
from test_embed import NODE_DIR, needs_chromium, needs_node, serve

runner = CliRunner()

# name in the tests -> (what --arch gets, its canonical layer string)
ARCHS = {
    # bn after each conv and after the fc (all folded), stride, groups, global average pooling (of a
    # 1x1 map: the synthetic digits are told apart by where they are, which gap alone would average away)
    "folded": ("conv8-bn-pool-conv16s2g2-bn-conv32k7p0-bn-gap-fc32-bn-fc10",) * 2,
    # explicit ReLU (so none implied), a 5x5 stride-2 conv, average pooling, bn after an fc, dropout
    "pooled": ("conv8k5s2-relu-avgpool-fc32-bn-drop0.25-fc10",) * 2,
    # a TOML file of tables: bn after a ReLU and after a pooling (nothing to fold into), avgpool 3 stride 1
    "file": ("tiny-bn.toml", "conv4-relu-bn-pool-avgpool3s1-drop0.1-bn-fc10"),
}
TINY_BN_TOML = """name = "tiny-bn"
layers = [
  {type = "conv", filters = 4},
  "relu",
  {type = "batchnorm"},
  {type = "maxpool"},
  {type = "avgpool", kernel = 3, stride = 1},
  {type = "dropout", p = 0.1},
  "bn",
  {type = "dense", units = 10},
]
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@dataclass
class Released:
    key: str
    name: str  # the architecture's name: the released files are named after it
    layers: str
    out: Path  # the release folder
    summary: dict  # its pipeline.json

    def path(self, suffix: str) -> Path:
        return self.out / f"mnist_{self.name.replace('-', '_')}.{suffix}"


@pytest.fixture(scope="module", params=list(ARCHS))
def released(request, tiny_mnist, tmp_path_factory) -> Released:
    arch, layers = ARCHS[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    if arch.endswith(".toml"):
        (tmp / arch).write_text(TINY_BN_TOML)
        arch = tmp / arch
    result = invoke("pipeline", "--arch", arch, "--data-dir", tiny_mnist, "--run-dir", tmp / "run", "--out-dir",
                    tmp / "out", "--epochs", "2", "--batch-size", "32", "--val-size", "64", "--speed-seconds", "0",
                    "-q", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    return Released(request.param, resolve_arch(str(arch)).name, layers, tmp / "out", summary)


@pytest.mark.slow
def test_the_release_holds_every_file_named_after_the_architecture(released):
    s = released.summary
    assert (s["arch"], s["layers"], s["params"]) == (released.name, released.layers, total_params(released.layers))
    if released.key == "file":  # a file's name names the files
        assert (released.name, released.path("onnx").name) == ("tiny-bn", "mnist_tiny_bn.onnx")
    else:  # a layer string gets custom-<8 hex digits>
        assert released.name.startswith("custom-") and released.path("onnx").name.startswith("mnist_custom_")
    stem = released.path("onnx").name.split(".")[0]
    assert sorted(p.name for p in released.out.iterdir()) == sorted(
        f"{stem}.{suffix}" for suffix in ("onnx", "int8.onnx", "safetensors", "json", "test_vectors.json",
                                          "pipeline.json", "MODEL_CARD.md"))
    assert s["validation"]["passed"] and s["validation"]["parity"]["top1_agreement"] == 1.0  # fp32 parity
    assert s["quantization"]["guard"]["samples"] > 0 and s["int8_not_released"] is None  # the int8 guard ran
    assert s["int8_validation"]["passed"]
    vectors = json.loads(released.path("test_vectors.json").read_text())
    assert len(vectors["vectors"]) == 40 and vectors["tolerance"]["fp32"]["max_abs_diff_probabilities"] == C.FP32_TOLERANCE
    card = released.path("MODEL_CARD.md").read_text()
    assert f"`{released.layers}`" in card and f"cnn-edge info --arch {released.layers}" in card
    assert f"--arch {released.layers} " in s["reproduce"] and s["reproduce"] in card


@pytest.mark.slow
def test_the_graph_carries_the_layers_folds_batch_normalization_and_drops_dropout(released):
    model = onnx.load(str(released.path("onnx")))
    props = {p.key: p.value for p in model.metadata_props}
    assert (props[C.META_ARCHITECTURE], props[C.META_LAYERS]) == (released.name, released.layers)
    made_by = {o: n.op_type for n in model.graph.node for o in n.output}
    ops = [n.op_type for n in model.graph.node]
    after = [made_by.get(n.input[0]) for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert after == {"folded": [], "pooled": [], "file": ["Relu", "AveragePool"]}[released.key]
    assert "Dropout" not in ops
    expected = {"folded": {"ReduceMean", "MaxPool"}, "pooled": {"AveragePool"}, "file": {"AveragePool", "MaxPool"}}
    assert expected[released.key] <= set(ops)
    int8 = onnx.load(str(released.path("int8.onnx")))
    assert {p.key: p.value for p in int8.metadata_props}[C.META_LAYERS] == released.layers


@pytest.mark.slow
def test_the_checkpoint_alone_rebuilds_the_network_and_predict_agrees(released, tiny_data):
    """load_checkpoint needs only the released .safetensors and its .json; the rebuilt network
    computes what the ONNX model does, and the torch-free Predictor on the fp32 and int8 models
    gives PyTorch's top-1."""
    import torch

    from cnn_edge.runtime.predictor import Predictor
    from cnn_edge.training.checkpoint import load_checkpoint
    from cnn_edge.training.model import ExportWrapper

    net, meta = load_checkpoint(released.path("safetensors"))
    assert meta["model"] == {"arch": released.name, "layers": released.layers}
    images = tiny_data.test.images[:16]
    with torch.no_grad():
        probs, logits = (t.numpy() for t in ExportWrapper(net)(torch.from_numpy(images.astype(np.float32))[:, None]))
    fp32 = Predictor(released.path("onnx"), provider="cpu")
    got = fp32.probabilities(images)
    assert np.abs(got - probs).max() <= C.FP32_TOLERANCE
    want = logits.argmax(1)
    assert len(set(want.tolist())) > 3  # a network that learnt: the check below could fail
    for model in (fp32, Predictor(released.path("int8.onnx"), provider="cpu")):
        assert [p.index for p in model.predict_prepared(images)] == want.tolist()


@pytest.mark.slow
def test_diagnose_maps_every_layer(released, tiny_data):
    """PyTorch against ONNX layer by layer: a conv or fc with its folded batch normalization is
    compared after it (conv1+batchnorm1), an unfolded one on its own node; nothing diverges."""
    from cnn_edge.release.diagnose import diagnose

    report = diagnose(released.path("onnx"), tiny_data.test.images[:50], checkpoint=released.path("safetensors"))
    assert report.first_diverging_layer is None and report.top1_disagreement == 0
    layers = [d.layer for d in report.layers]
    expected = {"folded": ["conv1+batchnorm1", "conv2+batchnorm2", "conv3+batchnorm3", "globalavgpool1", "linear1+batchnorm4"],
                "pooled": ["conv1", "avgpool1", "linear1+batchnorm1", "linear2"],
                "file": ["conv1", "batchnorm1", "maxpool1", "avgpool1", "batchnorm2", "linear1"]}[released.key]
    assert [n for n in layers if n in expected] == expected
    int8 = diagnose(released.path("int8.onnx"), tiny_data.test.images[:50], reference_model=released.path("onnx"))
    assert int8.precision == "int8" and len(int8.layers) >= len(expected)


@pytest.mark.slow
def test_requantize_a_custom_release(released, tiny_mnist, tmp_path):
    if released.key != "pooled":  # one architecture is enough; the others' releases are already made, not re-made
        pytest.skip("requantize is checked on the 'pooled' release")
    import shutil

    release = tmp_path / "release"
    shutil.copytree(released.out, release)
    result = invoke("pipeline", "--requantize", "--out-dir", release, "--data-dir", tiny_mnist, "--json",
                    "--speed-seconds", "0")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert (record["arch"], record["layers"]) == (released.name, released.layers) and record["int8_validation"]["passed"]


@pytest.mark.slow
def test_compare_takes_a_layer_string(tiny_mnist, tmp_path):
    layers = "conv4-pool-fc10"
    result = invoke("compare", "--quick", "--archs", layers, "--data-dir", tiny_mnist, "--run-dir", tmp_path,
                    "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["results"]
    name = resolve_arch(layers).name
    assert (row["arch"], row["layers"], row["params"]) == (name, layers, total_params(layers)) and row["parity_passed"]
    assert row["description"] == f"custom network {layers}" and row["notebook_accuracy"] is None
    assert (tmp_path / name / "release" / f"mnist_{name.replace('-', '_')}.int8.onnx").is_file()


@pytest.mark.parametrize("command", ["pipeline", "train", "compare"])
def test_a_bad_architecture_is_refused_before_mnist_is_read(command, tmp_path):
    """One line naming the layer, exit 2, nothing written; the data folder does not exist, so a
    command that read MNIST first would fail on that instead."""
    bad = "conv8-pool-pool-pool-pool-pool-fc10"  # 28 -> 14 -> 7 -> 3 -> 1: the fifth pool has a 1x1 input
    option = {"pipeline": ("--arch", bad, "--run-dir"), "train": ("--arch", bad, "--out"),
              "compare": ("--archs", f"logreg,{bad}", "--run-dir")}[command]
    result = invoke(command, *option, tmp_path / "run", "--data-dir", tmp_path / "no-mnist-here")
    assert_one_line_error(result, 2, "layer 6 pool", "1x1 input is smaller than the 2x2 window")
    assert not (tmp_path / "run").exists()


# The vectors of a custom release in Node.js (the example's own lib.js: loadModel, readVectors,
# checkVectors) and on the demo page in headless Chromium, as the spec release's are (test_embed).
NODE_CHECK = """
const { loadModel, readVectors, checkVectors } = require('./lib');
(async () => {
  const [fp32, int8, vectorsFile] = process.argv.slice(1);
  const vectors = readVectors(vectorsFile);
  const out = {};
  for (const [file, precision] of [[fp32, 'fp32'], [int8, 'int8']]) out[precision] = await checkVectors(await loadModel(file), vectors, precision);
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


@pytest.mark.slow
@needs_node
def test_node_passes_the_custom_release_vectors(released):
    import subprocess

    proc = subprocess.run(["node", "-e", NODE_CHECK, str(released.path("onnx")), str(released.path("int8.onnx")),
                           str(released.path("test_vectors.json"))], cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["fp32"]["pass"] and result["fp32"]["agreement"] == 1, result
    assert result["fp32"]["maxAbsDiff"] <= C.FP32_TOLERANCE and result["int8"]["pass"], result


@pytest.mark.slow
@needs_node
@needs_chromium
def test_the_demo_page_passes_the_custom_release_vectors(released, tmp_path):
    import subprocess

    server, url = serve(released.path("int8.onnx"), released.path("test_vectors.json"))
    try:
        proc = subprocess.run(["node", "browser_check.js", url], cwd=NODE_DIR, capture_output=True, text=True, timeout=240)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = json.loads(proc.stdout)
    # The drawn digits are not asked of a network trained 2 epochs on synthetic digits: the
    # vectors are the proof that the page computes what PyTorch computed.
    assert page["error"] is None and page["ready"] and page["verdict"] == "pass", page
    assert page["errors"] == [] and page["external"] == []
