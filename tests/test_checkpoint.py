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
