"""`cnn-edge demo`: serve the browser demo (draw a digit, see the probabilities) on localhost. Torch-free.

Standard-library HTTP server; the page, its JavaScript and ONNX Runtime Web ship inside the
package (cnn_edge/web), the model and its test vectors come from exports/. Nothing is fetched
from the internet.
"""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from ..artifacts import vectors_beside
from ..errors import ConfigError, ModelFileError

IDLE_TIMEOUT_S = 10  # a connection that sends nothing for this long is closed
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000  # this machine only


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def model_info(model: Path) -> dict:
    """What the page shows and which tolerance it applies to the test vectors."""
    from .. import contract as C
    from .onnx_model import open_model
    from .predictor import preprocessing_of

    m = open_model(model)
    return {"name": model.name, "int8": m.is_int8, "preprocessing": preprocessing_of(m),
            "test_accuracy": m.metadata_float(C.META_TEST_ACCURACY)}


def make_server(model: Path, vectors: Path | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                idle_timeout: float = IDLE_TIMEOUT_S):
    """A server for the demo page (demo_http.DemoServer); port 0 picks a free one (server.server_address
    has it). A connection idle for `idle_timeout` seconds is closed."""
    model = Path(model)
    info = json.dumps(model_info(model)).encode()  # checks the model first
    vectors = Path(vectors) if vectors else vectors_beside(model)
    if not vectors.is_file():
        raise ModelFileError(f"test vectors {vectors} not found; write them with: cnn-edge vectors CHECKPOINT -o {vectors}")
    from .demo_http import DemoHandler, DemoServer

    routes = {"/model.onnx": model, "/test_vectors.json": vectors}
    handler = type("Handler", (DemoHandler,), {"routes": routes, "info": info, "timeout": idle_timeout})
    try:
        return DemoServer((host, port), handler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
