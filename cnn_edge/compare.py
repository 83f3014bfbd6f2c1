"""`cnn-edge compare`: the notebook's questions answered by measurement.

Every architecture goes through the same pipeline (train, export, validate with parity,
quantize, validate int8) with the same recipe and data; the figures come from each pipeline's
own summary, so nothing here is measured differently from a release.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from .arch import ARCHITECTURES, DESCRIPTIONS, layers_for
from .errors import ConfigError
from .plotting import pyplot, to_png
from .io_utils import atomic_write_json

# The seed notebook's own results (its text): logistic regression "yesterday", its CNN after 3 epochs.
NOTEBOOK_RESULTS = {"logreg": 0.914, "notebook-cnn": 0.9874}
QUICK_TRAIN_IMAGES = 2000  # --quick: a subset, one epoch


@dataclass(frozen=True)
class CompareConfig:
    archs: tuple[str, ...] = tuple(ARCHITECTURES)
    recipe: str = "seed"  # the notebook's recipe: Adam 1e-3, batch 100, 3 epochs
    epochs: Optional[int] = None  # None: the recipe's
    seed: int = 0
    quick: bool = False

    def __post_init__(self) -> None:
        if not self.archs:
            raise ConfigError(f"--archs names no architecture: choose from {', '.join(ARCHITECTURES)}")
        for arch in self.archs:
            layers_for(arch)  # an unknown name fails before any training


@dataclass
class ArchResult:
    arch: str
    description: str
    params: int
    test_accuracy: float
    int8_test_accuracy: float
    parity_passed: bool  # fp32 ONNX vs PyTorch (a failure stops the run)
    int8_parity_passed: bool  # int8 tolerances (recorded: an undertrained net flips more)
    int8_top1_agreement: float
    epoch_seconds: list[float]
    train_seconds: float
    onnx_bytes: int
    int8_bytes: int
    latency_batch1_ms: float
    int8_latency_batch1_ms: float
    throughput_batch256: float
    int8_throughput_batch256: float
    notebook_accuracy: Optional[float] = None


@dataclass
class CompareReport:
    config: dict
    machine: str
    results: list[ArchResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"config": self.config, "machine": self.machine, "results": [asdict(r) for r in self.results]}


def _result(arch: str, summary: dict) -> ArchResult:
    q, sp = summary["quantization"], summary["quantization"]["speed"]
    seconds = [h["seconds"] for h in summary["checkpoint"]["history"]]
    return ArchResult(
        arch=arch, description=DESCRIPTIONS[arch], params=summary["params"],
        test_accuracy=summary["validation"]["accuracy"], int8_test_accuracy=q["test_accuracy"]["int8"],
        parity_passed=summary["validation"]["passed"], int8_parity_passed=summary["int8_validation"]["passed"],
        int8_top1_agreement=summary["int8_validation"]["parity"]["top1_agreement"], epoch_seconds=seconds, train_seconds=sum(seconds),
        onnx_bytes=q["size_bytes"]["fp32"], int8_bytes=q["size_bytes"]["int8"],
        latency_batch1_ms=sp["fp32"]["batch_1"]["p50_ms"], int8_latency_batch1_ms=sp["int8"]["batch_1"]["p50_ms"],
        throughput_batch256=sp["fp32"]["batch_256"]["images_per_second"],
        int8_throughput_batch256=sp["int8"]["batch_256"]["images_per_second"],
        notebook_accuracy=NOTEBOOK_RESULTS.get(arch),
    )


def run_compare(cfg: CompareConfig, run_dir: Path, data_dir: str | None, device: str = "cpu",
                resume: bool = False, progress=None, on_stage: Callable[[str], None] = lambda s: None) -> CompareReport:
    """Run the pipeline for each architecture into run_dir/<arch>/ and collect the figures;
    also writes run_dir/compare.json. `resume` continues (or re-reports) runs already there."""
    from .card import machine_description
    from .data import load_mnist
    from .model import ModelConfig
    from .pipeline import run_pipeline
    from .quantize import QuantConfig
    from .train import make_config

    run_dir = Path(run_dir)
    n_train = len(load_mnist("train", data_dir))
    train_cfg = make_config(cfg.recipe, epochs=1 if cfg.quick else cfg.epochs, seed=cfg.seed,
                            limit_train=QUICK_TRAIN_IMAGES if cfg.quick else None)
    # The int8 guard holds out training images; small (quick, test) sets get a proportional one.
    quant_cfg = replace(QuantConfig(), guard_size=min(QuantConfig().guard_size, n_train // 5))
    report = CompareReport({**asdict(cfg), "train": train_cfg.to_dict(), "device": device}, machine_description())
    for arch in cfg.archs:
        on_stage(f"{arch}: {DESCRIPTIONS[arch]}")
        summary = run_pipeline(train_cfg, run_dir / arch, run_dir / arch / "release", data_dir, device,
                               ModelConfig(arch), resume=resume, progress=progress, quant_config=quant_cfg,
                               require_int8_parity=False)
        report.results.append(_result(arch, summary))
    atomic_write_json(run_dir / "compare.json", report.to_dict())
    return report


def plot_png(report: CompareReport) -> bytes:
    """Test accuracy against total training time and against trainable parameters, as PNG bytes."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "train_seconds", "training time (s, all epochs)"),
                           (axes[1], "params", "trainable parameters")):
        for r in report.results:
            x = getattr(r, key)
            ax.scatter([x], [100 * r.test_accuracy], s=50)
            ax.annotate(r.arch, (x, 100 * r.test_accuracy), textcoords="offset points", xytext=(6, -4), fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title("accuracy vs training time")
    axes[1].set_title("accuracy vs parameters")
    recipe = report.config["train"]
    fig.suptitle(f"cnn-edge compare: recipe {recipe['recipe']}, {recipe['epochs']} epoch(s); {report.machine}", fontsize=9)
    return to_png(fig)
