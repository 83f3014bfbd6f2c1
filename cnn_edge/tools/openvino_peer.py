"""The OpenVINO runtime itself, as a peer of ONNX Runtime: load an ONNX file, run it, time it.

`predict` and the Predictor API run OpenVINO through ONNX Runtime's plugin execution provider
(runtime/providers.py), so ONNX Runtime stays the one API. This module opens a model in the
`openvino` package directly: the portability test loads the released models in it, and `bench`
times it as a peer row. Needs the optional extra: pip install 'cnn-edge[openvino]'.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..core import contract as C
from ..core.constants import NUM_CLASSES
from ..core.errors import ConfigError, ModelFileError, first_line
from ..runtime.model_file import read_model_bytes
from ..runtime.onnx_model import check_outputs, refuse_non_finite, run_in_batches

# OpenVINO's inference precision hint, as for the plugin provider. Without one, its CPU plugin
# computes an fp32 model in bf16 where the CPU has bf16 (max diff 1.3e-2 in issue 14's
# measurement), so f32 is asked for unless the user says otherwise.
from ..runtime.providers import OPENVINO_INSTALL_HINT, PRECISIONS


@dataclass
class OpenVinoModel:
    path: Path
    compiled: "object"  # openvino.CompiledModel
    precision: str  # the inference precision OpenVINO reports it runs

    def run(self, pixels: np.ndarray, *, checked: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """pixels (B, 1, 28, 28) float32 0..255 -> (probabilities, logits), each (B, 10), checked as
        OnnxModel.run checks them (`checked=False`: timing loops, after one checked run)."""
        out = self.compiled({C.INPUT_NAME: pixels})
        by_name = {port.get_any_name(): value for port, value in out.items()}
        probs, logits = by_name[C.OUTPUT_PROBABILITIES], by_name[C.OUTPUT_LOGITS]
        if checked:
            check_outputs(self.path, len(pixels), NUM_CLASSES, probs, logits)
        return probs, logits

    def run_strict(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, logits = self.run(pixels)
        refuse_non_finite(self.path, probs)
        return probs, logits

    def run_batched(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """uint8 or float images (N, 28, 28) -> (probabilities, logits) (N, 10), in batches."""
        return run_in_batches(self.run, images, batch_size)


def openvino_version() -> Optional[str]:
    """The installed OpenVINO runtime's version, or None when it is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino.get_version().split("-")[0]


def open_openvino(path: Path, *, precision: str = "f32", threads: Optional[int] = None) -> OpenVinoModel:
    """Read `path` with OpenVINO's ONNX front end and compile it for the CPU.

    Raises ConfigError when OpenVINO is not installed or the precision is unknown, ModelFileError
    when OpenVINO cannot convert the model (e.g. an ONNX Runtime contrib op such as QGemm)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    try:
        import openvino as ov
    except ImportError:
        raise ConfigError(f"the OpenVINO runtime is not installed; {OPENVINO_INSTALL_HINT}") from None
    path = Path(path)
    read_model_bytes(path)  # the same refusals as ONNX Runtime's loader: not a regular file, external data
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    except RuntimeError as exc:
        raise ModelFileError(f"OpenVINO cannot load {path}: {_openvino_reason(exc)}") from None
    return OpenVinoModel(path, compiled, compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())


def _openvino_reason(exc: Exception) -> str:
    """OpenVINO's exceptions carry a C++ backtrace; the reason is the line naming the operations."""
    lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
    named = [l for l in lines if "operation" in l.lower() or "conversion" in l.lower()]
    return (named or lines or [first_line(exc)])[-1][:300]
