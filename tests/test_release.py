"""The released model in exports/, on the real MNIST test set (when CNN_EDGE_DATA names it)."""
import json

import onnx
import pytest

from cnn_edge.core import contract as C
from cnn_edge.core.artifacts import RELEASE_DIR, SUMMARY_FILE
from cnn_edge.training.data import load_split
from cnn_edge.core.files import sha256_file
from cnn_edge.core.references import NOTEBOOK_RECIPE_SPEC_ACCURACY
from cnn_edge.release.validate import validate_model
from conftest import REPO, real_mnist

EXPORTS = REPO / RELEASE_DIR
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(real_mnist() is None, reason="set CNN_EDGE_DATA to the real MNIST folder"),
]


def test_released_model_meets_its_targets_and_matches_its_checkpoint():
    report = validate_model(EXPORTS / "mnist_cnn.onnx", load_split("test", real_mnist()),
                            checkpoint=EXPORTS / "mnist_cnn.safetensors")
    assert report.samples == 10_000
    assert report.accuracy >= NOTEBOOK_RECIPE_SPEC_ACCURACY  # at least the notebook recipe (the 99.6% target is reported, see README)
    assert report.parity.top1_agreement == 1.0
    assert report.parity.max_abs_diff_probabilities <= C.FP32_TOLERANCE and report.parity.max_abs_diff_logits <= C.FP32_TOLERANCE
    assert [r.batch_size for r in report.parity.per_batch_size] == list(C.PARITY_BATCH_SIZES)
    # The figures the model card quotes are the ones measured now.
    released = json.loads((EXPORTS / SUMMARY_FILE).read_text())
    assert released["validation"]["accuracy"] == pytest.approx(report.accuracy)
    assert f"{report.accuracy:.2%}" in (EXPORTS / "MODEL_CARD.md").read_text()


def test_released_model_names_its_checkpoint():
    props = {p.key: p.value for p in onnx.load(str(EXPORTS / "mnist_cnn.onnx")).metadata_props}
    assert props[C.META_CHECKPOINT_SHA256] == sha256_file(EXPORTS / "mnist_cnn.safetensors")
    assert float(props[C.META_TEST_ACCURACY]) >= NOTEBOOK_RECIPE_SPEC_ACCURACY


def test_released_int8_model_meets_its_targets():
    from cnn_edge.runtime.compat import is_int8_model

    int8 = EXPORTS / "mnist_cnn.int8.onnx"
    assert is_int8_model(int8)
    assert int8.stat().st_size <= 0.27 * (EXPORTS / "mnist_cnn.onnx").stat().st_size
    report = validate_model(int8, load_split("test", real_mnist()), checkpoint=EXPORTS / "mnist_cnn.safetensors")
    assert report.parity.kind == "int8" and report.passed
    assert report.parity.top1_agreement >= C.INT8_MIN_TOP1_AGREEMENT
    assert report.parity.accuracy_drop_pp <= C.INT8_MAX_ACCURACY_DROP_PP
