"""Outside Python: test vectors, the Node.js example, the JavaScript preprocessing, the demo page
in headless Chromium. Needs node and `npm install --ignore-scripts` in examples/node (CI does both)."""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnn_edge.core import contract as C
from cnn_edge.core.artifacts import RELEASE_DIR, VECTORS_FILE
from cnn_edge.cli.app import EXIT_BAD_INPUT
from cnn_edge.core.constants import IMAGE_SIZE, NUM_CLASSES
from cnn_edge.core.errors import ModelFileError
from cnn_edge.core.flag_rule import FLAG_RULE, LOW_CONFIDENCE, UNLIKE_MNIST
from cnn_edge.runtime.demo import make_server
from cnn_edge.runtime.onnx_model import open_model
from cnn_edge.runtime.preprocess import preprocess, preprocess_many
from cnn_edge.release.vectors import FORMAT, PER_CLASS

from conftest import REPO, assert_one_line_error

NODE_DIR = REPO / "examples" / "node"
EXPORTS = REPO / RELEASE_DIR
# CI installs node packages and Chromium (.ci/run); there a missing one fails instead of skipping.
ON_CI = bool(os.environ.get("CI"))
needs_node = pytest.mark.skipif(
    not ON_CI and (shutil.which("node") is None or not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir()),
    reason="needs node and `npm ci --ignore-scripts` in examples/node")
needs_chromium = pytest.mark.skipif(
    not ON_CI and (not Path("/usr/bin/chromium").exists() or not (NODE_DIR / "node_modules" / "playwright-core").is_dir()),
    reason="needs Debian's chromium and playwright-core")


def load_vectors() -> dict:
    return json.loads((EXPORTS / VECTORS_FILE).read_text())


def check_vectors(vectors: dict, probabilities: np.ndarray, int8: bool) -> tuple[float, float, bool]:
    """Judge a runtime's probabilities (N, 10) for the vectors by the file's own tolerance, as the
    Node.js example and the demo page do (cnn_edge/web/vectors.js): (agreement, max diff, passed)."""
    assert vectors["format"] == FORMAT
    ref = np.array([v["probabilities"] for v in vectors["vectors"]])
    agreement = float((ref.argmax(1) == probabilities.argmax(1)).mean())
    diff = float(np.abs(ref - probabilities).max())
    tol = vectors["tolerance"]["int8" if int8 else "fp32"]
    bound = tol["max_abs_diff_probabilities"]
    return agreement, diff, agreement >= tol["min_top1_agreement"] and (bound is None or diff <= bound)


@pytest.mark.parametrize("name,int8", [("mnist_cnn.onnx", False), ("mnist_cnn.int8.onnx", True)])
def test_released_vectors_pass_in_python(name, int8):
    vectors = load_vectors()
    assert vectors["format"] == FORMAT and len(vectors["vectors"]) == NUM_CLASSES * PER_CLASS
    assert sorted({v["label"] for v in vectors["vectors"]}) == list(range(NUM_CLASSES))
    x = np.array([v["pixels"] for v in vectors["vectors"]], np.float32).reshape(-1, *C.INPUT_SHAPE[1:])
    probs, _ = open_model(EXPORTS / name).run(x)
    agreement, diff, passed = check_vectors(vectors, probs, int8)
    assert passed and agreement == 1.0
    if not int8:
        assert diff <= vectors["tolerance"]["fp32"]["max_abs_diff_probabilities"] == C.FP32_TOLERANCE


def test_vectors_fail_when_outputs_drift():
    vectors = load_vectors()
    ref = np.array([v["probabilities"] for v in vectors["vectors"]])
    assert not check_vectors(vectors, ref + 2 * C.FP32_TOLERANCE, int8=False)[2]
    assert not check_vectors(vectors, np.roll(ref, 1, axis=1), int8=True)[2]


@pytest.mark.slow
@needs_node
def test_node_suite():
    proc = subprocess.run(["node", "--test", "test/"], cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "# pass 4" in proc.stdout and "# fail 0" in proc.stdout


def user_images(folder: Path) -> list[Path]:
    """PNGs of every kind the runtimes meet: MNIST-like, inverted, large, off-centre, noisy,
    coloured, transparent (dark and light ink), tiny."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    vectors = load_vectors()["vectors"]
    files = []
    for i, v in enumerate(vectors):
        digit = np.array(v["pixels"], np.uint8).reshape(28, 28)
        kind = i % 8
        if kind == 0:
            img = Image.fromarray(digit)
        elif kind == 1:
            img = Image.fromarray(255 - digit).resize((140, 140), Image.Resampling.BICUBIC)
        elif kind == 2:
            page = np.full((120, 200), 235.0) + rng.normal(0, 4, (120, 200))
            big = np.asarray(Image.fromarray(digit).resize((84, 84), Image.Resampling.BICUBIC), np.float32) / 255
            page[10:94, 100:184] = page[10:94, 100:184] * (1 - big) + 30 * big
            img = Image.fromarray(page.clip(0, 255).astype(np.uint8))
        elif kind == 3:
            ink = np.asarray(Image.fromarray(digit).resize((56, 56), Image.Resampling.BILINEAR), np.float32) / 255
            rgb = np.array([245, 235, 150]) * (1 - ink[..., None]) + np.array([30, 50, 170]) * ink[..., None]
            img = Image.fromarray(rgb.astype(np.uint8), "RGB")
        elif kind in (4, 5):
            rgba = np.zeros((64, 64, 4), np.uint8) + (255 if kind == 5 else 0)
            rgba[..., 3] = np.asarray(Image.fromarray(digit).resize((64, 64), Image.Resampling.BILINEAR))
            img = Image.fromarray(rgba, "RGBA")
        elif kind == 6:
            img = Image.fromarray(digit[4:24, 4:24]).resize((10, 10), Image.Resampling.BOX)
        else:
            img = Image.fromarray(np.roll(digit, (5, -6), axis=(0, 1)))
        files.append(folder / f"{i:02d}_{v['label']}.png")
        img.save(files[-1])
    return files


def desk_images(folder: Path, count: int = 60) -> list[Path]:
    """Cluttered desk photos (scripts/desk_photos.py) of test-vector digits, as JPEG and as PNG,
    and sheets with no digit and with two."""
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    from desk_photos import make_desk_photos

    vectors = load_vectors()["vectors"]
    images = np.array([v["pixels"] for v in vectors], np.uint8).reshape(-1, 28, 28)
    labels = np.array([v["label"] for v in vectors])
    files = make_desk_photos(folder, images, labels, count, seed=9, no_digit=3, two_digits=3)
    for f in files[:4]:  # lossless too: the finder's integers straight from 8-bit RGB
        Image.open(f).save(f.with_suffix(".png"))
        files.append(f.with_suffix(".png"))
    return files


@pytest.mark.slow
@needs_node
@pytest.mark.parametrize("version", [C.PREPROCESSING_V1, C.PREPROCESSING_V2])
def test_javascript_preprocessing_matches_python(tmp_path, version):
    """The same files through preprocess.js (Node.js) and Python: user images of every kind under
    both versions, and, under mnist-v2, cluttered desk photos too: the same decision on every file
    (the same reason when there is no single digit) and the same 28x28 within one grey level."""
    files = user_images(tmp_path / "imgs")
    if version == C.PREPROCESSING_V2:
        files += desk_images(tmp_path / "desk")
    proc = subprocess.run(["node", "preprocess_cli.js", "--preprocessing", version, *map(str, files)], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=300, check=True)
    js = json.loads(proc.stdout)
    python, errors = preprocess_many(files, version=version)
    worst, flagged = 0.0, 0
    for f, py, error in zip(files, python, errors):
        assert js[str(f)]["error"] == error, (f.name, js[str(f)]["error"], error)
        flagged += bool(error)
        diff = float(np.abs(np.array(js[str(f)]["pixels"]).reshape(IMAGE_SIZE, IMAGE_SIZE) - py).max())
        worst = max(worst, diff)
        assert diff <= 1.0, (f.name, diff)  # at most one grey level in 0..255 (1/255 of the range)
    if version == C.PREPROCESSING_V2:
        assert 3 <= flagged < len(files) // 2, flagged  # most of the six sheets with no digit or two: both ways
    print(f"{version}: max |JS - Python| over {len(files)} images: {worst:.2e} grey levels, {flagged} without a digit")


@pytest.mark.slow
@needs_node
def test_javascript_applies_exif_orientation_like_python(tmp_path):
    """All eight EXIF orientations of an asymmetric digit, in PNG eXIf chunks: Node.js turns each
    upright exactly as Pillow's exif_transpose does."""
    a = np.zeros((40, 30), np.uint8)
    a[5:30, 8:12] = 255
    a[5:9, 8:25] = 255
    files = []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        files.append(tmp_path / f"o{orientation}.png")
        Image.fromarray(a).save(files[-1], exif=exif)
    proc = subprocess.run(["node", "preprocess_cli.js", *map(str, files)], cwd=NODE_DIR, capture_output=True,
                          text=True, timeout=120, check=True)
    js = json.loads(proc.stdout)
    outputs = [preprocess(f) for f in files]
    for f, py in zip(files, outputs):
        assert np.abs(np.array(js[str(f)]["pixels"]).reshape(IMAGE_SIZE, IMAGE_SIZE) - py).max() <= 1e-3, f.name
    assert len({o.round(3).tobytes() for o in outputs}) == 8  # each orientation really turned the digit


MIXED_FORMATS = (".png", ".jpg", ".webp", ".gif", ".tif", ".bmp")


def mixed_format_images(folder: Path) -> list[Path]:
    """The 40 user-style images of user_images(), each saved in one of six formats in turn: PNG,
    JPEG, WebP, GIF, TIFF and BMP."""
    files = []
    for i, png in enumerate(user_images(folder / "png")):
        img = Image.open(png)
        ext = MIXED_FORMATS[i % len(MIXED_FORMATS)]
        if img.mode == "RGBA" and ext in (".jpg", ".bmp", ".gif"):  # no alpha there: flatten on a contrasting paper
            rgba = np.asarray(img)
            light_ink = rgba[..., :3][rgba[..., 3] > 0].mean() > 127
            paper = Image.new("RGBA", img.size, (0, 0, 0, 255) if light_ink else (255, 255, 255, 255))
            img = Image.alpha_composite(paper, img).convert("RGB")
        elif ext in (".jpg", ".bmp"):
            img = img.convert("RGB")
        files.append(folder / f"{png.stem}{ext}")
        img.save(files[-1], **({"quality": 95} if ext == ".jpg" else {}))
    return files


@pytest.mark.slow
@needs_node
def test_node_and_python_agree_on_every_row_of_mixed_formats(tmp_path):
    """The same 40 files in six formats (and one broken file) through Node.js (classify.js --json:
    sharp and bmp-js) and Python (predict -o rows.jsonl): the same fields and types on every row,
    the same prediction on every row, confidences within 1e-3."""
    from typer.testing import CliRunner

    from cnn_edge.cli import app

    files = mixed_format_images(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    files.append(tmp_path / "broken.png")
    out = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(app, ["predict", str(EXPORTS / "mnist_cnn.onnx"), *map(str, files), "-o", str(out)])
    assert result.exit_code == 3, result.output
    python_rows = [json.loads(line) for line in out.read_text().splitlines()]
    proc = subprocess.run(["node", "classify.js", "--json", *map(str, files)], cwd=NODE_DIR, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    node_rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(node_rows) == len(python_rows) == len(files) == 41
    for py, js in zip(python_rows, node_rows):
        assert list(js) == list(py) and js["path"] == py["path"], (js, py)
        assert (js["error"] is None) == (py["error"] is None), (js, py)
        if py["error"] is None:
            assert js["prediction"] == py["prediction"] and isinstance(js["prediction"], str), (js, py)
            assert abs(js["confidence"] - py["confidence"]) <= 1e-3, (js, py)
            assert same_flag(js, py), (js, py)
            assert [t["label"] for t in js["top_k"]] == [t["label"] for t in py["top_k"]] or \
                abs(js["top_k"][1]["probability"] - js["top_k"][2]["probability"]) < 1e-3


def same_flag(js: dict, py: dict) -> bool:
    """The same flag on a row of classify.js --json and of predict's JSONL; low_confidence may differ
    only where the two runtimes' confidences straddle the threshold."""
    if js["flag"] == py["flag"]:
        return True
    drop = lambda flag: "+".join(r for r in (flag or "").split("+") if r != LOW_CONFIDENCE)  # noqa: E731
    return drop(js["flag"]) == drop(py["flag"]) and abs(py["confidence"] - FLAG_RULE.low_confidence_below) <= 1e-3


@pytest.mark.slow
@needs_node
def test_javascript_flags_match_python():
    """flags.js (Node.js) counts the statistics of runtime/flags.py and flags the same rows, with
    the numbers of the one rule file: on hand-made shapes, the test vectors, random ink, and each
    given every class at several confidences."""
    from test_flags import shapes

    from cnn_edge.runtime.flags import input_features, row_flags

    x = shapes()
    rng = np.random.default_rng(6)
    probs = rng.dirichlet(np.full(NUM_CLASSES, 0.2), len(x)).astype(np.float32)
    probs[::3] = np.eye(NUM_CLASSES, dtype=np.float32)[np.arange(len(x))[::3] % NUM_CLASSES]  # every class, confident
    script = ("const fs = require('fs'); const f = require('../../cnn_edge/web/flags.js');"
              "const rule = JSON.parse(fs.readFileSync('../../cnn_edge/core/flag_rule.json', 'utf8'));"
              "const d = JSON.parse(fs.readFileSync(0, 'utf8'));"
              "console.log(JSON.stringify(d.pixels.map((p, i) => ({features: f.inputFeatures(p, rule.ink_level),"
              " flag: f.rowFlag(p, d.probs[i], rule)}))));")
    feed = json.dumps({"pixels": x.reshape(len(x), -1).tolist(), "probs": probs.astype(float).tolist()})
    proc = subprocess.run(["node", "-e", script], cwd=NODE_DIR, input=feed, capture_output=True, text=True,
                          timeout=120, check=True)
    js = json.loads(proc.stdout)
    features = input_features(x)
    assert [r["features"] for r in js] == [{k: int(v[i]) for k, v in features.items()} for i in range(len(x))]
    flags = row_flags(x, probs)
    assert [r["flag"] or "" for r in js] == flags
    assert {"", LOW_CONFIDENCE, UNLIKE_MNIST, f"{LOW_CONFIDENCE}+{UNLIKE_MNIST}"} <= set(flags)  # every kind met


@pytest.mark.slow
@needs_node
def test_node_and_python_flag_the_same_desk_photos(tmp_path):
    """Cluttered desk photos (and sheets with no digit or two) under mnist-v2, through classify.js
    --json and predict: the same rows, the same flags."""
    from typer.testing import CliRunner

    from cnn_edge.cli import app

    files = desk_images(tmp_path / "desk", count=30)
    out = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(app, ["predict", str(EXPORTS / "mnist_cnn.onnx"), *map(str, files), "-o", str(out),
                                      "--preprocessing", C.PREPROCESSING_V2, "-q"])
    assert result.exit_code in (0, 3), result.output
    python_rows = [json.loads(line) for line in out.read_text().splitlines()]
    proc = subprocess.run(["node", "classify.js", "--json", "--preprocessing", C.PREPROCESSING_V2, *map(str, files)],
                          cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
    node_rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(node_rows) == len(python_rows) == len(files)
    for py, js in zip(python_rows, node_rows):
        assert list(js) == list(py) and (js["error"] is None) == (py["error"] is None), (js, py)
        assert same_flag(js, py), (js, py)
    assert any(r["flag"] for r in python_rows) and any(r["error"] is None and not r["flag"] for r in python_rows)


def serve(model: Path, vectors: Path | None = None):
    server = make_server(model, vectors, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def test_demo_server_serves_page_model_vectors_and_runtime():
    server, url = serve(EXPORTS / "mnist_cnn.onnx")
    try:
        page = urllib.request.urlopen(url).read().decode()
        assert "<canvas id=\"pad\"" in page and "vendor/ort.wasm.min.js" in page
        assert urllib.request.urlopen(url + "model.onnx").read() == (EXPORTS / "mnist_cnn.onnx").read_bytes()
        assert json.loads(urllib.request.urlopen(url + "test_vectors.json").read())["format"] == FORMAT
        assert json.loads(urllib.request.urlopen(url + "model-info.json").read())["int8"] is False
        with urllib.request.urlopen(url + "vendor/ort-wasm-simd-threaded.wasm") as r:
            assert r.headers["Content-Encoding"] == "gzip" and r.headers["Content-Type"] == "application/wasm"
            assert gzip.decompress(r.read())[:4] == b"\0asm"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "nothing-here.js")
    finally:
        server.shutdown()
        server.server_close()


def test_demo_without_vectors_is_a_clear_error(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes((EXPORTS / "mnist_cnn.onnx").read_bytes())
    with pytest.raises(ModelFileError, match=VECTORS_FILE):
        make_server(model, port=0)


def test_vendored_runtime_is_the_pinned_version():
    pinned = json.loads((NODE_DIR / "package.json").read_text())["devDependencies"]["onnxruntime-web"]
    header = (REPO / "cnn_edge" / "web" / "vendor" / "ort.wasm.min.js").read_text()[:200]
    assert re.search(r"ONNX Runtime Web v([\d.]+)", header).group(1) == pinned


@pytest.mark.slow
@needs_node
@needs_chromium
@pytest.mark.parametrize("name", ["mnist_cnn.onnx", "mnist_cnn.int8.onnx"])
def test_demo_page_in_headless_chromium(name, tmp_path):
    """The page checks the test vectors on load, and digits drawn with the mouse are recognised."""
    server, url = serve(EXPORTS / name)
    try:
        proc = subprocess.run(["node", "browser_check.js", url, "--screenshot", str(tmp_path / "page.png")],
                              cwd=NODE_DIR, capture_output=True, text=True, timeout=240)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["error"] is None and result["ready"]
    assert result["verdict"] == "pass" and result["vectors"]["agreement"] == 1
    assert [d["predicted"] for d in result["drawn"]] == [d["digit"] for d in result["drawn"]], result["drawn"]
    assert result["errors"] == [] and result["external"] == []  # nothing from the internet
    assert 0 < result["firstPredictionMs"] < result["vectorsMs"]
    print(f"{name}: first prediction {result['firstPredictionMs']:.0f} ms after navigation, "
          f"session {result['sessionMs']:.0f} ms, max abs diff {result['vectors']['maxAbsDiff']:.2e}")


def test_demo_command_bad_input_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from cnn_edge.cli import app

    missing = tmp_path / "missing.onnx"
    assert_one_line_error(CliRunner().invoke(app, ["demo", "--model", str(missing), "--port", "0"]), EXIT_BAD_INPUT, missing)
    server, _ = serve(EXPORTS / "mnist_cnn.onnx")
    try:
        port = server.server_address[1]
        assert_one_line_error(CliRunner().invoke(app, ["demo", "--port", str(port)]), EXIT_BAD_INPUT, port, "--port")
    finally:
        server.shutdown()
        server.server_close()
