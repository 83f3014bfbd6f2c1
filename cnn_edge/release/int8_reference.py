"""The integer program of int8_program.py run in NumPy: the reference the exported C must equal bit
for bit (docs/embedding-c.md says why this one).

Every value is an integer. Sums of 8-bit products are formed with float matrix products, which are
exact here: each product is at most 255 x 128 in magnitude, so a sum of up to 512 of them stays
below float32's 2**24, and any longer one (below 2**31: read_program refuses a layer whose int32
accumulator could overflow) below float64's 2**53; any summation order then gives the same integer,
at BLAS speed. Requantization is int64, as in the C.
"""
from __future__ import annotations

import numpy as np

from .int8_program import (AvgPoolStep, ConvStep, DenseStep, Int8Program, LutStep, MaxPoolStep,
                           Requant, Step)

FLOAT32_EXACT_TERMS = 512  # 512 * 255 * 128 < 2**24: float32 sums of that many 8-bit products are exact


def requantize(acc: np.ndarray, r: Requant, index: np.ndarray | slice = slice(None)) -> np.ndarray:
    """clamp(zero_point + round(acc * m / 2**shift), low, high), halves to even; `index` picks each
    element's multiplier and shift (by channel, or by window count). Computed on the magnitude; the C
    computes it on the product moved by 2**63 (unsigned): the same integer."""
    m, shift = r.multiplier[index], r.shift[index]
    product = np.asarray(acc, dtype=np.int64) * m  # |acc| < 2**31, m < 2**31: below 2**62
    magnitude = np.abs(product)
    half = np.int64(1) << (shift - 1)
    rounded = (magnitude + half) >> shift
    rounded -= (rounded & 1) * ((magnitude & (2 * half - 1)) == half)  # exactly half way: to even
    value = np.where(product < 0, -rounded, rounded)
    value += r.zero_point
    return np.clip(value, r.low, r.high)


def _lut(step: LutStep, x: np.ndarray) -> np.ndarray:
    """x: (N, *storage) codes -> the table's codes; per-channel tables index by the storage channel."""
    offset = 0 if step.input is None else -step.input.q.low
    table = step.table
    if table.shape[0] == 1:
        return table[0][x + offset]
    flat = x.reshape(len(x), -1)
    channels = table.shape[0]
    if step.input is not None and len(step.input.shape) == 3:
        channel = np.arange(flat.shape[1]) % channels  # channels last
    else:
        channel = step.input.order if step.input is not None else np.zeros(flat.shape[1], np.int64)
    return table[channel[None, :], flat + offset].reshape(x.shape)


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], pads, fill) -> np.ndarray:
    """(N, H, W, C) -> (N, OH, OW, KH, KW, C) windows, padded with `fill`."""
    t, left, b, r = pads
    x = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=fill)
    v = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(1, 2))  # (N, OH', OW', C, KH, KW)
    v = v[:, ::stride[0], ::stride[1]]
    return v.transpose(0, 1, 2, 4, 5, 3)


def _exact_matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """a (M, K) @ w (K, N) for integer matrices with |a| <= 255 and |w| <= 128, exactly, as int64:
    float32 products over column blocks of at most 512 (each sum below 2**24), the blocks summed in
    float64 (below 2**53)."""
    a32 = a if a.dtype == np.float32 else a.astype(np.float32)
    w32 = w.astype(np.float32)
    total = None
    for k in range(0, a.shape[1], FLOAT32_EXACT_TERMS):
        part = (a32[:, k:k + FLOAT32_EXACT_TERMS] @ w32[k:k + FLOAT32_EXACT_TERMS]).astype(np.float64)
        total = part if total is None else total + part
    return np.rint(total).astype(np.int64)


def _conv(step: ConvStep, x: np.ndarray) -> np.ndarray:
    n = len(x)
    ih, iw, ic = step.input.hwc
    oh, ow, oc = step.output.hwc
    g = step.groups
    icg, ocg = ic // g, oc // g
    kh, kw = step.weights.shape[1:3]
    sy, sx = step.stride
    t, left, b, r = step.pads
    centred = (x.reshape(n, ih, iw, ic) - step.input.q.zero_point).astype(np.float32)  # padding is 0 once centred
    padded = np.pad(centred, ((0, 0), (t, b), (left, r), (0, 0)))
    shifted = [padded[:, ky:ky + sy * (oh - 1) + 1:sy, kx:kx + sx * (ow - 1) + 1:sx] for ky in range(kh) for kx in range(kw)]
    acc = np.empty((n * oh * ow, oc), np.int64)
    for k in range(g):
        # the patches (N*OH*OW, KH*KW*IC/g), in the weights' (KH, KW, IC/g) order
        patches = np.concatenate([v[..., k * icg:(k + 1) * icg] for v in shifted], axis=-1).reshape(n * oh * ow, -1)
        w = step.weights[k * ocg:(k + 1) * ocg].reshape(ocg, -1)
        acc[:, k * ocg:(k + 1) * ocg] = _exact_matmul(patches, w.T)
    acc += step.bias
    return requantize(acc, step.requant, np.arange(oc)).reshape(n, -1)


def _dense(step: DenseStep, x: np.ndarray) -> np.ndarray:
    acc = _exact_matmul(x, step.weights.T) + step.bias
    return requantize(acc, step.requant, np.arange(step.weights.shape[0]))


def _maxpool(step: MaxPoolStep, x: np.ndarray) -> np.ndarray:
    ih, iw, c = step.input.hwc
    oh, ow, _ = step.output.hwc
    low = np.iinfo(np.int64).min
    win = _windows(x.reshape(len(x), ih, iw, c).astype(np.int64), step.kernel, step.stride, step.pads, low)[:, :oh, :ow]
    return win.max(axis=(3, 4)).reshape(len(x), -1)


def _avgpool(step: AvgPoolStep, x: np.ndarray) -> np.ndarray:
    ih, iw, c = step.input.hwc
    n = len(x)
    centred = x.reshape(n, ih, iw, c).astype(np.int64) - step.input.q.zero_point
    win = _windows(centred, step.kernel, step.stride, step.pads, 0)
    oh, ow = win.shape[1:3]
    acc = win.sum(axis=(3, 4))
    if step.per_count:  # the window's positions inside the image
        valid = _windows(np.ones((1, ih, iw, 1), np.int64), step.kernel, step.stride, step.pads, 0)
        index = valid.sum(axis=(3, 4))[0, :, :, 0] - 1
    else:
        index = np.zeros((oh, ow), np.int64)
    out = requantize(acc, step.requant, index[None, :, :, None])
    return out.reshape(n, -1)


KERNELS = {LutStep: _lut, ConvStep: _conv, DenseStep: _dense, MaxPoolStep: _maxpool, AvgPoolStep: _avgpool}


def run_step(step: Step, x: np.ndarray) -> np.ndarray:
    return KERNELS[type(step)](step, x)


def run_reference(program: Int8Program, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """images (N, 28, 28) uint8 -> the quantized logits (N, 10), int64 values in the model's type."""
    images = np.asarray(images)
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28), (images.dtype, images.shape)
    out = np.empty((len(images), program.output.size), np.int64)
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].reshape(-1, 28 * 28).astype(np.int64)
        for step in program.steps:
            x = run_step(step, x)
        out[start:start + batch_size] = x
    return out


def trace(program: Int8Program, image: np.ndarray) -> list[np.ndarray]:
    """Each step's output for one image (storage order): for finding the first step where two
    implementations part."""
    x = np.asarray(image, np.uint8).reshape(1, -1).astype(np.int64)
    outs = []
    for step in program.steps:
        x = run_step(step, x)
        outs.append(x[0].copy())
    return outs
