"""Commands that train: `info`, `train`, `pipeline`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..arch import ARCHITECTURES
from ..artifacts import RELEASE_DIR
from ..constants import SPEC_ARCH
from ..recipes import DEFAULT_RECIPE, DEVICES, RECIPES, TrainConfig
from .app import DataDirOpt, JsonOpt, QuietOpt, app, choices, handle_errors, print_json, stage_printer

Arch = choices("Arch", ARCHITECTURES)
Recipe = choices("Recipe", RECIPES)
Device = choices("Device", DEVICES)

ArchOpt = typer.Option(SPEC_ARCH, "--arch", help="Architecture: spec (the 4-conv spec CNN), notebook-cnn, mlp or logreg.")
RecipeOpt = typer.Option(DEFAULT_RECIPE, help="'default' (best recipe) or 'seed' (the notebook: Adam 1e-3, batch 100, 3 epochs).")
EpochsOpt = typer.Option(None, help="Epochs (default: the recipe's).")
BatchOpt = typer.Option(None, "--batch-size", help="Batch size (default: the recipe's).")
LrOpt = typer.Option(None, help="Peak learning rate (default: the recipe's).")
SeedOpt = typer.Option(TrainConfig().seed, help="Random seed: same seed, same device, same result.")
DeviceOpt = typer.Option(DEVICES[0], help="Where PyTorch trains: auto (CUDA when there is a GPU), cpu or cuda.")
LimitOpt = typer.Option(None, "--limit-train", help="Train on the first N images only (smoke runs).")
ValOpt = typer.Option(None, "--val-size", help="Images held out of the training set for model selection (default: the recipe's; 0: none, the last epoch wins).")
ResumeOpt = typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch.")


def train_config(recipe: Recipe, **overrides) -> TrainConfig:
    """The recipe with the options given on the command line (None keeps the recipe's)."""
    from ..recipes import make_config

    return make_config(recipe.value, **overrides)


@app.command()
@handle_errors
def info(arch: Arch = typer.Option(SPEC_ARCH, "--arch", help="Architecture to describe."), as_json: bool = JsonOpt):
    """Per-layer output shape and trainable parameters, with the formulas."""
    from ..arch import layer_table

    rows = layer_table(arch.value)
    total = sum(r.params for r in rows)
    if as_json:
        print_json({"arch": arch.value, "layers": rows, "total_params": total})
        return
    typer.echo(f"{'layer':<10} {'output shape':<14} {'parameters':>10}  formula")
    for r in rows:
        shape = "x".join(str(d) for d in r.output_shape)
        typer.echo(f"{r.name:<10} {shape:<14} {r.params:>10,}  {r.formula}")
    typer.echo(f"{'total':<10} {'':<14} {total:>10,}  trainable parameters")
    typer.echo("conv: ((k*k*d)+1)*n  (kernel k, input channels d, filters n); fc: (n+1)*m; w_out = (w_in - k + 2p)/s + 1")


@app.command("train")
@handle_errors
def train_cmd(
    out: Path = typer.Option(Path("runs/latest"), "--out", help="Run folder: checkpoints land here."),
    arch: Arch = ArchOpt, recipe: Recipe = RecipeOpt, epochs: Optional[int] = EpochsOpt,
    batch_size: Optional[int] = BatchOpt, lr: Optional[float] = LrOpt, seed: int = SeedOpt, device: Device = DeviceOpt,
    data_dir: Optional[str] = DataDirOpt, limit_train: Optional[int] = LimitOpt,
    val_size: Optional[int] = ValOpt, resume: bool = ResumeOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Train a network (--arch); writes OUT/model.safetensors (+ .json) and OUT/last.* each epoch."""
    from ..data import load_mnist
    from ..model import ModelConfig
    from ..train import train
    from .progress import training_bar

    model_config = ModelConfig(arch.value)
    cfg = train_config(recipe, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, limit_train=limit_train,
                       val_size=val_size)
    data = load_mnist(data_dir)
    with training_bar(enabled=not quiet) as bar:
        result = train(cfg, out, data, device=device.value, model_config=model_config, resume=resume, progress=bar)
    if as_json:
        print_json(result)
    else:
        typer.echo(f"checkpoint {result.checkpoint} (epoch {result.best_epoch}): test accuracy {result.test_accuracy:.2%}")


@app.command()
@handle_errors
def pipeline(
    out_dir: Path = typer.Option(RELEASE_DIR, "--out-dir", help="Where the released files go."),
    run_dir: Path = typer.Option(Path("runs/pipeline"), "--run-dir", help="Training run folder."),
    arch: Arch = ArchOpt, recipe: Recipe = RecipeOpt, epochs: Optional[int] = EpochsOpt,
    batch_size: Optional[int] = BatchOpt, lr: Optional[float] = LrOpt, seed: int = SeedOpt, device: Device = DeviceOpt,
    data_dir: Optional[str] = DataDirOpt, limit_train: Optional[int] = LimitOpt,
    val_size: Optional[int] = ValOpt, resume: bool = ResumeOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Train, export, validate, quantize; release into --out-dir only when parity holds."""
    from ..data import load_mnist
    from ..pipeline import PipelineConfig, run_pipeline
    from .progress import training_bar

    train_cfg = train_config(recipe, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, limit_train=limit_train,
                             val_size=val_size)
    cfg = PipelineConfig(train_cfg, run_dir, out_dir, arch=arch.value, device=device.value, resume=resume)
    data = load_mnist(data_dir)  # the one read of MNIST: every stage gets these arrays
    with training_bar(enabled=not quiet) as bar:
        summary = run_pipeline(cfg, data, progress=bar, on_stage=stage_printer(not (as_json or quiet)))
    if as_json:
        print_json(summary)
        return
    v, q = summary.validation, summary.quantization
    typer.echo(f"released {', '.join(f.name for f in summary.files)} and the model card in {out_dir}: "
               f"test accuracy {v.accuracy:.2%}, parity top-1 {v.parity.top1_agreement:.2%}, "
               f"max abs diff {v.parity.max_abs_diff_probabilities:.2g}; int8 test accuracy "
               f"{q.test.int8_accuracy:.2%}, {q.size_ratio:.1%} of the fp32 size")
