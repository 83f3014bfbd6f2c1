"""The `cnn-edge` typer app: shared options, choices, JSON output and the error-to-exit-code mapping.

Command modules (training, onnx_files, runtime, compare) import this one and register their
commands on `app`; this module imports none of them. Heavy libraries (torch, onnxruntime) are
imported inside the commands that need them, so `--help` and `info` answer at once.
"""
from __future__ import annotations

import contextlib
import enum
import functools
from typing import Iterable

import typer

from ..core.errors import CnnEdgeError, OutputPathError, ParityError
from ..core.reports import dumps
from ..runtime.providers import CHOICES as PROVIDER_CHOICES
from ..runtime.providers import PRECISIONS

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Train the spec MNIST CNN, export it to ONNX, validate it, and run it anywhere.",
)

# Exit codes every command shares (predict adds EXIT_SOME_FAILED).
EXIT_PARITY_FAILED = ParityError.exit_code
EXIT_BAD_INPUT = 2
EXIT_FP32_ONLY = 4  # pipeline: the fp32 model was released, but no int8 model met parity (the card says why)
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a standard tool whose reader went away
# Libraries of the `train` extra: a command that needs one says which install brings it.
TRAIN_EXTRA = frozenset({"torch", "torchvision", "onnx", "onnxscript", "safetensors"})
TRAIN_EXTRA_HINT = "pip install 'cnn-edge[train]'"


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"cnn-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
    """Train the spec MNIST CNN, export it to ONNX, validate it, and run it anywhere."""


def plural(n: int, word: str) -> str:
    """'1 file', '2 files', '10,000 files'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def choices(name: str, values: Iterable[str]) -> type[enum.Enum]:
    """An Enum of the library's declared choices, so that --help lists them and typer refuses
    anything else. Commands pass `.value` on to the library."""
    return enum.Enum(name, {v: v for v in values}, type=str)


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(fn):
    """Our errors become one line on stderr and their exit code; Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CnnEdgeError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except ImportError as exc:
            if (exc.name or "").split(".")[0] not in TRAIN_EXTRA:
                raise
            raise fail(f"this command needs {exc.name.split('.')[0]}, which the base install leaves out: "
                       f"{TRAIN_EXTRA_HINT}", EXIT_BAD_INPUT) from None
        except BrokenPipeError:
            _quiet_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except OSError as exc:  # disk full, permissions changed mid-run: still one line
            raise fail(f"{exc.strerror or exc} ({exc.filename or 'file system'})", EXIT_BAD_INPUT) from None
        except KeyboardInterrupt as exc:
            # By the flag, not only the class: the Terminated raised in the main thread can reach
            # us as another KeyboardInterrupt (seen once in 8 SIGTERMs of a Ray run: exit 130).
            terminated = isinstance(exc, Terminated) or sigterm_stops.received
            how, code = ("terminated (SIGTERM)", EXIT_TERMINATED) if terminated else ("interrupted", EXIT_INTERRUPTED)
            error = fail(f"{how}; rerun the same command with --resume to continue where it stopped", code)
            if sigterm_stops.received:
                _exit_now(code)
            raise error from None

    return wrapper


def _exit_now(code: int) -> None:
    """Exit at once, after a real SIGTERM, once what we own is closed (the job aborted its sink, the
    engine shut its workers or its cluster down): the interpreter's own teardown can still abort
    (SIGABRT, 2 runs in 24 on the Ray engine) while a thread Ray Data started, never joined, is
    inside Ray's native code. The process manager that sent SIGTERM gets 143, never a core dump."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by sigterm_stops: the run stops as on Ctrl-C."""


@contextlib.contextmanager
def sigterm_stops():
    """While inside, SIGTERM stops the command as Ctrl-C does (the job aborts its sink, so the rows
    written so far stay and the user is told how to resume; the engine shuts down its workers or its
    cluster), then exits 143, instead of the process vanishing mid-write (or, once Ray is
    initialised, exiting 15 with a native stack dump). A second SIGTERM meanwhile is ignored.

    On the way out, the handler that was there comes back; in the `cnn-edge` process itself
    (`sigterm_stops.then_ignore`, set by cli.main) SIGTERM is ignored instead: the command is over,
    its output committed, and a SIGTERM in the second or two the process takes to end (once Ray ran)
    would only turn its exit code into "killed"."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sigterm_stops.received = True
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN if sigterm_stops.then_ignore else previous)


sigterm_stops.received = False  # set by the first SIGTERM sigterm_stops turned into Terminated
sigterm_stops.then_ignore = False  # cli.main: the process ends when the command does


def _quiet_stdout() -> None:
    """The reader of our output went away (`predict ... | head`): stop quietly, as standard tools
    do, and let nothing more be written to the closed pipe, not even at exit."""
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def stdout_is_open() -> bool:
    """False when the command was started with standard output closed (`>&-`): what it would print
    there is lost (click then writes nothing, silently), so a command whose product is on stdout fails."""
    import io
    import os
    import sys

    if sys.stdout is None or _STDOUT_WAS_CLOSED:
        return False
    try:
        os.fstat(sys.stdout.fileno())
    except io.UnsupportedOperation:  # a stream without a file descriptor (a test runner's): open
        return True
    except (OSError, ValueError):
        return False
    return True


_STDOUT_WAS_CLOSED = False


def reserve_standard_fds() -> None:
    """Started with file descriptor 0, 1 or 2 closed, a process hands that number to the next file it
    opens: a results file would become "stdout", and every print (ours, a worker's, ONNX Runtime's)
    would land in it. Point each closed one at /dev/null first, and remember that stdout was closed."""
    import os

    global _STDOUT_WAS_CLOSED
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            if fd == 1:
                _STDOUT_WAS_CLOSED = True
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)


def print_json(report) -> None:
    """A report (dataclass, dict or list) as JSON on stdout, through reports.py; an error when
    stdout is closed (the report would be lost while the command says it succeeded)."""
    if not stdout_is_open():
        raise OutputPathError("standard output is closed (>&-), so the JSON report has nowhere to go: "
                              "run with stdout open, or send it to a file (> report.json)")
    typer.echo(dumps(report))


def stage_printer(enabled: bool):
    """`on_stage` for the long jobs: '== train' etc. on stderr, each with how long the stage before it
    took (call it with "done" at the end for the last one's), or nothing."""
    import time

    last: list = []  # (stage, when it started)

    def say(stage: str) -> None:
        now = time.perf_counter()
        took = f" ({last[0][0]} took {_duration(now - last[0][1])})" if last else ""
        last[:] = [(stage, now)]
        typer.echo(f"== {stage}{took}", err=True)

    return say if enabled else (lambda stage: None)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


DataDirOpt = typer.Option(None, "--data-dir", help="MNIST folder (4 IDX files, gzipped or not). Default: $CNN_EDGE_DATA, then ./datasets (downloaded).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bar.")
Provider = choices("Provider", PROVIDER_CHOICES)
Precision = choices("Precision", PRECISIONS)
PrecisionOpt = typer.Option(PRECISIONS[0], "--precision", help="OpenVINO's inference precision: f32 (the model's own numerics), or bf16/f16 (faster, less exact).")
