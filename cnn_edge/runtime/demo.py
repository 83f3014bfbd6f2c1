"""`cnn-edge demo`: serve the browser demo (draw a digit, see the probabilities) on localhost. Torch-free.

Standard-library HTTP server; the page, its JavaScript and ONNX Runtime Web ship inside the
package (cnn_edge/web), the model and its test vectors come from exports/. Nothing is fetched
from the internet.
"""
from __future__ import annotations

import functools
import ipaddress
import json
import posixpath
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..core.artifacts import vectors_beside
from ..core.errors import ConfigError, ModelFileError

IDLE_TIMEOUT_S = 10  # a connection that sends nothing for this long is closed
# A request's line and headers must all arrive within this many seconds of the connection (or of
# the previous answer): the idle timeout alone is reset by every byte, so a client sending one byte
# every few seconds would hold a connection, and a thread, for ever.
REQUEST_DEADLINE_S = 10
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000  # this machine only


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def model_info(model: Path) -> dict:
    """What the page shows and which tolerance it applies to the test vectors.

    The browser runs the model, where a wrong answer is silent; so it is run here first, on a
    batch of two (one row for a batch of many, NaN, logits, another class count: ModelOutputError
    or ModelFileError, one line before the server starts)."""
    from ..core import contract as C
    from ..core.constants import NUM_CLASSES
    from .onnx_model import open_model
    from .predictor import preprocessing_of
    from .timing import random_batch

    m = open_model(model)
    if len(m.class_labels) != NUM_CLASSES:
        raise ModelFileError(f"{model} has {len(m.class_labels)} classes; the demo page draws the {NUM_CLASSES} "
                             f"digits of MNIST")
    m.run_strict(random_batch(2))
    return {"name": model.name, "int8": m.is_int8, "preprocessing": preprocessing_of(m),
            "test_accuracy": m.metadata_float(C.META_TEST_ACCURACY)}


def make_server(model: Path, vectors: Path | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                idle_timeout: float = IDLE_TIMEOUT_S, request_deadline: float = REQUEST_DEADLINE_S):
    """A server for the demo page (DemoServer); port 0 picks a free one (server.server_address
    has it). A connection idle for `idle_timeout` seconds is closed, and so is one whose request
    (line and headers) has not fully arrived `request_deadline` seconds after it could start."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port: choose one from 1 to 65535 (0: any free one)")
    model = Path(model)
    info = json.dumps(model_info(model)).encode()  # checks the model first
    vectors = Path(vectors) if vectors else vectors_beside(model)
    if not vectors.is_file():
        raise ModelFileError(f"test vectors {vectors} not found; write them with: cnn-edge vectors CHECKPOINT -o {vectors}")
    routes = {"/model.onnx": model, "/test_vectors.json": vectors}
    handler = type("Handler", (DemoHandler,), {"routes": routes, "info": info, "timeout": idle_timeout,
                                                   "request_deadline": request_deadline})
    try:
        return DemoServer((host, port), handler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None

# The page, its JavaScript and the vendored ONNX Runtime Web: package data of cnn_edge.
WEB_DIR = Path(__file__).resolve().parents[1] / "web"
# Everything the server answers: these files of WEB_DIR, the model, its vectors and its info. No
# other path, no directory listing, nothing outside the list, whatever `..` or %2e%2e a request holds.
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript"),
    "/preprocess.js": ("preprocess.js", "text/javascript"),
    "/vectors.js": ("vectors.js", "text/javascript"),
    "/vendor/ort.wasm.min.js": ("vendor/ort.wasm.min.js", "text/javascript"),
    "/vendor/ort-wasm-simd-threaded.mjs": ("vendor/ort-wasm-simd-threaded.mjs", "text/javascript"),
}
# The 14 MB WebAssembly runtime ships gzipped (3.7 MB); the browser inflates it while it compiles.
WASM = ("/vendor/ort-wasm-simd-threaded.wasm", "vendor/ort-wasm-simd-threaded.wasm.gz")

class DemoHandler(BaseHTTPRequestHandler):
    """GET and HEAD on a fixed list of routes: STATIC, WASM, /model.onnx, /test_vectors.json and
    /model-info.json. Anything else is 404."""

    routes: dict[str, Path] = {}
    info: bytes = b"{}"
    timeout: float | None = None  # set by demo.make_server: idle connections are closed
    request_deadline: float = REQUEST_DEADLINE_S  # set by demo.make_server: slow requests are cut off

    def handle_one_request(self) -> None:
        """Reads one request and answers it; a request still arriving at the deadline is cut off by
        shutting the socket, which ends the blocked read (the answer itself may take as long as
        the client needs to receive it: the deadline stops once the headers are in)."""
        self._deadline = threading.Timer(self.request_deadline, self._cut_off)
        self._deadline.daemon = True
        self._deadline.start()
        try:
            super().handle_one_request()
        finally:
            self._deadline.cancel()

    def parse_request(self) -> bool:
        """Reads the headers (the request line is already in); the deadline stops once they are."""
        try:
            return super().parse_request()
        finally:
            self._deadline.cancel()

    def _cut_off(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the client

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        path = posixpath.normpath(unquote(urlsplit(self.path).path)) if self.path.startswith("/") else ""
        path = "/" if path in ("/", ".") else path
        if path == "/model-info.json":
            return self._send(self.info, "application/json", body=body)
        if path in self.routes:
            kind = "application/json" if path.endswith(".json") else "application/octet-stream"
            return self._send(self.routes[path].read_bytes(), kind, body=body)
        if path in STATIC:
            name, kind = STATIC[path]
            return self._send(_read(WEB_DIR / name), kind, body=body, cache=True)
        if path == WASM[0]:
            return self._send(_read(WEB_DIR / WASM[1]), "application/wasm", body=body, encoding="gzip", cache=True)
        self._send(b"not found\n", "text/plain", body=body, status=404)

    def _send(self, data: bytes, content_type: str, *, body: bool, encoding: str | None = None, cache: bool = False,
              status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(data)))
        # The page and runtime are fixed for a cnn-edge version: a revisit reuses them and the
        # browser's cache of compiled code. The model and vectors may change between runs: revalidate.
        self.send_header("Cache-Control", "max-age=86400" if cache else "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # keep the terminal for the address
        pass


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow client never holds up Ctrl-C

    def handle_error(self, request, client_address) -> None:
        """A browser that goes away mid-answer is normal; nothing to print on the user's terminal."""


@functools.lru_cache(maxsize=16)
def _read(path: Path) -> bytes:
    return path.read_bytes()
