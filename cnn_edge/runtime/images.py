"""Decode image files, PIL images and numpy arrays into grey pixels. Torch-free.

Pillow decodes; everything becomes a float32 grey (H, W) array in 0..255, with transparency
composited on a background that contrasts with the ink. The MNIST-style preprocessing
(runtime/preprocess.py) takes it from there.

Hostile files are expected. Only regular files are read (a FIFO never blocks the run), only the
formats in FORMATS are tried, the pixel limit is checked from the header before any pixel is
decoded (for an ICO, from every entry it holds), only the first frame or page is decoded, large
images are decoded reduced where the format allows it (JPEG) and reduced right after decoding
otherwise, and any exception while opening or decoding becomes an ImageError naming the problem.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ..core.constants import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS
from ..core.errors import ImageError, first_line
from ..core.files import EMPTY_FILE, open_regular_fd, open_regular_file  # noqa: F401  (open_regular_file: re-exported)
from .grey_png import FAST_MAX_BYTES, grey_png

# The formats read, by Pillow's names (file extensions in runtime/inputs.py). Everything else is
# refused before a decoder sees it: an EPS file never reaches Ghostscript.
FORMATS = ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM", "TGA", "ICO")
# The format an extension names is tried alone (no probing), unless a format before it in FORMATS
# claims the file too; all are tried when it fails (the extension lied), so the same decoder wins.
EXTENSION_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG",
                     ".bmp": "BMP", ".dib": "DIB", ".gif": "GIF", ".tif": "TIFF", ".tiff": "TIFF",
                     ".webp": "WEBP", ".pgm": "PPM", ".ppm": "PPM", ".pbm": "PPM", ".pnm": "PPM",
                     ".tga": "TGA", ".ico": "ICO"}
# Images whose longer side exceeds twice this are reduced (box filter, an integer factor) to
# between this and twice this, before any float copy is made: the digit ends up 20 pixels tall,
# so nothing the model sees is lost, and a 40-Mpixel photo costs one decoded copy, not five.
REDUCE_TO = 1024

EXIF_ORIENTATION = 0x0112  # the EXIF tag; 1 is upright, 2..8 mirror and rotate

# ITU-R 601 luma, as floats (not Pillow's rounded integer "L"), for RGB and RGBA alike.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)

Source = Union[str, Path, "Image.Image", np.ndarray, bytes]

# A truncated file is an error for the user to see, never half an image silently padded.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# The limit is ours (max_pixels, checked below); Pillow's own bomb check would only warn or
# refuse at another size.
Image.MAX_IMAGE_PIXELS = None

def _too_large(w: int, h: int, max_pixels: int) -> ImageError:
    return ImageError(f"image is {w}x{h} = {w * h / 1e6:.1f} Mpixels, above the limit of "
                      f"{max_pixels / 1e6:g} Mpixels (--max-pixels)")


def too_large_file(size: int, max_file_bytes: int) -> str:
    """The one line for a file above the size limit (every engine's row, and Node.js's, say it)."""
    return (f"file is {size:,} bytes ({size / 2**20:.1f} MiB), above the limit of "
            f"{max_file_bytes:,} bytes ({max_file_bytes / 2**20:g} MiB; --max-file-bytes)")


def _check_file_size(size: int, max_file_bytes: int) -> None:
    """Refuse a file above the size limit before any of it is read (a reader that takes files
    whole, the Ray engine's, holds at most the limit; Node.js's client applies the same rule)."""
    if size > max_file_bytes:
        raise ImageError(too_large_file(size, max_file_bytes))


def _check_ico(f: BinaryIO, max_pixels: int) -> None:
    """An ICO holds several images, which Pillow decodes while opening: check each entry's size
    (the directory's, and the embedded PNG's or BMP's own header) against the limit first."""
    head = f.read(6)
    count = struct.unpack("<H", head[4:6])[0] if len(head) == 6 else 0
    entries = f.read(16 * count)
    for i in range(len(entries) // 16):
        w, h, _, _, _, _, size, offset = struct.unpack("<BBBBHHII", entries[16 * i : 16 * i + 16])
        f.seek(offset)
        inner = f.read(32)
        if inner[:8] == b"\x89PNG\r\n\x1a\n" and len(inner) >= 24:
            w, h = struct.unpack(">II", inner[16:24])
        elif len(inner) >= 12:
            bw, bh = struct.unpack("<ii", inner[4:12])
            w, h = max(w or 256, abs(bw)), max(h or 256, abs(bh) // 2)  # a DIB stores twice the height
        if (w or 256) * (h or 256) > max_pixels:
            raise _too_large(w or 256, h or 256, max_pixels)
    f.seek(0)


def _reduce_factor(size: tuple[int, int]) -> int:
    """The integer factor that brings the longer side below 2 * REDUCE_TO, but not below REDUCE_TO."""
    return max(size) // REDUCE_TO


def _decode_size(img: Image.Image) -> tuple[int, int]:
    """The size to ask a format that can decode reduced (JPEG) for: at least REDUCE_TO on the longer side."""
    w, h = img.size
    factor = _reduce_factor(img.size)
    return (max(1, w // factor), max(1, h // factor)) if factor >= 2 else (w, h)


def _reduce(img: Image.Image) -> Image.Image:
    """Reduce by an integer factor (box filter) until the longer side is below 2 * REDUCE_TO."""
    factor = _reduce_factor(img.size)
    if factor < 2:
        return img
    if "transparency" in img.info and img.mode not in ("LA", "RGBA"):
        # A colour key (a palette's or a tRNS chunk's transparent entry) would be averaged into
        # its neighbours and lost: to an alpha channel first (reduce premultiplies it).
        img = img.convert("RGBA")
    elif img.mode not in ("L", "LA", "RGB", "RGBA", "I", "F", "I;16"):
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    return img.reduce(factor)


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phone photos are stored sideways). Unreadable EXIF is ignored,
    as the JavaScript port (cnn_edge/web/preprocess.js) ignores it."""
    if img.format == "PNG" and "exif" not in img.info:  # most PNGs: nothing to parse
        return img
    try:
        if img.getexif().get(EXIF_ORIENTATION, 1) in range(2, 9):
            return ImageOps.exif_transpose(img)
    except Exception:  # hostile EXIF: the pixels are still the pixels
        pass
    return img


def _formats(head: bytes, hint: str | None) -> tuple[str, ...]:
    """(hint,) when no format before it in FORMATS would be tried on a file starting with `head`
    (Image.open tries a format when its accept() returns True), else FORMATS."""
    if hint not in FORMATS:
        return FORMATS
    Image.init()  # once: registers every plugin's accept()
    for fmt in FORMATS:
        if fmt == hint:
            return (hint,)
        accept = Image.OPEN[fmt][1] if fmt in Image.OPEN else None
        result = True if accept is None else accept(head)
        if result and not isinstance(result, str):
            return FORMATS
    return FORMATS


def _open(f: BinaryIO, hint: str | None) -> Image.Image:
    formats = _formats(f.read(16), hint)
    f.seek(0)
    try:
        return Image.open(f, formats=formats)
    except Exception:
        if formats == FORMATS:
            raise
    f.seek(0)
    return Image.open(f, formats=FORMATS)  # the extension lied: every format, as without a hint


def _decode(f: BinaryIO, max_pixels: int, hint: str | None = None) -> Image.Image:
    head = f.read(4)
    f.seek(0)
    if head == b"\0\0\1\0":
        _check_ico(f, max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's warnings about odd files: the row says what matters
        img = _open(f, hint)
        w, h = img.size
        if w * h > max_pixels:
            raise _too_large(w, h, max_pixels)
        if img.format == "JPEG":
            img.draft(img.mode, _decode_size(img))  # decode at 1/2, 1/4 or 1/8 scale where that still suffices
        img.load()  # the first frame or page only
        img = _reduce(img)
        img = _upright(img)
    return img if img.mode != "P" else img.convert("RGBA" if "transparency" in img.info else "RGB")


def open_image(path: Union[str, Path], max_pixels: int = DEFAULT_MAX_PIXELS, *,
               max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Image.Image:
    """Open and decode the first frame of an image file. Raises ImageError, whatever went wrong."""
    return _load(path, max_pixels, fast=False, max_file_bytes=max_file_bytes)  # type: ignore[return-value]  # not fast: an Image


@contextmanager
def _decode_errors():
    """Any failure while opening or decoding becomes this image's ImageError, the same for files and bytes."""
    try:
        yield
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(f"not an image in a format cnn-edge reads ({', '.join(FORMATS)})") from None
    except Exception as exc:  # any decoder's failure: truncated data, a malformed header, a decoder bug
        raise ImageError(f"cannot decode the image ({exc.__class__.__name__}: {first_line(exc, 160)})") from None


def _fast_grey(data: bytes, max_pixels: int) -> np.ndarray | None:
    """A small plain grey PNG's (H, W) uint8 pixels, exactly the full path's (grey_png.py); else None."""
    return grey_png(data, max_pixels, 2 * REDUCE_TO) if len(data) <= FAST_MAX_BYTES else None


def _load(path: Union[str, Path], max_pixels: int, fast: bool,
          max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Union[Image.Image, np.ndarray]:
    """The decoded image, or with `fast`, the grey pixels of a small plain grey PNG. Raises ImageError."""
    fd, size = open_regular_fd(path)
    f = None
    try:
        _check_file_size(size, max_file_bytes)
        with _decode_errors():
            if fast and size <= FAST_MAX_BYTES:  # one read, no file object: a third of a 28x28 PNG's time
                grey = _fast_grey(os.read(fd, size + 1), max_pixels)
                if grey is not None:
                    return grey
                os.lseek(fd, 0, os.SEEK_SET)
            f = os.fdopen(fd, "rb")
            return _decode(f, max_pixels, EXTENSION_FORMATS.get(os.path.splitext(path)[1].lower()))
    finally:
        if f is None:
            os.close(fd)
        else:
            f.close()


def open_image_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, *,
                     max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Image.Image:
    """open_image for a file's bytes already in memory (read from object storage by the Ray
    engine): the same checks, the same errors. Raises ImageError, whatever went wrong."""
    if not data:
        raise ImageError(EMPTY_FILE)
    _check_file_size(len(data), max_file_bytes)
    with _decode_errors():
        return _decode(io.BytesIO(data), max_pixels)


def to_grey(img: Image.Image) -> np.ndarray:
    """Any Pillow image -> float32 grey (H, W) in 0..255, transparency composited by one rule for
    every kind of it (an alpha channel, a palette's or a tRNS chunk's transparent entry): see _composite."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        return _composite(rgba[..., :3] @ LUMA, rgba[..., 3] / 255.0)
    grey = _opaque_grey(img)
    key = img.info.get("transparency")
    if key is None or mode not in ("L", "RGB", "I", "I;16", "I;16B", "I;16L", "I;16N", "1"):
        return grey
    # A colour key (a grey or RGB PNG's tRNS chunk): the pixels of exactly that stored value are
    # transparent, the rest opaque; as an alpha channel, so the same rule applies.
    raw = np.asarray(img)
    if mode == "RGB":
        if not isinstance(key, tuple) or len(key) != 3:
            return grey
        transparent = (raw == np.asarray(key, raw.dtype)).all(axis=2)
    else:
        if not isinstance(key, int):
            return grey
        transparent = raw == key
    return _composite(grey, np.where(transparent, 0.0, 1.0).astype(np.float32))


def _opaque_grey(img: Image.Image) -> np.ndarray:
    """The grey of an image without an alpha channel (a colour key, if any, is not applied here)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float32)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        return a * (255.0 / top)
    if mode == "F":
        a = _finite(np.asarray(img, dtype=np.float32))
        return a * 255.0 if a.max() <= 1.0 else a
    if mode == "L":
        return np.asarray(img, dtype=np.float32)
    if mode == "RGB":
        return np.asarray(img, dtype=np.float32) @ LUMA
    return np.asarray(img.convert("L"), dtype=np.float32)


def _composite(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """grey (H, W) 0..255 and alpha (H, W) 0..1 -> grey on a background that contrasts with the ink.

    The one rule for transparency: what is drawn is what is visible, so transparent pixels are
    background, whatever colour they store (a drawing app's transparent white and transparent
    black read alike). The ink's level is the mean grey of the visible pixels, weighted by their
    alpha; the background is white under dark ink and black under light ink. A fully transparent
    pixel's stored colour never counts; a semi-transparent edge counts by its alpha."""
    if alpha.min() >= 1.0:
        return grey
    ink_level = float((grey * alpha).sum() / max(float(alpha.sum()), 1e-6))
    background = 255.0 if ink_level < 128 else 0.0
    return grey * alpha + background * (1.0 - alpha)


def _finite(a: np.ndarray) -> np.ndarray:
    """`a`, when every value is a number: NaN or infinite pixels would give a silent, meaningless prediction."""
    if not np.isfinite(a).all():
        raise ImageError("the image holds NaN or infinite pixel values")
    return a


def array_to_grey(a: np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A numpy image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), bool/integer/float -> grey 0..255."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(f"expected an image array (H, W), (H, W, 3) or (H, W, 4), got shape {a.shape}")
    if a.dtype.kind not in "buif":
        raise ImageError(f"expected an array of numbers, got dtype {a.dtype}")
    if a.shape[0] * a.shape[1] > max_pixels:
        raise _too_large(a.shape[1], a.shape[0], max_pixels)
    if a.dtype == np.uint16:
        a = a.astype(np.float32) * (255.0 / 65535.0)
    elif a.dtype.kind == "f":
        a = _finite(a.astype(np.float32))
        a = a * (255.0 if float(a.max(initial=0.0)) <= 1.0 else 1.0)
    elif a.dtype == np.bool_:
        a = a.astype(np.float32) * 255.0
    a = np.clip(a.astype(np.float32), 0.0, 255.0)
    if a.ndim == 2:
        return a
    mode = "RGBA" if a.shape[2] == 4 else "RGB"
    return to_grey(Image.fromarray(a.round().astype(np.uint8), mode=mode))


def to_grey_any(source: Source, max_pixels: int = DEFAULT_MAX_PIXELS, *,
                max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> np.ndarray:
    """Path, PIL image or numpy array -> grey (H, W) float32 0..255. Raises ImageError."""
    if isinstance(source, np.ndarray):
        return array_to_grey(source, max_pixels)
    if isinstance(source, Image.Image):
        if source.width * source.height > max_pixels:
            raise _too_large(source.width, source.height, max_pixels)
        return to_grey(_reduce(source))
    if isinstance(source, (str, Path)):
        return grey_pixels(source, max_pixels, max_file_bytes=max_file_bytes).astype(np.float32, copy=False)
    if isinstance(source, (bytes, bytearray, memoryview)):  # a file's bytes (the Ray engine reads them)
        data = bytes(source)
        _check_file_size(len(data), max_file_bytes)
        grey = _fast_grey(data, max_pixels)
        if grey is not None:
            return grey.astype(np.float32)
        return to_grey(open_image_bytes(data, max_pixels, max_file_bytes=max_file_bytes))
    raise ImageError(f"cannot read an image from a {type(source).__name__}; give a path, a PIL image or a numpy array")


def grey_pixels(path: Union[str, Path], max_pixels: int = DEFAULT_MAX_PIXELS, *,
                max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> np.ndarray:
    """An image file -> grey (H, W) 0..255: uint8 from the fast path (a small plain grey PNG),
    float32 otherwise; the same values as to_grey_any. Raises ImageError."""
    img = _load(path, max_pixels, fast=True, max_file_bytes=max_file_bytes)
    return img if isinstance(img, np.ndarray) else to_grey(img)
