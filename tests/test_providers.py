"""Providers: auto picks what runs; an explicit one that cannot run is an error, never a CPU fall back.

On tiny models (conftest): what is tested is the provider logic, not the release. The OpenVINO
plugin's two branches are both here: where it has a device (an Intel CPU) its parity tests run,
elsewhere its one-line error is checked, and each skips on the other kind of machine, saying so."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnn_edge.cli import app
from cnn_edge.core import contract as C
from cnn_edge.core.errors import ConfigError
from cnn_edge.runtime.onnx_model import open_model
from cnn_edge.runtime.providers import PROVIDERS, available, create_session

from conftest import make_digits, openvino_plugin_devices

HAS_OPENVINO_DEVICE = bool(openvino_plugin_devices())
needs_openvino_device = pytest.mark.skipif(
    not HAS_OPENVINO_DEVICE,
    reason="ONNX Runtime's OpenVINO plugin has no device here (it serves Intel CPUs; or it is not installed)")
needs_no_openvino_device = pytest.mark.skipif(
    HAS_OPENVINO_DEVICE, reason="the OpenVINO plugin has a device here: the parity tests run instead")


def cpuinfo_vendor() -> str:
    """vendor_id of /proc/cpuinfo, read here rather than through cnn_edge."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("vendor_id")), "")


def has_integer_ops(path: Path) -> bool:
    """The model's graph holds quantized operators (read with onnx, not with cnn_edge)."""
    quantized = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
    return any(node.op_type in quantized for node in onnx.load(str(path)).graph.node)


def expected_auto(path: Path) -> set[str]:
    """What auto must pick, from facts: ONNX Runtime's build, the CPU's vendor, the plugin's devices,
    the model's operators. A GPU provider in the build may or may not start (that depends on the
    GPU), so it is allowed besides the CPU-side answer, which is openvino only for an int8 model on
    an Intel CPU where the plugin has a device."""
    built = set(ort.get_available_providers())
    gpus = {short for short in ("tensorrt", "cuda") if PROVIDERS[short] in built}
    on_cpu = "openvino" if has_integer_ops(path) and cpuinfo_vendor() == "GenuineIntel" and HAS_OPENVINO_DEVICE else "cpu"
    return gpus | {on_cpu}


def test_cpu_reports_what_ran(tiny_onnx, tiny_int8):
    for path in (tiny_onnx, tiny_int8):
        assert open_model(path, provider="cpu").provider == "cpu"


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_auto_picks_what_the_facts_say(which, tiny_onnx, tiny_int8):
    path = tiny_onnx if which == "fp32" else tiny_int8
    assert has_integer_ops(path) == (which == "int8")
    model = open_model(path, provider="auto")
    assert model.provider in expected_auto(path), (model.provider, model.choice.reason)


def test_unknown_provider(tiny_onnx):
    with pytest.raises(ConfigError, match="'gpu'"):
        create_session(str(tiny_onnx), Path(tiny_onnx).read_bytes(), ort.SessionOptions, "gpu")


def test_auto_says_what_it_picked_and_why_not_the_others(tiny_onnx):
    from cnn_edge.runtime.providers import AUTO_PICKS

    choice = open_model(tiny_onnx, provider="auto").choice
    assert choice.reason.startswith(f"auto: {AUTO_PICKS[choice.provider]}")  # why this one, first
    assert choice.provider not in choice.reason.split("; skipped", 1)[-1].split(":")[0]  # never listed as skipped
    for other in set(PROVIDERS) - set(available()):
        assert other in choice.reason  # every provider it did not take is named with the reason


def test_precision_is_openvino_only(tiny_onnx):
    with pytest.raises(ConfigError, match="bf16"):
        open_model(tiny_onnx, provider="cpu", precision="bf16")


@needs_openvino_device
def test_openvino_runs_fp32_within_1e4_of_the_cpu_provider(tiny_onnx):
    """OpenVINO at its f32 precision: the CPU provider's numbers."""
    ov, cpu = open_model(tiny_onnx, provider="openvino"), open_model(tiny_onnx, provider="cpu")
    assert ov.provider == "openvino" and ov.choice.precision == "f32"
    x = (np.random.default_rng(0).random((64, 1, 28, 28)) * 255).astype(np.float32)
    assert np.abs(ov.run(x)[0] - cpu.run(x)[0]).max() < 1e-4


@needs_openvino_device
def test_openvino_runs_int8_agreeing_with_the_cpu_provider(tiny_int8, tiny_data):
    """The int8 model on OpenVINO's int8 kernels: the CPU provider's predictions, as the release
    contract asks of any two int8 runtimes."""
    ov, cpu = open_model(tiny_int8, provider="openvino"), open_model(tiny_int8, provider="cpu")
    assert ov.provider == "openvino"
    ov_pred = ov.run_batched(tiny_data.test.images)[0].argmax(1)
    cpu_pred = cpu.run_batched(tiny_data.test.images)[0].argmax(1)
    assert (ov_pred == cpu_pred).mean() >= C.INT8_MIN_TOP1_AGREEMENT


@needs_openvino_device
def test_predict_on_openvino_gives_the_cpu_providers_rows(tiny_onnx, tmp_path):
    """`predict --provider openvino` end to end: the rows of `--provider cpu`, confidences within 1e-4."""
    images, _ = make_digits(8, seed=3)
    paths = []
    for i, img in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img).save(paths[-1])
    rows = {}
    for provider in ("cpu", "openvino"):
        out = tmp_path / f"{provider}.jsonl"
        result = CliRunner().invoke(app, ["predict", str(tiny_onnx), *paths, "-o", str(out), "--provider", provider,
                                          "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["provider"] == provider
        rows[provider] = [json.loads(line) for line in out.read_text().splitlines()]
    for cpu, ov in zip(rows["cpu"], rows["openvino"], strict=True):
        assert (ov["path"], ov["prediction"]) == (cpu["path"], cpu["prediction"])
        assert abs(ov["confidence"] - cpu["confidence"]) < 1e-4


@needs_no_openvino_device
def test_openvino_without_a_device_is_a_one_line_error(tiny_onnx):
    """Installed or not, a plugin with no device here: an error naming the provider, never a CPU run."""
    with pytest.raises(ConfigError, match="'openvino'"):
        open_model(tiny_onnx, provider="openvino")


def test_missing_openvino_plugin_names_the_extra(tiny_onnx):
    code = ("import sys; sys.modules['onnxruntime_ep_openvino'] = None\n"
            "from cnn_edge.runtime.onnx_model import open_model\n"
            "from cnn_edge.core.errors import ConfigError\n"
            f"try: open_model({str(tiny_onnx)!r}, provider='openvino')\n"
            "except ConfigError as e: print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "cnn-edge[openvino]" in out


@pytest.mark.parametrize("name", ["cuda", "tensorrt"])
def test_missing_gpu_provider_is_an_error_with_the_fix(name, tiny_onnx):
    if name in available():
        pytest.skip(f"this ONNX Runtime has {name}")
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        open_model(tiny_onnx, provider=name)


def test_nodes_left_to_another_provider_are_listed(tiny_onnx):
    """The report behind the fallback warning, read from a real session: ONNX Runtime's record of
    which provider runs each node. Every node ran on the CPU here, so against any other provider all
    of them are listed, and against the CPU provider none."""
    from cnn_edge.runtime.providers import RECORD_ASSIGNMENT, _cpu_fallback

    opts = ort.SessionOptions()
    opts.add_session_config_entry(RECORD_ASSIGNMENT, "1")
    session = ort.InferenceSession(str(tiny_onnx), opts, providers=["CPUExecutionProvider"])
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
