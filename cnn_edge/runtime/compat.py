"""Will this ONNX file load in a given runtime? IR version and opsets against known limits. Torch-free.

A runtime refuses a model whose IR version or default-domain opset is newer than it knows
("Unsupported model IR version: 10, max supported IR version: 9"), typically an older
onnxruntime-web bundled into a page. The header fields are read with a tiny protobuf reader, so
the check needs neither onnx nor torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ModelFileError
from .model_file import fields


@dataclass(frozen=True)
class RuntimeLimits:
    name: str
    max_ir_version: int
    max_opset: int
    source: str  # how we know


# The JavaScript runtimes are the versions examples/node/package.json pins; their limits were
# probed by loading models stamped with rising IR versions and opsets. The older releases come
# from ONNX Runtime's published version matrix.
TARGETS = {
    "node": RuntimeLimits("onnxruntime-node 1.30.0", 13, 26, "probed"),
    "web": RuntimeLimits("onnxruntime-web 1.30.0", 13, 26, "same release as node; the browser test loads the model"),
    "ort-1.17": RuntimeLimits("onnxruntime 1.17", 9, 20, "ONNX Runtime version matrix"),
    "ort-1.14": RuntimeLimits("onnxruntime 1.14", 8, 18, "ONNX Runtime version matrix"),
}
DEFAULT_TARGETS = ("node", "web")


@dataclass
class Compatibility:
    target: str
    runtime: str
    ok: bool
    message: str


def model_versions(path: Path) -> tuple[int, dict[str, int]]:
    """(IR version, {opset domain: version}) of an ONNX file (ModelProto fields 1 and 8)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror}") from None
    ir, opsets = None, {}
    try:
        for number, wire, value in fields(data):
            if number == 1 and wire == 0:
                ir = value
            elif number == 8 and wire == 2:
                entry = {n: v for n, _, v in fields(value)}
                domain = bytes(entry.get(1, b"")).decode() or "ai.onnx"
                opsets[domain] = int(entry.get(2, 1))
    except (ModelFileError, UnicodeDecodeError, IndexError, ValueError):
        raise ModelFileError(f"{path} is not an ONNX model (cannot read its header)") from None
    if ir is None:
        raise ModelFileError(f"{path} is not an ONNX model (no IR version)")
    return ir, opsets


def check_targets(path: Path, targets=DEFAULT_TARGETS) -> list[Compatibility]:
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ConfigError(f"unknown target runtime {unknown[0]!r}; choose from {', '.join(TARGETS)}")
    ir, opsets = model_versions(path)
    opset = opsets.get("ai.onnx", 0)
    out = []
    for t in targets:
        lim = TARGETS[t]
        problems = []
        if ir > lim.max_ir_version:
            problems.append(f"IR version {ir} > {lim.max_ir_version}")
        if opset > lim.max_opset:
            problems.append(f"opset {opset} > {lim.max_opset}")
        message = (f"{lim.name} loads IR <= {lim.max_ir_version}, opset <= {lim.max_opset}: model has IR {ir}, opset {opset}"
                   + ("" if not problems else f" ({', '.join(problems)}: it will refuse this model; re-export with a lower "
                                              f"opset or IR version, or upgrade the runtime)"))
        out.append(Compatibility(t, lim.name, not problems, message))
    return out
