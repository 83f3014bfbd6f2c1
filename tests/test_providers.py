"""Providers: auto picks what runs; an explicit one that cannot run is an error, never a CPU fall back."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from cnn_edge.core.errors import ConfigError
from cnn_edge.runtime.onnx_model import open_model
from cnn_edge.runtime.providers import PROVIDERS, auto_order, available, create_session, openvino_devices

from conftest import REPO

MODEL = str(REPO / "exports" / "mnist_cnn.onnx")


def test_auto_and_cpu_report_what_ran():
    assert open_model(MODEL, provider="cpu").provider == "cpu"
    assert open_model(MODEL, provider="auto").provider == auto_order(is_int8=False)[0][0]


def test_unknown_provider():
    with pytest.raises(ConfigError, match="'gpu'"):
        create_session(str(MODEL), Path(MODEL).read_bytes(), ort.SessionOptions, "gpu")


def test_auto_says_what_it_picked_and_why_not_the_others():
    choice = open_model(MODEL, provider="auto").choice
    assert choice.reason.startswith("auto")
    for other in set(PROVIDERS) - set(available()):
        assert other in choice.reason  # every provider it did not take is named with the reason


def test_precision_is_openvino_only():
    with pytest.raises(ConfigError, match="bf16"):
        open_model(MODEL, provider="cpu", precision="bf16")


def _openvino_devices() -> list:
    try:
        return openvino_devices(ort)
    except ConfigError:
        return []


def test_openvino_runs_fp32_within_1e4_of_the_cpu_provider_or_says_why_not():
    """Where the plugin has a device (an Intel CPU): parity with the CPU provider at OpenVINO's f32
    precision. Elsewhere: a one-line error naming the provider (not installed, or no device)."""
    import numpy as np

    if not _openvino_devices():
        with pytest.raises(ConfigError, match="'openvino'"):
            open_model(MODEL, provider="openvino")
        return
    ov, cpu = open_model(MODEL, provider="openvino"), open_model(MODEL, provider="cpu")
    assert ov.provider == "openvino" and ov.choice.precision == "f32"
    x = (np.random.default_rng(0).random((64, 1, 28, 28)) * 255).astype(np.float32)
    assert np.abs(ov.run(x)[0] - cpu.run(x)[0]).max() < 1e-4


def test_missing_openvino_plugin_names_the_extra():
    code = ("import sys; sys.modules['onnxruntime_ep_openvino'] = None\n"
            "from cnn_edge.runtime.onnx_model import open_model\n"
            "from cnn_edge.core.errors import ConfigError\n"
            f"try: open_model({MODEL!r}, provider='openvino')\n"
            "except ConfigError as e: print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "cnn-edge[openvino]" in out


@pytest.mark.parametrize("name", ["cuda", "tensorrt"])
def test_missing_gpu_provider_is_an_error_with_the_fix(name):
    if name in available():
        pytest.skip(f"this ONNX Runtime has {name}")
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        open_model(MODEL, provider=name)


def test_nodes_left_to_another_provider_are_listed():
    """The report behind the fallback warning, read from a real session: ONNX Runtime's record of
    which provider runs each node. Every node ran on the CPU here, so against any other provider all
    of them are listed, and against the CPU provider none."""
    from cnn_edge.runtime.providers import RECORD_ASSIGNMENT, _cpu_fallback

    opts = ort.SessionOptions()
    opts.add_session_config_entry(RECORD_ASSIGNMENT, "1")
    session = ort.InferenceSession(MODEL, opts, providers=["CPUExecutionProvider"])
    listed = _cpu_fallback(session, PROVIDERS["openvino"])
    assert listed and any(entry.startswith("Conv ") for entry in listed)
    assert _cpu_fallback(session, PROVIDERS["cpu"]) == []


def test_native_stderr_is_captured_then_restored(capfd, tmp_path, monkeypatch):
    """core.files.captured_stderr, as providers uses it for ONNX Runtime's reasons: what is written
    to file descriptor 2 inside goes to a file (read back as .text), not the terminal; after, fd 2
    is the terminal again. With a log prefix the log file stays, for Ray's start-up lines."""
    import os
    import tempfile

    from cnn_edge.core.files import captured_stderr

    with captured_stderr() as log:
        os.write(2, b"native: provider failed\n")
    os.write(2, b"after\n")
    assert log.path is None and log.text == "native: provider failed\n"
    assert capfd.readouterr().err == "after\n"

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with captured_stderr(log_prefix="cnn-edge-test-") as log:
        os.write(2, b"kept\n")
    assert log.path.parent == tmp_path and log.path.name.startswith("cnn-edge-test-") and log.path.suffix == ".log"
    assert log.path.read_text() == log.text == "kept\n"
    assert capfd.readouterr().err == ""
