"""Preprocessing: real files of every kind become MNIST-like 28x28 digits; broken files get errors."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from cnn_edge.core.errors import ImageError
from cnn_edge.runtime.images import array_to_grey, open_image
from cnn_edge.runtime.preprocess import (
    CENTRE_OF_MASS, DIGIT_BOX, mnist_v1, mnist_v1_batch, preprocess, preprocess_many,
)


def digit_28(seed: int = 0) -> np.ndarray:
    """An MNIST-like digit: a light stroke pattern whose box is 20 px tall, centred by mass."""
    rng = np.random.default_rng(seed)
    img = np.zeros((28, 28), np.float32)
    img[4:24, 10:13] = 255  # a '1' with a flag
    img[4:7, 7:11] = 200
    img[img > 0] -= rng.integers(0, 40, int((img > 0).sum()))
    return mnist_v1(img)


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(x.shape)
    return float((x * ys).sum() / x.sum()), float((x * xs).sum() / x.sum())


def ink_box(x: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(x.any(1)), np.flatnonzero(x.any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_output_is_mnist_shaped_light_on_dark_centred():
    x = digit_28()
    assert x.shape == (28, 28) and x.dtype == np.float32
    assert x.max() == pytest.approx(255.0) and x.min() == 0.0
    assert max(ink_box(x)) == DIGIT_BOX
    cy, cx = centre_of_mass(x)
    assert abs(cy - CENTRE_OF_MASS) <= 0.5 and abs(cx - CENTRE_OF_MASS) <= 0.5


def test_an_mnist_style_digit_passes_unchanged():
    x = digit_28()
    np.testing.assert_allclose(mnist_v1(x), x, atol=1e-3)


def test_dark_ink_on_light_paper_is_inverted():
    x = digit_28()
    np.testing.assert_allclose(mnist_v1(255 - x), x, atol=1e-3)


def test_large_off_centre_digit_is_cropped_scaled_and_centred():
    x = digit_28()
    big = np.asarray(Image.fromarray(x.astype(np.uint8)).resize((280, 280), Image.Resampling.BICUBIC), np.float32)
    page = np.full((600, 900), 230.0, np.float32)
    page[20:300, 600:880] = 230 - big * (200 / 255)  # dark ink near the top-right corner
    out = mnist_v1(page)
    assert max(ink_box(out)) == DIGIT_BOX
    cy, cx = centre_of_mass(out)
    assert abs(cy - CENTRE_OF_MASS) <= 0.5 and abs(cx - CENTRE_OF_MASS) <= 0.5
    assert np.corrcoef(out.ravel(), x.ravel())[0, 1] > 0.9


def test_paper_noise_does_not_count_as_ink():
    rng = np.random.default_rng(1)
    page = rng.normal(200, 6, (100, 100)).astype(np.float32)
    page[30:70, 45:52] = 20  # a dark vertical bar
    out = mnist_v1(page)
    h, w = ink_box(out)
    assert h == DIGIT_BOX and w <= 6  # the bar only, not the noisy paper around it


def test_blank_images_are_errors():
    with pytest.raises(ImageError):
        mnist_v1(np.full((40, 40), 255.0))
    noisy = np.random.default_rng(0).normal(128, 2, (50, 50))
    with pytest.raises(ImageError):
        mnist_v1(noisy)


def test_batch_equals_one_by_one_on_mixed_images():
    rng = np.random.default_rng(3)
    stack = []
    for i in range(12):
        img = np.zeros((28, 28), np.float32)
        h, w = rng.integers(8, 22), rng.integers(3, 22)
        y, x = rng.integers(0, 28 - h), rng.integers(0, 28 - w)
        img[y : y + h, x : x + w] = rng.integers(60, 256, (h, w))
        stack.append(255 - img if i % 3 == 0 else img)
    batch, blank = mnist_v1_batch(np.stack(stack))
    assert not blank.any()
    for img, out in zip(stack, batch):
        np.testing.assert_allclose(out, mnist_v1(img), atol=1e-4)


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


@pytest.fixture
def digit_image() -> Image.Image:
    return Image.fromarray(digit_28().astype(np.uint8))


def test_every_format_and_mode_gives_the_same_digit(tmp_path, digit_image):
    ref = preprocess(digit_image)
    big = digit_image.resize((112, 112), Image.Resampling.BICUBIC)
    inverted = Image.fromarray(255 - np.asarray(big))
    rgba = Image.new("RGBA", big.size, (0, 0, 0, 0))
    rgba.putalpha(big)  # black ink on a transparent layer
    white_rgba = Image.new("RGBA", big.size, (255, 255, 255, 0))
    white_rgba.putalpha(big)  # white ink on a transparent layer
    files = [
        save(digit_image, tmp_path / "a.png"),
        save(inverted.convert("RGB"), tmp_path / "b.jpg", quality=95),
        save(inverted, tmp_path / "c.bmp"),
        save(inverted.convert("P"), tmp_path / "d.gif"),
        save(Image.fromarray((np.asarray(inverted).astype(np.uint16) * 257)), tmp_path / "e.tif"),
        save(rgba, tmp_path / "f.png"),
        save(white_rgba, tmp_path / "g.webp", lossless=True),
    ]
    for f in files:
        out = preprocess(f)
        assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9, f.name


def test_arrays_of_every_layout(digit_image):
    ref = preprocess(digit_image)
    g = np.asarray(digit_image)
    for a in (g, g[..., None], np.repeat(g[..., None], 3, 2), g.astype(np.float32) / 255, g.astype(np.uint16) * 257):
        np.testing.assert_allclose(preprocess(a), ref, atol=1.5)
    with pytest.raises(ImageError, match=r"\(2, 3, 4, 5\)"):
        array_to_grey(np.zeros((2, 3, 4, 5)))


def test_broken_files_get_clear_errors(tmp_path, digit_image):
    good = save(digit_image, tmp_path / "good.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:60])
    big = save(Image.new("L", (3000, 3000), 255), tmp_path / "big.png")
    paths = [good, empty, text, truncated, tmp_path / "missing.png", big, tmp_path]
    out, errors = preprocess_many(paths, max_pixels=4_000_000)
    assert errors[0] == "" and all(errors[1:])
    assert len(set(errors[1:])) == len(errors) - 1  # each says what is wrong with that file
    assert "3000x3000" in errors[5] and "--max-pixels" in errors[5]  # the size, and the option that limits it
    assert np.all(out[1:] == 0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path, digit_image):
    p = save(digit_image, tmp_path / "locked.png")
    p.chmod(0)
    with pytest.raises(ImageError):
        open_image(p)


def test_first_frame_of_an_animation(tmp_path, digit_image):
    frames = [digit_image.convert("P"), Image.new("P", digit_image.size, 0)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert preprocess(path).max() > 0
