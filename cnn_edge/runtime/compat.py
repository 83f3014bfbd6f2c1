"""Will this ONNX file load in a given runtime? IR version, opsets and operators against what
each runtime publishes. Torch-free.

A runtime refuses a model whose IR version or default-domain opset is newer than it knows
("Unsupported model IR version: 10, max supported IR version: 9"), typically an older
onnxruntime-web bundled into a page, and a model with an operator it has no kernel or conversion
rule for ("No conversion rule found for operations: com.microsoft.QGemm", OpenVINO on a QOperator
int8 model). The header and the graph's nodes are read with a tiny protobuf reader, so the check
needs neither onnx nor torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.contract import META_INT8_TARGETS
from ..core.errors import ConfigError, ModelFileError
from .model_file import fields

ONNX_DOMAIN = "ai.onnx"  # the standard domain; a node or opset entry with an empty domain means it too
MS_DOMAIN = "com.microsoft"  # ONNX Runtime's contrib operators (QGemm, QLinearAdd, ...)
# Standard integer operators that some runtimes have no kernel for (the rest of a cnn-edge model,
# Conv, Gemm, Relu, MaxPool, AveragePool, ReduceMean (global average pooling), BatchNormalization
# (one the export could not fold), Reshape, Softmax, Q/DQ, is supported everywhere checked here:
# OpenVINO 2026.4 ran fp32 and int8 models of networks with each of them, as ONNX Runtime does).
INTEGER_OPS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"})
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# What makes a model quantized, in any of ONNX Runtime's forms (QDQ, QOperator, dynamic): a node
# of one of these types in the standard domain or ONNX Runtime's (QGemm; its contrib Q/DQ), never
# in a custom domain that happens to reuse a name.
QUANTIZED_OPS = INTEGER_OPS | set(QDQ_OPS) | {"QGemm"}
QUANTIZED_DOMAINS = frozenset({ONNX_DOMAIN, MS_DOMAIN})
INT8_NAMES = {3: "int8", 2: "uint8", 6: "int32"}  # TensorProto.DataType
INT8 = 3


@dataclass(frozen=True)
class RuntimeLimits:
    name: str
    max_ir_version: int | None  # None: it reads any IR version (and fails per operator instead)
    max_opset: int | None
    source: str  # how we know
    domains: frozenset = frozenset({ONNX_DOMAIN})  # operator domains it runs
    refused_ops: frozenset = frozenset()  # standard operators it has no kernel for
    int8_qdq_only: bool = False  # Q/DQ must be int8 (zero points int8; TensorRT)


_ORT_DOMAINS = frozenset({ONNX_DOMAIN, MS_DOMAIN, "ai.onnx.ml", "com.microsoft.nchwc"})


# The JavaScript runtimes are the versions examples/node/package.json pins; their limits were
# probed by loading models stamped with rising IR versions and opsets. The older releases come
# from ONNX Runtime's published version matrix.
# ONNX Runtime runs every standard operator and its own contrib ones, in Python, Node.js and the
# browser alike (the embedding tests run the int8 models there). OpenVINO's limits were probed with
# OpenVINO 2026.4: it reads any IR version and opset, converts ConvInteger, MatMulInteger and
# DynamicQuantizeLinear (a dynamic-quantization model loads), but not QLinearConv at opset 18
# ("Conversion is failed for: QLinearConv-18"), and refuses contrib ops (QGemm).
# TensorRT's come from onnx-tensorrt's docs/operators.md (TensorRT 10.0: opsets 9 to 20; no
# QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger or DynamicQuantizeLinear; Q/DQ int8 with
# zero point 0); its IR limit is not published there (10 is ONNX 1.16's, the parser's release).
# No TensorRT runs on this machine: that row is the published matrix, not a probe.
TARGETS = {
    "ort": RuntimeLimits("onnxruntime (this install)", None, None, "the installed ONNX Runtime loads the model in validate",
                         _ORT_DOMAINS),
    "node": RuntimeLimits("onnxruntime-node 1.30.0", 13, 26, "probed", _ORT_DOMAINS),
    "web": RuntimeLimits("onnxruntime-web 1.30.0", 13, 26, "same release as node; the browser test loads the model",
                         _ORT_DOMAINS),
    "openvino": RuntimeLimits("OpenVINO 2026.4", None, None, "probed", frozenset({ONNX_DOMAIN}),
                              frozenset({"QLinearConv"})),
    "tensorrt": RuntimeLimits("TensorRT 10", 10, 20, "onnx-tensorrt's operator matrix", frozenset({ONNX_DOMAIN}),
                              INTEGER_OPS, int8_qdq_only=True),
    "ort-1.17": RuntimeLimits("onnxruntime 1.17", 9, 20, "ONNX Runtime version matrix", _ORT_DOMAINS),
    "ort-1.14": RuntimeLimits("onnxruntime 1.14", 8, 18, "ONNX Runtime version matrix", _ORT_DOMAINS),
}
DEFAULT_TARGETS = ("ort", "node", "web", "openvino", "tensorrt")


@dataclass
class Compatibility:
    target: str
    runtime: str
    ok: bool
    message: str


@dataclass(frozen=True)
class ModelOps:
    ir_version: int
    opsets: dict  # opset domain -> version
    ops: frozenset  # (domain, op type) of every node: the main graph's, subgraphs' and local functions'
    qdq_zero_point_types: frozenset  # TensorProto data types of the Q/DQ zero points held as initializers
    made_for: tuple = ()  # an int8 model's metadata: the runtimes its form was made for (cnn_edge.int8_targets)

    @property
    def is_int8(self) -> bool:
        """Whether the graph is quantized: cnn-edge's one answer (see is_int8_model)."""
        return any(op in QUANTIZED_OPS and domain in QUANTIZED_DOMAINS for domain, op in self.ops)


def _text(value) -> str:
    return bytes(value).decode()


# NodeProto: input 1, op type 4, attribute 5, domain 7. AttributeProto: g 6 (one graph), graphs 11.
# GraphProto: node 1, initializer 5. FunctionProto (a model-local function): node 7, name 1, domain 10.
_NODE_INPUT, _NODE_OP, _NODE_ATTRIBUTE, _NODE_DOMAIN = 1, 4, 5, 7
_ATTR_GRAPH, _ATTR_GRAPHS = 6, 11


def _graph_ops(graph, functions=()) -> tuple[set, set]:
    """(domain, op type) of every node a runtime must run and the data types of the Q/DQ zero points
    (third input) among the initializers (GraphProto field 5: TensorProto, data type 2, name 8).

    Every node counts, not only the main graph's: the bodies of If, Loop and Scan (graph
    attributes, however deep) and of the model's local functions run too, and a runtime without
    their operators refuses the model all the same. A call of a local function is not an operator
    of its own: the runtime inlines the function's body, whose nodes are counted instead. Read with
    a work list, not recursion, so no nesting depth can exhaust the stack."""
    local = set()
    pending = []  # (field number of a node in this message, the message's bytes)
    for function in functions:
        entry = {n: v for n, _, v in fields(function) if n in (1, 10)}
        local.add((_text(entry.get(10, b"")) or ONNX_DOMAIN, _text(entry.get(1, b""))))
        pending.append((7, function))
    pending.append((1, graph))
    ops, zero_points, init_types = set(), set(), {}
    while pending:
        node_field, message = pending.pop()
        for number, wire, value in fields(message):
            if number == node_field and wire == 2:
                op, domain, inputs = "", "", []
                for n, w, v in fields(value):
                    if n == _NODE_OP:
                        op = _text(v)
                    elif n == _NODE_DOMAIN:
                        domain = _text(v)
                    elif n == _NODE_INPUT:
                        inputs.append(_text(v))
                    elif n == _NODE_ATTRIBUTE and w == 2:
                        pending.extend((1, g) for a, aw, g in fields(v) if a in (_ATTR_GRAPH, _ATTR_GRAPHS) and aw == 2)
                ops.add((domain or ONNX_DOMAIN, op))
                if op in QDQ_OPS and len(inputs) == 3:
                    zero_points.add(inputs[2])
            elif number == 5 and wire == 2 and node_field == 1:
                tensor = {n: v for n, _, v in fields(value)}
                init_types[_text(tensor.get(8, b""))] = int(tensor.get(2, 0))
    return ops - local, {init_types[z] for z in zero_points if z in init_types}


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror}") from None


def read_model_ops(path: Path) -> ModelOps:
    """IR version, opsets and the graph's operators of an ONNX file (see model_ops)."""
    return model_ops(_read(path), path)


def model_ops(data: bytes, path: Path | str = "the model") -> ModelOps:
    """IR version, opsets (ModelProto fields 1 and 8) and the graph's operators (field 7) of an
    ONNX model's bytes; `path` names it in errors."""
    ir, opsets, graph, functions, made_for = None, {}, b"", [], ()
    try:
        for number, wire, value in fields(data):
            if number == 1 and wire == 0:
                ir = value
            elif number == 8 and wire == 2:
                entry = {n: v for n, _, v in fields(value)}
                opsets[_text(entry.get(1, b"")) or ONNX_DOMAIN] = int(entry.get(2, 1))
            elif number == 7 and wire == 2:
                graph = value
            elif number == 25 and wire == 2:  # functions: FunctionProto, the model's local functions
                functions.append(value)
            elif number == 14 and wire == 2:  # metadata_props: StringStringEntryProto, key 1, value 2
                entry = {n: v for n, _, v in fields(value)}
                if _text(entry.get(1, b"")) == META_INT8_TARGETS:
                    made_for = tuple(_text(entry.get(2, b"")).split(","))
        ops, zero_point_types = _graph_ops(graph, functions)
    except (ModelFileError, UnicodeDecodeError, IndexError, ValueError):
        raise ModelFileError(f"{path} is not an ONNX model (cannot read its header)") from None
    if ir is None:
        raise ModelFileError(f"{path} is not an ONNX model (no IR version)")
    return ModelOps(ir, opsets, frozenset(ops), frozenset(zero_point_types), made_for)


def is_int8_model(model: bytes | str | Path, path: str | Path | None = None) -> bool:
    """Is this model int8? cnn-edge's one answer, for an ONNX file or its bytes: yes when a node of
    its graph (subgraphs and local functions included) is a quantized operator (QUANTIZED_OPS, in the standard or ONNX Runtime's domain).

    Decided from the graph, read with the protobuf reader above: not from the metadata (a foreign
    quantized model has none of ours, and metadata can be copied onto anything), and not from the
    op types' names anywhere in the bytes (a graph, node or tensor named "QuantizeLinear" is no
    quantized node). Cheap: the nodes are read, the weights are skipped over. `path` names bytes
    in errors. Raises ModelFileError for a file that cannot be read or is not ONNX."""
    if isinstance(model, (str, Path)):
        return model_ops(_read(Path(model)), model).is_int8
    return model_ops(model, path or "the model").is_int8


def model_versions(path: Path) -> tuple[int, dict[str, int]]:
    """(IR version, {opset domain: version}) of an ONNX file."""
    m = read_model_ops(path)
    return m.ir_version, m.opsets


def _problems(m: ModelOps, lim: RuntimeLimits) -> list[str]:
    opset = m.opsets.get(ONNX_DOMAIN, 0)
    problems = []
    if lim.max_ir_version is not None and m.ir_version > lim.max_ir_version:
        problems.append(f"IR version {m.ir_version} > {lim.max_ir_version}")
    if lim.max_opset is not None and opset > lim.max_opset:
        problems.append(f"opset {opset} > {lim.max_opset}")
    foreign = sorted(f"{d}.{op}" for d, op in m.ops if d not in lim.domains)
    if foreign:
        problems.append(f"operators outside its domains: {', '.join(foreign)}")
    refused = sorted(op for d, op in m.ops if d == ONNX_DOMAIN and op in lim.refused_ops)
    if refused:
        problems.append(f"operators it has no kernel for: {', '.join(refused)}")
    other = sorted(INT8_NAMES.get(t, str(t)) for t in m.qdq_zero_point_types - {INT8})
    if lim.int8_qdq_only and other:
        problems.append(f"Q/DQ of {', '.join(other)} (it takes int8 only, zero points of 0)")
    return problems


def _limits_text(lim: RuntimeLimits) -> str:
    header = ("any IR and opset" if lim.max_ir_version is None and lim.max_opset is None else
              f"IR <= {lim.max_ir_version}, opset <= {lim.max_opset}")
    return header + (", standard operators only" if lim.domains == frozenset({ONNX_DOMAIN}) else ", contrib operators too")


def check_targets(path: Path, targets=DEFAULT_TARGETS) -> list[Compatibility]:
    """Will each target runtime load the model at `path`? For an int8 model made for other runtimes
    (its cnn_edge.int8_targets), the message also says which form serves the target."""
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ConfigError(f"unknown target runtime {unknown[0]!r}; choose from {', '.join(TARGETS)}")
    m = read_model_ops(path)
    domains = sorted({d for d, _ in m.ops})
    out = []
    for t in targets:
        lim = TARGETS[t]
        problems = _problems(m, lim)
        message = (f"{lim.name} ({_limits_text(lim)}): model has IR {m.ir_version}, opset "
                   f"{m.opsets.get(ONNX_DOMAIN, 0)}, operators of {', '.join(domains)}"
                   + ("" if not problems else f" ({'; '.join(problems)}: it will refuse this model; {_fix(problems, t)})"))
        if not problems and m.is_int8 and m.made_for and t.split("-")[0] not in m.made_for:
            message += f"; it loads, but this int8 form is made for {', '.join(m.made_for)}: {_form_for(t)}"
        out.append(Compatibility(t, lim.name, not problems, message))
    return out


def _form_for(target: str) -> str:
    """Which int8 form serves `target`, and how to make it."""
    if target == "tensorrt":
        return ("TensorRT's form is made by cnn-edge quantize FP32_MODEL --target tensorrt "
                "(or cnn-edge pipeline --int8-target tensorrt)")
    return ("the release's int8 model (exports/mnist_cnn.int8.onnx), or cnn-edge quantize FP32_MODEL with its "
            "default --target ort, is the fastest form there")


def _fix(problems: list[str], target: str) -> str:
    if any(p.startswith(("operators", "Q/DQ")) for p in problems):
        if target == "tensorrt":
            return _form_for("tensorrt")
        return "quantize to a QDQ form: cnn-edge quantize FP32_MODEL (not --format qoperator or --dynamic)"
    return "re-export with a lower opset or IR version, or upgrade the runtime"
