"""The networks in PyTorch, built from the plain layer lists of arch.py."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from ..core import arch as A
from ..core.constants import MNIST_MEAN, MNIST_STD, PIXEL_MAX, SPEC_ARCH


@dataclass(frozen=True)
class ModelConfig:
    """What rebuilds the network: the architecture's name (file names come from it) and its
    canonical layer string. A checkpoint written before layer strings existed holds only a
    built-in name, which still resolves."""

    arch: str = SPEC_ARCH
    layers: str = ""  # the canonical layer string; "" for a built-in name, filled in below

    def __post_init__(self) -> None:
        a = self.architecture()  # a bad architecture fails here, before any training
        object.__setattr__(self, "arch", a.name)
        object.__setattr__(self, "layers", a.spec)

    def architecture(self) -> A.Architecture:
        if not self.layers:
            return A.resolve_arch(self.arch)
        layers, labels = A.parse_layers(self.layers)
        return A.check(A.Architecture(self.arch, layers, labels))

    @classmethod
    def of(cls, arch: "str | A.Architecture") -> "ModelConfig":
        """A name, a layer string, a .json/.toml file or an Architecture."""
        a = A.resolve_arch(arch)
        return cls(a.name, a.spec)


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
        a = config.architecture()
        rows = A.layer_table(a)  # names (conv1, relu1, ...) match `cnn-edge info`
        for layer, row, before in zip(a.layers, rows[1:], rows):
            channels = before.output_shape[0]  # C of (C, H, W), or the features once flat
            if isinstance(layer, A.Conv):
                modules[row.name] = nn.Conv2d(channels, layer.out_channels, layer.kernel, stride=layer.stride,
                                              padding=layer.padding, groups=layer.groups, bias=layer.bias)
            elif isinstance(layer, A.BatchNorm):
                modules[row.name] = nn.BatchNorm2d(channels) if len(before.output_shape) == 3 else nn.BatchNorm1d(channels)
            elif isinstance(layer, A.ReLU):
                modules[row.name] = nn.ReLU()
            elif isinstance(layer, A.MaxPool):
                modules[row.name] = nn.MaxPool2d(layer.kernel, layer.stride or layer.kernel)
            elif isinstance(layer, A.AvgPool):
                modules[row.name] = nn.AvgPool2d(layer.kernel, layer.stride or layer.kernel)
            elif isinstance(layer, A.GlobalAvgPool):
                modules[row.name] = nn.AdaptiveAvgPool2d(1)
            elif isinstance(layer, A.Dropout):
                modules[row.name] = nn.Dropout(layer.p)
            elif isinstance(layer, A.Flatten):
                modules[row.name] = nn.Flatten()
            elif isinstance(layer, A.Linear):
                modules[row.name] = nn.Linear(channels, layer.out_features, bias=layer.bias)
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

