"""Architectures as plain data: the layer list, output shapes and parameter counts.

Torch-free, so `cnn-edge info` answers at once; `model.py` builds the torch modules from the
same list, and a test checks both give the same parameter count.
"""
from __future__ import annotations

from dataclasses import dataclass

from .constants import CHANNELS, IMAGE_SIZE, NUM_CLASSES, SPEC_ARCH
from .errors import ConfigError


@dataclass(frozen=True)
class Conv:
    out_channels: int
    kernel: int = 3
    padding: int = 1  # "same" padding for a 3x3 kernel keeps 28x28
    stride: int = 1


@dataclass(frozen=True)
class MaxPool:
    kernel: int = 2


@dataclass(frozen=True)
class Linear:
    out_features: int


@dataclass(frozen=True)
class _NoSettings:
    """A layer with neither weights nor settings."""


class ReLU(_NoSettings):
    """max(x, 0), element-wise."""


class Flatten(_NoSettings):
    """(C, H, W) -> (C*H*W,)."""


class Softmax(_NoSettings):
    """Probabilities over the classes; closes the graph."""


Layer = Conv | ReLU | MaxPool | Flatten | Linear | Softmax

# The spec CNN of DEVELOPERS.md. Softmax closes the graph; training uses the logits before it.
SPEC = (
    Conv(32), ReLU(), Conv(32), ReLU(), MaxPool(2),
    Conv(64), ReLU(), Conv(64), ReLU(), MaxPool(2),
    Flatten(), Linear(256), ReLU(), Linear(NUM_CLASSES), Softmax(),
)

# The seed notebook's own CNN (its MNIST_CNN class): one conv per stage. 824,458 parameters.
NOTEBOOK_CNN = (
    Conv(32), ReLU(), MaxPool(2),
    Conv(64), ReLU(), MaxPool(2),
    Flatten(), Linear(256), ReLU(), Linear(NUM_CLASSES), Softmax(),
)

# The notebook's baselines from "yesterday": an MLP with one hidden layer of 128, and logistic
# regression (softmax over a linear map of the 784 pixels, 7,850 parameters).
MLP = (Flatten(), Linear(128), ReLU(), Linear(NUM_CLASSES), Softmax())
LOGREG = (Flatten(), Linear(NUM_CLASSES), Softmax())

ARCHITECTURES: dict[str, tuple[Layer, ...]] = {
    SPEC_ARCH: SPEC, "notebook-cnn": NOTEBOOK_CNN, "mlp": MLP, "logreg": LOGREG,
}
DESCRIPTIONS = {
    SPEC_ARCH: "the spec CNN: 2x (conv, conv, pool), FC 256, FC 10",
    "notebook-cnn": "the seed notebook's CNN: 2x (conv, pool), FC 256, FC 10",
    "mlp": "multilayer perceptron: 784 -> 128 (ReLU) -> 10",
    "logreg": "logistic regression: 784 -> 10",
}


def layers_for(arch: str) -> tuple[Layer, ...]:
    """The layer list of a named architecture; raises ConfigError for an unknown name."""
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise ConfigError(
            f"unknown architecture {arch!r}: choose one of {', '.join(sorted(ARCHITECTURES))}"
        ) from None


def w_out(w_in: int, k: int, p: int, s: int = 1) -> int:
    """The seed notebook's dimension calculator: w_out = (w_in - k + 2p)/s + 1."""
    return (w_in - k + 2 * p) // s + 1


@dataclass(frozen=True)
class LayerRow:
    name: str
    output_shape: tuple[int, ...]  # (C, H, W) or (features,)
    formula: str
    params: int


def layer_table(arch: str = SPEC_ARCH) -> list[LayerRow]:
    """Per-layer output shape and trainable parameters, with the formula that gives them."""
    c, h, w = CHANNELS, IMAGE_SIZE, IMAGE_SIZE
    features = None  # set once flattened
    rows: list[LayerRow] = [LayerRow("input", (c, h, w), "", 0)]
    counts: dict[str, int] = {}
    for layer in layers_for(arch):
        kind = type(layer).__name__.lower()
        counts[kind] = counts.get(kind, 0) + 1
        name = f"{kind}{counts[kind]}"
        if isinstance(layer, Conv):
            k, n = layer.kernel, layer.out_channels
            params = ((k * k * c) + 1) * n  # ((k*k*d)+1)*n: a bias per filter
            formula = f"(({k}*{k}*{c})+1)*{n}"
            h, w = w_out(h, k, layer.padding, layer.stride), w_out(w, k, layer.padding, layer.stride)
            c = n
            rows.append(LayerRow(name, (c, h, w), formula, params))
        elif isinstance(layer, MaxPool):
            h, w = w_out(h, layer.kernel, 0, layer.kernel), w_out(w, layer.kernel, 0, layer.kernel)
            rows.append(LayerRow(name, (c, h, w), "", 0))
        elif isinstance(layer, Flatten):
            features = c * h * w  # e.g. 7*7*64 = 3136 for the spec CNN
            rows.append(LayerRow(name, (features,), f"{h}*{w}*{c}", 0))
        elif isinstance(layer, Linear):
            assert features is not None, "Linear before Flatten"
            params = (features + 1) * layer.out_features  # (n+1)*m: a bias per output
            formula = f"({features}+1)*{layer.out_features}"
            features = layer.out_features
            rows.append(LayerRow(name, (features,), formula, params))
        else:  # ReLU, Softmax keep the shape
            rows.append(LayerRow(name, rows[-1].output_shape, "", 0))
    return rows


def total_params(arch: str = SPEC_ARCH) -> int:
    return sum(row.params for row in layer_table(arch))
