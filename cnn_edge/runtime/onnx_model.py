"""Open an ONNX model with ONNX Runtime and check it against the contract. Torch-free."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..core import contract as C
from ..core.constants import CLASS_LABELS
from ..core.errors import ModelFileError
from .compat import is_int8_model
from .model_file import read_model_bytes
from .providers import Choice


def run_in_batches(run, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """`run` ((B, 1, 28, 28) float32 -> (probabilities, logits)) over uint8 or float images (N, 28, 28),
    in batches -> (probabilities, logits), each (N, 10)."""
    probs, logits = [], []
    for i in range(0, len(images), batch_size):
        p, l = run(images[i : i + batch_size].astype(np.float32)[:, None])  # (B, 1, 28, 28)
        probs.append(p)
        logits.append(l)
    if not probs:
        return np.zeros((0, len(CLASS_LABELS)), np.float32), np.zeros((0, len(CLASS_LABELS)), np.float32)
    return np.concatenate(probs), np.concatenate(logits)


@dataclass
class OnnxModel:
    path: Path
    session: "object"  # onnxruntime.InferenceSession
    metadata: dict[str, str] = field(default_factory=dict)
    choice: Choice = field(default_factory=lambda: Choice("cpu", "asked for"))  # what runs it, and why
    data: bytes = field(default=b"", repr=False)  # the file's bytes as checked: what decoding workers load

    @property
    def provider(self) -> str:
        """The provider that actually runs it (cpu, cuda, tensorrt, openvino)."""
        return self.choice.provider

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pixels (B, 1, 28, 28) float32 0..255 -> (probabilities, logits), each (B, 10)."""
        probs, logits = self.session.run(list(C.OUTPUT_NAMES), {C.INPUT_NAME: pixels})
        return probs, logits

    def run_batched(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """uint8 or float images (N, 28, 28) -> (probabilities, logits) (N, 10), in batches."""
        return run_in_batches(self.run, images, batch_size)

    @cached_property
    def is_int8(self) -> bool:
        """Whether its graph is quantized (compat.is_int8_model: the one answer), read when asked."""
        return is_int8_model(self.data, self.path)

    @property
    def class_labels(self) -> list[str]:
        """The labels the model's metadata declares (checked when it was opened); the contract's
        when it declares none."""
        raw = self.metadata.get(C.META_CLASS_LABELS)
        return json.loads(raw) if raw else list(CLASS_LABELS)

    def metadata_float(self, key: str) -> float | None:
        """A number the metadata states (e.g. its test accuracy); None when absent or empty."""
        raw = self.metadata.get(key, "")
        if not raw:
            return None
        try:
            return float(raw)
        except ValueError:
            raise ModelFileError(f"{self.path} has malformed metadata: {key} = {raw[:40]!r} is not a number") from None


def _check_metadata(path: Path, metadata: dict[str, str], classes: int) -> None:
    """Metadata a cnn-edge model reads back must be what export writes: one line naming the key
    otherwise, never a traceback later."""
    raw = metadata.get(C.META_CLASS_LABELS)
    if raw is not None:
        try:
            labels = json.loads(raw)
        except ValueError:
            labels = None
        if not (isinstance(labels, list) and len(labels) == classes and all(isinstance(x, str) for x in labels)
                and len(set(labels)) == classes):
            raise ModelFileError(f"{path} has malformed metadata: {C.META_CLASS_LABELS} must be a JSON list of "
                                 f"{classes} distinct strings, got {raw[:60]!r}")


def _describe_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def open_model(path: Path, *, provider: str = "cpu", threads: int | None = None, spin: bool = True,
               precision: str = "f32") -> OnnxModel:
    """Load `path` with ONNX Runtime on `provider` (auto|cpu|cuda|tensorrt|openvino) and check its
    input and outputs against the contract. `precision` is OpenVINO's inference precision.

    Raises ModelFileError naming what is wrong: missing file, not ONNX, another input shape or
    dtype, missing outputs; ConfigError when the provider cannot run. `spin=False` stops ONNX
    Runtime's idle threads from busy-waiting, which matters when other processes share the cores."""
    import onnxruntime as ort

    from .providers import create_session

    path = Path(path)
    data = read_model_bytes(path)  # refuses external data before ONNX Runtime sees the model

    def options():
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # keep ONNX Runtime's own warnings off the user's screen
        if threads:
            opts.intra_op_num_threads = threads
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    # Steers auto only, so the graph is read only then (under a millisecond for the released models).
    is_int8 = provider == "auto" and is_int8_model(data, path)
    session, ran_on = create_session(str(path), data, options, provider, precision=precision, is_int8=is_int8)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelFileError(f"{path} has {len(inputs)} inputs; the contract is one input {C.INPUT_NAME!r}")
    inp = inputs[0]
    want = _describe_shape(C.INPUT_SHAPE)
    if inp.name != C.INPUT_NAME:
        raise ModelFileError(f"{path} has input {inp.name!r}; the contract is {C.INPUT_NAME!r} {want}")
    if inp.type != "tensor(float)":
        raise ModelFileError(f"{path} input {inp.name!r} is {inp.type}; the contract is float32")
    shape = list(inp.shape)
    if len(shape) != 4 or shape[1:] != list(C.INPUT_SHAPE[1:]) or isinstance(shape[0], int):
        raise ModelFileError(
            f"{path} has input shape {_describe_shape(shape)}; the contract is {want} with a dynamic batch"
        )
    outputs = {o.name for o in session.get_outputs()}
    missing = [n for n in C.OUTPUT_NAMES if n not in outputs]
    if missing:
        raise ModelFileError(f"{path} lacks outputs {missing}; the contract is {list(C.OUTPUT_NAMES)}")
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    probs = next(o for o in session.get_outputs() if o.name == C.OUTPUT_PROBABILITIES)
    classes = probs.shape[-1] if probs.shape and isinstance(probs.shape[-1], int) else len(CLASS_LABELS)
    _check_metadata(path, metadata, classes)
    return OnnxModel(path, session, metadata, ran_on, data)
