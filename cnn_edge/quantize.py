"""INT8 quantization with ONNX Runtime's own tooling, guarded by accuracy.

Static quantization calibrates on MNIST training images; the guard measures the accuracy
drop on the held-out validation split (the one training used for model selection), which
calibration never sees. Torch-free: needs onnx and onnxruntime.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import contract as C
from .constants import DEFAULT_VAL_SIZE
from .data import load_mnist, split_indices
from .errors import ConfigError, ModelFileError
from .io_utils import atomic_write_bytes, check_writable
from .onnx_model import OnnxModel, open_model

METHODS = ("minmax", "entropy", "percentile")
FORMATS = ("qdq", "qoperator")
TYPES = ("uint8", "int8")
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QGemm",
                 "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
LAYER_OPS = ("Conv", "Gemm", "MatMul")  # nodes that carry a layer's weights, named in reports


@dataclass(frozen=True)
class QuantConfig:
    calibration: int = 3000  # training images used to calibrate activation ranges
    method: str = "minmax"  # minmax | entropy | percentile
    # Defaults chosen by scripts/bench_quant.py on an AVX2 CPU without VNNI: QOperator with
    # per-tensor scales and uint8 activations ran 2.6x fp32 at no accuracy cost here, while int8
    # activations in QOperator fell back to slow kernels (0.15x). See README.
    per_channel: bool = False  # True: one weight scale per output channel
    format: str = "qoperator"  # qoperator (QLinearConv, QGemm) | qdq (Q/DQ pairs around float ops)
    activation_type: str = "uint8"
    weight_type: str = "int8"
    dynamic: bool = False  # weight-only dynamic quantization instead (no calibration)
    max_drop: float = C.INT8_MAX_ACCURACY_DROP_PP  # percentage points, on the guard split
    guard_size: int = DEFAULT_VAL_SIZE
    seed: int = 0

    def check(self) -> None:
        for name, value, allowed in (("method", self.method, METHODS), ("format", self.format, FORMATS),
                                     ("activation type", self.activation_type, TYPES),
                                     ("weight type", self.weight_type, TYPES)):
            if value not in allowed:
                raise ConfigError(f"unexpected {name} {value!r}: choose one of {', '.join(allowed)}")
        if self.calibration < 1:
            raise ConfigError(f"--calibration must be at least 1, got {self.calibration}")
        if self.max_drop < 0:
            raise ConfigError(f"--max-drop must be >= 0 percentage points, got {self.max_drop}")


@dataclass
class GuardStep:
    excluded: list[str]  # nodes kept in float in this attempt
    guard_accuracy: float
    drop_pp: float


@dataclass
class QuantResult:
    output: Path
    config: QuantConfig
    fp32_guard_accuracy: float
    int8_guard_accuracy: float
    drop_pp: float
    nodes_in_float: dict[str, str]  # node -> why it stayed in float
    attempts: list[GuardStep] = field(default_factory=list)
    test_samples: int = 0
    fp32_test_accuracy: float = float("nan")
    int8_test_accuracy: float = float("nan")
    test_top1_agreement: float = float("nan")  # int8 vs fp32 predictions on the test set
    # SQNR in dB of each activation of the quantized model against the float model (higher is
    # better; every 6 dB is a bit). Measured on the QDQ form: for QOperator, the same ranges,
    # weights and exclusions in QDQ form, since fused operators hide their intermediates.
    layer_sqnr_db: dict[str, float] = field(default_factory=dict)


class _Reader:
    """onnxruntime CalibrationDataReader over uint8 images: a feed dict per batch, then None."""

    def __init__(self, images: np.ndarray, batch_size: int = 64):
        self.images, self.batch_size, self.pos = images, batch_size, 0

    def get_next(self):
        if self.pos >= len(self.images):
            return None
        batch = self.images[self.pos : self.pos + self.batch_size].astype(np.float32)[:, None]
        self.pos += self.batch_size
        return {C.INPUT_NAME: batch}

    def __iter__(self):  # qdq_loss_debug iterates readers
        return iter(self.get_next, None)


def is_quantized(proto) -> bool:
    return any(n.op_type in QUANTIZED_OPS for n in proto.graph.node)


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


def _accuracy(model: OnnxModel, images: np.ndarray, labels: np.ndarray) -> float:
    probs, _ = model.run_batched(images, 256)
    return float((probs.argmax(1) == labels).mean())


def _quantize_once(pre: Path, out: Path, cfg: QuantConfig, calib: np.ndarray, cache: Path, exclude: list[str]) -> None:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

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
    )


def quantize_model(model_path: Path, output: Path, cfg: QuantConfig = QuantConfig(), data_dir: str | None = None,
                   on_step=None) -> QuantResult:
    """Quantize `model_path` into `output` (atomically), keeping nodes in float until the
    accuracy drop on the guard split is within cfg.max_drop. Raises ConfigError when even
    that is not enough, ModelFileError for a model that is not a float cnn-edge model."""
    import onnx
    from onnxruntime.quantization import quant_pre_process

    cfg.check()
    output = check_writable(Path(output))
    fp32 = open_model(Path(model_path))
    proto = onnx.load(str(model_path))
    if is_quantized(proto):
        raise ModelFileError(f"{model_path} is already quantized; quantize the fp32 model instead")
    train = load_mnist("train", data_dir)
    train_idx, guard_idx = split_indices(len(train), cfg.guard_size)
    if not cfg.dynamic and cfg.calibration > len(train_idx):
        raise ConfigError(f"--calibration {cfg.calibration} is larger than the {len(train_idx)} training images "
                          f"outside the guard split; use at most {len(train_idx)}")
    rng = np.random.default_rng(cfg.seed)
    calib = train.images[np.sort(rng.choice(train_idx, min(cfg.calibration, len(train_idx)), replace=False))]
    guard_x, guard_y = train.images[guard_idx], train.labels[guard_idx]
    fp32_acc = _accuracy(fp32, guard_x, guard_y)
    labels = node_labels(proto)  # readable names for the report
    step = on_step or (lambda s: None)

    with tempfile.TemporaryDirectory(prefix="cnn-edge-quant.") as tmp:
        tmp = Path(tmp)
        pre = tmp / "pre.onnx"
        quant_pre_process(str(model_path), str(pre))
        pre_proto = onnx.load(str(pre))
        cache = tmp / "calibration.json"  # calibrate once; the guard's retries reuse the ranges

        # Softmax always runs in float: quantized to 8 bits its probabilities would have a
        # resolution of 1/255 and near-ties would break top-1. It costs nothing measurable.
        always_float = [n.name for n in pre_proto.graph.node if n.op_type == "Softmax"]

        def attempt(exclude: list[str]) -> tuple[Path, GuardStep]:
            out = tmp / f"q{len(exclude)}_{abs(hash(tuple(exclude)))}.onnx"
            _quantize_once(pre, out, cfg, calib, cache, always_float + exclude)
            acc = _accuracy(open_model(out), guard_x, guard_y)
            return out, GuardStep(list(exclude), acc, (fp32_acc - acc) * 100)

        best_path, best = attempt([])
        attempts = [best]
        step(best)
        why: dict[str, str] = {}
        if best.drop_pp > cfg.max_drop:
            # Rank the nodes by the accuracy each one costs when quantized (keep it alone in float,
            # measure), then keep them in float in that order until the drop is within the limit.
            singles = [(n, attempt([n])[1]) for n in candidates(pre_proto)]
            attempts.extend(t for _, t in singles)
            ranked = sorted(singles, key=lambda nt: -nt[1].guard_accuracy)
            excluded: list[str] = []
            for name, single in ranked:
                if best.drop_pp <= cfg.max_drop:
                    break
                excluded.append(name)
                best_path, best = attempt(excluded)
                attempts.append(best)
                step(best)
                why[labels.get(name, name)] = (
                    f"quantizing it alone cost {(single.guard_accuracy - attempts[0].guard_accuracy) * 100:.3f} points "
                    f"on the guard split; with it in float the drop is {best.drop_pp:.3f}")
        if best.drop_pp > cfg.max_drop:
            raise ConfigError(f"int8 model loses {best.drop_pp:.3f} points (> --max-drop {cfg.max_drop}) even with "
                              f"{len(best.excluded)} nodes in float; raise --max-drop or try another --method")
        qproto = onnx.load(str(best_path))
        layer_sqnr = _layer_errors(pre, pre_proto, best_path, cfg, calib, cache, always_float + best.excluded,
                                   guard_x[:256], tmp)
        # The released int8 model states its own test accuracy, measured here.
        test = load_mnist("test", data_dir)
        fp32_probs, _ = fp32.run_batched(test.images, 256)
        int8_probs, _ = open_model(best_path).run_batched(test.images, 256)

    fp32_pred, int8_pred = fp32_probs.argmax(1), int8_probs.argmax(1)
    test_figures = dict(test_samples=len(test), fp32_test_accuracy=float((fp32_pred == test.labels).mean()),
                        int8_test_accuracy=float((int8_pred == test.labels).mean()),
                        test_top1_agreement=float((fp32_pred == int8_pred).mean()))
    props = {p.key: p.value for p in proto.metadata_props}
    props["cnn_edge.fp32_test_accuracy"] = f"{test_figures['fp32_test_accuracy']:.6f}"
    props["cnn_edge.test_accuracy"] = f"{test_figures['int8_test_accuracy']:.6f}"
    props["cnn_edge.quantization"] = json.dumps({**asdict(cfg), "nodes_in_float": sorted(why),
                                                 "guard_drop_pp": round(best.drop_pp, 4)}, sort_keys=True)
    onnx.helper.set_model_props(qproto, props)
    onnx.checker.check_model(qproto)
    atomic_write_bytes(output, qproto.SerializeToString())
    return QuantResult(output, cfg, fp32_acc, best.guard_accuracy, best.drop_pp, why, attempts, **test_figures,
                       layer_sqnr_db=layer_sqnr)


def _layer_errors(pre: Path, pre_proto, quantized: Path, cfg: QuantConfig, calib: np.ndarray, cache: Path,
                  exclude: list[str], images: np.ndarray, tmp: Path) -> dict[str, float]:
    """Per-activation SQNR (dB) of the quantized model against the float one, in graph order."""
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_activation_error,
                                                         create_activation_matching,
                                                         modify_model_output_intermediate_tensors)

    if cfg.dynamic:
        return {}  # dynamic models quantize activations at run time: no Q/DQ tensors to compare
    qdq = quantized
    if cfg.format != "qdq":
        qdq = tmp / "qdq_twin.onnx"
        _quantize_once(pre, qdq, QuantConfig(**{**asdict(cfg), "format": "qdq"}), calib, cache, exclude)
    aug_f, aug_q = tmp / "aug_float.onnx", tmp / "aug_qdq.onnx"
    modify_model_output_intermediate_tensors(str(pre), str(aug_f))
    modify_model_output_intermediate_tensors(str(qdq), str(aug_q))
    errors = compute_activation_error(create_activation_matching(
        collect_activations(str(aug_q), _Reader(images)), collect_activations(str(aug_f), _Reader(images))))
    order = [o for n in pre_proto.graph.node for o in n.output]
    return {name: round(float(errors[name]["xmodel_err"]), 2) for name in order if name in errors}


def quant_report(model_path: Path, result: QuantResult, speed_seconds: float = 2.0) -> dict:
    """fp32 and int8 side by side: size, accuracy, agreement, speed, and where precision is lost."""
    from .speed import measure

    fp32, int8 = open_model(Path(model_path)), open_model(result.output)
    sizes = {"fp32": Path(model_path).stat().st_size, "int8": result.output.stat().st_size}
    speed = {name: {"batch_1": asdict(measure(m, 1, speed_seconds)), "batch_256": asdict(measure(m, 256, speed_seconds))}
             for name, m in (("fp32", fp32), ("int8", int8))}
    return {
        "fp32_model": str(model_path), "int8_model": str(result.output),
        "config": asdict(result.config),
        "size_bytes": sizes, "size_ratio": sizes["int8"] / sizes["fp32"],
        "test_samples": result.test_samples,
        "test_accuracy": {"fp32": result.fp32_test_accuracy, "int8": result.int8_test_accuracy},
        "test_accuracy_drop_pp": (result.fp32_test_accuracy - result.int8_test_accuracy) * 100,
        "test_top1_agreement": result.test_top1_agreement,
        "guard": {"samples": result.config.guard_size, "fp32_accuracy": result.fp32_guard_accuracy,
                  "int8_accuracy": result.int8_guard_accuracy, "drop_pp": result.drop_pp,
                  "max_drop_pp": result.config.max_drop, "attempts": len(result.attempts)},
        "nodes_in_float": result.nodes_in_float,
        "layer_sqnr_db": result.layer_sqnr_db,
        "speed": speed,
        "throughput_ratio_batch_256": speed["int8"]["batch_256"]["images_per_second"]
        / speed["fp32"]["batch_256"]["images_per_second"],
    }
