"""INT8 quantization with ONNX Runtime's own tooling, guarded by accuracy: its typed config and
report, and the quantization itself.

Static quantization calibrates on MNIST training images; the guard measures the accuracy
drop on the held-out validation split (the one training used for model selection), which
calibration never sees. Torch-free: needs onnx and onnxruntime, imported inside the functions
that use them (as numpy is), so the CLI reads QuantConfig's defaults and choices at start-up
without loading either.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..core import contract as C
from ..core.constants import DEFAULT_VAL_SIZE
from ..core.errors import ConfigError, ModelFileError
from ..core.files import atomic_write_bytes, check_writable, refuse_overwriting
from ..core.machine import machine_description
from ..core.reports import to_jsonable
from ..runtime.timing import Speed, measure

if TYPE_CHECKING:
    import numpy as np

    from ..runtime.onnx_model import OnnxModel
    from ..training.data import MnistSplit

METHODS = ("minmax", "entropy", "percentile")
FORMATS = ("qdq", "qoperator")
TYPES = ("uint8", "int8")
LAYER_OPS = ("Conv", "Gemm", "MatMul")  # nodes that carry a layer's weights, named in reports


# The int8 forms, by the target runtimes each is made for (validate --target's names). Both are QDQ
# in the standard ONNX domain, so every runtime here loads either; each is fastest where it is made for.
#   ort       uint8 activations (asymmetric), int8 per-channel weights, float biases: ONNX Runtime's
#             x86 kernels are uint8 x int8, so its optimizer turns every Conv and Gemm into an integer
#             operator (QLinearConv, QGemm); the release (scripts/bench_quant.py, docs/quantization.md).
#   tensorrt  int8 activations with zero points of 0 and float biases: all TensorRT's Q/DQ takes
#             (onnx-tensorrt's operator matrix); ONNX Runtime's CPU kernels run it slower.
INT8_TARGETS = {"ort": ("ort", "node", "web", "openvino"), "tensorrt": ("tensorrt",)}
_TARGET_SETTINGS = {"ort": dict(activation_type="uint8", symmetric=False, quantize_bias=False),
                    "tensorrt": dict(activation_type="int8", symmetric=True, quantize_bias=False)}


@dataclass(frozen=True)
class QuantConfig:
    calibration: int = 3000  # training images used to calibrate activation ranges
    method: str = "minmax"  # minmax | entropy | percentile
    # The target decides the activation type, their zero points and the biases (INT8_TARGETS above;
    # QuantConfig.for_target sets them); per-channel weight scales were chosen by measurement too.
    # QOperator (QLinearConv plus com.microsoft.QGemm) is ONNX Runtime-only: an option, never the release.
    target: str = "ort"  # ort (ONNX Runtime everywhere, and OpenVINO) | tensorrt
    per_channel: bool = True  # True: one weight scale per output channel
    format: str = "qdq"  # qdq (Q/DQ pairs around float ops) | qoperator (QLinearConv, QGemm; ONNX Runtime only)
    activation_type: str = "uint8"
    weight_type: str = "int8"
    symmetric: bool = False  # int8 activations with zero points of 0 (uint8 ones are always asymmetric); weights are symmetric anyway
    quantize_bias: bool = False  # True: int32 biases behind DequantizeLinear (TensorRT refuses them)
    dynamic: bool = False  # weight-only dynamic quantization instead (no calibration)
    max_drop: float = C.INT8_MAX_ACCURACY_DROP_PP  # percentage points, on the guard split
    guard_size: int = DEFAULT_VAL_SIZE
    seed: int = 0
    # Seconds each model is timed per batch size for the report's speeds (4 timings in all); 0
    # times nothing and the report says so (speeds None). Not part of how the model is made, so
    # the int8 model's metadata leaves it out.
    speed_seconds: float = 2.0

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
        if not self.speed_seconds >= 0:  # NaN too
            raise ConfigError(f"--speed-seconds must be >= 0 (0: no timing), got {self.speed_seconds}")
        if self.target not in INT8_TARGETS:
            raise ConfigError(f"unknown int8 target {self.target!r}: choose one of {', '.join(INT8_TARGETS)}")
        if self.target == "tensorrt" and (self.format != "qdq" or self.dynamic or self.activation_type != "int8"
                                          or not self.symmetric or self.quantize_bias):
            raise ConfigError("--target tensorrt makes TensorRT's form (QDQ, int8 activations with zero points 0, "
                              "float biases); drop --format, --dynamic, --activation-type, --asymmetric and "
                              "--quantize-bias")

    @classmethod
    def for_target(cls, target: str = "ort", **settings) -> "QuantConfig":
        """The config of `target`'s int8 form (INT8_TARGETS); `settings` set the other fields, or
        override the form's (None: the form's own)."""
        if target not in _TARGET_SETTINGS:
            raise ConfigError(f"unknown int8 target {target!r}: choose one of {', '.join(INT8_TARGETS)}")
        chosen = {k: v for k, v in settings.items() if v is not None}
        return cls(target=target, **{**_TARGET_SETTINGS[target], **chosen})

    @property
    def made_for(self) -> tuple[str, ...]:
        """The runtimes (validate --target names) this int8 form is made for."""
        return INT8_TARGETS[self.target] if self.format == "qdq" and not self.dynamic else ("ort", "node", "web")


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
    top1_agreement: Optional[float] = None  # with the fp32 model's top-1 on the guard split (validated equal to PyTorch's); None in records made before it was measured


@dataclass
class GuardReport:
    """The accuracy guard on held-out training images: every attempt, and the one kept."""

    samples: int
    fp32_accuracy: float
    int8_accuracy: float
    drop_pp: float  # percentage points lost by the kept attempt
    max_drop_pp: float
    attempts: list[GuardStep] = field(default_factory=list)
    top1_agreement: Optional[float] = None  # the kept attempt's, with the fp32 model's top-1 (None: not measured)
    min_top1_agreement: float = C.INT8_MIN_TOP1_AGREEMENT  # the contract's limit, as validation applies it


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
    fp32_speed: ModelSpeed | None  # None: not measured (config.speed_seconds 0)
    int8_speed: ModelSpeed | None
    machine: str = ""  # where the speeds were measured (a re-quantized release: not where it trained)

    json_properties = ("size_ratio", "throughput_ratio")

    @property
    def size_ratio(self) -> float:
        return self.int8_bytes / self.fp32_bytes

    @property
    def throughput_ratio(self) -> float | None:
        """int8 images/s over fp32 images/s at the throughput batch size; None when not measured."""
        if self.fp32_speed is None or self.int8_speed is None:
            return None
        return self.int8_speed.batch_256.images_per_second / self.fp32_speed.batch_256.images_per_second


class _Reader:
    """onnxruntime CalibrationDataReader over uint8 images: a feed dict per batch, then None."""

    def __init__(self, images: np.ndarray, batch_size: int = 64):
        self.images, self.batch_size, self.pos = images, batch_size, 0

    def get_next(self):
        import numpy as np

        if self.pos >= len(self.images):
            return None
        batch = self.images[self.pos : self.pos + self.batch_size].astype(np.float32)[:, None]
        self.pos += self.batch_size
        return {C.INPUT_NAME: batch}

    def __iter__(self):  # qdq_loss_debug iterates readers
        return iter(self.get_next, None)


def drop_unused_opsets(proto) -> None:
    """ONNX Runtime's quantizer declares every domain it knows (com.microsoft, ai.onnx.ml, ...);
    keep only those the graph uses, so other runtimes see a standard-domain model as one."""
    used = {n.domain for n in proto.graph.node} | {""}
    kept = [o for o in proto.opset_import if o.domain in used or (o.domain == "ai.onnx" and "" in used)]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)


def candidates(proto) -> list[str]:
    """Nodes the guard may keep in float: all of them, since ONNX Runtime also puts Q/DQ pairs
    around pooling, ReLU and reshapes, and their rounding counts too."""
    return [n.name for n in proto.graph.node if n.op_type != "Softmax"]


def node_labels(proto) -> dict[str, str]:
    """Node name -> a readable label naming its layer (e.g. 'node_conv2d_1 (conv2)')."""
    labels = {}
    for n in proto.graph.node:
        if n.op_type in LAYER_OPS:
            weight = next((i for i in n.input if i.endswith(".weight")), "")
            layer = weight.rsplit(".", 2)[-2] if weight.count(".") >= 1 else ""
            labels[n.name] = f"{n.name} ({layer})" if layer else n.name
    return labels


def _top1(model: OnnxModel, images: np.ndarray) -> np.ndarray:
    probs, _ = model.run_batched(images, 256)
    return probs.argmax(1)


class _PerTensorFallback:
    """A logging filter for one message of ONNX Runtime's quantizer, on the root logger: a batch
    normalization the export could not fold (one after a ReLU or a pooling) keeps a rank-1 scale,
    which per-channel quantization cannot split by axis 1; it is quantized per tensor instead, as
    it should be, and the quantizer's "Axis 1 is out-of-range for weight ..." says nothing to act on."""

    def filter(self, record) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


def _quantize_once(pre: Path, out: Path, cfg: QuantConfig, calib: np.ndarray, cache: Path, exclude: list[str]) -> None:
    import logging

    root, quiet = logging.getLogger(), _PerTensorFallback()
    root.addFilter(quiet)
    try:
        _quantize_with_ort(pre, out, cfg, calib, cache, exclude)
    finally:
        root.removeFilter(quiet)


def _quantize_with_ort(pre: Path, out: Path, cfg: QuantConfig, calib: np.ndarray, cache: Path, exclude: list[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    if cfg.dynamic:
        quantize_dynamic(str(pre), str(out), per_channel=cfg.per_channel, weight_type=qtype[cfg.weight_type],
                         nodes_to_exclude=exclude)
        return
    quantize_static(
        str(pre), str(out), _Reader(calib),
        quant_format=QuantFormat.QDQ if cfg.format == "qdq" else QuantFormat.QOperator,
        per_channel=cfg.per_channel, activation_type=qtype[cfg.activation_type], weight_type=qtype[cfg.weight_type],
        calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                          "percentile": CalibrationMethod.Percentile}[cfg.method],
        nodes_to_exclude=exclude, calibration_cache_path=str(cache),
        extra_options={"ActivationSymmetric": cfg.symmetric and cfg.activation_type == "int8",
                       "QuantizeBias": cfg.quantize_bias},
    )


def _calibration_and_guard(train: MnistSplit, cfg: QuantConfig) -> tuple[np.ndarray, MnistSplit]:
    """Calibration images drawn from outside the guard split, and the guard split itself."""
    import numpy as np

    from ..training.data import MnistSplit, split_indices
    from ..training.recipes import held_out_size

    if cfg.guard_size >= len(train):  # split_indices would blame --val-size, which quantize does not have
        raise ConfigError(f"--guard-size {cfg.guard_size} leaves no training images to calibrate on: only {len(train)} "
                          f"are given; choose a smaller --guard-size (e.g. {held_out_size(len(train), cfg.guard_size).size})")
    train_idx, guard_idx = split_indices(len(train), cfg.guard_size)
    if not cfg.dynamic and cfg.calibration > len(train_idx):
        raise ConfigError(f"--calibration {cfg.calibration} is larger than the {len(train_idx)} training images "
                          f"outside the guard split; use at most {len(train_idx)}")
    rng = np.random.default_rng(cfg.seed)
    calib = train.images[np.sort(rng.choice(train_idx, min(cfg.calibration, len(train_idx)), replace=False))]
    return calib, MnistSplit(train.images[guard_idx], train.labels[guard_idx], train.source)


class _Attempts:
    """Quantizes the preprocessed model with some nodes kept in float and measures each result on
    the guard split. Calibrates once: every retry reuses the cached ranges."""

    def __init__(self, model_path: Path, cfg: QuantConfig, calib: np.ndarray, guard: MnistSplit, fp32_top1: np.ndarray,
                 tmp: Path):
        import onnx
        from onnxruntime.quantization import quant_pre_process

        self.cfg, self.calib, self.guard, self.tmp = cfg, calib, guard, tmp
        self.fp32_top1 = fp32_top1
        self.fp32_acc = float((fp32_top1 == guard.labels).mean())
        self.pre, self.cache = tmp / "pre.onnx", tmp / "calibration.json"
        quant_pre_process(str(model_path), str(self.pre))
        self.pre_proto = onnx.load(str(self.pre))
        # Softmax always runs in float: quantized to 8 bits its probabilities would have a
        # resolution of 1/255 and near-ties would break top-1. It costs nothing measurable.
        self.always_float = [n.name for n in self.pre_proto.graph.node if n.op_type == "Softmax"]
        self.made: dict[tuple[str, ...], Path] = {}  # the model of each attempt, by the nodes it kept in float

    def run(self, exclude: list[str]) -> tuple[Path, GuardStep]:
        from ..runtime.onnx_model import open_model

        out = self.tmp / f"q{len(exclude)}_{abs(hash(tuple(exclude)))}.onnx"
        _quantize_once(self.pre, out, self.cfg, self.calib, self.cache, self.always_float + exclude)
        self.made[tuple(exclude)] = out
        top1 = _top1(open_model(out), self.guard.images)
        acc = float((top1 == self.guard.labels).mean())
        return out, GuardStep(list(exclude), acc, (self.fp32_acc - acc) * 100, float((top1 == self.fp32_top1).mean()))

    def holds(self, step: GuardStep) -> bool:
        """What the int8 validation judges, on the guard split: the accuracy drop within --max-drop and
        top-1 agreement with the fp32 model (which validation proved equal to PyTorch's) at least the
        contract's limit."""
        return step.drop_pp <= self.cfg.max_drop and step.top1_agreement >= C.INT8_MIN_TOP1_AGREEMENT


def _guarded_search(attempts: _Attempts, labels: dict[str, str]) -> tuple[Path, GuardStep, list[GuardStep], dict[str, str]]:
    """Quantize everything; while the int8 criterion fails (attempts.holds: the accuracy drop and
    top-1 agreement with fp32, as the int8 validation judges them), rank the nodes by what each costs
    when quantized (keep it alone in float, measure: agreement first, then accuracy), then keep them in
    float in that order until both hold. Returns (kept model, its attempt, every attempt, why each node
    stayed in float); raises Int8GuardError when nothing is left to keep in float."""
    best_path, best = attempts.run([])
    steps, why = [best], {}
    if not attempts.holds(best):
        singles = [(n, attempts.run([n])[1]) for n in candidates(attempts.pre_proto)]
        steps.extend(t for _, t in singles)
        excluded: list[str] = []
        for name, single in sorted(singles, key=lambda nt: (-nt[1].top1_agreement, -nt[1].guard_accuracy)):
            if attempts.holds(best):
                break
            excluded.append(name)
            best_path, best = attempts.run(excluded)
            steps.append(best)
            why[labels.get(name, name)] = (
                f"quantizing it alone cost {(single.guard_accuracy - steps[0].guard_accuracy) * 100:.3f} points and "
                f"{(single.top1_agreement - steps[0].top1_agreement) * 100:.3f} points of top-1 agreement on the guard "
                f"split; with it in float: drop {best.drop_pp:.3f}, agreement {best.top1_agreement:.2%}")
    if not attempts.holds(best):
        raise Int8GuardError(f"int8 model misses the int8 criterion even with {len(best.excluded)} nodes in float: "
                             f"drop {best.drop_pp:.3f} points (limit --max-drop {attempts.cfg.max_drop}), top-1 "
                             f"agreement {best.top1_agreement:.2%} (limit {C.INT8_MIN_TOP1_AGREEMENT:.2%}); train longer, "
                             f"raise --max-drop or try another --method")
    return best_path, best, steps, why


class Int8GuardError(ConfigError):
    """No int8 model meets the criterion, whatever is kept in float (the pipeline then releases fp32 alone)."""


def measure_speed(model: OnnxModel, seconds: float) -> ModelSpeed | None:
    """Latency and throughput, each timed for `seconds`; None (not measured) when `seconds` is 0."""
    if not seconds:
        return None
    return ModelSpeed(measure(model, LATENCY_BATCH, seconds), measure(model, THROUGHPUT_BATCH, seconds))


def _compare_on_test(fp32: OnnxModel, int8: OnnxModel, test: MnistSplit) -> TestComparison:
    fp32_pred = fp32.run_batched(test.images, 256)[0].argmax(1)
    int8_pred = int8.run_batched(test.images, 256)[0].argmax(1)
    return TestComparison(len(test), float((fp32_pred == test.labels).mean()), float((int8_pred == test.labels).mean()),
                          float((fp32_pred == int8_pred).mean()))


def _int8_metadata(fp32_proto, cfg: QuantConfig, test: TestComparison, why: dict[str, str], drop_pp: float) -> dict:
    """The fp32 model's metadata plus the quantization settings and the int8 model's own accuracy."""
    props = {p.key: p.value for p in fp32_proto.metadata_props}
    props[C.META_FP32_TEST_ACCURACY] = f"{test.fp32_accuracy:.6f}"
    props[C.META_TEST_ACCURACY] = f"{test.int8_accuracy:.6f}"
    props[C.META_INT8_FORMAT] = portable_format(cfg)
    props[C.META_INT8_TARGETS] = ",".join(cfg.made_for)
    settings = {k: v for k, v in to_jsonable(cfg).items() if k != "speed_seconds"}  # how long the report timed: not the model's
    props[C.META_QUANTIZATION] = json.dumps({**settings, "nodes_in_float": sorted(why),
                                             "guard_drop_pp": round(drop_pp, 4)}, sort_keys=True)
    return props


def quantize_model(model_path: Path, output: Path, cfg: QuantConfig, train: MnistSplit, test: MnistSplit) -> QuantReport:
    """Quantize `model_path` into `output` (atomically), keeping nodes in float until the accuracy
    drop on the guard split (held out of `train`, never calibrated on) is within cfg.max_drop;
    then compare both models on `test` and time them for cfg.speed_seconds per batch size (0: not
    timed).

    Raises ConfigError when even that is not enough, ModelFileError for a model that is not a float
    cnn-edge model."""
    import onnx

    from ..runtime.onnx_model import open_model

    refuse_overwriting(Path(output), [model_path])
    output = check_writable(Path(output))
    fp32 = open_model(Path(model_path))
    if fp32.is_int8:
        raise ModelFileError(f"{model_path} is already quantized; quantize the fp32 model instead")
    proto = onnx.load(str(model_path))
    calib, guard = _calibration_and_guard(train, cfg)
    fp32_top1 = _top1(fp32, guard.images)
    with tempfile.TemporaryDirectory(prefix="cnn-edge-quant.") as tmp:
        attempts = _Attempts(Path(model_path), cfg, calib, guard, fp32_top1, Path(tmp))
        label_of = node_labels(proto)
        best_path, kept, steps, why = _guarded_search(attempts, label_of)
        layer_sqnr = _layer_errors(attempts, best_path, kept.excluded, guard.images[:256])
        if why:  # each layer kept in float, with the SQNR its output had when everything was quantized
            quantized_sqnr = _layer_errors(attempts, attempts.made[()], [], guard.images[:256])  # the guard's first attempt
            outputs = {label_of.get(n.name, n.name): n.output[0] for n in attempts.pre_proto.graph.node if n.output}
            why = {name: reason + (f"; its output's SQNR quantized: {quantized_sqnr[outputs[name]]:.1f} dB"
                                   if outputs.get(name) in quantized_sqnr else "")
                   for name, reason in why.items()}
        int8 = open_model(best_path)
        comparison = _compare_on_test(fp32, int8, test)
        qproto = onnx.load(str(best_path))
    drop_unused_opsets(qproto)
    onnx.helper.set_model_props(qproto, _int8_metadata(proto, cfg, comparison, why, kept.drop_pp))
    onnx.checker.check_model(qproto)
    atomic_write_bytes(output, qproto.SerializeToString())
    guard_report = GuardReport(len(guard), attempts.fp32_acc, kept.guard_accuracy, kept.drop_pp, cfg.max_drop, steps,
                               kept.top1_agreement)
    return QuantReport(Path(model_path), output, cfg, Path(model_path).stat().st_size, output.stat().st_size,
                       guard_report, comparison, why, layer_sqnr, measure_speed(fp32, cfg.speed_seconds),
                       measure_speed(open_model(output), cfg.speed_seconds), machine_description())


def _layer_errors(attempts: _Attempts, quantized: Path, excluded: list[str], images: np.ndarray) -> dict[str, float]:
    """Per-activation SQNR (dB) of the quantized model against the float one, in graph order."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    cfg, pre, tmp = attempts.cfg, attempts.pre, attempts.tmp
    if cfg.dynamic:
        return {}  # dynamic models quantize activations at run time: no Q/DQ tensors to compare
    qdq = quantized
    if cfg.format != "qdq":
        qdq = tmp / "qdq_twin.onnx"
        _quantize_once(pre, qdq, replace(cfg, format="qdq"), attempts.calib, attempts.cache,
                       attempts.always_float + excluded)
    aug_f, aug_q = tmp / "aug_float.onnx", tmp / "aug_qdq.onnx"
    modify_model_output_intermediate_tensors(str(pre), str(aug_f))
    modify_model_output_intermediate_tensors(str(qdq), str(aug_q))
    errors = compute_activation_error(create_activation_matching(
        collect_activations(str(aug_q), _Reader(images)), collect_activations(str(aug_f), _Reader(images))))
    order = [o for n in attempts.pre_proto.graph.node for o in n.output]
    return {name: round(float(errors[name]["xmodel_err"]), 2) for name in order if name in errors}
