"""`cnn-edge demo`: serve the browser demo (draw a digit, see the probabilities) on localhost. Torch-free.

Standard-library HTTP server; the page, its JavaScript and ONNX Runtime Web ship inside the
package (cnn_edge/web), the model and its test vectors come from exports/. Nothing is fetched
from the internet.
"""
from __future__ import annotations

import functools
import json
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..artifacts import vectors_beside
from ..errors import ConfigError, ModelFileError

# The page, its JavaScript and the vendored ONNX Runtime Web: package data of cnn_edge.
WEB_DIR = Path(__file__).resolve().parents[1] / "web"


class DemoHandler(SimpleHTTPRequestHandler):
    """Static files from WEB_DIR, plus /model.onnx, /test_vectors.json and /model-info.json."""

    routes: dict[str, Path] = {}
    info: bytes = b"{}"
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/model-info.json":
            return self._send(self.info, "application/json")
        if path in self.routes:
            return self._send(self.routes[path].read_bytes(), self.guess_type(path))
        gz = WEB_DIR / (path.lstrip("/") + ".gz")
        if path.startswith("/vendor/") and path.endswith(".wasm") and gz.is_file():
            # The 14 MB WebAssembly runtime ships gzipped (3.7 MB); the browser inflates it
            # while it compiles the stream.
            return self._send(_read(gz), "application/wasm", encoding="gzip", cache=True)
        return super().do_GET()

    def _send(self, body: bytes, content_type: str, *, encoding: str | None = None, cache: bool = False) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        # The runtime is fixed for a cnn-edge version: a revisit reuses it and the browser's
        # cache of its compiled code. The model and vectors may change between runs: revalidate.
        self.send_header("Cache-Control", "max-age=86400" if cache else "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # keep the terminal for the address
        pass


@functools.lru_cache(maxsize=8)
def _read(path: Path) -> bytes:
    return path.read_bytes()


def model_info(model: Path) -> dict:
    """What the page shows and which tolerance it applies to the test vectors."""
    from .. import contract as C
    from .onnx_model import open_model
    from .predictor import preprocessing_of

    m = open_model(model)
    return {"name": model.name, "int8": m.is_int8, "preprocessing": preprocessing_of(m),
            "test_accuracy": m.metadata.get(C.META_TEST_ACCURACY)}


def make_server(model: Path, vectors: Path | None = None, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server for the demo page; port 0 picks a free one (server.server_address has it)."""
    model = Path(model)
    info = json.dumps(model_info(model)).encode()  # checks the model first
    vectors = Path(vectors) if vectors else vectors_beside(model)
    if not vectors.is_file():
        raise ModelFileError(f"test vectors {vectors} not found; write them with: cnn-edge vectors CHECKPOINT -o {vectors}")
    handler = type("Handler", (DemoHandler,), {"routes": {"/model.onnx": model, "/test_vectors.json": vectors}, "info": info})
    try:
        return ThreadingHTTPServer((host, port), partial(handler, directory=str(WEB_DIR)))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
