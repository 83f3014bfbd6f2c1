"""`cnn-edge compare`: the notebook's questions answered by measurement.

Every architecture goes through the same pipeline (train, export, validate with parity,
quantize, validate int8) with the same recipe and the same data, read once; the figures come
from each pipeline's own summary, so nothing here is measured differently from a release.
`compare.json` is the CompareReport (schema in docs/reports.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..core.arch import NAMED, describe, resolve_arch
from ..core.errors import ConfigError
from ..core.references import NOTEBOOK_RESULTS
from ..core.reports import write_json
from ..training.recipes import TrainConfig
from .plotting import pyplot, to_png

if TYPE_CHECKING:  # annotations only: the CLI reads MNIST and hands it over
    from ..training.data import MnistData

# The version of compare.json's layout (docs/reports.md). 2: typed reports, `schema` field.
SCHEMA = "cnn-edge-compare/2"
QUICK_TRAIN_IMAGES = 2000  # --quick: a subset, one epoch
# --quick: each model is timed this long per batch size (the default, 2 s, is for figures to quote;
# four architectures, two models, two batch sizes made it half a minute of a smoke run).
QUICK_SPEED_SECONDS = 0.25
COMPARE_FILE = "compare.json"
# What compare runs by default: the four networks the seed notebook's questions are about (the
# spec CNN, the notebook's CNN, its MLP and logistic regression). --archs takes any others.
DEFAULT_ARCHS = ("spec", "notebook-cnn", "mlp", "logreg")


@dataclass(frozen=True)
class CompareConfig:
    archs: tuple[str, ...] = DEFAULT_ARCHS  # names, layer strings or .json/.toml files
    recipe: str = "seed"  # the notebook's recipe: Adam 1e-3, batch 100, 3 epochs
    epochs: Optional[int] = None  # None: the recipe's
    seed: int = 0
    quick: bool = False
    device: str = "auto"  # where PyTorch trains (recipes.DEVICES)
    resume: bool = False  # continue (or re-report) the runs already in the run folder

    def __post_init__(self) -> None:
        if not self.archs:
            raise ConfigError(f"--archs names no architecture: give names ({', '.join(NAMED)}), layer strings "
                              "or .json/.toml files, separated by commas")
        seen: dict[str, str] = {}
        for arch in self.archs:
            name = resolve_arch(arch).name  # a bad architecture fails here, before MNIST is read
            if name in seen:  # each architecture's run goes to RUN_DIR/<name>
                raise ConfigError(f"--archs names {name} twice ({seen[name]!r} and {arch!r})")
            seen[name] = arch


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
    notebook_accuracy: Optional[float] = None  # what the seed notebook reported, where it did
    layers: str = ""  # the canonical layer string


@dataclass
class CompareReport:
    schema: str
    config: CompareConfig
    train: TrainConfig  # the recipe every architecture trained with
    machine: str
    results: list[ArchResult] = field(default_factory=list)


def _result(summary) -> ArchResult:
    """The figures of one architecture, read from its PipelineSummary."""
    q, seconds = summary.quantization, [h.seconds for h in summary.training.history]
    if q is None:  # compare's table has int8 columns for every architecture
        raise ConfigError(f"{summary.arch}: no int8 model: {summary.int8_not_released}")
    return ArchResult(
        arch=summary.arch, description=describe(summary.arch, summary.layers), params=summary.params,
        test_accuracy=summary.validation.accuracy, int8_test_accuracy=q.test.int8_accuracy,
        parity_passed=summary.validation.passed, int8_parity_passed=summary.int8_validation.passed,
        int8_top1_agreement=summary.int8_validation.parity.top1_agreement, epoch_seconds=seconds,
        train_seconds=sum(seconds), onnx_bytes=q.fp32_bytes, int8_bytes=q.int8_bytes,
        latency_batch1_ms=q.fp32_speed.batch_1.p50_ms, int8_latency_batch1_ms=q.int8_speed.batch_1.p50_ms,
        throughput_batch256=q.fp32_speed.batch_256.images_per_second,
        int8_throughput_batch256=q.int8_speed.batch_256.images_per_second,
        notebook_accuracy=NOTEBOOK_RESULTS.get(summary.arch), layers=summary.layers,
    )


def run_compare(cfg: CompareConfig, data: "MnistData", run_dir: Path, *, progress=None, on_epoch=None,
                on_stage: Callable[[str], None] = lambda s: None) -> CompareReport:
    """Run the pipeline for each architecture into run_dir/<its name>/ and collect the figures;
    also writes run_dir/compare.json."""
    from ..core.machine import machine_description
    from ..release.pipeline import PipelineConfig, run_pipeline
    from ..release.quantize import QuantConfig
    from ..training.recipes import make_config, sized_for

    run_dir = Path(run_dir)
    # Held-out splits too large for a small (quick, test) set are shrunk as every pipeline does
    # (run_pipeline sizes the int8 guard too); the report records what training used.
    train_cfg, _ = sized_for(make_config(cfg.recipe, epochs=1 if cfg.quick else cfg.epochs, seed=cfg.seed,
                                         limit_train=QUICK_TRAIN_IMAGES if cfg.quick else None), len(data.train))
    report = CompareReport(SCHEMA, cfg, train_cfg, machine_description())
    for arch in cfg.archs:
        a = resolve_arch(arch)
        on_stage(f"{a.name}: {describe(a.name, a.spec)}")
        pipeline_cfg = PipelineConfig(train_cfg, run_dir / a.name, run_dir / a.name / "release", arch=arch,
                                      device=cfg.device, resume=cfg.resume, require_int8_parity=False,
                                      quant=QuantConfig(speed_seconds=QUICK_SPEED_SECONDS) if cfg.quick else QuantConfig())
        report.results.append(_result(run_pipeline(pipeline_cfg, data, progress=progress, on_epoch=on_epoch)))
    write_json(run_dir / COMPARE_FILE, report)
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
    recipe = report.train
    fig.suptitle(f"cnn-edge compare: recipe {recipe.recipe}, {recipe.epochs} epoch(s); {report.machine}", fontsize=9)
    return to_png(fig)
