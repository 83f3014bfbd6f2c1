"""The main job: train, export, validate, and release into exports/ only when all passed."""
from __future__ import annotations

import json
import shlex
from dataclasses import asdict, replace
from pathlib import Path

from . import contract as C
from .arch import total_params
from .card import machine_description, render_card
from .checkpoint import config_path, read_config
from .data import load_mnist, resolve_data_dir
from .io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text, check_writable, sha256_file
from .model import ModelConfig
from .train import TrainConfig, TrainResult, train
from .quantize import QuantConfig, quant_report, quantize_model
from .validate import validate_model
from .vectors import write_test_vectors

MODEL_NAME = "mnist_cnn"  # the released spec CNN


def model_name(arch: str) -> str:
    """File stem of a released model: mnist_cnn for the spec CNN, mnist_<arch> for the others,
    so releasing a baseline never overwrites the spec model."""
    return MODEL_NAME if arch == "spec" else "mnist_" + arch.replace("-", "_")


def side_file(arch: str, name: str) -> str:
    """pipeline.json, MODEL_CARD.md, test_vectors.json of a release: plain for the spec CNN,
    prefixed (mnist_mlp.pipeline.json) for a baseline released into the same folder."""
    return name if arch == "spec" else f"{model_name(arch)}.{name}"


def reproduce_command(cfg: TrainConfig, data_dir: str | None, device: str) -> str:
    """The exact command line that trains this configuration again from scratch."""
    args = ["cnn-edge pipeline", f"--recipe {cfg.recipe}", f"--seed {cfg.seed}", f"--epochs {cfg.epochs}",
            f"--batch-size {cfg.batch_size}", f"--lr {cfg.lr:g}", f"--val-size {cfg.val_size}", f"--device {device}"]
    if cfg.limit_train:
        args.append(f"--limit-train {cfg.limit_train}")
    folder = resolve_data_dir(data_dir)  # the flag, else $CNN_EDGE_DATA, made explicit
    args.append(f"--data-dir {shlex.quote(str(folder))}" if folder else "")
    return " ".join(a for a in args if a)


def run_pipeline(
    cfg: TrainConfig,
    run_dir: Path,
    out_dir: Path,
    data_dir: str | None,
    device: str = "auto",
    model_config: ModelConfig = ModelConfig(),
    resume: bool = False,
    progress=None,
    on_stage=None,
    quant_config: QuantConfig = QuantConfig(),
    require_int8_parity: bool = True,
) -> dict:
    """Returns the summary written to `out_dir/pipeline.json`. Raises ParityError (and
    releases nothing) when the exported model does not match PyTorch, or the int8 model misses
    the int8 tolerances; with require_int8_parity=False (compare) that is only recorded."""
    from .export import export_onnx, tool_versions

    name = model_name(model_config.arch)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    check_writable(out_dir / f"{name}.onnx")  # fail before an hour of training, not after
    stage = on_stage or (lambda name: None)

    stage("train")
    result: TrainResult = train(cfg, run_dir, data_dir, device, model_config, resume, progress)
    stage("export")
    staged = run_dir / f"{name}.onnx"  # exported and validated here, released after
    exported = export_onnx(result.checkpoint, staged)
    stage("validate")
    report = validate_model(staged, result.checkpoint, data_dir)
    report.raise_for_failures()
    staged_vectors = write_test_vectors(result.checkpoint, run_dir / "test_vectors.json", data_dir)

    stage("quantize")
    staged_int8 = run_dir / f"{name}.int8.onnx"
    # The guard holds out the split training used for model selection; calibration draws from
    # the rest, at most what a small (smoke) data set has.
    guard = cfg.val_size or quant_config.guard_size
    available = len(load_mnist("train", data_dir)) - guard
    quant_config = replace(quant_config, guard_size=guard, calibration=min(quant_config.calibration, available))
    quant = quantize_model(staged, staged_int8, quant_config, data_dir)
    quant_summary = quant_report(staged, quant)
    int8_report = validate_model(staged_int8, result.checkpoint, data_dir)
    if require_int8_parity:
        int8_report.raise_for_failures()

    stage("release")
    out_dir.mkdir(parents=True, exist_ok=True)
    released = {
        f"{name}.onnx": (staged, "ONNX model, fp32, self-contained"),
        f"{name}.safetensors": (result.checkpoint, "PyTorch weights (safetensors)"),
        f"{name}.json": (config_path(result.checkpoint), "checkpoint config: model, recipe, history"),
        f"{name}.int8.onnx": (staged_int8, "ONNX model, int8 (static, ONNX Runtime quantization)"),
        side_file(model_config.arch, "test_vectors.json"): (staged_vectors, "test vectors: MNIST test images and PyTorch's outputs (exports/README.md)"),
    }
    for file_name, (src, _) in released.items():
        atomic_write_bytes(out_dir / file_name, src.read_bytes())
    ck = read_config(result.checkpoint)
    meta = dict(json.loads(json.dumps(report.to_dict())))
    summary = {
        "arch": model_config.arch,
        "params": total_params(model_config.arch),
        "train": cfg.to_dict(),
        "checkpoint": {**{k: ck[k] for k in ("selected_epoch", "best_val_accuracy", "device", "test_accuracy")},
                       "history": [asdict(h) for h in result.history]},  # every epoch, not only up to the selected one
        "export": {"opset": exported.opset, "ir_version": exported.ir_version, "size_bytes": exported.size_bytes,
                   "input": {"name": C.INPUT_NAME, "dtype": C.INPUT_DTYPE, "shape": list(C.INPUT_SHAPE),
                             "range": list(C.INPUT_RANGE)}},
        "validation": meta,
        "quantization": quant_summary,
        "int8_validation": json.loads(json.dumps(int8_report.to_dict())),
        "files": [{"name": n, "what": what, "size": (out_dir / n).stat().st_size, "sha256": sha256_file(out_dir / n)}
                  for n, (_, what) in released.items()],
        "machine": machine_description(),
        "tool_versions": tool_versions(),
        "reproduce": reproduce_command(cfg, data_dir, device),
    }
    atomic_write_json(out_dir / side_file(model_config.arch, "pipeline.json"), summary)
    atomic_write_text(out_dir / side_file(model_config.arch, "MODEL_CARD.md"), render_card(summary))
    return summary
