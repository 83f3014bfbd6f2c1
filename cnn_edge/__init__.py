"""cnn-edge: train the spec MNIST CNN in PyTorch, ship it as a validated ONNX model, run it anywhere.

`from cnn_edge import Predictor` is the API for Python services; it loads lazily, so importing
the package stays cheap and never pulls in torch.
"""

__version__ = "0.1.0"
__all__ = ["Predictor", "Prediction", "ImageError", "NoDigitError", "__version__"]


def __getattr__(name: str):
    if name in ("Predictor", "Prediction"):
        from .runtime import predictor

        return getattr(predictor, name)
    if name in ("ImageError", "NoDigitError"):
        from .core import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'cnn_edge' has no attribute {name!r}")
