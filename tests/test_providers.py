"""Providers: auto picks what runs; an explicit one that cannot run is an error, never a CPU fall back."""
from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from cnn_edge.errors import ConfigError
from cnn_edge.runtime.onnx_model import open_model
from cnn_edge.runtime.providers import available, create_session

from conftest import REPO

MODEL = str(REPO / "exports" / "mnist_cnn.onnx")


def test_auto_and_cpu_report_what_ran():
    assert open_model(MODEL, provider="cpu").provider == "cpu"
    assert open_model(MODEL, provider="auto").provider == available()[0]


def test_unknown_provider():
    with pytest.raises(ConfigError, match="'gpu'"):
        create_session(str(MODEL), Path(MODEL).read_bytes(), ort.SessionOptions(), "gpu")


@pytest.mark.parametrize("name", ["cuda", "tensorrt"])
def test_missing_gpu_provider_is_an_error_with_the_fix(name):
    if name in available():
        pytest.skip(f"this ONNX Runtime has {name}")
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        open_model(MODEL, provider=name)
