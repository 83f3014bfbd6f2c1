"""`pipeline --requantize` (release/requantize.py): a release's int8 model made again from its fp32
model with other settings, and only the int8 side of the release changes; a failed parity check
changes nothing. The release is built by the library on --limit-train-like data, which also shows
that run_pipeline sizes its held-out splits as the CLI does."""
from __future__ import annotations

import dataclasses
import json
import shutil

import onnx
import pytest

from cnn_edge.core import artifacts
from cnn_edge.core import contract as C
from cnn_edge.core.errors import ParityError
from cnn_edge.core.files import sha256_file
from cnn_edge.core.reports import to_jsonable
from cnn_edge.release import validate
from cnn_edge.release.pipeline import PipelineConfig, run_pipeline, sized_for_data
from cnn_edge.release.publish import read_summary, render_card
from cnn_edge.release.quantize import QuantConfig
from cnn_edge.release.requantize import requantize_release
from cnn_edge.training.recipes import make_config

# The module's fixture runs a whole library pipeline (training included): the full suite, not the fast tier.
pytestmark = pytest.mark.slow

ARCH = artifacts.SPEC_ARCH
LIMIT = 400  # a smoke run: far fewer images than the recipe's 5,000-image validation split
UNTIMED = QuantConfig(speed_seconds=0)  # nothing here reads speeds: skip the timing loops


@pytest.fixture(scope="module")
def pipeline_cfg(tmp_path_factory) -> PipelineConfig:
    root = tmp_path_factory.mktemp("requant")
    train = make_config("default", epochs=2, batch_size=64, limit_train=LIMIT)  # no val_size: the recipe's 5,000
    return PipelineConfig(train, root / "run", root / "release", device="cpu", quant=UNTIMED)


@pytest.fixture(scope="module")
def release(pipeline_cfg, tiny_data):
    run_pipeline(pipeline_cfg, tiny_data)
    return pipeline_cfg.out_dir


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_library_pipeline_on_small_data_sizes_its_held_out_splits(release, pipeline_cfg, tiny_data):
    """What `cnn-edge pipeline --limit-train 400` takes, run_pipeline takes: the validation split
    (and so the int8 guard) shrink to a tenth of the images, and the summary records it."""
    summary = read_summary(release)
    assert summary.train.val_size == LIMIT // 10 and summary.quantization.config.guard_size == LIMIT // 10
    assert f"--val-size {LIMIT // 10} " in summary.reproduce and f"--limit-train {LIMIT}" in summary.reproduce
    fitted, notes = sized_for_data(pipeline_cfg, len(tiny_data.train))
    assert fitted.train == summary.train and notes[0].startswith(f"--limit-train {LIMIT}: holding out {LIMIT // 10}")
    assert sized_for_data(fitted, len(tiny_data.train)) == (fitted, [])  # sized once: the second time, no change
    # Untimed quantization is said, not invented: no speeds in the record, "not measured" on the card.
    q = json.loads((release / artifacts.side_file(ARCH, artifacts.SUMMARY_FILE)).read_text())["quantization"]
    assert q["fp32_speed"] is None and q["int8_speed"] is None and q["throughput_ratio"] is None
    assert "| latency batch 1, p50 | not measured | not measured |" in render_card(summary)


def test_requantize_replaces_the_int8_side_only(release, tiny_data, tmp_path):
    copy = shutil.copytree(release, tmp_path / "release")
    before = _files(copy)
    int8 = copy / artifacts.int8_file(ARCH)
    new = dataclasses.replace(UNTIMED, per_channel=False)

    summary = requantize_release(copy, tiny_data, new)

    after = _files(copy)
    assert after[int8.name] != before[int8.name]
    # The fp32 model, the checkpoint (and its config) and the test vectors stay byte for byte.
    kept = [artifacts.fp32_file(ARCH), f"{artifacts.model_name(ARCH)}.safetensors",
            f"{artifacts.model_name(ARCH)}.json", artifacts.side_file(ARCH, artifacts.VECTORS_FILE)]
    assert {n: after[n] for n in kept} == {n: before[n] for n in kept}
    # pipeline.json lists the new int8 file as it is on disk, and records the new settings.
    on_disk = read_summary(copy)
    listed = {f.name: f for f in on_disk.files}
    assert listed[int8.name].sha256 == sha256_file(int8) and listed[int8.name].size == int8.stat().st_size
    assert all(listed[n].sha256 == sha256_file(copy / n) for n in kept)
    old = read_summary(release).quantization.config
    assert on_disk.quantization.config == dataclasses.replace(new, guard_size=old.guard_size,
                                                              calibration=old.calibration)
    assert to_jsonable(on_disk) == to_jsonable(summary)
    assert on_disk.int8_validation.passed and on_disk.int8_validation.model == str(int8)
    props = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert json.loads(props[C.META_QUANTIZATION])["per_channel"] is False
    # The card is rendered again from the new record.
    card = copy / artifacts.side_file(ARCH, artifacts.CARD_FILE)
    assert card.read_text() == render_card(on_disk) and after[card.name] != before[card.name]
    assert sorted(after) == sorted(before)  # no staging folder or stray file left behind


def test_a_failed_parity_check_replaces_nothing(release, tiny_data, tmp_path, monkeypatch):
    copy = shutil.copytree(release, tmp_path / "release")
    before = _files(copy)
    # Tolerances no model meets: the int8 check must fail, whatever the quantization.
    monkeypatch.setattr(validate, "INT8_LIMITS", dataclasses.replace(validate.INT8_LIMITS, min_top1_agreement=1.01))
    with pytest.raises(ParityError, match="top-1 agreement"):
        requantize_release(copy, tiny_data, dataclasses.replace(UNTIMED, per_channel=False))
    assert _files(copy) == before
    assert sorted(p.name for p in copy.iterdir()) == sorted(before)  # the staging folder is gone too
