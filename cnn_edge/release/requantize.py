"""Re-make a release's int8 model with the current quantization settings, without training again.

The fp32 model, the checkpoint and the test vectors of a release stay as they are; the int8 model
is quantized anew from the released fp32 one, validated against the released checkpoint with the
int8 tolerances, and only then replaces the old one. pipeline.json and the model card are
rewritten to match: its quantization, its int8 validation, the released files' sizes and hashes.
"""
from __future__ import annotations

import dataclasses
import datetime
import tempfile
from pathlib import Path

from ..core import artifacts
from ..core.files import atomic_write_bytes
from ..training.data import MnistData
from .export import tool_versions
from .publish import SCHEMA, PipelineSummary, ReleasedFile, publish, read_summary
from .quantize import QuantConfig, quantize_model
from .validate import validate_model


def requantize_release(release_dir: Path, data: MnistData, quant: QuantConfig = QuantConfig()) -> PipelineSummary:
    """Quantize the release's fp32 model again with `quant` (guard and calibration sizes as the
    pipeline set them), check int8 parity with the released checkpoint, then replace the int8
    model, pipeline.json and the model card. Raises ParityError (and replaces nothing) on failure."""
    release_dir = Path(release_dir)
    old = read_summary(release_dir)
    fp32 = release_dir / artifacts.fp32_file(old.arch)
    int8 = release_dir / artifacts.int8_file(old.arch)
    checkpoint = artifacts.checkpoint_beside(fp32)
    before = old.quantization.config if old.quantization is not None else None  # None: released fp32 alone
    cfg = dataclasses.replace(quant, guard_size=before.guard_size if before else old.train.val_size or quant.guard_size,
                              calibration=before.calibration if before else quant.calibration)
    with tempfile.TemporaryDirectory(prefix="cnn-edge-requant.", dir=release_dir) as tmp:
        staged = Path(tmp) / int8.name
        report = quantize_model(fp32, staged, cfg, data.train, data.test)
        validation = validate_model(staged, data.test, checkpoint=checkpoint, robustness=True)
        validation.raise_for_failures(checkpoint)
        atomic_write_bytes(int8, staged.read_bytes())
    report = dataclasses.replace(report, int8_model=int8)
    validation = dataclasses.replace(validation, model=str(int8))
    files = old.files if any(f.name == int8.name for f in old.files) else \
        [*old.files, ReleasedFile(int8.name, "ONNX model, int8 (static, ONNX Runtime quantization)", 0, "")]
    return publish(release_dir, dataclasses.replace(old, schema=SCHEMA, quantization=report, int8_validation=validation,
                                                    files=files,
                                                    int8_not_released=None, tool_versions=tool_versions(),
                                                    made=datetime.date.today().isoformat()))
