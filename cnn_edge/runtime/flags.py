"""Flags on classified rows: which answers a person should look at. Torch-free.

A row is flagged, with the reasons joined by '+' in this order (core/flag_rule.py):

    low_confidence   its top-1 probability is below the rule's threshold (--flag-below)
    unlike_mnist     the 28x28 input the model saw is unlike MNIST's digits of the class it was
                     given: one of its stroke statistics (input_features) lies outside the range
                     that class's MNIST training digits span (core/flag_rule.json)

The statistics are integers counted on the input's ink (pixels at INK_LEVEL or more), so Python
and JavaScript (cnn_edge/web/flags.js) count the same; each is one numpy pass over a whole batch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.flag_rule import FLAG_RULE, LOW_CONFIDENCE, UNLIKE_MNIST, FlagRule


def input_features(pixels: np.ndarray, ink_level: float = FLAG_RULE.ink_level) -> dict[str, np.ndarray]:
    """(N, 28, 28) model inputs (0..255, light ink on black) -> each statistic (N,) int64, by name:

    ink        pixels at ink_level or more
    perimeter  ink/background edges between 4-neighbours, the field's outside counting as background
    euler      8-connected pieces of ink minus the holes in them (Gray's bit quads: (Q1 - Q3 - 2 QD) / 4)
    crossings  the most separate runs of ink along any row or column (a 0 crosses 2, an 8 up to 3)
    solid      the side of the largest square that is all ink (a stroke is 2 or 3 pixels wide)
    """
    ink = np.asarray(pixels) >= ink_level  # (N, H, W)
    n = len(ink)
    p = np.zeros((n, ink.shape[1] + 2, ink.shape[2] + 2), bool)  # a background frame around the field
    p[:, 1:-1, 1:-1] = ink
    across, down = p[:, :, 1:] != p[:, :, :-1], p[:, 1:, :] != p[:, :-1, :]
    a, b, c, d = p[:, :-1, :-1], p[:, :-1, 1:], p[:, 1:, :-1], p[:, 1:, 1:]  # each 2x2 window's corners
    quad = a.astype(np.int8) + b + c + d
    diagonal = (a & d & ~b & ~c) | (b & c & ~a & ~d)
    q1, q3 = (quad == 1).sum(axis=(1, 2)), (quad == 3).sum(axis=(1, 2))
    euler = (q1 - q3 - 2 * diagonal.sum(axis=(1, 2))) // 4
    # A run starts where ink follows background; the frame makes a run at the field's edge count.
    runs_in_rows = (p[:, :, 1:] & ~p[:, :, :-1]).sum(axis=2).max(axis=1)
    runs_in_cols = (p[:, 1:, :] & ~p[:, :-1, :]).sum(axis=1).max(axis=1)
    return {"ink": ink.sum(axis=(1, 2)).astype(np.int64),
            "perimeter": (across.sum(axis=(1, 2)) + down.sum(axis=(1, 2))).astype(np.int64),
            "euler": euler.astype(np.int64),
            "crossings": np.maximum(runs_in_rows, runs_in_cols).astype(np.int64),
            "solid": largest_square(ink)}


def largest_square(ink: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N,) int64 the side of the largest all-True square of each, by summed-area
    tables: a k x k window is all ink when its sum is k * k; k grows while any image has one."""
    n, h, w = ink.shape
    table = np.zeros((n, h + 1, w + 1), np.int32)
    table[:, 1:, 1:] = ink.cumsum(axis=1).cumsum(axis=2)
    best = np.zeros(n, np.int64)
    live = np.arange(n)  # images that may hold a larger square
    for k in range(1, min(h, w) + 1):
        t = table[live]
        sums = t[:, k:, k:] - t[:, :-k, k:] - t[:, k:, :-k] + t[:, :-k, :-k]
        has = (sums == k * k).any(axis=(1, 2))
        live = live[has]
        if not len(live):
            break
        best[live] = k
    return best


def unlike_mnist(pixels: np.ndarray, classes: np.ndarray, n_classes: int, rule: FlagRule = FLAG_RULE) -> np.ndarray:
    """(N, 28, 28) inputs and the class each was given (N,) -> (N,) bool: some statistic outside
    that class's MNIST range; a model of another class count than MNIST's is held to the range of
    all classes together."""
    features = input_features(pixels, rule.ink_level)
    out = np.zeros(len(pixels), bool)
    for name in rule.features:
        lo, hi = (np.array(b) for b in rule.bounds(name, n_classes))  # (classes,) each, or (1,)
        idx = classes if len(lo) > 1 else np.zeros_like(classes)
        out |= (features[name] < lo[idx]) | (features[name] > hi[idx])
    return out


def row_flags(pixels: np.ndarray, probabilities: np.ndarray, below: float = FLAG_RULE.low_confidence_below,
              rule: FlagRule = FLAG_RULE) -> list[str]:
    """The flag of each classified row: (M, 28, 28) inputs and their (M, C) probabilities -> M
    strings, '' for a confident, MNIST-like row, else its reasons joined by '+'. `below`: the
    low_confidence threshold (0: never)."""
    if not len(probabilities):
        return []
    classes = np.argmax(probabilities, axis=1)  # the top-1, as runtime.predictor.top_classes ranks (ties: lower index)
    confidence = np.take_along_axis(probabilities, classes[:, None], axis=1)[:, 0]
    low = confidence < below
    unlike = unlike_mnist(pixels, classes, probabilities.shape[1], rule)
    return [join_reasons(lo, un) for lo, un in zip(low.tolist(), unlike.tolist())]


def join_reasons(low: bool, unlike: bool) -> str:
    return "+".join(r for r, on in ((LOW_CONFIDENCE, low), (UNLIKE_MNIST, unlike)) if on)


def batch_flags(pixels: np.ndarray, errors: Sequence[str], probabilities: np.ndarray,
                below: float = FLAG_RULE.low_confidence_below) -> list[str]:
    """Every row's flag in a batch: (N, 28, 28) inputs, each row's error and the (M, C) probabilities
    of the M rows without one (in order, as RowBatch.scored takes them) -> N strings, '' where the
    row failed (an error row keeps its error) or is not flagged. The one flagging step of every
    engine (the local one, its scoring workers, Ray's actors)."""
    flags = [""] * len(errors)
    ok = [i for i, e in enumerate(errors) if not e]
    if ok:
        for i, flag in zip(ok, row_flags(np.asarray(pixels)[ok], probabilities, below)):
            flags[i] = flag
    return flags
