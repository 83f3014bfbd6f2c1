"""Open an ONNX model with ONNX Runtime and check it against the contract. Torch-free."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..core import contract as C
from ..core.constants import CLASS_LABELS
from ..core.errors import ModelFileError, ModelOutputError, first_line
from .compat import is_int8_model
from .model_file import read_model_bytes
from .providers import Choice


# The error of a row whose probabilities are not numbers: the model's fault, for this input alone
# (a faulty graph can overflow on some inputs only), so the row fails and the run goes on.
NON_FINITE_ROW = ("the model returned NaN or infinite probabilities for this image: a fault of the model, "
                  "not of the image")


def non_finite_rows(probabilities: np.ndarray) -> np.ndarray:
    """The rows (bool, (batch,)) holding a NaN or an infinity: the one test behind every caller's
    handling of them (failed rows, or a refused model)."""
    return ~np.isfinite(np.asarray(probabilities)).all(axis=1)


def check_outputs(model: object, batch: int, classes: int, probabilities, logits=None) -> np.ndarray:
    """What a model returned for a batch of `batch` inputs, checked against the contract: both
    outputs (batch, classes).

    Returns the rows (bool, (batch,)) whose probabilities are not finite: each caller fails those
    rows alone. Raises ModelOutputError naming `model` and the shapes for anything else, which
    would make every row wrong: one row for a batch of many (numpy would copy it to every row),
    another rank or class count. Values are not judged: a user's model may close with scores that
    are no softmax, and its rows are written (and resumed) with the scores it gives; validate
    measures what they are worth."""
    for name, out in ((C.OUTPUT_PROBABILITIES, probabilities), (C.OUTPUT_LOGITS, logits)):
        if out is None:
            continue
        shape = tuple(np.shape(out))
        if shape != (batch, classes):
            why = ""
            if len(shape) >= 1 and shape[0] != batch:
                why = (f": {shape[0]} row{'s' if shape[0] != 1 else ''} for {batch} inputs (a graph that "
                       f"reduces or slices the batch axis)")
            elif len(shape) == 2:
                why = f": {shape[1]} classes, but it has {classes} labels"
            raise ModelOutputError(f"{model} returned {name} of shape {_describe_shape(shape)} for a batch of "
                                   f"{batch}{why}; the contract is [{batch}, {classes}]")
    return non_finite_rows(probabilities)


def run_session(session, model: object, pixels: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """pixels (B, 1, 28, 28) float32 -> (probabilities, logits), each (B, classes), through an ONNX
    Runtime session of `model`, checked by check_outputs (rows that are not finite come back as
    they are). A failure inside ONNX Runtime (a Reshape that does not fit the batch, say) is a
    ModelOutputError too: one line, never a traceback or a dead worker. The one run every engine
    makes: OnnxModel.run, and the scoring workers of the local engine."""
    try:
        probs, logits = session.run(list(C.OUTPUT_NAMES), {C.INPUT_NAME: pixels})
    except Exception as exc:  # onnxruntime's Fail, InvalidArgument, RuntimeException...
        raise ModelOutputError(f"{model} failed to run on a batch of {len(pixels)}: {first_line(exc)}") from None
    check_outputs(model, len(pixels), classes, probs, logits)
    return probs, logits


def refuse_non_finite(model: object, probs: np.ndarray, first: int = 0) -> None:
    """For callers that judge a whole model (validate, quantize, bench): one row whose probabilities
    are not numbers is a faulty model. Raises ModelOutputError naming the first such input."""
    bad = np.flatnonzero(non_finite_rows(probs))
    if len(bad):
        raise ModelOutputError(f"{model} returned NaN or infinite {C.OUTPUT_PROBABILITIES} for {len(bad):,} of "
                               f"{len(probs):,} images (the first: image {first + bad[0]}); the model is faulty")


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
    classes: int | None = None  # the class count its outputs declare; None: not fixed in the graph

    @property
    def provider(self) -> str:
        """The provider that actually runs it (cpu, cuda, tensorrt, openvino)."""
        return self.choice.provider

    def run(self, pixels: np.ndarray, *, checked: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """pixels (B, 1, 28, 28) float32 0..255 -> (probabilities, logits), each (B, classes), checked
        by check_outputs (ModelOutputError; rows that are not finite come back as they are).
        `checked=False` is for timing loops only, after one checked run."""
        if not checked:
            probs, logits = self.session.run(list(C.OUTPUT_NAMES), {C.INPUT_NAME: pixels})
            return probs, logits
        return run_session(self.session, self.path, pixels, len(self.class_labels))

    def run_strict(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """run, refusing a batch with any row that is not finite (ModelOutputError)."""
        probs, logits = self.run(pixels)
        refuse_non_finite(self.path, probs)
        return probs, logits

    def run_batched(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """uint8 or float images (N, 28, 28) -> (probabilities, logits) (N, classes), in batches.
        Judges the whole model (validate, quantize): any row that is not finite raises ModelOutputError."""
        probs, logits = run_in_batches(self.run, images, batch_size)
        refuse_non_finite(self.path, probs)
        return probs, logits

    @cached_property
    def is_int8(self) -> bool:
        """Whether its graph is quantized (compat.is_int8_model: the one answer), read when asked."""
        return is_int8_model(self.data, self.path)

    @cached_property
    def class_labels(self) -> list[str]:
        """The labels the model's metadata declares (checked when it was opened); without any, the
        class numbers "0".."N-1" for the N classes its graph declares (the contract's 10 when the
        graph leaves that open: a run that returns another count is refused)."""
        raw = self.metadata.get(C.META_CLASS_LABELS)
        if raw:
            return json.loads(raw)
        return [str(i) for i in range(self.classes)] if self.classes else list(CLASS_LABELS)

    def metadata_float(self, key: str) -> float | None:
        """A number the metadata states (e.g. its test accuracy); None when absent or empty."""
        raw = self.metadata.get(key, "")
        if not raw:
            return None
        try:
            return float(raw)
        except ValueError:
            raise ModelFileError(f"{self.path} has malformed metadata: {key} = {raw[:40]!r} is not a number") from None


def _check_metadata(path: Path, metadata: dict[str, str], classes: int | None) -> None:
    """Metadata a cnn-edge model reads back must be what export writes: one line naming the key
    otherwise, never a traceback later. `classes`: the count the graph declares (None: open; the
    first run checks it against the labels).

    Labels are any distinct strings, the empty one included (a row's error cell, not its label,
    says whether it was classified); repeated labels are refused: their rows could not be told apart."""
    raw = metadata.get(C.META_CLASS_LABELS)
    if raw is None:
        return
    try:
        labels = json.loads(raw)
    except ValueError:
        labels = None
    want = f"{classes} " if classes else ""
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)
            and len(set(labels)) == len(labels)):
        raise ModelFileError(f"{path} has malformed metadata: {C.META_CLASS_LABELS} must be a JSON list of "
                             f"{want}distinct strings, got {raw[:60]!r}")
    if classes and len(labels) != classes:
        raise ModelFileError(f"{path} has malformed metadata: {C.META_CLASS_LABELS} names {len(labels)} classes, "
                             f"but its {C.OUTPUT_PROBABILITIES} has {classes}; fix the labels (or remove them: "
                             f"the classes are then numbered 0..{classes - 1})")


def _declared_classes(path: Path, outputs) -> int | None:
    """The class count the graph declares for its outputs (None when it leaves it open), after
    refusing declared shapes no run could fit: another rank, a fixed batch, zero classes, two counts."""
    counts = set()
    for out in outputs:
        shape = list(out.shape or [])
        if not shape:  # no shape declared (or a scalar): the first run checks it
            continue
        problem = ""
        if len(shape) != 2:
            problem = f"rank {len(shape)}"
        elif isinstance(shape[0], int):
            problem = f"a fixed batch of {shape[0]} (the input's batch is dynamic)"
        elif isinstance(shape[1], int) and shape[1] < 1:
            problem = "no classes"
        if problem:
            raise ModelFileError(f"{path} declares output {out.name!r} of shape {_describe_shape(shape)}, {problem}; "
                                 f"the contract is [batch, classes]")
        if isinstance(shape[1], int):
            counts.add(shape[1])
    if len(counts) > 1:
        raise ModelFileError(f"{path} declares {sorted(counts)} classes on its two outputs; the contract is one count")
    return counts.pop() if counts else None


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
    classes = _declared_classes(path, [o for o in session.get_outputs() if o.name in C.OUTPUT_NAMES])
    _check_metadata(path, metadata, classes)
    return OnnxModel(path, session, metadata, ran_on, data, classes)
