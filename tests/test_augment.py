"""The batched augmentation ingredients (training/augment.py): shapes, ranges, seeds, and off is off."""
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from cnn_edge.core.errors import ConfigError
from cnn_edge.training.augment import _blur_matrix, augment_batch, elastic_field, pixel_noise, random_erase, stroke_width
from cnn_edge.training.recipes import TrainConfig, make_config

STILL = TrainConfig(max_rotation=0.0, max_shift=0.0, max_scale=0.0)  # geometry that moves nothing
ALL = replace(TrainConfig(), max_shear=15.0, elastic_alpha=34.0, stroke_prob=0.5, erase_prob=0.5, noise_prob=0.5)


def digits(b: int = 8, seed: int = 0) -> torch.Tensor:
    """Raw 0..255 batches with strokes: a few bright bars on black, as the loop hands them over."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(b, 1, 28, 28)
    for i in range(b):
        r, c = torch.randint(6, 20, (2,), generator=g).tolist()
        x[i, 0, 4:24, c : c + 3] = 255.0
        x[i, 0, r : r + 2, 6:22] = 200.0
    return x


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def before_these_ingredients(x: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> torch.Tensor:
    """train.augment_batch as it was before shear, elastic, stroke width and erasing."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=g) * 2 - 1) * math.radians(cfg.max_rotation)
    scale = 1 + (torch.rand(b, generator=g) * 2 - 1) * cfg.max_scale
    shift = (torch.rand(b, 2, generator=g) * 2 - 1) * cfg.max_shift * 2 / x.shape[-1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def test_the_default_recipe_augments_and_draws_as_before():
    """Off is off: the default recipe gives the same pixels, to the bit, and leaves the generator
    where the old code left it (so every later draw of the epoch is the same too)."""
    x, a, b = digits(), gen(3), gen(3)
    assert torch.equal(augment_batch(x, TrainConfig(), a), before_these_ingredients(x, TrainConfig(), b))
    assert torch.equal(a.get_state(), b.get_state())


@pytest.mark.parametrize("cfg", [replace(STILL, max_shear=20.0), replace(STILL, elastic_alpha=34.0),
                                 replace(STILL, stroke_prob=1.0), replace(STILL, erase_prob=1.0),
                                 replace(STILL, noise_prob=1.0), ALL],
                         ids=["shear", "elastic", "stroke", "erase", "noise", "all"])
def test_each_ingredient_keeps_shape_dtype_range_and_its_seed(cfg):
    x = digits()
    out = augment_batch(x, cfg, gen(1))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 255 * (1 + 1e-5)  # bilinear sums of weights ~1
    assert not torch.equal(out, x)  # it did something
    assert torch.equal(out, augment_batch(x, cfg, gen(1)))  # same seed, same batch
    assert not torch.equal(out, augment_batch(x, cfg, gen(2)))


def test_still_geometry_is_the_identity():
    x = digits()
    assert torch.allclose(augment_batch(x, STILL, gen()), x, atol=1e-3)


def test_shear_slants_a_vertical_bar():
    """A vertical bar sheared: its column moves with the row, one way above the middle, the other below."""
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 2:26, 13:15] = 255.0
    out = augment_batch(x, replace(STILL, max_shear=30.0), gen(0))[0, 0]
    cols = torch.arange(28.0)
    centre = [(out[r] * cols).sum() / out[r].sum() for r in (4, 23)]
    assert abs(centre[0] - centre[1]) > 2  # pixels apart: slanted
    assert (centre[0] - 13.5) * (centre[1] - 13.5) < 0


def test_elastic_field_is_smooth_and_scaled_by_alpha():
    """Blurring keeps a constant a constant (each row of the matrix sums to 1, the border included);
    the field grows with alpha, and neighbouring pixels move nearly alike."""
    m = _blur_matrix(28, 4.0)
    assert torch.allclose(m.sum(1), torch.ones(28), atol=1e-5)
    f1, f2 = elastic_field(16, 28, 28, 10.0, 4.0, gen(0)), elastic_field(16, 28, 28, 20.0, 4.0, gen(0))
    assert f1.shape == (16, 28, 28, 2) and torch.allclose(f2, 2 * f1)
    step = (f1[:, 1:] - f1[:, :-1]).abs().mean()
    assert step < 0.2 * f1.abs().mean()


def test_stroke_width_thickens_or_thins_whole_images():
    x = digits(32)
    out = stroke_width(x, 1.0, gen(0))
    thicker = (out >= x).flatten(1).all(1)
    thinner = (out <= x).flatten(1).all(1)
    assert bool((thicker | thinner).all()) and thicker.any() and thinner.any()
    assert torch.equal(stroke_width(x, 0.0, gen(0)), x)


def test_random_erasing_blanks_one_rectangle_of_the_asked_size():
    x = torch.full((64, 1, 28, 28), 100.0)
    out = random_erase(x, 1.0, 0.15, gen(0))
    for img in out[:, 0]:
        rows, cols = torch.nonzero(img == 0, as_tuple=True)
        assert len(rows) > 0
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert len(rows) == h * w  # one filled rectangle
        assert 0.01 * 784 <= len(rows) <= 0.18 * 784  # 2%..15% of the image, give or take rounding
    assert torch.equal(random_erase(x, 0.0, 0.15, gen(0)), x)


def test_pixel_noise_reaches_the_background_at_the_drawn_strength():
    """Noisy images get specks on their black background, clipped to 0..255; the strength differs
    from image to image (uniform in [0, max_sigma]); p 0 changes nothing."""
    x = digits(64)
    out = pixel_noise(x, 1.0, 32.0, gen(0))
    background = x == 0
    assert bool((out[background] > 0).any()) and out.min() >= 0 and out.max() <= 255
    spread = torch.stack([(out[i] - x[i])[background[i]].abs().mean() for i in range(64)])
    assert spread.max() < 32 * 0.8 + 1 and spread.max() > 3 * spread.min()  # half-normal mean of sigma <= 32: 0.8 sigma / 2
    half = pixel_noise(x, 0.5, 32.0, gen(0))
    untouched = (half == x).flatten(1).all(1)
    assert 0.25 < untouched.float().mean() < 0.75
    assert torch.equal(pixel_noise(x, 0.0, 32.0, gen(0)), x)


def test_bad_ingredient_settings_are_refused():
    with pytest.raises(ConfigError, match="stroke_prob.*1.5"):
        make_config("default", stroke_prob=1.5)
    with pytest.raises(ConfigError, match="elastic_sigma.*0"):
        make_config("default", elastic_alpha=34.0, elastic_sigma=0.0)
    with pytest.raises(ConfigError, match="noise_prob.*-0.1"):
        make_config("default", noise_prob=-0.1)
    with pytest.raises(ConfigError, match="noise_sigma.*0"):
        make_config("default", noise_prob=0.5, noise_sigma=0.0)
