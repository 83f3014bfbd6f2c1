"""Digits the way users hand them over: MNIST test digits redrawn as scans, photos and app exports.

Each variant takes a held-out MNIST digit (its ink, 0..1) and renders it as another program
would: dark ink on white paper, coloured ink on tinted paper, large and off-centre on a noisy,
unevenly lit page, on a transparent layer (RGBA), as 16-bit TIFF, palette GIF, JPEG and WebP;
and, where Debian's DejaVu fonts are installed, typed digits of the same labels.
Used by the tests and by scripts/bench_predict.py; the labels travel in the file names.

    python scripts/user_digits.py OUT_DIR --data-dir ../shared/data/mnist --per-variant 200
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnn_edge.training.data import load_split  # noqa: E402


def _big_ink(digit: np.ndarray, size: int) -> np.ndarray:
    """The 28x28 digit as ink coverage 0..1, scaled smoothly to size x size."""
    img = Image.fromarray(digit.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img, np.float32) / 255.0, 0.0, 1.0)


def _paint(ink: np.ndarray, paper_rgb, ink_rgb) -> np.ndarray:
    paper = np.asarray(paper_rgb, np.float32)
    colour = np.asarray(ink_rgb, np.float32)
    return (paper * (1 - ink[..., None]) + colour * ink[..., None]).clip(0, 255).astype(np.uint8)


def scan_jpeg(digit, label, rng, path: Path) -> Path:
    """Black ink on white paper, 280x280, JPEG quality 80 (a flatbed scan)."""
    rgb = _paint(_big_ink(digit, 280), (250, 250, 248), (20, 20, 25))
    Image.fromarray(rgb).convert("L").save(path.with_suffix(".jpg"), quality=80)
    return path.with_suffix(".jpg")


def coloured_png(digit, label, rng, path: Path) -> Path:
    """Blue ballpoint on yellowish sticky-note paper, 200x160 RGB, digit left of centre."""
    canvas = np.zeros((160, 200), np.float32)
    y, x = rng.integers(10, 40), rng.integers(5, 60)
    canvas[y : y + 112, x : x + 112] = _big_ink(digit, 112)
    Image.fromarray(_paint(canvas, (245, 235, 150), (30, 50, 170))).save(path.with_suffix(".png"))
    return path.with_suffix(".png")


def photo_large(digit, label, rng, path: Path) -> Path:
    """A phone photo: 640x480, grey paper with a lighting gradient and sensor noise, digit
    150 px high somewhere off-centre, JPEG."""
    h, w = 480, 640
    canvas = np.zeros((h, w), np.float32)
    size = 150
    y, x = rng.integers(20, h - size - 20), rng.integers(20, w - size - 20)
    canvas[y : y + size, x : x + size] = _big_ink(digit, size)
    light = np.linspace(200, 235, w)[None, :] * np.linspace(0.95, 1.0, h)[:, None]
    paper = light + rng.normal(0, 3, (h, w))
    grey = paper * (1 - canvas) + 35 * canvas
    Image.fromarray(grey.clip(0, 255).astype(np.uint8)).save(path.with_suffix(".jpg"), quality=85)
    return path.with_suffix(".jpg")


def rgba_dark(digit, label, rng, path: Path) -> Path:
    """An app export: black ink on a transparent layer, 128x128 RGBA PNG."""
    ink = _big_ink(digit, 128)
    rgba = np.zeros((128, 128, 4), np.uint8)
    rgba[..., 3] = (ink * 255).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(path.with_suffix(".png"))
    return path.with_suffix(".png")


def rgba_light(digit, label, rng, path: Path) -> Path:
    """A dark-mode app: white ink on a transparent layer, 96x96 RGBA WebP (lossless)."""
    ink = _big_ink(digit, 96)
    rgba = np.full((96, 96, 4), 255, np.uint8)
    rgba[..., 3] = (ink * 255).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(path.with_suffix(".webp"), lossless=True)
    return path.with_suffix(".webp")


def tiff16(digit, label, rng, path: Path) -> Path:
    """A 16-bit grey TIFF from a scanner, dark ink on light paper, 84x84."""
    grey = (1 - _big_ink(digit, 84)) * 60000 + 2000
    Image.fromarray(grey.astype(np.uint16)).save(path.with_suffix(".tif"))
    return path.with_suffix(".tif")


def palette_gif(digit, label, rng, path: Path) -> Path:
    """A palette GIF: dark green ink on white, 56x56, 16 colours."""
    rgb = _paint(_big_ink(digit, 56), (255, 255, 255), (10, 90, 30))
    Image.fromarray(rgb).quantize(16).save(path.with_suffix(".gif"))
    return path.with_suffix(".gif")


def small_bmp(digit, label, rng, path: Path) -> Path:
    """A small BMP (20x20 image, digit touching the edges), as from an old device."""
    Image.fromarray(digit[4:24, 4:24].astype(np.uint8)).save(path.with_suffix(".bmp"))
    return path.with_suffix(".bmp")


FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


def typed_font(digit, label, rng, path: Path) -> Path:
    """Typed, not handwritten: the label in a DejaVu font (Debian's fonts-dejavu), dark grey on
    white, 160x160 PNG, random font, size and position."""
    from PIL import ImageDraw, ImageFont

    fonts = sorted(FONT_DIR.glob("*.ttf"))
    font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), int(rng.integers(60, 110)))
    img = Image.new("L", (160, 160), 255)
    ImageDraw.Draw(img).text((int(rng.integers(5, 60)), int(rng.integers(0, 30))), str(label), fill=40, font=font)
    img.save(path.with_suffix(".png"))
    return path.with_suffix(".png")


VARIANTS: dict[str, Callable] = {
    "scan_jpeg": scan_jpeg, "coloured_png": coloured_png, "photo_large": photo_large,
    "rgba_dark": rgba_dark, "rgba_light": rgba_light, "tiff16": tiff16, "palette_gif": palette_gif,
    "small_bmp": small_bmp,
}
if FONT_DIR.is_dir():
    VARIANTS["typed_font"] = typed_font


def label_of(path: Path) -> int:
    """Files are named VARIANT_INDEX_LABEL.ext."""
    return int(Path(path).stem.rsplit("_", 1)[1])


def make_user_digits(out: Path, data_dir: str | None, per_variant: int, seed: int = 0) -> dict[str, list[Path]]:
    """per_variant test digits per variant (different digits for each), written into out/."""
    test = load_split("test", data_dir)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    picks = rng.permutation(len(test))
    written: dict[str, list[Path]] = {}
    for v, (name, render) in enumerate(VARIANTS.items()):
        idx = picks[(v * per_variant) % len(test) :][:per_variant]
        written[name] = [render(test.images[i], int(test.labels[i]), rng, out / f"{name}_{i:05d}_{test.labels[i]}") for i in idx]
    return written


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--data-dir")
    ap.add_argument("--per-variant", type=int, default=200)
    args = ap.parse_args()
    files = make_user_digits(args.out, args.data_dir, args.per_variant)
    print(f"wrote {sum(map(len, files.values()))} images in {args.out}")
