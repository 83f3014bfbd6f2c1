"""Reports as JSON: one serialiser, documented fields, and a released pipeline.json on the current schema."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from pathlib import Path

import numpy as np
import pytest

from cnn_edge.distributed import engine
from cnn_edge.prediction import job, local
from cnn_edge.tools import compare
from cnn_edge.release import diagnose, publish
from cnn_edge.core.artifacts import RELEASE_DIR, SUMMARY_FILE
from cnn_edge.core.reports import dumps, to_jsonable
from conftest import REPO

DOC = (REPO / "docs" / "reports.md").read_text()


def field_names(cls, seen=None) -> set[str]:
    """Every field (and JSON property) of a report dataclass and of the dataclasses inside it."""
    seen = set() if seen is None else seen
    if cls in seen:
        return set()
    seen.add(cls)
    names = set(getattr(cls, "json_properties", ()))
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        names.add(f.name)
        for sub in (hints[f.name], *typing.get_args(hints[f.name])):
            for inner in (sub, *typing.get_args(sub)):
                if dataclasses.is_dataclass(inner):
                    names |= field_names(inner, seen)
    return names


@pytest.mark.parametrize("report", [publish.PipelineSummary, compare.CompareReport, job.PredictSummary,
                                    local.LocalFigures, engine.RayFigures,
                                    diagnose.DiagnoseReport])
def test_every_field_is_documented(report):
    documented = set(re.findall(r"`([a-z_0-9]+)`", DOC))
    assert field_names(report) - documented == set()


def test_schemas_are_named_in_the_doc():
    assert publish.SCHEMA in DOC and compare.SCHEMA in DOC and job.SCHEMA in DOC


def test_released_summary_follows_the_schema():
    released = json.loads((REPO / RELEASE_DIR / SUMMARY_FILE).read_text())
    assert released["schema"] == publish.SCHEMA
    assert set(released) == {f.name for f in dataclasses.fields(publish.PipelineSummary)}
    q = released["quantization"]
    assert q["size_ratio"] == pytest.approx(q["int8_bytes"] / q["fp32_bytes"])
    assert {f["name"] for f in released["files"]} <= {p.name for p in (REPO / RELEASE_DIR).iterdir()}


@dataclasses.dataclass
class Sample:
    path: Path
    ratio: float
    sizes: tuple[int, ...]
    counts: dict

    json_properties = ("double",)

    @property
    def double(self) -> float:
        return 2 * self.ratio


def test_to_jsonable_writes_plain_json_and_never_nan():
    obj = Sample(Path("a/b.onnx"), float("nan"), (1, 2), {"x": np.float32(0.5), 3: np.int64(4)})
    assert to_jsonable(obj) == {"path": "a/b.onnx", "ratio": None, "sizes": [1, 2], "counts": {"x": 0.5, "3": 4},
                                "double": None}
    assert "NaN" not in dumps(obj) and json.loads(dumps(Sample(Path("p"), 0.25, (), {})))["double"] == 0.5
    # Every non-finite float, Python's or numpy's, becomes null; finite ones stay as they are.
    special = [float("inf"), float("-inf"), float("nan"), np.float32("inf"), np.float64("nan"), np.array([np.inf, 0.5])]
    assert to_jsonable(special + [1.5, 0.0]) == [None, None, None, None, None, [None, 0.5], 1.5, 0.0]
    assert json.loads(dumps({"x": float("inf"), "y": -math.inf})) == {"x": None, "y": None}  # allow_nan=False did not raise
    with pytest.raises(TypeError, match="object"):
        to_jsonable(object())


def test_the_committed_card_is_the_one_the_code_writes():
    from cnn_edge.core.artifacts import CARD_FILE
    from cnn_edge.release.publish import render_card
    from cnn_edge.core.reports import from_jsonable

    released = json.loads((REPO / RELEASE_DIR / SUMMARY_FILE).read_text())
    summary = from_jsonable(publish.PipelineSummary, released)
    assert summary.validation.parity.per_batch_size[0].batch_size == 1  # typed all the way down
    assert render_card(summary) == (REPO / RELEASE_DIR / CARD_FILE).read_text()


def test_a_record_from_before_layer_strings_still_renders_its_layers():
    """pipeline.json written before `layers` existed (a built-in architecture's name alone): read
    back, it renders the same card, the layer string found from the name."""
    from cnn_edge.core.reports import from_jsonable
    from cnn_edge.release.publish import render_card

    released = json.loads((REPO / RELEASE_DIR / SUMMARY_FILE).read_text())
    old = {k: v for k, v in released.items() if k != "layers"}
    assert render_card(from_jsonable(publish.PipelineSummary, old)) == render_card(
        from_jsonable(publish.PipelineSummary, released))


def test_the_card_names_every_augmentation_the_recipe_turned_on():
    from cnn_edge.core.reports import from_jsonable
    from cnn_edge.release.publish import render_card
    from cnn_edge.training.recipes import make_config

    released = json.loads((REPO / RELEASE_DIR / SUMMARY_FILE).read_text())
    for recipe, named, unnamed in (("v2", ["shear ±15°", "stroke width (p 0.5)", "pixel noise (p 0.5, sigma up to 32"], ["elastic", "erasing"]),
                                   ("seed", ["augmentation none"], ["shear", "rotation"])):
        summary = from_jsonable(publish.PipelineSummary, {**released, "train": to_jsonable(make_config(recipe))})
        line = next(x for x in render_card(summary).splitlines() if x.startswith("Recipe `"))
        assert line.startswith(f"Recipe `{recipe}`")
        assert all(n in line for n in named) and not any(u in line for u in unnamed), line
    everything = make_config("default", elastic_alpha=34.0, erase_prob=0.3, label_smoothing=0.1)
    summary = from_jsonable(publish.PipelineSummary, {**released, "train": to_jsonable(everything)})
    line = next(x for x in render_card(summary).splitlines() if x.startswith("Recipe `"))
    assert "elastic distortion (alpha 34, sigma 4 px)" in line and "random erasing (p 0.3, up to 15%" in line
    assert "label smoothing 0.1" in line
