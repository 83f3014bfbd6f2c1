"""Validate an ONNX model on the MNIST test set, and against its PyTorch checkpoint.

Without a checkpoint this module needs only ONNX Runtime and numpy (no torch).
Validation collects every parity failure, then reports them all at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..core import contract as C
from ..core.constants import NUM_CLASSES
from ..core.errors import ConfigError, ModelFileError, ParityError
from ..runtime.compat import DEFAULT_TARGETS, Compatibility, check_targets
from ..runtime.onnx_model import open_model
from ..training.data import MnistSplit
from .calibrate import CalibrationFigures, calibration_figures
from .robustness import RobustnessReport, score_robustness

RunFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (images, batch size) -> (probs, logits)


@dataclass
class ParityAtBatch:
    batch_size: int
    top1_agreement: float
    max_abs_diff_probabilities: float
    max_abs_diff_logits: float


@dataclass(frozen=True)
class ParityLimits:
    """What a model must meet against PyTorch: the fp32 or the int8 tolerances of the contract."""

    kind: str  # fp32 or int8
    tolerance: float | None  # max abs diff allowed on each output; None: reported only (int8)
    min_top1_agreement: float
    max_accuracy_drop_pp: float | None = None  # PyTorch accuracy minus the model's; None: not bounded


FP32_LIMITS = ParityLimits("fp32", C.FP32_TOLERANCE, C.FP32_MIN_TOP1_AGREEMENT)
INT8_LIMITS = ParityLimits("int8", None, C.INT8_MIN_TOP1_AGREEMENT, C.INT8_MAX_ACCURACY_DROP_PP)


@dataclass
class ParityReport:
    tolerance: float | None  # max abs diff allowed on each output; None: reported only (int8)
    min_top1_agreement: float
    top1_agreement: float  # worst over the batch sizes
    max_abs_diff_probabilities: float
    max_abs_diff_logits: float
    torch_accuracy: float
    per_batch_size: list[ParityAtBatch]
    failures: list[str] = field(default_factory=list)
    kind: str = "fp32"  # which tolerances applied: fp32 or int8
    accuracy_drop_pp: float = 0.0  # PyTorch accuracy minus this model's, in percentage points
    max_accuracy_drop_pp: float | None = None


@dataclass
class ValidationReport:
    model: str
    samples: int
    accuracy: float
    per_class_accuracy: list[float]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted class
    metadata_test_accuracy: float | None
    parity: ParityReport | None = None
    compatibility: list[Compatibility] = field(default_factory=list)  # warnings only: never fail validation
    provider: str = "cpu"  # the ONNX Runtime provider the figures (and parity) were measured on
    precision: str | None = None  # OpenVINO's inference precision; None: the model's own
    calibration: CalibrationFigures | None = None  # None only in records made before it was measured
    robustness: RobustnessReport | None = None  # with --robustness: the transformed test digits

    json_properties = ("passed",)

    @property
    def passed(self) -> bool:
        return self.parity is None or not self.parity.failures

    def raise_for_failures(self, checkpoint: Path | str | None = None) -> None:
        """ParityError naming every failure, and the `cnn-edge diagnose` command that finds the first
        layer where the model parts from `checkpoint` (diagnose is not run here: it costs a pass of
        its own, and a failing release wants the one line first)."""
        if self.parity is not None and self.parity.failures:
            raise ParityError(self.parity.failures, diagnose_hint(self.model, checkpoint))


def diagnose_hint(model: Path | str, checkpoint: Path | str | None) -> str:
    import shlex

    ckpt = shlex.quote(str(checkpoint)) if checkpoint is not None else "CHECKPOINT"
    return f"find the first diverging layer with: cnn-edge diagnose {shlex.quote(str(model))} --checkpoint {ckpt}"


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm


def torch_reference(checkpoint: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's (probabilities, logits) for every image, computed once at batch 256 (imports torch)."""
    import torch

    from ..training.checkpoint import load_checkpoint
    from ..training.train import predict_logits

    model, _ = load_checkpoint(checkpoint)
    model = model.float().to(memory_format=torch.channels_last)
    logits = predict_logits(model, images, batch_size=256)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    return probs, logits


def _at_batch(run: RunFn, images: np.ndarray, batch_size: int, reference) -> tuple[ParityAtBatch, np.ndarray]:
    ref_probs, ref_logits = reference
    probs, logits = run(images, batch_size)
    row = ParityAtBatch(batch_size, float((probs.argmax(1) == ref_probs.argmax(1)).mean()),
                        float(np.abs(probs - ref_probs).max()), float(np.abs(logits - ref_logits).max()))
    return row, probs.argmax(1)


def check_parity(run: RunFn, split: MnistSplit, reference: tuple[np.ndarray, np.ndarray], limits: ParityLimits,
                 batch_sizes=C.PARITY_BATCH_SIZES) -> ParityReport:
    """Run the model at each batch size, compare with the reference outputs, collect every failure."""
    rows, failures = [], []
    for bs in batch_sizes:
        row, predicted = _at_batch(run, split.images, bs, reference)
        rows.append(row)
        if row.top1_agreement < limits.min_top1_agreement:
            failures.append(f"batch {bs}: top-1 agreement {row.top1_agreement:.4%} < {limits.min_top1_agreement:.2%}")
        for name in ("probabilities", "logits") if limits.tolerance is not None else ():
            diff = getattr(row, f"max_abs_diff_{name}")
            if not diff <= limits.tolerance:
                failures.append(f"batch {bs}: max abs diff of {name} = {diff:.3g} > {limits.tolerance:g}")
    model_acc = float((predicted == split.labels).mean())  # at the last batch size
    torch_acc = float((reference[0].argmax(1) == split.labels).mean())
    drop = (torch_acc - model_acc) * 100
    if limits.max_accuracy_drop_pp is not None and drop > limits.max_accuracy_drop_pp:
        failures.append(f"accuracy drop {drop:.3f} points > {limits.max_accuracy_drop_pp:g}")
    return ParityReport(
        limits.tolerance, limits.min_top1_agreement,
        min(r.top1_agreement for r in rows),
        max(r.max_abs_diff_probabilities for r in rows),
        max(r.max_abs_diff_logits for r in rows),
        torch_acc, rows, failures, limits.kind, drop, limits.max_accuracy_drop_pp,
    )


def validate_model(
    model_path: Path,
    test: MnistSplit,
    *,
    checkpoint: Path | None = None,
    limit: int | None = None,
    targets: tuple[str, ...] = DEFAULT_TARGETS,
    provider: str = "cpu",
    precision: str = "f32",
    robustness: bool = False,
) -> ValidationReport:
    """Accuracy and calibration (ECE, NLL; with its temperature undone too, for a calibrated model)
    of `model_path` on the test split, run on `provider` (the one production will use: parity holds
    there, not only on the CPU); with `checkpoint`, parity with PyTorch too; with `robustness`,
    accuracy and calibration on the test digits transformed (release/robustness.py).

    Raises ModelFileError/CheckpointError for bad input, ConfigError for a provider that cannot run,
    ModelOutputError (a ModelFileError: exit 2, not a parity failure) for a model whose outputs
    break the contract: another shape, or NaN for any test image.
    Parity failures are collected in the report (see `raise_for_failures`)."""
    model = open_model(Path(model_path), provider=provider, precision=precision)
    if len(model.class_labels) != NUM_CLASSES:
        raise ModelFileError(f"{model_path} has {len(model.class_labels)} classes; validate measures it on MNIST's "
                             f"{NUM_CLASSES} digits")
    compatibility = check_targets(Path(model_path), targets)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        test = MnistSplit(test.images[:limit], test.labels[:limit], test.source)
    probs, logits = model.run_batched(test.images, 256)
    preds = probs.argmax(1)
    cm = confusion_matrix(test.labels, preds)
    per_class = (np.diag(cm) / np.maximum(cm.sum(1), 1)).tolist()
    temperature = model.metadata_float(C.META_TEMPERATURE)
    if temperature is not None and not 0 < temperature < float("inf"):
        raise ModelFileError(f"{model_path} has malformed metadata: {C.META_TEMPERATURE} = {temperature!r} is not a "
                             "positive number")
    report = ValidationReport(
        str(model_path), len(test), float((preds == test.labels).mean()), per_class, cm.tolist(),
        model.metadata_float(C.META_TEST_ACCURACY), compatibility=compatibility, provider=model.provider,
        precision=model.choice.precision, calibration=calibration_figures(probs, logits, test.labels, temperature),
    )
    if robustness:
        report.robustness = score_robustness(lambda x: model.run_batched(x, 256), test.images, test.labels, temperature)
    if checkpoint is not None:
        reference = torch_reference(Path(checkpoint), test.images)
        limits = INT8_LIMITS if model.is_int8 else FP32_LIMITS
        report.parity = check_parity(lambda x, bs: model.run_batched(x, bs), test, reference, limits)
    return report
