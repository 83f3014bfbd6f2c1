"""`predict --engine ray` on a real single-node Ray cluster: the same rows and errors as the local
engine (hostile files included), Parquet/CSV/JSONL part files, the _SUCCESS manifest, --resume,
provider honesty, and no Ray import on the local engine's path."""
from __future__ import annotations

import csv
import glob
import json
import subprocess
import sys

import pytest
from PIL import Image
from typer.testing import CliRunner

pytestmark = pytest.mark.slow  # a Ray cluster per module
ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

import pyarrow.dataset as pads  # noqa: E402

from cnn_edge.cli import app  # noqa: E402
from conftest import REPO, assert_one_line_error  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from hostile_files import digit, write_fuzz_cases  # noqa: E402

MODEL = REPO / "exports" / "mnist_cnn.int8.onnx"
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module (the CLI joins a Ray already started in its process)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """303 inputs: 150 digits, a blank, 151 hostile files of every format, a missing path."""
    folder = tmp_path_factory.mktemp("in")
    for i in range(150):
        Image.fromarray(digit(i, 28)).save(folder / f"d{i:03d}.png")
    Image.new("L", (28, 28)).save(folder / "blank.png")
    write_fuzz_cases(folder / "hostile", 150, seed=5)
    return [str(folder), str(folder / "hostile"), str(folder / "missing.png")]


def local_rows(tmp_path, inputs, fmt="csv", *options) -> list[str]:
    out = tmp_path / f"local.{fmt}"
    result = invoke("predict", MODEL, *inputs, "-o", out, "-q", *options)
    assert result.exit_code == 3, result.output
    lines = out.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    return lines[1:] if fmt == "csv" else lines


def part_lines(folder, fmt) -> list[str]:
    lines = []
    for f in sorted(glob.glob(f"{folder}/part-*.{fmt}")):
        text = open(f, encoding="utf-8", errors="surrogateescape").read().splitlines()
        lines += text[1:] if fmt == "csv" else text
    return lines


@pytest.mark.parametrize("fmt,options", [("csv", ()), ("jsonl", ("--flag-below", "0.999"))])
def test_rows_and_errors_are_the_local_engines(tmp_path, inputs, fmt, options):
    """Byte for byte the local engine's rows (their order aside), hostile files included, flags
    (and --flag-below) too."""
    out = tmp_path / "out"
    result = invoke("predict", MODEL, *inputs, "-o", out, "--engine", "ray", "--format", fmt, "-q", "--json", *options)
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    mine, local = part_lines(out, fmt), local_rows(tmp_path, inputs, fmt, *options)
    assert sorted(mine) == sorted(local) and len(mine) == summary["files"] == 303
    flagged = [r for r in csv.reader(mine) if r[-1]] if fmt == "csv" else [x for x in mine if json.loads(x)["flag"]]
    assert 0 < summary["flagged"] == len(flagged)
    assert summary["engine"] == "ray" and summary["failed"] >= 3 and summary["engine_figures"]["passes"] == 1
    errors = [r for r in csv.reader(mine)] if fmt == "csv" else [json.loads(x) for x in mine]
    assert any("blank" in str(r) for r in errors) and any("not found" in str(r) for r in errors)


def test_parquet_rows_the_manifest_and_no_temporary_files(tmp_path, inputs):
    out = tmp_path / "pq"
    result = invoke("predict", MODEL, *inputs, "-o", out, "--engine", "ray", "-q")
    assert result.exit_code == 3, result.output
    assert "303 files" in result.stdout and "ok" in result.stdout
    table = pads.dataset(str(out), format="parquet").to_table()  # skips _SUCCESS and hidden files
    local = {json.loads(x)["path"]: json.loads(x) for x in local_rows(tmp_path, inputs, "jsonl")}
    assert sorted(table["path"].to_pylist()) == sorted(local)
    for row in table.to_pylist():
        want = local[row["path"]]
        assert (row["prediction"], row["confidence"], row["error"], row["flag"]) == \
               (want["prediction"], want["confidence"], want["error"], want["flag"])
        assert [(row[f"top{j}"], row[f"top{j}_probability"]) for j in (1, 2, 3) if row[f"top{j}"]] == \
               [(t["label"], t["probability"]) for t in want["top_k"]]
    assert any(table["flag"].to_pylist())  # rows the flag column routes to a person, as the local engine's
    manifest = json.loads((out / "_SUCCESS").read_text())
    assert sum(f["rows"] for f in manifest["files"]) == manifest["rows"] == 303
    assert {p.name for p in out.iterdir()} == {"_SUCCESS", *(f["name"] for f in manifest["files"])}
    assert sum(sum(f["workers"].values()) for f in manifest["files"]) == 303


def test_resume_skips_what_is_done_and_refuses_a_used_directory(tmp_path, inputs):
    out = tmp_path / "r"
    first = invoke("predict", MODEL, inputs[0], "-o", out, "--engine", "ray", "-q", "--json")
    assert first.exit_code == 3, first.output
    assert_one_line_error(invoke("predict", MODEL, *inputs, "-o", out, "--engine", "ray", "-q"), 2, out, "--resume")
    (out / "_SUCCESS").unlink()  # as if the first run had stopped before its end
    (out / ".part-x.parquet.1234.tmp").write_bytes(b"half a file")  # a write cut short: never read
    again = invoke("predict", MODEL, *inputs, "-o", out, "--engine", "ray", "-q", "--json", "--resume")
    assert again.exit_code == 3, again.output
    s1, s2 = json.loads(first.stdout), json.loads(again.stdout)
    assert s2["skipped"] == s1["files"] == 151 and s2["ok"] + s2["failed"] == 303 - 151
    paths = pads.dataset(str(out), format="parquet").to_table()["path"].to_pylist()
    assert len(paths) == len(set(paths)) == 303
    assert json.loads((out / "_SUCCESS").read_text())["rows"] == 303


def test_bad_options_are_one_line(tmp_path, inputs):
    assert_one_line_error(invoke("predict", MODEL, inputs[0], "--engine", "ray"), 2, "-o")
    assert_one_line_error(invoke("predict", MODEL, inputs[0], "-o", tmp_path / "x", "--engine", "ray",
                                 "--gpus-per-worker", "1"), 2, "--gpus-per-worker")
    assert_one_line_error(invoke("predict", MODEL, inputs[0], "-o", tmp_path / "x.csv", "--format", "parquet"), 2,
                          "parquet", "--engine ray")
    assert_one_line_error(invoke("predict", MODEL, inputs[0], "-o", tmp_path / "x.csv", "--actors", "2"), 2, "--actors")


def test_an_actor_that_cannot_start_its_provider_fails_the_run_in_one_line(tmp_path, inputs):
    """Provider honesty on the cluster: never a silent CPU fall back, nothing written."""
    if "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA: the case needs a build without it")
    out = tmp_path / "cuda"
    assert_one_line_error(invoke("predict", MODEL, inputs[0], "-o", out, "--engine", "ray", "--provider", "cuda", "-q"),
                          2, "cuda")
    assert not out.exists()


def test_the_local_engine_never_imports_ray(tmp_path):
    png = tmp_path / "d.png"
    Image.fromarray(digit(1, 28)).save(png)
    code = ("import sys; sys.argv = ['cnn-edge', 'predict', %r, %r, '-q']\n"
            "from cnn_edge.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'ray' not in sys.modules and 'pyarrow' not in sys.modules, 'ray imported'\n") % (str(MODEL), str(png))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
