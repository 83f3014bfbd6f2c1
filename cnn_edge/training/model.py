"""The networks in PyTorch, built from the plain layer lists of arch.py."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from ..core import arch as A
from ..core.constants import CHANNELS, MNIST_MEAN, MNIST_STD, PIXEL_MAX, SPEC_ARCH


@dataclass(frozen=True)
class ModelConfig:
    arch: str = SPEC_ARCH  # a key of arch.ARCHITECTURES

    def __post_init__(self) -> None:
        A.layers_for(self.arch)  # an unknown name fails here, before any training


class Normalize(nn.Module):
    """Raw pixels 0..255 -> MNIST-normalised values, inside the graph.

    Folded into one multiply-add so every consumer feeds plain intensities and copies no
    constants: (x / 255 - mean) / std == x * scale + shift.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = 1.0 / (PIXEL_MAX * MNIST_STD)
        self.shift = -MNIST_MEAN / MNIST_STD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class MnistNet(nn.Module):
    """pixels (B, 1, 28, 28) float 0..255 -> logits (B, 10).

    The architecture's closing Softmax is applied by `probabilities()` and by the exported
    graph; training works on the logits (cross-entropy includes the softmax).
    """

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        self.normalize = Normalize()
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        channels, features = CHANNELS, None
        rows = A.layer_table(config.arch)[1:]  # names (conv1, relu1, ...) match `cnn-edge info`
        for layer, row in zip(A.layers_for(config.arch), rows):
            if isinstance(layer, A.Conv):
                modules[row.name] = nn.Conv2d(
                    channels, layer.out_channels, layer.kernel, stride=layer.stride, padding=layer.padding
                )
                channels = layer.out_channels
            elif isinstance(layer, A.ReLU):
                modules[row.name] = nn.ReLU()
            elif isinstance(layer, A.MaxPool):
                modules[row.name] = nn.MaxPool2d(layer.kernel)
            elif isinstance(layer, A.Flatten):
                modules[row.name] = nn.Flatten()
                features = row.output_shape[0]
            elif isinstance(layer, A.Linear):
                modules[row.name] = nn.Linear(features, layer.out_features)
                features = layer.out_features
            elif isinstance(layer, A.Softmax):
                pass  # see class docstring
        self.layers = nn.Sequential(modules)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.layers(self.normalize(pixels))


class ExportWrapper(nn.Module):
    """What the ONNX graph computes: (probabilities, logits)."""

    def __init__(self, net: MnistNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(pixels)
        return torch.softmax(logits, dim=1), logits

