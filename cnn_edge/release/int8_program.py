"""An int8 QDQ ONNX model read as an integer program: the steps the C export runs and the NumPy
reference (int8_reference.py) computes, with every constant already in integers.

The graph is walked once, in its (topological) order. Each QuantizeLinear ends a step; what is
between a DequantizeLinear and that QuantizeLinear says which step:

    DQ -> Conv [-> Relu/Clip] -> Q                        ConvStep (grouped, strided, padded)
    DQ -> Gemm | MatMul [-> Relu/Clip] -> Q               DenseStep
    DQ -> MaxPool -> Q                                    MaxPoolStep (same scale and zero point)
    DQ -> AveragePool | GlobalAveragePool | ReduceMean
          [-> Reshape] -> Q                               AvgPoolStep
    DQ -> element-wise ops -> Q  (or the float pixels)    LutStep: a 256-entry table per channel
    DQ -> Reshape | Flatten -> Q (same scale, zero point) nothing to compute: the layout is kept

Integer arithmetic (docs/embedding-c.md): 8-bit x 8-bit products summed in int32, the float bias
folded in as round(bias / (input scale x weight scale)), and the real factor input scale x weight
scale / output scale applied as a 31-bit multiplier and a right shift; every rounding is to the
nearest integer, halves to even, as ONNX's QuantizeLinear rounds. A table step is computed with the ONNX specification's own semantics (onnx.reference) for
each of the 256 input codes, so it equals the specification exactly. Anything else is refused with
one line naming the node (UnsupportedModelError, exit 2).

Activations are stored channels last (H, W, C); a flattened tensor keeps that storage, and the
dense layer after it reads its weights in that order (`Tensor.order`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..core import contract as C
from ..core.constants import NUM_CLASSES
from ..core.errors import CnnEdgeError

RANGES = {"uint8": (0, 255), "int8": (-128, 127)}
INT32_LIMIT = 2**31 - 1
MAX_SHIFT = 62  # (int64 product + rounding half) >> shift, with |product| < 2**62
ELEMENTWISE = ("Mul", "Add", "Sub", "Div", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid",
               "HardSwish", "Neg", "Abs", "BatchNormalization", "Identity")
LAYOUT = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")  # values unchanged: only the shape is
SUPPORTED = ("QuantizeLinear", "DequantizeLinear", "Conv", "Gemm", "MatMul", "MaxPool", "AveragePool",
             "GlobalAveragePool", "ReduceMean", "Softmax", "Constant", *ELEMENTWISE, *LAYOUT)


class UnsupportedModelError(CnnEdgeError):
    """An int8 model the C export cannot translate: an operator it does not know, a layer left in
    float, an integer type or a quantization it does not implement."""


@dataclass(frozen=True)
class QParams:
    scale: float  # a float32 value, held exactly as a Python float
    zero_point: int
    dtype: str  # "uint8" | "int8"

    @property
    def low(self) -> int:
        return RANGES[self.dtype][0]

    @property
    def high(self) -> int:
        return RANGES[self.dtype][1]


@dataclass(frozen=True, eq=False)
class Tensor:
    """A quantized activation of one image: its logical (ONNX) shape, (C, H, W) or (F,), and its
    quantization. Stored channels last; `order[p]` is the logical (C, H, W)-flattened index of
    storage position p."""

    name: str
    shape: tuple[int, ...]
    q: QParams
    order: np.ndarray = field(repr=False, default=None)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def hwc(self) -> tuple[int, int, int]:
        """(H, W, C) of a (C, H, W) tensor."""
        c, h, w = self.shape
        return h, w, c


def channels_last_order(shape: tuple[int, ...]) -> np.ndarray:
    """order[p] for a (C, H, W) tensor stored (H, W, C): p = (y*W + x)*C + c -> c*H*W + y*W + x."""
    if len(shape) != 3:
        return np.arange(int(np.prod(shape)))
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


@dataclass(frozen=True, eq=False)
class Requant:
    """acc (int32) -> clamp(zero_point + round_even(acc * multiplier / 2**shift), low, high);
    one multiplier and shift per output channel (or, in an average pool, per window count)."""

    multiplier: np.ndarray  # int64 values in [2**30, 2**31), or smaller where shift is capped
    shift: np.ndarray  # 1..62
    zero_point: int
    low: int  # the type's range, narrowed by a fused Relu or Clip
    high: int


@dataclass(frozen=True, eq=False)
class LutStep:
    nodes: tuple[str, ...]
    input: Optional[Tensor]  # None: the raw pixels 0..255 (the graph's float input)
    output: Tensor
    table: np.ndarray  # (1 or channels, 256): the output code for input code (+128 for int8)

    kind = "lut"


@dataclass(frozen=True, eq=False)
class ConvStep:
    nodes: tuple[str, ...]
    input: Tensor
    output: Tensor
    weights: np.ndarray  # int8 (OC, KH, KW, IC/groups): channels last, as the patches are read
    bias: np.ndarray  # int32 (OC,): round(bias / (s_in * s_w))
    requant: Requant
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    groups: int

    kind = "conv"

    @property
    def macs(self) -> int:
        oh, ow, oc = self.output.hwc
        return oh * ow * int(self.weights[0].size) * oc


@dataclass(frozen=True, eq=False)
class DenseStep:
    nodes: tuple[str, ...]
    input: Tensor
    output: Tensor
    weights: np.ndarray  # int8 (OUT, IN), columns in the input's storage order
    bias: np.ndarray  # int32 (OUT,): round(bias / (s_in * s_w)) - z_in * sum(w): the C sums q * w
    requant: Requant

    kind = "dense"

    @property
    def macs(self) -> int:
        return int(self.weights.size)


@dataclass(frozen=True, eq=False)
class _PoolWindow:
    """What both pooling steps share: the windows they slide over the input."""

    nodes: tuple[str, ...]
    input: Tensor
    output: Tensor
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class MaxPoolStep(_PoolWindow):
    kind = "maxpool"


@dataclass(frozen=True, eq=False)
class AvgPoolStep(_PoolWindow):
    per_count: bool  # True: windows count only their positions inside the image (padding, count_include_pad 0)
    requant: Requant  # s_in / (s_out * count): one entry for kh*kw, or (per_count) one per count, indexed by count - 1

    kind = "avgpool"


Step = Union[LutStep, ConvStep, DenseStep, MaxPoolStep, AvgPoolStep]


@dataclass(frozen=True, eq=False)
class Int8Program:
    model: Path
    steps: tuple[Step, ...]
    output: Tensor  # the quantized logits (NUM_CLASSES,)
    activation_type: str  # uint8 | int8 (every activation of the program)

    @property
    def macs(self) -> int:
        return sum(getattr(s, "macs", 0) for s in self.steps)

    @property
    def ops(self) -> list[str]:
        return [s.kind for s in self.steps]


# ---------------------------------------------------------------- fixed point

def round_even(x: np.ndarray) -> np.ndarray:
    """Nearest integer, halves to even, as QuantizeLinear rounds (float64 in, int64 out)."""
    return np.rint(np.asarray(x, dtype=np.float64)).astype(np.int64)


def fixed_point(real: float, where: str) -> tuple[int, int]:
    """real ~= multiplier * 2**-shift with a 31-bit multiplier in [2**30, 2**31) and 1 <= shift <= 62
    (below 2**-31 the multiplier loses bits; 0 once below 2**-62)."""
    if not (math.isfinite(real) and real > 0):
        raise UnsupportedModelError(f"{where}: requantization factor {real!r} is not a positive number")
    f, e = math.frexp(real)  # real = f * 2**e, 0.5 <= f < 1
    m = round(f * 2**31)  # halves to even
    if m == 2**31:
        m, e = m // 2, e + 1
    shift = 31 - e
    if shift < 1:
        raise UnsupportedModelError(f"{where}: requantization factor {real:g} is too large for 31-bit fixed point")
    if shift > MAX_SHIFT:
        m, shift = m >> (shift - MAX_SHIFT), MAX_SHIFT
    return m, shift


def make_requant(reals: np.ndarray, out: QParams, low: int, high: int, where: str) -> Requant:
    pairs = [fixed_point(float(r), where) for r in np.atleast_1d(reals)]
    return Requant(np.array([m for m, _ in pairs], np.int64), np.array([s for _, s in pairs], np.int64),
                   out.zero_point, low, high)


# ---------------------------------------------------------------- reading the graph

@dataclass
class _Quant:  # the output of a QuantizeLinear: a step's output
    tensor: Tensor


@dataclass
class _Deq:  # DequantizeLinear of a quantized activation: its float view
    source: str  # the quantized value's name


@dataclass
class _Chain:  # element-wise float ops on a float view (or on the pixels), not yet quantized
    root: Optional[str]  # the quantized value they start from; None: the graph's float input
    nodes: list  # NodeProto, in order
    value_preserving: bool  # only layout ops so far


@dataclass
class _Pending:  # a layer's float output, waiting for its QuantizeLinear
    node: object  # the Conv, Gemm, MatMul or pooling NodeProto
    source: str  # the quantized value it reads
    extra: list  # Relu, Clip and layout nodes after it
    low: float = -math.inf  # a fused Relu or Clip
    high: float = math.inf


@dataclass
class _Weight:  # DequantizeLinear of a constant: a layer's integer weights
    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int
    node: str


class _Reader:
    def __init__(self, proto, path: Path):
        import onnx
        from onnx import numpy_helper

        self.onnx, self.path, self.proto = onnx, path, proto
        g = proto.graph
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.values: dict[str, object] = {}
        self.steps: list[Step] = []
        self.aliases: dict[str, str] = {}  # a reshaped tensor's name -> the tensor it reshapes
        self.shapes = self._shapes()
        self.nodes_by_output = {o: n for n in g.node for o in n.output}

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        """Every value's shape for one image (batch dimension dropped), by ONNX shape inference."""
        onnx = self.onnx
        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        for value in proto.graph.input:
            dims = value.type.tensor_type.shape.dim
            if dims:
                dims[0].ClearField("dim_param")
                dims[0].dim_value = 1
        del proto.graph.value_info[:]
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
        shapes = {}
        for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            dims = value.type.tensor_type.shape.dim
            if dims and all(d.HasField("dim_value") for d in dims):
                shapes[value.name] = tuple(int(d.dim_value) for d in dims)[1:]
        return shapes

    # ------------------------------------------------------------ helpers

    def describe(self, node) -> str:
        return f"{node.op_type} node {node.name or node.output[0]!r}"

    def const(self, name: str, node) -> np.ndarray:
        if name not in self.consts:
            raise UnsupportedModelError(f"{self.describe(node)}: input {name!r} must be a constant")
        return self.consts[name]

    def qparams(self, node) -> QParams:
        scale = self.const(node.input[1], node)
        zp = self.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.uint8(0)
        if scale.size != 1 or zp.size != 1:
            raise UnsupportedModelError(f"{self.describe(node)}: activations quantized per axis; export-c needs one scale per tensor")
        dtype = np.dtype(zp.dtype).name
        if dtype not in RANGES:
            raise UnsupportedModelError(f"{self.describe(node)}: activation type {dtype}; export-c runs uint8 or int8 activations")
        s = float(np.float32(scale.reshape(())))
        if not (math.isfinite(s) and s > 0):
            raise UnsupportedModelError(f"{self.describe(node)}: scale {s!r} is not a positive number")
        return QParams(s, int(zp.reshape(())), dtype)

    def attrs(self, node) -> dict:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def quant(self, name: str, node) -> Tensor:
        v = self.values.get(name)
        if not isinstance(v, _Quant):
            raise UnsupportedModelError(f"{self.describe(node)} reads {name!r}, which is not a quantized activation")
        return v.tensor

    def deq_source(self, name: str, node) -> str:
        v = self.values.get(name)
        if isinstance(v, _Deq):
            return v.source
        what = "a constant" if name in self.consts or isinstance(v, _Weight) else "a float value"
        raise UnsupportedModelError(f"{self.describe(node)} runs in float: its input {name!r} is {what}, not a "
                                    f"DequantizeLinear of a quantized activation; export-c needs every layer quantized")

    def weight(self, name: str, node) -> _Weight:
        v = self.values.get(name)
        if not isinstance(v, _Weight):
            raise UnsupportedModelError(f"{self.describe(node)}: its weights {name!r} are not an int8 DequantizeLinear of a constant")
        if v.q.dtype != np.int8:
            raise UnsupportedModelError(f"{self.describe(node)}: {v.q.dtype} weights; export-c needs int8 weights (quantize --weight-type int8)")
        if np.any(v.zero_point != 0):
            raise UnsupportedModelError(f"{self.describe(node)}: weights with non-zero zero points; export-c needs symmetric int8 weights")
        if not np.all(np.isfinite(v.scale) & (v.scale > 0)):
            raise UnsupportedModelError(f"{self.describe(node)}: a weight scale is zero, negative or not finite")
        return v

    def bias(self, node, index: int, channels: int) -> np.ndarray:
        """The float bias (float64 of the stored float32), zeros when there is none."""
        if len(node.input) <= index or not node.input[index]:
            return np.zeros(channels)
        name = node.input[index]
        v = self.values.get(name)
        if isinstance(v, _Weight):  # an int32 bias behind a DequantizeLinear
            value = (v.q.astype(np.float64) - v.zero_point) * v.scale.astype(np.float32).astype(np.float64)
        else:
            value = self.const(name, node).astype(np.float64)
        if value.size != channels:
            raise UnsupportedModelError(f"{self.describe(node)}: bias of {value.size} values for {channels} outputs")
        return value.reshape(channels)

    # ------------------------------------------------------------ the walk

    def read(self) -> Int8Program:
        g = self.proto.graph
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1 or self.shapes.get(inputs[0].name) != C.INPUT_SHAPE[1:]:
            raise UnsupportedModelError(f"{self.path}: export-c needs one input of shape (batch, {', '.join(map(str, C.INPUT_SHAPE[1:]))})")
        self.input_name = inputs[0].name
        self.values[self.input_name] = _Chain(None, [], True)
        for node in g.node:
            self.visit(node)
        return self.finish()

    def visit(self, node) -> None:
        op, name = node.op_type, node.name
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedModelError(f"operator {node.domain}.{op} (node {name!r}) is not supported by export-c; "
                                        f"it runs the standard-domain QDQ form (quantize --format qdq)")
        if op not in SUPPORTED:
            raise UnsupportedModelError(f"operator {op} (node {name!r}) is not supported by export-c; it supports "
                                        f"{', '.join(sorted(set(SUPPORTED) - {'Constant', 'Identity'}))}")
        out = node.output[0]
        if op == "Constant":
            self.consts[out] = self.onnx.numpy_helper.to_array(self.attrs(node)["value"])
        elif op == "DequantizeLinear":
            if node.input[0] in self.consts:
                q = self.consts[node.input[0]]
                scale = self.const(node.input[1], node).astype(np.float32)
                zp = self.consts.get(node.input[2], np.zeros((), q.dtype)) if len(node.input) > 2 and node.input[2] else np.zeros((), q.dtype)
                self.values[out] = _Weight(q, scale, zp.astype(np.int64), int(self.attrs(node).get("axis", 1)), name)
                if scale.size == 1:  # a float constant too, for element-wise ops on it (the normalization's)
                    self.consts[out] = ((q.astype(np.float32) - zp.astype(np.float32)) * scale).astype(np.float32)
            elif self.values.get(node.input[0]) == "softmax":
                self.values[out] = "softmax"  # a quantized softmax: the probabilities, left to the host
            else:
                self.quant(node.input[0], node)
                self.values[out] = _Deq(node.input[0])
        elif op == "QuantizeLinear":
            self.quantize(node)
        elif op in ("Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean"):
            self.values[out] = _Pending(node, self.deq_source(node.input[0], node), [])
        elif op == "Softmax":
            self.deq_source(node.input[0], node)  # the probabilities: computed from the logits on the host
            self.values[out] = "softmax"
        else:  # element-wise and layout ops
            self.elementwise(node)

    def data_input(self, node) -> str:
        """The one non-constant input of an element-wise op."""
        moving = [i for i in node.input if i and i not in self.consts]
        if len(moving) != 1:
            raise UnsupportedModelError(f"{self.describe(node)} combines {len(moving)} activations; export-c runs one chain of layers")
        return moving[0]

    def elementwise(self, node) -> None:
        src = self.data_input(node)
        v = self.values.get(src)
        out = node.output[0]
        layout = node.op_type in LAYOUT or node.op_type == "Identity"
        if isinstance(v, _Pending):
            if node.op_type == "Relu":
                self.values[out] = _Pending(v.node, v.source, v.extra + [node], max(v.low, 0.0), v.high)
            elif node.op_type == "Clip":
                lo, hi = self.clip_bounds(node)
                self.values[out] = _Pending(v.node, v.source, v.extra + [node], max(v.low, lo), min(v.high, hi))
            elif layout:
                self.values[out] = _Pending(v.node, v.source, v.extra + [node], v.low, v.high)
            else:
                raise UnsupportedModelError(f"{self.describe(node)} runs in float after {self.describe(v.node)}, "
                                            f"with no QuantizeLinear between; export-c needs it quantized")
        elif isinstance(v, _Deq):
            self.values[out] = _Chain(v.source, [node], layout)
        elif isinstance(v, _Chain):
            self.values[out] = _Chain(v.root, v.nodes + [node], v.value_preserving and layout)
        else:
            raise UnsupportedModelError(f"{self.describe(node)} reads {src!r}, which is not a dequantized activation")

    def clip_bounds(self, node) -> tuple[float, float]:
        a = self.attrs(node)
        lo, hi = a.get("min", -math.inf), a.get("max", math.inf)
        if len(node.input) > 1 and node.input[1]:
            lo = float(self.const(node.input[1], node))
        if len(node.input) > 2 and node.input[2]:
            hi = float(self.const(node.input[2], node))
        return float(lo), float(hi)

    def out_tensor(self, node, q: QParams, source: Optional[Tensor] = None) -> Tensor:
        name = node.output[0]
        shape = self.shapes.get(name)
        if shape is None:
            raise UnsupportedModelError(f"{self.describe(node)}: the shape of {name!r} cannot be inferred")
        if source is not None and len(shape) != 3:  # flattened: the storage order carries on
            order = source.order
        else:
            order = channels_last_order(shape)
        return Tensor(name, shape, q, order)

    def quantize(self, node) -> None:
        q = self.qparams(node)
        src = node.input[0]
        v = self.values.get(src)
        if v == "softmax":
            self.values[node.output[0]] = "softmax"
            return
        if isinstance(v, _Deq):
            v = _Chain(v.source, [], True)
        if isinstance(v, _Chain):
            self.chain_step(node, v, q)
        elif isinstance(v, _Pending):
            self.layer_step(node, v, q)
        elif src == self.input_name:
            self.chain_step(node, _Chain(None, [], True), q)
        else:
            raise UnsupportedModelError(f"{self.describe(node)} quantizes {src!r}, which export-c cannot follow "
                                        f"(a constant or a value of an unsupported form)")

    def emit(self, step: Step) -> None:
        self.steps.append(step)
        self.values[step.output.name] = _Quant(step.output)

    # ------------------------------------------------------------ steps

    def chain_step(self, node, chain: _Chain, q: QParams) -> None:
        source = self.values[chain.root].tensor if chain.root is not None else None
        if source is not None and chain.value_preserving and source.q == q:
            # Reshape/Flatten between equal Q/DQ: the same codes, a new shape (the storage is kept)
            out = self.out_tensor(node, q, source)
            if out.size != source.size:
                raise UnsupportedModelError(f"{self.describe(node)}: a reshape that changes the number of values")
            self.values[out.name] = _Quant(out)
            self.aliases[out.name] = source.name
            return
        table = self.table(node, chain, source, q)
        out = self.out_tensor(node, q, source)
        names = tuple(n.name for n in chain.nodes) + (node.name,)
        self.emit(LutStep(names, source, out, table))

    def table(self, qnode, chain: _Chain, source: Optional[Tensor], q: QParams) -> np.ndarray:
        """The output code for each of the 256 input codes, per channel, as the ONNX specification
        computes it (onnx.reference), for the element-wise chain from `source` (or the float pixels)
        through `qnode`."""
        onnx, helper = self.onnx, self.onnx.helper
        from onnx.reference import ReferenceEvaluator

        if source is None:
            channels, codes = 1, np.arange(256, dtype=np.float32)
            start, elem = self.input_name, onnx.TensorProto.FLOAT
        else:
            channels = source.shape[0] if len(source.shape) == 3 else source.size
            codes = np.arange(source.q.low, source.q.high + 1).astype(source.q.dtype)
            start, elem = source.name, helper.np_dtype_to_tensor_dtype(np.dtype(source.q.dtype))
        nodes, rename = [], {}
        if source is not None:  # the DequantizeLinear of the source, as in the graph
            dq = next(n for n in self.proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == source.name)
            nodes.append(dq)
        for n in chain.nodes:
            if n.op_type in LAYOUT or n.op_type == "Identity":
                rename[n.output[0]] = rename.get(n.input[0], n.input[0])
                continue
            copy = onnx.NodeProto()
            copy.CopyFrom(n)
            for i, name in enumerate(copy.input):
                copy.input[i] = rename.get(name, name)
            nodes.append(copy)
        last = onnx.NodeProto()
        last.CopyFrom(qnode)
        last.input[0] = rename.get(last.input[0], last.input[0])
        nodes.append(last)
        # constants the chain reads (initializers, and DequantizeLinear of them)
        needed = {i for n in nodes for i in n.input if i}
        const_nodes, inits = [], {}
        for name in sorted(needed):
            producer = self.nodes_by_output.get(name)
            if producer is not None and producer.op_type in ("DequantizeLinear", "Constant") and name in self.consts:
                const_nodes.append(producer)
                needed |= {i for i in producer.input if i}
        for name in needed:
            if name in (i.name for i in self.proto.graph.initializer):
                inits[name] = next(i for i in self.proto.graph.initializer if i.name == name)
        shape = [len(codes), channels, 1, 1] if source is None or len(source.shape) == 3 else [len(codes), channels]
        x = np.broadcast_to(codes.reshape([-1] + [1] * (len(shape) - 1)), shape).copy()
        graph = helper.make_graph(const_nodes + nodes, "chain",
                                  [helper.make_tensor_value_info(start, elem, shape)],
                                  [helper.make_tensor_value_info(qnode.output[0], onnx.TensorProto.UNDEFINED, None)],
                                  list(inits.values()))
        opset = max(19, next((o.version for o in self.proto.opset_import if o.domain in ("", "ai.onnx")), 19))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        try:
            (y,) = ReferenceEvaluator(model).run(None, {start: x})
        except Exception as exc:  # noqa: BLE001 - onnx.reference raises many kinds; one line says which chain
            raise UnsupportedModelError(f"{self.describe(qnode)}: its element-wise chain "
                                        f"({', '.join(n.op_type for n in chain.nodes) or 'none'}) cannot be tabulated: "
                                        f"{str(exc).splitlines()[0][:200]}") from None
        if y.shape != tuple(shape):
            raise UnsupportedModelError(f"{self.describe(qnode)}: its element-wise chain "
                                        f"({', '.join(n.op_type for n in chain.nodes)}) is not per channel (constants per pixel?)")
        table = y.reshape(len(codes), channels).T.astype(np.int64)  # (channels, codes)
        if np.all(table == table[:1]):
            table = table[:1]
        if source is None:  # the raw pixels are 0..255: the C indexes the table by the pixel itself
            assert table.shape[1] == 256
        return table

    def layer_step(self, qnode, p: _Pending, q: QParams) -> None:
        node, op = p.node, p.node.op_type
        src = self.values[p.source].tensor
        names = (node.name, *(n.name for n in p.extra), qnode.name)
        low = q.low if p.low == -math.inf else max(q.low, self.quantize_float(p.low, q))
        high = q.high if p.high == math.inf else min(q.high, self.quantize_float(p.high, q))
        if op == "MaxPool":
            if src.q != q:
                raise UnsupportedModelError(f"{self.describe(node)}: its output is quantized with another scale or zero "
                                            f"point than its input; export-c runs max pooling on the codes")
            out = self.out_tensor(qnode, q)
            k, s, pads = self.window(node, src)
            if low > q.low or high < q.high:
                raise UnsupportedModelError(f"{self.describe(node)}: a Relu or Clip after max pooling; quantize it separately")
            self.emit(MaxPoolStep(names, src, out, k, s, pads))
        elif op in ("AveragePool", "GlobalAveragePool", "ReduceMean"):
            self.avgpool_step(node, qnode, src, q, names, low, high)
        elif op == "Conv":
            self.conv_step(node, qnode, src, q, names, low, high)
        else:
            self.dense_step(node, qnode, src, q, names, low, high)

    @staticmethod
    def quantize_float(value: float, q: QParams) -> int:
        """Where a Relu/Clip bound falls on the output codes (QuantizeLinear of the bound)."""
        code = int(np.rint(np.float32(value) / np.float32(q.scale))) + q.zero_point
        return max(q.low, min(q.high, code))

    def window(self, node, src: Tensor, kernel: Optional[tuple[int, int]] = None):
        a = self.attrs(node)
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            raise UnsupportedModelError(f"{self.describe(node)}: auto_pad {a['auto_pad']!r}; export-c needs explicit pads")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            raise UnsupportedModelError(f"{self.describe(node)}: dilations {a['dilations']}; export-c runs dilation 1")
        if a.get("ceil_mode", 0):
            raise UnsupportedModelError(f"{self.describe(node)}: ceil_mode 1; export-c runs floor mode")
        k = tuple(kernel or a["kernel_shape"])
        s = tuple(a.get("strides", [1, 1]))
        pads = tuple(a.get("pads", [0, 0, 0, 0]))
        if len(k) != 2 or len(src.shape) != 3:
            raise UnsupportedModelError(f"{self.describe(node)}: export-c runs 2-D windows on (C, H, W) activations")
        t, left, b, r = pads
        return k, s, (t, left, b, r)

    def check_shape(self, node, out: Tensor, expected: tuple[int, ...]) -> None:
        if out.shape != expected:
            raise UnsupportedModelError(f"{self.describe(node)}: output shape {out.shape}, expected {expected}")

    def avgpool_step(self, node, qnode, src: Tensor, q: QParams, names, low: int, high: int) -> None:
        c, h, w = src.shape
        if node.op_type == "AveragePool":
            k, s, pads = self.window(node, src)
            include = bool(self.attrs(node).get("count_include_pad", 0))
        else:
            if node.op_type == "ReduceMean":
                a = self.attrs(node)
                axes = a.get("axes")
                if axes is None and len(node.input) > 1 and node.input[1]:
                    axes = self.const(node.input[1], node).tolist()
                if axes is None or sorted(x % 4 for x in axes) != [2, 3]:
                    raise UnsupportedModelError(f"{self.describe(node)}: a mean over axes {axes}; export-c runs the mean over H and W")
            k, s, pads, include = (h, w), (1, 1), (0, 0, 0, 0), True
        out = self.out_tensor(qnode, q, src)
        oh, ow = (h + pads[0] + pads[2] - k[0]) // s[0] + 1, (w + pads[1] + pads[3] - k[1]) // s[1] + 1
        if out.size != c * oh * ow:
            raise UnsupportedModelError(f"{self.describe(node)}: output of {out.size} values, expected {c * oh * ow}")
        if len(out.shape) != 3:  # (C,) after a Reshape: the same storage as (C, 1, 1)
            out = Tensor(out.name, out.shape, q, np.arange(out.size))
        per_count = not include and any(pads)
        counts = np.arange(1, k[0] * k[1] + 1, dtype=np.float64) if per_count else np.array([k[0] * k[1]], np.float64)
        reals = src.q.scale / (q.scale * counts)
        self.emit(AvgPoolStep(names, src, out, k, s, pads, per_count, make_requant(reals, q, low, high, self.describe(node))))

    def conv_step(self, node, qnode, src: Tensor, q: QParams, names, low: int, high: int) -> None:
        wt = self.weight(node.input[1], node)
        a = self.attrs(node)
        groups = int(a.get("group", 1))
        oc, icg, kh, kw = wt.q.shape
        c, h, w = src.shape
        if icg * groups != c:
            raise UnsupportedModelError(f"{self.describe(node)}: weights for {icg * groups} input channels, input has {c}")
        _, s, pads = self.window(node, src, (kh, kw))
        out = self.out_tensor(qnode, q)
        self.check_shape(node, out, (oc, (h + pads[0] + pads[2] - kh) // s[0] + 1, (w + pads[1] + pads[3] - kw) // s[1] + 1))
        scale_w = np.broadcast_to(wt.scale.astype(np.float64).reshape(-1), (oc,))
        if wt.scale.size not in (1, oc) or (wt.scale.size == oc and oc > 1 and wt.axis != 0):
            raise UnsupportedModelError(f"{self.describe(node)}: weight scales along axis {wt.axis}; export-c needs them per output channel")
        acc_scale = src.q.scale * scale_w
        bias = round_even(self.bias(node, 2, oc) / acc_scale)
        weights = wt.q.transpose(0, 2, 3, 1).copy()  # (OC, KH, KW, IC/g): channels last, as patches are read
        self.check_accumulator(node, weights.reshape(oc, -1), bias, src, with_zero_point=False)
        self.emit(ConvStep(names, src, out, weights, bias, make_requant(acc_scale / q.scale, q, low, high, self.describe(node)),
                           s, pads, groups))

    def dense_step(self, node, qnode, src: Tensor, q: QParams, names, low: int, high: int) -> None:
        wt = self.weight(node.input[1], node)
        if wt.q.ndim != 2:
            raise UnsupportedModelError(f"{self.describe(node)}: weights of shape {wt.q.shape}")
        if node.op_type == "Gemm":
            a = self.attrs(node)
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                raise UnsupportedModelError(f"{self.describe(node)}: transA, alpha or beta other than 0, 1, 1")
            trans_b = bool(a.get("transB", 0))
        else:
            trans_b = False
        w = wt.q if trans_b else wt.q.T  # (OUT, IN)
        per_axis = 0 if trans_b else 1
        n_out, n_in = w.shape
        if n_in != src.size:
            raise UnsupportedModelError(f"{self.describe(node)}: {n_in} inputs, its input has {src.size} values")
        if wt.scale.size not in (1, n_out) or (wt.scale.size == n_out and n_out > 1 and wt.axis != per_axis):
            raise UnsupportedModelError(f"{self.describe(node)}: weight scales along axis {wt.axis}; export-c needs them per output")
        out = self.out_tensor(qnode, q)
        self.check_shape(node, out, (n_out,))
        scale_w = np.broadcast_to(wt.scale.astype(np.float64).reshape(-1), (n_out,))
        acc_scale = src.q.scale * scale_w
        bias = round_even(self.bias(node, 2, n_out) / acc_scale) if node.op_type == "Gemm" else np.zeros(n_out, np.int64)
        weights = w[:, src.order].copy()  # columns in the order the input is stored
        self.check_accumulator(node, weights, bias, src, with_zero_point=True)
        bias = bias - src.q.zero_point * weights.astype(np.int64).sum(1)
        self.emit(DenseStep(names, src, out, weights, bias, make_requant(acc_scale / q.scale, q, low, high, self.describe(node))))

    def check_accumulator(self, node, weights: np.ndarray, bias: np.ndarray, src: Tensor, with_zero_point: bool) -> None:
        """The int32 accumulator cannot overflow for any input (C and NumPy agree only without overflow)."""
        w = np.abs(weights.astype(np.int64)).sum(1)
        span = max(abs(src.q.low - src.q.zero_point), abs(src.q.high - src.q.zero_point))
        worst = w * (max(abs(src.q.low), abs(src.q.high)) + abs(src.q.zero_point) if with_zero_point else span) + np.abs(bias)
        if worst.max() > INT32_LIMIT:
            raise UnsupportedModelError(f"{self.describe(node)}: its int32 accumulator could overflow (bound {int(worst.max()):,})")

    # ------------------------------------------------------------ the end

    def finish(self) -> Int8Program:
        g = self.proto.graph
        outputs = {o.name for o in g.output}
        if C.OUTPUT_LOGITS not in outputs:
            raise UnsupportedModelError(f"{self.path}: no output named {C.OUTPUT_LOGITS!r}")
        v = self.values.get(C.OUTPUT_LOGITS)
        if not isinstance(v, _Deq):
            raise UnsupportedModelError(f"{self.path}: the logits are not the DequantizeLinear of a quantized tensor "
                                        f"(the last layer runs in float?); export-c needs them quantized")
        final = self.values[v.source].tensor
        if final.shape != (NUM_CLASSES,):
            raise UnsupportedModelError(f"{self.path}: logits of shape {final.shape}, expected ({NUM_CLASSES},)")
        for name in outputs - {C.OUTPUT_LOGITS}:
            if self.values.get(name) != "softmax":
                raise UnsupportedModelError(f"{self.path}: output {name!r} is not a softmax of the logits")
        aliases = self.aliases
        # one chain: each step reads what the one before it wrote (through reshapes)
        previous = None
        for step in self.steps:
            read = step.input.name if step.input is not None else None
            while read in aliases:
                read = aliases[read]
            if read != previous:
                raise UnsupportedModelError(f"the graph branches or reorders at {step.nodes[0]!r}; export-c runs one chain of layers")
            previous = step.output.name
        last = final.name
        while last in aliases:
            last = aliases[last]
        if last != previous:
            raise UnsupportedModelError("the logits are not the last layer's output; export-c runs one chain of layers")
        steps = compose_tables(self.steps)
        types = {s.output.q.dtype for s in steps} | {s.input.q.dtype for s in steps if s.input is not None}
        if len(types) != 1:
            raise UnsupportedModelError(f"activations of mixed types ({', '.join(sorted(types))}); export-c needs one type")
        if steps[-1].output is not final:  # the logits reached through a reshape: same codes, shape (10,)
            steps[-1] = _with_output(steps[-1], final)
        return Int8Program(self.path, tuple(steps), final, types.pop())


def _with_output(step: Step, out: Tensor) -> Step:
    from dataclasses import replace

    return replace(step, output=out)


def compose_tables(steps: list[Step]) -> list[Step]:
    """Consecutive table steps become one (exact: a table of a table): the normalization's three
    (pixels -> Q, Mul -> Q, Add -> Q) become a single 256-byte table."""
    out: list[Step] = []
    for step in steps:
        prev = out[-1] if out else None
        if isinstance(step, LutStep) and isinstance(prev, LutStep) and (
                prev.table.shape[0] == 1 or step.table.shape[0] == 1 or prev.output.shape == step.input.shape):
            offset = -step.input.q.low  # int8 codes index the table from -128
            rows = max(prev.table.shape[0], step.table.shape[0])
            first = np.broadcast_to(prev.table, (rows, prev.table.shape[1]))
            second = np.broadcast_to(step.table, (rows, 256))
            table = np.take_along_axis(second, first + offset, axis=1)
            out[-1] = LutStep(prev.nodes + step.nodes, prev.input, step.output, table)
        else:
            out.append(step)
    return out


def read_program(model: Path) -> Int8Program:
    """Read an int8 QDQ model as an integer program. Raises UnsupportedModelError (one line, naming
    the operator or node) for anything export-c cannot translate, ModelFileError for a file that is not ONNX."""
    import onnx

    from ..core.errors import ModelFileError

    model = Path(model)
    try:
        proto = onnx.load(str(model))
    except FileNotFoundError:
        raise ModelFileError(f"model {model} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ModelFileError(f"{model} is not an ONNX model ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node):
        raise UnsupportedModelError(f"{model} is not quantized (no QuantizeLinear); export-c takes the int8 model (cnn-edge quantize)")
    program = _Reader(proto, model).read()
    first = program.steps[0]
    if not isinstance(first, LutStep) or first.input is not None:
        raise UnsupportedModelError(f"{model}: the pixels are not quantized first; export-c needs a QuantizeLinear on the input")
    assert first.table.shape == (1, 256), first.table.shape  # one channel of raw pixels
    return program
