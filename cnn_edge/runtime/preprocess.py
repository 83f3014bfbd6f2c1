"""Make a user's image look like an MNIST digit, the way MNIST itself was made. Torch-free.

MNIST digits are light ink (up to 255) on a black background (0), size-normalised with
anti-aliasing so that the longer side of the digit's bounding box is 20 pixels, and placed in a
28x28 field so that the centre of mass sits at the centre. `mnist_v1` reproduces that from any
picture: composite transparency, go to grey, detect the polarity, remove the background level,
crop to the ink, scale into 20x20, centre on the centre of mass. On MNIST's own test images it is
(almost) the identity, which the tests check through the model's accuracy.

`mnist-v2` (preprocess_batch) first finds the one digit of a cluttered picture (runtime/finder.py)
and hands mnist-v1 that digit alone, or says there is no single digit; where mnist-v1 already
sees one digit and nothing else, its result stands unchanged. A model's metadata names the
version it takes (core.contract.META_PREPROCESSING).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.constants import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS, IMAGE_SIZE
from ..core.contract import PREPROCESSING_V1, PREPROCESSING_V2, PREPROCESSINGS
from ..core.errors import ConfigError, ImageError, NoDigitError, first_line
from .finder import BLANK, NO_DIGIT, NO_SINGLE_DIGIT, find_digit
from .images import Source, grey_pixels, to_grey_any

DIGIT_BOX = 20  # MNIST's size normalisation box
# MNIST's centre of mass sits at index (14.0, 14.0) (measured over its test set: mean 13.99 and
# 14.01, sd 0.29), i.e. the centre of the field in pixel-edge coordinates.
CENTRE_OF_MASS = 14.0
# Ink is what stands out from the paper by more than about 12% of the strongest ink (255); the
# rest is paper texture, sensor noise or JPEG ringing and is set to zero. 30.55, not 0.12 * 255
# = 30.6: integer images hit round ratios like 30 * 255/250 = 30.6 exactly, where float rounding
# in Python and JavaScript would fall on different sides.
INK_LEVEL = 30.55
# Centre-of-mass rounding nudged the same way, so a mass centred exactly on .5 rounds alike in both.
ROUND_NUDGE = 1e-6
# Paper noise: the background level plus this many robust standard deviations of the border.
NOISE_SIGMAS = 3.0


# A strip this thin (or thinner) on its short side is mostly digit along its long sides (a "1"
# cropped tight): its paper is read from its two short ends instead of the whole frame.
STRIP_WIDTH = 3


def _frame(g: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, pixels where the paper shows): the frame; for a strip (short side at
    most STRIP_WIDTH), its two short ends (first and last row of a tall one, column of a wide one)."""
    _, h, w = g.shape
    if min(h, w) <= STRIP_WIDTH:
        return np.concatenate([g[:, 0], g[:, -1]] if h >= w else [g[:, :, 0], g[:, :, -1]], axis=1)
    return np.concatenate([g[:, 0], g[:, -1], g[:, 1:-1, 0], g[:, 1:-1, -1]], axis=1)


def _light_paper(frame: np.ndarray, strip: bool) -> np.ndarray:
    """(N,) True where the paper is light (dark ink: invert). The frame's upper median decides;
    a strip's few end pixels decide by their mean (its upper median of 2 to 6 values leans light,
    and a stroke ending at one end would then decide)."""
    return (frame.mean(axis=1, dtype=np.float64) if strip else _median(frame)) > 127.5


def _median(a: np.ndarray) -> np.ndarray:
    """Row-wise (upper) median by partition: np.median costs several times more on small rows."""
    k = a.shape[1] // 2
    return np.partition(a, k, axis=1)[:, k]


def mnist_v1_batch(greys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) grey 0..255 -> ((N, 28, 28) float32 light digits on black, MNIST-style; blank mask).

    Every step is one numpy operation over the whole stack; only digits that need rescaling (their
    longer side is not already 20 pixels) take a per-image step. Blank images (no ink stands out
    from the background) come back as zeros with their mask entry set."""
    g, blank, _ = _v1_ink(greys)
    return _v1_place(g, blank), blank


def _v1_ink(greys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mnist-v1's first half: (N, H, W) grey -> ((N, H, W) float32 ink, 0 or INK_LEVEL..255, light
    on black; blank mask; dark-ink mask: where the paper was light and the picture was inverted)."""
    g = np.array(greys, dtype=np.float32, copy=True)
    if g.ndim != 3 or min(g.shape[1:]) < 1:
        raise ImageError(f"expected grey images (N, H, W), got shape {g.shape}")
    n, h, w = g.shape
    border = _frame(g)
    background = _median(border)
    # Polarity: MNIST has light ink on dark paper; a light background means dark ink, so invert.
    dark_ink = _light_paper(border, min(h, w) <= STRIP_WIDTH)
    if dark_ink.any():
        g[dark_ink] = 255.0 - g[dark_ink]
        border[dark_ink] = 255.0 - border[dark_ink]
        background = np.where(dark_ink, 255.0 - background, background)
    spread = 1.4826 * _median(np.abs(border - background[:, None]))  # robust sd of the paper
    g -= (background + NOISE_SIGMAS * spread)[:, None, None]
    peak = g.max(axis=(1, 2))
    blank = peak <= 8.0  # nothing stands out from the paper by more than a few grey levels
    g *= (255.0 / np.where(blank, 1.0, peak))[:, None, None]
    np.copyto(g, 0.0, where=g < INK_LEVEL)
    g[blank] = 0.0
    return g, blank, dark_ink


def _v1_place(g: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """mnist-v1's second half: (N, H, W) ink from _v1_ink -> (N, 28, 28): cropped to the ink, its
    longer side scaled to DIGIT_BOX, centred by mass."""
    n, h, w = g.shape
    rows, cols = g.max(axis=2) > 0, g.max(axis=1) > 0  # ink is positive now; max is faster than any
    r0, r1 = rows.argmax(axis=1), h - 1 - rows[:, ::-1].argmax(axis=1)
    c0, c1 = cols.argmax(axis=1), w - 1 - cols[:, ::-1].argmax(axis=1)
    longest = np.maximum(r1 - r0 + 1, c1 - c0 + 1)
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    in_box = (longest == DIGIT_BOX) & ~blank
    if in_box.any():
        out[in_box] = _shift_to_centre(g[in_box])
    for i in np.flatnonzero(~in_box & ~blank):
        out[i] = _centre(_fit_box(g[i, r0[i] : r1[i] + 1, c0[i] : c1[i] + 1]))
    return out


def mnist_v1(grey: np.ndarray) -> np.ndarray:
    """One grey (H, W) image -> (28, 28). Raises ImageError when no ink stands out."""
    g = np.asarray(grey)
    if g.ndim != 2:
        raise ImageError(f"expected a 2-D grey image, got shape {g.shape}")
    out, blank = mnist_v1_batch(g[None])
    if blank[0]:
        raise ImageError("blank image: no digit stands out from the background")
    return out[0]


def _fit_box(digit: np.ndarray) -> np.ndarray:
    """Scale so the longer side is DIGIT_BOX pixels, keeping the aspect ratio (anti-aliased)."""
    h, w = digit.shape
    scale = DIGIT_BOX / max(h, w)
    out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
    # Box filter when shrinking averages every source pixel (the anti-aliasing MNIST used);
    # bilinear when growing keeps strokes smooth instead of blocky.
    box = scale < 1
    out = _resample_matrix(h, out_h, box) @ digit.astype(np.float64) @ _resample_matrix(w, out_w, box).T
    return np.clip(out, 0.0, 255.0).astype(np.float32)


def _resample_matrix(n_in: int, n_out: int, box: bool) -> np.ndarray:
    """(n_out, n_in) weights of an anti-aliased resize along one axis: Pillow's algorithm (the
    filter widened by the shrink factor, weights normalised per output pixel), written out so the
    JavaScript port in cnn_edge/web/preprocess.js computes the same numbers."""
    scale = n_in / n_out
    filter_scale = max(scale, 1.0)
    support = (0.5 if box else 1.0) * filter_scale
    centres = (np.arange(n_out) + 0.5) * scale
    lo = np.maximum(np.trunc(centres - support + 0.5), 0)
    hi = np.minimum(np.trunc(centres + support + 0.5), n_in)
    src = np.arange(n_in)[None, :]
    x = (src - centres[:, None] + 0.5) / filter_scale
    weights = ((x > -0.5) & (x <= 0.5)).astype(np.float64) if box else np.maximum(1.0 - np.abs(x), 0.0)
    weights *= (src >= lo[:, None]) & (src < hi[:, None])
    total = weights.sum(axis=1, keepdims=True)
    return weights / np.where(total == 0, 1.0, total)


def _offsets(digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer (dy, dx) per image that move its centre of mass to CENTRE_OF_MASS."""
    _, h, w = digits.shape
    total = digits.sum(axis=(1, 2), dtype=np.float64)
    cy = digits.sum(axis=2, dtype=np.float64) @ np.arange(h, dtype=np.float64) / total
    cx = digits.sum(axis=1, dtype=np.float64) @ np.arange(w, dtype=np.float64) / total
    shift = CENTRE_OF_MASS + 0.5 + ROUND_NUDGE
    return np.floor(shift - cy).astype(int), np.floor(shift - cx).astype(int)


def _shift_to_centre(digits: np.ndarray) -> np.ndarray:
    """(M, H, W) images whose ink already fits the 20-pixel box -> (M, 28, 28), each shifted so its
    centre of mass sits at CENTRE_OF_MASS (what is shifted out of the field is cut): the images go
    on a zero margin of a field's width, and each one's 28x28 window is taken in one gather."""
    m, h, w = digits.shape
    dy, dx = _offsets(digits)
    # A centre of mass lies inside the image, so dy is in (14.5 - h, 14.5]: every window fits the margin.
    padded = np.zeros((m, h + 2 * IMAGE_SIZE, w + 2 * IMAGE_SIZE), np.float32)
    padded[:, IMAGE_SIZE : IMAGE_SIZE + h, IMAGE_SIZE : IMAGE_SIZE + w] = digits
    windows = np.lib.stride_tricks.sliding_window_view(padded, (IMAGE_SIZE, IMAGE_SIZE), axis=(1, 2))
    return windows[np.arange(m), IMAGE_SIZE - dy, IMAGE_SIZE - dx]


def _centre(digit: np.ndarray) -> np.ndarray:
    """Place one cropped, rescaled digit in a 28x28 field with its centre of mass at CENTRE_OF_MASS."""
    h, w = digit.shape
    dy, dx = _offsets(digit[None])
    top, left = int(dy[0]), int(dx[0])
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    # Clip the paste to the field: a digit whose mass is far off its box centre may overhang.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, IMAGE_SIZE), min(left + w, IMAGE_SIZE)
    out[y0:y1, x0:x1] = digit[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


# mnist-v2 leaves a picture this small (its longer side, in pixels) to mnist-v1: it is a crop of
# one digit (MNIST's own are 28), with no room for a desk around it, and at its scale a stroke is
# 2 or 3 pixels wide: too thin for the finder's shape tests.
SMALL_PICTURE = 64


def preprocess_batch(greys: np.ndarray, version: str = PREPROCESSING_V1) -> tuple[np.ndarray, list[str]]:
    """(N, H, W) grey 0..255 -> ((N, 28, 28) float32 model inputs, zeros where there is none; the
    error of each: '' when fine), by preprocessing `version` (core.contract.PREPROCESSINGS).

    mnist-v1 for every picture; mnist-v2 then asks runtime/finder.py about each picture larger
    than SMALL_PICTURE: mnist-v1's result stands where it sees the one digit and nothing else,
    the digit found in the clutter replaces it otherwise, and a picture with no single digit gets
    the reason (NO_DIGIT, NO_SINGLE_DIGIT) as its error."""
    if version not in PREPROCESSINGS:
        raise ConfigError(f"unknown preprocessing {version!r}; this cnn-edge knows {', '.join(PREPROCESSINGS)}")
    g, blank, dark_ink = _v1_ink(greys)
    errors = [BLANK if b else "" for b in blank.tolist()]
    if version == PREPROCESSING_V1 or max(g.shape[1:]) <= SMALL_PICTURE:
        return _v1_place(g, blank), errors
    out = np.zeros((len(g), IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for i in range(len(g)):
        found = find_digit(greys[i], None if blank[i] else g[i], bool(dark_ink[i]))
        if found.whole:
            out[i] = _v1_place(g[i : i + 1], blank[i : i + 1])[0]
        elif found.ink is None:
            errors[i] = found.reason
        else:
            out[i] = mnist_v1(found.ink)  # the crop's frame is paper: never blank
            errors[i] = ""
    return out, errors


def mnist_v2(grey: np.ndarray) -> np.ndarray:
    """One grey (H, W) image -> (28, 28) by mnist-v2. Raises NoDigitError when it finds no single
    digit, ImageError when no ink stands out."""
    g = np.asarray(grey)
    if g.ndim != 2:
        raise ImageError(f"expected a 2-D grey image, got shape {g.shape}")
    return _one(g, PREPROCESSING_V2)


def is_no_digit(error: str) -> bool:
    """Whether a row's error is mnist-v2's: no single digit found (NoDigitError)."""
    return error.startswith((NO_DIGIT, NO_SINGLE_DIGIT))


def preprocess(source: Source, max_pixels: int = DEFAULT_MAX_PIXELS, *,
               max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, version: str = PREPROCESSING_V1) -> np.ndarray:
    """One path, PIL image or numpy array -> the model's (28, 28) float32 input, by preprocessing
    `version` (mnist-v1 unless told). Raises ImageError (NoDigitError: mnist-v2 found no single digit)."""
    grey = to_grey_any(source, max_pixels, max_file_bytes=max_file_bytes)
    return mnist_v1(grey) if version == PREPROCESSING_V1 else _one(grey, version)


def _one(grey: np.ndarray, version: str) -> np.ndarray:
    out, errors = preprocess_batch(grey[None], version)
    if errors[0]:
        raise (NoDigitError if is_no_digit(errors[0]) else ImageError)(errors[0])
    return out[0]


# Images up to this many pixels are stacked by size and preprocessed together; bigger ones go one
# at a time, so a chunk of photos never becomes one huge array.
STACK_MAX_PIXELS = 64 * 64


def preprocess_many(sources: Sequence[Source], max_pixels: int = DEFAULT_MAX_PIXELS, *,
                    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
                    version: str = PREPROCESSING_V1) -> tuple[np.ndarray, list[str]]:
    """Many images -> ((N, 28, 28) float32 with zeros where one failed, the error of each: '' when
    fine), by preprocessing `version` (preprocess_batch).

    Never raises for a bad image: whatever goes wrong with one becomes its error. Decoding is per
    image; small images are stacked by size and preprocessed together, a larger one is
    preprocessed at once and let go, so at most one large decoded image is held at a time."""
    out = np.zeros((len(sources), IMAGE_SIZE, IMAGE_SIZE), np.float32)
    errors = [""] * len(sources)
    groups: dict[tuple[int, int], list[int]] = {}
    greys: dict[int, np.ndarray] = {}

    def finish(members: list[int], stack: np.ndarray) -> None:
        digits, stack_errors = preprocess_batch(stack, version)
        out[members] = digits
        for i, error in zip(members, stack_errors):
            errors[i] = error

    for i, source in enumerate(sources):
        try:
            # A file's grey pixels may stay uint8 (the fast path): the stack becomes float32 once.
            if isinstance(source, (str, Path)):
                grey = grey_pixels(source, max_pixels, max_file_bytes=max_file_bytes)
            else:
                grey = to_grey_any(source, max_pixels, max_file_bytes=max_file_bytes)
            if grey.size > STACK_MAX_PIXELS:
                finish([i], grey[None])
                continue
        except ImageError as exc:
            errors[i] = str(exc)
            continue
        except Exception as exc:  # a decoder's or numpy's surprise is this image's error, not the run's
            errors[i] = f"cannot read: {exc.__class__.__name__}: {first_line(exc, 160)}"
            continue
        greys[i] = grey
        groups.setdefault(grey.shape, []).append(i)
    for members in groups.values():
        finish(members, np.stack([greys[i] for i in members]))
    return out, errors
