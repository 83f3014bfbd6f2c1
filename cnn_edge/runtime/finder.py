"""Find the one digit in a cluttered picture (preprocessing mnist-v2). Torch-free.

A photo of a sheet on a desk holds more than the digit: the desk and the sheet's edges, ruled
lines, other marks, a coin or a pen, shadows. mnist-v1 crops to the bounding box of all the ink it
sees, and that box is then the desk, a shadow or everything at once. `find_digit` looks for the
digit itself:

    grey -> rounded once to integers
         -> ink: at most 65 % of the mean of the window around it, and darker than that mean by
            24 grey levels or more (adaptive: a shadow or uneven light moves paper and ink together)
         -> connected components (8-neighbour), each described by integers: area, box, first and
            second moments
         -> candidates: not touching the picture's edge (the desk, the sheet's edge, what the frame
            cuts), long enough, not a straight bar (a ruled line, an underline, a pen), not solid
            (a coin, an eraser), at most twice as wide as tall, lying on paper (a stroke has paper
            on both sides; the desk along the sheet's edge has dark ground on one)
         -> the digit is the longest candidate, with the marks close to it (a 5's bar, a stroke the
            pen skipped); when another candidate is almost as long, or none is left, there is no
            single digit, and the reason says so (the row's error)
         -> the digit's ink (how much darker than its window's mean) on black, cropped around it:
            what mnist-v1 then normalises

When what mnist-v1 sees is that digit and nothing else (_sees), or, where no single digit is found,
one mark of the ink found here (_one_mark: a thick MNIST digit is solid, a tight crop touches the
edge), mnist-v1's result stands: MNIST-like pictures keep exactly mnist-v1's pixels.

The ink is looked for as dark ink on light paper (the photos this is for); as light ink on a dark
ground (a dark-mode screen, MNIST itself) only where mnist-v1 took the ground to be dark and most of
the picture is dark.

Every decision is made on integers (the grey rounded once, window sums, counts, moments) or on
double-precision formulas of them written the same way in the JavaScript port
(cnn_edge/web/preprocess.js), so both languages find the same digit in the same picture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The grey is rounded once for every decision: floor(grey + GREY_OFFSET). A grey computed from 8-bit
# RGB is a multiple of 0.001 (ITU-R 601 luma), so no true grey lies within 0.0005 of a rounding
# edge, and float32 (Python) and float64 (JavaScript) lumas, 1e-5 apart, round alike.
GREY_OFFSET = 0.0005
# Ink: at most INK_PERCENT % of the mean of the window around it, and darker than it by at least
# CONTRAST grey levels (a dark desk's grain is relatively dark, but by little). Light blue or grey
# ruled lines (70-90 %) and a soft shadow's edge (about 70 %) stay paper.
INK_PERCENT = 65
CONTRAST = 24
# The window: (2R + 1) pixels square, R = the picture's shorter side / WINDOW_DIVISOR, at least MIN_RADIUS.
WINDOW_DIVISOR = 16
MIN_RADIUS = 7
# A candidate digit: its box's longer side at least MIN_SIZE of the picture's shorter side (and
# MIN_PIXELS); not a straight bar: a mark LINE_RATIO times longer than thick (its length along its
# main axis, sqrt(12 * variance), over its thickness, area / length) and no wider across than
# STRAIGHT thicknesses; not solid: no square of SOLID times its longer side is all ink; its box at
# most MAX_ASPECT times wider than tall (MNIST's widest digits are 2.0 times).
MIN_SIZE = 0.06
MIN_PIXELS = 8
LINE_RATIO = 14.0
STRAIGHT = 2.0
SOLID = 0.3
MAX_ASPECT = 2.0
# ... and on paper: of the pixels around it, at most DARK_AROUND % darker than DARK_PERCENT % of
# the paper there (see on_paper).
DARK_PERCENT = 75
DARK_AROUND = 40
AROUND = 3
# Parts of one digit (a 5's bar, a stroke the pen skipped): marks whose pixels come within
# MERGE_REACH of its longer side of it, and that leave that side at most MERGE_GROWTH times what it was.
MERGE_REACH = 0.25
MERGE_GROWTH = 2.0
# Another candidate at least this long (relative to the digit's longer side) makes the picture
# ambiguous: no single digit.
RIVAL = 0.75
# mnist-v1's ink is one mark when its components join once each is grown by ONE_MARK_REACH of the
# largest one's longer side (every MNIST test digit's do at 0.22; components smaller than SPECK
# pixels do not count), the largest is not a straight bar, their box is at most ONE_MARK_ASPECT
# times wider than tall, and at most UNSEEN of its ink (by mass) lies farther than CROP_MARGIN of
# that side from the ink found here. Over the 10,000 MNIST test digits: at most 2.0 times wider
# than tall, at most 5.1 % of the ink unseen (faint specks of the digit's own).
ONE_MARK_REACH = 0.25
SPECK = 4
ONE_MARK_ASPECT = 2.2
UNSEEN = 0.06
# The crop around the digit: this much of its longer side on each side (at least 2 pixels), its ink
# taken one pixel beyond its mask (the anti-aliased edge of a stroke).
CROP_MARGIN = 0.1

# The reasons a picture has no single digit, the start of its row's error. BLANK is mnist-v1's too.
BLANK = "blank image: no digit stands out from the background"
NO_DIGIT = "no digit found"
NO_SINGLE_DIGIT = "no single digit found"


@dataclass(frozen=True)
class Found:
    """What find_digit saw: mnist-v1's result stands (`whole`), or the digit's ink on black, cropped,
    or the reason there is no single digit (the row's error)."""

    whole: bool  # mnist-v1 sees one digit-like mark and nothing else: its result stands
    ink: np.ndarray | None = None  # (h, w) float64: 0 = paper, larger = darker than its window's mean
    box: tuple[int, int, int, int] | None = None  # where `ink` was cut: y0, x0, y1, x1 (exclusive)
    reason: str = ""  # '' unless there is no single digit


def integer_grey(grey: np.ndarray) -> np.ndarray:
    """(H, W) grey 0..255 -> int64, rounded once by the rule both languages share (GREY_OFFSET)."""
    return np.floor(np.asarray(grey, np.float64) + GREY_OFFSET).astype(np.int64)


def upper_median(values: np.ndarray) -> int:
    """Element n // 2 of the sorted values."""
    flat = values.ravel()
    k = flat.size // 2
    return int(np.partition(flat, k)[k])


def window_sums(q: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum, count) of q over the (2r + 1)-square window around each pixel, cut by the picture's
    edge; exact integers (running sums down the columns, then along the rows)."""
    h, w = q.shape
    dtype = np.int32 if q.dtype == np.bool_ else np.int64  # a mask's counts fit in 32 bits
    down = np.zeros((h + 1, w), dtype)
    np.cumsum(q, axis=0, dtype=dtype, out=down[1:])
    y1, y0 = np.minimum(np.arange(h) + radius + 1, h), np.maximum(np.arange(h) - radius, 0)
    across = np.zeros((h, w + 1), dtype)
    np.cumsum(down[y1] - down[y0], axis=1, out=across[:, 1:])
    x1, x0 = np.minimum(np.arange(w) + radius + 1, w), np.maximum(np.arange(w) - radius, 0)
    total = across[:, x1] - across[:, x0]
    count = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    return total, count


@dataclass
class Components:
    """The 8-connected components of a mask, numbered 1..n in the raster order of their first pixel."""

    labels: np.ndarray  # (H, W) int32, 0 off the mask
    n: int
    area: np.ndarray  # (n + 1,) int64; index 0 unused
    y0: np.ndarray
    x0: np.ndarray
    y1: np.ndarray  # exclusive
    x1: np.ndarray  # exclusive


def components(mask: np.ndarray) -> Components:
    """Label a mask's 8-connected components through its horizontal runs: runs of neighbouring
    rows that touch (diagonally too) are joined by union-find, each component named by its first run."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)  # +1 where a run starts, -1 just past its end
    row, start = np.nonzero(edges == 1)  # row-major: runs in raster order
    _, end = np.nonzero(edges == -1)
    n_runs = len(row)
    parent = np.arange(n_runs)
    if n_runs:
        # Runs of the row above that touch run b: those ending at or after b's start - 1 and
        # starting at or before b's end (exclusive ends: a.end >= b.start, a.start <= b.end).
        stride = w + 2
        end_keys, start_keys = row * stride + end, row * stride + start
        lo = np.searchsorted(end_keys, (row - 1) * stride + start, side="left")
        hi = np.searchsorted(start_keys, (row - 1) * stride + end, side="right")
        count = np.maximum(hi - lo, 0)
        b = np.repeat(np.arange(n_runs), count)
        a = np.repeat(lo, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
        while len(a):  # hook each pair's roots on the smaller, then jump to roots, until joined
            low = np.minimum(parent[a], parent[b])
            np.minimum.at(parent, parent[a], low)
            np.minimum.at(parent, parent[b], low)
            while True:
                jumped = parent[parent]
                if np.array_equal(jumped, parent):
                    break
                parent = jumped
            if np.array_equal(parent[a], parent[b]):
                break
    roots, run_label = np.unique(parent, return_inverse=True)  # the root is the component's first run
    run_label = run_label.astype(np.int32) + 1
    n = len(roots)
    length = end - start
    labels = np.zeros(h * w, np.int32)
    first = row * w + start
    pixels = np.repeat(first - np.cumsum(length) + length, length) + np.arange(length.sum())
    labels[pixels] = np.repeat(run_label, length)
    area = np.bincount(run_label, weights=length, minlength=n + 1).astype(np.int64)
    y0 = np.full(n + 1, h, np.int64)
    x0 = np.full(n + 1, w, np.int64)
    y1 = np.zeros(n + 1, np.int64)
    x1 = np.zeros(n + 1, np.int64)
    np.minimum.at(y0, run_label, row)
    np.maximum.at(y1, run_label, row + 1)
    np.minimum.at(x0, run_label, start)
    np.maximum.at(x1, run_label, end)
    return Components(labels.reshape(h, w), n, area, y0, x0, y1, x1)


@dataclass(frozen=True)
class Shape:
    """One component, by the integers that describe it and the figures made of them."""

    label: int
    area: int
    box: tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive)
    length: float  # sqrt(12 * the variance along the main axis): a straight bar's length
    breadth: float  # sqrt(12 * the variance across it): a straight bar's width

    @property
    def longer(self) -> int:
        """The box's longer side."""
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def thickness(self) -> float:
        """area / length: a straight bar's width."""
        return self.area / max(self.length, 1.0)

    def touches(self, h: int, w: int) -> bool:
        y0, x0, y1, x1 = self.box
        return y0 == 0 or x0 == 0 or y1 == h or x1 == w


def shapes(c: Components, wanted) -> list[Shape]:
    """Shapes of the components whose labels are in `wanted` (in that order), from exact integer sums."""
    wanted = [int(k) for k in wanted]
    if not wanted:
        return []
    h, w = c.labels.shape
    flat = c.labels.ravel()
    idx = np.flatnonzero(np.isin(flat, wanted))
    ys, xs, ls = idx // w, idx % w, flat[idx]
    n1 = c.n + 1
    sy, sx, syy, sxx, sxy = (_int_sums(ls, v, n1) for v in (ys, xs, ys * ys, xs * xs, ys * xs))
    out = []
    for k in wanted:
        area = int(c.area[k])
        box = (int(c.y0[k]), int(c.x0[k]), int(c.y1[k]), int(c.x1[k]))
        out.append(Shape(k, area, box, *_axes(area, int(sy[k]), int(sx[k]), int(syy[k]), int(sxx[k]), int(sxy[k]))))
    return out


def _int_sums(labels: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-label sums of integer values. Exact: bincount adds in float64, and every partial sum is
    an integer below 2**53 (pixels x longer side**2: 40 Mpixels, the --max-pixels default, of
    sides up to 15,000)."""
    return np.bincount(labels, weights=values, minlength=n).astype(np.int64)


def _axes(n: int, sy: int, sx: int, syy: int, sxx: int, sxy: int) -> tuple[float, float]:
    """sqrt(12 * each eigenvalue of the pixels' covariance), the larger first: a uniform bar's
    length and width. Scalar double arithmetic, step for step as in JavaScript."""
    my, mx = sy / n, sx / n
    vyy = syy / n - my * my
    vxx = sxx / n - mx * mx
    vxy = sxy / n - my * mx
    half = (vyy - vxx) / 2.0
    mean = (vyy + vxx) / 2.0
    root = math.sqrt(half * half + vxy * vxy)
    return math.sqrt(12.0 * max(mean + root, 0.0)), math.sqrt(12.0 * max(mean - root, 0.0))


def is_line(s: Shape) -> bool:
    """A straight bar: LINE_RATIO times longer than thick, and no wider across than STRAIGHT
    thicknesses (a ruled line, an underline, a pen, the edge of the sheet)."""
    t = s.thickness
    return s.length > LINE_RATIO * t and s.breadth <= STRAIGHT * t


def is_solid(c: Components, s: Shape) -> bool:
    """Whether a square of SOLID times the longer side (at least 3 pixels) is all ink of this
    component: a coin, an eraser; a digit's strokes are thinner."""
    r = max(1, math.ceil((SOLID * s.longer - 1) / 2))  # the square's side: 2r + 1
    y0, x0, y1, x1 = s.box
    total, _ = window_sums(c.labels[y0:y1, x0:x1] == s.label, r)
    return bool((total == (2 * r + 1) ** 2).any())


def on_paper(c: Components, s: Shape, q: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the mark lies on paper: its mean is at most INK_PERCENT % of the upper quartile of
    the pixels around it (AROUND pixels out, ink and the pixel next to any ink left out: the paper
    there), and at most DARK_AROUND % of those are darker than DARK_PERCENT % of it. A stroke has
    paper on both sides; the desk along the sheet's edge, a coin's rim, a pen's shadow have dark
    ground on one."""
    h, w = q.shape
    y0, x0 = max(s.box[0] - AROUND, 0), max(s.box[1] - AROUND, 0)
    y1, x1 = min(s.box[2] + AROUND, h), min(s.box[3] + AROUND, w)
    ring = _dilate(c.labels[y0:y1, x0:x1] == s.label, AROUND) & ~_dilate(mask[y0:y1, x0:x1], 1)
    around = q[y0:y1, x0:x1][ring]
    if around.size == 0:
        return False
    k = (3 * around.size) // 4
    paper = int(np.partition(around, k)[k])
    own = c.labels[y0:y1, x0:x1] == s.label
    if 100 * int(q[y0:y1, x0:x1][own].sum()) > INK_PERCENT * paper * s.area:
        return False  # the mark is not ink on that paper (the dark ground around a light digit)
    dark = int((100 * around < DARK_PERCENT * paper).sum())
    return 100 * dark <= DARK_AROUND * around.size


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """The mask grown by r pixels in every direction (a (2r + 1)-square), exactly."""
    total, _ = window_sums(mask.astype(bool, copy=False), r)
    return total > 0


def ink_mask(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask of dark ink, window sums, window counts) of an integer grey picture (H, W)."""
    h, w = q.shape
    radius = max(MIN_RADIUS, round(min(h, w) / WINDOW_DIVISOR))
    total, count = window_sums(q, radius)
    mask = (100 * q * count < INK_PERCENT * total) & (total - count * q >= CONTRAST * count)
    return mask, total, count


def find_digit(grey: np.ndarray, v1_ink: np.ndarray | None = None, v1_dark_ink: bool = True) -> Found:
    """The one digit of a grey picture (H, W) 0..255, or the reason there is none.

    `v1_ink`: (H, W) mnist-v1's ink (0 where it keeps none; None when it keeps none at all), and
    `v1_dark_ink` whether it took the ink to be dark. The digit is looked for as dark ink on light
    paper (the photos this is for), and as light ink on a dark ground only where mnist-v1 took the
    ink to be light and most of the picture is dark: mnist-v1's result stands when that light
    digit is what it saw, and the light digit is the answer when no dark mark is digit-like.
    Found.whole says that mnist-v1 already sees the digit and nothing else: the digit found here
    in its polarity, all of its ink near that digit (_sees); or, when no single digit is found,
    its ink is one mark of the ink found here (_one_mark: a thick MNIST digit is solid, a tight
    crop touches the edge)."""
    q = integer_grey(grey)
    # Light ink is looked for only where mnist-v1 took the ground to be dark (its frame) and so is
    # most of the picture (its median): MNIST, a dark-mode screen; a dark desk around a sheet is
    # the frame, rarely most of the picture.
    lit = v1_ink is not None and not v1_dark_ink and upper_median(q) <= 127
    if lit:  # mnist-v1 saw light ink: its result stands if the digit found as light ink is what it saw
        light_mask, light_total, light_count = ink_mask(255 - q)
        light, light_members, c = _search(255 - q, light_mask, light_total, light_count)
        if light.ink is not None and _sees(v1_ink, c, light_members):
            return Found(True)
    mask, total, count = ink_mask(q)
    found, members, c = _search(q, mask, total, count)
    if found.ink is not None:  # a dark digit on light paper: what photos hold
        return Found(True) if v1_ink is not None and v1_dark_ink and _sees(v1_ink, c, members) else found
    if v1_ink is not None and v1_dark_ink and _one_mark(v1_ink, mask):
        return Found(True)
    if lit and not found.reason.startswith(NO_SINGLE_DIGIT):  # no dark mark is digit-like
        if _one_mark(v1_ink, light_mask):
            return Found(True)
        if light.ink is not None:
            return light
    return found


def _sees(v1_ink: np.ndarray, c: Components, members: set[int]) -> bool:
    """Whether mnist-v1's ink is the digit's: its box lies within ONE_MARK_REACH of the digit's
    longer side of the digit's box, all but UNSEEN of it (by mass) lies within that reach of the
    digit's pixels, and all but UNSEEN of the digit's pixels lie within CROP_MARGIN of that side
    of mnist-v1's ink."""
    ks = sorted(members)
    y0, x0, y1, x1 = int(c.y0[ks].min()), int(c.x0[ks].min()), int(c.y1[ks].max()), int(c.x1[ks].max())
    longer = max(y1 - y0, x1 - x0)
    reach = math.ceil(ONE_MARK_REACH * longer)
    on = v1_ink > 0
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    if rows[0] < y0 - reach or rows[-1] >= y1 + reach or cols[0] < x0 - reach or cols[-1] >= x1 + reach:
        return False  # mnist-v1's box reaches beyond the digit: it would crop more than the digit
    part = np.isin(c.labels, ks)
    if float(v1_ink[~_dilate(part, reach)].sum(dtype=np.float64)) > UNSEEN * float(v1_ink.sum(dtype=np.float64)):
        return False
    margin = max(2, math.ceil(CROP_MARGIN * longer))
    return int((part & ~_dilate(on, margin)).sum()) <= UNSEEN * int(part.sum())


def _search(q: np.ndarray, mask: np.ndarray, total: np.ndarray, count: np.ndarray) -> tuple[Found, set[int], Components]:
    """The digit among the components of the ink mask of q (dark ink), or why there is none; with
    the digit's component labels and the components."""
    h, w = q.shape
    c = components(mask)
    if c.n == 0:
        return Found(False, reason=BLANK), set(), c
    min_longer = max(MIN_PIXELS, MIN_SIZE * min(h, w))
    longer = np.maximum(c.y1 - c.y0, c.x1 - c.x0)
    inside = (c.y0 > 0) & (c.x0 > 0) & (c.y1 < h) & (c.x1 < w) & (longer >= min_longer)
    inside[0] = False
    found = [s for s in shapes(c, np.flatnonzero(inside))
             if s.box[3] - s.box[1] <= MAX_ASPECT * (s.box[2] - s.box[0]) and not is_line(s) and not is_solid(c, s)
             and on_paper(c, s, q, mask)]
    if not found:
        return Found(False, reason=f"{NO_DIGIT}: no mark in the picture is shaped like a digit"), set(), c
    found.sort(key=lambda s: (-s.longer, s.label))  # the longest first; ties in raster order
    digit = found[0]
    members = _parts(c, digit)
    rivals = [s for s in found[1:] if s.label not in members and s.longer >= RIVAL * digit.longer]
    if rivals:
        r = rivals[0]
        return Found(False, reason=f"{NO_SINGLE_DIGIT}: {1 + len(rivals)} digit-like marks of similar size "
                                   f"(at x={digit.box[1]}, y={digit.box[0]} and x={r.box[1]}, y={r.box[0]})"), members, c
    ink, box = _crop(c, q, total, count, members)
    return Found(False, ink, box), members, c


def _one_mark(v1_ink: np.ndarray, mask: np.ndarray) -> bool:
    """Whether mnist-v1's ink (> 0 where it kept ink) is one digit-like mark of the picture's ink
    (`mask`): see ONE_MARK_REACH. Then mnist-v1 took no shadow, desk or paper for ink, and saw no
    other mark."""
    on = v1_ink > 0
    c = components(on)
    big = np.flatnonzero(c.area >= SPECK)
    big = big[big > 0]
    if len(big) == 0:
        return False
    main = shapes(c, [big[np.argmax(c.area[big])]])[0]
    if len(big) > 1 and components(_dilate(np.isin(c.labels, big), math.ceil(ONE_MARK_REACH * main.longer))).n != 1:
        return False
    if is_line(main):
        return False
    y0, x0, y1, x1 = int(c.y0[big].min()), int(c.x0[big].min()), int(c.y1[big].max()), int(c.x1[big].max())
    if x1 - x0 > ONE_MARK_ASPECT * (y1 - y0):
        return False
    margin = max(2, math.ceil(CROP_MARGIN * main.longer))
    if float(v1_ink[~_dilate(mask, margin)].sum(dtype=np.float64)) > UNSEEN * float(v1_ink.sum(dtype=np.float64)):
        return False  # mnist-v1 took something else for ink: a shadow, the desk, the paper
    return int((mask & ~_dilate(on, margin)).sum()) <= UNSEEN * int(mask.sum())  # ... or missed the digit


def _parts(c: Components, digit: Shape) -> set[int]:
    """The labels of the digit's parts: itself, and the components (not touching the picture's
    edge) whose pixels come within MERGE_REACH of its longer side of its own, taken in label order
    as long as the box of all of them stays within MERGE_GROWTH of that side."""
    h, w = c.labels.shape
    reach = math.ceil(MERGE_REACH * digit.longer)
    y0, x0, y1, x1 = digit.box
    wy0, wx0, wy1, wx1 = max(y0 - reach, 0), max(x0 - reach, 0), min(y1 + reach, h), min(x1 + reach, w)
    window = c.labels[wy0:wy1, wx0:wx1]
    near = _dilate(window == digit.label, reach) & (window > 0) & (window != digit.label)
    members = {digit.label}
    by, bx, ey, ex = y0, x0, y1, x1
    for k in np.unique(window[near]).tolist():  # in label order: raster order of first pixels
        if c.y0[k] == 0 or c.x0[k] == 0 or c.y1[k] == h or c.x1[k] == w:
            continue
        ny0, nx0 = min(by, int(c.y0[k])), min(bx, int(c.x0[k]))
        ny1, nx1 = max(ey, int(c.y1[k])), max(ex, int(c.x1[k]))
        if max(ny1 - ny0, nx1 - nx0) <= MERGE_GROWTH * digit.longer:
            members.add(k)
            by, bx, ey, ex = ny0, nx0, ny1, nx1
    return members


def _crop(c: Components, q: np.ndarray, total: np.ndarray, count: np.ndarray,
          members: set[int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The digit's ink, how much darker than the mean of its window each pixel is, on its parts
    grown by one pixel (their anti-aliased edges) and zero elsewhere, in its box plus a margin."""
    h, w = q.shape
    ks = sorted(members)
    y0, x0 = int(c.y0[ks].min()), int(c.x0[ks].min())
    y1, x1 = int(c.y1[ks].max()), int(c.x1[ks].max())
    margin = max(2, math.ceil(CROP_MARGIN * max(y1 - y0, x1 - x0)))
    y0, x0, y1, x1 = max(y0 - margin, 0), max(x0 - margin, 0), min(y1 + margin, h), min(x1 + margin, w)
    part = np.isin(c.labels[y0:y1, x0:x1], ks)
    keep = _dilate(part, 1)
    paper = total[y0:y1, x0:x1] / count[y0:y1, x0:x1]
    ink = np.where(keep, np.maximum(paper - q[y0:y1, x0:x1], 0.0), 0.0)
    return ink, (y0, x0, y1, x1)
