"""The Python API for services: `Predictor("model.onnx").predict(images)`. Torch-free.

    from cnn_edge import Predictor
    predictor = Predictor("exports/mnist_cnn.int8.onnx")
    [p] = predictor.predict(["digit.png"])
    p.label, p.confidence, p.top_k, p.flag   # flag: '' or why a person should look (runtime/flags.py)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
from PIL import Image

from ..core import contract as C
from ..core.constants import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS
from ..core.errors import ConfigError, ImageError, ModelFileError, ModelOutputError, NoDigitError
from ..core.files import ReadLimits
from ..core.flag_rule import FLAG_RULE
from .flags import row_flags
from .images import Source
from .onnx_model import NON_FINITE_ROW, OnnxModel, non_finite_rows, open_model
from .preprocess import is_no_digit, preprocess_many
from .timing import random_batch

# The batch Predictor runs once when it opens a model: more than one row, so that a model answering
# one row for many is found.
PROBE_BATCH = 3


@dataclass(frozen=True)
class Prediction:
    """One image's result: the winning class, its probability, the k most likely classes, and its
    flag ('' for a confident, MNIST-like answer, else low_confidence, unlike_mnist or both joined
    by '+': runtime/flags.py); with predict(..., return_inputs=True), the (28, 28) float32 input the
    model saw."""

    label: str
    index: int
    confidence: float
    top_k: tuple[tuple[str, float], ...]
    probabilities: np.ndarray = field(repr=False, compare=False)
    input: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    flag: str = ""


def preprocessing_of(model: OnnxModel) -> str:
    """The preprocessing the model's metadata asks for; a model without the key was made before
    it existed and gets mnist-v1 (contract.PREPROCESSING_UNSTATED).

    A model asking for a preprocessing this cnn-edge does not know is refused rather than fed
    inputs made another way."""
    name = model.metadata.get(C.META_PREPROCESSING, C.PREPROCESSING_UNSTATED)
    if name not in C.PREPROCESSINGS:
        raise ModelFileError(f"{model.path} asks for preprocessing {name!r}, which this cnn-edge does not know "
                             f"(it knows {', '.join(C.PREPROCESSINGS)}); upgrade cnn-edge")
    return name


class Predictor:
    """An ONNX model that follows the cnn-edge contract, with the preprocessing its metadata names.

    provider: auto|cpu|cuda|tensorrt|openvino; an explicit one that cannot run raises ConfigError.
    precision: OpenVINO's inference precision (f32, the default, or bf16|f16).
    preprocessing: mnist-v1|mnist-v2 in place of the one the model's metadata names (None: that one).
    flag_below: a prediction whose confidence is below this is flagged low_confidence (0: never)."""

    def __init__(self, model: Union[str, Path], *, provider: str = "auto", threads: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, spin: bool = True,
                 precision: str = "f32", preprocessing: Optional[str] = None,
                 flag_below: float = FLAG_RULE.low_confidence_below):
        C.check_preprocessing(preprocessing)
        if not 0.0 <= flag_below <= 1.0:
            raise ConfigError(f"flag_below is a probability between 0 (never) and 1, got {flag_below}")
        self.flag_below = flag_below
        self.model = open_model(Path(model), provider=provider, threads=threads, spin=spin, precision=precision)
        # The model's own is read (and refused when unknown) even when another is asked for.
        self.preprocessing = preprocessing or preprocessing_of(self.model)
        self.labels = self.model.class_labels
        self.limits = ReadLimits(max_pixels, max_file_bytes)
        if self.provider == "cpu":
            # One run on a small batch: a model whose outputs cannot be rows of the batch (one row
            # for many, another class count, logits) is refused here, before any results file is
            # opened or cluster started (the Ray driver opens the model this way). Not on a GPU
            # provider, where a batch of another size can cost an engine build; the first run checks.
            self.probabilities(random_batch(PROBE_BATCH)[:, 0])

    @property
    def provider(self) -> str:
        return self.model.provider

    def predict(self, images: Union[Source, Sequence[Source]], top_k: int = 3, *,
                return_inputs: bool = False) -> list[Prediction]:
        """Paths, PIL images or numpy arrays (one or a list) -> one Prediction each, in order, each
        with the input the model saw (Prediction.input) when `return_inputs`.

        Raises ImageError naming the first image that cannot be read; NoDigitError (an ImageError)
        when it is a picture in which mnist-v2 finds no single digit."""
        if isinstance(images, (str, Path, np.ndarray, Image.Image)):
            images = [images]
        images = list(images)
        prepared, errors = preprocess_many(images, self.limits.max_pixels, max_file_bytes=self.limits.max_file_bytes,
                                           version=self.preprocessing)
        for i, error in enumerate(errors):
            if error:
                raise (NoDigitError if is_no_digit(error) else ImageError)(f"{_name(images, i)}: {error}")
        predictions = self.predict_prepared(prepared, top_k, names=images)
        if return_inputs:
            predictions = [replace(p, input=x) for p, x in zip(predictions, prepared)]
        return predictions

    def probabilities(self, prepared: np.ndarray) -> np.ndarray:
        """(N, 28, 28) model inputs -> (N, classes) probabilities, checked against the contract
        (onnx_model.check_outputs: ModelOutputError); a row that is not finite comes back as it is."""
        x = np.ascontiguousarray(prepared, dtype=np.float32)[:, None]
        if len(x) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        probs, _ = self.model.run(x)
        return probs

    def score(self, pixels: np.ndarray, errors: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """A batch's model inputs (N, 28, 28) and each input's error ('' when it was decoded) -> each
        input's error, now also NON_FINITE_ROW where the model's answer is not a number, and the
        (M, classes) probabilities of the M inputs still without one, in order (what
        RowBatch.scored takes). The one scoring step of every engine."""
        ok = [i for i, e in enumerate(errors) if not e]
        return finite_rows(errors, ok, self.probabilities(np.asarray(pixels)[ok]))

    def predict_prepared(self, prepared: np.ndarray, top_k: int = 3, names: Sequence[Source] = ()) -> list[Prediction]:
        """Model inputs (N, 28, 28) -> one Prediction each. Raises ModelOutputError when the model's
        outputs break the contract, naming the first input (`names`, else its position) whose
        probabilities are not numbers."""
        if top_k < 1:
            raise ConfigError(f"top-k must be at least 1, got {top_k}")
        probs = self.probabilities(prepared)
        bad = np.flatnonzero(non_finite_rows(probs))
        if len(bad):
            raise ModelOutputError(f"{_name(names, bad[0])}: {NON_FINITE_ROW} ({self.model.path})")
        return list(self.to_predictions(probs, top_k, row_flags(prepared, probs, self.flag_below)))

    def to_predictions(self, probs: np.ndarray, top_k: int, flags: Sequence[str] = ()) -> Iterable[Prediction]:
        order, values = top_classes(probs, top_k)
        for row, idx, p, flag in zip(probs, order, values, flags or [""] * len(probs)):
            top = tuple((self.labels[j], float(v)) for j, v in zip(idx, p))
            yield Prediction(top[0][0], int(idx[0]), top[0][1], top, row, flag=flag)


def _name(images: Sequence[Source], i: int) -> str:
    """How an error names input i: its path, else its position."""
    image = images[i] if i < len(images) else None
    return str(image) if isinstance(image, (str, Path)) else f"image {i}"


def finite_rows(errors: Sequence[str], ok: Sequence[int], probs: np.ndarray) -> tuple[list[str], np.ndarray]:
    """`errors` of a batch, the positions `ok` that were run and their probabilities (len(ok), C) ->
    the errors with NON_FINITE_ROW where a row is not finite, and the probabilities of the rows
    still ok. Shared by Predictor.score and the local engine's scoring workers."""
    finite = ~non_finite_rows(probs)
    if finite.all():
        return list(errors), probs
    errors = list(errors)
    for i in np.flatnonzero(~finite):
        errors[ok[i]] = NON_FINITE_ROW
    return errors, probs[finite]


def top_classes(probs: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) probabilities -> the k = min(top_k, C) most likely classes of each row, best first:
    their indices (N, k) and probabilities (N, k, the input's dtype). Ties keep the lower index.
    The one ranking behind the Python API and every engine's rows."""
    k = min(top_k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)
