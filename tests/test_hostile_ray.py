"""Hostile inputs, round 2, on the Ray engine: bounded reads (a size limit checked before reading),
names that are not UTF-8, outputs checked before any work, one results file for -o FILE.csv,
SIGTERM, and a local cluster that dies with its driver after `kill -9`. The fast tests call the
stages without Ray; the slow ones run `python3 -m cnn_edge predict --engine ray` in a subprocess."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from cnn_edge.core.constants import DEFAULT_MAX_FILE_BYTES  # noqa: E402
from cnn_edge.core.errors import ConfigError, OutputPathError  # noqa: E402
from cnn_edge.distributed import output, stages, watchdog  # noqa: E402
from conftest import REPO  # noqa: E402

MODEL = REPO / "exports" / "mnist_cnn.int8.onnx"
ODD = b"odd\xff\xfe.png"  # not UTF-8


def digit_png(path) -> None:
    a = np.zeros((28, 28), np.uint8)
    a[6:22, 12:16] = 255
    Image.fromarray(a).save(path, "PNG")


def test_a_file_above_the_size_limit_is_its_row_before_it_is_read(tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:  # sparse: 100 MiB on paper, nothing on disk
        f.truncate(100 * 2**20)
    fine = tmp_path / "fine.png"
    digit_png(fine)
    out = stages.decode_batch({"path": np.array([stages.wire_path(str(big)), stages.wire_path(str(fine))], object)},
                              max_pixels=40_000_000, max_bytes=DEFAULT_MAX_FILE_BYTES)
    assert out["error"][0] == ("file is 104,857,600 bytes (100.0 MiB), above the limit of 67,108,864 bytes "
                               "(64 MiB; --max-file-bytes)"), out["error"][0]  # the local engine's line
    assert out["error"][1] == "" and out["pixels"][1].any()
    with pytest.raises(stages.FileTooLarge, match="above the limit of"):
        stages.read_bytes(str(fine), 10)


def test_pixels_are_checked_from_the_header_on_ray_too(tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("L", (3000, 3000)).save(wide)
    out = stages.decode_batch({"path": np.array([stages.wire_path(str(wide))], object)}, max_pixels=1_000_000)
    assert "above the limit of 1 Mpixels" in out["error"][0]


def test_a_name_that_is_not_utf8_travels_losslessly(tmp_path):
    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/" + ODD)
    digit_png(os.fsencode(odd))
    wired = stages.wire_path(odd)
    assert isinstance(wired, bytes) and stages.unwired_path(wired) == odd
    out = stages.decode_batch({"path": np.array([wired], object)}, max_pixels=40_000_000)
    assert out["error"][0] == "" and stages.unwired_path(out["path"][0]) == odd


def test_results_files_and_unwritable_outputs_are_decided_before_any_work(tmp_path):
    assert output.one_results_file(str(tmp_path / "results.csv"))
    assert output.one_results_file("r.jsonl") and not output.one_results_file(str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="pass a folder"):
        output.one_results_file("results.parquet")
    with pytest.raises(ConfigError, match="object store"):
        output.one_results_file("s3://bucket/results.csv")
    with pytest.raises(OutputPathError, match="cannot write to -o /proc/self/out"):
        output.check_writable_output("/proc/self/out")  # no one may create files in /proc, root included
    output.check_writable_output(str(tmp_path / "new"))
    assert list(tmp_path.iterdir()) == []  # the probe is gone


@pytest.fixture
def tmp():
    """A short temporary folder for the run (Ray's socket paths must stay under 107 bytes)."""
    import shutil
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="t22e-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def digit_folder(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        digit_png(folder / f"d{i:04d}.png")
    return folder


def run_predict(args, tmp, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    return subprocess.Popen([sys.executable, "-m", "cnn_edge", "predict", str(MODEL), *map(str, args), "--engine", "ray"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **kw)


@pytest.mark.slow
def test_one_run_odd_names_one_results_file_no_warning_nothing_left(tmp_path, tmp):
    src = digit_folder(tmp_path / "in", 3)
    digit_png(os.fsencode(src) + b"/" + ODD)
    p = run_predict([src, "-o", tmp_path / "results.csv", "-q"], tmp)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode(errors="replace")
    assert b"Warning" not in err and b"deprecated" not in err, err
    rows = (tmp_path / "results.csv").read_bytes().splitlines()
    assert len(rows) == 5 and any(ODD in r for r in rows)  # the header, four rows, the name as its bytes
    assert ours(tmp) == []  # no session folder, no log file of ours left in the temporary folder


def ours(tmp) -> list:
    """What cnn-edge or its Ray cluster left in the temporary folder (a native library's own
    `.ses` file aside)."""
    return [p.name for p in tmp.iterdir() if p.name.startswith(("cnn-edge", "ray", "session_"))]


def _session_processes(tmp) -> list[int]:
    return [p for p in watchdog.marked("no-token", str(tmp), os.getpid())]


@pytest.mark.slow
def test_kill_9_of_the_driver_takes_the_local_cluster_with_it(tmp_path, tmp):
    src = digit_folder(tmp_path / "in", 2000)
    p = run_predict([src, "-o", tmp_path / "out", "-q"], tmp)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_session_processes(tmp)) < 3:  # gcs, raylet, agents...
        time.sleep(0.5)
    assert _session_processes(tmp), "the cluster never started"
    p.kill()
    p.communicate()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (_session_processes(tmp) or ours(tmp)):
        time.sleep(0.5)
    assert _session_processes(tmp) == [] and ours(tmp) == []


@pytest.mark.slow
def test_sigterm_stops_the_ray_engine_cleanly(tmp_path, tmp):
    src = digit_folder(tmp_path / "in", 2000)
    p = run_predict([src, "-o", tmp_path / "out", "--format", "csv", "-q"], tmp)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_session_processes(tmp)) < 3:
        time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    text = err.decode(errors="replace")
    assert p.returncode == 143, text
    assert text.strip().splitlines()[-1].endswith("rerun the same command with --resume to continue where it stopped")
    assert "Aborted" not in text and "*** " not in text and "Traceback" not in text, text
