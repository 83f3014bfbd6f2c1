"""The flag column: the rule (runtime/flags.py, core/flag_rule.json), its column in every format,
its counts in the summary, and --resume of files written before the column existed."""
from __future__ import annotations

import csv
import io
import json
import sys
from collections import deque

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnn_edge import Predictor
from cnn_edge.cli import app
from cnn_edge.cli.app import EXIT_BAD_INPUT
from cnn_edge.core.artifacts import RELEASE_DIR, VECTORS_FILE
from cnn_edge.core.constants import CLASS_LABELS
from cnn_edge.core.errors import ConfigError
from cnn_edge.core.flag_rule import FLAG_RULE, LOW_CONFIDENCE, REASONS, UNLIKE_MNIST, load_rule
from cnn_edge.prediction.config import PredictConfig
from cnn_edge.prediction.rows import RowBatch, RowSchema, csv_header
from cnn_edge.runtime.flags import batch_flags, input_features, row_flags, unlike_mnist

from conftest import REPO, assert_one_line_error

MODEL = REPO / RELEASE_DIR / "mnist_cnn.int8.onnx"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def vectors() -> tuple[np.ndarray, np.ndarray]:
    """The release's 40 test vectors: MNIST test digits as the model sees them, and their labels."""
    v = json.loads((REPO / RELEASE_DIR / VECTORS_FILE).read_text())["vectors"]
    return np.array([x["pixels"] for x in v], np.float32).reshape(-1, 28, 28), np.array([x["label"] for x in v])


def confident(classes) -> np.ndarray:
    """(N, 10) probabilities: 0.991 on each given class."""
    p = np.full((len(classes), 10), 0.001, np.float32)
    p[np.arange(len(classes)), classes] = 0.991
    return p


# --- the statistics, against plain per-pixel counts ---

def reference(ink: np.ndarray) -> dict[str, int]:
    """One (H, W) bool image's statistics, counted the slow and obvious way."""
    h, w = ink.shape
    p = np.pad(ink, 1)
    perimeter = int((p[:, 1:] != p[:, :-1]).sum() + (p[1:, :] != p[:-1, :]).sum())

    def pieces(mask: np.ndarray, neighbours) -> int:  # flood fill
        seen, count = np.zeros_like(mask), 0
        for y, x in zip(*np.nonzero(mask)):
            if seen[y, x]:
                continue
            count += 1
            seen[y, x] = True
            todo = deque([(y, x)])
            while todo:
                cy, cx = todo.popleft()
                for dy, dx in neighbours:
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        todo.append((ny, nx))
        return count

    eight = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    four = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    holes = pieces(~p, four) - 1  # background pieces (4-connected, the dual of 8) besides the outside
    runs = [int((r[1:] & ~r[:-1]).sum()) for r in p] + [int((c[1:] & ~c[:-1]).sum()) for c in p.T]
    solid = 0
    side = np.zeros((h + 1, w + 1), int)
    for y in range(h):
        for x in range(w):
            if ink[y, x]:
                side[y + 1, x + 1] = 1 + min(side[y, x + 1], side[y + 1, x], side[y, x])
                solid = max(solid, side[y + 1, x + 1])
    return {"ink": int(ink.sum()), "perimeter": perimeter, "euler": pieces(ink, eight) - holes,
            "crossings": max(runs), "solid": solid}


def shapes() -> np.ndarray:
    """(N, 28, 28) inputs: a dot, a diagonal pair (one 8-connected piece), a ring, a block with two
    holes, a full field, an empty one, ink touching every edge, the test vectors and random ink of
    several densities."""
    rng = np.random.default_rng(4)
    x = np.zeros((7, 28, 28), np.float32)
    x[0, 5, 5] = 255
    x[1, 5, 5] = x[1, 6, 6] = 255
    x[2, 5:15, 5:15] = 255
    x[2, 8:11, 8:11] = 0
    x[3, 2:20, 4:12] = 255  # an 8: one piece, two holes
    x[3, 5:8, 6:10] = x[3, 12:16, 6:10] = 0
    x[4] = 255
    x[6, 0, :] = x[6, :, 0] = x[6, 27, :] = x[6, :, 27] = 200
    noise = rng.uniform(0, 255, (24, 28, 28)) * (rng.random((24, 1, 1)) < 0.5)
    noise[12:] = (rng.random((12, 28, 28)) < np.linspace(0.1, 0.9, 12)[:, None, None]) * 255.0
    return np.concatenate([x, vectors()[0], noise.astype(np.float32)])


def test_statistics_are_the_plain_counts():
    x = shapes()
    got = input_features(x)
    assert set(got) == set(FLAG_RULE.features)
    for i in range(len(x)):
        want = reference(x[i] >= FLAG_RULE.ink_level)
        assert {k: int(v[i]) for k, v in got.items()} == want, i
    # The hand-made shapes, as a person counts them: dot, diagonal pair, ring, two holes, full, empty.
    assert got["euler"][:6].tolist() == [1, 1, 0, -1, 1, 0]
    assert got["solid"][:6].tolist() == [1, 1, 4, 4, 28, 0]
    assert got["perimeter"][[0, 4]].tolist() == [4, 4 * 28] and got["crossings"][3] == 3


# --- the rule ---

def test_the_rule_file_is_what_the_runtime_holds():
    rule = load_rule()
    assert rule == FLAG_RULE and REASONS == (LOW_CONFIDENCE, UNLIKE_MNIST)
    assert 0 < rule.low_confidence_below < 1 and set(rule.features) == {"ink", "perimeter", "euler", "crossings", "solid"}
    for name, pairs in rule.ranges.items():
        assert len(pairs) == len(CLASS_LABELS) and all(lo <= hi for lo, hi in pairs), name
    lo, hi = rule.bounds("ink", 3)  # another class count: one range, the union of the classes'
    assert lo == (min(p[0] for p in rule.ranges["ink"]),) and hi == (max(p[1] for p in rule.ranges["ink"]),)


def test_mnist_digits_are_not_flagged_and_other_pictures_are():
    x, labels = vectors()
    assert row_flags(x, confident(labels)) == [""] * len(x)  # confident and MNIST-like
    rng = np.random.default_rng(1)
    noise = rng.uniform(0, 255, (4, 28, 28)).astype(np.float32)
    blob = np.zeros((1, 28, 28), np.float32)
    blob[0, 4:24, 6:22] = 255  # a solid block, what a photo of an object can become
    assert row_flags(np.concatenate([noise, blob]), confident([8] * 5)) == [UNLIKE_MNIST] * 5


def test_low_confidence_is_below_the_threshold_and_reasons_join_in_order():
    x, labels = vectors()
    p = confident(labels[:3])
    p[0, labels[0]] = 0.5  # at the threshold: not below it
    p[1, labels[1]] = 0.4999
    assert row_flags(x[:3], p, below=0.5) == ["", LOW_CONFIDENCE, ""]
    assert row_flags(x[:3], p) == [LOW_CONFIDENCE, LOW_CONFIDENCE, ""]  # the rule's 0.95
    assert row_flags(x[:3], p, below=0.0) == ["", "", ""]  # 0: off
    noise = np.random.default_rng(2).uniform(0, 255, (1, 28, 28)).astype(np.float32)
    low = np.full((1, 10), 0.1, np.float32)
    assert row_flags(noise, low) == [f"{LOW_CONFIDENCE}+{UNLIKE_MNIST}"]


def test_the_class_given_decides_what_is_unlike():
    """A thin upright stroke is a 1 as MNIST writes it, and unlike any 0 MNIST has."""
    stroke = np.zeros((1, 28, 28), np.float32)
    stroke[0, 4:24, 13:15] = 255
    assert not unlike_mnist(stroke, np.array([1]), 10)[0]
    assert unlike_mnist(stroke, np.array([0]), 10)[0]


def test_batch_flags_skip_error_rows_and_keep_positions():
    x, labels = vectors()
    noise = np.random.default_rng(3).uniform(0, 255, (28, 28)).astype(np.float32)
    pixels = np.stack([x[0], np.zeros((28, 28), np.float32), noise])
    flags = batch_flags(pixels, ["", "blank image", ""], confident([labels[0], 8]))
    assert flags == ["", "", UNLIKE_MNIST]


def test_flag_below_is_a_probability():
    with pytest.raises(ConfigError, match="--flag-below"):
        PredictConfig(flag_below=1.5)
    with pytest.raises(ConfigError, match="--flag-below"):
        PredictConfig(flag_below=float("nan"))
    with pytest.raises(ConfigError, match="flag_below"):
        Predictor(MODEL, flag_below=-0.1)


# --- the column, in every format, and the summary ---

@pytest.fixture
def pictures(tmp_path):
    """Two MNIST digits, a dark block on paper (classified, unlike MNIST: solid), a blank page (an
    error row)."""
    folder = tmp_path / "in"
    folder.mkdir()
    x, labels = vectors()
    for i in (0, 1):
        Image.fromarray(x[i].astype(np.uint8)).save(folder / f"a{i}_{labels[i]}.png")
    block = np.full((60, 60), 240, np.uint8)
    block[15:45, 20:42] = 30
    Image.fromarray(block).save(folder / "b_block.png")
    Image.new("L", (40, 40), 255).save(folder / "c_blank.png")
    return folder


def test_the_flag_column_in_csv_jsonl_and_the_summary(pictures, tmp_path):
    result = invoke("predict", MODEL, pictures, "-o", tmp_path / "r.csv", "--json", "-q")
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    rows = list(csv.DictReader((tmp_path / "r.csv").open(newline="")))
    assert list(rows[0]) == csv_header(3) and csv_header(3)[-2:] == ["error", "flag"]
    assert [r["flag"] for r in rows[:2]] == ["", ""]
    assert UNLIKE_MNIST in rows[2]["flag"].split("+") and rows[3]["error"] and rows[3]["flag"] == ""
    assert summary["flagged"] == 1 and summary["flags"][UNLIKE_MNIST] == 1 and set(summary["flags"]) == set(REASONS)
    assert summary["ok"] == 3 and summary["failed"] == 1

    result = invoke("predict", MODEL, pictures, "-o", tmp_path / "r.jsonl", "-q")
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [list(x)[-2:] for x in lines] == [["error", "flag"]] * 4
    assert [x["flag"] for x in lines] == [None, None, rows[2]["flag"], None]
    # The summary line counts the one flagged row under each of its reasons (unlike_mnist, and
    # low_confidence too when the model is unsure of the block).
    counted = result.stdout.split("(1 flagged: ", 1)[1].split(")", 1)[0].split(", ")
    assert sorted(counted) == sorted(f"1 {reason}" for reason in rows[2]["flag"].split("+")), result.stdout

    table = invoke("predict", MODEL, pictures)  # the table on screen says it too
    assert table.stdout.splitlines()[2].endswith(f"flag: {rows[2]['flag']}")
    off = invoke("predict", MODEL, pictures, "-o", tmp_path / "off.csv", "--flag-below", "0", "--json", "-q")
    assert json.loads(off.stdout)["flags"] == {LOW_CONFIDENCE: 0, UNLIKE_MNIST: 1}  # 0: confidence flags nothing


def test_parquet_rows_carry_the_flag(pictures):
    pq = pytest.importorskip("pyarrow.parquet")
    x, labels = vectors()
    noise = np.random.default_rng(3).uniform(0, 255, (28, 28)).astype(np.float32)
    probs = confident([labels[0], 8])
    batch = RowBatch.scored(["a", "b", "c"], ["", "", "blank image"], probs, 3,
                            batch_flags(np.stack([x[0], noise, noise]), ["", "", "blank image"], probs))
    schema = RowSchema(CLASS_LABELS, 3)
    table = pq.read_table(io.BytesIO(schema.encode(batch, "parquet")))
    assert table["flag"].to_pylist() == [None, UNLIKE_MNIST, None]
    assert schema.kept_paths(schema.encode(batch, "parquet"), "parquet", "part") == {"a", "b", "c"}


def test_the_python_api_flags_predictions(pictures):
    predictor = Predictor(MODEL)
    files = sorted(pictures.iterdir())[:3]
    assert [p.flag for p in predictor.predict(files)][:2] == ["", ""]
    assert UNLIKE_MNIST in predictor.predict(files[2]).pop().flag
    x, _ = vectors()
    confidences = [p.confidence for p in predictor.predict_prepared(x)]
    below = float(np.median(confidences))
    flags = [p.flag for p in Predictor(MODEL, flag_below=below).predict_prepared(x)]
    assert flags == [LOW_CONFIDENCE if c < below else "" for c in confidences] and LOW_CONFIDENCE in flags


def test_a_bad_flag_below_is_one_line(pictures, tmp_path):
    assert_one_line_error(invoke("predict", MODEL, pictures, "--flag-below", "2"), EXIT_BAD_INPUT, "--flag-below")


# --- --resume of files written before the column existed ---

def old_file(tmp_path, fmt: str, pictures) -> tuple:
    """A results file as cnn-edge wrote it before the flag column (this run's rows without it), cut
    after its second row, and the rows of one whole run today."""
    full = tmp_path / f"full.{fmt}"
    assert invoke("predict", MODEL, pictures, "-o", full, "-q").exit_code == 3
    text = full.read_bytes().decode()  # CSV's \r\n as written
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text, newline="")))
        buf = io.StringIO(newline="")
        csv.writer(buf).writerows(r[:-1] for r in rows[:3])
        old = buf.getvalue()
    else:
        old = "".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "flag"}) + "\n"
                      for line in text.splitlines()[:2])
    out = tmp_path / f"old.{fmt}"
    out.write_bytes(old.encode())
    return out, old, text


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_continues_a_file_written_before_the_flag_column(tmp_path, pictures, fmt):
    out, old, today = old_file(tmp_path, fmt, pictures)
    result = invoke("predict", MODEL, pictures, "-o", out, "--resume", "--json", "-q")
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert summary["skipped"] == 2 and summary["ok"] + summary["failed"] == 2 and summary["flagged"] == 1
    text = out.read_bytes().decode()
    assert text.startswith(old)  # the kept rows as they were, the new ones in the file's own layout
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert rows[0] == csv_header(3, flag=False) and all(len(r) == len(rows[0]) for r in rows) and len(rows) == 5
        assert rows == [r[:-1] for r in csv.reader(io.StringIO(today, newline=""))]
    else:
        lines = [json.loads(x) for x in text.splitlines()]
        assert len(lines) == 4 and all("flag" not in x for x in lines)
        assert lines == [{k: v for k, v in json.loads(x).items() if k != "flag"} for x in today.splitlines()]
    # ... and it resumes again, now whole
    again = invoke("predict", MODEL, pictures, "-o", out, "--resume", "--json", "-q")
    assert again.exit_code == 3 and json.loads(again.stdout)["skipped"] == 4 and out.read_bytes().decode() == text


def test_resume_refuses_flags_cnn_edge_does_not_write(tmp_path, pictures):
    out, _, today = old_file(tmp_path, "jsonl", pictures)
    lines = today.splitlines()
    for bad in ([lines[0], json.dumps({k: v for k, v in json.loads(lines[1]).items() if k != "flag"})],  # mixed layouts
                [lines[0].replace('"flag": null', '"flag": "sleepy"')],
                [lines[3].replace('"flag": null', f'"flag": "{UNLIKE_MNIST}"')],  # an error row with a flag
                [lines[0].replace('"flag": null', f'"flag": "{UNLIKE_MNIST}+{LOW_CONFIDENCE}"')]):  # out of order
        out.write_text("\n".join(bad) + "\n")
        result = invoke("predict", MODEL, pictures, "-o", out, "--resume", "-q")
        assert result.exit_code == EXIT_BAD_INPUT and "cannot be resumed" in result.output, bad
    full_csv = tmp_path / "full.csv"
    assert invoke("predict", MODEL, pictures, "-o", full_csv, "-q").exit_code == 3
    header, first = full_csv.read_text().splitlines()[:2]  # first: a classified row, its flag cell empty
    csv_out = tmp_path / "r.csv"
    csv_out.write_text(f"{header}\n{first}sleepy\n")
    result = invoke("predict", MODEL, pictures, "-o", csv_out, "--resume", "-q")
    assert result.exit_code == EXIT_BAD_INPUT and "flag 'sleepy'" in result.output


def test_rays_stages_flag_the_rows_as_the_local_engine_does(pictures, tmp_path):
    """Ray's decoding task and actor step (run here without Ray), through the columns that carry rows
    across the cluster: the flags of the local engine's rows."""
    from cnn_edge.distributed import stages

    files = sorted(str(p) for p in pictures.iterdir())
    decoded = stages.decode_batch({"path": np.array([stages.wire_path(f) for f in files], object)}, max_pixels=40_000_000)
    rows = stages.from_columns(stages.to_columns(stages.score(Predictor(MODEL), decoded, 3, {})))
    assert invoke("predict", MODEL, *files, "-o", tmp_path / "r.csv", "-q").exit_code == 3
    local = {r["path"]: r["flag"] for r in csv.DictReader((tmp_path / "r.csv").open(newline=""))}
    assert rows.paths == files and rows.flags == [local[f] for f in files] and any(rows.flags)
    low = stages.score(Predictor(MODEL), decoded, 3, {}, flag_below=1.0)  # --flag-below reaches the actors' step
    assert low.flags[:2] == [LOW_CONFIDENCE if c < 1.0 else "" for c in low.top_probability[:2, 0]]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_part_files_keep_the_flags_of_every_batch(tmp_path, fmt):
    """--engine ray's part folder gathers batches into one part file: each row keeps its flag."""
    pytest.importorskip("fsspec")
    pq = pytest.importorskip("pyarrow.parquet") if fmt == "parquet" else None
    from cnn_edge.prediction.sinks import PartFolder

    p = confident([1, 2])
    batches = [RowBatch.scored(["a", "b"], ["", ""], p, 3, ["", UNLIKE_MNIST]),
               RowBatch.scored(["c", "d"], ["", "blank image"], p[:1], 3, [LOW_CONFIDENCE, ""])]
    sink = PartFolder(str(tmp_path / "out"), fmt)
    sink.open(RowSchema(CLASS_LABELS, 3))
    for batch in batches:
        sink.write(batch)
    sink.commit({})
    (part,) = (tmp_path / "out").glob(f"part-*.{fmt}")
    if fmt == "csv":
        flags = [r["flag"] for r in csv.DictReader(part.open(newline=""))]
    else:
        flags = [f or "" for f in pq.read_table(part)["flag"].to_pylist()]
    assert flags == ["", UNLIKE_MNIST, LOW_CONFIDENCE, ""]


@pytest.mark.slow
def test_the_class_ranges_are_mnists():
    """The rule file's ranges are what scripts/flag_ranges.py computes from MNIST's training digits."""
    import subprocess

    from conftest import real_mnist

    data = real_mnist()
    if data is None:
        pytest.skip("needs CNN_EDGE_DATA (real MNIST)")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "flag_ranges.py"), "--data-dir", str(data), "--check"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
