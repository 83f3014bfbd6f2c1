"""The `cnn-edge` command line: one thin command per library call.

    app        the typer app, shared options, errors -> exit codes
    training   info, train, pipeline
    onnx_files export, vectors, validate, quantize
    diagnose   diagnose
    runtime    predict, bench, demo (torch-free)
    compare    compare
    embed_c    export-c, validate-c
    progress   the progress bars (the only place that draws them)
"""
from __future__ import annotations

# isort: skip_file
from .app import app

# Each module registers its commands on `app`; this order is the order of `cnn-edge --help`.
from . import training  # noqa: F401,E402
from . import onnx_files  # noqa: F401,E402
from . import diagnose  # noqa: F401,E402
from . import compare  # noqa: F401,E402
from . import runtime  # noqa: F401,E402
from . import embed_c  # noqa: F401,E402


def main() -> None:
    from .app import reserve_standard_fds, sigterm_stops

    reserve_standard_fds()
    sigterm_stops.then_ignore = True  # this process ends with the command (see sigterm_stops)
    app()
