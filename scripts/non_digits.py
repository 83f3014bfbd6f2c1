"""Pictures that are not digits, to measure what predict's `flag` column makes of them.

Four kinds, deterministic for a seed, the kind in the file name (KIND_INDEX[_WHAT].EXT):

  letter  a printed letter (DejaVu fonts: sans, serif, mono, bold, oblique; 40 to 120 px), dark
          on a light page (a little noise, sometimes JPEG), or light on black at 28x28 as MNIST
          is; letters that read as a digit (O o D I l i Z z S s B b g q G) are left out
  noise   uniform, blurred or salt-and-pepper noise, 28x28 to 320x240
  blank   a page with nothing written: paper texture, uneven light, a speck of dust, ruled
          lines, a fold's shadow, JPEG
  object  a synthesised photo of a thing on a desk or a plain ground: a coin, an eraser, a pen,
          a cup seen from above, a key, a phone, a pair of glasses, a crumpled ball

    python scripts/non_digits.py OUT_DIR --count 100 --seed 5

writes COUNT pictures of each kind.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

KINDS = ("letter", "noise", "blank", "object")
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
# Letters that are written like a digit (O 0, I l i 1, Z z 2, S s 5, B 8, b G 6, g q 9, D 0): a
# person could call them digits, so they are not counted as non-digits.
DIGIT_LIKE = set("OoDIliZzSsBbgqG")
LETTERS = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in DIGIT_LIKE]
FONT_NAMES = ("DejaVuSans", "DejaVuSans-Bold", "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSansMono",
              "DejaVuSans-Oblique", "DejaVuSerif-Italic", "DejaVuSansCondensed", "DejaVuSans-ExtraLight")


def _page(rng, h: int, w: int) -> np.ndarray:
    """(h, w) grey paper: a level, a slow gradient and grain."""
    level = rng.uniform(200, 250)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    slope = rng.uniform(0, 25) * ((x / w - 0.5) * math.cos(angle) + (y / h - 0.5) * math.sin(angle))
    return level + slope + rng.normal(0, rng.uniform(1, 4), (h, w))


def _save(img: Image.Image, path: Path, rng, jpeg: bool) -> Path:
    if jpeg:
        path = path.with_suffix(".jpg")
        img.convert("RGB").save(path, quality=int(rng.integers(60, 92)))
    else:
        img.save(path)
    return path


def letter(rng, out: Path, n: int) -> Path:
    char = LETTERS[int(rng.integers(len(LETTERS)))]
    fonts = [FONT_DIR / f"{name}.ttf" for name in FONT_NAMES if (FONT_DIR / f"{name}.ttf").exists()]
    font_file = fonts[int(rng.integers(len(fonts)))] if fonts else None
    if rng.random() < 0.3:  # MNIST's way: light on black, the letter's longer side 20 px in 28x28
        font = ImageFont.truetype(str(font_file), 22) if font_file else ImageFont.load_default()
        img = Image.new("L", (28, 28), 0)
        d = ImageDraw.Draw(img)
        left, top, right, bottom = d.textbbox((0, 0), char, font=font)
        d.text(((28 - (right - left)) / 2 - left, (28 - (bottom - top)) / 2 - top), char, fill=255, font=font)
        return _save(img, out / f"letter_{n:04d}_{char}.png", rng, False)
    px = int(rng.integers(40, 121))
    font = ImageFont.truetype(str(font_file), px) if font_file else ImageFont.load_default()
    size = int(px * rng.uniform(1.4, 2.2))
    page = _page(rng, size, size)
    ink = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(ink)
    left, top, right, bottom = d.textbbox((0, 0), char, font=font)
    d.text(((size - (right - left)) / 2 - left + rng.uniform(-5, 5), (size - (bottom - top)) / 2 - top + rng.uniform(-5, 5)),
           char, fill=255, font=font)
    ink = ink.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR)
    cover = np.asarray(ink, np.float32) / 255
    grey = page * (1 - cover) + rng.uniform(20, 80) * cover
    return _save(Image.fromarray(grey.clip(0, 255).astype(np.uint8)), out / f"letter_{n:04d}_{char}.png", rng,
                 rng.random() < 0.5)


def noise(rng, out: Path, n: int) -> Path:
    h, w = [(28, 28), (64, 64), (100, 100), (240, 320)][int(rng.integers(4))]
    kind = int(rng.integers(3))
    if kind == 0:
        grey = rng.uniform(0, 255, (h, w))
    elif kind == 1:
        raw = Image.fromarray(rng.uniform(0, 255, (h, w)).astype(np.uint8))
        grey = np.asarray(raw.filter(ImageFilter.GaussianBlur(rng.uniform(0.7, 3))), np.float32)
        grey = (grey - grey.mean()) * rng.uniform(3, 8) + 128
    else:
        grey = np.full((h, w), rng.uniform(180, 250))
        grey[rng.random((h, w)) < rng.uniform(0.02, 0.2)] = rng.uniform(0, 60)
    return _save(Image.fromarray(grey.clip(0, 255).astype(np.uint8)), out / f"noise_{n:04d}.png", rng, False)


def blank(rng, out: Path, n: int) -> Path:
    h, w = [(120, 160), (480, 640), (200, 200)][int(rng.integers(3))]
    grey = _page(rng, h, w)
    kind = int(rng.integers(4))
    if kind == 1:  # a speck of dust
        y, x, r = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4), rng.uniform(1, 3)
        yy, xx = np.mgrid[0:h, 0:w]
        grey -= rng.uniform(60, 150) * (((yy - y) ** 2 + (xx - x) ** 2) <= r * r)
    elif kind == 2:  # ruled lines
        gap = int(rng.integers(18, 40))
        grey[int(rng.integers(gap)) :: gap] -= rng.uniform(25, 70)
    elif kind == 3:  # a fold's soft shadow
        x = rng.uniform(0.2, 0.8) * w
        xx = np.arange(w)[None, :]
        grey -= rng.uniform(20, 60) * np.exp(-(((xx - x) / rng.uniform(4, 20)) ** 2))
    return _save(Image.fromarray(grey.clip(0, 255).astype(np.uint8)), out / f"blank_{n:04d}.png", rng,
                 rng.random() < 0.5)


def _shape(d: ImageDraw.ImageDraw, rng, what: str, cx: float, cy: float, s: float) -> None:
    """Draw `what` (filled 255 where the thing is) centred at (cx, cy), about s pixels across."""
    a = rng.uniform(0, math.pi)
    if what == "coin":
        d.ellipse([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2], fill=255)
    elif what == "cup":
        d.ellipse([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2], fill=255)
        d.ellipse([cx - s / 3, cy - s / 3, cx + s / 3, cy + s / 3], fill=90)
        d.line([(cx + s / 2, cy), (cx + 0.75 * s, cy)], fill=255, width=max(2, int(s / 10)))
    elif what in ("eraser", "phone", "pen"):
        half = {"eraser": (0.5, 0.25), "phone": (0.5, 0.27), "pen": (0.8, 0.04)}[what]
        ux, uy = math.cos(a), math.sin(a)
        corners = [(cx + sx * half[0] * s * ux - sy * half[1] * s * uy, cy + sx * half[0] * s * uy + sy * half[1] * s * ux)
                   for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        d.polygon(corners, fill=255)
    elif what == "key":
        d.ellipse([cx - s / 4, cy - s / 4, cx + s / 4, cy + s / 4], fill=255)
        d.line([(cx, cy), (cx + s * 0.7 * math.cos(a), cy + s * 0.7 * math.sin(a))], fill=255, width=max(3, int(s / 8)))
    elif what == "glasses":
        for side in (-1, 1):
            d.ellipse([cx + side * s / 3 - s / 5, cy - s / 6, cx + side * s / 3 + s / 5, cy + s / 6],
                      outline=255, width=max(2, int(s / 25)))
        d.line([(cx - s / 7, cy), (cx + s / 7, cy)], fill=255, width=max(2, int(s / 25)))
    else:  # a crumpled ball: a blob with a few creases
        pts = [(cx + s / 2 * rng.uniform(0.7, 1) * math.cos(t), cy + s / 2 * rng.uniform(0.7, 1) * math.sin(t))
               for t in np.linspace(0, 2 * math.pi, 11)[:-1]]
        d.polygon(pts, fill=255)
        for _ in range(4):
            d.line([tuple(rng.uniform(-0.3, 0.3, 2) * s + (cx, cy)), tuple(rng.uniform(-0.3, 0.3, 2) * s + (cx, cy))],
                   fill=150, width=2)


OBJECTS = ("coin", "cup", "eraser", "phone", "pen", "key", "glasses", "ball")


def thing(rng, out: Path, n: int) -> Path:
    h, w = [(240, 320), (480, 640), (160, 160)][int(rng.integers(3))]
    what = OBJECTS[int(rng.integers(len(OBJECTS)))]
    ground = np.asarray([rng.uniform(60, 240)] * 3, np.float32) * rng.uniform(0.8, 1.2, 3)
    colour = np.asarray(rng.uniform(0, 255, 3), np.float32)
    mask = Image.new("L", (w, h), 0)
    s = rng.uniform(0.3, 0.7) * min(h, w)
    _shape(ImageDraw.Draw(mask), rng, what, w / 2 + rng.uniform(-0.15, 0.15) * w, h / 2 + rng.uniform(-0.15, 0.15) * h, s)
    cover = np.asarray(mask.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5))), np.float32)[..., None] / 255
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1 + 0.25 * ((x / w - 0.5) * rng.uniform(-1, 1) + (y / h - 0.5) * rng.uniform(-1, 1))  # shading
    rgb = (ground * (1 - cover) + colour * cover) * light[..., None]
    rgb += rng.normal(0, rng.uniform(2, 6), rgb.shape)
    return _save(Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB"), out / f"object_{n:04d}_{what}.png", rng,
                 rng.random() < 0.7)


def make_non_digits(out: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` pictures of each kind (KINDS) in out/, named KIND_INDEX[_WHAT].png or .jpg."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    makers = {"letter": letter, "noise": noise, "blank": blank, "object": thing}
    return [makers[kind](rng, out, n) for kind in KINDS for n in range(count)]


def kind_of(path: Path) -> str:
    return Path(path).name.split("_", 1)[0]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=100, help="pictures of each kind")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    files = make_non_digits(args.out, args.count, args.seed)
    print(f"wrote {len(files)} pictures in {args.out}")
