"""Flags on classified rows: which answers a person should look at. Torch-free.

A row is flagged, with the reasons joined by '+' in this order (core/flag_rule.py):

    low_confidence   its top-1 probability is below the rule's threshold (--flag-below)
    unlike_mnist     the 28x28 input the model saw is unlike MNIST's digits of the class it was
                     given: one of its stroke statistics (input_features) lies outside the range
                     that class's MNIST training digits span (core/flag_rule.json)

The statistics are integers counted on the input's ink (pixels at the rule's ink level or more),
so Python and JavaScript (cnn_edge/web/flags.js) count the same. Python counts a whole batch at
once, on the field's rows and columns as 32-bit words: about 5 microseconds a row, flag included
(AMD EPYC, one thread, batches of 256 MNIST inputs; per pixel in numpy it took 50).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.flag_rule import FLAG_RULE, LOW_CONFIDENCE, UNLIKE_MNIST, FlagRule


# Bits set in each byte value: the popcount of numpy < 2, which has no bitwise_count.
_BITS = np.array([bin(v).count("1") for v in range(256)], np.uint8)


def _bit_count(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint32 word, same shape."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _BITS[words.view(np.uint8)].reshape(*words.shape, 4).sum(axis=-1)


def _popcount(words: np.ndarray) -> np.ndarray:
    """(N, K) uint32 -> (N,) int64: the set bits of each row of words, summed."""
    return _bit_count(words).sum(axis=-1, dtype=np.int64)


def _field_as_bits(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) bool, H and W at most 30 -> its rows and its columns as bits, (N, H + 2) and
    (N, W + 2) uint32: pixel (i, j) is bit j + 1 of row word i + 1 and bit i + 1 of column word j + 1,
    with a background frame (bit 0, the bits past the field, a zero word first and last)."""
    n, h, w = ink.shape
    x = ink.astype(np.float64)  # sums of distinct powers of two below 2^31: exact in a double
    rows = np.zeros((n, h + 2), np.uint32)
    cols = np.zeros((n, w + 2), np.uint32)
    rows[:, 1:-1] = x @ (2.0 ** np.arange(1, w + 1))
    cols[:, 1:-1] = (2.0 ** np.arange(1, h + 1)) @ x
    return rows, cols


def input_features(pixels: np.ndarray, ink_level: float = FLAG_RULE.ink_level) -> dict[str, np.ndarray]:
    """(N, 28, 28) model inputs (0..255, light ink on black) -> each statistic (N,) int64, by name:

    ink        pixels at ink_level or more
    perimeter  ink/background edges between 4-neighbours, the field's outside counting as background
    euler      8-connected pieces of ink minus the holes in them (Gray's bit quads over the 2x2
               windows: (Q1 - Q3 - 2 QD) / 4, Q1 windows with one ink pixel, Q3 with three, QD with
               two diagonally opposite)
    crossings  the most separate runs of ink along any row or column (a 0 crosses 2, an 8 up to 3)
    solid      the side of the largest square that is all ink (a stroke is 2 or 3 pixels wide)

    Counted on the rows (and columns) of the field as 32-bit words, a few operations per row
    instead of per pixel; cnn_edge/web/flags.js counts the same pixel by pixel, and the tests hold
    the two, and a plain per-pixel reference, to the same integers."""
    ink = np.asarray(pixels) >= ink_level  # (N, H, W)
    rows, cols = _field_as_bits(ink)  # bit j + 1 of rows[i + 1] and bit i + 1 of cols[j + 1]: pixel (i, j)
    above, below = rows[:, :-1], rows[:, 1:]  # each pair of neighbouring rows
    # Edges: bit j against bit j + 1 along a row, row i against row i + 1 down the field.
    perimeter = _popcount(rows ^ (rows >> 1)) + _popcount(above ^ below)
    # The 2x2 window at column j of rows (i, i + 1): corners a b / c d are bit j of these four words.
    a, b, c, d = above, above >> 1, below, below >> 1
    odd = a ^ b ^ c ^ d  # one or three corners
    three = odd & ((a & b) | (c & d) | ((a | b) & (c | d)))  # odd, and at least two
    diagonal = (a & d & ~b & ~c) | (b & c & ~a & ~d)
    q3 = _popcount(three)
    euler = (_popcount(odd) - q3 - q3 - 2 * _popcount(diagonal)) // 4
    # A run starts at bit j where bit j is ink and bit j - 1 is not (the frame's bit 0 never is).
    starts_in_rows = _bit_count(rows & ~(rows << 1))
    starts_in_cols = _bit_count(cols & ~(cols << 1))
    return {"ink": _popcount(rows),
            "perimeter": perimeter,
            "euler": euler,
            "crossings": np.maximum(starts_in_rows.max(axis=1), starts_in_cols.max(axis=1)).astype(np.int64),
            "solid": largest_square(rows)}


def largest_square(rows: np.ndarray) -> np.ndarray:
    """(N, R) uint32 rows of bits -> (N,) int64 the side of the largest all-ink square of each:
    after k - 1 erosions by a 2x2 square (a bit stays where its 2x2 window is all ink), what is
    left marks the corners of k x k squares of ink."""
    best = np.zeros(len(rows), np.int64)
    left = rows
    for k in range(1, rows.shape[1] + 1):
        has = left.any(axis=1)
        if not has.any():
            break
        best[has] = k
        left = left[:, :-1] & (left[:, :-1] >> 1) & left[:, 1:] & (left[:, 1:] >> 1)
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
    low = confidence.astype(np.float64) < below  # in double, as JavaScript compares a float32 score
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
