"""Commands that train: `info`, `train`, `pipeline`."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from ..core.arch import NAMED
from ..core.artifacts import RELEASE_DIR
from ..core.constants import SPEC_ARCH
from ..core.errors import ConfigError
from ..release.quantize import INT8_TARGETS, QuantConfig
from ..training.recipes import DEFAULT_RECIPE, DEFAULT_RECIPE_FOR, DEVICES, RECIPES, TrainConfig
from .app import EXIT_FP32_ONLY, DataDirOpt, JsonOpt, QuietOpt, app, choices, handle_errors, plural, print_json, stage_printer

Recipe = choices("Recipe", RECIPES)
Device = choices("Device", DEVICES)

ArchOpt = typer.Option(SPEC_ARCH, "--arch", help=f"Architecture: a name ({', '.join(NAMED)}), a layer string such as conv32-conv32-pool-conv64-conv64-pool-fc256-fc10, or a .json/.toml file (docs/architectures.md).")
_E = RECIPES["edge"]
RecipeOpt = typer.Option(None, help=f"Training recipe: 'default' ({RECIPES['default'].epochs} epochs), 'edge' ({_E.epochs} epochs, batch {_E.batch_size}, lr {_E.lr:g}), 'v2' (default + shear, stroke width and pixel noise, {RECIPES['v2'].epochs} epochs) or 'seed' (the notebook: Adam 1e-3, batch 100, 3 epochs). Default: the architecture's ({', '.join(f'{r} for {a}' for a, r in DEFAULT_RECIPE_FOR.items())}; {DEFAULT_RECIPE} for any other); docs/training.md.")
EpochsOpt = typer.Option(None, help="Epochs (default: the recipe's).")
BatchOpt = typer.Option(None, "--batch-size", help="Batch size (default: the recipe's).")
LrOpt = typer.Option(None, help="Peak learning rate (default: the recipe's).")
SeedOpt = typer.Option(TrainConfig().seed, help="Random seed: same seed, same device, same result.")
DeviceOpt = typer.Option(DEVICES[0], help="Where PyTorch trains: auto (CUDA when there is a GPU), cpu or cuda.")
LimitOpt = typer.Option(None, "--limit-train", help="Train on the first N images only (smoke runs).")
ValOpt = typer.Option(None, "--val-size", help="Images held out of the training set for model selection (default: the recipe's; 0: none, the last epoch wins).")
ResumeOpt = typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch.")


def notes_then(notes, then=None, *, enabled: bool = True):
    """A progress callback that first prints the library's notes on what it sized for the data
    (held-out splits) on stderr, once, then calls `then`. The notes wait for the first step, after
    the library's checks of the output paths: bad input stays one line. Quiet: no notes."""
    pending = [n for n in notes if n] if enabled else []

    def callback(*args, **kwargs):
        while pending:
            typer.echo(f"note: {pending.pop(0)}", err=True)
        return then(*args, **kwargs) if then is not None else None

    return callback


@app.command()
@handle_errors
def info(arch: str = typer.Option(SPEC_ARCH, "--arch", help="Architecture to describe: a name, a layer string or a .json/.toml file."), as_json: bool = JsonOpt):
    """Per layer: output shape, parameters and multiply-adds, with the formulas; then the totals,
    fp32 and int8 sizes, the peak activation memory and the microcontroller budget."""
    from ..core.arch import COSTS_METHOD, MCU_BUDGET, costs, layer_table, resolve_arch

    a = resolve_arch(arch)
    rows, c = layer_table(a), costs(a)
    misses = MCU_BUDGET.misses(c)
    if as_json:
        print_json({"arch": arch, "name": a.name, "spec": a.spec, "layers": rows, "total_params": c.params,
                    "costs": {**dataclasses.asdict(c), "method": COSTS_METHOD},
                    "budget": {**dataclasses.asdict(MCU_BUDGET), "fits": not misses, "misses": misses}})
        return
    shapes = ["x".join(str(d) for d in r.output_shape) for r in rows]
    wn, wt, ws = (max(len(x) for x in col) for col in ([r.name for r in rows] + ["layer"], [r.layer for r in rows] + ["token"], shapes))
    typer.echo(f"{a.name}: {a.spec}")
    typer.echo(f"{'layer':<{wn}}  {'token':<{wt}}  {'output shape':<{ws}}  {'parameters':>10}  {'MACs':>12}  formula")
    for r, shape in zip(rows, shapes):
        typer.echo(f"{r.name:<{wn}}  {r.layer:<{wt}}  {shape:<{ws}}  {r.params:>10,}  {r.macs:>12,}  {r.formula}".rstrip())
    typer.echo(f"{'total':<{wn}}  {'':<{wt}}  {'':<{ws}}  {c.params:>10,}  {c.macs:>12,}  trainable parameters, multiply-adds per image")
    typer.echo("conv: ((k*k*d)+1)*n  (kernel k, input channels d = C/groups, filters n; no +1 before bn); fc: (n+1)*m; "
               "w_out = (w_in - k + 2p)/s + 1")
    typer.echo(f"fp32 size:             {c.fp32_bytes:,} bytes (4 per parameter)")
    typer.echo(f"int8 weight bytes:     {c.int8_weight_bytes:,}")
    typer.echo(f"peak activation bytes: {c.peak_activation_bytes:,} at batch 1, int8, reached at {c.peak_layer}")
    verdict = "meets it" if not misses else "misses it: " + "; ".join(misses)
    typer.echo(f"microcontroller budget (int8 weights <= {MCU_BUDGET.int8_weight_bytes:,} bytes, peak activations <= "
               f"{MCU_BUDGET.peak_activation_bytes:,} bytes): {verdict}")
    typer.echo(f"how: {COSTS_METHOD}")


@app.command("train")
@handle_errors
def train_cmd(
    out: Path = typer.Option(Path("runs/latest"), "--out", help="Run folder: checkpoints land here."),
    arch: str = ArchOpt, recipe: Optional[Recipe] = RecipeOpt, epochs: Optional[int] = EpochsOpt,
    batch_size: Optional[int] = BatchOpt, lr: Optional[float] = LrOpt, seed: int = SeedOpt, device: Device = DeviceOpt,
    data_dir: Optional[str] = DataDirOpt, limit_train: Optional[int] = LimitOpt,
    val_size: Optional[int] = ValOpt, resume: bool = ResumeOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
):
    """Train a network (--arch); writes OUT/model.safetensors (+ .json) and OUT/last.* each epoch."""
    from ..training.data import load_mnist
    from ..training.model import ModelConfig
    from ..training.recipes import make_config, sized_for
    from ..training.train import train
    from .progress import training_progress

    model_config = ModelConfig.of(arch)
    cfg = make_config(recipe and recipe.value, arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, limit_train=limit_train,
                      val_size=val_size)
    data = load_mnist(data_dir)
    cfg, note = sized_for(cfg, len(data.train))  # train() would size it alike: here, to say so
    with training_progress(epochs=cfg.epochs, enabled=not quiet) as tp:
        result = train(cfg, out, data, device=device.value, model_config=model_config, resume=resume,
                       progress=notes_then([note], tp and tp.step, enabled=not quiet), on_epoch_end=tp and tp.epoch_end)
    if as_json:
        print_json(result)
    else:
        typer.echo(f"checkpoint {result.checkpoint} (epoch {result.best_epoch}): test accuracy {result.test_accuracy:.2%}")


@app.command()
@handle_errors
def pipeline(
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help=f"Where the released files go (default: RUN_DIR/release; --out-dir {RELEASE_DIR} replaces the committed release)."),
    run_dir: Path = typer.Option(Path("runs/pipeline"), "--run-dir", help="Training run folder."),
    arch: str = ArchOpt, recipe: Optional[Recipe] = RecipeOpt, epochs: Optional[int] = EpochsOpt,
    batch_size: Optional[int] = BatchOpt, lr: Optional[float] = LrOpt, seed: int = SeedOpt, device: Device = DeviceOpt,
    data_dir: Optional[str] = DataDirOpt, limit_train: Optional[int] = LimitOpt,
    val_size: Optional[int] = ValOpt, quiet: bool = QuietOpt, as_json: bool = JsonOpt,
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last finished epoch (a finished run is released again without training)."),
    speed_seconds: float = typer.Option(QuantConfig().speed_seconds, "--speed-seconds", help="Seconds the fp32 and int8 models are timed per batch size for the report and the card (0: not timed)."),
    int8_target: str = typer.Option(QuantConfig().target, "--int8-target", help=f"The runtimes the released int8 model is made for: {' or '.join(INT8_TARGETS)} (cnn-edge quantize --help)."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Fit a temperature on the validation split so that confidence means what it says, and fold it into the released network (docs/export-validation.md#calibration)."),
    requantize: bool = typer.Option(False, "--requantize", help="Train nothing: quantize the fp32 model released in --out-dir again with the current int8 settings, check int8 parity, then replace its int8 model, pipeline.json and model card."),
):
    """Train, export, validate, quantize; release into --out-dir only when parity holds."""
    from ..release.pipeline import PipelineConfig, run_pipeline, sized_for_data
    from ..training.data import load_mnist
    from ..training.recipes import make_config
    from .progress import ESTIMATE_AFTER_STEPS, status, training_progress

    if requantize:
        from ..release.requantize import requantize_release

        if out_dir is None:
            raise ConfigError("--requantize needs --out-dir: the release folder to re-quantize")
        with status(f"re-quantizing the release in {out_dir}", enabled=not (as_json or quiet)):
            summary = requantize_release(out_dir, load_mnist(data_dir), QuantConfig.for_target(int8_target, speed_seconds=speed_seconds))
        if as_json:
            print_json(summary)
        else:
            q = summary.quantization
            typer.echo(f"re-quantized {q.int8_model}: "
                       f"test accuracy {q.test.int8_accuracy:.2%} (fp32 {q.test.fp32_accuracy:.2%}), "
                       f"{q.size_ratio:.1%} of the fp32 size; pipeline.json and the model card rewritten")
        return

    train_cfg = make_config(recipe and recipe.value, arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                            limit_train=limit_train, val_size=val_size)
    out_dir = out_dir if out_dir is not None else run_dir / "release"
    cfg = PipelineConfig(train_cfg, run_dir, out_dir, arch=arch, device=device.value, resume=resume,
                         quant=QuantConfig.for_target(int8_target, speed_seconds=speed_seconds), calibrate=calibrate)
    data = load_mnist(data_dir)  # the one read of MNIST: every stage gets these arrays
    cfg, notes = sized_for_data(cfg, len(data.train))  # run_pipeline would size it alike: here, to say so
    train_cfg = cfg.train
    if not (as_json or quiet):
        images = (train_cfg.limit_train or len(data.train)) - train_cfg.val_size
        a = cfg.architecture
        typer.echo(f"plan: train {a.name}{'' if a.name in NAMED else f' ({a.spec})'} for {plural(train_cfg.epochs, 'epoch')} on {images:,} images (recipe "
                   f"{train_cfg.recipe}, device {device.value}), "
                   + ("calibrate its confidence on the validation split, " if calibrate and train_cfg.val_size else "")
                   + "export to ONNX, validate against PyTorch and on transformed digits, quantize to "
                   f"int8 and validate that, write test vectors, then release into {out_dir}; an estimate of the "
                   f"duration follows {ESTIMATE_AFTER_STEPS} steps past the warm-up", err=True)
    on_stage = stage_printer(not (as_json or quiet))
    with training_progress(epochs=train_cfg.epochs, enabled=not quiet) as tp:
        summary = run_pipeline(cfg, data, progress=notes_then(notes, tp and tp.step, enabled=not quiet),
                               on_epoch=tp and tp.epoch_end,
                               on_stage=on_stage)
    on_stage("done")
    if as_json:
        print_json(summary)
    else:
        _say_released(summary, out_dir)
    if summary.int8_not_released:
        raise typer.Exit(EXIT_FP32_ONLY)


def _say_released(summary, out_dir: Path) -> None:
    v, q = summary.validation, summary.quantization
    int8 = (f"int8 NOT released: {summary.int8_not_released}" if summary.int8_not_released else
            f"int8 test accuracy {q.test.int8_accuracy:.2%}, {q.size_ratio:.1%} of the fp32 size")
    c = v.calibration
    calibrated = (f"; confidence calibrated: temperature {summary.calibration.temperature:g}, test ECE "
                  f"{c.ece_uncalibrated:.2%} without it, {c.ece:.2%} with it" if summary.calibration else
                  f"; confidence not calibrated ({summary.not_calibrated})")
    typer.echo(f"released {', '.join(f.name for f in summary.files)} and the model card in {out_dir}: "
               f"test accuracy {v.accuracy:.2%}, parity top-1 {v.parity.top1_agreement:.2%}, "
               f"max abs diff {v.parity.max_abs_diff_probabilities:.2g}; {int8}{calibrated}")
