"""Choose an ONNX Runtime execution provider, and never fall back to the CPU silently. Torch-free.

ONNX Runtime, asked for CUDA when the CUDA or cuDNN libraries are missing or there is no GPU,
logs an error and quietly runs on the CPU. Here an explicit request either runs where asked or
fails with ONNX Runtime's own reason; `auto` takes the best provider that actually starts.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

from ..errors import ConfigError, ModelFileError, first_line

# Names users type -> ONNX Runtime's provider names, best first for `auto`.
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
CHOICES = ("auto", *PROVIDERS)

GPU_INSTALL_HINT = (
    "install the GPU build of ONNX Runtime instead of the CPU one: "
    "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (needs the CUDA 12 and cuDNN 9 libraries, "
    "e.g. pip install 'onnxruntime-gpu[cuda,cudnn]')"
)


def available() -> list[str]:
    """Short names of the providers this ONNX Runtime build has, best first."""
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [short for short, full in PROVIDERS.items() if full in have]


@contextmanager
def _captured_stderr():
    """Collect what native code writes to fd 2 (ONNX Runtime's reason for a failed provider)."""
    captured = {"text": ""}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured["text"] = tmp.read().decode("utf-8", "replace")


def _reason(log: str) -> str:
    lines = [l.strip() for l in log.splitlines() if l.strip()]
    errors = [l for l in lines if "error" in l.lower() or "fail" in l.lower()] or lines
    return errors[-1][-300:] if errors else "no reason given by ONNX Runtime"


def create_session(path: str, model: bytes, options, provider: str = "auto"):
    """An InferenceSession of `model` (the bytes of the file `path`, which is named in errors only)
    on `provider` (auto|cpu|cuda|tensorrt). Returns (session, short name).

    Raises ConfigError when an explicitly requested provider is not built in or does not start."""
    import onnxruntime as ort

    if provider not in CHOICES:
        raise ConfigError(f"unknown provider {provider!r}; choose one of {', '.join(CHOICES)}")
    built_in = available()
    if provider == "auto":
        candidates = built_in
    elif provider not in built_in:
        hint = GPU_INSTALL_HINT if provider != "cpu" else "reinstall onnxruntime"
        raise ConfigError(f"provider {provider!r} is not in this ONNX Runtime build "
                          f"(it has: {', '.join(built_in)}); {hint}")
    else:
        candidates = [provider]
    last_reason = ""
    for name in candidates:
        wanted = PROVIDERS[name]
        try:
            if name == "cpu":
                session = ort.InferenceSession(model, options, providers=[wanted])
            else:
                with _captured_stderr() as log:
                    session = ort.InferenceSession(model, options, providers=[wanted, PROVIDERS["cpu"]])
                last_reason = _reason(log["text"])
        except Exception as exc:  # ORT's Fail/InvalidProtobuf/InvalidGraph types
            raise ModelFileError(f"{path} is not a loadable ONNX model ({first_line(exc)})") from None
        ran = session.get_providers()[0]
        if ran == wanted:
            return session, name
        if provider != "auto":
            raise ConfigError(f"provider {provider!r} did not start, and cnn-edge does not fall back to the CPU "
                              f"silently: {last_reason} (use --provider cpu or auto)")
    raise ConfigError(f"no provider started for {path}: {last_reason}")
