"""What machine a figure was measured on: the one home of CPU and platform descriptions. Torch-free."""
from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return cpu


def cpu_vendor() -> str:
    """Intel, AMD, ... from /proc/cpuinfo's vendor_id (Linux); "unknown" elsewhere."""
    names = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}
    try:
        with open("/proc/cpuinfo") as f:
            vendor = next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), "")
    except OSError:
        vendor = ""
    return names.get(vendor, vendor or "unknown")


def machine_description() -> str:
    """One line for reports and model cards: CPU, logical cores, operating system."""
    return f"{cpu_name()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def runtime_versions() -> dict[str, object]:
    """CPU, cores, platform, Python and ONNX Runtime versions, for benchmark reports."""
    from importlib.metadata import PackageNotFoundError, version

    try:  # the installed distribution's version, without loading ONNX Runtime
        ort_version = version("onnxruntime")
    except PackageNotFoundError:
        ort_version = version("onnxruntime-gpu")
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(terse=True),
            "python": platform.python_version(), "onnxruntime": ort_version}
