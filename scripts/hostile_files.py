"""Hostile image files for cnn-edge predict: valid digits in every supported format, and seeded
mutations of them (bit flips, truncations, spliced bytes, overwritten headers, zeroed runs).

Used by tests/test_hostile.py (1,000 cases in CI) and scripts/fuzz_predict.py (10,000 and more).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

# Extension -> Pillow's writer name and the mode written: one of each format cnn-edge reads.
FORMATS = {
    ".png": ("PNG", "L"), ".jpg": ("JPEG", "RGB"), ".bmp": ("BMP", "RGB"), ".gif": ("GIF", "P"),
    ".tif": ("TIFF", "L"), ".webp": ("WEBP", "RGB"), ".ppm": ("PPM", "RGB"), ".tga": ("TGA", "RGBA"),
    ".ico": ("ICO", "RGBA"),
}


def digit(seed: int, size: int = 48) -> np.ndarray:
    """A light stroke digit-like shape on dark paper, different for each seed."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.uint8)
    x0, y0 = rng.integers(size // 6, size // 3, 2)
    img[y0 : y0 + size // 2, x0 : x0 + 4] = 255
    img[y0 : y0 + 4, x0 : x0 + size // 3] = 255
    return img


def encode(array: np.ndarray, ext: str) -> bytes:
    fmt, mode = FORMATS[ext]
    img = Image.fromarray(array).convert(mode)
    buf = io.BytesIO()
    if ext == ".gif":  # two frames: a multi-frame file
        img.save(buf, fmt, save_all=True, append_images=[Image.fromarray(255 - array).convert("P")])
    elif ext == ".tif":  # two pages
        img.save(buf, fmt, save_all=True, append_images=[Image.fromarray(array[::-1]).convert(mode)])
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def valid_files(seed: int = 0) -> dict[str, bytes]:
    """One valid file per format: extension -> bytes."""
    return {ext: encode(digit(seed + i), ext) for i, ext in enumerate(FORMATS)}


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded corruption of a file, of the kinds disks, networks and attackers produce."""
    b = bytearray(data)
    kind = int(rng.integers(0, 6))
    if kind == 0:  # flip a few bits anywhere
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # truncate
        del b[int(rng.integers(0, len(b))):]
    elif kind == 2:  # overwrite bytes of the header, where sizes and offsets live
        for _ in range(int(rng.integers(1, 5))):
            i = int(rng.integers(0, min(len(b), 64)))
            b[i] = int(rng.integers(0, 256))
    elif kind == 3:  # splice random bytes in
        i = int(rng.integers(0, len(b)))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == 4:  # zero a run
        i = int(rng.integers(0, len(b)))
        b[i : i + int(rng.integers(1, 128))] = bytes(min(len(b) - i, int(rng.integers(1, 128))))
    else:  # big values where sizes are: 0xFF over a run of the first 32 bytes
        i = int(rng.integers(0, min(len(b), 32)))
        b[i : i + 4] = b"\xff\xff\xff\x7f"[: len(b[i : i + 4])]
    return bytes(b)


def write_fuzz_cases(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n mutated files, cycling through the formats, plus one that is surely broken (garbage
    named .png), written into folder in a stable order."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    valid = valid_files(seed)
    exts = list(FORMATS)
    paths = []
    for i in range(n):
        ext = exts[i % len(exts)]
        path = folder / f"{i:06d}{ext}"
        path.write_bytes(mutate(valid[ext], rng))
        paths.append(path)
    broken = folder / f"{n:06d}_garbage.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
    return paths + [broken]
