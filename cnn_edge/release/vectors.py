"""Test vectors: MNIST test images with the outputs PyTorch computed, for any runtime to check.

One JSON file (format documented in exports/README.md) that the Python tests, the Node.js
example and the browser demo all read: `pixels` is exactly the model input (raw 0..255
intensities, row-major 28x28), `probabilities` and `logits` are PyTorch's, and `tolerance` says
how close a runtime must come. Making them needs torch; checking them does not.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core import contract as C
from ..core.constants import CLASS_LABELS, IMAGE_SIZE, NUM_CLASSES
from ..core.files import atomic_write_text, check_writable, sha256_file
from ..training.data import MnistSplit

FORMAT = "cnn-edge-test-vectors/1"
PER_CLASS = 4  # 40 vectors: every digit, small enough to read by eye and to ship
VECTORS_SEED = 2024


def pick_indices(labels: np.ndarray, per_class: int = PER_CLASS, seed: int = VECTORS_SEED) -> list[int]:
    """`per_class` test images of each digit, drawn with a fixed seed, in index order."""
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == k), per_class, replace=False) for k in range(NUM_CLASSES)]
    return sorted(int(i) for i in np.concatenate(picked))


def tolerances() -> dict:
    return {
        "fp32": {"max_abs_diff_probabilities": C.FP32_TOLERANCE, "min_top1_agreement": C.FP32_MIN_TOP1_AGREEMENT},
        "int8": {"max_abs_diff_probabilities": None, "min_top1_agreement": C.INT8_MIN_TOP1_AGREEMENT,
                 "note": "int8 outputs are judged by top-1 agreement with PyTorch; their differences are reported, not bounded"},
    }


def make_test_vectors(checkpoint: Path, test: MnistSplit, per_class: int = PER_CLASS) -> dict:
    """PyTorch's outputs for `per_class` test images of each digit (imports torch)."""
    import torch

    from ..training.checkpoint import load_checkpoint
    from ..training.model import ExportWrapper

    net, _ = load_checkpoint(Path(checkpoint))
    idx = pick_indices(test.labels, per_class)
    x = torch.from_numpy(test.images[idx].astype(np.float32))[:, None]  # (N, 1, 28, 28)
    with torch.inference_mode():
        probs, logits = ExportWrapper(net.eval())(x)
    return {
        "format": FORMAT,
        "input": {"name": C.INPUT_NAME, "dtype": C.INPUT_DTYPE, "shape": [1, *C.INPUT_SHAPE[1:]], "range": list(C.INPUT_RANGE),
                  "layout": f"pixels: {IMAGE_SIZE * IMAGE_SIZE} numbers, row-major {IMAGE_SIZE}x{IMAGE_SIZE}, fed as-is "
                            "(no scaling: it happens in the graph)"},
        "outputs": list(C.OUTPUT_NAMES),
        "class_labels": list(CLASS_LABELS),
        "reference": {"framework": "pytorch", "version": torch.__version__,
                      "checkpoint_sha256": sha256_file(Path(checkpoint)), "mnist_split": "test"},
        "tolerance": tolerances(),
        "vectors": [
            {"index": i, "label": int(test.labels[i]), "pixels": test.images[i].ravel().tolist(),
             "probabilities": [float(v) for v in p], "logits": [float(v) for v in l]}
            for i, p, l in zip(idx, probs.numpy().astype(np.float64), logits.numpy().astype(np.float64))
        ],
    }


def dumps(vectors: dict) -> str:
    """Indented JSON with one vector per line: readable, and a tenth of the fully indented size."""
    head = {k: v for k, v in vectors.items() if k != "vectors"}
    text = json.dumps(head, indent=2)[:-2]  # drop the closing "\n}"
    rows = ",\n".join("    " + json.dumps(v, separators=(",", ":")) for v in vectors["vectors"])
    return f'{text},\n  "vectors": [\n{rows}\n  ]\n}}\n'


def write_test_vectors(checkpoint: Path, output: Path, test: MnistSplit) -> Path:
    output = check_writable(Path(output))
    atomic_write_text(output, dumps(make_test_vectors(checkpoint, test)))
    return output
