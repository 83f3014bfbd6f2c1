"""--resume accepts every file `predict` writes: CSV and JSONL results files and their .partial
files (complete, cut at any byte of a row, or cut by a real full disk), and the part folders of
--engine ray, with every awkward kind of file name and with models whose scores are logits or whose
labels include the empty string. The files are made by really running `python3 -m cnn_edge predict`
on PNGs with those names; each resumed run must end byte-equal to one uninterrupted run. A file
that is not ours, or is damaged before its last row, is still refused."""
from __future__ import annotations

import csv
import io
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from cnn_edge.core import contract as C
from cnn_edge.core.errors import ConfigError
from cnn_edge.prediction.rows import RowBatch, RowSchema
from cnn_edge.prediction.sinks import PartFolder, ResultFile
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from hostile_files import digit  # noqa: E402

RELEASED = REPO / "exports" / "mnist_cnn.int8.onnx"
EXIT_BAD_INPUT = 2
# Every awkward kind of file name (NUL cannot be in a POSIX name). The separators are line ends for
# str.splitlines and some readers, not for json or the csv module.
NAMES = {
    "u2028": "line\u2028sep.png",
    "u2029": "para\u2029sep.png",
    "nel": "next\x85line.png",
    "cr": "carriage\rreturn.png",
    "lf": "new\nline.png",
    "crlf": "both\r\nends.png",
    "lf_lf": "\n\nmany\n\n.png",
    "quotes": 'say "hi", "there".png',
    "lone_quote": 'a"b.png',
    "comma": "a,b,c.png",
    "formula": "=SUM(A1).png",
    "apostrophe": "'quoted.png",
    "spaces": "  spaced out  .png",
    "tab": "tab\tbed.png",
    "bom": "\ufeffbom.png",
    "long": "L" * 240 + ".png",
    "not_utf8": os.fsdecode(b"bytes\xff\xfe\x80.png"),
    "plain": "plain.png",
}
# The tiny logits model's labels: the empty string, and labels a spreadsheet would run.
LOGIT_LABELS = ["e\u2028ight", "=one", "'two", "-3", "four, five", 'six "6"', "se\nven", "", "nine", "ten"]


def logits_model(path: Path, labels=LOGIT_LABELS) -> Path:
    """A contract-shaped model whose "probabilities" are its logits (Identity): scores above 1 and
    below 0, and labels from metadata (the empty string among them)."""
    rng = np.random.default_rng(0)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], (rng.normal(size=(784, 10)) / 300).ravel().tolist())
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 784])
    bias = helper.make_tensor("b", TensorProto.FLOAT, [10], np.linspace(-20, 5, 10).tolist())  # some scores < 0
    nodes = [helper.make_node("Reshape", [C.INPUT_NAME, "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["scores"]),
             helper.make_node("Add", ["scores", "b"], [C.OUTPUT_LOGITS]),
             helper.make_node("Identity", [C.OUTPUT_LOGITS], [C.OUTPUT_PROBABILITIES])]
    graph = helper.make_graph(
        nodes, "logits", [helper.make_tensor_value_info(C.INPUT_NAME, TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 10]) for n in C.OUTPUT_NAMES],
        [weight, shape, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", C.OPSET)])
    model.ir_version = 10
    helper.set_model_props(model, {C.META_CLASS_LABELS: json.dumps(labels)})
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())
    return path


def images(folder: Path, names=NAMES.values()) -> Path:
    """A PNG per name (a digit, or noise that is an error row), and a broken file (an error row)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        pixels = digit(i, 28) if i % 2 else np.random.default_rng(i).integers(0, 256, (28, 28), np.uint8)
        Image.fromarray(pixels).save(os.fsencode(folder) + b"/" + os.fsencode(name), format="PNG")
    (folder / "broken\u2028\n.png").write_bytes(b"\x89PNG not really")
    return folder


def predict(model: Path, inputs, out: Path, *extra, fsize: int | None = None) -> subprocess.CompletedProcess:
    """The real command in a fresh process; `fsize` sets RLIMIT_FSIZE there, so a write past it fails
    with EFBIG as on a full disk (SIGXFSZ ignored, else it kills the process)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "cnn_edge", "predict", str(model), *map(str, inputs), "-o", str(out),
                           "-q", "--workers", "0", "--batch-size", "4", *extra], capture_output=True, cwd=REPO,
                          env=env, timeout=120, preexec_fn=limit if fsize is not None else None)


def record_ends(data: bytes, fmt: str) -> list[int]:
    """Where the writer ended each record (the CSV header too), found independently of the reader
    under test: JSONL after each b"\\n"; CSV after each b"\\r\\n" outside quotes (the writer quotes
    every cell holding a quote, so an even count of quotes so far means outside)."""
    if fmt == "jsonl":
        return [i + 1 for i, b in enumerate(data) if b == 0x0A]
    ends, quotes = [], 0
    for i, b in enumerate(data):
        quotes += b == 0x22
        if b == 0x0A and data[i - 1] == 0x0D and quotes % 2 == 0:
            ends.append(i + 1)
    return ends


def row_paths(data: bytes, fmt: str) -> list[str]:
    text = data.decode("utf-8", "surrogateescape")
    if fmt == "jsonl":
        return [json.loads(line)["path"] for line in text.split("\n")[:-1]]
    paths = [row[0] for row in list(csv.reader(io.StringIO(text, newline="")))[1:]]
    return [p[1:] if p[:1] == "'" else p for p in paths]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The inputs, the two models, and each model's uninterrupted file in each format, written by the
    real command: {(model, fmt): (model path, labels, file bytes)}."""
    root = tmp_path_factory.mktemp("any")
    folder = images(root / "in")
    models = {"released": (RELEASED, [str(d) for d in range(10)]),
              "logits": (logits_model(root / "logits.onnx"), LOGIT_LABELS)}
    files = {}
    for key, (model, labels) in models.items():
        for fmt in ("csv", "jsonl"):
            out = root / f"{key}.{fmt}"
            proc = predict(model, [folder], out)
            assert proc.returncode == 3, proc.stderr.decode()  # the broken file's row is an error
            files[key, fmt] = (model, labels, out.read_bytes())
    return folder, files


CASES = [(m, f) for m in ("released", "logits") for f in ("csv", "jsonl")]


def test_the_files_hold_what_this_test_is_about(made):
    """The awkward names, raw separators, scores outside [0, 1] and the empty label really are in
    the files (else the tests below prove nothing)."""
    folder, files = made
    csv_logits, jsonl_logits = files["logits", "csv"][2], files["logits", "jsonl"][2]
    for data in (csv_logits, jsonl_logits):
        assert "\u2028".encode() in data and "\u2029".encode() in data and "\x85".encode() in data
        assert b"\xff\xfe\x80" in data or b"\\udcff" in data
    assert b'"' + str(folder).encode() + b"/new\nline.png" in csv_logits
    assert b",-" in csv_logits and b',,' in csv_logits  # a negative score; the empty label's cell
    rows = [json.loads(line) for line in jsonl_logits.decode().split("\n")[:-1]]
    scores = [t["probability"] for r in rows for t in r["top_k"]]
    assert min(scores) < 0 and max(scores) > 1
    assert "" in {r["prediction"] for r in rows} and "" in {t["label"] for r in rows for t in r["top_k"]}
    assert 5 <= sum(bool(r["error"]) for r in rows) <= len(rows) - 5  # error rows (noise, broken) and ok rows
    assert len(rows) == len(NAMES) + 1


@pytest.mark.parametrize("model,fmt", CASES)
def test_a_cut_at_every_byte_keeps_exactly_the_whole_rows_before_it(made, model, fmt, tmp_path):
    """Every byte offset of the whole file: what --resume keeps is the file up to the last record
    the writer ended, and the paths of exactly those rows."""
    _, files = made
    _, labels, data = files[model, fmt]
    schema = RowSchema(tuple(labels), 3)
    ends = record_ends(data, fmt)
    paths = row_paths(data, fmt)
    first_row = 1 if fmt == "csv" else 0  # the CSV header is a record, not a row
    assert len(ends) == len(paths) + first_row and ends[-1] == len(data)
    for offset in range(len(data) + 1):
        whole = [e for e in ends if e <= offset]
        kept = schema.kept_rows(data[:offset], fmt, "r", may_be_cut=True)
        assert kept.data == data[: whole[-1] if whole else 0], offset
        assert kept.paths == set(paths[: max(len(whole) - first_row, 0)]), offset
    # The same through the sink, at the start of each record and one byte into it.
    out = tmp_path / f"r.{fmt}"
    for offset in [e + d for e in [0, *ends[:-1]] for d in (0, 1)]:
        (tmp_path / f"r.{fmt}.partial").write_bytes(data[:offset])
        sink = ResultFile(out, fmt, resume=True)
        sink.open(schema)
        sink.abort()
        whole = [e for e in ends if e <= offset] or [ends[0] if fmt == "csv" else 0]  # CSV: a new header
        assert (tmp_path / f"r.{fmt}.partial").read_bytes() == data[: whole[-1]], offset


def cut_points(data: bytes) -> list[int]:
    """Offsets inside the awkward rows: just after the raw newline inside a quoted CSV name (after the
    "\\n" escape in JSONL), inside the three bytes of U+2028, between the two quotes of a doubled CSV
    quote (inside the JSONL escape \\"), and one byte short of the end."""
    points = []
    for needle, into in ((b"new\nline", 4), (b"new\\nline", 5), ("line\u2028sep".encode(), 5),
                         (b'say ""hi""', 5), (b'say \\"hi\\"', 5)):
        at = data.find(needle)
        if at >= 0:
            points.append(at + into)
    assert len(points) == 3, points
    return [*points, len(data) - 1]


@pytest.mark.slow
@pytest.mark.parametrize("model,fmt", CASES)
def test_resume_after_a_cut_anywhere_ends_equal_to_one_run(made, model, fmt, tmp_path):
    """A .partial cut inside each awkward row (as a crash leaves it), resumed by the real command:
    byte-equal to the uninterrupted run's file. And --resume onto the finished file changes nothing."""
    folder, files = made
    model_path, _, data = files[model, fmt]
    out = tmp_path / f"r.{fmt}"
    partial = tmp_path / f"r.{fmt}.partial"
    for offset in cut_points(data):
        partial.write_bytes(data[:offset])
        proc = predict(model_path, [folder], out, "--resume")
        # 3: the finished file holds failed rows (noise, a broken file), whichever run wrote them
        assert proc.returncode == 3, (offset, proc.stderr.decode())
        assert out.read_bytes() == data and not partial.exists(), offset
    proc = predict(model_path, [folder], out, "--resume")  # the finished file itself: nothing to do
    assert proc.returncode == 3 and out.read_bytes() == data, proc.stderr.decode()


@pytest.mark.slow  # 6 runs of the command per case: 3 to 7 s on 2 shared cores
@pytest.mark.parametrize("model,fmt", CASES)
def test_resume_after_a_real_full_disk_ends_equal_to_one_run(made, model, fmt, tmp_path):
    """RLIMIT_FSIZE in the child: write() fails with EFBIG part-way through an awkward row (a quoted
    name with a newline, a JSONL string, a U+2028), exactly as a full disk stops it. The run says how
    to go on; --resume then ends byte-equal to the uninterrupted run."""
    folder, files = made
    model_path, _, data = files[model, fmt]
    out = tmp_path / f"r.{fmt}"
    partial = tmp_path / f"r.{fmt}.partial"
    for limit in cut_points(data)[:3]:
        out.unlink(missing_ok=True)
        proc = predict(model_path, [folder], out, fsize=limit)
        stderr = proc.stderr.decode()
        assert proc.returncode == EXIT_BAD_INPUT and "--resume" in stderr and "Traceback" not in stderr, stderr
        assert partial.read_bytes() == data[:limit] and not out.exists()  # cut right there, by the limit
        proc = predict(model_path, [folder], out, "--resume")
        assert proc.returncode == 3 and out.read_bytes() == data, (limit, proc.stderr.decode())


# --- Rows read back directly: what the writer can write is kept, anything else refused ----------

LOGITS = RowSchema(tuple(LOGIT_LABELS), 3)


def logit_batch(paths) -> RowBatch:
    """Rows of logits (scores above 1 and below 0; the empty label wins some), one error row."""
    scores = np.linspace(-3, 30, 10 * len(paths)).reshape(len(paths), 10)[:, ::-1].astype(np.float32)
    scores[::2] = scores[::2, ::-1]  # the empty label (index 7) and "ten" take turns near the top
    errors = ["broken\u2028file" if i == 1 else "" for i in range(len(paths))]
    return RowBatch.scored(paths, errors, scores[[i for i, e in enumerate(errors) if not e]], 3)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_rows_of_logits_and_the_empty_label_are_kept(fmt):
    names = list(NAMES.values())
    data = LOGITS.encode(logit_batch(names), fmt)
    assert LOGITS.kept_paths(data, fmt, "r") == set(names)


@pytest.mark.parametrize("fmt,damage", [
    ("csv", lambda d: d.replace(b"\r\n", b"\r\nextra,cell\r\n", 3)),  # a foreign row in the middle
    ("csv", lambda d: d.replace(b"0.", b"0.5", 1)),  # a score not in the writer's form
    ("csv", lambda d: d.replace(b",ten,", b",elf,", 1)),  # not a label of the model
    ("csv", lambda d: d.replace(b"\r\n", b"\r\n\r\n", 4)),  # an empty record in the middle
    ("jsonl", lambda d: d.replace("\u2028".encode(), b"\n", 1)),  # a separator made a line end
    ("jsonl", lambda d: d.replace(b'"confidence": ', b'"confidence": 1', 1)),  # not the top-1 score
    ("jsonl", lambda d: d.replace(b"\n", b"\nNaN\n", 1)),
])
def test_a_file_damaged_before_its_last_row_is_refused(fmt, damage):
    data = damage(LOGITS.encode(logit_batch(list(NAMES.values())), fmt))
    with pytest.raises(ConfigError, match=r"r line \d+"):
        LOGITS.kept_rows(data, fmt, "r", may_be_cut=True)


@pytest.mark.parametrize("fmt,data", [
    ("csv", b"name,score\r\nx,1"), ("csv", b"name,score"), ("jsonl", b"[1, 2]"), ("jsonl", b"hello"),
    ("csv", LOGITS.header_text().encode() + b"a,b,c,d,e,f,g,h,i,j,k,l"),  # a cut row of too many cells
])
def test_a_file_that_is_not_ours_is_refused_even_when_its_end_looks_cut(fmt, data):
    with pytest.raises(ConfigError):
        LOGITS.kept_rows(data, fmt, "r", may_be_cut=True)


@pytest.mark.parametrize("score", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_scores_the_writer_never_writes_are_refused(fmt, score):
    batch = logit_batch(["a.png", "b.png", "c.png"])
    batch.top_probability[0, 1] = score
    with pytest.raises(ConfigError, match="r line"):
        LOGITS.kept_paths(LOGITS.encode(batch, fmt), fmt, "r")


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_part_folders_with_every_awkward_name_resume(tmp_path, fmt):
    """Part files as the Ray engine writes them (RowSchema.encode, whole files): every awkward name,
    logits and the empty label are read back; a part file cut short (never written so) is refused."""
    pytest.importorskip("pyarrow")
    pytest.importorskip("fsspec")
    names = list(NAMES.values())  # the name that is not UTF-8 too: Parquet keeps it in path_bytes
    for i, chunk in enumerate((names[:9], names[9:])):
        (tmp_path / f"part-run-{i:05d}.{fmt}").write_bytes(LOGITS.encode(logit_batch(chunk), fmt))
    folder = PartFolder(str(tmp_path), fmt, resume=True)
    folder.open(LOGITS)
    assert folder.done == set(names) and [p["rows"] for p in folder.parts] == [9, len(names) - 9]
    folder.abort()  # lets go of the folder (one writer at a time)
    if fmt != "parquet":
        last = tmp_path / f"part-run-00001.{fmt}"
        last.write_bytes(last.read_bytes()[:-3])
        with pytest.raises(ConfigError, match="cut off"):
            PartFolder(str(tmp_path), fmt, resume=True).open(LOGITS)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_ray_part_folders_with_line_separator_names_resume(ray_cluster, tmp_path, fmt):
    """--engine ray: a part folder holding U+2028/U+2029/U+0085 names, resumed with more inputs,
    ends with every input once and the local engine's rows."""
    from typer.testing import CliRunner

    from cnn_edge.cli import app

    def invoke(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    first = images(tmp_path / "a", [NAMES["u2028"], NAMES["u2029"], NAMES["nel"], NAMES["lf"]])
    second = images(tmp_path / "b", ["x\u2028y.png", "z\u2029.png"])
    out = tmp_path / "out"
    result = invoke("predict", RELEASED, first, "-o", out, "--engine", "ray", "--format", fmt, "-q")
    assert result.exit_code in (0, 3), result.output
    result = invoke("predict", RELEASED, first, second, "-o", out, "--engine", "ray", "--format", fmt, "-q",
                    "--resume")
    assert result.exit_code in (0, 3), result.output
    rows = b"".join(p.read_bytes() for p in sorted(out.glob(f"part-*.{fmt}")))
    paths = PartFolder(str(out), fmt, resume=True)
    paths.open(RowSchema(tuple(str(d) for d in range(10)), 3))
    expected = {str(folder / name) for folder in (first, second) for name in os.listdir(folder)}
    assert paths.done == expected and len(expected) == 8  # each folder's broken file is a row too
    assert "\u2028".encode() in rows and "\x85".encode() in rows


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_resumed_run_exits_by_the_finished_file(tmp_path, fmt):
    """Exit 3 means the finished output holds failures: a resumed run whose own rows are all fine
    still exits 3 when a failure came from the run before it, and the summary says so."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        Image.fromarray(digit(i + 1, 28)).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / f"r.{fmt}"
    assert predict(RELEASED, [folder / "broken.png", folder / "a.png"], out).returncode == 3
    proc = predict(RELEASED, [folder], out, "--resume", "--json")
    summary = json.loads(proc.stdout)
    assert proc.returncode == 3, proc.stderr.decode()
    assert (summary["failed"], summary["skipped"], summary["skipped_failed"], summary["ok"]) == (0, 2, 1, 2)
    out2 = tmp_path / f"s.{fmt}"
    assert predict(RELEASED, [folder / "c.png"], out2).returncode == 0
    assert predict(RELEASED, [folder / "c.png", folder / "a.png"], out2, "--resume").returncode == 0


def test_parquet_keeps_a_name_that_is_not_utf8_exactly():
    """Parquet's strings are UTF-8: `path` shows the odd bytes as U+FFFD, `path_bytes` holds the
    exact name (null for the others), and --resume reads the exact name back."""
    pq = pytest.importorskip("pyarrow.parquet")
    import io

    names = [NAMES["not_utf8"], NAMES["u2028"]]
    data = LOGITS.encode(logit_batch(names), "parquet")
    table = pq.read_table(io.BytesIO(data))
    assert table["path"].to_pylist() == ["bytes\ufffd\ufffd\ufffd.png", NAMES["u2028"]]
    assert table["path_bytes"].to_pylist() == [b"bytes\xff\xfe\x80.png", None]
    assert LOGITS.kept_paths(data, "parquet", "p") == set(names)
