"""Models that answer the wrong shape or wrong values (issue 22, round 2), on every path that runs
a model: the Python API, `predict` on the local engine with and without scoring workers, Ray,
validate, bench and the demo. Each model is a real ONNX graph built here with onnx.helper:
pixels [N, 1, 28, 28] -> Flatten -> MatMul -> logits -> Softmax -> probabilities, then a twist.

What must hold: a model whose outputs cannot match the batch that went in (one row for many, another
rank, another class count, logits in place of probabilities, a run ONNX Runtime itself fails) stops
the run with one line naming the model and the shapes, exit 2, nothing committed; a model that
returns NaN fails those rows alone (never `ok` with NaN); validate, bench and the demo refuse it."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image
from typer.testing import CliRunner

from cnn_edge import Predictor
from cnn_edge.cli import app
from cnn_edge.core import contract as C
from cnn_edge.core.errors import ModelFileError, ModelOutputError
from cnn_edge.runtime.onnx_model import NON_FINITE_ROW, open_model
from conftest import REPO, assert_one_line_error

runner = CliRunner()
PIXELS = 28 * 28


def build(path, twist: str = "", classes: int = 10, labels=None, declared=("batch", "classes"), hide=False):
    """A small model in the contract's form with one `twist` on its outputs; `labels` (a list, or
    a raw string) go into its metadata; `declared`: the outputs' declared shape (None: undeclared);
    `hide`: the outputs go through a Reshape to [rows, -1] computed when the model runs, so that
    ONNX Runtime's shape inference cannot know the class count (it would otherwise read it from
    the MatMul's weight, and the model would be refused at open)."""
    w = np.random.default_rng(0).normal(0, 0.01, (PIXELS, classes)).astype(np.float32)
    init = [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())]
    nodes = [helper.make_node("Flatten", ["pixels"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["raw"])]
    probs, logits = ("p0", "l0") if hide else ("probabilities", "logits")

    def add(op, inputs, out, **kw):
        nodes.append(helper.make_node(op, inputs, [out], **kw))

    def const(name, value, dtype=TensorProto.FLOAT):
        arr = np.asarray(value)
        init.append(helper.make_tensor(name, dtype, arr.shape, arr.ravel().tolist()))

    if twist == "first_four":  # at most 4 rows: right for small batches, wrong for larger ones
        add("Identity", ["raw"], logits)
        add("Softmax", ["raw"], "soft", axis=1)
        const("starts", [0], TensorProto.INT64)
        const("ends", [4], TensorProto.INT64)
        add("Slice", ["soft", "starts", "ends"], probs)
    elif twist in ("one_row", "slice_row"):  # one row for a batch of many
        add("Identity", ["raw"], logits)
        add("Softmax", ["raw"], "soft", axis=1)
        if twist == "one_row":
            const("axes", [0], TensorProto.INT64)
            add("ReduceMean", ["soft", "axes"], probs, keepdims=1)
        else:
            const("starts", [0], TensorProto.INT64)
            const("ends", [1], TensorProto.INT64)
            add("Slice", ["soft", "starts", "ends"], probs)
    elif twist == "nan":  # 0 / 0 on every row
        add("Identity", ["raw"], logits)
        add("Softmax", ["raw"], "soft", axis=1)
        const("zero", [0.0])
        add("Mul", ["soft", "zero"], "nought")
        add("Div", ["nought", "zero"], probs)
    elif twist == "nan_when_corner_dark":  # NaN on rows whose pixel (0, 0) is 0, ordinary ones elsewhere
        add("Identity", ["raw"], logits)
        add("Softmax", ["raw"], "soft", axis=1)
        const("idx", [0], TensorProto.INT64)
        add("Gather", ["flat", "idx"], "corner", axis=1)  # (N, 1)
        add("Div", ["corner", "corner"], "one_or_nan")
        add("Mul", ["soft", "one_or_nan"], probs)
    elif twist == "logits":  # probabilities that are the logits
        const("ten", [10.0])
        add("Mul", ["raw", "ten"], logits)
        add("Identity", [logits], probs)
    elif twist == "rank1":
        add("Identity", ["raw"], logits)
        add("Softmax", ["raw"], "soft", axis=1)
        const("axes", [1], TensorProto.INT64)
        add("ReduceSum", ["soft", "axes"], probs, keepdims=0)
    elif twist == "rank3":
        add("Identity", ["raw"], logits)
        add("Softmax", ["raw"], "soft", axis=1)
        const("axes", [1], TensorProto.INT64)
        add("Unsqueeze", ["soft", "axes"], probs)
    elif twist == "fails_at_run":  # a Reshape to [784, -1], known only when it runs: fits no small batch
        add("Identity", ["raw"], logits)
        add("Softmax", ["raw"], "soft", axis=1)
        add("Shape", ["flat"], "pixels_per_image", start=1)
        const("minus_one", [-1], TensorProto.INT64)
        add("Concat", ["pixels_per_image", "minus_one"], "shape", axis=0)
        add("Reshape", ["soft", "shape"], probs)
    else:
        assert not twist, twist
        add("Identity", ["raw"], logits)
        add("Softmax", ["raw"], probs, axis=1)
    if hide:
        const("first", [0], TensorProto.INT64)
        const("rest", [-1], TensorProto.INT64)
        for name, out in ((probs, "probabilities"), (logits, "logits")):
            add("Shape", [name], f"{name}_shape")
            add("Gather", [f"{name}_shape", "first"], f"{name}_rows", axis=0)
            add("Concat", [f"{name}_rows", "rest"], f"{name}_to", axis=0)
            add("Reshape", [name, f"{name}_to"], out)
        probs, logits = "probabilities", "logits"
    shape = list(declared) if declared is not None else None
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in (probs, logits)]
    inp = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 1, 28, 28])
    model = helper.make_model(helper.make_graph(nodes, "g", [inp], outs, init),
                              opset_imports=[helper.make_opsetid("", C.OPSET)])
    model.ir_version = 10
    if labels is not None:
        raw = labels if isinstance(labels, str) else json.dumps(labels)
        helper.set_model_props(model, {C.META_CLASS_LABELS: raw})
    onnx.save(model, str(path))
    return path


# Twists whose outputs cannot be rows of the batch: (build options, what the line must say). ONNX
# Runtime infers some shapes when it loads the graph (ReduceMean over the batch: [1, 10]; rank 1 and
# 3), and those are refused at open; the others (a Slice to one row, class counts it cannot infer,
# values) at the first run.
WRONG_SHAPE = {
    "one_row": ({"declared": None}, "shape [1, 10], a fixed batch of 1"),
    "slice_row": ({"declared": None}, "[1, 10] for a batch of 3: 1 row for 3 inputs"),
    "rank1": ({"declared": None}, "rank 1"),
    "rank3": ({"declared": None}, "rank 3"),
    "more_classes": ({"classes": 12, "labels": [str(d) for d in range(10)], "hide": True},
                     "12 classes, but it has 10 labels"),
    "zero_classes": ({"classes": 0, "hide": True}, "[3, 0]"),
    "fails_at_run": ({"declared": None}, "failed to run on a batch of"),
}


def hostile(tmp_path, name: str):
    options, _ = WRONG_SHAPE[name]
    twist = "" if name in ("more_classes", "zero_classes") else name
    return build(tmp_path / f"{name}.onnx", twist, **options)


def write_digits(folder, n: int) -> list[str]:
    """`n` digit-like PNGs (distinct, so one copied row would show)."""
    sys.path.insert(0, str(REPO / "scripts"))
    from hostile_files import digit

    for i in range(n):
        Image.fromarray(digit(i, 28)).save(folder / f"d{i}.png")
    return sorted(str(p) for p in folder.glob("*.png"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits"), 3)


@pytest.fixture(scope="module")
def six_images(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("six"), 6)


def predict(model, images, out, *extra):
    return runner.invoke(app, ["predict", str(model), *images, "-o", str(out), "-q", "--provider", "cpu", *extra])


# --- the Python API --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(WRONG_SHAPE))
def test_api_refuses_outputs_that_are_not_rows_of_the_batch(tmp_path, images, name):
    model = hostile(tmp_path, name)
    with pytest.raises(ModelFileError) as caught:  # ModelOutputError when the run finds it
        Predictor(model, provider="cpu").predict(images)
    message = str(caught.value)
    assert str(model) in message and WRONG_SHAPE[name][1] in message and "\n" not in message


def test_api_fails_a_nan_image_by_name_and_scores_the_others(tmp_path):
    model = build(tmp_path / "m.onnx", "nan_when_corner_dark")
    predictor = Predictor(model, provider="cpu")
    pixels = np.full((3, 28, 28), 100, np.float32)
    pixels[1, 0, 0] = 0  # row 1 divides 0 by 0
    with pytest.raises(ModelOutputError, match=r"image 1: the model returned NaN"):
        predictor.predict_prepared(pixels)
    errors, probs = predictor.score(pixels, ["", "", ""])
    assert errors == ["", NON_FINITE_ROW, ""] and probs.shape == (2, 10) and np.isfinite(probs).all()
    errors, probs = predictor.score(pixels, ["unreadable", "", ""])  # positions are the batch's
    assert errors == ["unreadable", NON_FINITE_ROW, ""] and probs.shape == (1, 10)


@pytest.mark.parametrize("shape, says", [
    ((3,), "shape [3] for a batch of 3; the contract is [3, 10]"),
    ((3, 1, 10), "shape [3, 1, 10]"),
    ((1, 10), "1 row for 3 inputs"),
    ((3, 12), "12 classes, but it has 10 labels"),
    ((3, 0), "[3, 0]"),
    ((), "shape []"),
])
def test_outputs_of_another_shape_than_the_batch_are_refused(shape, says):
    from cnn_edge.runtime.onnx_model import check_outputs

    with pytest.raises(ModelOutputError, match=re.escape(says)):
        check_outputs("m.onnx", 3, 10, np.full(shape, 0.1, np.float32))


def test_scores_that_are_not_probabilities_are_written_as_they_come(tmp_path, images):
    """A model closing with logits, not a softmax, is run: its rows carry its scores (the issue's
    "rows of a model whose outputs are not probabilities"), ranked the same way, and resume reads
    them back (tests/test_resume_any_file.py)."""
    model = build(tmp_path / "m.onnx", "logits")
    [p] = Predictor(model, provider="cpu").predict(images[:1])
    assert p.confidence == max(p.probabilities) and not 0 <= min(p.probabilities) <= max(p.probabilities) <= 1
    out = tmp_path / "r.jsonl"
    assert predict(model, images, out).exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r["error"] is None for r in rows)


def test_non_finite_rows_are_returned_not_refused():
    from cnn_edge.runtime.onnx_model import check_outputs

    probs = np.array([[0.2, 0.8], [np.nan, 0.5], [np.inf, 0.0], [1.0, 0.0]], np.float32)
    assert check_outputs("m.onnx", 4, 2, probs).tolist() == [False, True, True, False]


def test_a_good_model_still_answers(tmp_path, images):
    [p] = Predictor(build(tmp_path / "m.onnx"), provider="cpu").predict(images[:1])
    assert p.label in [str(d) for d in range(10)] and 0 < p.confidence <= 1


# --- refused when opened: declared shapes and labels that cannot work ------------------------------

@pytest.mark.parametrize("options, says", [
    # (ONNX Runtime reports the shapes it infers, whatever the graph declares: rank 1, rank 3 and a
    # fixed batch are the twists of WRONG_SHAPE)
    ({"classes": 0}, "no classes"),
    ({"classes": 12, "labels": [str(d) for d in range(10)]}, "names 10 classes"),
    ({"labels": ["1"] + [str(d) for d in range(1, 10)]}, "distinct"),
    ({"labels": []}, "distinct strings"),
    ({"labels": [1] + [str(d) for d in range(1, 10)]}, "distinct strings"),
    ({"labels": ""}, "malformed"),
])
def test_declared_outputs_and_labels_that_cannot_work_are_refused_at_open(tmp_path, options, says):
    model = build(tmp_path / "m.onnx", **options)
    with pytest.raises(ModelFileError, match=says) as caught:
        open_model(model)
    assert str(model) in str(caught.value)


def test_a_model_without_labels_gets_its_class_numbers(tmp_path, images):
    model = build(tmp_path / "m.onnx", classes=12, declared=("batch", 12))
    predictor = Predictor(model, provider="cpu")
    assert predictor.labels == [str(i) for i in range(12)]
    [p] = predictor.predict(images[:1], top_k=12)
    assert len(p.top_k) == 12
    out = tmp_path / "r.jsonl"
    result = predict(model, images, out, "--top-k", "10")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["top_k"]) == 10 and r["error"] is None for r in rows)
    assert {t["label"] for r in rows for t in r["top_k"]} & {"10", "11"}  # 10 of 12 classes name one of them
    # resume reads back the rows of a model with more than ten numbered classes
    again = predict(model, images, out, "--top-k", "10", "--resume")
    assert again.exit_code == 0, again.output


# --- predict on the local engine, without and with scoring workers --------------------------------

@pytest.mark.parametrize("workers", ["0", "2"])
@pytest.mark.parametrize("name", sorted(WRONG_SHAPE))
def test_predict_stops_with_one_line_on_either_engine_path(tmp_path, images, name, workers):
    model = hostile(tmp_path, name)
    out = tmp_path / "r.csv"
    result = predict(model, images, out, "--workers", workers)
    line = assert_one_line_error(result, 2, model, WRONG_SHAPE[name][1])
    assert "died" not in line
    assert not out.exists()  # nothing committed as finished


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_fault_that_shows_only_on_larger_batches_stops_the_run_where_it_shows(tmp_path, six_images, workers):
    """The model passes the probe at open (3 rows for 3) and answers 4 rows for a batch of 6: found
    where the batch runs, in the main process or in a scoring worker (which reports it, and does not
    die: no "decoding process died" row)."""
    model = build(tmp_path / "m.onnx", "first_four", declared=None)
    Predictor(model, provider="cpu")  # opens
    out = tmp_path / "r.csv"
    result = predict(model, six_images, out, "--workers", workers, "--batch-size", "6")
    line = assert_one_line_error(result, 2, model, "4 rows for 6 inputs")
    assert "died" not in line and not out.exists()


@pytest.mark.parametrize("workers", ["0", "2"])
def test_predict_fails_nan_rows_and_never_writes_them_ok(tmp_path, images, workers):
    model = build(tmp_path / "m.onnx", "nan")
    out = tmp_path / "r.jsonl"
    result = predict(model, images, out, "--workers", workers)
    assert result.exit_code == 3, result.output  # the run finished, some inputs failed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["error"] for r in rows] == [NON_FINITE_ROW] * 3
    assert all(r["prediction"] is None and r["confidence"] is None for r in rows)
    assert "NaN" not in out.read_text().replace("returned NaN", "")  # no NaN figure anywhere
    again = predict(model, images, out, "--workers", workers, "--resume")
    # its own failed rows read back (nothing left to do); exit 3: the finished file holds failures
    assert again.exit_code == 3 and "3 already done" in again.output, again.output


def test_predict_subprocess_one_line_no_traceback(tmp_path, images):
    """The real command, as a user runs it: one line on stderr, exit 2."""
    model = hostile(tmp_path, "slice_row")
    run = subprocess.run([sys.executable, "-m", "cnn_edge", "predict", str(model), *images, "--workers", "2",
                          "-o", str(tmp_path / "r.csv"), "-q"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "1 row for 3 inputs" in lines[0], run.stderr


# --- validate, bench, demo ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["nan", "slice_row", "more_classes"])
def test_validate_refuses_with_exit_2_not_a_parity_failure(tmp_path, tiny_mnist, name):
    model = build(tmp_path / "m.onnx", "nan") if name == "nan" else hostile(tmp_path, name)
    result = runner.invoke(app, ["validate", str(model), "--data-dir", str(tiny_mnist), "--limit", "20"])
    line = assert_one_line_error(result, 2, model)
    assert "NaN" in line if name == "nan" else "parity" not in line


def test_validate_refuses_a_model_of_another_class_count(tmp_path, tiny_mnist):
    model = build(tmp_path / "m.onnx", classes=12, declared=("batch", 12))
    result = runner.invoke(app, ["validate", str(model), "--data-dir", str(tiny_mnist), "--limit", "20"])
    assert_one_line_error(result, 2, model, "12 classes")


@pytest.mark.parametrize("name", ["nan", "slice_row"])
def test_bench_refuses_before_timing(tmp_path, name):
    model = build(tmp_path / "m.onnx", "nan") if name == "nan" else hostile(tmp_path, name)
    result = runner.invoke(app, ["bench", str(model), "--no-torch", "--no-openvino", "--batch-sizes", "1,4",
                                 "--seconds", "0.01", "--provider", "cpu"])
    assert_one_line_error(result, 2, model)


@pytest.mark.parametrize("name", ["nan", "slice_row", "more_classes"])
def test_demo_refuses_before_serving(tmp_path, name):
    from cnn_edge.runtime.demo import make_server

    model = build(tmp_path / "m.onnx", "nan") if name == "nan" else hostile(tmp_path, name)
    (tmp_path / "test_vectors.json").write_text("{}")
    with pytest.raises(ModelFileError) as caught:
        make_server(model, port=0)
    assert str(model) in str(caught.value)


def test_demo_serves_a_good_model(tmp_path):
    from cnn_edge.runtime.demo import make_server

    model = build(tmp_path / "m.onnx")
    (tmp_path / "test_vectors.json").write_text("{}")
    make_server(model, port=0).server_close()


# --- Ray --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ray_stops_on_one_row_and_fails_nan_rows(tmp_path, images):
    pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        one_row = hostile(tmp_path, "slice_row")
        result = predict(one_row, images, tmp_path / "out1", "--engine", "ray", "--format", "jsonl")
        line = assert_one_line_error(result, 2, "1 row for 3 inputs")
        assert "died" not in line
        nan = build(tmp_path / "nan.onnx", "nan")
        out = tmp_path / "out2"
        result = predict(nan, images, out, "--engine", "ray", "--format", "jsonl")
        assert result.exit_code == 3, result.output
        rows = [json.loads(line) for part in sorted(out.glob("*.jsonl")) for line in part.read_text().splitlines()]
        assert len(rows) == 3 and all(r["error"] == NON_FINITE_ROW and r["prediction"] is None for r in rows)
        # a fault the driver's probe cannot see: each row says what the model did, none that a process died
        six = write_digits(tmp_path, 6)
        out = tmp_path / "out3"
        result = predict(build(tmp_path / "four.onnx", "first_four", declared=None), six, out, "--engine", "ray",
                         "--format", "jsonl", "--batch-size", "6")
        assert result.exit_code == 3, result.output
        rows = [json.loads(line) for part in sorted(out.glob("*.jsonl")) for line in part.read_text().splitlines()]
        assert len(rows) == 6 and all("4 rows for 6 inputs" in r["error"] for r in rows), rows
    finally:
        ray.shutdown()
