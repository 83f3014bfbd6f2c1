"""The robustness transforms (release/robustness.py): deterministic, shape- and type-preserving,
each doing what its name says; `validate --robustness` scores a model on them without torch."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cnn_edge.cli import app
from cnn_edge.release import robustness as R
from conftest import make_digits

runner = CliRunner()


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """60 synthetic digits with a clear 3-px border (the transforms move ink, none leaves the frame)."""
    images, _ = make_digits(60, seed=5)
    images[:, :3], images[:, -3:], images[:, :, :3], images[:, :, -3:] = 0, 0, 0, 0
    return images


def test_every_transform_keeps_shape_and_type_and_is_deterministic(digits):
    first, again = R.transformed(digits), R.transformed(digits.copy())
    assert list(first) == [t.name for t in R.TRANSFORMS]
    for name, out in first.items():
        assert out.shape == digits.shape and out.dtype == np.uint8, name
        assert np.array_equal(out, again[name]), name  # same images, same seed: same bytes
    assert np.array_equal(first["none"], digits)
    assert all(not np.array_equal(first[t.name], digits) for t in R.TRANSFORMS[1:])  # each changes something
    other = R.transformed(digits, seed=R.ROBUSTNESS_SEED + 1)  # the drawn ones draw anew; the fixed ones do not
    assert not np.array_equal(other["shift3"], first["shift3"]) and not np.array_equal(other["noise"], first["noise"])
    assert np.array_equal(other["rotate+15"], first["rotate+15"]) and np.array_equal(other["thin"], first["thin"])


def test_rotation_turns_anticlockwise_as_seen_and_identity_maps_are_exact(digits):
    dot = np.zeros((1, 28, 28), np.uint8)
    dot[0, 13:15, 22:24] = 255  # right of the centre
    ys, xs = np.nonzero(R.rotate(dot, 90)[0])
    assert (ys.mean(), xs.mean()) == pytest.approx((4.5, 13.5))  # now above it: turned anticlockwise
    ys, xs = np.nonzero(R.rotate(dot, -90)[0])
    assert (ys.mean(), xs.mean()) == pytest.approx((22.5, 13.5))
    assert np.array_equal(R.rotate(digits, 0), digits) and np.array_equal(R.scale(digits, 1.0), digits)
    near = np.zeros((1, 28, 28), np.uint8)
    near[0, 13:15, 17:19] = 255  # 4 px right of the centre
    big, small = R.scale(near, 2.0), R.scale(near, 0.5)
    assert np.nonzero(big[0])[1].mean() == pytest.approx(21.5) and np.nonzero(small[0])[1].mean() == pytest.approx(15.5)


def test_shift_moves_each_image_three_pixels_along_one_axis(digits):
    out = R.shift(digits, np.random.default_rng(0))
    moves = {(0, 3): 0, (0, -3): 0, (3, 0): 0, (-3, 0): 0}
    for before, after in zip(digits, out):
        found = [m for m in moves if np.array_equal(np.roll(before, m, axis=(0, 1)), after)]
        assert len(found) == 1
        moves[found[0]] += 1
    assert all(n > 0 for n in moves.values())  # every direction drawn


def test_strokes_thicken_and_thin_and_blur_spreads_the_ink(digits):
    thick, thin, blurred = R.thicken(digits), R.thin(digits), R.blur(digits)
    assert (thick >= digits).all() and (thin <= digits).all()
    assert (thick > 128).sum() > 1.5 * (digits > 128).sum() > 2 * (thin > 128).sum()
    block = np.zeros((1, 28, 28), np.uint8)
    block[0, 10:17, 10:17] = 255
    assert np.array_equal(R.thin(block)[0, 10:16, 10:16], block[0, 10:16, 10:16]) and R.thin(block).sum() == 36 * 255
    assert np.array_equal(R.thicken(block)[0, 9:18, 9:18], np.full((9, 9), 255, np.uint8))
    ink = blurred.astype(np.int64).sum((1, 2)) / digits.astype(np.int64).sum((1, 2))
    assert np.all(np.abs(ink - 1) < 0.02) and blurred.max() <= digits.max()  # ink kept, only spread
    noisy = R.noise(digits, np.random.default_rng(0))
    assert (noisy[digits == 0] > 0).mean() > 0.4  # the background gets noise too


@pytest.mark.slow
def test_validate_robustness_reports_every_transform(tiny_onnx, tiny_mnist):
    result = runner.invoke(app, ["validate", str(tiny_onnx), "--data-dir", str(tiny_mnist), "--robustness", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    r = report["robustness"]
    assert [t["transform"] for t in r["transforms"]] == [t.name for t in R.TRANSFORMS]
    assert r["samples"] == report["samples"] and r["bins"] == 15 and r["temperature"] is None
    none = r["transforms"][0]
    assert none["accuracy"] == report["accuracy"] and none["ece"] == pytest.approx(report["calibration"]["ece"])
    assert all(0 <= t["accuracy"] <= 1 and 0 <= t["ece"] <= 1 and t["ece_uncalibrated"] is None for t in r["transforms"])
    text = runner.invoke(app, ["validate", str(tiny_onnx), "--data-dir", str(tiny_mnist), "--robustness"])
    assert text.exit_code == 0 and "robustness:" in text.output
    assert all(any(line.split()[:1] == [t.name] for line in text.output.splitlines()) for t in R.TRANSFORMS)


@pytest.mark.slow
def test_validate_robustness_needs_no_torch(tiny_onnx, tiny_mnist):
    from test_torch_free import run_blocked

    proc = run_blocked("validate", tiny_onnx, "--data-dir", tiny_mnist, "--robustness", "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["robustness"]["transforms"]) == len(R.TRANSFORMS)
