"""Re-make a release's int8 model with the current quantization settings, without training again.

The fp32 model, the checkpoint and the test vectors of a release stay as they are; the int8 model
is quantized anew from the released fp32 one, validated against the released checkpoint with the
int8 tolerances, and only then replaces the old one. pipeline.json and the model card are
rewritten to match: its quantization, its int8 validation, the released files' sizes and hashes.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import tempfile
from pathlib import Path

from . import artifacts
from .card import render_card
from .data import MnistData
from .errors import ConfigError
from .export import tool_versions
from .io_utils import atomic_write_bytes, atomic_write_text, sha256_file
from .pipeline import PipelineSummary, ReleasedFile
from .quant_types import QuantConfig
from .quantize import quantize_model
from .reports import from_jsonable, write_json
from .validate import validate_model


def read_summary(release_dir: Path) -> PipelineSummary:
    """The pipeline.json of a release, typed; ConfigError naming it when absent or unreadable."""
    found = [p for p in Path(release_dir).glob(f"*{artifacts.SUMMARY_FILE}") if p.is_file()]
    if len(found) != 1:
        raise ConfigError(f"{release_dir} holds {len(found)} {artifacts.SUMMARY_FILE} files, not one: "
                          "give the folder a pipeline released into (--out-dir)")
    try:
        return from_jsonable(PipelineSummary, json.loads(found[0].read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{found[0]} is not a pipeline summary cnn-edge can read ({exc}); run the pipeline again") from None


def requantize_release(release_dir: Path, data: MnistData, quant: QuantConfig = QuantConfig()) -> PipelineSummary:
    """Quantize the release's fp32 model again with `quant` (guard and calibration sizes as the
    pipeline set them), check int8 parity with the released checkpoint, then replace the int8
    model, pipeline.json and the model card. Raises ParityError (and replaces nothing) on failure."""
    release_dir = Path(release_dir)
    old = read_summary(release_dir)
    fp32 = release_dir / artifacts.fp32_file(old.arch)
    int8 = release_dir / artifacts.int8_file(old.arch)
    checkpoint = artifacts.checkpoint_beside(fp32)
    cfg = dataclasses.replace(quant, guard_size=old.quantization.config.guard_size,
                              calibration=old.quantization.config.calibration)
    with tempfile.TemporaryDirectory(prefix="cnn-edge-requant.", dir=release_dir) as tmp:
        staged = Path(tmp) / int8.name
        report = quantize_model(fp32, staged, cfg, data.train, data.test)
        validation = validate_model(staged, data.test, checkpoint=checkpoint)
        validation.raise_for_failures()
        atomic_write_bytes(int8, staged.read_bytes())
    report = dataclasses.replace(report, int8_model=int8)
    validation = dataclasses.replace(validation, model=str(int8))
    files = [ReleasedFile(f.name, f.what, (release_dir / f.name).stat().st_size, sha256_file(release_dir / f.name))
             for f in old.files]
    summary = dataclasses.replace(old, quantization=report, int8_validation=validation, files=files,
                                  tool_versions=tool_versions(), made=datetime.date.today().isoformat())
    write_json(release_dir / artifacts.side_file(old.arch, artifacts.SUMMARY_FILE), summary)
    atomic_write_text(release_dir / artifacts.side_file(old.arch, artifacts.CARD_FILE), render_card(summary))
    return summary
