"""Quantization's typed config and report: what quantize.py takes and returns.

Torch- and onnx-free, so the CLI reads the defaults and choices without loading either. The report
(JSON through reports.py) holds the guard's search, fp32 against int8 on the test set, sizes, speed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import contract as C
from .constants import DEFAULT_VAL_SIZE
from .errors import ConfigError
from .runtime import compat
from .runtime.timing import Speed

METHODS = ("minmax", "entropy", "percentile")
FORMATS = ("qdq", "qoperator")
TYPES = ("uint8", "int8")
QUANTIZED_OPS = compat.QUANTIZED_OPS  # declared once, beside the runtimes' operator tables
LAYER_OPS = ("Conv", "Gemm", "MatMul")  # nodes that carry a layer's weights, named in reports


@dataclass(frozen=True)
class QuantConfig:
    calibration: int = 3000  # training images used to calibrate activation ranges
    method: str = "minmax"  # minmax | entropy | percentile
    # The release is portable ONNX: QDQ pairs (QuantizeLinear/DequantizeLinear) around standard
    # float ops, the standard domain only, so OpenVINO, TensorRT and every ONNX Runtime load it.
    # int8 activations with zero points of 0 (symmetric) and biases left in float, since TensorRT's
    # Q/DQ takes int8 with zero point 0 and nothing else (no int32 bias DequantizeLinear).
    # Per-channel weight scales, chosen by scripts/bench_quant.py (docs/quantization.md): as accurate
    # as per-tensor, and faster in both ONNX Runtime and OpenVINO on the machine measured.
    # QOperator (QLinearConv plus com.microsoft.QGemm) is ONNX Runtime-only: an option, never the release.
    per_channel: bool = True  # True: one weight scale per output channel
    format: str = "qdq"  # qdq (Q/DQ pairs around float ops) | qoperator (QLinearConv, QGemm; ONNX Runtime only)
    activation_type: str = "int8"
    weight_type: str = "int8"
    symmetric: bool = True  # int8 activations get zero points of 0 (uint8 ones are always asymmetric); weights are symmetric anyway
    quantize_bias: bool = False  # True: int32 biases behind DequantizeLinear (ONNX Runtime's default; TensorRT refuses them)
    dynamic: bool = False  # weight-only dynamic quantization instead (no calibration)
    max_drop: float = C.INT8_MAX_ACCURACY_DROP_PP  # percentage points, on the guard split
    guard_size: int = DEFAULT_VAL_SIZE
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value, allowed in (("method", self.method, METHODS), ("format", self.format, FORMATS),
                                     ("activation type", self.activation_type, TYPES),
                                     ("weight type", self.weight_type, TYPES)):
            if value not in allowed:
                raise ConfigError(f"unexpected {name} {value!r}: choose one of {', '.join(allowed)}")
        if self.calibration < 1:
            raise ConfigError(f"--calibration must be at least 1, got {self.calibration}")
        if self.max_drop < 0:
            raise ConfigError(f"--max-drop must be >= 0 percentage points, got {self.max_drop}")


def portable_format(cfg: QuantConfig) -> str:
    """How the model card and the metadata name the int8 format."""
    if cfg.dynamic:
        return "dynamic (ConvInteger/MatMulInteger, weights only)"
    if cfg.format == "qoperator":
        return "QOperator (QLinearConv + com.microsoft ops: ONNX Runtime only)"
    zero_points = ", zero points 0" if cfg.symmetric and cfg.activation_type == "int8" else ""
    zero_points += ", int32 biases" if cfg.quantize_bias else ", float biases"
    return (f"QDQ, standard ONNX domain only ({'per-channel' if cfg.per_channel else 'per-tensor'} {cfg.weight_type} "
            f"weights, {cfg.activation_type} activations{zero_points})")


# The batch sizes the report times: one image (latency) and a full batch (throughput).
LATENCY_BATCH, THROUGHPUT_BATCH = 1, 256


@dataclass
class GuardStep:
    excluded: list[str]  # nodes kept in float in this attempt
    guard_accuracy: float
    drop_pp: float


@dataclass
class GuardReport:
    """The accuracy guard on held-out training images: every attempt, and the one kept."""

    samples: int
    fp32_accuracy: float
    int8_accuracy: float
    drop_pp: float  # percentage points lost by the kept attempt
    max_drop_pp: float
    attempts: list[GuardStep] = field(default_factory=list)


@dataclass
class TestComparison:
    """fp32 against int8 on the MNIST test set."""

    samples: int
    fp32_accuracy: float
    int8_accuracy: float
    top1_agreement: float  # int8 vs fp32 predictions

    json_properties = ("drop_pp",)

    @property
    def drop_pp(self) -> float:
        return (self.fp32_accuracy - self.int8_accuracy) * 100


@dataclass
class ModelSpeed:
    """ONNX Runtime on this machine: batch-1 latency and full-batch throughput."""

    batch_1: Speed
    batch_256: Speed


@dataclass
class QuantReport:
    fp32_model: Path
    int8_model: Path
    config: QuantConfig  # what made it
    fp32_bytes: int
    int8_bytes: int
    guard: GuardReport
    test: TestComparison
    nodes_in_float: dict[str, str]  # node -> why the guard kept it in float
    # SQNR in dB of each activation of the quantized model against the float model (higher is
    # better; every 6 dB is a bit). Measured on the QDQ form: for QOperator, the same ranges,
    # weights and exclusions in QDQ form, since fused operators hide their intermediates.
    layer_sqnr_db: dict[str, float]
    fp32_speed: ModelSpeed
    int8_speed: ModelSpeed
    machine: str = ""  # where the speeds were measured (a re-quantized release: not where it trained)

    json_properties = ("size_ratio", "throughput_ratio")

    @property
    def size_ratio(self) -> float:
        return self.int8_bytes / self.fp32_bytes

    @property
    def throughput_ratio(self) -> float:
        """int8 images/s over fp32 images/s at the throughput batch size."""
        return self.int8_speed.batch_256.images_per_second / self.fp32_speed.batch_256.images_per_second
