"""Validate an ONNX model on the MNIST test set, and against its PyTorch checkpoint.

Without a checkpoint this module needs only ONNX Runtime and numpy (no torch).
Validation collects every parity failure, then reports them all at once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import contract as C
from .compat import DEFAULT_TARGETS, Compatibility, check_targets
from .constants import NUM_CLASSES
from .data import load_mnist
from .errors import ConfigError, ParityError
from .onnx_model import open_model


@dataclass
class ParityAtBatch:
    batch_size: int
    top1_agreement: float
    max_abs_diff_probabilities: float
    max_abs_diff_logits: float


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

    @property
    def passed(self) -> bool:
        return self.parity is None or not self.parity.failures

    def raise_for_failures(self) -> None:
        if self.parity is not None and self.parity.failures:
            raise ParityError(self.parity.failures)

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm


def _torch_reference(checkpoint: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's (probabilities, logits) for every image, computed once at batch 256."""
    import torch

    from .checkpoint import load_checkpoint
    from .train import predict_logits

    model, _ = load_checkpoint(checkpoint)
    model = model.float().to(memory_format=torch.channels_last)
    logits = predict_logits(model, images, batch_size=256)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    return probs, logits


def compare(
    run: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    images: np.ndarray,
    labels: np.ndarray,
    reference: tuple[np.ndarray, np.ndarray],
    tolerance: float | None,
    min_top1_agreement: float,
    batch_sizes=C.PARITY_BATCH_SIZES,
    max_accuracy_drop_pp: float | None = None,
) -> ParityReport:
    """Run the model at each batch size and compare with the reference outputs."""
    ref_probs, ref_logits = reference
    ref_top1 = ref_probs.argmax(1)
    rows, failures = [], []
    for bs in batch_sizes:
        probs, logits = run(images, bs)
        row = ParityAtBatch(
            bs, float((probs.argmax(1) == ref_top1).mean()),
            float(np.abs(probs - ref_probs).max()), float(np.abs(logits - ref_logits).max()),
        )
        rows.append(row)
        if row.top1_agreement < min_top1_agreement:
            failures.append(f"batch {bs}: top-1 agreement {row.top1_agreement:.4%} < {min_top1_agreement:.2%}")
        for name in ("probabilities", "logits") if tolerance is not None else ():
            diff = getattr(row, f"max_abs_diff_{name}")
            if not diff <= tolerance:
                failures.append(f"batch {bs}: max abs diff of {name} = {diff:.3g} > {tolerance:g}")
        if bs == batch_sizes[-1]:
            model_acc = float((probs.argmax(1) == labels).mean())
    torch_acc = float((ref_top1 == labels).mean())
    drop = (torch_acc - model_acc) * 100
    if max_accuracy_drop_pp is not None and drop > max_accuracy_drop_pp:
        failures.append(f"accuracy drop {drop:.3f} points > {max_accuracy_drop_pp:g}")
    return ParityReport(
        tolerance, min_top1_agreement,
        min(r.top1_agreement for r in rows),
        max(r.max_abs_diff_probabilities for r in rows),
        max(r.max_abs_diff_logits for r in rows),
        torch_acc, rows, failures, "int8" if max_accuracy_drop_pp is not None else "fp32",
        drop, max_accuracy_drop_pp,
    )


def is_int8(model) -> bool:
    """A cnn-edge int8 model says so in its metadata (written by `cnn-edge quantize`)."""
    return "cnn_edge.quantization" in model.metadata


def validate_model(
    model_path: Path,
    checkpoint: Path | None = None,
    data_dir: str | None = None,
    limit: int | None = None,
    targets: tuple[str, ...] = DEFAULT_TARGETS,
) -> ValidationReport:
    """Accuracy of `model_path` on the test set; with `checkpoint`, parity with PyTorch too.

    Raises ModelFileError/CheckpointError/DataError for bad input. Parity failures are
    collected in the report (see `raise_for_failures`)."""
    model = open_model(Path(model_path))
    compatibility = check_targets(Path(model_path), targets)
    test = load_mnist("test", data_dir)
    images, labels = test.images, test.labels
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        images, labels = images[:limit], labels[:limit]
    probs, _ = model.run_batched(images, 256)
    preds = probs.argmax(1)
    cm = confusion_matrix(labels, preds)
    per_class = (np.diag(cm) / np.maximum(cm.sum(1), 1)).tolist()
    meta_acc = model.metadata.get("cnn_edge.test_accuracy")
    report = ValidationReport(
        str(model_path), int(len(labels)), float((preds == labels).mean()), per_class, cm.tolist(),
        float(meta_acc) if meta_acc else None, compatibility=compatibility,
    )
    if checkpoint is not None:
        reference = _torch_reference(Path(checkpoint), images)
        if is_int8(model):
            limits = dict(tolerance=None, min_top1_agreement=C.INT8_MIN_TOP1_AGREEMENT,
                          max_accuracy_drop_pp=C.INT8_MAX_ACCURACY_DROP_PP)
        else:
            limits = dict(tolerance=C.FP32_TOLERANCE, min_top1_agreement=C.FP32_MIN_TOP1_AGREEMENT)
        report.parity = compare(lambda x, bs: model.run_batched(x, bs), images, labels, reference, **limits)
    return report
