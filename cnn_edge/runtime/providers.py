"""Choose an ONNX Runtime execution provider, and never fall back to the CPU silently. Torch-free.

ONNX Runtime, asked for CUDA when the CUDA or cuDNN libraries are missing or there is no GPU,
logs an error and quietly runs on the CPU. Here an explicit request either runs where asked or
fails with ONNX Runtime's own reason; `auto` takes the best provider that actually starts, and
says which and why (Choice.reason). Nodes a provider leaves to the CPU are listed, not hidden.

OpenVINO comes as ONNX Runtime's plugin execution provider (the onnxruntime-ep-openvino package,
registered with register_execution_provider_library), so ONNX Runtime stays the one API. Its
precision is explicit: an fp32 model runs with OpenVINO's f32 hint unless bf16 or f16 is asked for.

The order `auto` tries: tensorrt, cuda (when built in; they need a GPU), then openvino for an int8
model on an Intel CPU when the plugin is installed and has a device, then cpu. A fixed rule, from
measurements (docs/prediction.md), never a benchmark at start-up: AUTO_PICKS says why each is taken.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..core.errors import ConfigError, ModelFileError, first_line
from ..core.files import captured_stderr
from ..core.machine import cpu_vendor

# Names users type -> ONNX Runtime's provider names, best first for `auto`.
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
CHOICES = ("auto", *PROVIDERS)
# OpenVINO's inference precision hint; the first is the default (ONNX's own numerics).
PRECISIONS = ("f32", "bf16", "f16")
OPENVINO_INSTALL_HINT = "pip install 'cnn-edge[openvino]' (the onnxruntime-ep-openvino plugin)"
RECORD_ASSIGNMENT = "session.record_ep_graph_assignment_info"


@dataclass
class Choice:
    """The provider that runs a session, and what a user should know about it."""

    provider: str  # short name: cpu, cuda, tensorrt, openvino
    reason: str  # why this one: asked for, or what auto tried
    precision: str | None = None  # OpenVINO's inference precision; None: the model's own (ONNX Runtime kernels)
    cpu_fallback: list[str] = field(default_factory=list)  # "OpType name" of nodes left to the CPU provider

GPU_INSTALL_HINT = (
    "install the GPU build of ONNX Runtime instead of the CPU one: "
    "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (needs the CUDA 12 and cuDNN 9 libraries, "
    "e.g. pip install 'onnxruntime-gpu[cuda,cudnn]')"
)


def available() -> list[str]:
    """Short names of the providers this ONNX Runtime build has, best first (openvino: the plugin is installed)."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    if _openvino_plugin() is not None:
        have.add(PROVIDERS["openvino"])
    return [short for short, full in PROVIDERS.items() if full in have]


def _openvino_plugin():
    try:
        import onnxruntime_ep_openvino as plugin
    except ImportError:
        return None
    return plugin


_registered: list = []  # register_execution_provider_library once per process


def openvino_devices(ort) -> list:
    """The OrtEpDevices the OpenVINO plugin serves on this machine's CPU (registering it first).
    Raises ConfigError with the install hint when the plugin is missing."""
    plugin = _openvino_plugin()
    if plugin is None:
        raise ConfigError(f"provider 'openvino' is not installed; {OPENVINO_INSTALL_HINT}")
    if not _registered:
        try:
            ort.register_execution_provider_library(PROVIDERS["openvino"], plugin.get_library_path())
        except Exception as exc:  # a plugin built for another ONNX Runtime
            raise ConfigError(f"the OpenVINO plugin does not load into this ONNX Runtime ({first_line(exc)}); "
                              f"reinstall both: {OPENVINO_INSTALL_HINT}") from None
        _registered.append(True)
    return [d for d in ort.get_ep_devices()
            if d.ep_name == PROVIDERS["openvino"] and d.device.type == ort.OrtHardwareDeviceType.CPU]


def _add_openvino(ort, options, precision: str) -> None:
    devices = openvino_devices(ort)
    if not devices:
        raise ConfigError(f"provider 'openvino' has no device it can open here: its plugin serves Intel CPUs, GPUs "
                          f"and NPUs, and this CPU is {cpu_vendor()}'s (use --provider cpu)")
    config = json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": precision}})
    options.add_provider_for_devices(devices[:1], {"device_type": "CPU", "load_config": config})


def _cpu_fallback(session, wanted: str) -> list[str]:
    """Nodes ONNX Runtime assigned to another provider than `wanted` (the CPU, in practice)."""
    try:
        groups = session.get_provider_graph_assignment_info()
    except Exception:  # an ONNX Runtime without assignment info: nothing to report
        return []
    return [f"{n.op_type} {n.name}" for g in groups if g.ep_name != wanted for n in g.get_nodes()]


# Why auto takes each provider when it starts: the first words of its reason line.
AUTO_PICKS = {
    "tensorrt": "TensorRT started on the GPU, auto's first choice",
    "cuda": "CUDA started on the GPU",
    "openvino": ("an int8 model on an Intel CPU, where OpenVINO's int8 kernels ran 3.55x ONNX Runtime's CPU provider "
                 "(batch 256, Intel Xeon, the previous int8 release; docs/prediction.md)"),
    "cpu": "ONNX Runtime's CPU provider",
}


def auto_order(is_int8: bool) -> tuple[list[str], list[str]]:
    """(providers auto tries, in order; why each other one is skipped)."""
    built_in, skipped = available(), []
    order = [p for p in ("tensorrt", "cuda") if p in built_in]
    skipped += [f"{p}: not in this ONNX Runtime build" for p in ("tensorrt", "cuda") if p not in built_in]
    if "openvino" not in built_in:
        skipped.append("openvino: plugin not installed")
    elif not is_int8:
        skipped.append("openvino: auto takes it for int8 models only")
    elif cpu_vendor() != "Intel":
        skipped.append(f"openvino: the CPU is {cpu_vendor()}'s, and the plugin serves Intel's")
    else:
        order.append("openvino")
    return order + ["cpu"], skipped


def _reason(log: str) -> str:
    lines = [l.strip() for l in log.splitlines() if l.strip()]
    errors = [l for l in lines if "error" in l.lower() or "fail" in l.lower()] or lines
    return errors[-1][-300:] if errors else "no reason given by ONNX Runtime"


def _session(ort, path: str, model: bytes, options_factory, name: str, precision: str):
    """(session, the provider that runs it, ONNX Runtime's reason when it is not `name`)."""
    wanted, options = PROVIDERS[name], options_factory()
    if name != "cpu":
        options.add_session_config_entry(RECORD_ASSIGNMENT, "1")
    try:
        if name == "cpu":
            return ort.InferenceSession(model, options, providers=[wanted]), wanted, ""
        if name == "openvino":
            _add_openvino(ort, options, precision)
            session = ort.InferenceSession(model, options)
            # A plugin provider runs what it took; the rest ran on the CPU provider (listed as fallback).
            return session, wanted if wanted in session.get_providers() else session.get_providers()[0], ""
        with captured_stderr() as log:  # ONNX Runtime says why a provider did not start on fd 2 only
            session = ort.InferenceSession(model, options, providers=[wanted, PROVIDERS["cpu"]])
        return session, session.get_providers()[0], _reason(log.text)
    except ConfigError:
        raise
    except Exception as exc:  # ORT's Fail/InvalidProtobuf/InvalidGraph types
        raise ModelFileError(f"{path} is not a loadable ONNX model ({first_line(exc)})") from None


def create_session(path: str, model: bytes, options_factory, provider: str = "auto", *, precision: str = "f32",
                   is_int8: bool = False):
    """An InferenceSession of `model` (the bytes of the file `path`, which is named in errors only)
    on `provider` (auto|cpu|cuda|tensorrt|openvino). `options_factory()` makes fresh SessionOptions
    for each try; `precision` is OpenVINO's; `is_int8` steers auto. Returns (session, Choice).

    Raises ConfigError when an explicitly requested provider is not installed or does not start."""
    import onnxruntime as ort

    if provider not in CHOICES:
        raise ConfigError(f"unknown provider {provider!r}; choose one of {', '.join(CHOICES)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "f32" and provider not in ("openvino", "auto"):
        raise ConfigError(f"--precision {precision} applies to --provider openvino only; {provider} runs the model's own precision")
    if provider == "auto":
        candidates, skipped = auto_order(is_int8)
    elif provider == "openvino" or provider in available():
        candidates, skipped = [provider], []
    else:
        hint = GPU_INSTALL_HINT if provider != "cpu" else "reinstall onnxruntime"
        raise ConfigError(f"provider {provider!r} is not in this ONNX Runtime build "
                          f"(it has: {', '.join(available())}); {hint}")
    for name in candidates:
        try:
            session, ran, reason = _session(ort, path, model, options_factory, name, precision)
        except ConfigError as exc:
            if provider != "auto":
                raise
            session, ran, reason = None, "", str(exc)
        if ran == PROVIDERS[name]:
            if precision != "f32" and name != "openvino":
                raise ConfigError(f"--precision {precision} applies to OpenVINO, and auto picked {name}; "
                                  "add --provider openvino")
            why = "asked for" if provider != "auto" else \
                f"auto: {AUTO_PICKS[name]}" + (f"; skipped {'; '.join(skipped)}" if skipped else "")
            return session, Choice(name, why, precision if name == "openvino" else None,
                                   _cpu_fallback(session, PROVIDERS[name]) if name != "cpu" else [])
        skipped.append(f"{name}: did not start ({reason or 'no reason given by ONNX Runtime'})")
        if provider != "auto":
            raise ConfigError(f"provider {provider!r} did not start, and cnn-edge does not fall back to the CPU "
                              f"silently: {reason or 'no reason given by ONNX Runtime'} (use --provider cpu or auto)")
    raise ConfigError(f"no provider started for {path}")
