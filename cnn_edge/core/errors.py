"""Typed errors for users. The CLI turns each into one line and its exit code."""
from __future__ import annotations


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type), cut to `limit` characters: native
    libraries (ONNX Runtime, Pillow) raise multi-line messages that must fit on one line."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:limit]


class CnnEdgeError(Exception):
    """Base class: a problem the user can fix. `exit_code` is what the CLI returns."""

    exit_code = 2


class DataError(CnnEdgeError):
    """MNIST is missing, unreadable, truncated or corrupt."""


class CheckpointError(CnnEdgeError):
    """A checkpoint is missing, corrupt, or of another architecture."""


class ModelFileError(CnnEdgeError):
    """An ONNX file is missing, not ONNX, or breaks the I/O contract."""


class ModelOutputError(ModelFileError):
    """A model that opened but answers outside the contract when it runs: another shape than
    (batch, classes) for the batch it was given, or a failure of ONNX Runtime itself. The run stops: every row it would make is wrong."""


class OutputPathError(CnnEdgeError):
    """An output path cannot be written."""


class ConfigError(CnnEdgeError):
    """An option has a value we cannot use."""


class ParityError(CnnEdgeError):
    """ONNX Runtime and PyTorch disagree beyond the declared tolerance."""

    exit_code = 1

    def __init__(self, failures: list[str], hint: str | None = None):
        self.failures = failures
        self.hint = hint  # what to run next, at the end of the one line
        super().__init__("parity failed: " + "; ".join(failures) + (f"; {hint}" if hint else ""))

    def __reduce__(self):  # picklable as itself (it crosses Ray, as every error here does)
        return type(self), (self.failures, self.hint)


class ImageError(ValueError):
    """An input that cannot be turned into a digit: unreadable, not an image, blank, too large.

    Not a CnnEdgeError: batch prediction turns it into that file's error row, and the Python
    API raises it naming the image."""


class NoDigitError(ImageError):
    """A picture in which preprocessing mnist-v2 finds no single digit: no mark in it is shaped
    like one, or several are (the message says which). Its row's error says so; nothing is guessed."""
