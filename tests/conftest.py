"""Shared fixtures: a tiny MNIST-format data set and a model trained on it, built in tmp dirs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cnn_edge.training.data import FILES, MnistData, load_mnist, write_idx

REPO = Path(__file__).resolve().parents[1]


def make_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 28x28 uint8 'digits': class k is a bright 7x7 block at grid cell k, plus noise.

    Learnable in one short epoch, so a smoke run ends with a model that actually predicts."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 2 + 7 * (k // 4), 2 + 7 * (k % 4) + rng.integers(-1, 2)
        images[i, r : r + 7, c : c + 7] = 255
    return images, labels.astype(np.uint8)


def write_mnist(folder: Path, n_train: int = 640, n_test: int = 200, compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = make_digits(n, seed)
        suffix = ".gz" if compress else ""
        write_idx(folder / (FILES[(split, "images")] + suffix), images, compress=compress)
        write_idx(folder / (FILES[(split, "labels")] + suffix), labels, compress=compress)
    return folder


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="session")
def tiny_data(tiny_mnist) -> MnistData:
    """The tiny set read once, as the CLI hands it to the stages."""
    return load_mnist(tiny_mnist)


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A checkpoint trained for one short epoch on the tiny set: run/model.safetensors."""
    from cnn_edge.training.recipes import make_config
    from cnn_edge.training.train import train

    run = tmp_path_factory.mktemp("run")
    cfg = make_config("default", epochs=1, batch_size=64, val_size=64)
    return train(cfg, run, tiny_data, device="cpu").checkpoint


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory) -> Path:
    from cnn_edge.release.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(tiny_run, out)
    return out


@pytest.fixture(scope="session")
def tiny_quant(tiny_onnx, tiny_data, tmp_path_factory):
    """tiny_onnx quantized once with the release's settings, portable QDQ (a smaller calibration set
    and guard, timed briefly): the QuantReport. Its int8 model is model.int8.onnx in a folder of its own."""
    from cnn_edge.release.quantize import QuantConfig, quantize_model

    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    cfg = QuantConfig(calibration=200, guard_size=128, speed_seconds=0.05)
    return quantize_model(tiny_onnx, out, cfg, tiny_data.train, tiny_data.test)


@pytest.fixture(scope="session")
def tiny_int8(tiny_quant) -> Path:
    """The int8 model of tiny_quant."""
    return tiny_quant.int8_model


@pytest.fixture(scope="session")
def tiny_dynamic(tiny_onnx, tiny_data, tmp_path_factory) -> Path:
    """tiny_onnx quantized dynamically (weights only, uint8): ConvInteger and MatMulInteger."""
    from cnn_edge.release.quantize import QuantConfig, quantize_model

    out = tmp_path_factory.mktemp("dynamic") / "model.int8.onnx"
    cfg = QuantConfig(dynamic=True, weight_type="uint8", guard_size=128, speed_seconds=0)
    return quantize_model(tiny_onnx, out, cfg, tiny_data.train, tiny_data.test).int8_model


def openvino_plugin_devices() -> list:
    """The devices ONNX Runtime's OpenVINO plugin serves on this machine, as providers.py asks for
    them: an Intel CPU where the plugin is installed; none elsewhere (not installed, another vendor)."""
    import onnxruntime as ort

    from cnn_edge.core.errors import ConfigError
    from cnn_edge.runtime.providers import openvino_devices

    try:
        return openvino_devices(ort)
    except ConfigError:
        return []


@pytest.fixture
def no_env_data(monkeypatch):
    monkeypatch.delenv("CNN_EDGE_DATA", raising=False)


def assert_one_line_error(result, code: int, *names) -> str:
    """A CLI result that failed the way bad input must: exit `code`, no traceback, one line on
    stderr starting with 'error: ' that names each of `names` (the bad value, path or option).
    Returns the line, for further checks."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def real_mnist() -> Path | None:
    """The real MNIST folder when CNN_EDGE_DATA names one (CI sets it to ../shared/data/mnist)."""
    value = os.environ.get("CNN_EDGE_DATA")
    return Path(value) if value and Path(value).is_dir() else None
