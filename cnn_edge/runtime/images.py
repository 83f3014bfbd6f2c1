"""Decode image files, PIL images and numpy arrays into grey pixels. Torch-free.

Pillow decodes; everything becomes a float32 grey (H, W) array in 0..255, with transparency
composited on a background that contrasts with the ink. The MNIST-style preprocessing
(runtime/preprocess.py) takes it from there.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile

from ..errors import ImageError, first_line

# 40 Mpixels: a 7,000 x 5,700 photo still passes; a decompression bomb does not.
DEFAULT_MAX_PIXELS = 40_000_000

# ITU-R 601 luma, as floats (not Pillow's rounded integer "L"), for RGB and RGBA alike.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)

Source = Union[str, Path, "Image.Image", np.ndarray]

# A truncated file is an error for the user to see, never half an image silently padded.
ImageFile.LOAD_TRUNCATED_IMAGES = False

def open_image(path: Union[str, Path], max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and decode the first frame of an image file, refusing decompression bombs before decoding."""
    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except PermissionError:
        raise ImageError("cannot read the file: permission denied") from None
    except IsADirectoryError:
        raise ImageError("is a directory, not an image") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large to decode safely ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        if Path(path).stat().st_size == 0:
            raise ImageError("empty file (0 bytes)") from None
        raise ImageError(f"not an image Pillow can read ({first_line(exc, 160)})") from None
    try:
        w, h = img.size
        if w * h > max_pixels:
            raise ImageError(f"image is {w}x{h} = {w * h / 1e6:.1f} Mpixels, above the limit of "
                             f"{max_pixels / 1e6:g} Mpixels (--max-pixels)")
        try:
            img.load()  # the first frame; a single-frame image lets go of its file here
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageError(f"truncated or corrupt image data ({first_line(exc, 160)})") from None
        if getattr(img, "n_frames", 1) > 1:  # animated GIF, multi-page TIFF: keep frame 0, close the file
            first = img.copy()
            img.close()
            img = first
    except BaseException:
        img.close()
        raise
    return img if img.mode != "P" else img.convert("RGBA" if "transparency" in img.info else "RGB")


def to_grey(img: Image.Image) -> np.ndarray:
    """Any Pillow image -> float32 grey (H, W) in 0..255, transparency composited on a background
    that contrasts with the ink (ink drawn on a transparent layer may be dark or light)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float32)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        return a * (255.0 / top)
    if mode == "F":
        a = np.asarray(img, dtype=np.float32)
        return a * 255.0 if a.max() <= 1.0 else a
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        grey = rgba[..., :3] @ LUMA
        alpha = rgba[..., 3] / 255.0
        if alpha.min() >= 1.0:
            return grey
        ink_level = float((grey * alpha).sum() / max(alpha.sum(), 1e-6))
        background = 255.0 if ink_level < 128 else 0.0
        return grey * alpha + background * (1.0 - alpha)
    if mode == "L":
        return np.asarray(img, dtype=np.float32)
    if mode == "RGB":
        return np.asarray(img, dtype=np.float32) @ LUMA
    return np.asarray(img.convert("L"), dtype=np.float32)


def array_to_grey(a: np.ndarray) -> np.ndarray:
    """A numpy image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), uint8/uint16/float -> grey 0..255."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(f"expected an image array (H, W), (H, W, 3) or (H, W, 4), got shape {a.shape}")
    if a.dtype == np.uint16:
        a = a.astype(np.float32) * (255.0 / 65535.0)
    elif a.dtype.kind == "f":
        a = a.astype(np.float32) * (255.0 if float(a.max(initial=0.0)) <= 1.0 else 1.0)
    elif a.dtype == np.bool_:
        a = a.astype(np.float32) * 255.0
    a = np.clip(a.astype(np.float32), 0.0, 255.0)
    if a.ndim == 2:
        return a
    mode = "RGBA" if a.shape[2] == 4 else "RGB"
    return to_grey(Image.fromarray(a.round().astype(np.uint8), mode=mode))


def to_grey_any(source: Source, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Path, PIL image or numpy array -> grey (H, W) float32 0..255. Raises ImageError."""
    if isinstance(source, np.ndarray):
        return array_to_grey(source)
    if isinstance(source, Image.Image):
        return to_grey(source)
    if isinstance(source, (str, Path)):
        return to_grey(open_image(source, max_pixels))
    raise ImageError(f"cannot read an image from a {type(source).__name__}; give a path, a PIL image or a numpy array")
