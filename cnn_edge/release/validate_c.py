"""`cnn-edge validate-c`: compile the exported C with the system compiler and prove it, image by
image, against the NumPy reference (bit for bit), ONNX Runtime and the ONNX specification.

What is compared, on the MNIST test set (docs/embedding-c.md):
    C vs reference      the quantized logits must be equal: 0 differing values (else ParityError)
    C vs ONNX Runtime   top-1 must agree on at least min_top1_agreement of the images (else ParityError)
    reference vs ONNX Runtime, reference and ONNX Runtime vs the specification (onnx.reference's
    float Q/DQ semantics, on the first `spec_images`): reported, not judged
and the speed of the C program (one image at a time, one thread) against ONNX Runtime's single
thread on the int8 model, measured in the same run, in turns (measure_speed).
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..core import contract as C
from ..core.errors import CnnEdgeError, ConfigError, ParityError
from ..core.files import sha256_file
from ..core.machine import machine_description
from ..training.data import MnistSplit
from .export_c import CFLAGS, read_manifest
from .int8_program import Int8Program, read_program
from .int8_reference import run_reference

MIN_TOP1_AGREEMENT = 0.9995  # the target: >= 9,995 of 10,000 with ONNX Runtime's top-1
DEFAULT_SPEC_IMAGES = 1000  # onnx.reference takes about 10 ms an image here: all 10,000 on request
EXAMPLES = 20  # test-set indices listed where top-1 differs
SPEED_IMAGES = 2000  # the C program's timed run, each round
SPEED_ROUNDS = 3


class CBuildError(CnnEdgeError):
    """The C compiler is missing or refused the exported sources."""


@dataclass
class Agreement:
    """Two implementations on the same images: their quantized logits and their top-1."""

    first: str
    second: str
    images: int
    differing_values: int  # of images x classes quantized logits
    differing_images: int  # images with at least one differing logit
    max_abs_diff: int  # in codes
    differing_top1: int
    top1_differs_at: list[int] = field(default_factory=list)  # test-set indices, the first EXAMPLES

    json_properties = ("top1_agreement",)

    @property
    def top1_agreement(self) -> float:
        return 1 - self.differing_top1 / self.images if self.images else 1.0


@dataclass
class Speed:
    c_images_per_second: float  # cnn_edge_predict, one image at a time (the C program's clock())
    ort_batch1_images_per_second: float  # ONNX Runtime, one thread, batch 1, over the same images
    ort_batch256_images_per_second: float  # ONNX Runtime, one thread, batches of 256
    cpu: str
    images: int = SPEED_IMAGES  # timed per round (the first test images)
    rounds: int = SPEED_ROUNDS  # C and ONNX Runtime in turns; the best of each round kept

    json_properties = ("ratio_batch1", "ratio_best")

    @property
    def ratio_batch1(self) -> float:
        return self.c_images_per_second / self.ort_batch1_images_per_second

    @property
    def ratio_best(self) -> float:
        """Against ONNX Runtime's faster way of the two."""
        return self.c_images_per_second / max(self.ort_batch1_images_per_second, self.ort_batch256_images_per_second)


@dataclass
class ValidateCReport:
    folder: Path
    model: Path
    model_sha256: str
    compiler: str  # the first line of `cc --version`
    cflags: list[str]
    images: int
    accuracy_c: float
    accuracy_ort: float
    agreements: list[Agreement]
    speed: Optional[Speed]
    min_top1_agreement: float
    spec_images: int
    failures: list[str] = field(default_factory=list)

    json_properties = ("passed",)

    @property
    def passed(self) -> bool:
        return not self.failures

    def agreement(self, first: str, second: str) -> Agreement:
        return next(a for a in self.agreements if (a.first, a.second) == (first, second))

    def raise_for_failures(self) -> None:
        if self.failures:
            raise ParityError(self.failures, hint="the C export is not what the model computes: report it")


# ---------------------------------------------------------------- building and running the C

def compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CBuildError(f"C compiler {cc!r} cannot be run ({exc}); install one (apt-get install gcc) or set CC") from None
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else cc


def build_host(folder: Path, build_dir: Path, cc: str, extra_flags: tuple[str, ...] = ()) -> tuple[Path, list[str]]:
    """Compile main.c, cnn_edge.c and cnn_edge_softmax.c of `folder` into build_dir/cnn_edge_main."""
    flags = [*CFLAGS, *extra_flags]
    binary = build_dir / "cnn_edge_main"
    cmd = [cc, *flags, "-o", str(binary), "main.c", "cnn_edge.c", "cnn_edge_softmax.c", "-lm"]
    try:
        out = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=600)
    except OSError as exc:
        raise CBuildError(f"C compiler {cc!r} cannot be run ({exc.strerror or exc}); install one (apt-get install gcc) or set CC") from None
    if out.returncode != 0:
        first = next((line for line in out.stderr.splitlines() if "error" in line), out.stderr.strip()[:300])
        raise CBuildError(f"{cc} refused the sources in {folder}: {first}")
    return binary, flags


def run_batch(binary: Path, images: np.ndarray, dtype: str, work: Path, runner: tuple[str, ...] = ()) -> tuple[np.ndarray, float]:
    """The program's --batch mode on `images` (N, 28, 28) uint8: (quantized logits (N, 10) int64,
    seconds spent in cnn_edge_predict by its own clock())."""
    src, dst = work / "images.bin", work / "logits.bin"
    np.ascontiguousarray(images, np.uint8).tofile(src)
    out = subprocess.run([*runner, str(binary), "--batch", str(src), str(dst)], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise CBuildError(f"{binary.name} --batch failed (exit {out.returncode}): {out.stderr.strip()[:300]}")
    m = re.search(r"images (\d+) seconds ([0-9.]+)", out.stderr)
    if m is None or int(m.group(1)) != len(images):
        raise CBuildError(f"{binary.name} --batch did not report its {len(images)} images: {out.stderr.strip()[:300]}")
    logits = np.fromfile(dst, dtype=np.dtype(dtype)).astype(np.int64).reshape(len(images), -1)
    return logits, float(m.group(2))


# ---------------------------------------------------------------- the other implementations

def ort_codes(program: Int8Program, logits: np.ndarray) -> np.ndarray:
    """ONNX Runtime's (or the specification's) float logits back to their codes: they are
    DequantizeLinear outputs, (q - zero point) * scale in float32, so the division is exact to well
    within half a code."""
    q = program.output.q
    codes = np.rint(np.asarray(logits, np.float32) / np.float32(q.scale)).astype(np.int64) + q.zero_point
    assert codes.min() >= q.low and codes.max() <= q.high, (codes.min(), codes.max())
    return codes


def run_ort(model: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from ..runtime.onnx_model import open_model

    return open_model(model, threads=1).run_batched(images, 256)


def _ort_speeds(model: Path, images: np.ndarray, seconds: float) -> tuple[float, float]:
    """ONNX Runtime on one thread: images/s at batch 1 over the images (as the C runs them, for about
    `seconds`) and at batch 256 (as long)."""
    from ..runtime.onnx_model import open_model
    from ..runtime.timing import measure_fn

    m = open_model(model, threads=1)
    pixels = images[:, None].astype(np.float32)
    i = 0

    def one():
        nonlocal i
        m.run(pixels[i % len(pixels):i % len(pixels) + 1], checked=False)
        i += 1

    batch1 = measure_fn(one, 1, seconds, warmup=20)
    big = pixels[:256] if len(pixels) >= 256 else np.resize(pixels, (256, *pixels.shape[1:]))
    batch256 = measure_fn(lambda: m.run(big, checked=False), 256, seconds)
    return batch1.images_per_second, batch256.images_per_second


def measure_speed(binary: Path, model: Path, images: np.ndarray, dtype: str, work: Path, seconds: float,
                  rounds: int = SPEED_ROUNDS) -> Speed:
    """The C program and ONNX Runtime, one thread each, in turns (`rounds` of each), the best of each
    kept: a machine shared with other work slows whichever runs at the wrong moment, never one side only."""
    sample = images[:SPEED_IMAGES]
    c = b1 = b256 = 0.0
    for _ in range(rounds):
        _, c_seconds = run_batch(binary, sample, dtype, work)
        c = max(c, len(sample) / c_seconds if c_seconds > 0 else 0.0)
        ort1, ort256 = _ort_speeds(model, sample, seconds / rounds)
        b1, b256 = max(b1, ort1), max(b256, ort256)
    return Speed(c, b1, b256, machine_description(), len(sample), rounds)


def _spec_evaluator(model: Path):
    """onnx.reference's evaluator of the model: the ONNX specification's float Q/DQ semantics.
    Its DequantizeLinear starts at opset 19 (same semantics for 8-bit integers as 18), so the model
    is declared at 19; max pooling is replaced by a vectorized one (a max of float32 values: exact
    either way) because the reference's loops take most of its time."""
    import onnx
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops.op_max_pool import MaxPool as SpecMaxPool

    class MaxPool(SpecMaxPool):
        def _run(self, x, auto_pad=None, ceil_mode=None, dilations=None, kernel_shape=None, pads=None,
                 storage_order=None, strides=None):
            simple = (x.ndim == 4 and not ceil_mode and (auto_pad in (None, "NOTSET", b"NOTSET"))
                      and all(d == 1 for d in (dilations or [1, 1])) and not any(pads or [0]))
            if not simple:
                return super()._run(x, auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order, strides)
            kh, kw = kernel_shape
            sy, sx = strides or [1, 1]
            win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sy, ::sx]
            return (win.max(axis=(4, 5)).astype(x.dtype),)

    proto = onnx.load(str(model))
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 19)
    return ReferenceEvaluator(proto, new_ops=[MaxPool])


def run_spec(model: Path, images: np.ndarray, batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, logits) as the ONNX specification computes them (onnx.reference)."""
    ev = _spec_evaluator(model)
    probs, logits = [], []
    for start in range(0, len(images), batch_size):
        p, lg = ev.run([C.OUTPUT_PROBABILITIES, C.OUTPUT_LOGITS],
                       {C.INPUT_NAME: images[start:start + batch_size, None].astype(np.float32)})
        probs.append(p)
        logits.append(lg)
    return np.concatenate(probs), np.concatenate(logits)


def first_max(codes: np.ndarray) -> np.ndarray:
    """Top-1 as cnn_edge_predict returns it: the first of equal largest logits."""
    return np.asarray(codes).argmax(1)


def compare(first: str, second: str, a: np.ndarray, b: np.ndarray, top_a: np.ndarray, top_b: np.ndarray,
            indices: Optional[np.ndarray] = None) -> Agreement:
    n = min(len(a), len(b))
    a, b, top_a, top_b = a[:n], b[:n], top_a[:n], top_b[:n]
    differ = a != b
    top = np.flatnonzero(top_a != top_b)
    idx = indices[:n] if indices is not None else np.arange(n)
    return Agreement(first, second, n, int(differ.sum()), int(differ.any(1).sum()),
                     int(np.abs(a - b).max()) if n else 0, len(top), [int(i) for i in idx[top[:EXAMPLES]]])


# ---------------------------------------------------------------- validate-c

def model_of(folder: Path, model: Optional[Path]) -> Path:
    """The int8 model an export was made from: `model` if given, else the one its manifest names,
    which must still have the hash the export recorded."""
    manifest = read_manifest(folder)
    path = Path(model) if model is not None else Path(manifest["model"])
    if not path.is_file():
        raise ConfigError(f"the model {path} that {folder} was exported from is not there; give it with --model")
    if sha256_file(path) != manifest.get("model_sha256"):
        raise ConfigError(f"{path} is not the model {folder} was exported from (its sha256 differs); "
                          f"export again (cnn-edge export-c {path} -o {folder})")
    return path


def validate_c(folder: Path, test: MnistSplit, *, model: Optional[Path] = None, limit: Optional[int] = None,
               spec_images: int = DEFAULT_SPEC_IMAGES, cc: Optional[str] = None, extra_flags: tuple[str, ...] = (),
               min_top1_agreement: float = MIN_TOP1_AGREEMENT, speed_seconds: float = 3.0) -> ValidateCReport:
    """Compile the export in `folder`, run it on the test images and compare (module docstring).
    Returns the report; its raise_for_failures raises ParityError when the C differs from the
    reference by any value or from ONNX Runtime's top-1 on more than 1 - min_top1_agreement."""
    folder = Path(folder)
    path = model_of(folder, model)
    images, labels = test.images, test.labels
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        images, labels = images[:limit], labels[:limit]
    program = read_program(path)
    cc = cc or os.environ.get("CC") or "cc"
    compiler = compiler_version(cc)
    with tempfile.TemporaryDirectory(prefix="cnn-edge-c.") as tmp:
        work = Path(tmp)
        binary, flags = build_host(folder, work, cc, extra_flags)
        c_codes, _ = run_batch(binary, images, program.activation_type, work)
        speed = measure_speed(binary, path, images, program.activation_type, work, speed_seconds) if speed_seconds > 0 else None
    reference = run_reference(program, images)
    ort_probs, ort_logits = run_ort(path, images)
    ort = ort_codes(program, ort_logits)
    ort_top = ort_probs.argmax(1)
    agreements = [
        compare("c", "reference", c_codes, reference, first_max(c_codes), first_max(reference)),
        compare("c", "onnxruntime", c_codes, ort, first_max(c_codes), ort_top),
        compare("reference", "onnxruntime", reference, ort, first_max(reference), ort_top),
    ]
    n_spec = min(spec_images, len(images))
    if n_spec > 0:
        spec_probs, spec_logits = run_spec(path, images[:n_spec])
        spec = ort_codes(program, spec_logits)
        spec_top = spec_probs.argmax(1)
        agreements += [compare("reference", "specification", reference, spec, first_max(reference), spec_top),
                       compare("onnxruntime", "specification", ort, spec, ort_top, spec_top)]
    report = ValidateCReport(folder, path, sha256_file(path), compiler, flags, len(images),
                             float((first_max(c_codes) == labels).mean()), float((ort_top == labels).mean()),
                             agreements, speed, min_top1_agreement, n_spec)
    exact, with_ort = agreements[0], agreements[1]
    if exact.differing_values:
        report.failures.append(f"the C differs from the NumPy reference in {exact.differing_values} values "
                               f"({exact.differing_images} images)")
    if with_ort.top1_agreement < min_top1_agreement:
        report.failures.append(f"top-1 agreement with ONNX Runtime {with_ort.top1_agreement:.2%} "
                               f"({with_ort.differing_top1} of {with_ort.images} differ) is below {min_top1_agreement:.2%}")
    return report

