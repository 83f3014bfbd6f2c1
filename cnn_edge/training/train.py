"""Training: whole uint8 tensors batched from memory, checkpoints each epoch, resumable.

Determinism: each epoch draws its shuffle and augmentation from a generator seeded by
(seed, epoch), and the learning rate is a pure function of the step (recipes.lr_at), so a
resumed run continues exactly where an uninterrupted one would be.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import CheckpointError, ConfigError
from ..core.files import atomic_write_bytes, check_writable
from ..core.reports import to_jsonable
from .augment import augment_batch
from .checkpoint import load_checkpoint, load_training_state, read_training_meta, save_checkpoint, training_state
from .data import MnistData, MnistSplit, split_indices
from .model import MnistNet, ModelConfig
from .recipes import DEVICES, TrainConfig, lr_at, sized_for


class WeightAverage:
    """Exponential moving average of the weights (Polyak averaging).

    The average generalises slightly better than the last weights at no cost in the network;
    its decay ramps up from 0 so the first steps are not dominated by the random init. Batch
    normalization's running mean and variance are buffers, not parameters: they are averaged
    alike (the counter of batches seen is copied), else the average would evaluate with the
    initial statistics (mean 0, variance 1) and be far off (docs/training.md)."""

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
        for avg, cur in zip(self.model.buffers(), model.buffers()):
            if avg.is_floating_point():
                avg.lerp_(cur, 1 - d)
            else:
                avg.copy_(cur)


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but PyTorch sees no CUDA device; use --device cpu")
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}: choose {', '.join(DEVICES)}")
    return torch.device(device)


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


@dataclass(frozen=True)
class StepProgress:
    """What the progress callback gets after every step."""

    epoch: int  # 1-based
    epochs: int
    step: int  # 1-based, within the epoch
    steps: int
    loss: float  # running mean over the epoch
    accuracy: float
    images_per_second: float


@dataclass
class TrainResult:
    """The training summary: the selected checkpoint, every epoch, and the one test-set figure."""

    checkpoint: Path  # the selected model (best validation accuracy, else the last epoch)
    best_epoch: int  # the selected epoch, 1-based
    best_val_accuracy: float | None  # None without a validation split
    test_accuracy: float
    test_samples: int
    device: str  # where it trained
    history: list[EpochResult]


ProgressFn = Callable[[StepProgress], None]


def _split_train_val(train: MnistSplit, cfg: TrainConfig) -> tuple[MnistSplit, MnistSplit | None]:
    images, labels = train.images, train.labels
    if cfg.limit_train:
        images, labels = images[: cfg.limit_train], labels[: cfg.limit_train]
    if cfg.val_size <= 0:
        return MnistSplit(images, labels, train.source), None
    train_idx, val_idx = split_indices(len(labels), cfg.val_size)
    return (MnistSplit(images[train_idx], labels[train_idx], train.source),
            MnistSplit(images[val_idx], labels[val_idx], train.source))


@dataclass
class _Run:
    """The state a run carries from epoch to epoch (and through resume.safetensors)."""

    model: MnistNet
    opt: torch.optim.Optimizer
    ema: WeightAverage | None
    history: list[EpochResult]
    start_epoch: int = 0
    best_val_accuracy: float = -1.0
    best_epoch: int = 0

    @property
    def released(self) -> MnistNet:
        """What is evaluated, selected and exported: the weight average when there is one."""
        return self.ema.model if self.ema is not None else self.model


def _start(cfg: TrainConfig, out_dir: Path, dev: torch.device, model_config: ModelConfig, resume: bool) -> _Run:
    """A fresh run, or the one resume.safetensors in out_dir holds (only with `resume`)."""
    torch.manual_seed(cfg.seed)
    model = MnistNet(model_config).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    run = _Run(model, opt, WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None, [])
    state_path = out_dir / "resume.safetensors"
    if not resume:
        if state_path.exists():
            raise CheckpointError(f"{out_dir} already holds a training run: pass --resume to continue it, or choose another --out")
        return run
    if not state_path.exists():
        raise CheckpointError(f"nothing to resume: {state_path} does not exist; drop --resume to start a new run")
    # Settings first, weights after: the weights of another network would not load.
    meta = read_training_meta(state_path)
    saved_model = _model_config(meta.get("model"), state_path)
    if saved_model != model_config:
        raise CheckpointError(f"{state_path} was made with architecture {saved_model.arch} ({saved_model.layers}), not "
                              f"{model_config.arch} ({model_config.layers}); resume with the same --arch or start afresh in another --out")
    if _with_defaults(meta.get("train")) != to_jsonable(cfg):
        raise CheckpointError(
            f"{state_path} was made with other settings ({meta.get('train')}); resume with the same options or start afresh in another --out"
        )
    meta = load_training_state(state_path, model, opt, run.ema.model if run.ema else None)
    run.history = [EpochResult(**h) for h in meta["history"]]
    run.start_epoch, run.best_val_accuracy, run.best_epoch = meta["epoch"], meta["best_val_accuracy"], meta["best_epoch"]
    return run


def _with_defaults(saved: object) -> object:
    """A saved TrainConfig with the fields it lacks at their defaults: a state written before a
    field existed trained as its default (off, for the augmentation ingredients) does."""
    if not isinstance(saved, dict):
        return saved
    return {**{k: v for k, v in to_jsonable(TrainConfig()).items() if k not in saved}, **saved}


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Batches per epoch: the last, partial one too, unless it would hold a single image (its
    image is left for the next epoch's shuffle): batch normalization cannot train on one value
    per channel (after global average pooling, or once flat)."""
    return max(1, images // batch_size if images % batch_size == 1 else math.ceil(images / batch_size))


def _model_config(saved: object, state_path: Path) -> ModelConfig:
    """The model config a training state was made with. One written before layer strings holds
    only a built-in name ({"arch": "spec"}); it rebuilds to the same config as today's."""
    try:
        return ModelConfig(**saved)  # type: ignore[arg-type]
    except Exception as exc:  # a state we cannot rebuild is one line, as a checkpoint's is
        raise CheckpointError(f"{state_path} names a model we cannot build ({saved!r}: {exc}); start afresh in another --out") from None


def _train_epoch(run: _Run, cfg: TrainConfig, epoch: int, split: MnistSplit, dev: torch.device,
                 progress: ProgressFn | None) -> EpochResult:
    """One pass over the shuffled training images; returns its figures (val_accuracy still None)."""
    n = len(split)
    steps = steps_per_epoch(n, cfg.batch_size)
    images = torch.from_numpy(split.images).to(dev)  # (N, 28, 28) uint8, whole set in memory
    labels = torch.from_numpy(split.labels).to(dev)
    run.model.train()
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen).to(dev)
    t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
    for b in range(steps):
        idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
        x = images[idx].unsqueeze(1).float()  # (B, 1, 28, 28), raw 0..255
        if cfg.augment:
            x = augment_batch(x, cfg, gen)
        x = x.contiguous(memory_format=torch.channels_last)
        y = labels[idx]
        step = epoch * steps + b
        for group in run.opt.param_groups:
            group["lr"] = lr_at(cfg, step, steps * cfg.epochs)
        logits = run.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        if run.ema is not None:
            run.ema.update(run.model, step)
        seen += len(idx)
        loss_sum += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
        if progress:
            progress(StepProgress(epoch + 1, cfg.epochs, b + 1, steps, loss_sum / seen, correct / seen,
                                  seen / (time.perf_counter() - t0)))
    seconds = time.perf_counter() - t0
    return EpochResult(epoch + 1, loss_sum / seen, correct / seen, None, seconds, seen / seconds)


def _commit_epoch(run: _Run, result: EpochResult, cfg: TrainConfig, model_config: ModelConfig, out_dir: Path,
                  dev: torch.device) -> None:
    """Record the epoch, select on validation accuracy (without a validation split the last epoch
    wins), and write resume state, last.* and, when it improved, model.*."""
    run.history.append(result)
    improved = result.val_accuracy is None or result.val_accuracy > run.best_val_accuracy
    if improved:
        run.best_val_accuracy = result.val_accuracy if result.val_accuracy is not None else -1.0
        run.best_epoch = result.epoch
    meta = {"train": to_jsonable(cfg), "epoch": result.epoch, "best_epoch": run.best_epoch,
            "best_val_accuracy": run.best_val_accuracy, "history": to_jsonable(run.history),
            "device": str(dev), "torch": torch.__version__}
    state = training_state(run.model, run.opt, run.ema.model if run.ema else None,
                           {**meta, "model": to_jsonable(model_config)})
    atomic_write_bytes(out_dir / "resume.safetensors", state)
    save_checkpoint(out_dir / "last.safetensors", run.model, meta)  # the raw (not averaged) weights
    if improved:
        save_checkpoint(out_dir / "model.safetensors", run.released, {**meta, "selected_epoch": result.epoch})


def train(
    cfg: TrainConfig,
    out_dir: Path,
    data: MnistData,
    *,
    device: str = "auto",
    model_config: ModelConfig = ModelConfig(),
    resume: bool = False,
    progress: ProgressFn | None = None,
    on_epoch_end: Callable[[MnistNet, EpochResult], None] | None = None,
) -> TrainResult:
    """Train on data.train, writing `out_dir/last.*` each epoch and `out_dir/model.*` for the
    selected model, whose accuracy on data.test is measured once, at the end. A validation split
    too large for the images there are is shrunk (recipes.sized_for, whose note the CLI prints;
    the checkpoint records the size used)."""
    cfg, _ = sized_for(cfg, len(data.train))
    dev = pick_device(device)
    out_dir = Path(out_dir)
    check_writable(out_dir / "last.json")  # before training, not after an epoch
    train_split, val_split = _split_train_val(data.train, cfg)
    run = _start(cfg, out_dir, dev, model_config, resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    for epoch in range(run.start_epoch, cfg.epochs):
        result = _train_epoch(run, cfg, epoch, train_split, dev, progress)
        if val_split is not None:
            result.val_accuracy = accuracy(run.released, val_split, dev)
        _commit_epoch(run, result, cfg, model_config, out_dir, dev)
        if on_epoch_end:
            on_epoch_end(run.released, result)

    best_path = out_dir / "model.safetensors"
    best, best_meta = load_checkpoint(best_path)
    test_acc = accuracy(best.to(dev), data.test, dev)
    save_checkpoint(best_path, best.cpu(), {**best_meta, "test_accuracy": test_acc, "test_samples": len(data.test)})
    best_val = best_meta["best_val_accuracy"]
    return TrainResult(best_path, best_meta["selected_epoch"], None if best_val < 0 else best_val, test_acc,
                       len(data.test), best_meta["device"], run.history)
