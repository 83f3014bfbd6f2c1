"""The fast paths give exactly what the full path gives: the grey-PNG decoder (runtime/grey_png.py),
the format named by the extension, the centring gather. Pixels bit for bit, errors word for word."""
from __future__ import annotations

import io
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnn_edge.core.errors import ImageError
from cnn_edge.runtime import grey_png
from cnn_edge.runtime.images import EXTENSION_FORMATS, grey_pixels, open_image, to_grey
from cnn_edge.runtime.preprocess import _centre, _shift_to_centre, mnist_v1_batch, preprocess_many
from conftest import real_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from hostile_files import mutate, valid_files  # noqa: E402

def full_path(path: Path):
    """What the full path gives, every format tried as without a hint: grey float32, or the error."""
    neutral = path.with_name(path.name + ".as-is")  # an extension that names no format
    shutil.copyfile(path, neutral)
    try:
        return to_grey(open_image(neutral))
    except ImageError as exc:
        return str(exc)
    finally:
        neutral.unlink()


def fast_path(path: Path):
    try:
        return grey_pixels(path).astype(np.float32)
    except ImageError as exc:
        return str(exc)


def assert_same(got, want, what) -> None:
    assert type(got) is type(want), (what, got if isinstance(got, str) else want)
    if isinstance(want, str):
        assert got == want, what
    else:
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape, what
        assert got.tobytes() == want.tobytes(), what


def png_chunk(cid: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + cid + body + struct.pack(">I", zlib.crc32(cid + body))


def handmade_png(pixels: np.ndarray, extra: list[bytes] = (), idat_parts: int = 1, filter_type: int = 1) -> bytes:
    """An 8-bit grey PNG written here: ancillary chunks before IDAT, the data split in parts."""
    h, w = pixels.shape
    rows = pixels.astype(np.int16)
    if filter_type == 1:  # Sub
        rows = np.diff(rows, axis=1, prepend=0)
    raw = b"".join(bytes([filter_type]) + (r % 256).astype(np.uint8).tobytes() for r in rows)
    data = zlib.compress(raw)
    cuts = np.linspace(0, len(data), idat_parts + 1).astype(int)
    return (grey_png.PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + b"".join(extra) + b"".join(png_chunk(b"IDAT", data[a:b]) for a, b in zip(cuts, cuts[1:]))
            + png_chunk(b"IEND", b""))


def varied_files(folder: Path, seed: int = 0) -> list[Path]:
    """Grey PNGs the fast path takes (sizes, content, Pillow's options, harmless chunks, split
    data) and PNGs it must leave to the full path (other modes, 16 bits, interlaced, transparency)."""
    rng = np.random.default_rng(seed)
    files = {}
    for i, (h, w) in enumerate([(28, 28), (1, 1), (1, 40), (33, 7), (64, 64), (200, 150)]):
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        a[rng.random((h, w)) < 0.6] = 0
        for opts in ({}, {"optimize": True}, {"compress_level": 0}, {"dpi": (300, 300)}):
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, "PNG", **opts)
            files[f"pil_{i}_{len(files)}.png"] = buf.getvalue()
        files[f"hand_{i}.png"] = handmade_png(a, [png_chunk(b"gAMA", struct.pack(">I", 45455)),
                                                  png_chunk(b"sRGB", b"\0")], idat_parts=3)
        files[f"up_{i}.png"] = handmade_png(a, [png_chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1))], filter_type=2)
    a = (rng.random((28, 28)) * 255).astype(np.uint8)
    for mode in ("RGB", "LA", "P", "I;16", "1", "RGBA"):
        buf = io.BytesIO()
        Image.fromarray(a).convert(mode).save(buf, "PNG")
        files[f"mode_{mode.replace(';', '')}.png"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", transparency=0)
    files["transparent.png"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", interlace=1)
    files["interlaced.png"] = buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the full path turns it upright
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", exif=exif)
    files["exif_rotated.png"] = buf.getvalue()
    files["tEXt.png"] = handmade_png(a, [png_chunk(b"tEXt", b"Software\0test")])
    files["bad_gAMA_length.png"] = handmade_png(a, [png_chunk(b"gAMA", b"\0\0")])
    paths = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


def test_varied_grey_pngs_and_others_give_what_the_full_path_gives(tmp_path):
    paths = varied_files(tmp_path)
    taken = 0
    for p in paths:
        assert_same(fast_path(p), full_path(p), p.name)
        taken += grey_png.grey_png(p.read_bytes(), 10**9, 2048) is not None
    assert taken >= 30  # the fast path is used for the plain grey ones, not skipped for all


@pytest.mark.slow
def test_corrupted_pngs_give_the_same_pixels_or_the_same_error(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "src"
    src.mkdir()
    sources = [p.read_bytes() for p in varied_files(src)]
    out = tmp_path / "mutated"
    out.mkdir()
    outcomes = set()
    for i in range(1200):
        p = out / f"{i:05d}.png"
        data = sources[i % len(sources)]
        if i % 4 == 0:  # a corrupted checksum or length of the chunks the fast path reads itself
            b = bytearray(data)
            b[int(rng.integers(8, min(len(b), 45)))] ^= 1 << int(rng.integers(0, 8))
            data = bytes(b)
        else:
            data = mutate(data, rng)
        p.write_bytes(data)
        got, want = fast_path(p), full_path(p)
        assert_same(got, want, p.name)
        outcomes.add(isinstance(want, str))
    assert outcomes == {True, False}  # both kinds were met


def test_lying_extensions_decode_or_fail_as_before(tmp_path):
    files = {**valid_files(3), ".bad": b"\x89PNG\r\n\x1a\n" + bytes(100), ".txt": b"just some text, no image"}
    checked = 0
    for true_ext, data in files.items():
        for ext in EXTENSION_FORMATS:
            p = tmp_path / f"{true_ext.strip('.')}_as{ext}"
            p.write_bytes(data)
            assert_same(fast_path(p), full_path(p), p.name)
            checked += 1
    assert checked == len(files) * len(EXTENSION_FORMATS)


@pytest.mark.slow
def test_every_mnist_test_png_decodes_bit_identical(tmp_path):
    root = real_mnist()
    if root is None:
        pytest.skip("needs the real MNIST (CNN_EDGE_DATA)")
    from cnn_edge.training.data import load_split

    test = load_split("test", root)
    assert len(test.images) == 10_000
    for i, a in enumerate(test.images):
        Image.fromarray(a).save(tmp_path / f"{i:05d}.png")
        p = tmp_path / f"{i:05d}.png"
        fast = grey_pixels(p)
        assert fast.dtype == np.uint8  # the fast path was taken
        full = to_grey(open_image(p))
        assert fast.astype(np.float32).tobytes() == full.tobytes(), p.name
        assert fast.tobytes() == a.tobytes()


def test_the_centring_gather_equals_placing_each_digit_alone():
    rng = np.random.default_rng(2)
    digits = np.zeros((300, 24, 31), np.float32)
    for d in digits:
        h, w = rng.integers(1, 21, 2)
        y, x = rng.integers(0, 24 - h + 1), rng.integers(0, 31 - w + 1)
        d[y : y + h, x : x + w] = rng.random((h, w)) * 255 * (rng.random((h, w)) < 0.7)
        d[y, x], d[y + h - 1, x + w - 1] = 200.0, 90.0  # the box's corners are inked
    together = _shift_to_centre(digits)
    for d, got in zip(digits, together):
        rows, cols = np.flatnonzero(d.any(axis=1)), np.flatnonzero(d.any(axis=0))
        alone = _centre(d[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
        assert got.dtype == np.float32 and got.tobytes() == alone.tobytes()


def test_fast_and_full_paths_prepare_the_same_model_inputs(tmp_path):
    paths = varied_files(tmp_path)
    got, errors = preprocess_many(paths)
    for p, digit, error in zip(paths, got, errors):
        full = full_path(p)
        if isinstance(full, str):
            assert error == full, p.name
            continue
        want, blank = mnist_v1_batch(full[None])
        assert bool(error) == bool(blank[0]), p.name
        assert digit.tobytes() == want[0].tobytes(), p.name
