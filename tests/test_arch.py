import pytest

from cnn_edge.core.arch import layer_table, total_params, w_out
from cnn_edge.core.errors import ConfigError


def test_spec_has_870634_trainable_parameters():
    assert total_params("spec") == 870_634


def test_layer_shapes_follow_the_dimension_calculator():
    rows = {r.name: r for r in layer_table("spec")}
    assert rows["conv1"].output_shape == (32, 28, 28)  # padding 1 keeps the size
    assert rows["maxpool1"].output_shape == (32, 14, 14)
    assert rows["maxpool2"].output_shape == (64, 7, 7)
    assert rows["flatten1"].output_shape == (3136,)  # 7*7*64
    assert rows["linear1"].params == (3136 + 1) * 256
    assert rows["conv2"].params == ((3 * 3 * 32) + 1) * 32
    assert rows["softmax1"].output_shape == (10,)


def test_w_out_matches_the_notebook_formula():
    assert w_out(28, 3, 1) == 28
    assert w_out(28, 3, 0) == 26
    assert w_out(28, 2, 0, 2) == 14


def test_unknown_architecture_names_the_choices():
    with pytest.raises(ConfigError, match="'resnet'.*spec"):
        layer_table("resnet")


@pytest.mark.parametrize("arch,params", [("spec", 870_634), ("notebook-cnn", 824_458), ("mlp", 101_770), ("logreg", 7_850)])
def test_every_architecture_counts_its_parameters(arch, params):
    assert total_params(arch) == params


def test_baselines_by_the_formulas():
    rows = {r.name: r for r in layer_table("mlp")}
    assert rows["flatten1"].output_shape == (784,)  # 28*28*1
    assert rows["linear1"].params == (784 + 1) * 128 and rows["linear2"].params == (128 + 1) * 10
    assert [r.params for r in layer_table("logreg") if r.params] == [(784 + 1) * 10]
    nb = {r.name: r for r in layer_table("notebook-cnn")}
    assert nb["maxpool2"].output_shape == (64, 7, 7) and nb["conv2"].params == ((3 * 3 * 32) + 1) * 64
