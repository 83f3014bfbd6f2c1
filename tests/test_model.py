import pytest
import torch

from cnn_edge.core.arch import layer_table
from cnn_edge.core.constants import MNIST_MEAN, MNIST_STD
from cnn_edge.training.model import ExportWrapper, MnistNet, Normalize


def count_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_torch_model_has_the_same_parameter_count_as_the_table():
    assert count_trainable(MnistNet()) == 870_634


def test_layer_names_match_the_info_table():
    names = {r.name for r in layer_table("spec")}
    assert set(dict(MnistNet().layers.named_children())) <= names


def test_forward_shapes_at_several_batch_sizes():
    model = MnistNet().eval()
    for b in (1, 2, 7):
        assert model(torch.zeros(b, 1, 28, 28)).shape == (b, 10)


def test_normalize_is_the_mnist_normalisation():
    x = torch.tensor([0.0, 127.0, 255.0])
    expected = (x / 255 - MNIST_MEAN) / MNIST_STD
    assert torch.allclose(Normalize()(x), expected, atol=1e-6)


def test_export_wrapper_returns_softmax_of_logits():
    torch.manual_seed(0)
    wrapper = ExportWrapper(MnistNet()).eval()
    probs, logits = wrapper(torch.rand(3, 1, 28, 28) * 255)
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-6)
    assert torch.allclose(probs, torch.softmax(logits, 1))


@pytest.mark.parametrize("arch", ["spec", "notebook-cnn", "mlp", "logreg"])
def test_torch_modules_match_the_layer_table(arch):
    from cnn_edge.core.arch import total_params
    from cnn_edge.training.model import ModelConfig

    net = MnistNet(ModelConfig(arch))
    assert count_trainable(net) == total_params(arch)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
