"""`cnn-edge validate-c --target cortex-m4`: the exported C cross-compiled for a Cortex-M4 that QEMU
emulates (mps2-an386), run there on the test vectors through semihosting, and compared with the
host; with flash and RAM from the ELF against the export's own estimate, the stack from
-fstack-usage, and a latency estimate from the multiply-adds (QEMU counts no cycles).

Needs Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.errors import ConfigError, ParityError
from .export_c import CFLAGS, WEIGHT_SYMBOL, read_manifest, vector_images
from .int8_program import read_program
from .int8_reference import run_reference
from .validate_c import Agreement, CBuildError, build_host, compare, compiler_version, first_max, model_of, run_batch

GCC, SIZE, NM, QEMU = "arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm"
MACHINE = "mps2-an386"
ARCH_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
INSTALL_HINT = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
# The latency estimate: a Cortex-M4 running this portable C (no SIMD intrinsics) spends about 3
# cycles per multiply-add in the inner sums (two byte/halfword loads and a multiply-accumulate per
# product, two products per loop for two channels), at a typical STM32F4 clock. An estimate, not a measurement.
CYCLES_PER_MAC = (2.0, 4.0)
CLOCK_HZ = 168e6
DEFAULT_IMAGES = 40  # without test vectors beside the model: the first MNIST test images


@dataclass
class Sizes:
    """From the ELF and the object of cnn_edge.c (arm-none-eabi-size, arm-none-eabi-nm)."""

    elf_text: int  # the whole program's flash: cnn_edge, main.c, newlib's stdio, the vector table
    elf_data: int
    elf_bss: int  # the arena, main.c's buffers, newlib's
    code_bytes: int  # .text of cnn_edge.o: the classifier's instructions
    weights_bytes: int  # the cnn_[wbmst]N arrays of cnn_edge.o (flash)
    rodata_bytes: int  # all of cnn_edge.o's read-only data
    arena_bytes: int  # .bss of cnn_edge.o: the static activation arena
    stack_bytes: int  # deepest: cnn_edge_predict + the largest step + the largest helper frame
    stack_frames: dict[str, int] = field(default_factory=dict)  # -fstack-usage, per function of cnn_edge.c


@dataclass
class CortexMReport:
    folder: Path
    model: Path
    machine: str
    compiler: str
    cflags: list[str]
    images: int
    image_source: str  # the test vectors beside the model, or MNIST test images
    qemu_vs_host: Agreement
    qemu_vs_reference: Agreement
    sizes: Sizes
    export_const_bytes: int  # the export's estimate of the weights' flash
    export_arena_bytes: int  # and of the arena
    int8_weight_bytes: int  # int8 weights + int32 biases of the model
    macs: int
    latency_ms_estimate: tuple[float, float]  # at CLOCK_HZ, CYCLES_PER_MAC: an estimate, QEMU has no cycle counts
    clock_hz: float = CLOCK_HZ
    cycles_per_mac: tuple[float, float] = CYCLES_PER_MAC
    failures: list[str] = field(default_factory=list)

    json_properties = ("passed",)

    @property
    def passed(self) -> bool:
        return not self.failures

    def raise_for_failures(self) -> None:
        if self.failures:
            raise ParityError(self.failures, hint="the Cortex-M4 build answers otherwise than the host: report it")


def tools_missing() -> list[str]:
    return [t for t in (GCC, SIZE, NM, QEMU) if shutil.which(t) is None]


def _run(cmd: list[str], cwd: Path, what: str, timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CBuildError(f"{what} took more than {timeout:.0f} s") from None
    if out.returncode != 0:
        first = next((line for line in out.stderr.splitlines() if "error" in line.lower()), out.stderr.strip()[:300])
        raise CBuildError(f"{what} failed (exit {out.returncode}): {first}")
    return out


def build_cortex_m4(folder: Path, build: Path) -> tuple[Path, list[str]]:
    """cnn_edge.o (with its .su stack report), main.o, cnn_edge_softmax.o and the vector table,
    linked with newlib's semihosting (rdimon) for QEMU's mps2-an386: build/cnn_edge_main.elf."""
    flags = [*CFLAGS, *ARCH_FLAGS]
    objects = []
    for source in ("cnn_edge.c", "main.c", "cnn_edge_softmax.c"):
        obj = build / source.replace(".c", ".o")
        extra = ["-fstack-usage"] if source == "cnn_edge.c" else []
        _run([GCC, *flags, *extra, "-c", source, "-o", str(obj)], folder, f"{GCC} {source}")
        objects.append(str(obj))
    startup = build / "startup.o"
    _run([GCC, *ARCH_FLAGS, "-c", "cortex_m4/startup.S", "-o", str(startup)], folder, f"{GCC} startup.S")
    elf = build / "cnn_edge_main.elf"
    _run([GCC, *flags, "--specs=rdimon.specs", "-T", "cortex_m4/mps2_an386.ld", str(startup), *objects,
          "-lm", "-o", str(elf)], folder, f"{GCC} (link)")
    return elf, flags


def _section_sizes(obj: Path, cwd: Path) -> dict[str, int]:
    out = _run([SIZE, "-A", str(obj)], cwd, SIZE).stdout
    sizes: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            key = parts[0].split(".")[1]  # .text.foo -> text, .rodata.x -> rodata
            sizes[key] = sizes.get(key, 0) + int(parts[1])
    return sizes


def measure_sizes(elf: Path, build: Path) -> Sizes:
    berkeley = _run([SIZE, str(elf)], build, SIZE).stdout.splitlines()[1].split()
    text, data, bss = (int(x) for x in berkeley[:3])
    obj = build / "cnn_edge.o"
    sections = _section_sizes(obj, build)
    weights = 0
    for line in _run([NM, "-S", str(obj)], build, NM).stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and WEIGHT_SYMBOL.match(parts[3]):
            weights += int(parts[1], 16)
    frames = {}
    su = build / "cnn_edge.su"
    for line in su.read_text().splitlines() if su.is_file() else []:
        m = re.match(r".*:([\w.]+)\s+(\d+)\s+(\w+)", line)
        if m:  # cnn_step5.constprop: a copy gcc specialized; the frame is the function's
            name = m.group(1).split(".")[0]
            frames[name] = max(frames.get(name, 0), int(m.group(2)))
    steps = [v for k, v in frames.items() if k.startswith("cnn_step")]
    helpers = [v for k, v in frames.items() if not k.startswith("cnn_step") and k != "cnn_edge_predict"]
    stack = frames.get("cnn_edge_predict", 0) + max(steps, default=0) + max(helpers, default=0)
    return Sizes(text, data, bss, sections.get("text", 0), weights, sections.get("rodata", 0), sections.get("bss", 0),
                 stack, frames)


def run_qemu(elf: Path, images: np.ndarray, dtype: str, work: Path, timeout: float = 1800) -> np.ndarray:
    """The ELF's --batch mode under QEMU, files read and written on the host through semihosting."""
    src, dst = work / "images.bin", work / "logits.bin"
    np.ascontiguousarray(images, np.uint8).tofile(src)
    for path in (elf, src, dst):
        if "," in str(path):  # QEMU's option syntax splits on commas
            raise ConfigError(f"{path}: QEMU's semihosting arguments cannot hold a comma; use another temporary folder")
    args = ",".join(f"arg={a}" for a in (elf.name, "--batch", str(src), str(dst)))
    cmd = [QEMU, "-M", MACHINE, "-nographic", "-monitor", "none", "-semihosting-config",
           f"enable=on,target=native,{args}", "-kernel", str(elf)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CBuildError(f"QEMU {MACHINE} did not finish {len(images)} images in {timeout:.0f} s") from None
    if out.returncode != 0 or not re.search(rf"images {len(images)} ", out.stderr + out.stdout):
        raise CBuildError(f"QEMU {MACHINE} run failed (exit {out.returncode}): {(out.stderr or out.stdout).strip()[:300]}")
    return np.fromfile(dst, dtype=np.dtype(dtype)).astype(np.int64).reshape(len(images), -1)


def validate_cortex_m4(folder: Path, *, model: Optional[Path] = None, test_images: Optional[np.ndarray] = None,
                       limit: Optional[int] = None, cc: str = "cc") -> CortexMReport:
    """Cross-compile the export in `folder`, run it under QEMU on the test vectors beside the model
    (else the first of `test_images`), compare with the host build and the reference, and measure
    the ELF. Raises CBuildError when the tools are missing (INSTALL_HINT)."""
    if missing := tools_missing():
        raise CBuildError(f"{', '.join(missing)} not installed: {INSTALL_HINT}")
    folder = Path(folder)
    path = model_of(folder, model)
    manifest = read_manifest(folder)
    program = read_program(path)
    images, source = vector_images(path), "test vectors beside the model"
    if images is None:
        if test_images is None:
            raise ConfigError(f"no test vectors beside {path}: give the MNIST test set (--data-dir)")
        images, source = test_images[:DEFAULT_IMAGES], "MNIST test images"
    if limit is not None:
        images = images[:limit]
    with tempfile.TemporaryDirectory(prefix="cnn-edge-m4.") as tmp:
        build = Path(tmp)
        elf, flags = build_cortex_m4(folder, build)
        sizes = measure_sizes(elf, build)
        on_qemu = run_qemu(elf, images, program.activation_type, build)
        (build / "host").mkdir()
        host_binary, _ = build_host(folder, build / "host", cc)
        on_host, _ = run_batch(host_binary, images, program.activation_type, build / "host")
    reference = run_reference(program, images)
    low, high = (program.macs * c / CLOCK_HZ * 1000 for c in CYCLES_PER_MAC)
    report = CortexMReport(
        folder, path, f"QEMU {MACHINE} (Cortex-M4F)", compiler_version(GCC), flags, len(images), source,
        compare("qemu", "host", on_qemu, on_host, first_max(on_qemu), first_max(on_host)),
        compare("qemu", "reference", on_qemu, reference, first_max(on_qemu), first_max(reference)),
        sizes, manifest["const_bytes"], manifest["arena_bytes"], manifest["int8_weight_bytes"], program.macs, (low, high))
    for a in (report.qemu_vs_host, report.qemu_vs_reference):
        if a.differing_values:
            report.failures.append(f"QEMU's outputs differ from the {a.second}'s in {a.differing_values} values")
    return report
