"""Architectures: the layer grammar, its files, shapes, parameters and costs, and every refusal
(through resolve_arch and `cnn-edge info`). Torch-free and fast."""
import json
import random
import re

import pytest
from typer.testing import CliRunner

from cnn_edge.cli import app
from cnn_edge.cli.app import EXIT_BAD_INPUT
from cnn_edge.core.arch import (
    MAX_ACTIVATIONS, MAX_PARAMS, MCU_BUDGET, NAMED, AvgPool, BatchNorm, Conv, Dropout, Flatten, GlobalAvgPool, Linear,
    MaxPool, ReLU, Softmax, costs, format_layers, layer_table, parse_layers, read_arch_file, resolve_arch, total_params, w_out,
)
from cnn_edge.core.errors import ConfigError
from conftest import REPO, assert_one_line_error


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


# ---------------------------------------------------------------- the grammar

ARCHS = REPO / "examples" / "archs"
runner = CliRunner()


def info(*args):
    return runner.invoke(app, ["info", *[str(a) for a in args]])


def test_the_named_architectures_are_strings_of_the_grammar():
    assert NAMED["spec"] == "conv32-conv32-pool-conv64-conv64-pool-fc256-fc10"
    for name, text in NAMED.items():
        a = resolve_arch(text)
        assert a.name == name and a.spec == text  # written canonically, and recognised by its layers


@pytest.mark.parametrize("written,canonical", [
    ("conv32-conv32-pool-conv64-conv64-pool-fc256-fc10", "conv32-conv32-pool-conv64-conv64-pool-fc256-fc10"),
    ("CONV32 Pool\tFC10", "conv32-pool-fc10"),  # case and whitespace
    ("conv32 - - pool -fc10-", "conv32-pool-fc10"),
    ("conv8-relu-pool-flatten-fc64-relu-fc10-softmax", "conv8-pool-fc64-fc10"),  # the implied layers written out
    ("conv8k3p1s1g1-fc10", "conv8-fc10"),  # the defaults written out
    ("conv8g1p0k5s2-fc10", "conv8k5s2p0-fc10"),  # options in any order; canonical k, s, p, g
    ("conv08-fc010", "conv8-fc10"),
    ("maxpool2s2-pools2-pool-fc10", "pool-pool-pool-fc10"),
    ("pool3s1-avgpool3-avgpool2s1-fc10", "pool3s1-avgpool3-avgpool2s1-fc10"),
    ("dropout.5-drop0.00001-drop0-dense10", "drop0.5-drop0.00001-drop0-fc10"),
    ("conv8-relu-conv8-fc10", "conv8-relu-conv8-fc10"),  # a written relu turns the implied ones off
    ("conv16s2-bn-conv32s2-bn-flatten-drop0.5-fc64-fc10", "conv16s2-bn-conv32s2-bn-flatten-drop0.5-fc64-fc10"),
    ("bn-conv8-gap-fc32-bn-fc10", "bn-conv8-gap-fc32-bn-fc10"),
])
def test_canonical_strings(written, canonical):
    a = resolve_arch(written)
    assert a.spec == canonical
    assert parse_layers(canonical)[0] == a.layers and format_layers(a.layers) == canonical


def test_implied_relu_flatten_softmax_and_no_bias_before_bn():
    layers, labels = parse_layers("conv8-bn-pool-conv8-fc32-bn-fc10")
    assert layers == (Conv(8, bias=False), BatchNorm(), ReLU(), MaxPool(2), Conv(8), ReLU(), Flatten(),
                      Linear(32, bias=False), BatchNorm(), ReLU(), Linear(10), Softmax())
    assert labels[2] == "relu after layer 2 bn" and labels[6] == "flatten before layer 5 fc32"
    assert labels[-1] == "softmax after layer 7 fc10"
    # Any written relu: none implied. A written flatten: none implied (it stays where written).
    assert parse_layers("conv8-relu-conv8-fc10")[0] == (Conv(8), ReLU(), Conv(8), Flatten(), Linear(10), Softmax())
    assert parse_layers("conv8-flatten-drop0.5-fc10")[0] == (Conv(8), ReLU(), Flatten(), Dropout(0.5), Linear(10), Softmax())
    # gap keeps (C, 1, 1); the implied flatten makes it flat for the fc.
    assert parse_layers("conv8-gap-fc10")[0] == (Conv(8), ReLU(), GlobalAvgPool(), Flatten(), Linear(10), Softmax())
    assert parse_layers("avgpool3s2-fc10")[0][0] == AvgPool(3, 2)


def test_bn_after_flatten_normalizes_features():
    rows = {r.name: r for r in layer_table("fc32-bn-fc10")}
    assert rows["batchnorm1"].output_shape == (32,) and rows["batchnorm1"].params == 2 * 32
    assert rows["linear1"].params == 784 * 32  # no bias: the bn's shift is the bias
    first = {r.name: r for r in layer_table("bn-conv8-fc10")}
    assert first["batchnorm1"].output_shape == (1, 28, 28) and first["conv1"].params == (9 + 1) * 8  # bn first: not before a conv


def _random_layer_string(r: random.Random) -> str:
    """A string of the grammar, most of them valid: options in any order, cases, separators,
    implied layers written or not."""
    def conv():
        k = r.choice([1, 3, 5])
        opts = [f"k{k}"] if r.random() < .5 else []
        k = k if opts else 3
        opts += [f"s{r.choice([1, 2])}"] * (r.random() < .3) + [f"p{r.randrange(k)}"] * (r.random() < .3)
        opts += [f"g{r.choice([1, 2])}"] * (r.random() < .2)
        r.shuffle(opts)
        return f"conv{r.choice([2, 4, 8])}" + "".join(opts)

    def pool():
        return r.choice(["pool", "maxpool", "avgpool"]) + r.choice(["", "2", "3"]) + r.choice(["", "s1", "s2"])

    tokens = [conv()]
    for _ in range(r.randrange(5)):
        tokens.append(r.choice([conv(), pool(), "bn", "relu", "drop" + r.choice([".5", "0.25", "0", "0.00001", "0.3333"])]))
    tokens += r.choice([[], ["gap"], ["flatten"], ["gap", "flatten"], ["flatten", "bn"], ["gap", "drop0.1"]])
    tokens += [r.choice(["fc16", "dense32", "relu", "bn", "drop0.5"]) for _ in range(r.randrange(3))]
    tokens += [r.choice(["fc10", "dense10", "FC10"])] + ["softmax"] * (r.random() < .2)
    return r.choice(["-", " ", " - ", "\t"]).join(t.upper() if r.random() < .1 else t for t in tokens)


def test_canonical_strings_are_a_fixed_point_over_random_strings():
    r, valid = random.Random(23), 0
    for _ in range(150):
        text = _random_layer_string(r)
        try:
            a = resolve_arch(text)
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("layer "), (text, exc)
            continue
        valid += 1
        canonical = a.spec
        assert parse_layers(canonical)[0] == a.layers, text
        again = resolve_arch(canonical)
        assert again.spec == canonical and again.name == a.name, text
        assert total_params(canonical) == total_params(a)
    assert valid > 100  # the generator mostly writes valid strings, so the property is exercised


# Each class of bad architecture: the string, the layer the line names, what it says.
REFUSALS = [
    ("conv32k3k5-fc10", "layer 1 conv32k3k5", "'k' is given twice"),
    ("conv32k0-fc10", "layer 1 conv32k0", "kernel 0 must be at least 1"),
    ("conv32s0-fc10", "layer 1 conv32s0", "stride 0 must be at least 1"),
    ("conv0-fc10", "layer 1 conv0", "filters 0 must be at least 1"),
    ("conv8g0-fc10", "layer 1 conv8g0", "groups 0 must be at least 1"),
    ("conv32p3-fc10", "layer 1 conv32p3", "padding 3 must be smaller than the 3x3 kernel"),
    ("conv8-conv32g3-fc10", "layer 2 conv32g3", "groups 3 must divide its 8 input channels and its 32 filters"),
    ("conv32g2-fc10", "layer 1 conv32g2", "must divide its 1 input channels"),
    ("conv8k31p0-fc10", "layer 1 conv8k31p0", "its 28x28 input (padded by 0) is smaller than the 31x31 kernel"),
    ("conv8-pool-pool-pool-pool-pool-fc10", "layer 6 pool", "its 1x1 input is smaller than the 2x2 window"),
    ("pool0-fc10", "layer 1 pool0", "window 0 must be at least 1"),
    ("pool2s0-fc10", "layer 1 pool2s0", "stride 0 must be at least 1"),
    ("drop1.0-fc10", "layer 1 drop1.0", "not a probability in [0, 1)"),
    ("drop-fc10", "layer 1 drop", "drop<probability"),
    ("conv8-fc-fc10", "layer 2 fc", "fc<outputs>"),
    ("conv-fc10", "layer 1 conv", "conv<filters>"),
    ("conv8-foo-fc10", "layer 2 foo", "not a layer"),
    ("conv8,fc10", "unknown architecture 'conv8,fc10'", "joined by '-'"),
    ("spce", "unknown architecture 'spce'", "did you mean spec?"),
    ("resnet", "unknown architecture 'resnet'", "spec, notebook-cnn, mlp, logreg, edge"),
    ("", "the architecture ''", "has no layers"),
    ("softmax", "layer 1 softmax", "fc10 must close the network (10 classes)"),
    ("conv8-bn", "layer 2 bn", "fc10 must close the network"),
    ("fc9", "layer 1 fc9", "fc10 must close the network"),
    ("fc10-relu", "layer 2 relu", "fc10 must close the network"),
    ("fc10-drop0.5", "layer 2 drop0.5", "dropout after the closing fc10"),
    ("conv8-softmax-fc10", "layer 2 softmax", "softmax closes the network: nothing may follow it"),
    ("conv8-relu-relu-fc10", "layer 3 relu", "a relu right after a relu does nothing"),
    ("conv8-flatten-flatten-fc10", "layer 3 flatten", "already flat"),
    ("fc32-conv8-fc10", "layer 2 conv8", "already flat (32 features)"),
    ("fc32-gap-fc10", "layer 2 gap", "already flat"),
    ("fc0-fc10", "layer 1 fc0", "outputs 0 must be at least 1"),
    ("fc10-flatten", "layer 1 fc10", "needs a flat input: put flatten before it"),
    ("conv9999999999-fc10", "layer 1 conv9999999999", "too large a number"),
    ("conv40960-conv40960-fc10", "layer 2 conv40960", f"above the limit of {MAX_PARAMS:,}"),
    ("fc100000-fc10", "layer 1 fc100000", "78,500,000 parameters make 79,500,010 in all"),
    ("conv16k1001p1000-gap-fc10", "layer 1 conv16k1001p1000", f"above the limit of {MAX_ACTIVATIONS:,}"),
]


@pytest.mark.parametrize("text,label,problem", REFUSALS)
def test_bad_architectures_are_refused_naming_the_layer(text, label, problem):
    with pytest.raises(ConfigError) as caught:
        resolve_arch(text)
    message = str(caught.value)
    assert message.startswith(label) and problem in message and "\n" not in message, message


@pytest.mark.parametrize("text,label,problem", REFUSALS)
def test_info_refuses_them_in_one_line(text, label, problem):
    assert_one_line_error(info("--arch", text), EXIT_BAD_INPUT, label, problem)


def test_names_are_case_free_and_resolve_to_themselves():
    assert resolve_arch(" Spec ").name == "spec" and resolve_arch("EDGE").name == "edge"
    assert resolve_arch("fc10").name == "logreg"  # the layers of a named architecture take its name
    custom = resolve_arch("conv8-pool-fc10").name
    assert custom.startswith("custom-") and custom == resolve_arch("CONV8 POOL FC10").name


# ---------------------------------------------------------------- files

def test_the_example_files():
    bn = read_arch_file(ARCHS / "tiny-bn.json")
    assert bn.name == "tiny-bn" and bn.spec == "conv16k5-bn-pool-conv32g2-bn-avgpool-drop0.25-gap-fc10"
    assert total_params(bn) == (5 * 5 * 1) * 16 + 2 * 16 + (3 * 3 * 8) * 32 + 2 * 32 + (32 + 1) * 10 == 3_130
    strided = resolve_arch(str(ARCHS / "strided.toml"))
    assert strided.name == "strided" and strided.spec == "conv16s2-bn-conv32s2-bn-flatten-drop0.5-fc64-fc10"
    assert layer_table(strided)[4].output_shape == (32, 7, 7)  # w_out(14, 3, 1, 2) = 7


@pytest.mark.parametrize("suffix,text", [
    (".json", '{"layers": "conv8-pool-fc10"}'),
    (".json", '{"layers": ["conv8", "pool", "fc10"]}'),
    (".json", '{"layers": [{"type": "Conv", "filters": 8.0}, {"type": "maxpool", "stride": 2}, {"type": "fc", "units": 10}]}'),
    (".toml", 'layers = "conv8 pool fc10"'),
    (".toml", '[[layers]]\ntype = "conv"\nfilters = 8\n[[layers]]\ntype = "pool"\n[[layers]]\ntype = "dense"\nunits = 10\n'),
])
def test_file_forms_mean_the_same_layers(tmp_path, suffix, text):
    path = tmp_path / f"Mine{suffix}"
    path.write_text(text)
    a = resolve_arch(str(path))
    assert a.name == "mine" and a.spec == "conv8-pool-fc10"  # named after the file, lower-cased


def test_a_table_with_every_option(tmp_path):
    path = tmp_path / "all.json"
    path.write_text(json.dumps({"name": "all_options", "layers": [
        {"type": "conv", "filters": 8, "kernel": 5, "stride": 2, "padding": 0, "groups": 1}, {"type": "batchnorm"},
        {"type": "avgpool", "kernel": 3, "stride": 1}, {"type": "dropout", "p": 0.00001}, {"type": "relu"},
        {"type": "gap"}, {"type": "flatten"}, {"type": "linear", "units": 10}, {"type": "softmax"}]}))
    a = read_arch_file(path)
    assert a.name == "all_options" and a.spec == "conv8k5s2p0-bn-avgpool3s1-drop0.00001-relu-gap-fc10"


@pytest.mark.parametrize("name,text,problem", [
    ("a.json", "{not json", "is not valid JSON"),
    ("a.toml", "layers = [", "is not valid TOML"),
    ("a.json", b"\xff\xfe\x00", "is not valid JSON"),
    ("a.toml", b"layers = '\xff'", "is not valid TOML"),
    ("a.json", "[1, 2]", "needs a 'layers' entry"),
    ("a.json", '{"name": "x"}', "needs a 'layers' entry"),
    ("a.json", '{"layers": "fc10", "nmae": "x"}', "unknown key 'nmae'"),
    ("a.json", '{"layers": 10}', "'layers' must be a layer string or a list of layers, not int"),
    ("a.json", '{"layers": true}', "not bool"),
    ("a.json", '{"layers": []}', "'layers' is empty"),
    ("a.json", '{"layers": ["conv8", 32, "fc10"]}', "layer 2: 32 is neither a layer token nor a table"),
    ("a.json", '{"layers": ["conv8-pool", "fc10"]}', "layer 1: 'conv8-pool' is not one layer"),
    ("a.json", '{"layers": [{"filters": 8}, "fc10"]}', "layer 1: {'filters': 8} is neither"),
    ("a.json", '{"layers": [{"type": "lstm"}, "fc10"]}', "layer 1: unknown layer type 'lstm'"),
    ("a.json", '{"layers": [{"type": "conv", "filters": 8, "dilation": 2}, "fc10"]}', "a conv takes filters, kernel, stride, padding, groups, not dilation"),
    ("a.json", '{"layers": [{"type": "relu", "inplace": true}, "fc10"]}', "a relu takes no settings, not inplace"),
    ("a.json", '{"layers": [{"type": "conv", "filters": true}, "fc10"]}', "conv filters True is not a whole number >= 1"),
    ("a.json", '{"layers": [{"type": "conv", "filters": -3}, "fc10"]}', "conv filters -3 is not a whole number >= 1"),
    ("a.json", '{"layers": [{"type": "conv", "filters": 8.5}, "fc10"]}', "8.5 is not a whole number"),
    ("a.json", '{"layers": [{"type": "conv", "filters": "8"}, "fc10"]}', "'8' is not a whole number"),
    ("a.json", '{"layers": [{"type": "conv", "filters": 8, "padding": -1}, "fc10"]}', "padding -1 is not a whole number >= 0"),
    ("a.json", '{"layers": [{"type": "conv", "kernel": 3}, "fc10"]}', "a conv needs 'filters'"),
    ("a.json", '{"layers": [{"type": "dropout", "p": 1}, "fc10"]}', "dropout p 1 is not a probability in [0, 1)"),
    ("a.json", '{"layers": [{"type": "dropout", "p": NaN}, "fc10"]}', "is not a probability"),
    ("a.json", '{"layers": [{"type": "dropout"}, "fc10"]}', "a dropout needs 'p'"),
    ("a.json", '{"layers": [{"type": "dense"}]}', "a dense needs 'units'"),
    ("a.json", '{"layers": "fc10", "name": "Spec!"}', "name 'Spec!' must be 1-40 lower-case letters"),
    ("a.json", '{"layers": "fc10", "name": 7}', "name 7 must be"),
    ("My Net.json", '{"layers": "fc10"}', "add \"name\""),
    ("a.json", '{"layers": "fc10", "name": "spec"}', "'spec' is a built-in architecture with other layers"),
    ("a.json", '{"layers": "conv8-pool-pool-pool-pool-pool-fc10"}', "layer 6 pool: its 1x1 input"),
    ("a.yaml", "layers: fc10", "must end in .json or .toml"),
])
def test_bad_files_are_refused_in_one_line(tmp_path, name, text, problem):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as caught:
        resolve_arch(str(path))
    assert problem in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
    assert_one_line_error(info("--arch", path), EXIT_BAD_INPUT, problem)


def test_missing_and_unreadable_files(tmp_path):
    assert_one_line_error(info("--arch", tmp_path / "none.json"), EXIT_BAD_INPUT, "none.json cannot be read")
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    assert_one_line_error(info("--arch", folder), EXIT_BAD_INPUT, "dir.toml cannot be read")


def test_a_file_may_repeat_a_builtin_name_with_its_own_layers(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"name": "logreg", "layers": "flatten-fc10"}')
    assert read_arch_file(path).name == "logreg"


# ---------------------------------------------------------------- costs

def test_spec_costs_by_hand():
    c = costs("spec")
    assert c.params == 870_634 and c.fp32_bytes == 4 * 870_634
    # Multiply-adds: output positions x filters x k*k*d for each conv, n*m for each fc.
    assert c.macs == (784 * 32 * 9 + 784 * 32 * 288 + 196 * 64 * 288 + 196 * 64 * 576 + 3136 * 256 + 256 * 10)
    biases = 32 + 32 + 64 + 64 + 256 + 10
    assert c.int8_weight_bytes == (870_634 - biases) + 4 * biases  # 1 byte a weight, 4 a bias
    # conv2 reads conv1's 32x28x28 output while it writes its own: the largest pair.
    assert c.peak_activation_bytes == 784 * 32 * 2 and c.peak_layer == "layer 2 conv32"


def test_costs_fold_batch_normalization_into_the_conv_before_it():
    folded, unfolded = costs("conv8-bn-gap-fc10"), costs("conv8-relu-bn-gap-fc10")
    # Folded: the conv's 72 weights and 8 biases (the bn's shift) at 4 bytes; fc10: 80 + 10*4.
    assert folded.int8_weight_bytes == 72 + 8 * 4 + 80 + 40
    # After a relu it stays: the conv keeps its bias and the bn its scale and shift in float.
    assert unfolded.int8_weight_bytes == 72 + 8 * 4 + 2 * 8 * 4 + 80 + 40
    # relu and bn work in place: the peak is conv1's input and output.
    assert folded.peak_activation_bytes == 784 + 8 * 784 and folded.peak_layer == "layer 1 conv8"


def test_the_edge_preset_fits_a_microcontroller():
    c = costs("edge")
    assert c.int8_weight_bytes <= 65_536 == MCU_BUDGET.int8_weight_bytes
    assert c.peak_activation_bytes <= 16_384 == MCU_BUDGET.peak_activation_bytes
    assert not MCU_BUDGET.misses(c) and MCU_BUDGET.misses(costs("spec")) == [
        "int8 weights 872,008 > 65,536 bytes", "peak activations 50,176 > 16,384 bytes"]


# ---------------------------------------------------------------- cnn-edge info

def test_info_prints_costs_and_the_budget():
    text = info("--arch", "edge").stdout
    c = costs("edge")
    assert text.splitlines()[0] == f"edge: {NAMED['edge']}"
    assert f"int8 weight bytes:     {c.int8_weight_bytes:,}" in text
    assert f"peak activation bytes: {c.peak_activation_bytes:,} at batch 1, int8, reached at {c.peak_layer}" in text
    assert "peak activations <= 16,384 bytes): meets it" in text and "how: int8 weight bytes:" in text
    spec = info("--arch", "spec").stdout
    assert "misses it: int8 weights 872,008 > 65,536 bytes" in spec
    assert "conv2     conv32   32x28x28       9,248     7,225,344  ((3*3*32)+1)*32" in spec


def test_info_json_has_everything(tmp_path):
    data = json.loads(info("--arch", ARCHS / "tiny-bn.json", "--json").stdout)
    assert data["arch"] == str(ARCHS / "tiny-bn.json") and data["name"] == "tiny-bn"
    assert data["spec"] == "conv16k5-bn-pool-conv32g2-bn-avgpool-drop0.25-gap-fc10"
    assert data["total_params"] == data["costs"]["params"] == 3_130
    assert data["costs"]["peak_activation_bytes"] == 16 * 28 * 28 + 16 * 14 * 14 and data["costs"]["peak_layer"] == "layer 3 pool"
    assert data["budget"] == {"int8_weight_bytes": 65_536, "peak_activation_bytes": 16_384, "fits": True, "misses": []}
    conv2 = next(r for r in data["layers"] if r["name"] == "conv2")
    assert conv2 == {"name": "conv2", "output_shape": [32, 14, 14], "formula": "(3*3*8)*32", "params": 2_304,
                     "layer": "conv32g2", "macs": 14 * 14 * 32 * 9 * 8, "source": "layer 4 conv32k3g2"}  # as the file wrote it


# ---------------------------------------------------------------- docs/architectures.md stays true

DOC = (REPO / "docs" / "architectures.md").read_text()


def _doc_sessions() -> list[tuple[str, list[str]]]:
    """Each quoted `$ cnn-edge info --arch ...` block: its argument and the lines it shows."""
    blocks = re.findall(r"```\n\$ cnn-edge info --arch (.+?)\n(.*?)```", DOC, re.DOTALL)
    return [(arg, out.splitlines()) for arg, out in blocks]


@pytest.mark.parametrize("arg,shown", _doc_sessions())
def test_the_quoted_info_outputs_are_real(arg, shown):
    arg = arg.removesuffix(" | head -1")
    result = info("--arch", arg.strip('"'))
    printed = (result.stdout + result.stderr).splitlines()
    for line in shown:
        if "..." in line:  # the page cuts long tables and the how: line
            assert line.split("...")[0] in "\n".join(printed), line
        else:
            assert line in printed, (line, printed)


def test_the_table_of_named_architectures_is_real():
    rows = re.findall(r"^\| `([a-z-]+)` \| `([^`]+)` \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$", DOC, re.MULTILINE)
    assert [r[0] for r in rows] == list(NAMED)
    for name, text, *figures in rows:
        c = costs(name)
        assert text == NAMED[name]
        assert figures == [f"{x:,}" for x in (c.params, c.macs, c.int8_weight_bytes, c.peak_activation_bytes)], name
