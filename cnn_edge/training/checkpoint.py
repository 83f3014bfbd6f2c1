"""Checkpoints: weights in safetensors (never pickle) plus a JSON config beside them.

`run/model.safetensors` + `run/model.json`: the JSON holds the model config (used to rebuild
the network), the training config, and the measured figures.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..core.errors import CheckpointError
from ..core.files import atomic_write_bytes, atomic_write_json
from ..core.reports import to_jsonable
from .model import MnistNet, ModelConfig

FORMAT = "cnn-edge-checkpoint/1"


def config_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_checkpoint(weights: Path, model: MnistNet, meta: dict) -> None:
    """Write weights, then config, each atomically. The config goes last, so a config on disk
    always describes complete weights."""
    from safetensors.torch import save

    atomic_write_bytes(weights, save({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}))
    atomic_write_json(config_path(weights), {"format": FORMAT, "model": to_jsonable(model.config), **meta})


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


# The training state: weights, weight average and optimizer in one safetensors file.
def training_state(model: MnistNet, opt: torch.optim.Optimizer, ema: MnistNet | None, meta: dict) -> bytes:
    """Everything a resume needs in one file, written atomically: it is the commit point of an
    epoch, so a crash at any moment leaves either the previous epoch's state or this one's."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    for idx, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return save(tensors, metadata={"meta": json.dumps(meta)})


def read_training_meta(path: Path) -> dict:
    """The meta of resume.safetensors alone (no tensors read): what a resume checks before it
    loads weights that may belong to another network."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads(f.metadata()["meta"])
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a readable training state ({exc}); start a new run") from None


def load_training_state(path: Path, model: MnistNet, opt: torch.optim.Optimizer, ema: MnistNet | None) -> dict:
    """Load resume.safetensors into the model, its weight average and the optimizer; returns its meta."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["meta"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a readable training state ({exc}); start a new run") from None
    part = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    model.load_state_dict(part("model."))
    if ema is not None:
        ema.load_state_dict(part("ema."))
    state: dict[int, dict] = {}
    for name, value in part("optim.").items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)
    return meta
