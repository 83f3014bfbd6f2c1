"""cnn-edge: train the spec MNIST CNN in PyTorch, ship it as a validated ONNX model."""

__version__ = "0.1.0"
