"""The ONNX model's I/O contract, declared once.

Export writes it into the graph and its metadata; validation and the runtime check models
against it. Torch-free.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .constants import CHANNELS, CLASS_LABELS, IMAGE_SIZE, MNIST_MEAN, MNIST_STD, NUM_CLASSES, PIXEL_MAX

INPUT_NAME = "pixels"
INPUT_DTYPE = "float32"
BATCH_AXIS = "batch"
# (batch, 1, 28, 28): NCHW, batch is dynamic.
INPUT_SHAPE = (BATCH_AXIS, CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
INPUT_RANGE = (0.0, PIXEL_MAX)
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_LOGITS = "logits"
OUTPUT_NAMES = (OUTPUT_PROBABILITIES, OUTPUT_LOGITS)

# Opset 18: nothing in this network needs a newer operator, and every runtime we target loads
# it. The exporter stamps IR version 10, which needs ONNX Runtime >= 1.18 (`cnn-edge validate
# --target ort-1.17` warns); the pinned onnxruntime-node/web 1.30 load IR <= 13, opset <= 26.
OPSET = 18

# Parity of an fp32 ONNX model with PyTorch: max absolute difference on every output, and top-1
# agreement. Declared here once, read by validation and reported in the model's metadata.
FP32_TOLERANCE = 1e-4
FP32_MIN_TOP1_AGREEMENT = 1.0

# An int8 model is judged against PyTorch by top-1 agreement and by how much accuracy it lost
# (percentage points); its output differences are reported, not bounded, since a few ambiguous
# digits legitimately swing. Declared next to the fp32 tolerances, read by quantize and validate.
INT8_MIN_TOP1_AGREEMENT = 0.9985
INT8_MAX_ACCURACY_DROP_PP = 0.1

# Batch sizes at which validation compares ONNX Runtime with PyTorch. Batch 1 and an odd size
# catch exports that froze the batch dimension into a Reshape.
PARITY_BATCH_SIZES = (1, 7, 256)

# Which preprocessing turns a user's image into this model's input; the runtime reads it back
# from the model's metadata and applies that one, so a model keeps the preprocessing it was
# released with. mnist-v1: MNIST's own normalisation of the bounding box of all the ink.
# mnist-v2: the one digit found first in a cluttered picture (a photo of a sheet on a desk), or
# the reason there is none; exactly mnist-v1 where the picture holds one digit-like mark and
# nothing else (runtime/finder.py).
PREPROCESSING_V1 = "mnist-v1"
PREPROCESSING_V2 = "mnist-v2"
PREPROCESSINGS = (PREPROCESSING_V1, PREPROCESSING_V2)  # what this runtime knows
# What a model made before the metadata key existed gets.
PREPROCESSING_UNSTATED = PREPROCESSING_V1
# ContractMetadata's default when none is named: mnist-v1, what the models made before mnist-v2
# declare. Export names mnist-v2 for every model it makes (release/export.py).
PREPROCESSING = PREPROCESSING_V1


def check_preprocessing(name: str | None) -> str | None:
    """A preprocessing asked for by name (None: the model's own), checked. Raises ConfigError
    naming the ones this cnn-edge knows."""
    if name is not None and name not in PREPROCESSINGS:
        from .errors import ConfigError

        raise ConfigError(f"--preprocessing {name!r} is not one this cnn-edge knows; choose "
                          f"{' or '.join(PREPROCESSINGS)} (or leave it out: the model's own)")
    return name
PREPROCESSING_TEXT = (
    "grey 28x28, digit as light ink (255) on a dark background (0), as in MNIST; "
    f"raw intensities 0..255 as float32, normalisation ((x/{PIXEL_MAX:g} - {MNIST_MEAN}) / {MNIST_STD}) "
    "happens inside the graph"
)


# Keys of the model's metadata_props. Export writes the contract's; quantize adds its settings
# and the int8 model's own accuracy; the runtime reads labels, preprocessing and quantization.
META_CONTRACT_VERSION = "cnn_edge.contract_version"
META_INPUT = "cnn_edge.input"
META_PREPROCESSING = "cnn_edge.preprocessing"
META_PREPROCESSING_TEXT = "cnn_edge.preprocessing_text"
META_OUTPUTS = "cnn_edge.outputs"
META_CLASS_LABELS = "cnn_edge.class_labels"
META_ARCHITECTURE = "cnn_edge.architecture"  # its name: spec, edge, custom-1a2b3c4d, a file's name
# Its canonical layer string (conv32-conv32-pool-...-fc10; docs/architectures.md): what the graph
# computes, in the grammar `--arch` and `cnn-edge info --arch` read.
META_LAYERS = "cnn_edge.layers"
META_TEST_ACCURACY = "cnn_edge.test_accuracy"
META_FP32_TEST_ACCURACY = "cnn_edge.fp32_test_accuracy"  # int8 models: the accuracy of their fp32 source
META_CHECKPOINT_SHA256 = "cnn_edge.checkpoint_sha256"
META_TOOL_VERSIONS = "cnn_edge.tool_versions"
META_OPSET = "cnn_edge.opset"
META_FP32_TOLERANCE = "cnn_edge.fp32_tolerance"
META_QUANTIZATION = "cnn_edge.quantization"  # present only in int8 models
META_INT8_TARGETS = "cnn_edge.int8_targets"  # int8 models: the runtimes their form is made for (validate --target names)
META_INT8_FORMAT = "cnn_edge.int8_format"  # int8 models: QDQ (portable) or QOperator (ONNX Runtime only), in words
# The temperature T fitted on the validation split and folded into the closing fc's weight and bias
# (release/calibrate.py): `logits` are the network's logits / T and `probabilities` their softmax,
# so a runtime applies it without knowing. "" (or absent, in models made before it): not calibrated.
# softmax(logits * T) gives back the uncalibrated probabilities.
META_TEMPERATURE = "cnn_edge.temperature"
CONTRACT_VERSION = "1"


def input_description() -> dict:
    """The input as JSON: name, dtype, shape (batch dynamic) and value range."""
    return {"name": INPUT_NAME, "dtype": INPUT_DTYPE, "shape": list(INPUT_SHAPE), "range": list(INPUT_RANGE)}


@dataclass(frozen=True)
class ContractMetadata:
    """What the model says about itself, stored as ONNX metadata_props (all strings)."""

    architecture: str  # the name
    layers: str  # the canonical layer string
    test_accuracy: float | None
    checkpoint_sha256: str
    tool_versions: dict[str, str]
    preprocessing: str = PREPROCESSING  # one of PREPROCESSINGS
    temperature: float | None = None  # folded into the graph; None: not calibrated

    def __post_init__(self) -> None:
        assert self.preprocessing in PREPROCESSINGS, self.preprocessing  # ours to pass, never the user's

    def to_props(self) -> dict[str, str]:
        return {
            META_CONTRACT_VERSION: CONTRACT_VERSION,
            META_INPUT: json.dumps(input_description()),
            META_PREPROCESSING: self.preprocessing,
            META_PREPROCESSING_TEXT: PREPROCESSING_TEXT,
            META_OUTPUTS: json.dumps(
                {
                    OUTPUT_PROBABILITIES: f"softmax over the {NUM_CLASSES} classes, shape (batch, {NUM_CLASSES})",
                    OUTPUT_LOGITS: f"pre-softmax scores, shape (batch, {NUM_CLASSES})"
                    + ("" if self.temperature is None else f", calibrated: the network's divided by {META_TEMPERATURE}"),
                }
            ),
            META_CLASS_LABELS: json.dumps(list(CLASS_LABELS)),
            META_ARCHITECTURE: self.architecture,
            META_LAYERS: self.layers,
            META_TEST_ACCURACY: "" if self.test_accuracy is None else f"{self.test_accuracy:.6f}",
            META_CHECKPOINT_SHA256: self.checkpoint_sha256,
            META_TOOL_VERSIONS: json.dumps(self.tool_versions, sort_keys=True),
            META_OPSET: str(OPSET),
            META_FP32_TOLERANCE: str(FP32_TOLERANCE),
            META_TEMPERATURE: "" if self.temperature is None else repr(float(self.temperature)),
        }
