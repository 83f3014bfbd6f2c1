"""The CLI end to end on the tiny data set, through typer's CliRunner and real subprocesses."""
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cnn_edge.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, code, pattern):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pattern in lines[0]


def test_info_table_and_json():
    result = invoke("info")
    assert result.exit_code == 0 and "870,634" in result.output and "((3*3*32)+1)*64" in result.output
    data = json.loads(invoke("info", "--json").output)
    assert data["total_params"] == 870_634
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
    assert json.loads(result.stdout)["opset"] == 18 and onnx_path.is_file()
    vectors = json.loads((tmp_path / "test_vectors.json").read_text())
    assert len(vectors["vectors"]) == 40 and len(vectors["vectors"][0]["pixels"]) == 784

    result = invoke("validate", onnx_path, "--checkpoint", run / "model.safetensors", "--data-dir", tiny_mnist, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 200 and report["passed"]
    assert report["parity"]["top1_agreement"] == 1.0
    assert report["parity"]["max_abs_diff_probabilities"] <= 1e-4
    assert report["parity"]["max_abs_diff_logits"] <= 1e-4

    result = invoke("validate", onnx_path, "--data-dir", tiny_mnist)
    assert result.exit_code == 0 and "confusion matrix" in result.output


def test_pipeline_releases_everything(tiny_mnist, tmp_path):
    out = tmp_path / "exports"
    result = invoke("pipeline", "--data-dir", tiny_mnist, "--run-dir", tmp_path / "run", "--out-dir", out,
                    "--epochs", "1", "--batch-size", "64", "--val-size", "64", "-q")
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"mnist_cnn.onnx", "mnist_cnn.int8.onnx", "mnist_cnn.safetensors", "mnist_cnn.json", "MODEL_CARD.md",
            "pipeline.json"} <= names
    card = (out / "MODEL_CARD.md").read_text()
    assert "cnn-edge pipeline --recipe default --seed 0 --epochs 1 --batch-size 64" in card and "870,634" in card
    assert "## int8 model" in card
    # Resuming a finished run releases again without training more.
    again = invoke("pipeline", "--data-dir", tiny_mnist, "--run-dir", tmp_path / "run", "--out-dir", out,
                   "--epochs", "1", "--batch-size", "64", "--val-size", "64", "-q", "--resume", "--json")
    assert again.exit_code == 0, again.output
    assert len(json.loads(again.stdout)["checkpoint"]["history"]) == 1


def test_bad_data_dir(tmp_path):
    assert_one_line_error(invoke("train", "--data-dir", tmp_path / "none", "--out", tmp_path / "r", "-q"), 2, "does not exist")


def test_missing_checkpoint(tmp_path):
    assert_one_line_error(invoke("export", tmp_path / "x.safetensors", "-o", tmp_path / "m.onnx"), 2, "does not exist")
    assert not (tmp_path / "m.onnx").exists()


def test_validate_a_text_file(tmp_path, tiny_mnist):
    bad = tmp_path / "m.onnx"
    bad.write_text("hello")
    assert_one_line_error(invoke("validate", bad, "--data-dir", tiny_mnist), 2, "not a loadable ONNX model")
    assert bad.read_text() == "hello"


def test_parity_failure_exits_1(tiny_onnx, tiny_mnist, tmp_path):
    run = tmp_path / "other"
    assert invoke("train", "--data-dir", tiny_mnist, "--out", run, "--epochs", "1", "--seed", "3",
                  "--limit-train", "128", "--val-size", "32", "-q").exit_code == 0
    result = invoke("validate", tiny_onnx, "--checkpoint", run / "model.safetensors", "--data-dir", tiny_mnist)
    assert result.exit_code == 1
    assert "parity: FAILED" in result.stdout and result.stderr.startswith("error: parity failed")


def test_unknown_recipe(tmp_path, tiny_mnist):
    assert_one_line_error(invoke("train", "--recipe", "fast", "--data-dir", tiny_mnist, "--out", tmp_path), 2, "unknown recipe 'fast'")


def test_python_m_and_console_script_agree():
    out = subprocess.run([sys.executable, "-m", "cnn_edge", "info", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["total_params"] == 870_634


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
    assert_one_line_error(invoke("train", "--data-dir", tiny_mnist, "--out", blocker / "run", "-q"), 2, "cannot create folder")
    assert blocker.read_text() == "keep"


def test_resume_without_a_run(tmp_path, tiny_mnist):
    assert_one_line_error(invoke("train", "--data-dir", tiny_mnist, "--out", tmp_path / "new", "--val-size", "64", "--resume", "-q"), 2, "nothing to resume")


def test_quantize_cli_report_and_bad_input(tiny_onnx, tiny_mnist, tmp_path):
    out = tmp_path / "q.onnx"
    result = invoke("quantize", tiny_onnx, "-o", out, "--calibration", "100", "--guard-size", "128", "--data-dir", tiny_mnist, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["size_ratio"] < 0.3 and report["test_samples"] == 200
    bad = tmp_path / "bad.onnx"
    bad.write_text("not onnx")
    assert_one_line_error(invoke("quantize", bad, "-o", tmp_path / "b.onnx", "--data-dir", tiny_mnist), 2, "not a loadable ONNX model")
    assert_one_line_error(invoke("quantize", out, "-o", tmp_path / "c.onnx", "--guard-size", "128", "--data-dir", tiny_mnist), 2, "already quantized")
    assert_one_line_error(invoke("quantize", tiny_onnx, "-o", tmp_path / "d.onnx", "--calibration", "99999", "--guard-size", "128",
                                 "--data-dir", tiny_mnist), 2, "--calibration 99999 is larger")
    assert not any((tmp_path / n).exists() for n in ("b.onnx", "c.onnx", "d.onnx"))
