"""Digits in cluttered desk photos: a handwritten digit on a sheet lying on a desk, 640x480.

Each photo takes a held-out MNIST test digit and writes it, dark ink on light paper, on a sheet
that lies slightly rotated on a desk, with what such a photo holds besides: ruled lines (often),
other marks on the sheet (small handwriting, a scribble, an underline, a tick, a printed header),
a second small object (a coin, an eraser, a paperclip or a pen), a shadow across part of the
picture, uneven light, camera blur, sensor noise and JPEG. The sizes and colours were chosen to
look like phone photos of a sheet on a desk (the digit is the largest handwritten mark, as when
someone writes one digit to be read), before any digit finder was written, and are not tuned to
one. Deterministic for a seed; the label travels in the file name (desk_INDEX_LABEL.jpg).

    python scripts/desk_photos.py OUT_DIR --data-dir ../shared/data/mnist --count 300 --seed 1
    python scripts/desk_photos.py OUT_DIR --data-dir ../shared/data/mnist --count 300 --seed 2 --measure

--measure reads every desk photo back with the released models (or those named) under
preprocessing mnist-v1 and mnist-v2 and prints, for each: photos read right, read wrong, wrong at
>= 0.95 confidence, no digit (no single digit found: the row's error) and milliseconds per photo.
What the rows' flag column makes of them: scripts/flag_measure.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

W, H = 640, 480  # the photo
SS = 2  # marks are drawn at twice the size and reduced: anti-aliased edges

DESKS = [(92, 62, 42), (125, 122, 120), (168, 128, 88), (60, 58, 62), (190, 175, 150)]  # dark wood, grey, oak, black, pale laminate
INKS = [(28, 28, 34), (25, 42, 140), (20, 20, 60), (72, 72, 78)]  # black pen, blue pen, navy, pencil
RULES = [(165, 192, 235), (180, 205, 240), (170, 170, 175)]  # light blue rules, grey rules
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


def _coverage(size: tuple[int, int], draw) -> np.ndarray:
    """(h, w) coverage 0..1 of what `draw(ImageDraw, scale)` paints, drawn at SS x and box-reduced."""
    h, w = size
    img = Image.new("L", (w * SS, h * SS), 0)
    draw(ImageDraw.Draw(img), SS)
    return np.asarray(img.reduce(SS), np.float32) / 255.0


def _lay(rgb: np.ndarray, cover: np.ndarray, colour, opacity: float = 1.0) -> None:
    """Paint `colour` over rgb (h, w, 3) where `cover` (h, w) says, in place."""
    a = (cover * opacity)[..., None]
    rgb *= 1 - a
    rgb += a * np.asarray(colour, np.float32)


def _smooth_field(rng, h: int, w: int, cells: int, lo: float, hi: float) -> np.ndarray:
    """A smooth random field (h, w) between lo and hi: a coarse grid of random values, upsampled."""
    grid = rng.uniform(0, 255, (cells, cells + 1)).astype(np.uint8)
    field = np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255.0
    return lo + (hi - lo) * field


def _desk(rng) -> np.ndarray:
    """(H, W, 3) a desk top: a base colour, slow variation and wood grain."""
    base = np.asarray(DESKS[rng.integers(len(DESKS))], np.float32)
    shade = _smooth_field(rng, H, W, 4, 0.85, 1.1)
    angle = rng.uniform(-0.3, 0.3)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    along = y * np.cos(angle) - x * np.sin(angle)
    grain = 1 + 0.06 * np.sin(along / rng.uniform(3, 9) + 2 * _smooth_field(rng, H, W, 6, 0, 3))
    return base * (shade * grain)[..., None]


def _ink_digit(digit: np.ndarray, size: int) -> np.ndarray:
    """A 28x28 MNIST digit as pen coverage 0..1 at size x size: smooth upscale, crisper edges."""
    big = np.asarray(Image.fromarray(digit.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC), np.float32)
    return np.clip((big / 255.0 - 0.25) / 0.5, 0.0, 1.0)


def _free_spot(rng, taken: list, h: int, w: int, box: tuple[int, int, int, int], tries: int = 60):
    """(y, x) of an h x w box inside `box` (y0, x0, y1, x1) that overlaps none of `taken` (with a
    gap); None when none was found."""
    y0, x0, y1, x1 = box
    for _ in range(tries):
        if y1 - h <= y0 or x1 - w <= x0:
            return None
        y, x = int(rng.integers(y0, y1 - h)), int(rng.integers(x0, x1 - w))
        gap = 12
        if all(y + h + gap <= ty or ty + th + gap <= y or x + w + gap <= tx or tx + tw + gap <= x for ty, tx, th, tw in taken):
            return y, x
    return None


def _put(rgb, cover, y, x, colour, opacity=1.0):
    h, w = cover.shape
    _lay(rgb[y : y + h, x : x + w], cover, colour, opacity)


def _scribble(rng, size: int) -> np.ndarray:
    pts = rng.uniform(0.1, 0.9, (int(rng.integers(4, 8)), 2)) * size
    width = int(rng.integers(2, 4))
    return _coverage((size, size), lambda d, s: d.line([tuple(p * s) for p in pts], fill=255, width=width * s, joint="curve"))


def _tick(rng, size: int) -> np.ndarray:
    pts = [(0.1, 0.55), (0.4, 0.9), (0.9, 0.1)]
    width = int(rng.integers(2, 4))
    return _coverage((size, size), lambda d, s: d.line([(a * size * s, b * size * s) for a, b in pts], fill=255,
                                                        width=width * s, joint="curve"))


def _underline(rng, length: int) -> np.ndarray:
    h = 14
    bend = rng.uniform(-4, 4)
    pts = [(2, 7), (length / 2, 7 + bend), (length - 2, 7 + rng.uniform(-3, 3))]
    width = int(rng.integers(2, 4))
    return _coverage((h, length), lambda d, s: d.line([(a * s, b * s) for a, b in pts], fill=255, width=width * s, joint="curve"))


def _printed(rng, text: str, px: int) -> np.ndarray | None:
    fonts = sorted(FONT_DIR.glob("*.ttf"))
    if not fonts:
        return None
    font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), px * SS)
    left, top, right, bottom = font.getbbox(text)
    w, h = (right - left) // SS + 4, (bottom - top) // SS + 4
    return _coverage((h, w), lambda d, s: d.text((2 * s - left, 2 * s - top), text, fill=255, font=font))


HEADERS = ["Name:", "Date:", "Homework", "Notes", "Exercise", "Page", "Class", "Question"]


def _sheet(rng, digits: list[np.ndarray], others: list[np.ndarray]) -> tuple[np.ndarray, list]:
    """The sheet (sh, sw, 3) with its lines, the digits (0, 1 or 2 of them) and other marks."""
    sw = int(rng.integers(int(0.6 * W), int(0.95 * W)))
    sh = int(sw * (1.414 if rng.random() < 0.7 else 0.707))
    paper = np.asarray([rng.uniform(232, 252), rng.uniform(230, 250), rng.uniform(220, 245)], np.float32)
    rgb = np.ones((sh, sw, 3), np.float32) * paper * _smooth_field(rng, sh, sw, 3, 0.97, 1.0)[..., None]
    ink = INKS[rng.integers(len(INKS))]
    if rng.random() < 0.6:  # ruled paper
        spacing, colour = rng.uniform(22, 34), RULES[rng.integers(len(RULES))]
        width = int(rng.integers(1, 3))
        ys = np.arange(rng.uniform(40, 70), sh, spacing)
        _lay(rgb, _coverage((sh, sw), lambda d, s: [d.line([(0, y * s), (sw * s, y * s)], fill=255, width=width * s) for y in ys]),
             colour, rng.uniform(0.6, 1.0))
        if rng.random() < 0.4:  # a margin line
            mx = rng.uniform(0.1, 0.16) * sw
            _lay(rgb, _coverage((sh, sw), lambda d, s: d.line([(mx * s, 0), (mx * s, sh * s)], fill=255, width=width * s)),
                 (225, 140, 140), 0.8)
    taken: list = []
    inner = (int(0.12 * sh), int(0.15 * sw), int(0.88 * sh), int(0.85 * sw))
    # The digit(s) first: the largest handwritten marks of the sheet, as when a digit is written to be read.
    digit_size = int(rng.integers(80, 181))
    for digit in digits:
        size = int(digit_size * rng.uniform(0.9, 1.1)) if len(digits) > 1 else digit_size
        spot = _free_spot(rng, taken, size, size, inner)
        while spot is None:  # a second digit on a small sheet: written smaller
            size = int(size * 0.9)
            spot = _free_spot(rng, taken, size, size, inner)
        cover = _ink_digit(digit, size)
        _put(rgb, cover, *spot, ink, rng.uniform(0.85, 1.0))
        taken.append((*spot, size, size))
        # A second digit near the first (within 200 px down or up, 300 across): both in one photo.
        y, x = spot
        inner = (max(inner[0], y - 200), max(inner[1], x - 300), min(inner[2], y + size + 200), min(inner[3], x + size + 300))
    # Other marks: smaller than the digit (at most 0.4 of its size), anywhere on the sheet.
    whole = (8, 8, sh - 8, sw - 8)
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.choice(["small digits", "scribble", "underline", "tick", "printed"])
        if kind == "small digits" and others:
            px = int(rng.integers(18, max(19, int(0.4 * digit_size))))
            count = int(rng.integers(2, 6))
            cover = np.concatenate([_ink_digit(others[int(rng.integers(len(others)))], px) for _ in range(count)], axis=1)
        elif kind == "scribble":
            cover = _scribble(rng, int(rng.integers(20, max(21, int(0.45 * digit_size)))))
        elif kind == "underline":
            cover = _underline(rng, int(rng.integers(80, 260)))
        elif kind == "tick":
            cover = _tick(rng, int(rng.integers(15, 36)))
        else:
            words = " ".join(rng.choice(HEADERS, int(rng.integers(1, 3)), replace=False))
            cover = _printed(rng, words, int(rng.integers(11, 18)))
            if cover is None:
                continue
        spot = _free_spot(rng, taken, *cover.shape, whole)
        if spot is None:
            continue
        _put(rgb, cover, *spot, ink if kind != "printed" else (35, 35, 35), rng.uniform(0.8, 1.0))
        taken.append((*spot, *cover.shape))
    return rgb, taken


def _place_sheet(rng, photo: np.ndarray, sheet: np.ndarray, taken: list) -> list:
    """Rotate the sheet slightly and lay it on the desk; returns the digits' boxes in the photo,
    (y0, x0, y1, x1), so that the object can keep off them."""
    sh, sw, _ = sheet.shape
    angle = rng.uniform(-7, 7)
    rgba = np.dstack([sheet, np.full((sh, sw), 255, np.float32)]).clip(0, 255).astype(np.uint8)
    turned = Image.fromarray(rgba, "RGBA").rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    tw, th = turned.size
    # Where the digits' boxes land on the turned sheet: their corners through the same rotation
    # (PIL turns counter-clockwise about the centre).
    t = np.deg2rad(angle)
    turned_boxes = []
    for y, x, h, w in taken:
        corners = np.array([(x, y), (x + w, y), (x, y + h), (x + w, y + h)], np.float64) - (sw / 2, sh / 2)
        rx = corners[:, 0] * np.cos(t) + corners[:, 1] * np.sin(t) + tw / 2
        ry = -corners[:, 0] * np.sin(t) + corners[:, 1] * np.cos(t) + th / 2
        turned_boxes.append((ry.min(), rx.min(), ry.max(), rx.max()))
    # The photo aims at the writing: the digits' centre lands in the middle half of the frame
    # (the sheet reaches out of view where it will); with no digit, the sheet's centre does.
    if turned_boxes:
        b = np.array(turned_boxes)
        aim_y, aim_x = (b[:, 0].min() + b[:, 2].max()) / 2, (b[:, 1].min() + b[:, 3].max()) / 2
        span_y, span_x = b[:, 2].max() - b[:, 0].min(), b[:, 3].max() - b[:, 1].min()
    else:
        aim_y, aim_x, span_y, span_x = th / 2, tw / 2, 0, 0
    margin = 20
    alpha = np.asarray(turned, np.uint8)[..., 3]
    for _ in range(100):  # and the sheet fills the middle of the picture (it is what was photographed)
        cy = rng.uniform(max(0.25 * H, span_y / 2 + margin), min(0.75 * H, H - span_y / 2 - margin))
        cx = rng.uniform(max(0.25 * W, span_x / 2 + margin), min(0.75 * W, W - span_x / 2 - margin))
        left, top = int(round(cx - aim_x)), int(round(cy - aim_y))
        probes = [(H // 2 + dy - top, W // 2 + dx - left) for dy in (-80, 0, 80) for dx in (-100, 0, 100)]
        if all(0 <= y < th and 0 <= x < tw and alpha[y, x] == 255 for y, x in probes):
            break
    layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    layer.paste(turned, (left, top), turned)
    a = np.asarray(layer, np.float32)
    # A soft contact shadow under the sheet's edge.
    shadow = np.asarray(Image.fromarray(a[..., 3].astype(np.uint8)).filter(ImageFilter.GaussianBlur(4)), np.float32) / 255
    photo *= (1 - 0.35 * shadow)[..., None]
    _lay(photo, a[..., 3] / 255.0, (0, 0, 0))
    photo += a[..., :3] * (a[..., 3:] / 255.0)
    boxes = [(y0 + top, x0 + left, y1 + top, x1 + left) for y0, x0, y1, x1 in turned_boxes]
    return boxes


def _object(rng, photo: np.ndarray, avoid: list) -> None:
    """A second small object, somewhere in view but not on the digit: a coin, an eraser, a paperclip or a pen."""
    kind = rng.choice(["coin", "eraser", "paperclip", "pen"])
    angle = rng.uniform(0, np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    half_len = {"coin": 34, "eraser": 40, "paperclip": 42, "pen": 180}[kind]
    for _ in range(200):  # not on a digit: every point along the object's length keeps 25 px off its box
        cy, cx = rng.uniform(0.05, 0.95) * H, rng.uniform(0.05, 0.95) * W
        along = np.linspace(-half_len, half_len, 25)
        ys, xs = cy + along * sin, cx + along * cos
        if all(not ((ys >= y0 - 25) & (ys <= y1 + 25) & (xs >= x0 - 25) & (xs <= x1 + 25)).any() for y0, x0, y1, x1 in avoid):
            break

    def rect(half_len, half_w):
        return [(cx + a * cos * half_len - b * sin * half_w, cy + a * sin * half_len + b * cos * half_w)
                for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]

    if kind == "coin":
        r = rng.uniform(18, 34)
        cover = _coverage((H, W), lambda d, s: d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255))
        rim = _coverage((H, W), lambda d, s: d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s],
                                                       outline=255, width=int(3 * s)))
        colour = (170, 140, 70) if rng.random() < 0.5 else (165, 165, 170)
        parts = [(cover, colour, 1.0), (rim, tuple(c * 0.7 for c in colour), 1.0)]
    elif kind == "eraser":
        pts = rect(rng.uniform(25, 40), rng.uniform(10, 15))
        cover = _coverage((H, W), lambda d, s: d.polygon([(x * s, y * s) for x, y in pts], fill=255))
        colour = [(235, 150, 160), (240, 240, 235), (90, 140, 210)][rng.integers(3)]
        parts = [(cover, colour, 1.0)]
    elif kind == "paperclip":
        half, wide = rng.uniform(28, 42), rng.uniform(7, 10)

        def clip(d, s):
            for inset in (0.0, 0.45):
                pts = rect(half * (1 - inset * 0.5), wide * (1 - inset))
                d.line([(x * s, y * s) for x, y in pts + pts[:1]], fill=255, width=int(2 * s), joint="curve")

        cover = _coverage((H, W), clip)
        parts = [(cover, (130, 130, 138), 1.0)]
    else:
        pts = rect(rng.uniform(110, 180), rng.uniform(5, 7))
        cover = _coverage((H, W), lambda d, s: d.polygon([(x * s, y * s) for x, y in pts], fill=255))
        colour = [(30, 60, 160), (230, 190, 40), (25, 25, 25), (180, 30, 30)][rng.integers(4)]
        parts = [(cover, colour, 1.0)]
    shadow = np.asarray(Image.fromarray((parts[0][0] * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3)), np.float32)
    shadow = np.roll(shadow, (3, 3), axis=(0, 1)) / 255.0
    photo *= (1 - 0.4 * shadow)[..., None]
    for cover, colour, opacity in parts:
        _lay(photo, cover, colour, opacity)


def _light(rng, photo: np.ndarray) -> None:
    """Uneven light over everything, and (usually) a shadow with a soft edge across part of the picture."""
    photo *= _smooth_field(rng, H, W, 2, 0.78, 1.05)[..., None]
    if rng.random() < 0.75:
        angle = rng.uniform(0, 2 * np.pi)
        y, x = np.mgrid[0:H, 0:W].astype(np.float32)
        side = (x - rng.uniform(0.2, 0.8) * W) * np.cos(angle) + (y - rng.uniform(0.2, 0.8) * H) * np.sin(angle)
        soft = rng.uniform(8, 60)
        depth = rng.uniform(0.2, 0.45)
        photo *= (1 - depth / (1 + np.exp(-side / soft)))[..., None]


def desk_photo(digits: list[np.ndarray], rng, others: list[np.ndarray] = ()) -> Image.Image:
    """A 640x480 RGB photo of `digits` (0, 1 or 2 MNIST digits, 28x28 uint8) written on a sheet on a
    desk; `others`: digits to write small, as other handwriting."""
    photo = _desk(rng)
    sheet, taken = _sheet(rng, digits, list(others))
    boxes = _place_sheet(rng, photo, sheet, taken[: len(digits)])
    _object(rng, photo, boxes)
    _light(rng, photo)
    img = Image.fromarray(photo.clip(0, 255).astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.2)))
    noisy = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(2, 6), (H, W, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB")


def save_jpeg(img: Image.Image, path: Path, rng) -> Path:
    img.save(path, quality=int(rng.integers(65, 91)))
    return path


def make_desk_photos(out: Path, images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0, *,
                     no_digit: int = 0, two_digits: int = 0) -> list[Path]:
    """`count` photos of distinct test digits (desk_INDEX_LABEL.jpg), plus `no_digit` photos with no
    digit on the sheet (nodigit_N.jpg) and `two_digits` with two (twodigits_N.jpg), written into out/."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    picks = rng.permutation(len(labels))
    written = []
    for n in range(count):
        i = int(picks[n % len(picks)])
        others = [images[int(j)] for j in rng.integers(0, len(labels), 4)]
        written.append(save_jpeg(desk_photo([images[i]], rng, others), out / f"desk_{i:05d}_{labels[i]}.jpg", rng))
    for n in range(no_digit):
        others = [images[int(j)] for j in rng.integers(0, len(labels), 4)]
        written.append(save_jpeg(desk_photo([], rng, others), out / f"nodigit_{n:03d}.jpg", rng))
    for n in range(two_digits):
        a, b = rng.integers(0, len(labels), 2)
        written.append(save_jpeg(desk_photo([images[a], images[b]], rng), out / f"twodigits_{n:03d}.jpg", rng))
    return written


def label_of(path: Path) -> int:
    """desk_INDEX_LABEL.ext -> LABEL."""
    return int(Path(path).stem.rsplit("_", 1)[1])


def measure(photos: list[Path], models: list[str], versions: list[str]) -> list[dict]:
    """For each model and preprocessing version, over desk photos (desk_INDEX_LABEL.*): how many were
    read right, read wrong, wrong at >= 0.95 confidence, and no digit (no single digit found: the
    row's error), and the preprocessing's milliseconds per photo (decoding included)."""
    import time

    from cnn_edge.runtime.predictor import Predictor
    from cnn_edge.runtime.preprocess import preprocess_many

    truth = np.array([label_of(f) for f in photos])
    rows = []
    for version in versions:
        started = time.perf_counter()
        inputs, errors = preprocess_many(photos, version=version)
        ms = 1000 * (time.perf_counter() - started) / len(photos)
        ok = np.array([not e for e in errors])
        for model in models:
            probs = Predictor(model, preprocessing=version).probabilities(inputs)
            label, confidence = probs.argmax(axis=1), probs.max(axis=1)
            right, wrong = ok & (label == truth), ok & (label != truth)
            rows.append({"model": Path(model).name, "preprocessing": version, "photos": len(photos),
                         "right": int(right.sum()), "wrong": int(wrong.sum()),
                         "wrong_at_0.95": int((wrong & (confidence >= 0.95)).sum()), "no_digit": int((~ok).sum()),
                         "ms_per_photo": round(ms, 1)})
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--data-dir")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-digit", type=int, default=0, help="also this many photos with no digit on the sheet")
    ap.add_argument("--two-digits", type=int, default=0, help="also this many photos with two digits")
    ap.add_argument("--measure", nargs="*", metavar="MODEL", default=None,
                    help="read the photos back with these models (default: the released two) under mnist-v1 and mnist-v2")
    args = ap.parse_args()
    from cnn_edge.training.data import load_split

    test = load_split("test", args.data_dir)
    files = make_desk_photos(args.out, test.images, test.labels, args.count, args.seed,
                             no_digit=args.no_digit, two_digits=args.two_digits)
    print(f"wrote {len(files)} photos in {args.out}")
    if args.measure is not None:
        models = args.measure or ["exports/mnist_cnn.int8.onnx", "exports/mnist_cnn.onnx"]
        for row in measure([f for f in files if f.name.startswith("desk_")], models, ["mnist-v1", "mnist-v2"]):
            print(" ".join(f"{k}={v}" for k, v in row.items()))
