"""Hostile outputs (issue 22, round 2): where predict's rows, and every command's files, go. A device,
a FIFO or a link to one is written through, never replaced; an output that is an input is refused;
one writer per results file; a closed stdout is an error, never a silent exit 0; messages name the
likely mistake; a full disk reports the rows it really kept. Real files, FIFOs, processes and
RLIMIT_FSIZE: no mocks."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnn_edge.cli import app
from cnn_edge.cli.app import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE
from cnn_edge.core.errors import ConfigError, OutputPathError
from cnn_edge.core.files import OutputLock, atomic_write_bytes, atomic_write_json, lock_path, refuse_overwriting
from cnn_edge.prediction.rows import RowBatch, RowSchema
from cnn_edge.prediction.sinks import ResultFile, count_rows
from conftest import REPO, assert_one_line_error

sys.path.insert(0, str(REPO / "scripts"))
from hostile_files import digit  # noqa: E402

MODEL = REPO / "exports" / "mnist_cnn.int8.onnx"
HEADER = "path,prediction,confidence,top1,top1_probability,top2,top2_probability,top3,top3_probability,error,flag\n"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def cli(*args, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """The real command in a fresh process: file descriptors, locks and pipes are what they are."""
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run([sys.executable, "-m", "cnn_edge", *map(str, args)], text=True, cwd=REPO,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)}, **kwargs)


def images(folder: Path, n: int, names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names or [f"{i:04d}.png" for i in range(n)]):
        Image.fromarray(digit(i, 28)).save(folder / name, format="PNG")
    return folder


def complete_csv_rows(path: Path) -> int:
    """Rows of a CSV file up to its last row end, read by the csv module (not by our own counter):
    a row cut inside a quoted cell makes the strict reader fail at the end of the data."""
    data = path.read_bytes().decode("utf-8", "surrogateescape")
    rows = []
    try:
        for row in csv.reader(io.StringIO(data, newline=""), strict=True):
            rows.append(row)
    except csv.Error:
        return max(len(rows) - 1, 0)  # the rows before the cut one, less the header
    if rows and not data.endswith("\n"):
        rows = rows[:-1]  # the row cut by the failed write
    return max(len(rows) - 1, 0)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- 1. Special files are written through, never replaced ------------------------------------------

def _fifo_reader(fifo: Path) -> tuple[threading.Thread, list]:
    got: list = []
    thread = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    thread.start()
    return thread, got


def test_devices_fifos_and_links_to_them_are_written_through(tmp_path):
    folder = images(tmp_path / "in", 3)
    link = tmp_path / "null.csv"
    link.symlink_to(os.devnull)
    for out in (os.devnull, link):
        result = invoke("predict", MODEL, folder, "-o", out, "-q")
        assert result.exit_code == 0, result.output
        assert Path(os.devnull).is_char_device() and link.is_symlink() and Path(os.readlink(link)) == Path(os.devnull)
        assert not Path(f"{out}.partial").exists() and not lock_path(out).exists()
    # --resume has nothing to continue in a stream: refused in one line
    assert_one_line_error(invoke("predict", MODEL, folder, "-o", link, "--resume"), EXIT_BAD_INPUT, "--resume", link)
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    thread, got = _fifo_reader(fifo)
    result = invoke("predict", MODEL, folder, "-o", fifo, "-q")
    thread.join(10)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["path"] for line in got[0].decode().splitlines()] == [str(p) for p in sorted(folder.iterdir())]
    assert fifo.is_fifo()
    # a link to /dev/stdout in a real process: the rows reach the pipe, the link stays
    out = tmp_path / "stdout.csv"
    out.symlink_to("/dev/stdout")
    proc = cli("predict", MODEL, folder, "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(HEADER) and proc.stdout.count("\n") == 4 and out.is_symlink()


def test_the_atomic_writer_never_renames_over_a_special_file(tmp_path):
    """Every command's files (quantize -o, export -o, --plot, reports) go through atomic_write_*."""
    link = tmp_path / "model.onnx"
    link.symlink_to(os.devnull)
    atomic_write_bytes(link, b"x" * 100_000)
    atomic_write_json(Path(os.devnull), {"a": 1})
    assert link.is_symlink() and Path(os.devnull).is_char_device()
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    thread, got = _fifo_reader(fifo)
    atomic_write_json(fifo, {"a": 1})
    thread.join(10)
    assert json.loads(got[0]) == {"a": 1} and fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "report.json"]  # no temporary left


def test_an_output_that_is_an_input_by_hard_link_is_refused(tmp_path):
    folder = images(tmp_path / "in", 2)
    image = folder / "0000.png"
    model = tmp_path / "m.onnx"
    model.write_bytes(MODEL.read_bytes())
    for name, target in (("hard.csv", image), ("model.csv", model)):
        out = tmp_path / name
        os.link(target, out)
        before = target.read_bytes()
        assert_one_line_error(invoke("predict", model, folder, "-o", out), EXIT_BAD_INPUT, "overwrite")
        assert target.read_bytes() == before
    # quantize -o, export -o: the same check (core/files.refuse_overwriting), hard links included
    os.link(model, tmp_path / "again.onnx")
    with pytest.raises(ConfigError, match="overwrite"):
        refuse_overwriting(tmp_path / "again.onnx", [model])
    refuse_overwriting(Path(os.devnull), [model, Path(os.devnull)])  # a device is written through, not overwritten
    # an input that is a link to the output file
    out = tmp_path / "r.csv"
    out.write_text(HEADER)
    (folder / "zz.png").symlink_to(out)
    assert_one_line_error(invoke("predict", model, folder, "-o", out), EXIT_BAD_INPUT, "overwrite")
    assert out.read_text() == HEADER


# --- 2. One writer per output -------------------------------------------------------------------------

def _batch(*paths) -> RowBatch:
    import numpy as np

    p = np.zeros((len(paths), 10), np.float32)
    p[:, 3] = 1.0
    return RowBatch.scored(list(paths), [None] * len(paths), p, 3)


def test_a_second_run_on_a_results_file_being_written_is_refused(tmp_path):
    """The first run is this process (a ResultFile open, rows written); the second a real CLI process,
    with and without --resume: exit 2, one line naming the holder, the first run's rows untouched."""
    folder = images(tmp_path / "in", 2)
    out = tmp_path / "r.csv"
    schema = RowSchema(tuple(str(i) for i in range(10)), 3)
    first = ResultFile(out, "csv")
    first.open(schema)
    first.write(_batch("earlier/a.png", "earlier/b.png"))
    partial = out.with_name("r.csv.partial")
    before = partial.read_bytes()
    for extra in ((), ("--resume",)):
        proc = cli("predict", MODEL, folder, "-o", out, "-q", *extra)
        assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
        line = one_line(proc.stderr)
        assert f"pid {os.getpid()}" in line and "being written" in line and str(out) in line
        assert partial.read_bytes() == before
    first.write(_batch("earlier/c.png"))
    first.commit({})
    assert complete_csv_rows(out) == 3 and not lock_path(out).exists()
    # finished: the lock is gone, and the next run may go on
    assert cli("predict", MODEL, folder, "-o", out, "-q", "--resume").returncode == 0


@pytest.mark.slow
def test_two_real_runs_on_one_output(tmp_path):
    """Both runs are the real command: the first is stopped (SIGSTOP) while it holds the file, the
    second is refused, the first goes on and ends equal to a run nobody disturbed."""
    folder = images(tmp_path / "in", 600)
    out, reference = tmp_path / "r.csv", tmp_path / "ref.csv"
    first = subprocess.Popen([sys.executable, "-m", "cnn_edge", "predict", str(MODEL), str(folder), "-o", str(out), "-q",
                              "--batch-size", "1", "--workers", "0"], cwd=REPO, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    partial = out.with_name("r.csv.partial")
    deadline = time.monotonic() + 60
    while first.poll() is None and not (partial.exists() and partial.stat().st_size > len(HEADER)):
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        assert first.poll() is None, "the first run ended before it could be stopped"
        before = partial.read_bytes()
        for extra in ((), ("--resume",)):
            proc = cli("predict", MODEL, folder, "-o", out, "-q", *extra)
            assert proc.returncode == EXIT_BAD_INPUT and f"pid {first.pid}" in one_line(proc.stderr), proc.stderr
        assert partial.read_bytes() == before
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(120) == 0, first.stderr.read().decode()
    first.stderr.close()
    assert cli("predict", MODEL, folder, "-o", reference, "-q").returncode == 0
    assert out.read_bytes() == reference.read_bytes()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "r.csv"
    lock_path(out).write_text('{"pid": 1, "host": "gone", "started": "yesterday"}\n')  # no process holds it
    lock = OutputLock(out)
    with pytest.raises(OutputPathError, match=f"pid {os.getpid()} on host"):
        OutputLock(out)  # a second holder in this very process is refused too (flock: per open file)
    lock.release()
    assert not lock_path(out).exists()


# --- 3. stdout closed or gone --------------------------------------------------------------------------

@pytest.mark.parametrize("args", [("-o", "-"), (), ("--json",), ("--json", "-o", "r.csv"), ("-o", "link.csv")])
def test_a_closed_stdout_is_an_error_before_any_work(tmp_path, args):
    folder = images(tmp_path / "in", 2)
    (tmp_path / "link.csv").symlink_to("/dev/stdout")
    args = tuple(str(tmp_path / a) if a.endswith(".csv") else a for a in args)
    proc = cli("predict", MODEL, folder, *args, stdout=None, stderr=subprocess.PIPE,
               preexec_fn=lambda: os.close(1))
    assert proc.returncode == EXIT_BAD_INPUT
    assert "standard output is closed" in one_line(proc.stderr)
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "r.csv.partial").exists()


def test_a_results_file_opened_while_stdout_is_closed_never_becomes_stdout(tmp_path):
    """With fd 1 closed, the next file opened would get it: the run keeps it on /dev/null."""
    folder = images(tmp_path / "in", 3)
    out = tmp_path / "r.csv"
    proc = cli("predict", MODEL, folder, "-o", out, stdout=None, stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith(HEADER) and complete_csv_rows(out) == 3


@pytest.mark.parametrize("args", [("-o", "-"), (), ("--json",)])
def test_a_reader_that_went_away_ends_quietly_with_141(tmp_path, args):
    folder = images(tmp_path / "in", 3)
    proc = subprocess.Popen([sys.executable, "-m", "cnn_edge", "predict", str(MODEL), str(folder), *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    proc.stdout.close()  # before anything is written: every write meets a closed pipe
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(60) == EXIT_BROKEN_PIPE, stderr
    assert "Traceback" not in stderr


# --- 4. Messages that name the mistake -----------------------------------------------------------------

def test_swapped_arguments_and_a_folder_output_are_named(tmp_path):
    folder = images(tmp_path / "in", 2)
    results = tmp_path / "out.csv"
    line = assert_one_line_error(invoke("predict", results, folder), EXIT_BAD_INPUT, results, "swapped")
    results.write_text(HEADER)
    assert_one_line_error(invoke("predict", results, MODEL), EXIT_BAD_INPUT, "swapped", MODEL)
    assert "Is a directory" not in line
    assert_one_line_error(invoke("predict", folder, MODEL, "-o", tmp_path / "r.csv"), EXIT_BAD_INPUT, folder, "swapped")
    for fmt in ((), ("--format", "jsonl")):
        line = assert_one_line_error(invoke("predict", MODEL, folder, "-o", folder, *fmt), EXIT_BAD_INPUT, folder, "folder")
        assert "--engine ray" in line
    assert results.read_text() == HEADER


def test_an_s3_input_on_the_local_engine_points_at_ray(tmp_path):
    assert_one_line_error(invoke("predict", MODEL, "s3://bucket/digits/", "-o", tmp_path / "r.csv"), EXIT_BAD_INPUT,
                          "s3://bucket/digits/", "--engine ray")
    assert not (tmp_path / "r.csv.partial").exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_count_rows_counts_complete_rows_only(tmp_path, fmt):
    """The count said on a full disk is what --resume will keep: names with a newline, a quote or a
    line separator count once, a row cut mid-name not at all."""
    schema = RowSchema(tuple(str(d) for d in range(10)), 3)
    probs = np.full((3, 10), 0.1, np.float32)
    batch = RowBatch.scored(['a\nb.png', 'q"u.png', "l\u2028s.png"], ["", "", ""], probs, 3)
    text = (schema.header_text() if fmt == "csv" else "") + schema.text(batch, fmt)
    f = tmp_path / f"r.{fmt}"
    for cut, expected in ((len(text), 3), (text.rindex("l\u2028") + 3, 2)):
        f.write_text(text[:cut], encoding="utf-8")
        assert count_rows(f, schema, fmt) == expected
    if fmt == "csv":
        f.write_text(text, encoding="utf-8")
        assert complete_csv_rows(f) == 3


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_disk_full_reports_the_rows_really_kept(tmp_path, fmt):
    """A real file size limit (RLIMIT_FSIZE) stops the run mid-batch, twice (the second a --resume):
    the count said equals the complete rows in the partial file, earlier runs' included; names with
    a newline or a quote do not fool the count."""
    newline, quote = "_new\nline", '_q"uote'
    names = [f"{i:04d}{newline if i % 7 == 0 else ''}{quote if i % 5 == 0 else ''}.png" for i in range(300)]
    folder = images(tmp_path / "in", 0, names)
    out = tmp_path / f"r.{fmt}"
    partial = out.with_name(out.name + ".partial")

    def run_limited(limit: int, *extra) -> subprocess.CompletedProcess:
        def limit_size():
            import resource
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        return cli("predict", MODEL, folder, "-o", out, "-q", "--batch-size", "64", *extra, preexec_fn=limit_size)

    for limit, extra in ((9000, ()), (21000, ("--resume",))):
        proc = run_limited(limit, *extra)
        assert proc.returncode == EXIT_BAD_INPUT and "Traceback" not in proc.stderr, proc.stderr
        if fmt == "csv":
            kept = complete_csv_rows(partial)
        else:
            kept = partial.read_bytes().count(b"\n")
        assert 0 < kept < 300
        said = {int(n.replace(",", "")) for n in re.findall(r"([\d,]+) (?:complete )?rows", proc.stderr)}
        assert said == {kept}, (proc.stderr, kept)
    assert invoke("predict", MODEL, folder, "-o", out, "--resume", "-q").exit_code == 0


def test_a_local_folder_of_part_files_has_one_writer(tmp_path):
    """--engine ray's PartFolder on a local folder: DIR.lock beside it, from open to commit or abort."""
    pytest.importorskip("pyarrow")
    from cnn_edge.prediction.sinks import PartFolder

    schema = RowSchema(tuple(str(i) for i in range(10)), 3)
    out = tmp_path / "parts"
    first = PartFolder(str(out), "csv")
    first.open(schema)
    first.write(_batch("a.png"))
    first.flush()
    second = PartFolder(str(out), "csv", resume=True)
    with pytest.raises(OutputPathError, match=f"being written by cnn-edge pid {os.getpid()}"):
        second.open(schema)
    first.commit({})
    assert not lock_path(out).exists() and (out / "_SUCCESS").exists()
    third = PartFolder(str(out), "csv", resume=True)
    third.open(schema)
    assert third.done == {"a.png"}
    third.abort()
    assert not lock_path(out).exists()


def test_every_json_report_fails_on_a_closed_stdout():
    """print_json, which every --json report goes through: exit 2 and one line, not a silent exit 0."""
    proc = cli("info", "--json", stdout=None, stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))
    assert proc.returncode == EXIT_BAD_INPUT and "standard output is closed" in one_line(proc.stderr)
    assert cli("info", "--json").returncode == 0


# --- 6. SIGTERM on the local engine ----------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_keeps_the_rows_and_resume_finishes_the_file(tmp_path):
    """The real command SIGTERMed while its rows stream into r.csv.partial: exit 143, one line of
    rows kept and one saying how to continue, no traceback; --resume then ends with the very file
    an undisturbed run writes."""
    folder = images(tmp_path / "in", 3000)
    out, reference = tmp_path / "r.csv", tmp_path / "ref.csv"
    run = subprocess.Popen([sys.executable, "-m", "cnn_edge", "predict", str(MODEL), str(folder), "-o", str(out), "-q"],
                           cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    partial = out.with_name("r.csv.partial")
    deadline = time.monotonic() + 60
    while run.poll() is None and not (partial.exists() and partial.stat().st_size > len(HEADER)):
        assert time.monotonic() < deadline
        time.sleep(0.002)
    assert run.poll() is None, "the run ended before it could be stopped"
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 143, err
    assert "Traceback" not in err and "--resume" in err, err
    kept = complete_csv_rows(partial)
    assert 0 < kept < 3000 and not out.exists()
    assert re.search(rf"^{kept:,} rows kept in .*r\.csv\.partial; rerun with --resume", err, re.M), err
    resumed = cli("predict", MODEL, folder, "-o", out, "-q", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert cli("predict", MODEL, folder, "-o", reference, "-q").returncode == 0
    assert out.read_bytes() == reference.read_bytes() and not partial.exists()
