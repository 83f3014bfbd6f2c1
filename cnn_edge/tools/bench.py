"""`cnn-edge bench`: latency and throughput of every backend, in one run, on this machine.

ONNX models run on ONNX Runtime (torch-free, runtime/timing.py): on the chosen provider, on the CPU
provider as the baseline every other row is read against (when the chosen one is another), and,
when the OpenVINO plugin has a device here, on `openvino` too; the OpenVINO runtime itself joins as
a peer when it is installed. Each row names the runtime, the provider (or device), the model's
precision and, apart, OpenVINO's inference precision. PyTorch eager joins only when a checkpoint is given (or found beside the
model) and torch is installed; otherwise torch is never imported. A backend that cannot run here
leaves a note saying why, never a silent gap.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..core.artifacts import checkpoint_beside
from ..core.errors import ConfigError, ModelFileError
from ..core.machine import runtime_versions
from ..runtime.timing import measure, measure_fn, random_batch
from .plotting import pyplot, to_png

BATCH_SIZES = (1, 8, 64, 256)


@dataclass(frozen=True)
class BenchConfig:
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    seconds: float = 2.0  # timed per batch size, after warm-up
    provider: str = "auto"  # ONNX Runtime provider (auto|cpu|cuda|tensorrt); PyTorch runs on cuda for a GPU one
    threads: Optional[int] = None  # ONNX Runtime intra-op threads; None: its default
    checkpoint: Optional[Path] = None  # for the PyTorch rows; None: the one beside the first model
    # PyTorch eager: None = when a checkpoint is given or found and torch is installed; True = required.
    use_torch: Optional[bool] = None
    # OpenVINO rows (the plugin through ONNX Runtime, and the OpenVINO runtime as a peer): None = when
    # installed; False = never.
    use_openvino: Optional[bool] = None
    precision: str = "f32"  # OpenVINO's inference precision, for both OpenVINO rows

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ConfigError(f"batch sizes must be positive, got {list(self.batch_sizes)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1 (or left out: one per core), got {self.threads}")


@dataclass
class BenchRow:
    runtime: str  # "onnxruntime", "openvino" (the OpenVINO runtime itself) or "pytorch"
    provider: str  # ONNX Runtime's provider that ran it (cpu, cuda, openvino, ...), OpenVINO's device, or torch's
    model: str  # file name, or "eager (...)"
    model_precision: str  # the model's: fp32 or int8
    inference_precision: Optional[str]  # OpenVINO's inference precision hint (f32, bf16, f16); None: the model's own
    batch_size: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_second: float


@dataclass
class BenchReport:
    machine: dict
    seconds_per_point: float
    rows: list[BenchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def torch_available() -> bool:
    """Whether torch could be imported, without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ValueError, ImportError):  # sys.modules["torch"] = None, a broken install
        return False


def default_checkpoint(models: list[Path]) -> Optional[Path]:
    """The released checkpoint beside the first model that has one: exports/mnist_cnn.safetensors."""
    return next((checkpoint_beside(m) for m in models if checkpoint_beside(m).is_file()), None)


def _rows(runtime: str, provider: str, model, name: str, precision: str, inference: Optional[str],
          cfg: BenchConfig) -> list[BenchRow]:
    rows = []
    for b in cfg.batch_sizes:
        s = measure(model, b, cfg.seconds)
        rows.append(BenchRow(runtime, provider, name, precision, inference, b, s.runs, s.p50_ms, s.p90_ms, s.p99_ms,
                             s.images_per_second))
    return rows


def bench_onnx(path: Path, cfg: BenchConfig, provider: Optional[str] = None) -> list[BenchRow]:
    from ..runtime.onnx_model import open_model

    provider = provider or cfg.provider
    # cfg.precision is OpenVINO's: the other providers run the model's own (open_model refuses it there).
    model = open_model(path, provider=provider, threads=cfg.threads,
                       precision=cfg.precision if provider == "openvino" else "f32")
    return _rows("onnxruntime", model.provider, model, path.name, "int8" if model.is_int8 else "fp32",
                 model.choice.precision, cfg)


def bench_openvino(path: Path, cfg: BenchConfig, report: "BenchReport", precision: str,
                   plugin: bool = True) -> list[BenchRow]:
    """The plugin through ONNX Runtime (when `plugin`: not run already), then the OpenVINO runtime
    itself; each one that cannot run here adds a note instead. `precision`: the model's (fp32 or
    int8), as its ONNX Runtime rows found it."""
    from .openvino_peer import open_openvino

    rows = []
    if plugin:
        try:
            rows += bench_onnx(path, cfg, provider="openvino")
        except ConfigError as exc:
            _note(report, f"ONNX Runtime + OpenVINO plugin skipped: {exc}")
    try:
        peer = open_openvino(path, threads=cfg.threads, precision=cfg.precision)
    except (ConfigError, ModelFileError) as exc:
        _note(report, f"OpenVINO runtime skipped for {path.name}: {exc}")
        return rows
    return rows + _rows("openvino", "CPU", peer, path.name, precision, peer.precision, cfg)


def _note(report: "BenchReport", note: str) -> None:
    if note not in report.notes:
        report.notes.append(note)


def bench_torch(checkpoint: Path, cfg: BenchConfig) -> list[BenchRow]:
    """PyTorch eager, in inference mode, channels-last (its fastest layout on CPU here)."""
    import torch

    from ..training.checkpoint import load_checkpoint
    from ..training.train import pick_device

    dev = pick_device("cuda" if cfg.provider in ("cuda", "tensorrt") else "cpu")
    model, _ = load_checkpoint(checkpoint)
    model = model.to(dev).to(memory_format=torch.channels_last).eval()
    rows = []
    for b in cfg.batch_sizes:
        x = torch.from_numpy(random_batch(b)).to(dev).contiguous(memory_format=torch.channels_last)

        def run() -> None:
            with torch.inference_mode():
                model(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()

        s = measure_fn(run, b, cfg.seconds)
        rows.append(BenchRow("pytorch", str(dev), f"eager ({checkpoint.name})", "fp32", None, b, s.runs, s.p50_ms,
                             s.p90_ms, s.p99_ms, s.images_per_second))
    return rows


def describe(row: BenchRow) -> str:
    """What ran a row, in words: the provider or device, and OpenVINO's inference precision if any."""
    return row.provider + (f", infers {row.inference_precision}" if row.inference_precision else "")


def run_bench(models: list[Path], cfg: BenchConfig = BenchConfig()) -> BenchReport:
    """Every ONNX model, then PyTorch eager when cfg.use_torch allows, at every batch size."""
    if not models:
        raise ConfigError("no models to benchmark; give ONNX files, e.g. exports/mnist_cnn.onnx")
    report = BenchReport(runtime_versions(), cfg.seconds)
    from .openvino_peer import openvino_version

    with_openvino = cfg.use_openvino is not False and openvino_version() is not None
    if with_openvino:
        report.machine["openvino"] = openvino_version()
    elif cfg.use_openvino is None:
        report.notes.append("OpenVINO rows skipped: not installed (pip install 'cnn-edge[openvino]')")
    for path in models:
        rows = bench_onnx(Path(path), cfg)
        ran = rows[0].provider
        if ran != "cpu":  # the baseline the other rows are read against (auto may have picked another)
            rows += bench_onnx(Path(path), cfg, provider="cpu")
        report.rows += rows
        if with_openvino:
            report.rows += bench_openvino(Path(path), cfg, report, rows[0].model_precision, plugin=ran != "openvino")
    if cfg.use_torch is False:
        return report
    checkpoint = cfg.checkpoint or default_checkpoint(models)
    if checkpoint is None or not torch_available():
        why = "no checkpoint given or found beside the model" if checkpoint is None else "torch is not installed"
        if cfg.use_torch:
            raise ConfigError(f"--torch asked for PyTorch eager, but {why}; pip install 'cnn-edge[train]' and give --checkpoint")
        report.notes.append(f"PyTorch eager skipped: {why}")
        return report
    report.rows += bench_torch(checkpoint, cfg)
    import torch

    report.machine["torch"] = torch.__version__
    return report


def plot_png(report: BenchReport) -> bytes:
    """Throughput and p50 latency against batch size, one line per backend/model, as PNG bytes."""
    plt = pyplot()
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[str, list[BenchRow]] = {}
    for r in report.rows:
        series.setdefault(f"{r.runtime} {r.model} ({describe(r)})", []).append(r)
    for name, rows in series.items():
        bs = [r.batch_size for r in rows]
        ax_t.plot(bs, [r.images_per_second for r in rows], marker="o", label=name)
        ax_l.plot(bs, [r.p50_ms for r in rows], marker="o", label=name)
    for ax, title, unit in ((ax_t, "throughput", "images/s"), (ax_l, "latency p50", "ms per batch")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.suptitle(f"cnn-edge bench: {report.machine['cpu']}, {report.machine['cores']} cores", fontsize=10)
    return to_png(fig)
