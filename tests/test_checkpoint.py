import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from cnn_edge.training.checkpoint import config_path, load_checkpoint
from cnn_edge.core.errors import CheckpointError


def test_round_trip(tiny_run):
    model, meta = load_checkpoint(tiny_run)
    assert meta["model"] == {"arch": "spec", "layers": "conv32-conv32-pool-conv64-conv64-pool-fc256-fc10"} and "test_accuracy" in meta
    assert not model.training


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nope.safetensors"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_corrupt_weights(tmp_path, tiny_run):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage" * 10)
    shutil.copy(config_path(tiny_run), config_path(bad))
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_checkpoint(bad)


def test_missing_config(tmp_path, tiny_run):
    lone = tmp_path / "lone.safetensors"
    shutil.copy(tiny_run, lone)
    with pytest.raises(CheckpointError, match="lone.json"):
        load_checkpoint(lone)


def test_other_architecture(tmp_path, tiny_run):
    other = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(10, 784), "fc.bias": torch.zeros(10)}, other)
    shutil.copy(config_path(tiny_run), config_path(other))
    with pytest.raises(CheckpointError, match="other.safetensors"):
        load_checkpoint(other)


def test_pickle_file_is_refused(tmp_path):
    pt = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(1)}, pt)
    with pytest.raises(CheckpointError, match="model.pt"):
        load_checkpoint(pt)


def test_config_of_unknown_format(tmp_path, tiny_run):
    ck = tmp_path / "m.safetensors"
    shutil.copy(tiny_run, ck)
    config_path(ck).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="something-else"):
        load_checkpoint(ck)


def test_a_custom_architecture_rebuilds_from_its_checkpoint_alone(tmp_path):
    """The checkpoint's config names the layers: load_checkpoint needs nothing else."""
    from cnn_edge.training.checkpoint import save_checkpoint
    from cnn_edge.training.model import MnistNet, ModelConfig

    torch.manual_seed(0)
    net = MnistNet(ModelConfig.of("conv6k5s2g1-bn-avgpool-conv12g3-bn-gap-drop0.2-fc16-bn-fc10")).eval()
    with torch.no_grad():  # statistics that are not the initial ones, so that a rebuild that lost them shows
        for bn in (net.layers.batchnorm1, net.layers.batchnorm2, net.layers.batchnorm3):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    save_checkpoint(tmp_path / "m.safetensors", net, {})
    assert json.loads((tmp_path / "m.json").read_text())["model"] == {
        "arch": net.config.arch, "layers": "conv6k5s2-bn-avgpool-conv12g3-bn-gap-drop0.2-fc16-bn-fc10"}
    assert net.config.arch.startswith("custom-")
    loaded, _ = load_checkpoint(tmp_path / "m.safetensors")
    x = torch.rand(3, 1, 28, 28) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert loaded.config == net.config


def test_a_checkpoint_from_before_layer_strings_still_loads(tmp_path):
    """Checkpoints written before layer strings existed (the release of 2026-11, among them) record
    the model as {"arch": "spec"}: a built-in name, no layer string. The committed release's
    weights with such a record load as the spec network, the same weights."""
    from cnn_edge.core.arch import NAMED
    from conftest import REPO

    released = REPO / "exports" / "mnist_cnn.safetensors"
    weights = tmp_path / "old.safetensors"
    shutil.copyfile(released, weights)
    record = json.loads(config_path(released).read_text())
    config_path(weights).write_text(json.dumps({**record, "model": {"arch": "spec"}}))
    model, _ = load_checkpoint(weights)
    assert (model.config.arch, model.config.layers) == ("spec", NAMED["spec"])
    new_model, _ = load_checkpoint(released)
    x = torch.rand(2, 1, 28, 28) * 255
    with torch.no_grad():
        assert torch.equal(model(x), new_model(x))
