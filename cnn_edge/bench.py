"""`cnn-edge bench`: latency and throughput of every backend, in one run, on this machine.

ONNX models run on ONNX Runtime (torch-free). PyTorch eager joins only when a checkpoint is given
(or found beside the model) and torch is installed; otherwise torch is never imported.
"""
from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .errors import ConfigError
from .plotting import pyplot, to_png
from .speed import measure, measure_fn, random_batch

BATCH_SIZES = (1, 8, 64, 256)


@dataclass
class BenchRow:
    backend: str  # "onnxruntime" or "pytorch"
    model: str  # file name, or "eager (...)"
    precision: str  # fp32 or int8
    device: str  # provider or torch device that ran it
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

    def to_dict(self) -> dict:
        return {"machine": self.machine, "seconds_per_point": self.seconds_per_point,
                "rows": [asdict(r) for r in self.rows], "notes": self.notes}


def torch_available() -> bool:
    """Whether torch could be imported, without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ValueError, ImportError):  # sys.modules["torch"] = None, a broken install
        return False


def machine_info() -> dict:
    import onnxruntime as ort

    from .card import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(terse=True),
            "python": platform.python_version(), "onnxruntime": ort.__version__}


def default_checkpoint(models: list[Path]) -> Optional[Path]:
    """The released checkpoint beside the first model: exports/mnist_cnn.safetensors."""
    for m in models:
        candidate = m.with_name(m.name.split(".")[0] + ".safetensors")
        if candidate.is_file():
            return candidate
    return None


def bench_onnx(path: Path, batch_sizes, seconds: float, provider: str, threads: Optional[int]) -> list[BenchRow]:
    from .onnx_model import open_model
    from .validate import is_int8

    model = open_model(path, provider=provider, threads=threads)
    precision = "int8" if is_int8(model) else "fp32"
    rows = []
    for b in batch_sizes:
        s = measure(model, b, seconds)
        rows.append(BenchRow("onnxruntime", path.name, precision, model.provider, b, s.runs, s.p50_ms, s.p90_ms,
                             s.p99_ms, s.images_per_second))
    return rows


def bench_torch(checkpoint: Path, batch_sizes, seconds: float, device: str) -> list[BenchRow]:
    """PyTorch eager, in inference mode, channels-last (its fastest layout on CPU here)."""
    import torch

    from .checkpoint import load_checkpoint
    from .train import pick_device

    dev = pick_device(device)
    model, _ = load_checkpoint(checkpoint)
    model = model.to(dev).to(memory_format=torch.channels_last).eval()
    rows = []
    for b in batch_sizes:
        x = torch.from_numpy(random_batch(b)).to(dev).contiguous(memory_format=torch.channels_last)

        def run() -> None:
            with torch.inference_mode():
                model(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()

        s = measure_fn(run, b, seconds)
        rows.append(BenchRow("pytorch", f"eager ({checkpoint.name})", "fp32", str(dev), b, s.runs, s.p50_ms,
                             s.p90_ms, s.p99_ms, s.images_per_second))
    return rows


def run_bench(models: list[Path], checkpoint: Optional[Path] = None, use_torch: Optional[bool] = None,
              batch_sizes=BATCH_SIZES, seconds: float = 2.0, provider: str = "auto", threads: Optional[int] = None,
              on_point: Callable[[str], None] = lambda s: None) -> BenchReport:
    """use_torch: None = when a checkpoint is given or found and torch is installed; True = required."""
    if not models:
        raise ConfigError("no models to benchmark; give ONNX files, e.g. exports/mnist_cnn.onnx")
    if any(b < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be positive, got {list(batch_sizes)}")
    report = BenchReport(machine_info(), seconds)
    for path in models:
        on_point(f"onnxruntime {path.name}")
        report.rows += bench_onnx(path, batch_sizes, seconds, provider, threads)
    if use_torch is False:
        return report
    checkpoint = checkpoint or default_checkpoint(models)
    if checkpoint is None or not torch_available():
        why = "no checkpoint given or found beside the model" if checkpoint is None else "torch is not installed"
        if use_torch:
            raise ConfigError(f"--torch asked for PyTorch eager, but {why}; pip install 'cnn-edge[train]' and give --checkpoint")
        report.notes.append(f"PyTorch eager skipped: {why}")
        return report
    on_point(f"pytorch {checkpoint.name}")
    device = "cuda" if provider in ("cuda", "tensorrt") else "cpu"
    report.rows += bench_torch(checkpoint, batch_sizes, seconds, device)
    import torch

    report.machine["torch"] = torch.__version__
    return report


def plot_png(report: BenchReport) -> bytes:
    """Throughput and p50 latency against batch size, one line per backend/model, as PNG bytes."""
    plt = pyplot()
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[str, list[BenchRow]] = {}
    for r in report.rows:
        series.setdefault(f"{r.backend} {r.model} ({r.device})", []).append(r)
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
