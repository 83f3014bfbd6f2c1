"""The names of released files: the one place that knows how a release folder is laid out. Torch-free.

The spec CNN releases `mnist_cnn.onnx`, `mnist_cnn.int8.onnx`, `mnist_cnn.safetensors` (+ `.json`),
`test_vectors.json`, `pipeline.json` and `MODEL_CARD.md`. A baseline architecture releases
`mnist_<arch>.*`, its side files prefixed too (`mnist_mlp.pipeline.json`), so that releasing it
into the same folder never overwrites the spec model.
"""
from __future__ import annotations

from pathlib import Path

from .constants import SPEC_ARCH

SPEC_MODEL_NAME = "mnist_cnn"
RELEASE_DIR = Path("exports")  # where `pipeline` releases and what `bench` and `demo` read by default
VECTORS_FILE = "test_vectors.json"
SUMMARY_FILE = "pipeline.json"
CARD_FILE = "MODEL_CARD.md"


def model_name(arch: str) -> str:
    """File stem of a released model: mnist_cnn for the spec CNN, mnist_<arch> for the others."""
    return SPEC_MODEL_NAME if arch == SPEC_ARCH else "mnist_" + arch.replace("-", "_")


def side_file(arch: str, name: str) -> str:
    """pipeline.json, MODEL_CARD.md, test_vectors.json of a release: plain for the spec CNN,
    prefixed (mnist_mlp.pipeline.json) for a baseline."""
    return name if arch == SPEC_ARCH else f"{model_name(arch)}.{name}"


def fp32_file(arch: str) -> str:
    return f"{model_name(arch)}.onnx"


def int8_file(arch: str) -> str:
    return f"{model_name(arch)}.int8.onnx"


def stem_of(model: Path) -> str:
    """mnist_cnn for mnist_cnn.onnx and mnist_cnn.int8.onnx."""
    return Path(model).name.split(".")[0]


def vectors_beside(model: Path) -> Path:
    """mnist_mlp.test_vectors.json for mnist_mlp[.int8].onnx when a baseline was released there,
    else the folder's test_vectors.json."""
    model = Path(model)
    own = model.parent / f"{stem_of(model)}.{VECTORS_FILE}"
    return own if own.is_file() else model.parent / VECTORS_FILE


def checkpoint_beside(model: Path) -> Path:
    """The released checkpoint of a model: exports/mnist_cnn.safetensors for exports/mnist_cnn[.int8].onnx."""
    model = Path(model)
    return model.with_name(stem_of(model) + ".safetensors")


def released_models(folder: Path = RELEASE_DIR, arch: str = SPEC_ARCH) -> list[Path]:
    """The fp32 and int8 models of a release that exist on disk."""
    return [p for p in (Path(folder) / fp32_file(arch), Path(folder) / int8_file(arch)) if p.is_file()]
