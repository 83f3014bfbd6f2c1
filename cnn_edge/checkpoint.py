"""Checkpoints: weights in safetensors (never pickle) plus a JSON config beside them.

`run/model.safetensors` + `run/model.json`: the JSON holds the model config (used to rebuild
the network), the training config, and the measured figures.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import CheckpointError
from .io_utils import atomic_write_bytes, atomic_write_json
from .model import MnistNet, ModelConfig

FORMAT = "cnn-edge-checkpoint/1"


def config_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def tensors_to_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().contiguous().cpu() for k, v in tensors.items()})


def save_checkpoint(weights: Path, model: MnistNet, meta: dict) -> None:
    """Write weights, then config, each atomically. The config goes last, so a config on disk
    always describes complete weights."""
    atomic_write_bytes(weights, tensors_to_bytes(model.state_dict()))
    atomic_write_json(config_path(weights), {"format": FORMAT, "model": model.config.to_dict(), **meta})


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(Path(path).read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); re-create it with `cnn-edge train`") from None


def read_config(weights: Path) -> dict:
    path = config_path(weights)
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"config {path} is missing: a checkpoint is the .safetensors file plus its .json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"config {path} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cnn-edge checkpoint config (format {meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r})")
    return meta


def load_checkpoint(weights: Path) -> tuple[MnistNet, dict]:
    """Rebuild the network from the config and load its weights, in eval mode.

    Raises CheckpointError when a file is missing or corrupt or the weights belong to
    another architecture."""
    weights = Path(weights)
    if weights.suffix != ".safetensors":
        raise CheckpointError(f"{weights} is not a .safetensors checkpoint")
    tensors = read_tensors(weights)
    meta = read_config(weights)
    try:
        model = MnistNet(ModelConfig(**meta["model"]))
    except Exception as exc:
        raise CheckpointError(f"{config_path(weights)} names a model we cannot build: {exc}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise CheckpointError(
            f"{weights} holds weights of another architecture than {model.config.arch!r} "
            f"(first differences: {diff})"
        )
    model.load_state_dict(tensors)
    model.eval()
    return model, meta
