"""`cnn-edge predict` and the Predictor API on the released model, with real image files."""
from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnn_edge import ImageError, Prediction, Predictor
from cnn_edge.core import contract as C
from cnn_edge.core.artifacts import RELEASE_DIR, fp32_file, int8_file
from cnn_edge.cli import app
from cnn_edge.cli.app import EXIT_BAD_INPUT
from cnn_edge.cli.runtime import EXIT_SOME_FAILED
from cnn_edge.core.constants import SPEC_ARCH
from cnn_edge.training.data import load_split
from cnn_edge.prediction.config import PredictConfig
from cnn_edge.prediction.job import run_prediction
from cnn_edge.prediction.local import LocalEngine
from cnn_edge.runtime.providers import available
from cnn_edge.prediction.sinks import ResultFile

from conftest import REPO, assert_one_line_error, real_mnist

MODEL = REPO / RELEASE_DIR / fp32_file(SPEC_ARCH)
INT8 = REPO / RELEASE_DIR / int8_file(SPEC_ARCH)
runner = CliRunner()
needs_mnist = pytest.mark.skipif(real_mnist() is None, reason="needs CNN_EDGE_DATA (real MNIST)")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_digits(folder, n: int, start: int = 0) -> tuple[list[str], np.ndarray]:
    """MNIST test digits as PNG files named INDEX_LABEL.png; synthetic bars without the data."""
    folder.mkdir(parents=True, exist_ok=True)
    data = real_mnist()
    if data is not None:
        test = load_split("test", str(data))
        images, labels = test.images[start : start + n], test.labels[start : start + n]
    else:
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 4:24, 12:15] = 255
        labels = np.ones(n, np.int64)
    paths = []
    for i, (img, label) in enumerate(zip(images, labels)):
        paths.append(str(folder / f"{start + i:05d}_{label}.png"))
        Image.fromarray(img).save(paths[-1])
    return paths, labels


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def mixed_folder(tmp_path):
    """Good digits with broken files between them."""
    folder = tmp_path / "in"
    paths, _ = write_digits(folder, 6)
    (folder / "00002_empty.png").write_bytes(b"")
    (folder / "00003_text.jpg").write_text("hello")
    (folder / "00004_cut.png").write_bytes(open(paths[0], "rb").read()[:50])
    Image.new("L", (50, 50), 0).save(folder / "00005_blank.png")
    return folder


def test_predict_folder_to_csv_with_broken_files(mixed_folder, tmp_path):
    out = tmp_path / "r.csv"
    result = invoke("predict", MODEL, mixed_folder, "-o", out, "--json", "--provider", "cpu")
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    summary = json.loads(result.stdout)
    assert (summary["files"], summary["ok"], summary["failed"]) == (10, 6, 4)
    assert summary["provider"] == "cpu"
    rows = read_csv(out)
    assert [r["path"] for r in rows] == sorted(str(p) for p in mixed_folder.iterdir())
    failed = sorted(r["path"].rsplit("/", 1)[1] for r in rows if r["error"])
    assert failed == ["00002_empty.png", "00003_text.jpg", "00004_cut.png", "00005_blank.png"]
    assert len({r["error"] for r in rows if r["error"]}) == 4  # each says what is wrong with it
    for r in rows:
        assert (r["prediction"] == "") == bool(r["error"])
        if r["prediction"]:
            assert 0 < float(r["confidence"]) <= 1 and r["top1"] == r["prediction"] and r["top3"] != ""


def test_all_fine_exits_0_and_jsonl_by_extension(tmp_path):
    paths, labels = write_digits(tmp_path / "in", 5)
    out = tmp_path / "r.jsonl"
    result = invoke("predict", INT8, *paths, "-o", out, "--top-k", "2", "-q", "--provider", "cpu")
    assert result.exit_code == 0, result.output
    summary = result.output.strip().splitlines()[-1]
    assert "5 ok" in summary and "0 failed" in summary and "cpu" in summary
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == paths and all(len(r["top_k"]) == 2 for r in rows)


def test_table_on_screen_without_output(tmp_path):
    paths, _ = write_digits(tmp_path / "in", 2)
    result = invoke("predict", MODEL, *paths)
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(paths[0])
    assert "2 ok" in result.stderr


def test_workers_give_the_same_rows_in_the_same_order(tmp_path):
    paths, _ = write_digits(tmp_path / "in", 300)
    results = []
    for workers in (0, 2):
        cfg = PredictConfig(batch_size=64, workers=workers)
        summary = run_prediction(MODEL, paths, cfg, ResultFile(tmp_path / f"w{workers}.csv", "csv"), LocalEngine())
        assert summary.workers == workers and summary.ok == 300
        results.append((tmp_path / f"w{workers}.csv").read_text())
    assert results[0] == results[1]


def test_resume_skips_written_rows_and_completes_the_file(tmp_path):
    paths, _ = write_digits(tmp_path / "in", 8)
    out = tmp_path / "r.csv"
    assert invoke("predict", MODEL, *paths[:5], "-o", out, "-q").exit_code == 0
    reference = invoke("predict", MODEL, *paths, "-o", tmp_path / "ref.csv", "-q")
    assert reference.exit_code == 0
    # Simulate a run over all 8 that died after 5 rows and half of the sixth.
    partial = out.with_name("r.csv.partial")
    partial.write_bytes(out.read_bytes() + paths[5].encode() + b",3,0.")
    out.unlink()
    result = invoke("predict", MODEL, *paths, "-o", out, "--resume", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped"] == 5
    assert out.read_text() == (tmp_path / "ref.csv").read_text()
    assert not partial.exists()


def test_bad_input_is_one_line_and_leaves_files_alone(tmp_path):
    paths, _ = write_digits(tmp_path / "in", 1)
    out = tmp_path / "r.csv"
    out.write_text("keep me\n")
    for args, names in (
        ((tmp_path / "nope.onnx", *paths, "-o", out), [tmp_path / "nope.onnx"]),
        ((MODEL, *paths, "-o", out, "--batch-size", "0"), ["--batch-size", "0"]),
        ((MODEL, *paths, "--resume"), ["--resume", "-o"]),
    ):
        assert_one_line_error(invoke("predict", *args), EXIT_BAD_INPUT, *names)
    result = invoke("predict", MODEL, *paths, "--provider", "gpu")  # not a choice: typer refuses it
    assert result.exit_code == EXIT_BAD_INPUT and "gpu" in result.output and "Traceback" not in result.output
    for args in ((MODEL, *paths, "-o", tmp_path / "r.txt"), (MODEL, *paths, "-o", tmp_path / "no" / "r.csv")):
        assert_one_line_error(invoke("predict", *args), EXIT_BAD_INPUT, "-o")  # unknown extension; missing folder
    assert out.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "r.csv"]  # no partial file left, no folder made


def test_missing_empty_and_unmatched_inputs_are_rows(tmp_path):
    (tmp_path / "empty").mkdir()
    good = write_digits(tmp_path / "in", 1)[0][0]
    args = [good, tmp_path / "nope.png", tmp_path / "empty", tmp_path / "none_*.png"]
    result = invoke("predict", MODEL, *args, "-o", tmp_path / "r.csv", "--json")
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    rows = read_csv(tmp_path / "r.csv")
    assert [r["path"] for r in rows] == [str(a) for a in args]
    assert [bool(r["error"]) for r in rows] == [False, True, True, True]


def test_rows_as_json_lines_and_to_stdout(tmp_path):
    paths, _ = write_digits(tmp_path / "in", 2)
    result = invoke("predict", MODEL, *paths, "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in lines[:2]] == paths and lines[2]["summary"]["ok"] == 2
    streamed = invoke("predict", MODEL, *paths, "-o", "-")
    assert streamed.exit_code == 0
    rows = list(csv.DictReader(streamed.stdout.splitlines()))
    assert [r["path"] for r in rows] == paths and "2 files" in streamed.stderr
    assert "1 file:" in invoke("predict", MODEL, paths[0], "-o", tmp_path / "one.csv").stdout  # not "1 files"


@pytest.mark.skipif("cuda" in available(), reason="this machine has CUDA")
def test_cuda_requested_without_it_fails_with_the_reason(tmp_path):
    paths, _ = write_digits(tmp_path / "in", 1)
    line = assert_one_line_error(invoke("predict", MODEL, *paths, "--provider", "cuda"), EXIT_BAD_INPUT, "'cuda'")
    assert "onnxruntime-gpu" in line  # the fix: which package to install


@pytest.mark.skipif("cuda" not in available(), reason="needs onnxruntime-gpu and a CUDA device")
def test_cuda_runs_where_asked(tmp_path):
    paths, _ = write_digits(tmp_path / "in", 3)
    result = invoke("predict", MODEL, *paths, "--provider", "cuda", "--json", "-o", tmp_path / "r.csv")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["provider"] == "cuda"


def test_predictor_takes_paths_pil_images_and_arrays(tmp_path):
    paths, labels = write_digits(tmp_path / "in", 3)
    predictor = Predictor(MODEL, provider="cpu")
    images = [paths[0], Image.open(paths[1]), np.asarray(Image.open(paths[2]))]
    results = predictor.predict(images, top_k=4)
    assert all(isinstance(r, Prediction) for r in results) and len(results) == 3
    assert [r.label for r in results] == [str(l) for l in labels]
    assert all(len(r.top_k) == 4 and r.probabilities.shape == (10,) for r in results)
    assert predictor.predict(paths[0])[0].label == results[0].label
    with pytest.raises(ImageError, match="^image 1: "):
        predictor.predict([paths[0], np.zeros((28, 28), np.uint8)])


@pytest.mark.slow
@needs_mnist
def test_png_accuracy_matches_validate(tmp_path):
    """MNIST's 10,000 test images saved as PNG and run through predict: the accuracy that
    validate reports for the model (its metadata), within 0.1 point."""
    paths, labels = write_digits(tmp_path / "png", 10_000)
    out = tmp_path / "r.csv"
    summary = run_prediction(MODEL, paths, PredictConfig(), ResultFile(out, "csv"), LocalEngine())
    assert summary.ok == 10_000
    predicted = np.array([int(r["prediction"]) for r in read_csv(out)])
    accuracy = float((predicted == labels).mean())
    validated = float(Predictor(MODEL).model.metadata[C.META_TEST_ACCURACY])
    assert abs(accuracy - validated) <= 0.001, (accuracy, validated)


@pytest.mark.slow
@needs_mnist
@pytest.mark.parametrize("preprocessing,points", [("mnist-v1", 1.5), ("mnist-v2", 2.0)])
def test_user_style_digits_close_to_mnist_accuracy(tmp_path, preprocessing, points):
    """Scans, photos, coloured, RGBA, 16-bit, palette, tiny and typed digits: each variant within
    1.5 points of the MNIST test accuracy under mnist-v1, 2 under mnist-v2 (the release's own),
    which reads 2 of these 150 coloured PNGs wrong that mnist-v1 reads right (98.0% against 99.3%)
    and finds no digit in 1 of the 150 dark-on-transparent PNGs (docs/prediction.md): a known
    loss, bounded here so that a larger one fails."""
    sys.path.insert(0, str(REPO / "scripts"))
    from user_digits import label_of, make_user_digits

    files = make_user_digits(tmp_path / "ud", str(real_mnist()), per_variant=150)
    predictor = Predictor(INT8, preprocessing=preprocessing)
    validated = float(predictor.model.metadata[C.META_TEST_ACCURACY])
    for variant, paths in files.items():
        accuracy = np.mean([read_right(predictor, f, label_of(f)) for f in paths])
        assert accuracy >= validated - points / 100, (variant, accuracy)


def read_right(predictor: Predictor, path, label: int) -> bool:
    """One file: False when mnist-v2 finds no single digit in it (an error row, counted wrong)."""
    from cnn_edge.core.errors import NoDigitError

    try:
        return int(predictor.predict([path])[0].label) == label
    except NoDigitError:
        return False


def test_a_closed_pipe_ends_predict_quietly(tmp_path):
    """`predict ... | head -1`: the reader goes away; the command stops without a word, as standard
    tools do (exit 141 = 128 + SIGPIPE), and never says 'error: Broken pipe'."""
    import subprocess

    # More rows (~100 kB) than a pipe holds (64 kB): the reader surely leaves before the writer is done.
    paths, _ = write_digits(tmp_path / "in", 1000)
    proc = subprocess.run(f"{sys.executable} -m cnn_edge predict {MODEL} {tmp_path / 'in'} 2>{tmp_path / 'err'} | head -1; "
                          f"echo ${{PIPESTATUS[0]}}", shell=True, executable="/bin/bash", capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    first, status = proc.stdout.strip().splitlines()
    assert first.startswith(paths[0]) and status == "141"
    assert (tmp_path / "err").read_text() == ""


def test_the_demo_stops_at_once(tmp_path):
    import signal
    import subprocess
    import time

    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([sys.executable, "-m", "cnn_edge", "demo", "--port", "0"], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "serving" in proc.stdout.readline()
        t0 = time.perf_counter()
        proc.send_signal(sig)
        proc.wait(timeout=10)
        # Not waiting on its idle connections (10 s) or a request: well under that even on a loaded machine.
        assert time.perf_counter() - t0 < 5.0, sig
        assert "Traceback" not in proc.stderr.read()


def test_workers_are_capped_at_the_cores_and_threads_must_be_positive(tmp_path):
    """Hostile inputs round 2: --workers 1000 starts no more processes than cores, and says so in one
    line; --threads -1 is refused in one line."""
    import os

    paths, _ = write_digits(tmp_path / "in", 3)
    result = invoke("predict", MODEL, *paths, "--workers", "1000", "--json", "-o", tmp_path / "r.csv", "--provider", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["workers"] == os.cpu_count()
    assert f"--workers 1000 capped at {os.cpu_count()}" in result.stderr
    assert_one_line_error(invoke("predict", MODEL, *paths, "--threads", "-1"), EXIT_BAD_INPUT, "--threads", "-1")
