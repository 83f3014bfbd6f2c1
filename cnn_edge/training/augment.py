"""Batched augmentation: every ingredient works on a whole batch (B, 1, 28, 28) at once.

One affine_grid + grid_sample call carries the geometry (rotation, scale, shift, shear and the
elastic displacement field, added to the same sampling grid); stroke width is one max_pool2d pair
over the batch, random erasing one mask built from index comparisons, pixel noise one randn. No per-image Python loop.

Every random number comes from the caller's generator (train.py seeds one per epoch), in a fixed
order, and an ingredient that is off draws nothing: the default recipe draws exactly what it drew
before these ingredients existed, so its runs (and their resumes) are unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .recipes import TrainConfig


def _uniform(shape: tuple[int, ...], gen: torch.Generator, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen)


def _blur_matrix(n: int, sigma: float) -> torch.Tensor:
    """(n, n): multiplying by it blurs along one axis by a Gaussian of `sigma` pixels, reflected at
    the border so the edges are blurred like the middle (zero padding would pin them). As a matrix
    the blur of a whole batch is two small batched products, far cheaper on a CPU than a
    convolution with a kernel of 6 sigma taps."""
    radius = min(n - 1, max(1, math.ceil(3 * sigma)))  # reflect padding needs radius < n
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    eye = torch.eye(n).unsqueeze(1)  # row i: a unit impulse at i; its blur is column i of the matrix
    rows = F.conv1d(F.pad(eye, (radius, radius), mode="reflect"), k.view(1, 1, -1)).squeeze(1)
    return rows.T.contiguous()


def elastic_field(b: int, h: int, w: int, alpha: float, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """A smooth random displacement field (B, H, W, 2) in pixels, as Simard et al. (2003) make it:
    uniform noise in [-1, 1] per pixel and axis, blurred by a Gaussian of `sigma` pixels, times
    `alpha`. (alpha 34, sigma 4 is their setting; the blur shrinks the noise, so a pixel moves
    about alpha / 25 px on average there.)"""
    noise = _uniform((b * 2, h, w), gen)
    blurred = _blur_matrix(h, sigma) @ noise @ _blur_matrix(w, sigma).T
    return (alpha * blurred).view(b, 2, h, w).permute(0, 2, 3, 1)


def geometry(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Rotation, scale, shift, then (when on) shear and the elastic field: one grid_sample."""
    b, _, h, w = x.shape
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(cfg.max_rotation)
    scale = 1 + (torch.rand(b, generator=gen) * 2 - 1) * cfg.max_scale
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * cfg.max_shift * 2 / w
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    if cfg.max_shear > 0:
        # A horizontal shear (a slant, as handwriting varies), applied before the rotation.
        k = torch.tan(_uniform((b,), gen) * math.radians(cfg.max_shear))
        theta = torch.stack([torch.stack([cos, cos * k - sin, shift[:, 0]], 1),
                             torch.stack([sin, sin * k + cos, shift[:, 1]], 1)], 1)
    else:  # the ops of the recipes before shear existed, to the bit
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    if cfg.elastic_alpha > 0:
        # Pixels to grid units: the grid spans [-1, 1] over w (x) and h (y) pixels.
        field = elastic_field(b, h, w, cfg.elastic_alpha, cfg.elastic_sigma, gen)
        grid = grid + (field * torch.tensor([2 / w, 2 / h])).to(x.device)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def stroke_width(x: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Thicker or thinner strokes: with probability `prob` an image moves towards its grey
    dilation (3x3 maximum) or, as likely, its grey erosion (3x3 minimum), by a uniform share in
    [0, 1] (a full 3x3 step is a lot for strokes 2-3 px wide; a share makes it a continuum)."""
    b = x.shape[0]
    u, share = torch.rand(b, generator=gen), torch.rand(b, generator=gen)
    direction = torch.where(u < prob / 2, 1.0, torch.where(u < prob, -1.0, 0.0))  # +1 thicker, -1 thinner, 0 as is
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = -F.max_pool2d(-x, 3, stride=1, padding=1)  # the padding is -inf: the border is not darkened
    d = direction.view(b, 1, 1, 1).to(x.device)
    s = share.view(b, 1, 1, 1).to(x.device)
    target = torch.where(d > 0, thick, thin)
    return torch.where(d != 0, x + s * (target - x), x)


def random_erase(x: torch.Tensor, prob: float, max_area: float, gen: torch.Generator) -> torch.Tensor:
    """With probability `prob` an image loses a rectangle (set to 0, the background): its area a
    uniform share in [0.02, max_area] of the image, its aspect ratio log-uniform in [1/3, 3], its
    place uniform where it fits (Zhong et al., 2017)."""
    b, _, h, w = x.shape
    u = torch.rand(b, generator=gen)
    area = _uniform((b,), gen, 0.02, max(0.02, max_area)) * h * w
    aspect = torch.exp(_uniform((b,), gen, math.log(1 / 3), math.log(3)))
    eh = torch.sqrt(area * aspect).round().clamp(1, h)
    ew = torch.sqrt(area / aspect).round().clamp(1, w)
    top = (torch.rand(b, generator=gen) * (h - eh + 1)).floor()
    left = (torch.rand(b, generator=gen) * (w - ew + 1)).floor()
    rows = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    inside = ((rows >= top.view(b, 1, 1)) & (rows < (top + eh).view(b, 1, 1))
              & (cols >= left.view(b, 1, 1)) & (cols < (left + ew).view(b, 1, 1)))
    mask = (inside & (u < prob).view(b, 1, 1)).unsqueeze(1).to(x.device)
    return x.masked_fill(mask, 0.0)


def pixel_noise(x: torch.Tensor, prob: float, max_sigma: float, gen: torch.Generator) -> torch.Tensor:
    """With probability `prob` an image gets Gaussian noise on every pixel, background too, of a
    standard deviation uniform in [0, max_sigma] grey levels, clipped to 0..255. Without it a
    network taught faint strokes (stroke width's thinning) reads a noisy background's specks as
    ink: docs/training.md, "Recipe v2"."""
    b = x.shape[0]
    u, sigma = torch.rand(b, generator=gen), torch.rand(b, generator=gen) * max_sigma
    noise = torch.randn(x.shape, generator=gen) * torch.where(u < prob, sigma, 0.0).view(b, 1, 1, 1)
    return (x + noise.to(x.device)).clamp_(0.0, 255.0)


def augment_batch(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """The recipe's augmentation of a batch (B, 1, H, W) of raw 0..255 floats: geometry, then stroke
    width, then erasing, then pixel noise (a sensor's, on the page as it is); each ingredient off (0)
    leaves the batch and the generator untouched."""
    x = geometry(x, cfg, gen)
    if cfg.stroke_prob > 0:
        x = stroke_width(x, cfg.stroke_prob, gen)
    if cfg.erase_prob > 0:
        x = random_erase(x, cfg.erase_prob, cfg.erase_area, gen)
    if cfg.noise_prob > 0:
        x = pixel_noise(x, cfg.noise_prob, cfg.noise_sigma, gen)
    return x
