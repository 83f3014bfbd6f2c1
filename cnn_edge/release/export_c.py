"""`cnn-edge export-c`: an int8 QDQ model as dependency-free C99 (docs/embedding-c.md).

The integer program of int8_program.py becomes one C function per step, with every size a literal
(so the compiler unrolls and vectorizes the inner sums), the weights as const arrays, and one static
activation arena whose size is computed here: each step reads its input from one end of the arena
and writes its output at the other (table steps work in place), so the arena is the largest
input + output of one step.

Written into the folder:
    cnn_edge.h            the API: cnn_edge_predict, cnn_edge_softmax, the sizes and the logits' scale
    cnn_edge.c            the kernels the model uses and one function per step
    cnn_edge_weights.h    the constants (included by cnn_edge.c only)
    cnn_edge_softmax.c    the optional float softmax (needs expf)
    main.c, Makefile      a program that classifies a PGM, or images in bulk (--batch) for validate-c
    cortex_m4/            vector table and linker script for QEMU's mps2-an386 (validate-c --target cortex-m4)
    digit.pgm             the first test vector beside the model (when there are test vectors), for main.c
    cnn_edge_export.json  this export's report (ExportCReport): validate-c reads the model's path from it
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Optional

import numpy as np

from .. import __version__
from ..core import contract as C
from ..core.errors import OutputPathError
from ..core.files import atomic_write_bytes, atomic_write_text, sha256_file
from ..core.reports import dumps
from .int8_program import (AvgPoolStep, ConvStep, DenseStep, Int8Program, LutStep, MaxPoolStep, Step, read_program)

MANIFEST = "cnn_edge_export.json"
SAMPLE = "digit.pgm"  # the first test vector beside the model, when there are test vectors
SOURCES = ("main.c", "cnn_edge.c", "cnn_edge_softmax.c")  # what a program that prints probabilities compiles
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off")
WEIGHT_SYMBOL = re.compile(r"^cnn_[wbmst]\d+$")  # the constant arrays, as the linker names them
VALUES_PER_LINE = 24
VECTOR = 16  # gcc -O2 vectorizes a sum whose constant length is a multiple of this; the rest goes in a second call


@dataclass
class CStep:
    """One step of the C program, for the report."""

    index: int
    kind: str  # lut, conv, dense, maxpool, avgpool
    nodes: list[str]  # the ONNX nodes it computes
    input_shape: Optional[list[int]]
    output_shape: list[int]
    macs: int
    const_bytes: int  # its arrays: weights, biases, multipliers, shifts, tables
    in_place: bool


@dataclass
class ExportCReport:
    model: Path
    model_sha256: str
    architecture: str
    output_dir: Path
    files: list[str]
    activation_type: str  # uint8 | int8: the codes of every activation and of the logits
    logit_scale: float
    logit_zero_point: int
    steps: list[CStep]
    macs: int  # multiply-adds per image
    const_bytes: int  # every const array: the weights' flash, estimated before compiling
    int8_weight_bytes: int  # of those: int8 weights plus int32 biases (what core.arch.costs counts)
    arena_bytes: int  # the one static activation buffer (RAM)
    patch_bytes: int  # the two int16 windows the largest convolution keeps on the stack
    cnn_edge_version: str = __version__
    format: str = "cnn-edge-export-c/1"
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the arena

@dataclass
class _Placement:
    arena: int
    inputs: list[Optional[int]]  # the offset each step reads from (None: the image)
    outputs: list[Optional[int]]  # the offset each step writes to (None: the logits)
    in_place: list[bool]


def plan_arena(program: Int8Program) -> _Placement:
    """Input at one end, output at the other; in-place table steps keep their end."""
    steps = program.steps
    last = len(steps) - 1
    in_place = [isinstance(s, LutStep) and 0 < i < last for i, s in enumerate(steps)]
    ends: list[Optional[int]] = []  # per step output: 0 start, 1 end, None external
    arena = 0
    for i, step in enumerate(steps):
        if i == last:
            ends.append(None)
            continue
        previous = ends[i - 1] if i > 0 else None
        ends.append(previous if in_place[i] else (0 if previous in (None, 1) else 1))
        size_in = steps[i].input.size if i > 0 else 0
        arena = max(arena, step.output.size + (0 if in_place[i] else size_in))
    if last > 0:
        arena = max(arena, steps[last].input.size)

    def offset(end: Optional[int], size: int) -> Optional[int]:
        return None if end is None else (0 if end == 0 else arena - size)

    outputs = [offset(e, s.output.size) for e, s in zip(ends, steps)]
    inputs = [None] + outputs[:-1]
    return _Placement(arena, inputs, outputs, in_place)


# ---------------------------------------------------------------- C text

def _array(ctype: str, name: str, values: np.ndarray) -> str:
    flat = [str(int(v)) for v in np.asarray(values).ravel()]
    lines = [", ".join(flat[i:i + VALUES_PER_LINE]) for i in range(0, len(flat), VALUES_PER_LINE)]
    return f"static const {ctype} {name}[{len(flat)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def _bytes_of(step: Step) -> int:
    if isinstance(step, (ConvStep, DenseStep)):
        n = step.bias.size
        return step.weights.size + 4 * n + 4 * n + n  # int8 weights, int32 bias and multiplier, uint8 shift
    if isinstance(step, AvgPoolStep):
        return 5 * step.requant.multiplier.size
    if isinstance(step, LutStep):
        return step.table.size
    return 0


def _pieces(n: int) -> list[tuple[int, int]]:
    """(offset, length) of a sum of n products in calls the compiler vectorizes: a multiple of
    VECTOR, then the rest."""
    main = n // VECTOR * VECTOR
    return [(o, length) for o, length in ((0, main), (main, n - main)) if length]


def _at(pointer: str, offset: int) -> str:
    return f"{pointer} + {offset}" if offset else pointer


def _calls(template: str, n: int, pointers: dict[str, str]) -> str:
    """`template` (with {n} and the pointers' names) once per piece of the sum, pointers advanced."""
    return " ".join(template.format(n=length, **{k: _at(v, off) for k, v in pointers.items()}) for off, length in _pieces(n))


def _sum(template: str, n: int, pointers: dict[str, str]) -> str:
    """An expression: the pieces' results added."""
    return " + ".join(template.format(n=length, **{k: _at(v, off) for k, v in pointers.items()}) for off, length in _pieces(n))


def _requantize(k: int, s: ConvStep | DenseStep, acc: str, channel: str) -> str:
    """The C expression taking step k's int32 sum `acc` of output channel `channel` to its code."""
    r = s.requant
    return f"(cnn_q)cnn_requantize({acc}, cnn_m{k}[{channel}], cnn_s{k}[{channel}], {r.zero_point}, {r.low}, {r.high})"


def _gather(s: ConvStep, patch: str, column: str) -> str:
    """The C call copying the window of output pixel (oy, `column`), group g, into `patch`."""
    ih, iw, ic = s.input.hwc
    _, kh, kw, icg = s.weights.shape
    sy, sx = s.stride
    pt, pl = s.pads[0], s.pads[1]
    return (f"cnn_gather(in, {patch}, oy * {sy} - {pt}, {column} * {sx} - {pl}, {kh}, {kw}, {ih}, {iw}, {ic}, "
            f"g * {icg}, {icg}, {s.input.q.zero_point});")


def channels_inner(s: ConvStep) -> bool:
    """A short window (the first layer's 3x3x1) and many output channels: the sums run over the
    output channels innermost, vectorized across them, with the weights stored (groups, window, OC/groups)."""
    ocg = s.output.shape[0] // s.groups
    return ocg >= 8 and int(np.prod(s.weights.shape[1:])) <= 32


def _conv_channels_inner_c(k: int, s: ConvStep) -> str:
    oh, ow, oc = s.output.hwc
    g = s.groups
    ocg = oc // g
    n = int(np.prod(s.weights.shape[1:]))  # one window of one group: kh * kw * ic/groups
    return (f"static void cnn_step{k}(const cnn_q *in, cnn_q *out)\n{{\n"
            f"    int16_t patch[{n}]; /* one window of one group, zero point removed */\n"
            f"    int32_t acc[{ocg}];\n"
            f"    int32_t oy, ox, g, i, o;\n"
            f"    for (oy = 0; oy < {oh}; ++oy) {{\n"
            f"        for (ox = 0; ox < {ow}; ++ox) {{\n"
            f"            cnn_q *const dst = out + (oy * {ow} + ox) * {oc};\n"
            f"            for (g = 0; g < {g}; ++g) {{\n"
            f"                const int8_t *w = cnn_w{k} + g * {n * ocg}; /* ({n}, {ocg}): output channels innermost */\n"
            f"                {_gather(s, 'patch', 'ox')}\n"
            f"                for (o = 0; o < {ocg}; ++o) {{\n"
            f"                    acc[o] = cnn_b{k}[g * {ocg} + o];\n"
            f"                }}\n"
            f"                for (i = 0; i < {n}; ++i) {{\n"
            f"                    const int32_t v = patch[i];\n"
            f"                    for (o = 0; o < {ocg}; ++o) {{\n"
            f"                        acc[o] += v * w[i * {ocg} + o];\n"
            f"                    }}\n"
            f"                }}\n"
            f"                for (o = 0; o < {ocg}; ++o) {{\n"
            f"                    const int32_t c = g * {ocg} + o;\n"
            f"                    dst[c] = {_requantize(k, s, 'acc[o]', 'c')};\n"
            f"                }}\n"
            f"            }}\n"
            f"        }}\n"
            f"    }}\n"
            f"}}\n")


def _conv_c(k: int, s: ConvStep) -> str:
    """Output pixels two at a time (two patches), output channels two at a time: each loaded value
    serves two products. An odd last pixel or channel takes the narrower loops."""
    if channels_inner(s):
        return _conv_channels_inner_c(k, s)
    oh, ow, oc = s.output.hwc
    g = s.groups
    ocg = oc // g
    n = int(np.prod(s.weights.shape[1:]))  # one window of one group: kh * kw * ic/groups

    def req(acc: str, c: str) -> str:
        return _requantize(k, s, acc, c)

    def gather(patch: str, x: str) -> str:
        return _gather(s, patch, f"({x})")

    ind = " " * 16
    two = one = ""
    if ocg > 1:
        two += (f"{ind}    for (o = 0; o + 1 < {ocg}; o += 2) {{\n"
                f"{ind}        const int32_t c0 = g * {ocg} + o, c1 = c0 + 1;\n"
                f"{ind}        int32_t acc[4];\n"
                f"{ind}        acc[0] = acc[2] = cnn_b{k}[c0];\n"
                f"{ind}        acc[1] = acc[3] = cnn_b{k}[c1];\n"
                f"{ind}        " + _calls("cnn_dot22({x0}, {x1}, {w0}, {w1}, {n}, acc);", n, dict(
                    x0="patch[0]", x1="patch[1]", w0=f"w + o * {n}", w1=f"w + (o + 1) * {n}")) + "\n"
                f"{ind}        dst[c0] = {req('acc[0]', 'c0')};\n"
                f"{ind}        dst[c1] = {req('acc[1]', 'c1')};\n"
                f"{ind}        dst[{oc} + c0] = {req('acc[2]', 'c0')};\n"
                f"{ind}        dst[{oc} + c1] = {req('acc[3]', 'c1')};\n"
                f"{ind}    }}\n")
        one += (f"{ind}    for (o = 0; o + 1 < {ocg}; o += 2) {{\n"
                f"{ind}        const int32_t c0 = g * {ocg} + o, c1 = c0 + 1;\n"
                f"{ind}        int32_t acc0 = cnn_b{k}[c0], acc1 = cnn_b{k}[c1];\n"
                f"{ind}        " + _calls("cnn_dot2({x}, {w0}, {w1}, {n}, &acc0, &acc1);", n, dict(
                    x="patch[0]", w0=f"w + o * {n}", w1=f"w + (o + 1) * {n}")) + "\n"
                f"{ind}        dst[c0] = {req('acc0', 'c0')};\n"
                f"{ind}        dst[c1] = {req('acc1', 'c1')};\n"
                f"{ind}    }}\n")
    if ocg % 2:
        last = f"g * {ocg} + {ocg - 1}"
        tail = (f"{ind}    {{\n"
                f"{ind}        const int32_t c0 = {last};\n"
                f"{ind}        dst[c0] = {req(f'cnn_b{k}[c0] + ' + _sum('cnn_dot1({x}, {w}, {n})', n, dict(x='patch[0]', w=f'w + {(ocg - 1) * n}')), 'c0')};\n"
                f"{ind}        #\n"
                f"{ind}    }}\n")
        two += tail.replace("#", f"dst[{oc} + c0] = " + req(f"cnn_b{k}[c0] + " + _sum("cnn_dot1({x}, {w}, {n})", n, dict(
            x="patch[1]", w=f"w + {(ocg - 1) * n}")), "c0") + ";")
        one += tail.replace(f"{ind}        #\n", "")
    return (f"static void cnn_step{k}(const cnn_q *in, cnn_q *out)\n{{\n"
            f"    int16_t patch[2][{n}]; /* windows of two pixels, one group: (KH, KW, IC/groups), zero point removed */\n"
            f"    int32_t oy, ox, g{', o' if ocg > 1 else ''};\n"
            f"    for (oy = 0; oy < {oh}; ++oy) {{\n"
            f"        for (ox = 0; ox < {ow}; ox += 2) {{\n"
            f"            cnn_q *const dst0 = out + (oy * {ow} + ox) * {oc};\n"
            f"            for (g = 0; g < {g}; ++g) {{\n"
            f"                const int8_t *w = cnn_w{k} + g * {ocg * n};\n"
            f"                cnn_q *const dst = dst0;\n"
            f"                {gather('patch[0]', 'ox')}\n"
            f"                if (ox + 1 < {ow}) {{\n"
            f"                    {gather('patch[1]', 'ox + 1')}\n"
            f"{two}"
            f"                }} else {{\n"
            f"{one}"
            f"                }}\n"
            f"            }}\n"
            f"        }}\n"
            f"    }}\n"
            f"}}\n")


def _dense_c(k: int, s: DenseStep) -> str:
    """Outputs four at a time (each input code loaded once for four products), then two, then one."""
    n_out, n_in = s.weights.shape

    def req(acc: str, o: str) -> str:
        return _requantize(k, s, acc, o)

    fours, rest = n_out // 4 * 4, n_out % 4
    body = ""
    if fours:
        body += (f"    for (o = 0; o < {fours}; o += 4) {{\n"
                 f"        int32_t acc[4];\n"
                 f"        acc[0] = cnn_b{k}[o];\n"
                 f"        acc[1] = cnn_b{k}[o + 1];\n"
                 f"        acc[2] = cnn_b{k}[o + 2];\n"
                 f"        acc[3] = cnn_b{k}[o + 3];\n"
                 f"        " + _calls("cnn_dot4_q({x}, {w}, " + str(n_in) + ", {n}, acc);", n_in, dict(
                     x="in", w=f"cnn_w{k} + o * {n_in}")) + "\n"
                 + "".join(f"        out[o + {j}] = {req(f'acc[{j}]', f'o + {j}')};\n" for j in range(4))
                 + "    }\n")
    if rest >= 2:
        o = fours
        body += (f"    {{\n"
                 f"        int32_t acc0 = cnn_b{k}[{o}], acc1 = cnn_b{k}[{o + 1}];\n"
                 f"        " + _calls("cnn_dot2_q({x}, {w0}, {w1}, {n}, &acc0, &acc1);", n_in, dict(
                     x="in", w0=f"cnn_w{k} + {o * n_in}", w1=f"cnn_w{k} + {(o + 1) * n_in}")) + "\n"
                 f"        out[{o}] = {req('acc0', str(o))};\n"
                 f"        out[{o + 1}] = {req('acc1', str(o + 1))};\n"
                 f"    }}\n")
    if rest % 2:
        last = n_out - 1
        total = _sum("cnn_dot1_q({x}, {w}, {n})", n_in, dict(x="in", w=f"cnn_w{k} + {last * n_in}"))
        body += f"    out[{last}] = {req(f'cnn_b{k}[{last}] + {total}', str(last))};\n"
    decl = "    int32_t o;\n" if fours else ""
    return f"static void cnn_step{k}(const cnn_q *in, cnn_q *out)\n{{\n{decl}{body}}}\n"


def _pool_c(k: int, s) -> str:
    ih, iw, c = s.input.hwc
    oh, ow = (s.output.hwc[:2] if len(s.output.shape) == 3 else (1, 1))
    kh, kw = s.kernel
    sy, sx = s.stride
    pt, pl = s.pads[0], s.pads[1]
    if isinstance(s, MaxPoolStep):
        call = f"cnn_maxpool(in, out, {ih}, {iw}, {c}, {oh}, {ow}, {kh}, {kw}, {sy}, {sx}, {pt}, {pl});"
    else:
        r = s.requant
        call = (f"cnn_avgpool(in, out, {ih}, {iw}, {c}, {oh}, {ow}, {kh}, {kw}, {sy}, {sx}, {pt}, {pl}, "
                f"{int(s.per_count)}, cnn_m{k}, cnn_s{k}, {s.input.q.zero_point}, {r.zero_point}, {r.low}, {r.high});")
    return f"static void cnn_step{k}(const cnn_q *in, cnn_q *out)\n{{\n    {call}\n}}\n"


def _lut_c(k: int, s: LutStep) -> str:
    if s.input is None:
        return (f"static void cnn_step{k}(const uint8_t *in, cnn_q *out)\n{{\n"
                f"    cnn_lut_pixels(in, out, {s.output.size}, cnn_t{k});\n}}\n")
    rows = s.table.shape[0]
    return (f"static void cnn_step{k}(const cnn_q *in, cnn_q *out)\n{{\n"
            f"    cnn_lut(in, out, {s.output.size}, cnn_t{k}, {rows}, {-s.input.q.low});\n}}\n")


def _constants(k: int, s: Step, qtype: str) -> str:
    if isinstance(s, (ConvStep, DenseStep)):
        weights = s.weights
        if isinstance(s, ConvStep) and channels_inner(s):  # (groups, window, OC/groups)
            weights = weights.reshape(s.groups, s.output.shape[0] // s.groups, -1).transpose(0, 2, 1)
        return (_array("int8_t", f"cnn_w{k}", weights) + _array("int32_t", f"cnn_b{k}", s.bias)
                + _array("int32_t", f"cnn_m{k}", s.requant.multiplier) + _array("uint8_t", f"cnn_s{k}", s.requant.shift))
    if isinstance(s, AvgPoolStep):
        return _array("int32_t", f"cnn_m{k}", s.requant.multiplier) + _array("uint8_t", f"cnn_s{k}", s.requant.shift)
    if isinstance(s, LutStep):
        table = s.table
        if table.shape[0] > 1 and s.input is not None and len(s.input.shape) != 3:
            table = table[s.input.order]  # one row per stored position of a flat tensor
        return _array(qtype, f"cnn_t{k}", table)
    return ""


def _describe(k: int, s: Step) -> str:
    shape_in = "pixels (1, 28, 28)" if s.input is None else str(s.input.shape)
    what = {"lut": "table", "conv": "convolution", "dense": "dense", "maxpool": "max pooling", "avgpool": "average pooling"}[s.kind]
    extra = ""
    if isinstance(s, ConvStep):
        extra = (f", kernel {s.weights.shape[1]}x{s.weights.shape[2]}, stride {s.stride[0]}x{s.stride[1]}, "
                 f"pads {tuple(s.pads)}, {s.groups} group(s), {s.macs:,} multiply-adds")
    elif isinstance(s, DenseStep):
        extra = f", {s.macs:,} multiply-adds"
    nodes = ", ".join(s.nodes)
    return f"/* step {k}: {what} {shape_in} -> {s.output.shape}{extra}\n * ONNX nodes: {nodes} */\n"


def _helpers(program: Int8Program) -> str:
    """The kernels the program uses, from cnn_edge_kernels.c."""
    text = _resource("cnn_edge_kernels.c")
    kinds = {s.kind for s in program.steps}
    wanted = {"requantize"} if kinds & {"conv", "dense", "avgpool"} else set()
    convs = [s for s in program.steps if isinstance(s, ConvStep) and not channels_inner(s)]
    wanted |= {"gather"} if any(isinstance(s, ConvStep) for s in program.steps) else set()
    denses = [s for s in program.steps if isinstance(s, DenseStep)]
    ocg = [s.output.shape[0] // s.groups for s in convs]
    wanted |= {"dot1"} if any(n % 2 for n in ocg) else set()
    wanted |= {"dot2", "dot22"} if any(n > 1 for n in ocg) else set()
    wanted |= {"dot1_q"} if any(s.weights.shape[0] % 2 for s in denses) else set()
    wanted |= {"dot2_q"} if any(s.weights.shape[0] % 4 >= 2 for s in denses) else set()
    wanted |= {"dot4_q"} if any(s.weights.shape[0] >= 4 for s in denses) else set()
    wanted |= {k for k in ("maxpool", "avgpool") if k in kinds}
    wanted |= {"lut_pixels"}
    if any(isinstance(s, LutStep) and s.input is not None for s in program.steps):
        wanted.add("lut")
    parts = re.findall(r"/\* @begin (\w+) \*/\n(.*?)/\* @end \1 \*/", text, re.S)
    return "\n".join(body for name, body in parts if name in wanted)


def _resource(name: str) -> str:
    return resources.files("cnn_edge.release").joinpath("c", name).read_text()


def c_sources(program: Int8Program, placement: _Placement, model_sha256: str, architecture: str) -> dict[str, str]:
    """File name -> text, for every generated file (the static ones are copied by write)."""
    qtype = "uint8_t" if program.activation_type == "uint8" else "int8_t"
    header = Template(_resource("cnn_edge.h.in")).substitute(
        architecture=architecture, version=__version__, model=program.model.name, sha256=model_sha256,
        classes=program.output.size, arena=placement.arena, logit_scale=f"{program.output.q.scale:.9g}",
        logit_zero_point=program.output.q.zero_point, logit_type=qtype)
    weights = [f"/* cnn_edge_weights.h: the constants of {program.model.name} (generated by cnn-edge export-c; do not edit).\n"
               f" * cnn_w: int8 weights, (OC, KH, KW, IC/groups) or (OUT, IN) in the input's storage order;\n"
               f" * cnn_b: int32 biases, round(bias / (input scale * weight scale)) (dense: minus input zero point * sum(w));\n"
               f" * cnn_m, cnn_s: requantization multipliers (31 bits) and right shifts, per output channel\n"
               f" * (average pooling: per window count); cnn_t: tables of 256 codes (per channel where several). */\n"]
    steps_c = []
    for k, step in enumerate(program.steps):
        weights.append(_constants(k, step, qtype))
        maker = {"conv": _conv_c, "dense": _dense_c, "maxpool": _pool_c, "avgpool": _pool_c, "lut": _lut_c}[step.kind]
        steps_c.append(_describe(k, step) + maker(k, step))
    calls = []
    for k, step in enumerate(program.steps):
        src = "image" if placement.inputs[k] is None else f"cnn_arena + {placement.inputs[k]}"
        dst = "logits" if placement.outputs[k] is None else f"cnn_arena + {placement.outputs[k]}"
        calls.append(f"    cnn_step{k}({src}, {dst});")
    body = (f"/* cnn_edge.c: {architecture}, integer-only (generated by cnn-edge export-c {__version__} from "
            f"{program.model.name}; do not edit). */\n"
            f"#include \"cnn_edge.h\"\n\n"
            f"typedef {qtype} cnn_q; /* the activations' codes: {program.activation_type} */\n\n"
            f"#include \"cnn_edge_weights.h\"\n\n"
            f"/* Every activation, in turn: each step reads one end and writes the other. */\n"
            f"static cnn_q cnn_arena[CNN_EDGE_ARENA_BYTES];\n\n"
            + _helpers(program) + "\n" + "\n".join(steps_c) + "\n"
            "int cnn_edge_predict(const uint8_t image[CNN_EDGE_PIXELS], cnn_edge_logit_t logits[CNN_EDGE_CLASSES])\n{\n"
            "    int i, best = 0;\n" + "\n".join(calls) + "\n"
            "    for (i = 1; i < CNN_EDGE_CLASSES; ++i) {\n"
            "        if (logits[i] > logits[best]) {\n"
            "            best = i;\n"
            "        }\n"
            "    }\n"
            "    return best;\n}\n")
    makefile = ("# Build the example program (cnn-edge export-c). validate-c compiles with these flags too.\n"
                "CC ?= cc\n"
                f"CFLAGS ?= {' '.join(CFLAGS)}\n\n"
                "cnn_edge_main: main.c cnn_edge.c cnn_edge_softmax.c cnn_edge.h cnn_edge_weights.h\n"
                "\t$(CC) $(CFLAGS) -o $@ main.c cnn_edge.c cnn_edge_softmax.c -lm\n\n"
                "clean:\n\trm -f cnn_edge_main\n")
    return {"cnn_edge.h": header, "cnn_edge.c": body, "cnn_edge_weights.h": "\n".join(weights), "Makefile": makefile}


STATIC_FILES = ("main.c", "cnn_edge_softmax.c", "cortex_m4/startup.S", "cortex_m4/mps2_an386.ld")


def _architecture(model: Path) -> str:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    return props.get(C.META_ARCHITECTURE, model.stem)


def _check_folder(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"-o {out} is a file; give a folder for the C sources")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise OutputPathError(f"-o {out} is a folder with other files in it; give a new or empty folder "
                              f"(or one export-c wrote: it has {MANIFEST})")
    try:
        (out / "cortex_m4").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create folder {out}: {exc.strerror}") from None
    return out


def export_c(model: Path, out: Path) -> ExportCReport:
    """Write the C sources of the int8 model `model` into the folder `out` (each file atomically).
    Raises UnsupportedModelError naming the operator or node it cannot translate (nothing written)."""
    model = Path(model).resolve()  # validate-c finds it from any folder
    program = read_program(model)  # refusals come before any file is written
    out = _check_folder(out)
    placement = plan_arena(program)
    sha = sha256_file(model)
    architecture = _architecture(model)
    files = c_sources(program, placement, sha, architecture)
    for name in STATIC_FILES:
        files[name] = _resource(name)
    for name, text in files.items():
        atomic_write_text(out / name, text)
    written = sorted(files)
    vectors = vector_images(model)
    if vectors is not None:  # something to try main.c on at once: the first test vector
        atomic_write_bytes(out / SAMPLE, pgm(vectors[0]))
        written.append(SAMPLE)
    report = _report(program, placement, model, sha, architecture, out, written + [MANIFEST])
    atomic_write_bytes(out / MANIFEST, (dumps(report) + "\n").encode())
    return report


def _report(program: Int8Program, placement: _Placement, model: Path, sha: str, architecture: str, out: Path,
            files: list[str]) -> ExportCReport:
    steps = []
    for k, s in enumerate(program.steps):
        steps.append(CStep(k, s.kind, list(s.nodes), None if s.input is None else list(s.input.shape),
                           list(s.output.shape), getattr(s, "macs", 0), _bytes_of(s), placement.in_place[k]))
    int8_weight_bytes = sum(s.weights.size + 4 * s.bias.size for s in program.steps if isinstance(s, (ConvStep, DenseStep)))
    patch = max((2 * 2 * int(np.prod(s.weights.shape[1:])) for s in program.steps if isinstance(s, ConvStep)), default=0)
    notes = ["const_bytes = int8 weights + int32 biases + int32 multipliers + uint8 shifts + 256-entry tables",
             "arena_bytes = the largest input + output of one step (table steps in place); one byte per activation"]
    return ExportCReport(model, sha, architecture, out, files, program.activation_type, program.output.q.scale,
                         program.output.q.zero_point, steps, program.macs, sum(x.const_bytes for x in steps),
                         int8_weight_bytes, placement.arena, patch, notes=notes)


def vector_images(model: Path) -> Optional[np.ndarray]:
    """The images of the test vectors beside the model (test_vectors.json) as uint8 (N, 28, 28);
    None without them."""
    from ..core.artifacts import vectors_beside

    path = vectors_beside(Path(model))
    if not path.is_file():
        return None
    try:
        pixels = np.array([v["pixels"] for v in json.loads(path.read_text())["vectors"]], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pixels.ndim != 2 or pixels.shape[1] != 28 * 28 or pixels.min() < 0 or pixels.max() > 255 or np.any(pixels % 1):
        return None
    return pixels.astype(np.uint8).reshape(-1, 28, 28)


def pgm(image: np.ndarray) -> bytes:
    """A 28x28 uint8 image as a binary PGM, what main.c reads."""
    return b"P5\n28 28\n255\n" + np.ascontiguousarray(image, np.uint8).tobytes()


def read_manifest(folder: Path) -> dict:
    """The export's report as written (validate-c reads the model's path and hash from it)."""
    from ..core.errors import ConfigError

    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder} has no {MANIFEST}: give a folder written by cnn-edge export-c") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc})") from None
