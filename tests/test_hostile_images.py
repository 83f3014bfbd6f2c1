"""Images that read wrong, in Python and Node.js alike (issue 22): transparent canvases whatever
colour their transparent pixels store, every kind of transparency, thin strips, float TIFFs, file
names that are not UTF-8, and the file-size limit checked before any byte is read."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnn_edge.core.constants import DEFAULT_MAX_FILE_BYTES, IMAGE_SIZE
from cnn_edge.core.errors import ImageError
from cnn_edge.runtime.onnx_model import open_model
from cnn_edge.runtime.preprocess import mnist_v1_batch, preprocess, preprocess_many

from test_embed import EXPORTS, NODE_DIR, load_vectors, needs_node

# Ink on a transparent canvas, as (ink grey, grey stored in the transparent pixels): black on
# transparent white (drawing apps' PNG and GIF exports), black on transparent black, and the
# light-ink pair.
CANVASES = {"black_on_clear_white": (0, 255), "black_on_clear_black": (0, 0),
            "white_on_clear_black": (255, 0), "white_on_clear_white": (255, 255)}


def digits(n: int = 4) -> list[tuple[np.ndarray, int]]:
    """n MNIST test digits (28x28 uint8, light ink on black) with their labels: the test vectors'."""
    vectors = load_vectors()["vectors"][:n]
    return [(np.array(v["pixels"], np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE), int(v["label"])) for v in vectors]


def transparent_files(folder: Path, digit: np.ndarray, stem: str, ink: int, clear: int) -> list[Path]:
    """One digit on a transparent canvas in every kind of transparency cnn-edge reads: an alpha
    channel (RGBA and LA PNG, WebP, with anti-aliased semi-transparent edges, at 28 px and drawn
    at 4x), a palette's transparent index (PNG and GIF), a colour key (grey and RGB PNG tRNS)."""
    files = []
    for scale in (1, 4):
        alpha = np.kron(digit, np.ones((scale, scale), np.uint8))
        colour = np.where(alpha > 0, ink, clear).astype(np.uint8)
        rgba = np.dstack([colour, colour, colour, alpha])
        for suffix, img in ((".png", Image.fromarray(rgba, "RGBA")), ("_la.png", Image.fromarray(rgba[..., [0, 3]], "LA")),
                            (".webp", Image.fromarray(rgba, "RGBA"))):
            files.append(folder / f"{stem}_x{scale}{suffix}")
            img.save(files[-1], **({"lossless": True} if suffix == ".webp" else {}))
    drawn = digit >= 128  # one bit of transparency: the stroke is opaque, the rest transparent
    palette = Image.fromarray(drawn.astype(np.uint8), "P")
    palette.putpalette([clear] * 3 + [ink] * 3)
    for suffix in ("_p.png", ".gif"):
        files.append(folder / f"{stem}{suffix}")
        palette.save(files[-1], transparency=0)
    if ink != clear:  # a colour key marks the transparent value: the ink must differ from it
        grey = np.where(drawn, ink, clear).astype(np.uint8)
        files.append(folder / f"{stem}_trns.png")
        Image.fromarray(grey, "L").save(files[-1], transparency=clear)
        files.append(folder / f"{stem}_rgb_trns.png")
        Image.fromarray(np.dstack([grey] * 3), "RGB").save(files[-1], transparency=(clear,) * 3)
    return files


def node_preprocess(files: list[Path]) -> dict:
    proc = subprocess.run(["node", "preprocess_cli.js", *map(str, files)], cwd=NODE_DIR, capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(proc.stdout)


def predict(model, pixels: np.ndarray) -> np.ndarray:
    return model.run(pixels.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE).astype(np.float32))[0].argmax(axis=1)


@pytest.fixture(scope="module")
def model():
    return open_model(EXPORTS / "mnist_cnn.onnx")


def test_transparent_canvases_read_as_the_opaque_digit_whatever_colour_is_under_the_transparency(tmp_path, model):
    """The colour stored in transparent pixels decides neither the polarity nor the pixels: every
    canvas and kind of transparency of a digit gives the opaque digit's pixels (within a grey
    level: alpha kinds composite alike) and its prediction."""
    for d, (digit, _) in enumerate(digits()):
        opaque = preprocess(digit)
        expected = predict(model, opaque)[0]
        files = [f for name, (ink, clear) in CANVASES.items()
                 for f in transparent_files(tmp_path, digit, f"{d}_{name}", ink, clear)]
        prepared, errors = preprocess_many(files)
        assert errors == [""] * len(files), [(f.name, e) for f, e in zip(files, errors) if e]
        assert (predict(model, prepared) == expected).all(), [f.name for f, p in zip(files, predict(model, prepared)) if p != expected]
        for f, pixels in zip(files, prepared):
            if "_x1" in f.name:  # the same 28x28 alpha as the opaque digit's grey: the same input
                assert np.abs(pixels - opaque).max() <= 1.0, f.name
        by_kind: dict[str, list[np.ndarray]] = {}
        for f, pixels in zip(files, prepared):  # the kind: the name after "{d}_{canvas}"
            kind = next(f.name[len(f"{d}_{name}"):] for name in CANVASES if f.name.startswith(f"{d}_{name}"))
            by_kind.setdefault(kind, []).append(pixels)
        for kind, outputs in by_kind.items():  # every canvas colour of one kind: the same pixels
            assert max(np.abs(o - outputs[0]).max() for o in outputs) <= 1.0, kind


@pytest.mark.slow
@needs_node
def test_node_reads_every_transparent_canvas_as_python_does(tmp_path, model):
    files = []
    for d, (digit, _) in enumerate(digits(3)):
        files += [f for name, (ink, clear) in CANVASES.items()
                  for f in transparent_files(tmp_path, digit, f"{d}_{name}", ink, clear)]
    # A 32-bit BMP whose fourth byte is padding (0): Pillow reads it opaque, and so must Node.js.
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = 255 - digits(1)[0][0][..., None]
    files.append(tmp_path / "padding_alpha.bmp")
    Image.fromarray(rgba, "RGBA").save(files[-1])
    js = node_preprocess(files)
    for f in files:
        py = preprocess(f)
        node = np.array(js[str(f)]["pixels"], np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE)
        assert np.abs(node - py).max() <= 1.0, (f.name, float(np.abs(node - py).max()))
        assert predict(model, node)[0] == predict(model, py)[0], f.name


def ones_as_strips() -> list[tuple[str, np.ndarray]]:
    """A "1" cropped to its ink and squeezed to strips 1, 2 and 3 pixels wide (and lying down),
    with a 2-pixel margin of paper at its ends: (name, light ink on black float32)."""
    vectors = [v for v in load_vectors()["vectors"] if v["label"] == 1][:3]
    strips = []
    for n, v in enumerate(vectors):
        digit = np.array(v["pixels"], np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)
        rows, cols = np.flatnonzero(digit.max(1)), np.flatnonzero(digit.max(0))
        crop = Image.fromarray(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
        for width in (1, 2, 3):
            strip = np.pad(np.asarray(crop.resize((width, crop.height), Image.Resampling.BOX), np.float32), ((2, 2), (0, 0)))
            strips += [(f"{n}_{width}xN", strip), (f"{n}_Nx{width}", strip.T.copy())]
    return strips


def test_thin_strips_get_their_polarity_from_their_ends():
    """Light ink on dark and dark ink on light give the same digit, for strips 1 to 3 pixels wide
    (the frame of such a strip is mostly the stroke itself: it used to decide the polarity)."""
    for name, strip in ones_as_strips():
        light, light_blank = mnist_v1_batch(strip[None])
        dark, dark_blank = mnist_v1_batch((255 - strip)[None])
        assert not light_blank[0] and not dark_blank[0], name
        assert np.abs(light - dark).max() <= 1e-3, name
        assert light[0].sum() > 0 and light[0].max() == pytest.approx(255, abs=1), name


@pytest.mark.slow
@needs_node
def test_node_reads_thin_strips_and_float_tiffs_as_python_does(tmp_path):
    files = []
    for name, strip in ones_as_strips():
        for polarity, grey in (("light", strip), ("dark", 255 - strip)):
            files.append(tmp_path / f"{name}_{polarity}.png")
            Image.fromarray(grey.round().astype(np.uint8)).save(files[-1])
    digit = digits(1)[0][0].astype(np.float32)
    for name, grey, info in (("unit", digit / 255, {}), ("bytes", digit, {}), ("dark_unit", 1 - digit / 255, {}),
                             ("turned", digit, {"tiffinfo": {0x0112: 6}})):
        files.append(tmp_path / f"float_{name}.tif")
        Image.fromarray(grey, "F").save(files[-1], **info)
    js = node_preprocess(files)
    for f in files:
        py = preprocess(f)
        node = np.array(js[str(f)]["pixels"], np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE)
        assert np.abs(node - py).max() <= 1.0, (f.name, float(np.abs(node - py).max()))
    nan = tmp_path / "nan.tif"
    Image.fromarray(np.full((8, 8), np.nan, np.float32), "F").save(nan)
    with pytest.raises(ImageError) as caught:
        preprocess(nan)
    assert node_preprocess([nan])[str(nan)] == {"error": str(caught.value)}


def test_a_file_above_the_size_limit_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "huge.png"
    with open(big, "wb") as f:
        f.truncate(DEFAULT_MAX_FILE_BYTES + 1)
    _, errors = preprocess_many([big])
    assert errors[0] == (f"file is {DEFAULT_MAX_FILE_BYTES + 1:,} bytes (64.0 MiB), above the limit of "
                         f"{DEFAULT_MAX_FILE_BYTES:,} bytes (64 MiB; --max-file-bytes)")
    small = tmp_path / "digit.png"
    Image.fromarray(digits(1)[0][0]).save(small)
    with pytest.raises(ImageError, match="above the limit of 100 bytes"):
        preprocess(small, max_file_bytes=100)
    with pytest.raises(ImageError, match="--max-file-bytes"):
        preprocess(small.read_bytes(), max_file_bytes=100)  # bytes in memory (the Ray engine's): the same rule


@pytest.mark.parametrize("workers", ["0", "2"])
def test_predict_applies_max_file_bytes_on_every_path(tmp_path, workers):
    """predict --max-file-bytes: a file above it is its own failed row (exit 3), in this process and
    in decoding workers alike, the Python API takes the same limit, and a limit below 1 is refused."""
    from typer.testing import CliRunner

    from cnn_edge import Predictor
    from cnn_edge.cli import app

    folder = tmp_path / "in"
    folder.mkdir()
    for i, (image, _) in enumerate(digits(3)):
        Image.fromarray(image).save(folder / f"{i}.png")
    with open(folder / "big.png", "wb") as f:
        f.truncate(5000)
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(app, ["predict", str(EXPORTS / "mnist_cnn.onnx"), str(folder), "-o", str(out),
                                      "--max-file-bytes", "4000", "--workers", workers, "-q"])
    assert result.exit_code == 3, result.output
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert "above the limit of 4,000 bytes" in rows["big.png"]["error"]
    assert all(rows[f"{i}.png"]["error"] is None for i in range(3))
    with pytest.raises(ImageError, match="above the limit of 100 bytes"):
        Predictor(EXPORTS / "mnist_cnn.onnx", max_file_bytes=100).predict(folder / "0.png")
    bad = CliRunner().invoke(app, ["predict", str(EXPORTS / "mnist_cnn.onnx"), str(folder), "--max-file-bytes", "0"])
    assert bad.exit_code == 2 and "--max-file-bytes must be positive, got 0" in bad.output


def peak_rss_mb(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    """Run `command` under a Python parent of its own; its peak RSS (ru_maxrss of that parent's children)."""
    code = ("import json, resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode, p.stdout, p.stderr]))")
    out = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, timeout=120, check=True, **kwargs)
    rss_kb, rc, stdout, stderr = json.loads(out.stdout)
    return rss_kb / 1024, subprocess.CompletedProcess(command, rc, stdout, stderr)


@pytest.fixture
def sparse_gib(tmp_path) -> Path:
    path = tmp_path / "gib.png"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # a sparse 1 GiB file: no disk used
    return path


def test_python_peak_memory_on_a_gib_file_stays_bounded(sparse_gib):
    code = "import sys; from cnn_edge.runtime.preprocess import preprocess_many; print(preprocess_many(sys.argv[1:])[1][0])"
    rss, proc = peak_rss_mb([sys.executable, "-c", code, str(sparse_gib)], env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert "above the limit" in proc.stdout, proc.stdout + proc.stderr
    assert rss < 200, rss


@pytest.mark.slow
@needs_node
def test_node_refuses_a_gib_file_before_reading_it_with_pythons_line(sparse_gib, tmp_path):
    rss, proc = peak_rss_mb(["node", "classify.js", "--json", str(sparse_gib)], cwd=NODE_DIR)
    assert proc.returncode == 3, proc.stderr
    _, errors = preprocess_many([sparse_gib])
    assert json.loads(proc.stdout)["error"] == errors[0]
    assert rss < 200, rss
    small = tmp_path / "digit.png"
    Image.fromarray(digits(1)[0][0]).save(small)
    proc = subprocess.run(["node", "classify.js", "--json", "--max-file-bytes", "100", str(small)], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "above the limit of 100 bytes" in json.loads(proc.stdout)["error"]
    proc = subprocess.run(["node", "classify.js", "--max-file-bytes", "lots", str(small)], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--max-file-bytes" in proc.stderr


@pytest.mark.slow
@needs_node
def test_node_reads_a_file_whose_name_is_not_utf8(tmp_path, model):
    digit, label = digits(1)[0]
    name = os.fsencode(tmp_path) + b"/caf\xe9_\xff.png"  # Latin-1 bytes: not UTF-8
    Image.fromarray(digit).save(os.fsdecode(name))
    proc = subprocess.run([b"node", b"classify.js", b"--json", name], cwd=NODE_DIR, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = json.loads(proc.stdout)
    assert row["error"] is None and row["prediction"] == str(label), row
    missing = os.fsencode(tmp_path) + b"/gone_\xff.png"
    proc = subprocess.run([b"node", b"classify.js", b"--json", missing], cwd=NODE_DIR, capture_output=True, timeout=60)
    assert proc.returncode == 3 and json.loads(proc.stdout)["error"] == "file not found"
