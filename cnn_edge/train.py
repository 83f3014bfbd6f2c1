"""Training: whole uint8 tensors batched from memory, checkpoints each epoch, resumable.

Determinism: each epoch draws its shuffle and augmentation from a generator seeded by
(seed, epoch), and the learning rate is a pure function of the step, so a resumed run
continues exactly where an uninterrupted one would be.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import load_checkpoint, save_checkpoint
from .constants import DEFAULT_VAL_SIZE
from .data import MnistSplit, load_mnist, split_indices
from .errors import CheckpointError, ConfigError
from .io_utils import atomic_write_bytes, check_writable
from .model import MnistNet, ModelConfig


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = "default"
    epochs: int = 24
    batch_size: int = 128
    lr: float = 3e-3  # peak learning rate of the schedule
    weight_decay: float = 1e-2  # AdamW's decoupled decay; 0 is plain Adam
    schedule: str = "onecycle"  # "onecycle" (warm-up then cosine) or "constant"
    warmup_fraction: float = 0.2
    augment: bool = True
    max_rotation: float = 10.0  # degrees
    max_shift: float = 2.0  # pixels
    max_scale: float = 0.1  # +-10% size
    label_smoothing: float = 0.0
    ema_decay: float = 0.999  # evaluate and release an exponential moving average of the weights; 0: off
    val_size: int = DEFAULT_VAL_SIZE  # taken from the training set for model selection
    seed: int = 0
    limit_train: int | None = None  # use only the first N training images (smoke runs)

    def to_dict(self) -> dict:
        return asdict(self)


RECIPES = {
    # The original notebook: Adam 1e-3, batch 100, 3 epochs, no augmentation, all 60k images.
    "seed": TrainConfig(
        recipe="seed", epochs=3, batch_size=100, lr=1e-3, weight_decay=0.0, schedule="constant",
        augment=False, val_size=0, ema_decay=0.0,
    ),
    "default": TrainConfig(),
}


class WeightAverage:
    """Exponential moving average of the weights (Polyak averaging).

    The average generalises slightly better than the last weights at no cost in the network;
    its decay ramps up from 0 so the first steps are not dominated by the random init."""

    def __init__(self, model: MnistNet, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: MnistNet, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for avg, cur in zip(self.model.parameters(), model.parameters()):
            avg.lerp_(cur, 1 - d)


def make_config(recipe: str = "default", **overrides) -> TrainConfig:
    """A recipe with the options the user gave (None means: keep the recipe's value)."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    assert not unknown, unknown
    cfg = replace(RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None})
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if not cfg.lr > 0:
        raise ConfigError(f"--lr must be positive, got {cfg.lr}")
    return cfg


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but PyTorch sees no CUDA device; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}: choose auto, cpu or cuda")
    return torch.device(device)


def lr_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate of a step: linear warm-up from lr/25, then cosine down to ~0."""
    if cfg.schedule == "constant":
        return cfg.lr
    warm = max(1, int(total_steps * cfg.warmup_fraction))
    if step < warm:
        return cfg.lr * (0.04 + 0.96 * step / warm)
    progress = (step - warm) / max(1, total_steps - warm)
    return cfg.lr * (1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * progress)))


def augment_batch(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Small random rotations, scalings and shifts of a whole batch at once (B, 1, 28, 28)."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(cfg.max_rotation)
    scale = 1 + (torch.rand(b, generator=gen) * 2 - 1) * cfg.max_scale
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * cfg.max_shift * 2 / x.shape[-1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def predict_logits(model: MnistNet, images: np.ndarray, batch_size: int = 512, device: str | torch.device = "cpu") -> np.ndarray:
    """Logits (N, 10) of uint8 images (N, 28, 28)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size])).to(device).float().unsqueeze(1)
        out.append(model(x.contiguous(memory_format=torch.channels_last)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def accuracy(model: MnistNet, split: MnistSplit, device: str | torch.device = "cpu") -> float:
    if len(split) == 0:
        return float("nan")
    return float((predict_logits(model, split.images, device=device).argmax(1) == split.labels).mean())


@dataclass
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    train_accuracy: float
    val_accuracy: float | None
    seconds: float
    images_per_second: float


@dataclass
class TrainResult:
    checkpoint: Path  # the selected model (best validation accuracy, else the last epoch)
    history: list[EpochResult]
    test_accuracy: float
    best_epoch: int


ProgressFn = Callable[[dict], None]


def _split_train_val(train: MnistSplit, cfg: TrainConfig) -> tuple[MnistSplit, MnistSplit | None]:
    images, labels = train.images, train.labels
    if cfg.limit_train:
        images, labels = images[: cfg.limit_train], labels[: cfg.limit_train]
    if cfg.val_size <= 0:
        return MnistSplit(images, labels, train.source), None
    train_idx, val_idx = split_indices(len(labels), cfg.val_size)
    return (MnistSplit(images[train_idx], labels[train_idx], train.source),
            MnistSplit(images[val_idx], labels[val_idx], train.source))


def _state_blob(model: MnistNet, opt: torch.optim.Optimizer, ema: "WeightAverage | None", meta: dict) -> bytes:
    """Everything a resume needs in one file, written atomically: it is the commit point of an
    epoch, so a crash at any moment leaves either the previous epoch's state or this one's."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.model.state_dict().items()})
    for idx, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return save(tensors, metadata={"meta": json.dumps(meta)})


def _load_state(path: Path, model: MnistNet, opt: torch.optim.Optimizer, ema: "WeightAverage | None") -> dict:
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
        ema.model.load_state_dict(part("ema."))
    state: dict[int, dict] = {}
    for name, value in part("optim.").items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)
    return meta


def train(
    cfg: TrainConfig,
    out_dir: Path,
    data_dir: str | None = None,
    device: str = "auto",
    model_config: ModelConfig = ModelConfig(),
    resume: bool = False,
    progress: ProgressFn | None = None,
    on_epoch_end: Callable[[MnistNet, EpochResult], None] | None = None,
) -> TrainResult:
    """Train, writing `out_dir/last.*` each epoch and `out_dir/model.*` for the selected model."""
    dev = pick_device(device)
    out_dir = Path(out_dir)
    check_writable(out_dir / "last.json")  # before loading data or training, not after an epoch
    last = out_dir / "last.safetensors"
    best_path = out_dir / "model.safetensors"
    train_full = load_mnist("train", data_dir)
    test = load_mnist("test", data_dir)
    train_split, val_split = _split_train_val(train_full, cfg)

    torch.manual_seed(cfg.seed)
    model = MnistNet(model_config).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[EpochResult] = []
    start_epoch, best_acc, best_epoch = 0, -1.0, 0
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    state_path = out_dir / "resume.safetensors"
    if resume:
        if not state_path.exists():
            raise CheckpointError(f"nothing to resume: {state_path} does not exist; drop --resume to start a new run")
        meta = _load_state(state_path, model, opt, ema)
        if meta["train"] != cfg.to_dict() or meta["model"] != model_config.to_dict():
            raise CheckpointError(
                f"{state_path} was made with other settings ({meta['train']}); resume with the same options or start afresh in another --out"
            )
        history = [EpochResult(**h) for h in meta["history"]]
        start_epoch, best_acc, best_epoch = meta["epoch"], meta["best_val_accuracy"], meta["best_epoch"]
    elif state_path.exists():
        raise CheckpointError(f"{out_dir} already holds a training run: pass --resume to continue it, or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)

    n = len(train_split)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    images = torch.from_numpy(train_split.images).to(dev)  # (N, 28, 28) uint8, whole set in memory
    labels = torch.from_numpy(train_split.labels).to(dev)

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen).to(dev)
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = images[idx].unsqueeze(1).float()  # (B, 1, 28, 28), raw 0..255
            if cfg.augment:
                x = augment_batch(x, cfg, gen)
            x = x.contiguous(memory_format=torch.channels_last)
            y = labels[idx]
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, epoch * steps_per_epoch + b, total_steps)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update(model, epoch * steps_per_epoch + b)
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            if progress:
                progress({"epoch": epoch + 1, "epochs": cfg.epochs, "step": b + 1, "steps": steps_per_epoch,
                          "loss": loss_sum / seen, "accuracy": correct / seen,
                          "images_per_second": seen / (time.perf_counter() - t0)})
        seconds = time.perf_counter() - t0
        released = ema.model if ema is not None else model  # what is evaluated, selected and exported
        val_acc = accuracy(released, val_split, dev) if val_split is not None else None
        result = EpochResult(epoch + 1, loss_sum / seen, correct / seen, val_acc, seconds, seen / seconds)
        history.append(result)
        # Select on validation accuracy; without a validation split the last epoch wins.
        improved = val_acc is None or val_acc > best_acc
        if improved:
            best_acc, best_epoch = (val_acc if val_acc is not None else -1.0), epoch + 1
        meta = {"train": cfg.to_dict(), "epoch": epoch + 1, "best_epoch": best_epoch,
                "best_val_accuracy": best_acc, "history": [asdict(h) for h in history],
                "device": str(dev), "torch": torch.__version__}
        atomic_write_bytes(state_path, _state_blob(model, opt, ema, {**meta, "model": model_config.to_dict()}))
        save_checkpoint(last, model, meta)  # the raw (not averaged) weights, as a plain checkpoint
        if improved:
            save_checkpoint(best_path, released, {**meta, "selected_epoch": epoch + 1})
        if on_epoch_end:
            on_epoch_end(released, result)

    best, best_meta = load_checkpoint(best_path)
    test_acc = accuracy(best.to(dev), test, dev)
    save_checkpoint(best_path, best.cpu(), {**best_meta, "test_accuracy": test_acc, "test_samples": len(test)})
    return TrainResult(best_path, history, test_acc, best_meta["selected_epoch"])
