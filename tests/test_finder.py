"""Preprocessing mnist-v2: the one digit of a cluttered photo found (runtime/finder.py), or the
reason there is none; mnist-v1 unchanged, and mnist-v2 exactly mnist-v1 on MNIST-like inputs;
models keep the preprocessing their metadata names; predict --save-inputs."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnn_edge.core import contract as C
from cnn_edge.core.artifacts import RELEASE_DIR, VECTORS_FILE
from cnn_edge.core.errors import ConfigError, ImageError, ModelFileError, NoDigitError
from cnn_edge.runtime import finder
from cnn_edge.runtime.images import grey_pixels
from cnn_edge.runtime.predictor import Predictor
from cnn_edge.runtime.preprocess import mnist_v1, mnist_v1_batch, mnist_v2, preprocess, preprocess_batch, preprocess_many

from conftest import REPO, assert_one_line_error, real_mnist

sys.path.insert(0, str(REPO / "scripts"))
from desk_photos import desk_photo, make_desk_photos  # noqa: E402

EXPORTS = REPO / RELEASE_DIR
INT8 = EXPORTS / "mnist_cnn.int8.onnx"
FP32 = EXPORTS / "mnist_cnn.onnx"
V1, V2 = C.PREPROCESSING_V1, C.PREPROCESSING_V2


@pytest.fixture(scope="module")
def real_mnist_test():
    """The real MNIST test split (CNN_EDGE_DATA), for the heavier tests."""
    if real_mnist() is None:
        pytest.skip("needs CNN_EDGE_DATA (real MNIST)")
    from cnn_edge.training.data import load_split

    return load_split("test", real_mnist())


def vectors() -> tuple[np.ndarray, np.ndarray]:
    """The released test vectors: 100 MNIST test digits (N, 28, 28) uint8 and their labels."""
    vs = json.loads((EXPORTS / VECTORS_FILE).read_text())["vectors"]
    return (np.array([v["pixels"] for v in vs], np.float32).reshape(-1, 28, 28).astype(np.uint8),
            np.array([v["label"] for v in vs]))


@functools.lru_cache(maxsize=None)  # made once per run, shared by the tests (about 0.15 s each)
def photo(seed: int, digits: int = 1) -> tuple[np.ndarray, list[int]]:
    """A desk photo (scripts/desk_photos.py) of `digits` test-vector digits, as grey; their labels."""
    images, labels = vectors()
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(labels), digits + 3, replace=False)
    img = desk_photo([images[i] for i in picks[:digits]], rng, [images[i] for i in picks[digits:]])
    return np.asarray(img, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32), [int(labels[i]) for i in picks[:digits]]


# --- mnist-v1 unchanged; mnist-v2 is mnist-v1 where the picture is one digit and nothing else ---

def test_mnist_v1_is_unchanged_by_the_split_into_ink_and_placement():
    """mnist_v1_batch, now _v1_ink then _v1_place, against the released vectors' own pixels: the
    vectors were made by export from MNIST itself, which mnist-v1 leaves (almost) as it is."""
    images, _ = vectors()
    out, blank = mnist_v1_batch(images.astype(np.float32))
    assert not blank.any()
    for img, o in zip(images[:20], out[:20]):
        np.testing.assert_array_equal(o, mnist_v1(img.astype(np.float32)))
    assert float(np.abs(out - images).mean()) < 2.0


def test_v2_equals_v1_on_mnist_like_inputs():
    """The 100 test vectors as they are (28x28, left to mnist-v1), four times larger and inverted
    (dark ink on white paper, 112x112: the finder's path), and the files of examples/digits: the
    same 28x28, bit for bit, under both versions."""
    images, _ = vectors()
    small = images.astype(np.float32)
    big = 255.0 - np.stack([np.asarray(Image.fromarray(i).resize((112, 112), Image.Resampling.BICUBIC), np.float32)
                            for i in images[:40]])
    for stack in (small, big):
        a, errors_a = preprocess_batch(stack, V1)
        b, errors_b = preprocess_batch(stack, V2)
        np.testing.assert_array_equal(a, b)
        assert errors_a == errors_b == [""] * len(stack)
    files = sorted((REPO / "examples" / "digits").iterdir())
    a, _ = preprocess_many(files, version=V1)
    b, errors = preprocess_many(files, version=V2)
    np.testing.assert_array_equal(a, b)
    assert errors == [""] * len(files)


@pytest.mark.slow
def test_v2_equals_v1_on_every_mnist_test_digit(real_mnist_test):
    """All 10,000 MNIST test digits as they are, and the first 1,000 four times larger on white paper:
    mnist-v2 gives exactly mnist-v1's pixels (the small ones by the SMALL_PICTURE rule, the large
    ones through the finder's 'mnist-v1 sees the digit and nothing else')."""
    images = real_mnist_test.images.astype(np.float32)
    for start in range(0, len(images), 2500):
        a, _ = preprocess_batch(images[start : start + 2500], V1)
        b, _ = preprocess_batch(images[start : start + 2500], V2)
        np.testing.assert_array_equal(a, b)
    same = 0
    for img in real_mnist_test.images[:1000]:
        big = 255.0 - np.asarray(Image.fromarray(img).resize((112, 112), Image.Resampling.BICUBIC), np.float32)
        a, _ = preprocess_batch(big[None], V1)
        b, errors = preprocess_batch(big[None], V2)
        same += bool(np.array_equal(a, b) and errors == [""])
    assert same >= 990, same  # measured: 997; the other 3 cropped by the finder (a faint speck mnist-v1 keeps, left out)


# --- the finder ---

def test_components_match_a_flood_fill():
    """Runs joined by union-find give the 8-connected components a flood fill gives, numbered in
    the raster order of their first pixel, with their areas and boxes."""
    rng = np.random.default_rng(5)
    mask = rng.random((60, 80)) < 0.45
    c = finder.components(mask)
    seen = np.zeros(mask.shape, np.int32)
    n = 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        n += 1
        todo = [start]
        seen[start] = n
        while todo:
            y, x = todo.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    p = (y + dy, x + dx)
                    if 0 <= p[0] < 60 and 0 <= p[1] < 80 and mask[p] and not seen[p]:
                        seen[p] = n
                        todo.append(p)
    np.testing.assert_array_equal(c.labels, seen)
    assert c.n == n
    for k in (1, n // 2, n):
        ys, xs = np.nonzero(seen == k)
        assert (c.area[k], c.y0[k], c.x0[k], c.y1[k], c.x1[k]) == (len(ys), ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)


def test_v2_reads_digits_in_cluttered_photos_that_v1_cannot():
    """Two desk photos (a sheet on a desk, lines, marks, an object, shadow, noise): the released
    model reads each digit right under mnist-v2; under mnist-v1 it reads neither."""
    model = Predictor(INT8)
    for seed in (3, 4):
        grey, [label] = photo(seed)
        x = mnist_v2(grey)
        assert model.probabilities(x[None]).argmax() == label, seed
        v1, errors = preprocess_batch(grey[None], V1)
        assert errors[0] or model.probabilities(v1).argmax() != label, seed


def test_no_single_digit_is_a_typed_reason_not_a_guess(tmp_path):
    """A page holding only a line and a solid blob, and a desk photo with two digits: each row's
    error says why (no digit-like mark; several), the Python API raises NoDigitError naming the
    file, and mnist-v1 would have guessed."""
    lines = np.full((480, 640), 235.0, np.float32)
    lines[100:103, 40:560] = 30  # an underline
    lines[300:350, 250:300] = 40  # a solid square: an eraser
    two, _ = photo(12, digits=2)
    _, errors = preprocess_batch(np.stack([lines, two]), V2)
    assert errors[0] == finder.NO_DIGIT + ": no mark in the picture is shaped like a digit", errors[0]
    assert errors[1].startswith(finder.NO_SINGLE_DIGIT + ": 2 digit-like marks"), errors[1]
    assert preprocess_batch(np.stack([lines, two]), V1)[1] == ["", ""]  # mnist-v1 guesses both
    with pytest.raises(NoDigitError, match="no single digit found"):
        mnist_v2(two)
    path = tmp_path / "two.png"
    Image.fromarray(two.astype(np.uint8)).save(path)
    with pytest.raises(NoDigitError, match=r"two\.png: no single digit found"):
        Predictor(INT8).predict([path])  # the release names mnist-v2
    assert Predictor(INT8, preprocessing=V1).predict([path])[0].label  # mnist-v1: a guess


def test_blank_pictures_keep_mnist_v1s_reason():
    page = np.full((200, 300), 230.0, np.float32)
    for version in (V1, V2):
        out, errors = preprocess_batch(page[None], version)
        assert errors == [finder.BLANK] and not out.any()
    with pytest.raises(ImageError, match="blank image") as info:
        mnist_v2(page)
    assert not isinstance(info.value, NoDigitError)


# --- the model's metadata picks the version ---

def model_with(tmp_path, preprocessing: str | None) -> Path:
    """The released int8 model naming `preprocessing` in its metadata; None: naming none, as the
    models made before preprocessing had a name."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(INT8))
    kept = [p for p in proto.metadata_props if p.key != C.META_PREPROCESSING]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    if preprocessing is not None:
        proto.metadata_props.add(key=C.META_PREPROCESSING, value=preprocessing)
    out = tmp_path / f"{preprocessing or 'unnamed'}.onnx"
    onnx.save(proto, str(out))
    return out


def test_models_keep_the_preprocessing_their_metadata_names(tmp_path):
    """The released models say mnist-v2 and get it; the same model saying mnist-v1, or naming no
    preprocessing (a model made before names existed), gets mnist-v1; another name is refused; a
    name asked for (preprocessing=) wins over the metadata's."""
    assert Predictor(INT8).preprocessing == Predictor(FP32).preprocessing == V2
    grey, [label] = photo(3)
    path = tmp_path / "desk.png"
    Image.fromarray(grey.round().astype(np.uint8)).save(path)
    v1_model, unnamed = model_with(tmp_path, V1), model_with(tmp_path, None)
    assert Predictor(v1_model).preprocessing == Predictor(unnamed).preprocessing == V1
    assert Predictor(INT8).predict([path])[0].index == label
    assert Predictor(v1_model, preprocessing=V2).predict([path])[0].index == label
    assert Predictor(INT8, preprocessing=V1).preprocessing == V1
    with pytest.raises(ModelFileError, match="'mnist-v9'.*knows mnist-v1, mnist-v2"):
        Predictor(model_with(tmp_path, "mnist-v9"))
    with pytest.raises(ConfigError, match="--preprocessing 'mnist-v9'"):
        Predictor(INT8, preprocessing="mnist-v9")


def test_export_metadata_names_the_preprocessing():
    meta = C.ContractMetadata(architecture="spec", layers="fc10", test_accuracy=None, checkpoint_sha256="0", tool_versions={})
    assert meta.to_props()[C.META_PREPROCESSING] == C.PREPROCESSING == V1
    assert C.ContractMetadata("spec", "fc10", None, "0", {}, preprocessing=V2).to_props()[C.META_PREPROCESSING] == V2


def test_predict_returns_the_inputs_on_request():
    images, labels = vectors()
    predictor = Predictor(FP32)
    plain = predictor.predict(list(images[:4].astype(np.float32)))
    seen = predictor.predict(list(images[:4].astype(np.float32)), return_inputs=True)
    assert all(p.input is None for p in plain)
    for p, q, img in zip(plain, seen, images[:4]):
        np.testing.assert_array_equal(q.input, preprocess(img.astype(np.float32)))
        np.testing.assert_allclose(predictor.probabilities(q.input[None])[0], p.probabilities, atol=1e-6)


# --- predict --save-inputs ---

def test_save_inputs_hold_what_the_model_saw(tmp_path):
    """Each classified row's 28x28 input as a 16-bit PNG named by row and stem: run the model again
    on the saved files and it gives the row's probabilities; a failed row gets no file."""
    from typer.testing import CliRunner

    from cnn_edge.cli import app
    from cnn_edge.prediction.saved_inputs import read_input_png

    inputs = tmp_path / "in"
    inputs.mkdir()
    grey, [label] = photo(4)
    Image.fromarray(grey.round().astype(np.uint8)).save(inputs / "desk photo.jpg", quality=90)
    images, _ = vectors()
    Image.fromarray(images[0]).save(inputs / "a.png")
    (inputs / "broken.png").write_bytes(b"not a png")
    files = [str(inputs / n) for n in ("a.png", "broken.png", "desk photo.jpg")]
    out, saved = tmp_path / "rows.jsonl", tmp_path / "seen"
    result = CliRunner().invoke(app, ["predict", str(FP32), *files, "-o", str(out), "--top-k", "10",
                                      "--preprocessing", "mnist-v2", "--save-inputs", str(saved)])
    assert result.exit_code == 3, result.output  # the broken file
    assert sorted(p.name for p in saved.iterdir()) == ["000000_a.png", "000002_desk_photo.png"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    predictor = Predictor(FP32)
    for row, name in ((rows[0], "000000_a.png"), (rows[2], "000002_desk_photo.png")):
        probs = predictor.probabilities(read_input_png(saved / name)[None])[0]
        for top in row["top_k"]:
            assert abs(probs[int(top["label"])] - top["probability"]) <= 2e-6, (name, top)
    assert rows[2]["prediction"] == str(label)


def test_save_inputs_refuses_a_folder_holding_an_input(tmp_path):
    from typer.testing import CliRunner

    from cnn_edge.cli import app
    from cnn_edge.prediction.config import PredictConfig
    from cnn_edge.distributed.config import RayOptions

    images, _ = vectors()
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    for folder in (tmp_path, tmp_path.parent):
        result = CliRunner().invoke(app, ["predict", str(FP32), str(tmp_path / "a.png"), "--save-inputs", str(folder)])
        assert_one_line_error(result, 2, "--save-inputs", "holds the input")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    with pytest.raises(ConfigError, match="--save-inputs works with the local engine only"):
        RayOptions().check(PredictConfig(keep_inputs=True))


# --- the photo set (heavier) ---

@pytest.mark.slow
def test_v2_reads_nine_in_ten_desk_photos(real_mnist_test, tmp_path):
    """60 desk photos of MNIST test digits (a seed of their own): mnist-v2 reads at least 90% right
    with the released int8 model and flags the rest or errs below 0.95; mnist-v1 reads under a third."""
    files = make_desk_photos(tmp_path, real_mnist_test.images, real_mnist_test.labels, 60, seed=7)
    truth = np.array([int(f.stem.rsplit("_", 1)[1]) for f in files])
    model = Predictor(INT8)
    scores = {}
    for version in (V1, V2):
        x, errors = preprocess_many(files, version=version)
        ok = np.array([not e for e in errors])
        probs = model.probabilities(x)
        right = ok & (probs.argmax(1) == truth)
        scores[version] = (right.mean(), int((ok & ~right & (probs.max(1) >= 0.95)).sum()))
    assert scores[V2][0] >= 0.9 and scores[V2][1] == 0, scores
    assert scores[V1][0] < 0.34, scores


def test_grey_of_a_saved_photo_is_what_the_finder_reads(tmp_path):
    """A photo through a file: grey_pixels gives the float32 luma the finder rounds once."""
    grey, _ = photo(3)
    path = tmp_path / "p.png"
    Image.fromarray(grey.round().astype(np.uint8)).save(path)
    q = finder.integer_grey(grey_pixels(path))
    np.testing.assert_array_equal(q, grey.round())
