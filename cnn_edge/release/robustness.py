"""Robustness: a model scored on MNIST test digits changed the way real ones differ from MNIST's.

Each transform takes the test images (N, 28, 28) uint8 and returns new ones of the same shape and
type: turned, moved, scaled, strokes thickened or thinned, blurred, noisy. They are fed to the
model as they are (no preprocessing: `predict`'s re-centres and rescales a picture, so shift and
scale here measure the network's own tolerance of a digit its preprocessing placed badly).
Deterministic: the same images and seed give the same bytes (a transform that draws, draws from
its own generator seeded by (seed, its position in TRANSFORMS)). numpy only: `validate
--robustness` needs no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..core.constants import IMAGE_SIZE
from .calibrate import ECE_BINS, expected_calibration_error, softmax

ROBUSTNESS_SEED = 24
ROTATION_DEGREES = 15.0
SHIFT_PIXELS = 3
SCALES = (0.8, 1.2)
BLUR_SIGMA = 1.0  # pixels
NOISE_SIGMA = 25.0  # grey levels of 255
_CENTRE = (IMAGE_SIZE - 1) / 2  # 13.5: the middle of the 28x28 grid, between pixel centres 13 and 14


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _affine(images: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Bilinear resampling through a fixed affine map about the centre: output pixel p reads the
    input at centre + inverse @ (p - centre) (x, y), zero outside. One map for every image, so it
    is four gathers of (N, 784)."""
    n = len(images)
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64)
    d = np.stack([xs.ravel() - _CENTRE, ys.ravel() - _CENTRE])  # (2, 784): x, y from the centre
    sx, sy = inverse @ d + _CENTRE
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    flat = images.reshape(n, -1).astype(np.float32)
    out = np.zeros_like(flat)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        x, y = x0 + dx, y0 + dy
        inside = (x >= 0) & (x < IMAGE_SIZE) & (y >= 0) & (y < IMAGE_SIZE)
        index = np.where(inside, y * IMAGE_SIZE + x, 0)
        out += flat[:, index] * np.where(inside, w, 0).astype(np.float32)
    return _to_uint8(out).reshape(images.shape)


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    """Turned by `degrees` about the centre, anticlockwise as seen (rows run down the screen)."""
    a = math.radians(degrees)
    # Seen on screen (y down), an anticlockwise turn maps d to [[cos, sin], [-sin, cos]] d; the
    # resampling needs the inverse, its transpose.
    return _affine(images, np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]))


def scale(images: np.ndarray, factor: float) -> np.ndarray:
    """Enlarged (factor > 1) or shrunk about the centre."""
    return _affine(images, np.eye(2) / factor)


def shift(images: np.ndarray, rng: np.random.Generator, pixels: int = SHIFT_PIXELS) -> np.ndarray:
    """Each image moved `pixels` up, down, left or right (drawn per image), zeros coming in."""
    out = np.zeros_like(images)
    direction = rng.integers(0, 4, len(images))
    p = pixels
    for k, (dst, src) in enumerate((((slice(None), slice(p, None)), (slice(None), slice(None, -p))),  # right
                                    ((slice(None), slice(None, -p)), (slice(None), slice(p, None))),  # left
                                    ((slice(p, None), slice(None)), (slice(None, -p), slice(None))),  # down
                                    ((slice(None, -p), slice(None)), (slice(p, None), slice(None))))):  # up
        chosen = direction == k
        out[(chosen, *dst)] = images[(chosen, *src)]
    return out


def _neighbourhood(images: np.ndarray, reduce: Callable, size: int) -> np.ndarray:
    """`reduce` (np.maximum or np.minimum) over each pixel's size x size neighbourhood (3: centred;
    2: the pixel, its right, lower and lower-right neighbours), zeros outside."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    out = images.copy()
    for dy in range(3 - size, 3):
        for dx in range(3 - size, 3):
            if size == 3 or (dy, dx) != (0, 0):
                out = reduce(out, padded[:, dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE])
    return out


def thicken(images: np.ndarray) -> np.ndarray:
    """Grey dilation, 3x3: every stroke a pixel wider on each side (a marker pen)."""
    return _neighbourhood(images, np.maximum, 3)


def thin(images: np.ndarray) -> np.ndarray:
    """Grey erosion, 2x2: every stroke a pixel narrower (a fine pen). Not 3x3: MNIST's strokes are
    2 to 3 px wide, and a 3x3 erosion erases them rather than thinning them (docs/export-validation.md)."""
    return _neighbourhood(images, np.minimum, 2)


def blur(images: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Gaussian blur (separable, radius 3 sigma, zeros outside)."""
    r = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    x = np.pad(images.astype(np.float32), ((0, 0), (r, r), (r, r)))
    rows = sum(w * x[:, :, i : i + IMAGE_SIZE] for i, w in enumerate(k))  # along each row: (N, 28 + 2r, 28)
    return _to_uint8(sum(w * rows[:, i : i + IMAGE_SIZE, :] for i, w in enumerate(k)))


def noise(images: np.ndarray, rng: np.random.Generator, sigma: float = NOISE_SIGMA) -> np.ndarray:
    """Gaussian noise added to every pixel, background too (a scanner's, a camera's)."""
    return _to_uint8(images.astype(np.float32) + rng.normal(0, sigma, images.shape).astype(np.float32))


@dataclass(frozen=True)
class Transform:
    name: str
    what: str
    apply: Callable[[np.ndarray, np.random.Generator], np.ndarray] = field(repr=False, compare=False)


TRANSFORMS: tuple[Transform, ...] = (
    Transform("none", "the test digits as they are", lambda x, rng: x),
    Transform("rotate-15", f"turned {ROTATION_DEGREES:g} degrees clockwise", lambda x, rng: rotate(x, -ROTATION_DEGREES)),
    Transform("rotate+15", f"turned {ROTATION_DEGREES:g} degrees anticlockwise", lambda x, rng: rotate(x, ROTATION_DEGREES)),
    Transform("shift3", f"moved {SHIFT_PIXELS} px up, down, left or right (drawn per digit)", lambda x, rng: shift(x, rng)),
    Transform("scale0.8", f"shrunk to {SCALES[0]:g}x about the centre", lambda x, rng: scale(x, SCALES[0])),
    Transform("scale1.2", f"enlarged to {SCALES[1]:g}x about the centre", lambda x, rng: scale(x, SCALES[1])),
    Transform("thick", "strokes thickened: grey dilation, 3x3", lambda x, rng: thicken(x)),
    Transform("thin", "strokes thinned: grey erosion, 2x2", lambda x, rng: thin(x)),
    Transform("blur", f"Gaussian blur, sigma {BLUR_SIGMA:g} px", lambda x, rng: blur(x)),
    Transform("noise", f"Gaussian noise, sigma {NOISE_SIGMA:g} grey levels", lambda x, rng: noise(x, rng)),
)


def transformed(images: np.ndarray, seed: int = ROBUSTNESS_SEED) -> dict[str, np.ndarray]:
    """Every transform's images, by name, in TRANSFORMS order."""
    return {t.name: t.apply(images, np.random.default_rng([seed, i])) for i, t in enumerate(TRANSFORMS)}


@dataclass
class TransformScore:
    transform: str
    what: str
    accuracy: float
    ece: float  # the model's own probabilities
    mean_confidence: float
    ece_uncalibrated: float | None  # its temperature undone; None: the model has none


@dataclass
class RobustnessReport:
    seed: int
    samples: int  # test images, each transformed by every transform
    bins: int  # ECE's confidence bins
    temperature: float | None  # the model's (metadata); None: not calibrated
    transforms: list[TransformScore]

    def weakest(self, n: int = 3) -> list[TransformScore]:
        """The `n` transforms with the lowest accuracy (the untransformed digits left out)."""
        return sorted((t for t in self.transforms if t.transform != "none"), key=lambda t: t.accuracy)[:n]


def score_robustness(run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], images: np.ndarray,
                     labels: np.ndarray, temperature: float | None, seed: int = ROBUSTNESS_SEED) -> RobustnessReport:
    """Accuracy and calibration of a model (`run`: images -> (probabilities, logits)) on every
    transform of the labelled images; `temperature`: the model's, undone for ece_uncalibrated."""
    scores = []
    for t, (name, x) in zip(TRANSFORMS, transformed(images, seed).items()):
        probs, logits = run(x)
        uncal = None if temperature is None else expected_calibration_error(softmax(logits, 1 / temperature), labels)
        scores.append(TransformScore(name, t.what, float((probs.argmax(1) == labels).mean()),
                                     expected_calibration_error(probs, labels),
                                     float(np.asarray(probs, np.float64).max(1).mean()), uncal))
    return RobustnessReport(seed, len(labels), ECE_BINS, temperature, scores)
