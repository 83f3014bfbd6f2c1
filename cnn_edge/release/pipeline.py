"""The main job: train, calibrate, export, validate, quantize, and release into exports/ only when all passed.

`run_pipeline` takes the MNIST data (read once, by the caller) and hands the splits to every
stage; its summary is a PipelineSummary, written as `pipeline.json` (schema in docs/reports.md)
and rendered as the model card.
"""
from __future__ import annotations

import datetime
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..core import artifacts
from ..core import contract as C
from ..core.arch import Architecture, arch_option, resolve_arch, total_params
from ..core.constants import SPEC_ARCH
from ..core.errors import ParityError, first_line
from ..core.files import check_writable
from ..core.machine import machine_description
from ..training.checkpoint import config_path
from ..training.data import MnistData
from ..training.model import ModelConfig
from ..training.recipes import TrainConfig, held_out_size, sized_for
from ..training.train import ProgressFn, _split_train_val, train
from .calibrate import TemperatureFit, calibrate_checkpoint
from .publish import SCHEMA, PipelineSummary, copy_in, publish
from .export import export_onnx, tool_versions
from .quantize import Int8GuardError, QuantConfig, quantize_model
from .validate import validate_model
from .vectors import write_test_vectors

@dataclass(frozen=True)
class PipelineConfig:
    train: TrainConfig
    run_dir: Path  # training run; models are exported and validated here before release
    out_dir: Path  # where the release goes (exports/)
    arch: str = SPEC_ARCH  # a name, a layer string or a .json/.toml file (core/arch.py)
    device: str = "auto"
    quant: QuantConfig = QuantConfig()
    resume: bool = False  # continue (or re-release) the run in run_dir
    # Fit a temperature on training's validation split and fold it into the released network
    # (release/calibrate.py); off: the network as trained.
    calibrate: bool = True
    # A release needs the int8 model within the int8 tolerances; compare only records it, since an
    # undertrained network flips more near-ties than the tolerance allows.
    require_int8_parity: bool = True

    def __post_init__(self) -> None:
        resolve_arch(self.arch)  # a bad architecture is refused here: before MNIST is read, before any training

    @property
    def architecture(self) -> Architecture:
        """The checked architecture; its name names the released files."""
        return resolve_arch(self.arch)


def reproduce_command(cfg: PipelineConfig, data_source: str) -> str:
    """The exact command line that trains this configuration again from scratch. A network that is
    not built in is given by its layer string: the same layers and weights, though a file's `name`
    is not carried (the files are then named custom-<8 hex digits>)."""
    t = cfg.train
    args = ["cnn-edge pipeline", f"--recipe {t.recipe}", f"--seed {t.seed}", f"--epochs {t.epochs}",
            f"--batch-size {t.batch_size}", f"--lr {t.lr:g}", f"--val-size {t.val_size}", f"--device {cfg.device}"]
    a = cfg.architecture
    if a.name != SPEC_ARCH:
        args.insert(1, f"--arch {arch_option(a.name, a.spec)}")
    if t.limit_train:
        args.append(f"--limit-train {t.limit_train}")
    if not cfg.calibrate:
        args.append("--no-calibrate")
    args.append(f"--data-dir {shlex.quote(data_source)}")
    return " ".join(args)


def sized_for_data(cfg: PipelineConfig, train_images: int) -> tuple[PipelineConfig, list[str]]:
    """`cfg` with its held-out splits sized for `train_images` (recipes.held_out_size decides), and
    a note for each it shrank, for the caller to print. Training's validation split as
    recipes.sized_for makes it; the int8 guard holds out that split (the one training selected
    on), or its own when there is none; calibration draws from the rest, at most what a small
    (smoke) data set has. run_pipeline applies it too, so a library call takes what the CLI takes;
    applied twice it changes nothing."""
    train_cfg, note = sized_for(cfg.train, train_images)
    notes = [note] if note else []
    guard = train_cfg.val_size
    if not guard:
        held = held_out_size(train_images, cfg.quant.guard_size, what="the int8 accuracy guard", option=None)
        guard, notes = held.size, notes + ([held.note] if held.note else [])
    quant = replace(cfg.quant, guard_size=guard, calibration=min(cfg.quant.calibration, train_images - guard))
    return replace(cfg, train=train_cfg, quant=quant), notes


CALIBRATED_CHECKPOINT = "calibrated.safetensors"  # in the run folder, beside training's model.safetensors


def calibrate_run(cfg: PipelineConfig, checkpoint: Path, data: MnistData) -> tuple[Path, TemperatureFit | None, str | None]:
    """The checkpoint to export and release: training's `checkpoint` with a temperature fitted on
    its validation split folded in (run_dir/calibrated.safetensors), and the fit; or `checkpoint`
    itself, no fit, and why not (--no-calibrate, or no validation split to fit on)."""
    if not cfg.calibrate:
        return checkpoint, None, "--no-calibrate"
    _, val = _split_train_val(data.train, cfg.train)  # the split training selected on, made by training's own function
    if val is None:
        return checkpoint, None, "no validation split to fit a temperature on (--val-size 0)"
    fit = calibrate_checkpoint(checkpoint, cfg.run_dir / CALIBRATED_CHECKPOINT, val)
    return fit.checkpoint, fit, None


def run_pipeline(cfg: PipelineConfig, data: MnistData, *, progress: ProgressFn | None = None,
                 on_epoch: Callable | None = None, on_stage: Callable[[str], None] = lambda stage: None) -> PipelineSummary:
    """Train, calibrate, export, validate (with robustness), quantize, write test vectors, release.
    Everything after calibration uses the calibrated network. Raises ParityError (and
    releases nothing) when the exported model does not match PyTorch. When no int8 model meets the
    int8 criterion (the guard's, then the int8 validation's; unless cfg.require_int8_parity is off),
    the fp32 model is released alone and summary.int8_not_released says why. Held-out splits too large for
    data.train are shrunk first (sized_for_data); the summary records the sizes used."""
    cfg, _ = sized_for_data(cfg, len(data.train))
    a = cfg.architecture
    arch, run_dir, out_dir = a.name, cfg.run_dir, cfg.out_dir  # file names come from the name
    check_writable(out_dir / artifacts.fp32_file(arch))  # fail before an hour of training, not after
    on_stage("train")
    trained = train(cfg.train, run_dir, data, device=cfg.device, model_config=ModelConfig.of(a), resume=cfg.resume,
                    progress=progress, on_epoch_end=on_epoch)
    if cfg.calibrate:
        on_stage("calibrate")
    checkpoint, calibration, not_calibrated = calibrate_run(cfg, trained.checkpoint, data)
    on_stage("export")
    staged_fp32, staged_int8 = run_dir / artifacts.fp32_file(arch), run_dir / artifacts.int8_file(arch)
    exported = export_onnx(checkpoint, staged_fp32)
    on_stage("validate")
    validation = validate_model(staged_fp32, data.test, checkpoint=checkpoint, robustness=True)
    validation.raise_for_failures(checkpoint)
    staged_vectors = write_test_vectors(checkpoint, run_dir / artifacts.VECTORS_FILE, data.test)
    on_stage("quantize")
    # A trained model is never thrown away: when no int8 model meets parity, even with layers kept in
    # float, the fp32 release goes out alone, and the summary, the card and the exit code say why.
    quant = int8_validation = None
    int8_not_released = None
    try:
        quant = quantize_model(staged_fp32, staged_int8, cfg.quant, data.train, data.test)
        int8_validation = validate_model(staged_int8, data.test, checkpoint=checkpoint, robustness=True)
        if cfg.require_int8_parity:
            int8_validation.raise_for_failures(checkpoint)
    except (Int8GuardError, ParityError) as exc:
        int8_not_released = first_line(exc, 500)

    on_stage("release")
    files = copy_in(out_dir, {
        artifacts.fp32_file(arch): (staged_fp32, "ONNX model, fp32, self-contained"),
        f"{artifacts.model_name(arch)}.safetensors": (checkpoint, "PyTorch weights (safetensors)"
                                                      + (", temperature folded in" if calibration else "")),
        f"{artifacts.model_name(arch)}.json": (config_path(checkpoint), "checkpoint config: model, recipe, history"
                                               + (", temperature" if calibration else "")),
        **({} if int8_not_released else
           {artifacts.int8_file(arch): (staged_int8, "ONNX model, int8 (static, ONNX Runtime quantization)")}),
        artifacts.side_file(arch, artifacts.VECTORS_FILE): (staged_vectors, "test vectors: MNIST test images and PyTorch's outputs (exports/README.md)"),
    })
    if int8_not_released:  # an int8 model of an earlier release must not sit beside this fp32 one
        (out_dir / artifacts.int8_file(arch)).unlink(missing_ok=True)
    summary = PipelineSummary(SCHEMA, arch, total_params(a), cfg.train, trained, exported, C.input_description(),
                              validation, quant, int8_validation, machine_description(), tool_versions(),
                              reproduce_command(cfg, data.source), datetime.date.today().isoformat(), files,
                              int8_not_released, layers=a.spec, calibration=calibration, not_calibrated=not_calibrated)
    return publish(out_dir, summary)
