"""The CLI end to end on the tiny data set, through typer's CliRunner and real subprocesses."""
import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cnn_edge.core import contract as C
from cnn_edge.core.arch import total_params
from cnn_edge.core.files import sha256_file
from cnn_edge.core.reports import from_jsonable
from cnn_edge.cli import app
from cnn_edge.cli.app import EXIT_BAD_INPUT, EXIT_PARITY_FAILED
from cnn_edge.release.publish import PipelineSummary, render_card
from cnn_edge.runtime.compat import is_int8_model
from cnn_edge.release.vectors import PER_CLASS
from conftest import assert_one_line_error

runner = CliRunner()
SPEC_PARAMS = total_params()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_info_table_and_json():
    result = invoke("info")
    assert result.exit_code == 0 and f"{SPEC_PARAMS:,}" in result.output and "((3*3*32)+1)*64" in result.output
    data = json.loads(invoke("info", "--json").output)
    assert data["total_params"] == SPEC_PARAMS == 870_634  # the spec's count
    assert data["layers"][-1]["output_shape"] == [10]


def test_train_export_validate_pipeline(tiny_mnist, tmp_path):
    run = tmp_path / "run"
    result = invoke("train", "--data-dir", tiny_mnist, "--out", run, "--epochs", "1", "--batch-size", "64", "--val-size", "64", "-q", "--json")
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    assert trained["best_epoch"] == 1 and trained["test_accuracy"] > 0.5

    onnx_path = tmp_path / "m.onnx"
    result = invoke("export", run / "model.safetensors", "-o", onnx_path, "--data-dir", tiny_mnist, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["opset"] == C.OPSET and onnx_path.is_file()
    vectors = json.loads((tmp_path / "test_vectors.json").read_text())
    assert len(vectors["vectors"]) == 10 * PER_CLASS and len(vectors["vectors"][0]["pixels"]) == 28 * 28

    result = invoke("validate", onnx_path, "--checkpoint", run / "model.safetensors", "--data-dir", tiny_mnist, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 200 and report["passed"]
    assert report["parity"]["top1_agreement"] == 1.0
    assert report["parity"]["max_abs_diff_probabilities"] <= C.FP32_TOLERANCE
    assert report["parity"]["max_abs_diff_logits"] <= C.FP32_TOLERANCE

    result = invoke("validate", onnx_path, "--data-dir", tiny_mnist)
    assert result.exit_code == 0 and f"on {report['samples']} test images" in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("  ")]) >= 10  # the matrix rows


@pytest.fixture(scope="module")
def tiny_release(tiny_mnist, tmp_path_factory):
    """One pipeline run on the tiny set: (its run folder, its release folder)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    result = invoke("pipeline", "--data-dir", tiny_mnist, "--run-dir", tmp / "run", "--out-dir", tmp / "exports",
                    "--epochs", "1", "--batch-size", "64", "--val-size", "64", "-q")
    assert result.exit_code == 0, result.output
    return tmp / "run", tmp / "exports"


@pytest.mark.slow
def test_pipeline_releases_everything(tiny_release, tiny_mnist):
    run, out = tiny_release
    names = {p.name for p in out.iterdir()}
    assert {"mnist_cnn.onnx", "mnist_cnn.int8.onnx", "mnist_cnn.safetensors", "mnist_cnn.json", "MODEL_CARD.md",
            "pipeline.json"} <= names
    card = (out / "MODEL_CARD.md").read_text()
    summary = json.loads((out / "pipeline.json").read_text())
    assert summary["schema"] == "cnn-edge-pipeline/3" and summary["params"] == SPEC_PARAMS
    assert summary["reproduce"].startswith("cnn-edge pipeline --recipe v2 --seed 0 --epochs 1 --batch-size 64")
    assert summary["reproduce"] in card and f"{SPEC_PARAMS:,}" in card
    assert f"{summary['quantization']['test']['int8_accuracy']:.2%}" in card  # the int8 section
    assert {f["name"] for f in summary["files"]} <= {p.name for p in out.iterdir()}
    # Resuming a finished run releases again without training more.
    again = invoke("pipeline", "--data-dir", tiny_mnist, "--run-dir", run, "--out-dir", out,
                   "--epochs", "1", "--batch-size", "64", "--val-size", "64", "-q", "--resume", "--json",
                   "--speed-seconds", "0")
    assert again.exit_code == 0, again.output
    assert len(json.loads(again.stdout)["training"]["history"]) == 1


@pytest.mark.slow
def test_requantize_replaces_the_int8_model_and_its_record(tiny_release, tiny_mnist, tmp_path):
    """`pipeline --requantize`: the int8 model is made again from the released fp32 one; the fp32
    model, checkpoint and vectors stay as they were; pipeline.json lists the files as they now are on
    disk, and the card is the one its record renders."""
    release = tmp_path / "release"
    shutil.copytree(tiny_release[1], release)
    kept = {n: (release / n).read_bytes() for n in ("mnist_cnn.onnx", "mnist_cnn.safetensors", "test_vectors.json")}
    (release / "mnist_cnn.int8.onnx").write_bytes(b"an old int8 model")
    result = invoke("pipeline", "--requantize", "--out-dir", release, "--data-dir", tiny_mnist, "--json",
                    "--speed-seconds", "0")
    assert result.exit_code == 0, result.output
    assert {n: (release / n).read_bytes() for n in kept} == kept
    assert is_int8_model(release / "mnist_cnn.int8.onnx")
    record = json.loads((release / "pipeline.json").read_text())
    assert record == json.loads(result.stdout) and record["int8_validation"]["passed"]
    assert record["schema"] == "cnn-edge-pipeline/3"  # a re-made record is on the current schema
    assert {f["name"]: f["sha256"] for f in record["files"]} == {f["name"]: sha256_file(release / f["name"])
                                                                   for f in record["files"]}
    assert render_card(from_jsonable(PipelineSummary, record)) == (release / "MODEL_CARD.md").read_text()


def test_pipeline_refuses_an_unwritable_release_folder_before_training(tiny_mnist, tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("keep")
    assert_one_line_error(invoke("pipeline", "--data-dir", tiny_mnist, "--run-dir", tmp_path / "run", "--out-dir",
                                 blocker / "out", "-q"), EXIT_BAD_INPUT, blocker)
    assert blocker.read_text() == "keep" and not (tmp_path / "run").exists()  # nothing trained


def test_requantize_needs_a_release_folder(tiny_mnist, tmp_path):
    assert_one_line_error(invoke("pipeline", "--requantize", "--data-dir", tiny_mnist), EXIT_BAD_INPUT, "--out-dir")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("pipeline", "--requantize", "--out-dir", tmp_path / "empty", "--data-dir", tiny_mnist),
                          EXIT_BAD_INPUT, tmp_path / "empty", "pipeline.json")


def test_bad_data_dir(tmp_path):
    assert_one_line_error(invoke("train", "--data-dir", tmp_path / "none", "--out", tmp_path / "r", "-q"),
                          EXIT_BAD_INPUT, tmp_path / "none", "--data-dir")


def test_missing_checkpoint(tmp_path):
    assert_one_line_error(invoke("export", tmp_path / "x.safetensors", "-o", tmp_path / "m.onnx"), EXIT_BAD_INPUT,
                          tmp_path / "x.safetensors")
    assert not (tmp_path / "m.onnx").exists()


def test_validate_a_text_file(tmp_path, tiny_mnist):
    bad = tmp_path / "m.onnx"
    bad.write_text("hello")
    assert_one_line_error(invoke("validate", bad, "--data-dir", tiny_mnist), EXIT_BAD_INPUT, bad)
    assert bad.read_text() == "hello"


def test_parity_failure_exits_1(tiny_onnx, tiny_mnist, tmp_path):
    run = tmp_path / "other"
    assert invoke("train", "--data-dir", tiny_mnist, "--out", run, "--epochs", "1", "--seed", "3",
                  "--limit-train", "128", "--val-size", "32", "-q").exit_code == 0
    result = invoke("validate", tiny_onnx, "--checkpoint", run / "model.safetensors", "--data-dir", tiny_mnist, "--json")
    report = json.loads(result.stdout)
    assert not report["passed"] and report["parity"]["failures"]
    line = assert_one_line_error(result, EXIT_PARITY_FAILED)
    assert all(f in line for f in report["parity"]["failures"])  # every failure, on one line


@pytest.mark.parametrize("option,value", [("--recipe", "fast"), ("--device", "tpu"), ("--arch", "vgg")])
def test_typer_refuses_values_outside_the_choices(option, value, tmp_path, tiny_mnist):
    result = invoke("train", option, value, "--data-dir", tiny_mnist, "--out", tmp_path / "r", "-q")
    assert result.exit_code == EXIT_BAD_INPUT and value in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_python_m_and_console_script_agree():
    out = subprocess.run([sys.executable, "-m", "cnn_edge", "info", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["total_params"] == SPEC_PARAMS


@pytest.mark.parametrize("args", [["info"], ["validate", "{model}", "--data-dir", "{data}", "--limit", "20"]])
def test_torch_free_commands_never_import_torch(args, tiny_onnx, tiny_mnist):
    args = [a.format(model=tiny_onnx, data=tiny_mnist) for a in args]
    code = ("import sys; from cnn_edge.cli import app\n"
            f"try:\n    app({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'torchvision' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_into_a_path_under_a_file(tmp_path, tiny_mnist):
    blocker = tmp_path / "f"
    blocker.write_text("keep")
    assert_one_line_error(invoke("train", "--data-dir", tiny_mnist, "--out", blocker / "run", "-q"), EXIT_BAD_INPUT, blocker)
    assert blocker.read_text() == "keep"


def test_resume_without_a_run(tmp_path, tiny_mnist):
    assert_one_line_error(invoke("train", "--data-dir", tiny_mnist, "--out", tmp_path / "new", "--val-size", "64", "--resume", "-q"),
                          EXIT_BAD_INPUT, tmp_path / "new" / "resume.safetensors", "--resume")


@pytest.mark.slow
def test_quantize_cli_report(tiny_onnx, tiny_mnist, tmp_path):
    out = tmp_path / "q.onnx"
    result = invoke("quantize", tiny_onnx, "-o", out, "--calibration", "100", "--guard-size", "128", "--data-dir", tiny_mnist, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["size_ratio"] < 0.3 and report["test"]["samples"] == 200
    assert is_int8_model(out)


def test_quantize_cli_bad_input(tiny_onnx, tiny_int8, tiny_mnist, tmp_path):
    out = tiny_int8  # already quantized
    bad = tmp_path / "bad.onnx"
    bad.write_text("not onnx")
    assert_one_line_error(invoke("quantize", bad, "-o", tmp_path / "b.onnx", "--data-dir", tiny_mnist), EXIT_BAD_INPUT, bad)
    assert_one_line_error(invoke("quantize", out, "-o", tmp_path / "c.onnx", "--guard-size", "128", "--data-dir", tiny_mnist),
                          EXIT_BAD_INPUT, out)
    assert_one_line_error(invoke("quantize", tiny_onnx, "-o", tmp_path / "d.onnx", "--calibration", "99999", "--guard-size", "128",
                                 "--data-dir", tiny_mnist), EXIT_BAD_INPUT, "--calibration 99999")
    assert not any((tmp_path / n).exists() for n in ("b.onnx", "c.onnx", "d.onnx"))


@pytest.mark.slow
def test_the_main_job_talks_and_releases_into_its_run_folder(tiny_mnist, tmp_path, monkeypatch):
    """Off a terminal (CliRunner's streams are not one): the plan, an estimate, one line per epoch
    with validation accuracy and ETA, a line per stage. A smoke run too small for the recipe's
    validation split scales it down. The release goes into RUN_DIR/release, not exports/."""
    monkeypatch.chdir(tmp_path)
    result = invoke("pipeline", "--data-dir", tiny_mnist, "--run-dir", "run", "--epochs", "2", "--batch-size", "64",
                    "--limit-train", "400", "--speed-seconds", "0")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("plan: train spec for 2 epochs on 360 images")
    # The note on the shrunk split comes with the first step, once the output paths were checked.
    note = next(i for i, line in enumerate(lines) if line.startswith("note: --limit-train 400"))
    assert "--val-size" in lines[note]
    assert any(line.startswith("estimate: about") for line in lines[note:])
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [e.split(":")[0] for e in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("val acc" in e and "ETA" in e and "elapsed" in e for e in epochs)
    assert [line.split(" (")[0] for line in lines if line.startswith("== ")] == [
        "== train", "== calibrate", "== export", "== validate", "== quantize", "== release", "== done"]
    assert (tmp_path / "run" / "release" / "mnist_cnn.onnx").is_file() and not (tmp_path / "exports").exists()
