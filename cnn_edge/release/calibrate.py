"""Calibration: confidence that means what it says.

A temperature T is fitted on the held-out validation split (training's, the images it selected
the epoch on and never trained on) by minimising the negative log-likelihood of softmax(logits / T),
then folded into the network: the closing fc's weight and bias are divided by T, so the exported
graph's `logits` are the calibrated logits and its `probabilities` the calibrated probabilities,
and every runtime (ONNX Runtime, Node.js, the browser, int8 quantization) applies T without
knowing. The calibrated network is written as a checkpoint of its own, its JSON carrying
`temperature`; the checkpoint training wrote stays as it was.

The figures (negative log-likelihood, expected calibration error) and the fit are numpy alone, so
`validate` measures calibration without torch; only `calibrate_checkpoint` imports it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import CheckpointError, ConfigError
from ..core.files import check_writable, refuse_overwriting
from ..training.data import MnistSplit

ECE_BINS = 15  # equal-width bins of top-1 confidence, (0, 1/15], ..., (14/15, 1]
# The temperatures the fit may choose; a best T outside is clamped to the edge. Below: a split
# with (almost) every image right by a margin has its NLL fall on as T -> 0, and logits multiplied
# up that far (a smoke run's, 20x) lose the fp32 tolerance's absolute precision (1e-4) on export.
# Label smoothing 0.1 holds training confidence near 0.91 (a logit gap of 4.5 over nine others);
# sharpening that to 0.996 takes a gap of 7.7, T near 0.6: above the floor. Above the ceiling: a
# nearly uniform answer.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.25, 10.0
TEMPERATURE_DIGITS = 6  # significant digits: the T folded is the T recorded, exactly


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) over the classes, in float64. (N, C) -> (N, C)."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes under softmax(logits / temperature)."""
    z = np.asarray(logits, np.float64) / temperature
    top = z.max(1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(1))
    return float(np.mean(log_norm - z[np.arange(len(z)), labels]))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of top-1 confidence: the images binned by confidence into `bins` equal-width bins
    (lo, hi]; the sum over the bins of (share of images in it) x |accuracy - mean confidence| there."""
    probs = np.asarray(probabilities, np.float64)
    if len(probs) == 0:
        return float("nan")
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    gap = np.bincount(which, weights=correct - confidence, minlength=bins)  # per bin: sum of (correct - confidence)
    return float(np.abs(gap).sum() / len(probs))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [MIN_TEMPERATURE, MAX_TEMPERATURE] minimising nll(logits, labels, T), to
    TEMPERATURE_DIGITS significant digits.

    With b = 1/T the NLL is convex in b (a log-sum-exp of functions linear in b, less one linear in
    b), and its derivative, mean(E_softmax(b z)[z] - z_true), rises with b: the minimum is where the
    derivative crosses zero, found by bisection on log b. Deterministic, no torch."""
    z = np.asarray(logits, np.float64)
    true = z[np.arange(len(z)), labels]

    def slope(log_b: float) -> float:
        return float(np.mean((softmax(z * math.exp(log_b)) * z).sum(1) - true))

    lo, hi = -math.log(MAX_TEMPERATURE), -math.log(MIN_TEMPERATURE)  # log b
    if slope(hi) <= 0:  # still falling at the sharpest T allowed: every image right by a wide margin
        return MIN_TEMPERATURE
    if slope(lo) >= 0:
        return MAX_TEMPERATURE
    for _ in range(60):  # the bracket, log 40 = 3.7 wide in log b, shrinks below 1e-17
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if slope(mid) < 0 else (lo, mid)
    return float(f"{math.exp(-(lo + hi) / 2):.{TEMPERATURE_DIGITS}g}")


@dataclass
class CalibrationFigures:
    """How well a model's confidence matches its accuracy on a set of images: as it is, and, for a
    calibrated model, with its temperature undone (softmax(logits x T): the network before calibration)."""

    samples: int
    bins: int  # ECE's equal-width confidence bins
    temperature: float | None  # the one folded into the model (its metadata); None: not calibrated
    ece: float  # the model's own probabilities
    nll: float
    mean_confidence: float  # of the top-1 class; above the accuracy: overconfident
    ece_uncalibrated: float | None = None  # None when the model has no temperature to undo
    nll_uncalibrated: float | None = None


def calibration_figures(probabilities: np.ndarray, logits: np.ndarray, labels: np.ndarray,
                        temperature: float | None) -> CalibrationFigures:
    """The figures of a model's outputs on labelled images; `temperature`: the model's (None: not calibrated)."""
    labels = np.asarray(labels)
    raw = None if temperature is None else np.asarray(logits, np.float64) * temperature
    return CalibrationFigures(
        len(labels), ECE_BINS, temperature,
        expected_calibration_error(probabilities, labels), nll(logits, labels),
        float(np.asarray(probabilities, np.float64).max(1).mean()) if len(labels) else float("nan"),
        None if raw is None else expected_calibration_error(softmax(raw), labels),
        None if raw is None else nll(raw, labels),
    )


@dataclass
class TemperatureFit:
    """The temperature the pipeline fitted, and what it did on the split it was fitted on."""

    temperature: float
    samples: int  # validation images it was fitted on
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    source: Path  # the checkpoint training wrote (uncalibrated)
    checkpoint: Path  # the calibrated one: what export, validation, the test vectors and the release use


def fold_temperature(net, temperature: float) -> None:
    """Divide the closing fc's weight and bias by `temperature`, in place: the network's logits
    become logits / T. (The layer grammar closes every network with fc10 and nothing after it but
    the implied softmax, core/arch.py.)"""
    import torch
    from torch import nn

    closing = list(net.layers.children())[-1]
    assert isinstance(closing, nn.Linear), closing  # arch.check refuses any other closing layer
    with torch.no_grad():
        closing.weight.div_(temperature)
        if closing.bias is not None:
            closing.bias.div_(temperature)


def validation_split(checkpoint: Path, train: MnistSplit) -> MnistSplit:
    """The validation split `checkpoint` was trained beside: its TrainConfig's (val_size,
    limit_train) drawn from MNIST's training images `train`, by training's own function. Raises
    ConfigError when it trained without one."""
    from ..core.reports import from_jsonable
    from ..training.checkpoint import read_config
    from ..training.recipes import TrainConfig
    from ..training.train import _split_train_val

    meta = read_config(Path(checkpoint))
    if not isinstance(meta.get("train"), dict):
        raise ConfigError(f"{checkpoint} does not record how it was trained (no 'train' in its .json): its validation "
                          "split is unknown")
    cfg = from_jsonable(TrainConfig, meta["train"])
    _, val = _split_train_val(train, cfg) if cfg.val_size else (None, None)
    if val is None:
        raise ConfigError(f"{checkpoint} was trained without a validation split (val_size 0): there are no held-out "
                          "images to fit a temperature on; train with --val-size > 0")
    return val


def calibrate_checkpoint(checkpoint: Path, output: Path, val: MnistSplit) -> TemperatureFit:
    """Fit T on `val` with the network of `checkpoint`, fold it in, and write the calibrated
    network to `output` (a .safetensors; its .json: the source's config plus `temperature`).
    Raises CheckpointError for a checkpoint that is calibrated already (calibrating twice would
    compound), ConfigError for an output that is not a .safetensors or is one of the inputs."""
    import torch

    from ..training.checkpoint import config_path, load_checkpoint, save_checkpoint
    from ..training.train import predict_logits

    checkpoint, output = Path(checkpoint), Path(output)
    if output.suffix != ".safetensors":
        raise ConfigError(f"-o {output}: a checkpoint is written as NAME.safetensors (its config beside it as NAME.json)")
    refuse_overwriting(output, [checkpoint, config_path(checkpoint)])
    refuse_overwriting(config_path(output), [checkpoint, config_path(checkpoint)])
    check_writable(output)
    net, meta = load_checkpoint(checkpoint)
    if meta.get("temperature") is not None:
        raise CheckpointError(f"{checkpoint} is calibrated already (temperature {meta['temperature']}); "
                              "calibrate the checkpoint training wrote")
    net = net.float().to(memory_format=torch.channels_last)
    logits = predict_logits(net, val.images, batch_size=256)
    labels = np.asarray(val.labels)
    t = fit_temperature(logits, labels)
    fold_temperature(net, t)
    kept = {k: v for k, v in meta.items() if k not in ("format", "model")}  # save_checkpoint writes those
    save_checkpoint(output, net, {**kept, "temperature": t, "calibrated_on": f"{len(labels)} validation images"})
    return TemperatureFit(t, len(labels), nll(logits, labels), nll(logits, labels, t),
                          expected_calibration_error(softmax(logits), labels),
                          expected_calibration_error(softmax(logits, t), labels), checkpoint, output)
