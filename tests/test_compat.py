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

    cfg = QuantConfig.for_target(settings.pop("target", "ort"), calibration=64, guard_size=128, max_drop=100.0,
                                 speed_seconds=0, **settings)
    return quantize_model(tiny_onnx, path, cfg, tiny_data.train, tiny_data.test).int8_model


@pytest.mark.parametrize("settings, refused_by, names", [
    ("tiny_int8", {"tensorrt"}, ("uint8", "--target tensorrt")),  # the release's form (conftest's fixture)
    (dict(target="tensorrt"), set(), ()),  # TensorRT's form loads everywhere
    (dict(format="qoperator", activation_type="uint8"), {"openvino", "tensorrt"}, ("com.microsoft.QGemm", "QLinearConv")),
    (dict(activation_type="int8", symmetric=True, quantize_bias=True), {"tensorrt"}, ("int32",)),
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


# "Is this model int8?": one answer (compat.is_int8_model), read from the graph's nodes.

INT8_MODEL = REPO / "exports" / "mnist_cnn.int8.onnx"
TRAP = "QuantizeLinear"  # an op type's name where the old scan of the bytes looked for it


def _float_model_named_like_int8(path, *, custom_node: bool = False):
    """A float model of the contract (Flatten, Gemm, Softmax) whose graph, node, tensor names and
    metadata say QuantizeLinear, and, with `custom_node`, a node of that type in a custom domain:
    no quantized node at all."""
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((784, 10), np.float32), f"{TRAP}_weight")
    nodes = [helper.make_node("Flatten", [C.INPUT_NAME], ["flat"], name=f"{TRAP}_flatten"),
             helper.make_node("Gemm", ["flat", weight.name], [C.OUTPUT_LOGITS], name=f"{TRAP}_0"),
             helper.make_node("Softmax", [C.OUTPUT_LOGITS], [C.OUTPUT_PROBABILITIES], name="softmax")]
    opsets = [helper.make_opsetid("", C.OPSET)]
    if custom_node:
        nodes.append(helper.make_node(TRAP, ["flat"], ["unused"], name="custom", domain="example.custom"))
        opsets.append(helper.make_opsetid("example.custom", 1))
    graph = helper.make_graph(
        nodes, f"{TRAP}_graph",
        [helper.make_tensor_value_info(C.INPUT_NAME, TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 10]) for n in C.OUTPUT_NAMES],
        [weight])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    helper.set_model_props(model, {"note": f"no {TRAP} here", TRAP: "DequantizeLinear QLinearConv"})
    onnx.save(model, path)
    return path


def test_is_int8_is_read_from_the_graph_of_the_released_models():
    from cnn_edge.runtime.compat import is_int8_model

    assert is_int8_model(INT8_MODEL) and is_int8_model(INT8_MODEL.read_bytes())
    assert not is_int8_model(MODEL) and not is_int8_model(MODEL.read_bytes())


@pytest.mark.parametrize("custom_node", [False, True])
def test_a_name_or_metadata_saying_quantizelinear_is_no_int8_model(tmp_path, custom_node):
    from cnn_edge.runtime.compat import is_int8_model, read_model_ops

    trap = _float_model_named_like_int8(tmp_path / "trap.onnx", custom_node=custom_node)
    data = trap.read_bytes()
    assert TRAP.encode() in data  # the old substring scan of the bytes said int8 here
    if custom_node:  # a node of that type, but in a custom domain that merely reuses the name
        assert ("example.custom", TRAP) in read_model_ops(trap).ops
    assert not is_int8_model(trap) and not is_int8_model(data)


def test_every_caller_asks_the_one_answer(tmp_path, monkeypatch):
    """The loaded model, auto's provider order, demo's model info and bench's precision column all
    take is_int8_model's answer: int8 for the released int8 model, fp32 for the trap."""
    from cnn_edge.runtime import providers
    from cnn_edge.runtime.demo import model_info
    from cnn_edge.runtime.onnx_model import open_model
    from cnn_edge.tools.bench import BenchConfig, bench_onnx

    trap = _float_model_named_like_int8(tmp_path / "trap.onnx")
    steered = []
    real_create = providers.create_session
    monkeypatch.setattr(providers, "create_session",
                        lambda *a, **kw: steered.append(kw["is_int8"]) or real_create(*a, **kw))
    for path, int8 in ((INT8_MODEL, True), (MODEL, False), (trap, False)):
        steered.clear()
        model = open_model(path, provider="auto")
        assert model.is_int8 is int8 and steered == [int8]
        assert model_info(path)["int8"] is int8
        rows = bench_onnx(path, BenchConfig(batch_sizes=(1,), seconds=0.0, provider="cpu"))
        assert {r.model_precision for r in rows} == {"int8" if int8 else "fp32"}


def _hidden(kind: str, op: str, domain: str = ""):
    """A model whose only `op` node sits where the main graph's node list does not show it: in an
    If's branch, a Loop's body, an If nested in a Loop, or a model-local function."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    hidden = helper.make_node(op, ["x"], ["y"], domain=domain)
    branch = helper.make_graph([hidden], "branch", [], [y])
    plain = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain", [], [y])
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    if_node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=plain)
    functions = []
    if kind == "if":
        nodes = [if_node]
    elif kind in ("loop", "loop-if"):
        inner = helper.make_node(op, ["x"], ["z"], domain=domain) if kind == "loop" else \
            helper.make_node("If", ["c"], ["z"], then_branch=helper.make_graph([helper.make_node(op, ["x"], ["w"], domain=domain)],
                                                                           "t", [], [helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])]),
                             else_branch=helper.make_graph([helper.make_node("Identity", ["x"], ["w"])], "e", [],
                                                           [helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])]))
        body = helper.make_graph(
            [inner, helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])])
        nodes = [helper.make_node("Loop", ["", "c"], ["y"], body=body)]
    else:  # a local function whose body holds the op
        functions = [helper.make_function("local.fn", "Wrap", ["a"], ["b"], [helper.make_node(op, ["a"], ["b"], domain=domain)],
                                          [helper.make_opsetid("", C.OPSET)] + ([helper.make_opsetid(domain, 1)] if domain else []))]
        nodes = [helper.make_node("Wrap", ["x"], ["y"], domain="local.fn")]
    graph = helper.make_graph(nodes, "g", [cond, x], [y])
    opsets = [helper.make_opsetid("", C.OPSET), helper.make_opsetid("local.fn", 1)] + \
        ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=10, functions=functions)


@pytest.mark.parametrize("kind", ["if", "loop", "loop-if", "function"])
def test_operators_inside_subgraphs_and_functions_are_checked(tmp_path, kind):
    """validate --target reads every node a runtime must run: an operator OpenVINO refuses or a
    contrib one TensorRT lacks is found in an If branch, a Loop body, an If inside a Loop and a
    model-local function, as it is in the main graph; the function call itself is no operator."""
    onnx = pytest.importorskip("onnx")
    for op, domain, refused_by, named in (("QLinearConv", "", "openvino", "QLinearConv"),
                                          ("QGemm", "com.microsoft", "tensorrt", "com.microsoft.QGemm")):
        path = tmp_path / f"{kind}-{op}.onnx"
        onnx.save(_hidden(kind, op, domain), path)
        by_target = {c.target: c for c in check_targets(path, ("ort", "openvino", "tensorrt"))}
        assert not by_target[refused_by].ok and named in by_target[refused_by].message, by_target[refused_by].message
        assert by_target["ort"].ok, by_target["ort"].message
        assert "local.fn" not in by_target["ort"].message
    plain = tmp_path / f"{kind}-plain.onnx"
    onnx.save(_hidden(kind, "Relu"), plain)
    assert all(c.ok for c in check_targets(plain, ("ort", "openvino", "tensorrt")))


def test_int8_is_found_inside_a_subgraph(tmp_path):
    from cnn_edge.runtime.compat import is_int8_model

    onnx = pytest.importorskip("onnx")
    path = tmp_path / "q.onnx"
    onnx.save(_hidden("loop-if", "QLinearConv"), path)
    assert is_int8_model(path)
    onnx.save(_hidden("loop-if", "Relu"), path)
    assert not is_int8_model(path)
