"""`predict --engine ray` up to the cluster, in the fast tier: what the driver checks before it joins
or starts a cluster (the options, the model, the inputs, the output directory) fails in one line,
and nothing is written or started. The runs themselves are in the other test_ray_*.py files, in the
slow tier since each starts a cluster."""
from __future__ import annotations

import pytest
from PIL import Image
from typer.testing import CliRunner

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from cnn_edge.cli import app  # noqa: E402
from cnn_edge.cli.app import EXIT_BAD_INPUT  # noqa: E402
from cnn_edge.core.errors import ConfigError  # noqa: E402
from cnn_edge.distributed.config import RayOptions  # noqa: E402
from cnn_edge.prediction.config import PredictConfig  # noqa: E402
from cnn_edge.prediction.sinks import PartFolder  # noqa: E402
from conftest import assert_one_line_error, make_digits  # noqa: E402

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray(make_digits(1, seed=0)[0][0]).save(path)
    return path


def test_options_are_checked_before_any_cluster(tiny_onnx, image, tmp_path):
    out = tmp_path / "out"
    assert_one_line_error(invoke("predict", tiny_onnx, image, "--engine", "ray"), EXIT_BAD_INPUT, "-o")
    assert_one_line_error(invoke("predict", tiny_onnx, image, "--engine", "ray", "-o", out, "--actors", "0"),
                          EXIT_BAD_INPUT, "--actors")
    assert_one_line_error(invoke("predict", tiny_onnx, image, "--engine", "ray", "-o", out, "--gpus-per-worker", "1.5"),
                          EXIT_BAD_INPUT, "--gpus-per-worker")
    assert_one_line_error(invoke("predict", tiny_onnx, image, "-o", tmp_path / "x.csv", "--format", "parquet"),
                          EXIT_BAD_INPUT, "parquet", "--engine ray")
    assert_one_line_error(invoke("predict", tiny_onnx, image, "-o", tmp_path / "x.csv", "--actors", "2"), EXIT_BAD_INPUT,
                          "--actors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digit.png"]
    assert not ray.is_initialized()


def test_a_used_output_directory_or_a_bad_model_is_refused_before_any_cluster(tiny_onnx, image, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("not ours")
    assert_one_line_error(invoke("predict", tiny_onnx, image, "--engine", "ray", "-o", used), EXIT_BAD_INPUT, used,
                          "--resume")
    assert [p.name for p in used.iterdir()] == ["notes.txt"]
    missing = tmp_path / "none.onnx"
    assert_one_line_error(invoke("predict", missing, image, "--engine", "ray", "-o", tmp_path / "new"), EXIT_BAD_INPUT,
                          missing)
    assert not (tmp_path / "new").exists()
    assert not ray.is_initialized()


@pytest.mark.parametrize("make,named", [
    (lambda: PredictConfig(batch_size=0), "--batch-size"), (lambda: PredictConfig(top_k=11), "--top-k"),
    (lambda: RayOptions(actors=0), "--actors"), (lambda: RayOptions().check(PredictConfig(workers=0)), "--workers"),
    (lambda: RayOptions(gpus_per_worker=1.5), "--gpus-per-worker"), (lambda: PartFolder("out", "xml"), "'xml'"),
])
def test_the_ray_settings_refuse_what_cannot_run(make, named):
    with pytest.raises(ConfigError, match=named):
        make()
