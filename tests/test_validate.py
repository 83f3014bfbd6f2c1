import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cnn_edge.core import contract as C
from cnn_edge.core.errors import ModelFileError, ParityError
from cnn_edge.training.data import MnistSplit
from cnn_edge.release.validate import FP32_LIMITS, check_parity, confusion_matrix, validate_model


def test_accuracy_and_parity_at_every_batch_size(tiny_onnx, tiny_run, tiny_data):
    report = validate_model(tiny_onnx, tiny_data.test, checkpoint=tiny_run)
    assert report.samples == 200 and report.accuracy > 0.5
    assert np.array(report.confusion_matrix).sum() == 200
    p = report.parity
    assert [r.batch_size for r in p.per_batch_size] == list(C.PARITY_BATCH_SIZES)
    assert p.top1_agreement == 1.0 and p.max_abs_diff_probabilities <= C.FP32_TOLERANCE
    assert p.torch_accuracy == pytest.approx(report.accuracy)
    assert report.passed
    report.raise_for_failures()


def test_validation_without_checkpoint(tiny_onnx, tiny_data):
    report = validate_model(tiny_onnx, tiny_data.test, limit=50)
    assert report.parity is None and report.samples == 50


def test_mismatched_checkpoint_fails_parity(tiny_onnx, tiny_data, tmp_path):
    from cnn_edge.training.recipes import make_config
    from cnn_edge.training.train import train

    other = train(make_config("default", epochs=1, batch_size=64, val_size=64, seed=7, limit_train=128),
                  tmp_path / "other", tiny_data, device="cpu").checkpoint
    report = validate_model(tiny_onnx, tiny_data.test, checkpoint=other)
    assert not report.passed
    assert report.parity.max_abs_diff_logits > C.FP32_TOLERANCE and report.parity.failures
    with pytest.raises(ParityError) as caught:
        report.raise_for_failures()
    assert caught.value.failures == report.parity.failures


def test_parity_collects_every_failure():
    labels = np.array([0, 1])
    ref = (np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[2.0, 0.0], [0.0, 2.0]]))
    off = (np.array([[0.1, 0.9], [0.2, 0.8]]), np.array([[0.0, 2.0], [0.0, 2.0]]))
    split = MnistSplit(np.zeros((2, 28, 28), np.uint8), labels, "test")
    report = check_parity(lambda x, bs: off, split, ref, FP32_LIMITS, batch_sizes=(1, 7))
    assert report.top1_agreement == 0.5
    assert len(report.failures) == 6  # top-1, probabilities, logits at each of 2 batch sizes


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(np.array([1, 1, 2]), np.array([1, 3, 2]))
    assert cm[1, 1] == 1 and cm[1, 3] == 1 and cm[2, 2] == 1 and cm.sum() == 3


def test_not_an_onnx_file(tmp_path, tiny_data):
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a model")
    with pytest.raises(ModelFileError, match="model.onnx"):
        validate_model(bad, tiny_data.test)


def _identity_model(path, shape):
    inp = helper.make_tensor_value_info(C.INPUT_NAME, TensorProto.FLOAT, shape)
    outs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in C.OUTPUT_NAMES]
    nodes = [helper.make_node("Identity", [C.INPUT_NAME], [name]) for name in C.OUTPUT_NAMES]
    graph = helper.make_graph(nodes, "g", [inp], outs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", C.OPSET)]), str(path))
    return path


def test_model_with_another_input_shape(tmp_path, tiny_data):
    path = _identity_model(tmp_path / "m.onnx", ["batch", 3, 32, 32])
    with pytest.raises(ModelFileError, match=r"\[batch, 3, 32, 32\]"):
        validate_model(path, tiny_data.test)


def test_model_with_a_fixed_batch_is_refused(tmp_path, tiny_data):
    path = _identity_model(tmp_path / "m.onnx", [1, 1, 28, 28])
    with pytest.raises(ModelFileError, match=r"\[1, 1, 28, 28\]"):
        validate_model(path, tiny_data.test)
